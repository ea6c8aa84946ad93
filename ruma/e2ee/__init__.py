"""End-to-end encryption support: the server stores and relays keys and messages, and never
decrypts anything.

- :mod:`.keys`: device, one-time, fallback and cross-signing keys and signatures;
- :mod:`.to_device`: send-to-device messages;
- :mod:`.device_lists`: whose devices changed, for ``/sync`` and ``/keys/changes``;
- :mod:`.backup`: server-side key backups;
- :mod:`.sync`: the per-device part of ``/sync``;
- :mod:`.remote`: the seams with federation;
- :mod:`.service`: all of it built in one place for ``ruma.tap``.
"""
