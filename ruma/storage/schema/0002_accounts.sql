-- Local accounts, their devices and access tokens (ruma/storage/accounts.py).

-- One row per local user ID ever registered: deactivated users keep their row so the ID is
-- never handed out again. password_hash is NULL for accounts that cannot log in with a
-- password (appservice users, guests, deactivated accounts).
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    created_ts BIGINT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE,
    appservice_id TEXT,
    displayname TEXT,
    avatar_url TEXT
);

-- A user's devices, with when and from where each was last seen.
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Access tokens are stored only as the SHA-256 of the token (hex): a leaked database does
-- not leak usable tokens. id is a random 62-bit integer chosen by the application.
CREATE TABLE access_tokens (
    id BIGINT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT,
    created_ts BIGINT NOT NULL
);
CREATE INDEX access_tokens_user_device ON access_tokens (user_id, device_id);

-- How many completed registrations used each configured registration token.
CREATE TABLE registration_token_uses (
    token TEXT PRIMARY KEY,
    completed BIGINT NOT NULL
);

-- User IDs are unique regardless of case (registration compares LOWER(user_id)).
CREATE INDEX users_lower_id ON users (LOWER(user_id));
