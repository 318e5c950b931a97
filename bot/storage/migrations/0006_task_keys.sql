-- Task rows keyed by (upstream, task id) (issue 15): an id is unique only on the server that gave
-- it, so a server answering with another task's id creates its own row instead of replacing the
-- other's. Clicks follow their task by the same key. SQLite cannot change a primary key in place:
-- both tables are rebuilt (same columns, same order) and the indexes made again.
CREATE TABLE tasks_keyed (
    id              TEXT NOT NULL,             -- upstream task id (always text)
    upstream        TEXT NOT NULL DEFAULT 'default',
    action          TEXT NOT NULL,
    prompt          TEXT NOT NULL DEFAULT '',
    final_prompt    TEXT NOT NULL DEFAULT '',
    user_id         INTEGER NOT NULL,
    guild_id        INTEGER,
    channel_id      INTEGER NOT NULL,
    message_id      INTEGER,
    parent_id       TEXT,                      -- on the same upstream
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
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    finished_at     REAL,
    lease_owner     TEXT,
    lease_expires   REAL,
    PRIMARY KEY (upstream, id)
);
INSERT INTO tasks_keyed SELECT * FROM tasks;

CREATE TABLE clicks_keyed (
    task_id     TEXT NOT NULL,
    button      TEXT NOT NULL,
    user_id     INTEGER NOT NULL,
    child_id    TEXT,
    created_at  REAL NOT NULL,
    upstream    TEXT NOT NULL,                 -- the task's upstream: (upstream, task_id) names it
    PRIMARY KEY (upstream, task_id, button),
    FOREIGN KEY (upstream, task_id) REFERENCES tasks_keyed (upstream, id) ON DELETE CASCADE
);
INSERT INTO clicks_keyed (task_id, button, user_id, child_id, created_at, upstream)
    SELECT c.task_id, c.button, c.user_id, c.child_id, c.created_at, t.upstream
    FROM clicks AS c JOIN tasks AS t ON t.id = c.task_id;

DROP TABLE clicks;
DROP TABLE tasks;
ALTER TABLE tasks_keyed RENAME TO tasks;    -- clicks' foreign key follows the new name
ALTER TABLE clicks_keyed RENAME TO clicks;

CREATE INDEX tasks_in_flight ON tasks (delivered, created_at) WHERE delivered = 0;
CREATE INDEX tasks_user ON tasks (user_id, created_at);
CREATE INDEX tasks_message ON tasks (message_id);
CREATE INDEX tasks_guild ON tasks (guild_id, created_at);
CREATE INDEX tasks_guild_user_running ON tasks (guild_id, user_id) WHERE delivered = 0;
CREATE INDEX tasks_lease ON tasks (lease_expires) WHERE delivered = 0;
CREATE INDEX tasks_lease_owner ON tasks (lease_owner) WHERE delivered = 0;
-- Old buttons carry only the task id: find its rows (one, or refuse when several upstreams have it).
CREATE INDEX tasks_id ON tasks (id);
