-- The IRC bridge's state (ruma.bridges.irc.store): restored when Ruma restarts.

-- Channels bridged to rooms: static (from the config) or dynamic (an alias was joined).
CREATE TABLE irc_portals (
    network TEXT NOT NULL,
    channel_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    room_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (network, channel_key)
);
CREATE INDEX irc_portals_room ON irc_portals (room_id);

-- Direct-message rooms between a Matrix user and an IRC nick.
CREATE TABLE irc_dm_rooms (
    network TEXT NOT NULL,
    matrix_user TEXT NOT NULL,
    nick_key TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (network, matrix_user, nick_key)
);
CREATE INDEX irc_dm_rooms_room ON irc_dm_rooms (room_id);

-- Each Matrix user's IRC connection (puppet) per network and the nick it last had.
CREATE TABLE irc_puppets (
    network TEXT NOT NULL,
    user_id TEXT NOT NULL,
    nick TEXT NOT NULL,
    wanted_nick TEXT,
    last_active_ts BIGINT NOT NULL,
    PRIMARY KEY (network, user_id)
);

-- Virtual Matrix users standing for IRC nicks, with the nick as last seen.
CREATE TABLE irc_virtual_users (
    user_id TEXT PRIMARY KEY,
    network TEXT NOT NULL,
    nick TEXT NOT NULL
);

-- Messages relayed either way: Matrix event <-> IRC (msgid when the server gives one).
CREATE TABLE irc_messages (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    network TEXT NOT NULL,
    target TEXT NOT NULL,
    nick TEXT NOT NULL,
    msgid TEXT,
    body TEXT NOT NULL,
    direction TEXT NOT NULL,
    ts BIGINT NOT NULL
);
CREATE INDEX irc_messages_msgid ON irc_messages (network, msgid);

-- Each Matrix user's admin room with the bridge bot.
CREATE TABLE irc_admin_rooms (
    user_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL
);
CREATE INDEX irc_admin_rooms_room ON irc_admin_rooms (room_id);
