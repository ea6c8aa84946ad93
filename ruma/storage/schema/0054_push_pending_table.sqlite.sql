-- Pending notifications move to a table of their own, one row per event (schema 0053 kept
-- one pending row per notified user in event_push_actions and gave each its position,
-- which wrote every row twice and touched each index twice). The room writer stores an
-- event's notifications here just before the event's transaction; the triggers below copy
-- them into event_push_actions, with the event's stream position, inside that
-- transaction, and drop the pending row. A pending row of an event that was never
-- committed (a crash, a failed write) is deleted by the next write to its room.
-- notifications: a JSON list of [user_id, highlight, actions (JSON text)].
-- (event_push_actions.stream_pos stays nullable on SQLite after 0053 but is never NULL.)

DROP TRIGGER event_push_actions_on_insert;
DROP TRIGGER event_push_actions_on_update;
DROP INDEX event_push_actions_pending;
DELETE FROM event_push_actions WHERE stream_pos IS NULL;

CREATE TABLE event_push_pending (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    notifications TEXT NOT NULL
);
CREATE INDEX event_push_pending_room ON event_push_pending (room_id);

-- An event entering the timeline (a new row, or a stored outlier that joins it later).
-- Backfilled history has negative positions and never notifies.
CREATE TRIGGER event_push_pending_on_insert AFTER INSERT ON events
    WHEN NEW.stream_position > 0
    BEGIN INSERT INTO event_push_actions (user_id, room_id, event_id, stream_pos, thread_id, highlight, actions, ts) SELECT json_extract(j.value, '$[0]'), p.room_id, p.event_id, NEW.stream_position, p.thread_id, json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'), p.ts FROM event_push_pending p, json_each(p.notifications) j WHERE p.event_id = NEW.event_id; DELETE FROM event_push_pending WHERE event_id = NEW.event_id; END;
CREATE TRIGGER event_push_pending_on_update AFTER UPDATE OF stream_position ON events
    WHEN NEW.stream_position > 0
    BEGIN INSERT INTO event_push_actions (user_id, room_id, event_id, stream_pos, thread_id, highlight, actions, ts) SELECT json_extract(j.value, '$[0]'), p.room_id, p.event_id, NEW.stream_position, p.thread_id, json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'), p.ts FROM event_push_pending p, json_each(p.notifications) j WHERE p.event_id = NEW.event_id; DELETE FROM event_push_pending WHERE event_id = NEW.event_id; END;
