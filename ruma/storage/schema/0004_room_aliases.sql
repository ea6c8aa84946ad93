-- Room aliases on this server (alias -> room), room directory visibility is rooms.is_public.
CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Client transaction IDs (PUT .../send/{type}/{txnId}, redact, ...): the event each produced,
-- scoped per user and access-token/device so a retried request returns the same event.
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, scope, txn_id)
);
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);
