-- PostgreSQL twin of ../0007_interaction_token.sql: the interaction token a task's message is edited
-- through for its first 14 minutes (a secret, cleared once the task is delivered).
ALTER TABLE tasks ADD COLUMN interaction_token TEXT;
ALTER TABLE tasks ADD COLUMN interaction_at DOUBLE PRECISION;
