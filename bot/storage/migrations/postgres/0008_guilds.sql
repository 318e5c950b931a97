-- PostgreSQL twin of ../0008_guilds.sql: tasks shown in DMs keep their server; approved servers.
ALTER TABLE tasks ADD COLUMN in_dm INTEGER NOT NULL DEFAULT 0;

CREATE INDEX tasks_dm_user ON tasks (user_id, created_at) WHERE guild_id IS NULL;

CREATE TABLE approved_guilds (
    guild_id     BIGINT PRIMARY KEY,
    approved_by  BIGINT NOT NULL,
    approved_at  DOUBLE PRECISION NOT NULL
);

INSERT INTO approved_guilds (guild_id, approved_by, approved_at)
SELECT guild_id, 0, EXTRACT(EPOCH FROM now()) FROM (
    SELECT guild_id FROM tasks WHERE guild_id IS NOT NULL
    UNION SELECT guild_id FROM guild_settings
    UNION SELECT guild_id FROM api_keys WHERE guild_id IS NOT NULL
) AS used;
