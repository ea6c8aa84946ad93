"""The client-server API (``/_matrix/client``): one Klein router, one module per area."""
