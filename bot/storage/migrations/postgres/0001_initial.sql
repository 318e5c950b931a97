-- PostgreSQL twin of ../0001_initial.sql: same tables, columns and values (integers stay 0/1 where
-- SQLite keeps booleans as integers), so the rest of the bot cannot tell the backends apart.
CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    upstream        TEXT NOT NULL DEFAULT 'default',
    action          TEXT NOT NULL,
    prompt          TEXT NOT NULL DEFAULT '',
    final_prompt    TEXT NOT NULL DEFAULT '',
    user_id         BIGINT NOT NULL,
    guild_id        BIGINT,
    channel_id      BIGINT NOT NULL,
    message_id      BIGINT,
    parent_id       TEXT,
    status          TEXT NOT NULL DEFAULT '',
    progress        INTEGER,
    queue_position  INTEGER,
    image_url       TEXT,
    result_url      TEXT,
    fail_reason     TEXT NOT NULL DEFAULT '',
    buttons         TEXT NOT NULL DEFAULT '[]',
    extra           TEXT NOT NULL DEFAULT '{}',
    locale          TEXT NOT NULL DEFAULT 'en',
    shown           TEXT NOT NULL DEFAULT '',
    delivered       INTEGER NOT NULL DEFAULT 0,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    finished_at     DOUBLE PRECISION
);

CREATE INDEX tasks_in_flight ON tasks (delivered, created_at) WHERE delivered = 0;
CREATE INDEX tasks_user ON tasks (user_id, created_at);
CREATE INDEX tasks_message ON tasks (message_id);

CREATE TABLE clicks (
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    button      TEXT NOT NULL,
    user_id     BIGINT NOT NULL,
    child_id    TEXT,
    created_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (task_id, button)
);

CREATE TABLE meta (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
