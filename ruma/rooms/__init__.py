"""The room service: the single writer of room events and the room operations built on it.

Every event, whatever its source, is persisted by :meth:`RoomWriter.persist_event`
(:mod:`ruma.rooms.persistence`); local events are built by :mod:`ruma.rooms.builder`
under the room's lock (:mod:`ruma.rooms.linearizer`) so one server never forks its rooms.
"""
