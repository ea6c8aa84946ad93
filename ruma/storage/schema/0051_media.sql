-- The media repository (ruma/storage/media.py). File contents live on disk under the
-- media store path; these tables say what each file is.

-- Media uploaded here. A row created by POST /media/v1/create is pending (uploaded_ts NULL)
-- until the content arrives, and expires unused at expires_ts. authenticated: the media is
-- only served by the authenticated (client v1 and federation) endpoints.
CREATE TABLE local_media (
    media_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    content_type TEXT,
    upload_name TEXT,
    media_length BIGINT,
    sha256 TEXT,
    created_ts BIGINT NOT NULL,
    uploaded_ts BIGINT,
    expires_ts BIGINT,
    authenticated BOOLEAN NOT NULL
);
CREATE INDEX local_media_user_created ON local_media (user_id, created_ts);

-- Media of other servers, cached here under a local file_id.
CREATE TABLE remote_media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    content_type TEXT,
    upload_name TEXT,
    media_length BIGINT NOT NULL,
    file_id TEXT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    authenticated BOOLEAN NOT NULL,
    PRIMARY KEY (origin, media_id)
);

-- Thumbnails made here, of local (origin '') and cached remote media.
CREATE TABLE media_thumbnails (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    method TEXT NOT NULL,
    content_type TEXT NOT NULL,
    media_length BIGINT NOT NULL,
    file_id TEXT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method)
);

-- URL previews, cached (og is the JSON answer).
CREATE TABLE url_previews (
    url TEXT PRIMARY KEY,
    og TEXT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
