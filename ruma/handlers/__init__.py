"""Homeserver logic between the HTTP edges and storage."""
