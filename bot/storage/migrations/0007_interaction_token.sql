-- Issue 16: a task started by a command or a click remembers its interaction's token and when the
-- interaction was created, so its message is edited through that token (not counted against the
-- bot-wide limit) for 14 minutes, also after a restart. A secret: cleared once the task is delivered.
ALTER TABLE tasks ADD COLUMN interaction_token TEXT;
ALTER TABLE tasks ADD COLUMN interaction_at REAL;
