-- Application services: delivery state, the per-appservice queue and the transaction in flight.

-- Per appservice: every stream position <= acked_position has been delivered (or was of no
-- interest); last_txn_id is the last transaction ID allocated; failures/retry_at_ms the backoff.
CREATE TABLE appservice_state (
    as_id TEXT PRIMARY KEY,
    acked_position BIGINT NOT NULL,
    last_txn_id BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    retry_at_ms BIGINT
);

-- What each appservice is owed, in stream order: a room event (event_id), or an ephemeral
-- event / to-device message whose JSON was fixed when it was queued (content).
CREATE TABLE appservice_queue (
    as_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    event_id TEXT,
    content TEXT,
    PRIMARY KEY (as_id, position, seq)
);

-- The one transaction in flight per appservice: its ID and the last queue item it holds.
-- It is sent again, with the same ID and items, until the appservice accepts it.
CREATE TABLE appservice_txns (
    as_id TEXT PRIMARY KEY,
    txn_id BIGINT NOT NULL,
    last_position BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
