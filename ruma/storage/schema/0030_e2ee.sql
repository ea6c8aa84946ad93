-- End-to-end encryption: what devices publish, the messages they send each other, and
-- server-side key backups (ruma/storage/e2ee.py, ruma/storage/key_backup.py). The server
-- stores and relays these; it never decrypts anything.

-- A device's identity keys (POST /keys/upload device_keys), exactly as signed by the device.
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Unclaimed one-time keys. upload_seq orders uploads: the oldest upload is claimed first.
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    upload_seq BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_claim ON e2e_one_time_keys (user_id, device_id, algorithm, upload_seq);

-- At most one fallback key per device and algorithm; used once it has been claimed.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: key_type is master, self_signing or user_signing.
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded with POST /keys/signatures/upload, merged into the signed key when it
-- is served. target_key_id is a device ID or a cross-signing public key.
CREATE TABLE e2e_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- To-device messages waiting for a local device, in stream order. delivered_in is the
-- next_batch of the last /sync response that carried the message (NULL: not sent yet); the
-- message is deleted once the device syncs from a token at or past it.
CREATE TABLE device_inbox (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    message_json TEXT NOT NULL,
    delivered_in BIGINT,
    PRIMARY KEY (user_id, device_id, stream_pos)
);

-- sendToDevice transaction IDs already handled, per sending device (or access token).
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, sender_key, txn_id)
);

-- To-device messages for other servers' users, one row per destination server and request.
-- Each takes a stream position (a stream row of kind to_device, ref = destination) from
-- which the federation sender builds one m.direct_to_device EDU.
CREATE TABLE device_federation_outbox (
    stream_pos BIGINT PRIMARY KEY,
    destination TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_type TEXT NOT NULL,
    message_id TEXT NOT NULL,
    messages_json TEXT NOT NULL
);

-- Server-side key backup versions. version is allocated per user (1, 2, ...); etag changes
-- whenever the keys stored in the version change. A deleted version keeps its row so its
-- number is never reused.
CREATE TABLE e2e_room_key_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, version)
);

-- The backed-up (client-encrypted) megolm session keys of a backup version.
CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BOOLEAN NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
