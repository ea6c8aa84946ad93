"""Interop tests: real Ruma (``twistd -n ruma``), real Synapse and real client libraries on
loopback, with bounded waits and every process cleaned up by PID.

They import nothing from Ruma's internals: they drive the server over HTTP like any client.
"""
