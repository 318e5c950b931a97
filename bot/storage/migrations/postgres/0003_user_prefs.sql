-- PostgreSQL twin of ../0003_user_prefs.sql.
CREATE TABLE user_prefs (
    user_id     BIGINT PRIMARY KEY,
    version     TEXT NOT NULL DEFAULT '',
    stylize     INTEGER,
    speed       TEXT NOT NULL DEFAULT '',
    remix       INTEGER NOT NULL DEFAULT 0,
    visibility  TEXT NOT NULL DEFAULT 'channel',
    aspect      TEXT NOT NULL DEFAULT '',
    suffix      TEXT NOT NULL DEFAULT '',
    option_sets TEXT NOT NULL DEFAULT '{}',
    updated_at  DOUBLE PRECISION NOT NULL
);
