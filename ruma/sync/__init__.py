"""/sync: tokens, filters, the sync handler and the long-poll notifier."""
