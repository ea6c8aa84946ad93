-- Room events, room state (as state groups with deltas), current state and local memberships.
-- Written only by ruma/rooms (the single room writer) through ruma/storage/events.py.

-- Every PDU we hold. json is the full PDU exactly as built or received (no local unsigned).
-- stream_position is NULL for events that are not in the room timeline: outliers,
-- soft-failed and rejected events.
CREATE TABLE events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    stream_position BIGINT UNIQUE,
    depth BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json TEXT NOT NULL,
    rejected_reason TEXT,
    outlier BOOLEAN NOT NULL,
    redacted_by TEXT,
    soft_failed BOOLEAN NOT NULL DEFAULT FALSE,
    -- For state events: the event this one replaced in the state before it (prev_content).
    replaces_state TEXT
);
CREATE INDEX events_room_pos ON events (room_id, stream_position);
CREATE INDEX events_room_depth ON events (room_id, depth, stream_position);

-- The room's DAG edges, for backward extremities and federation's get_missing_events.
CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

-- Events in a room that no other event of ours points at yet: the prev_events of the next one.
CREATE TABLE forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Redactions that arrived before the event they redact.
CREATE TABLE pending_redactions (
    redacts TEXT NOT NULL,
    redaction_id TEXT NOT NULL,
    PRIMARY KEY (redacts, redaction_id)
);

-- State groups: a state is its prev_group's state plus delta rows, or (prev_group NULL)
-- a full snapshot. chain_length counts the deltas back to the snapshot; approx_size is an
-- upper bound of the number of entries in the full state (it decides when to snapshot).
-- A delta row with event_id NULL removes the key (state resolution may drop one).
CREATE TABLE state_groups (
    state_group BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group BIGINT,
    chain_length BIGINT NOT NULL,
    approx_size BIGINT NOT NULL
);
CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    PRIMARY KEY (state_group, type, state_key)
);

-- For each non-outlier event: the state group of the room state after it (state_group),
-- before it (state_group_before) and of the room's current (resolved) state once it was
-- persisted (room_state_group), the last being what get_state_ids_at reads.
CREATE TABLE event_state (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    state_group BIGINT NOT NULL,
    state_group_before BIGINT NOT NULL,
    room_state_group BIGINT NOT NULL
);

-- The room's current state (the resolved state of its forward extremities).
CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_member ON current_state (type, state_key);

-- The latest membership of each local user in each room (joined_rooms, sync's room lists).
-- stream_position is the position at which it took effect.
CREATE TABLE local_memberships (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_position BIGINT NOT NULL,
    forgotten BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX local_memberships_pos ON local_memberships (user_id, stream_position);

-- Every membership change of a local user, in stream order (sync's incremental room lists).
CREATE TABLE local_membership_changes (
    stream_position BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, stream_position, room_id)
);

-- Rooms this server knows. current_state_group is the group of the current state.
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT,
    is_public BOOLEAN NOT NULL,
    current_state_group BIGINT
);

-- The last state group ID handed out (one row); UPDATE ... value + 1 allocates the next.
CREATE TABLE state_group_counter (
    value BIGINT NOT NULL
);
INSERT INTO state_group_counter (value) VALUES (0);
