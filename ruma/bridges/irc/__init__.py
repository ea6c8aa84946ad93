"""The IRC bridge module: IRC channels as Matrix rooms (see :mod:`.bridge`)."""
