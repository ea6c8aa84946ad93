"""Ruma's pure Matrix protocol core: identifiers, canonical JSON, signing, room versions,
events, redaction, auth rules and state resolution. No I/O, no reactor, no clock."""
