-- The federation sender (ruma/federation/sender, ruma/storage/federation_sender.py).
-- The database is the queue: every PDU or EDU owed to a server is a row of
-- federation_outbox until that server has acknowledged the transaction carrying it.

-- One row per server we have ever owed something. Everything in federation_outbox for the
-- destination at or below last_acked_position has been delivered (and deleted).
-- The pending_* columns hold the transaction being delivered: its ID, the outbox positions
-- it covers (pending_from < position <= pending_to) and its exact JSON body, so a retry
-- (even after a restart) sends the same transaction with the same ID.
-- failures/retry_at_ms/down_since_ms: the backoff state, for operators and restarts.
CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY,
    last_acked_position BIGINT NOT NULL,
    pending_txn_id TEXT,
    pending_from BIGINT,
    pending_to BIGINT,
    pending_body TEXT,
    failures BIGINT NOT NULL DEFAULT 0,
    retry_at_ms BIGINT,
    down_since_ms BIGINT
);

-- What each destination is owed, in stream order. A stream position gives at most one PDU
-- (event_id set) and a few EDUs (edu_type/edu_content set; seq tells them apart).
-- coalesce_key: of several EDUs with the same key in one transaction only the last is sent
-- (the latest presence of a user, the latest receipt of a user in a room).
-- expires_ms: an EDU not worth sending after this time (typing), or NULL.
CREATE TABLE federation_outbox (
    destination TEXT NOT NULL,
    position BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    event_id TEXT,
    edu_type TEXT,
    edu_content TEXT,
    coalesce_key TEXT,
    expires_ms BIGINT,
    queued_ms BIGINT NOT NULL,
    PRIMARY KEY (destination, position, seq)
);

-- Remote events this server must pass on to the room's other servers on the sender's
-- behalf (a join, leave or knock it received through send_join/send_leave/send_knock as the
-- resident server). origin is the server the event came from: it already has it.
CREATE TABLE federation_relays (
    event_id TEXT PRIMARY KEY,
    origin TEXT NOT NULL
);
