-- API keys added from Discord (/mjadmin key add). The secret is a Fernet token: the key that decrypts
-- it comes from KEY_ENCRYPTION_KEY and is never stored here. guild_id NULL = a global key (bot owner).
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- upstream name "key:<id>" in tasks.upstream
    guild_id    INTEGER,
    label       TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    auth_style  TEXT NOT NULL DEFAULT 'bearer',    -- bearer | mj-api-secret | raw
    mode        TEXT NOT NULL DEFAULT '',          -- '' | fast | relax | turbo
    priority    INTEGER NOT NULL DEFAULT 0,        -- higher is tried first
    token       TEXT NOT NULL,                     -- Fernet(secret)
    last4       TEXT NOT NULL DEFAULT '',          -- shown in listings
    enabled     INTEGER NOT NULL DEFAULT 1,
    healthy     INTEGER NOT NULL DEFAULT 1,        -- 0 after repeated refusals; skipped until enabled/tested
    failures    INTEGER NOT NULL DEFAULT 0,        -- consecutive refused submits
    last_error  TEXT NOT NULL DEFAULT '',
    added_by    INTEGER NOT NULL,                  -- told once (DM) when the key turns unhealthy
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE UNIQUE INDEX api_keys_label ON api_keys (IFNULL(guild_id, 0), label COLLATE NOCASE);

-- Per-guild limits and rules (/mjadmin settings). 0 means "no limit" for every number.
CREATE TABLE guild_settings (
    guild_id          INTEGER PRIMARY KEY,
    daily_quota       INTEGER NOT NULL DEFAULT 0,  -- tasks per user per UTC day
    user_concurrent   INTEGER NOT NULL DEFAULT 0,  -- unfinished tasks per user
    guild_concurrent  INTEGER NOT NULL DEFAULT 0,  -- unfinished tasks in the guild
    cooldown          INTEGER NOT NULL DEFAULT 0,  -- seconds between one user's submits
    allowed_channels  TEXT NOT NULL DEFAULT '[]',  -- JSON list of channel ids; empty = all channels
    button_access     TEXT NOT NULL DEFAULT 'anyone', -- anyone | owner (who may click result buttons)
    default_mode      TEXT NOT NULL DEFAULT '',    -- speed mode for keys without their own
    banned_words      TEXT NOT NULL DEFAULT '[]',  -- JSON list, checked before submit
    nsfw_only         INTEGER NOT NULL DEFAULT 0,  -- 1 = only in age-restricted channels
    updated_at        REAL NOT NULL
);

-- Limits and stats count a guild's tasks by time and by user.
CREATE INDEX tasks_guild ON tasks (guild_id, created_at);
CREATE INDEX tasks_guild_user_running ON tasks (guild_id, user_id) WHERE delivered = 0;
