-- Submits on their way to the API, so limits count them in every bot process (not only the one
-- sending): a row lives from the policy check until the task is stored or refused. Rows older than
-- a few minutes belong to a process that died mid-submit and are ignored.
CREATE TABLE submit_slots (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    created_at  REAL NOT NULL
);

CREATE INDEX submit_slots_guild ON submit_slots (guild_id, user_id, created_at);
