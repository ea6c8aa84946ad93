"""The server-server API: request signing, server discovery, keys, inbound and outbound."""
