"""Storage: the only layer that writes SQL. One ``Database`` and one store module per concern."""
