-- Issue 15 items 3 and 7: whose rules apply, and which servers may use the bot.

-- A task made in a server keeps that server in guild_id (its rules, its key, where it may be acted
-- on) even when its messages go to the member's DMs ("results in my DMs"); in_dm = 1 says that
-- channel_id is then that DM. A task made in DMs has guild_id NULL.
ALTER TABLE tasks ADD COLUMN in_dm INTEGER NOT NULL DEFAULT 0;

-- The DM rules count one member's tasks made in DMs.
CREATE INDEX tasks_dm_user ON tasks (user_id, created_at) WHERE guild_id IS NULL;

-- Servers a bot owner approved with /mjadmin server approve (ALLOWED_GUILDS and DEV_GUILD_ID are
-- settings, not rows). The bot ignores servers that are neither.
CREATE TABLE approved_guilds (
    guild_id     INTEGER PRIMARY KEY,
    approved_by  INTEGER NOT NULL,  -- 0: approved by this migration
    approved_at  REAL NOT NULL
);

-- Servers that used the bot before approvals existed keep working after the upgrade.
INSERT INTO approved_guilds (guild_id, approved_by, approved_at)
SELECT guild_id, 0, CAST(strftime('%s', 'now') AS REAL) FROM (
    SELECT guild_id FROM tasks WHERE guild_id IS NOT NULL
    UNION SELECT guild_id FROM guild_settings
    UNION SELECT guild_id FROM api_keys WHERE guild_id IS NOT NULL
);
