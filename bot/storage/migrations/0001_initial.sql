-- Tasks the bot submitted, with where their message lives and what it last showed.
CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,          -- upstream task id (always text)
    upstream        TEXT NOT NULL DEFAULT 'default',
    action          TEXT NOT NULL,             -- IMAGINE, UPSCALE, DESCRIBE, ... (unknown kept as text)
    prompt          TEXT NOT NULL DEFAULT '',
    final_prompt    TEXT NOT NULL DEFAULT '',
    user_id         INTEGER NOT NULL,
    guild_id        INTEGER,
    channel_id      INTEGER NOT NULL,
    message_id      INTEGER,
    parent_id       TEXT,
    status          TEXT NOT NULL DEFAULT '',
    progress        INTEGER,
    queue_position  INTEGER,
    image_url       TEXT,                      -- upstream link (preview or final)
    result_url      TEXT,                      -- our re-uploaded attachment
    fail_reason     TEXT NOT NULL DEFAULT '',
    buttons         TEXT NOT NULL DEFAULT '[]',-- JSON list of upstream buttons (long customIds live here)
    extra           TEXT NOT NULL DEFAULT '{}',-- JSON: describe candidates, options...
    locale          TEXT NOT NULL DEFAULT 'en',
    shown           TEXT NOT NULL DEFAULT '',  -- fingerprint of what the message shows now
    delivered       INTEGER NOT NULL DEFAULT 0,-- 1 once the final state is on Discord
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    finished_at     REAL
);

CREATE INDEX tasks_in_flight ON tasks (delivered, created_at) WHERE delivered = 0;
CREATE INDEX tasks_user ON tasks (user_id, created_at);
CREATE INDEX tasks_message ON tasks (message_id);

-- The last submitted click per button, so two clicks at once submit one action.
CREATE TABLE clicks (
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    button      TEXT NOT NULL,                 -- our short button key
    user_id     INTEGER NOT NULL,
    child_id    TEXT,                          -- the task the click created, once known
    created_at  REAL NOT NULL,
    PRIMARY KEY (task_id, button)
);

-- Small key/value facts the bot keeps about itself (e.g. the hash of the last synced command tree).
CREATE TABLE meta (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
