-- Session features (ruma/storage/sessions.py): access tokens that expire (issued with a
-- refresh token), refresh tokens, one-time login tokens (m.login.token) and OpenID tokens.

-- When an access token stops working (NULL: never). Tokens issued with a refresh token get one.
ALTER TABLE access_tokens ADD COLUMN expires_ts BIGINT;

-- Refresh tokens (stored hashed, like access tokens), each bound to the access token it was
-- issued with; using one deletes both and issues a new pair.
CREATE TABLE refresh_tokens (
    id BIGINT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    access_token_id BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT
);
CREATE INDEX refresh_tokens_user_device ON refresh_tokens (user_id, device_id);

-- Short-lived, single-use login tokens (POST /login/get_token, then m.login.token).
CREATE TABLE login_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);

-- OpenID tokens (POST /user/{userId}/openid/request_token) that other services check with
-- GET /_matrix/federation/v1/openid/userinfo.
CREATE TABLE openid_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
