-- Pending notifications move to a table of their own, one row per event (schema 0053 kept
-- one pending row per notified user in event_push_actions and gave each its position,
-- which wrote every row twice and touched each index twice). The room writer stores an
-- event's notifications here just before the event's transaction; the trigger below
-- copies them into event_push_actions, with the event's stream position, inside that
-- transaction, and drops the pending row. A pending row of an event that was never
-- committed (a crash, a failed write) is deleted by the next write to its room.
-- notifications: a JSON list of [user_id, highlight, actions (JSON text)].

DROP TRIGGER event_push_actions_position ON events;
DROP FUNCTION event_push_actions_position();
DROP INDEX event_push_actions_pending;
DELETE FROM event_push_actions WHERE stream_pos IS NULL;
ALTER TABLE event_push_actions ALTER COLUMN stream_pos SET NOT NULL;

CREATE TABLE event_push_pending (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    notifications TEXT NOT NULL
);
CREATE INDEX event_push_pending_room ON event_push_pending (room_id);

-- An event entering the timeline (a new row, or a stored outlier that joins it later).
-- Backfilled history has negative positions and never notifies. (The function body stays
-- on one line: schema files are split on semicolons at line ends.)
CREATE FUNCTION event_push_pending_apply() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO event_push_actions (user_id, room_id, event_id, stream_pos, thread_id, highlight, actions, ts) SELECT j.value ->> 0, p.room_id, p.event_id, NEW.stream_position, p.thread_id, (j.value ->> 1)::boolean, j.value ->> 2, p.ts FROM event_push_pending p, jsonb_array_elements(p.notifications::jsonb) j WHERE p.event_id = NEW.event_id; DELETE FROM event_push_pending WHERE event_id = NEW.event_id; RETURN NULL; END $$;
CREATE TRIGGER event_push_pending_apply AFTER INSERT OR UPDATE OF stream_position ON events
    FOR EACH ROW WHEN (NEW.stream_position > 0)
    EXECUTE FUNCTION event_push_pending_apply();
