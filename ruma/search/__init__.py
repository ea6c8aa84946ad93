"""Full-text search of room events (``POST /search``)."""
