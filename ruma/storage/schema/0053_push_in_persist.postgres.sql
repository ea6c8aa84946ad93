-- Push rules are evaluated while an event is persisted (ruma/push/evaluation.py), not after
-- it by a bus subscriber. The room writer stores the event's notifications just before the
-- event's own transaction, as pending rows (stream_pos NULL, which every reader skips); the
-- trigger below gives them the event's stream position inside the event's transaction, so
-- an event and its notifications (unread counts) become visible together, or not at all.
-- Pending rows of an event that was never committed (a crash, a failed write) are deleted
-- by the next write to their room.

ALTER TABLE event_push_actions ALTER COLUMN stream_pos DROP NOT NULL;
-- Only pending rows: small, and what the trigger and the clean-up look up.
CREATE INDEX event_push_actions_pending ON event_push_actions (room_id, event_id)
    WHERE stream_pos IS NULL;

-- An event entering the timeline (a new row, or a stored outlier that joins it later).
-- Backfilled history has negative positions and never notifies. (The function body stays
-- on one line: schema files are split on semicolons at line ends.)
CREATE FUNCTION event_push_actions_position() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE event_push_actions SET stream_pos = NEW.stream_position WHERE stream_pos IS NULL AND room_id = NEW.room_id AND event_id = NEW.event_id; RETURN NULL; END $$;
CREATE TRIGGER event_push_actions_position AFTER INSERT OR UPDATE OF stream_position ON events
    FOR EACH ROW WHEN (NEW.stream_position > 0)
    EXECUTE FUNCTION event_push_actions_position();
