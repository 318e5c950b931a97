-- /settings and /prefer: one row per user (settings follow the user across servers, like Midjourney's).
CREATE TABLE user_prefs (
    user_id     INTEGER PRIMARY KEY,
    version     TEXT NOT NULL DEFAULT '',
    stylize     INTEGER,
    speed       TEXT NOT NULL DEFAULT '',
    remix       INTEGER NOT NULL DEFAULT 0,
    visibility  TEXT NOT NULL DEFAULT 'channel',
    aspect      TEXT NOT NULL DEFAULT '',
    suffix      TEXT NOT NULL DEFAULT '',
    option_sets TEXT NOT NULL DEFAULT '{}',   -- JSON {name: value}, at most 20
    updated_at  REAL NOT NULL
);
