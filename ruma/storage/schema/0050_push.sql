-- Push: users' own push rules and their changes to the defaults, the notifications computed
-- for each new event (which sync counts and pushers deliver), and pushers
-- (ruma/storage/push.py).

-- Rules a user created. Within (user_id, kind), a higher priority is evaluated first.
-- conditions (override/underride) and actions are JSON; pattern is for content rules.
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    priority BIGINT NOT NULL,
    conditions TEXT,
    pattern TEXT,
    actions TEXT NOT NULL,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- A user's settings on any rule: enabled (NULL: unchanged) and, for server-default rules,
-- their actions (JSON; NULL: the default actions).
CREATE TABLE push_rule_settings (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled BOOLEAN,
    actions TEXT,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- One row per event that notifies a user (its rule's actions contain "notify").
-- stream_pos is the event's stream position; thread_id its thread root or 'main'.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    thread_id TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    actions TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, stream_pos);
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_pos);

-- Pushers (POST /pushers/set). A pusher set with an access token lives as long as that
-- token (access_token_id NULL: set by an application service, kept until deleted).
-- last_stream_pos: the newest notification delivered; failing_since: when delivery
-- started failing (milliseconds, NULL while healthy).
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    kind TEXT NOT NULL,
    access_token_id BIGINT,
    device_id TEXT,
    pushkey_ts BIGINT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    last_stream_pos BIGINT NOT NULL,
    failing_since BIGINT,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_key ON pushers (app_id, pushkey);
