-- Push rules are evaluated while an event is persisted (ruma/push/evaluation.py), not after
-- it by a bus subscriber. The room writer stores the event's notifications just before the
-- event's own transaction, as pending rows (stream_pos NULL, which every reader skips); the
-- triggers below give them the event's stream position inside the event's transaction, so
-- an event and its notifications (unread counts) become visible together, or not at all.
-- Pending rows of an event that was never committed (a crash, a failed write) are deleted
-- by the next write to their room.

-- SQLite cannot drop NOT NULL in place: rebuild the table.
CREATE TABLE event_push_actions_new (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_pos BIGINT,
    thread_id TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    actions TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
INSERT INTO event_push_actions_new (user_id, room_id, event_id, stream_pos, thread_id,
    highlight, actions, ts)
    SELECT user_id, room_id, event_id, stream_pos, thread_id, highlight, actions, ts
    FROM event_push_actions;
DROP TABLE event_push_actions;
ALTER TABLE event_push_actions_new RENAME TO event_push_actions;
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, stream_pos);
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_pos);
-- Only pending rows: small, and what the triggers and the clean-up look up.
CREATE INDEX event_push_actions_pending ON event_push_actions (room_id, event_id)
    WHERE stream_pos IS NULL;

-- An event entering the timeline (a new row, or a stored outlier that joins it later).
-- Backfilled history has negative positions and never notifies.
CREATE TRIGGER event_push_actions_on_insert AFTER INSERT ON events
    WHEN NEW.stream_position > 0
    BEGIN UPDATE event_push_actions SET stream_pos = NEW.stream_position WHERE stream_pos IS NULL AND room_id = NEW.room_id AND event_id = NEW.event_id; END;
CREATE TRIGGER event_push_actions_on_update AFTER UPDATE OF stream_position ON events
    WHEN NEW.stream_position > 0
    BEGIN UPDATE event_push_actions SET stream_pos = NEW.stream_position WHERE stream_pos IS NULL AND room_id = NEW.room_id AND event_id = NEW.event_id; END;
