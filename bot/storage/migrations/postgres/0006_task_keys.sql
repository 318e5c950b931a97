-- PostgreSQL twin of ../0006_task_keys.sql: task rows keyed by (upstream, task id), clicks by the
-- same key (a new column at the end, as SQLite's rebuilt table has it).
ALTER TABLE clicks DROP CONSTRAINT clicks_task_id_fkey;
ALTER TABLE clicks ADD COLUMN upstream TEXT;
UPDATE clicks SET upstream = tasks.upstream FROM tasks WHERE tasks.id = clicks.task_id;
ALTER TABLE clicks ALTER COLUMN upstream SET NOT NULL;
ALTER TABLE clicks DROP CONSTRAINT clicks_pkey;
ALTER TABLE clicks ADD PRIMARY KEY (upstream, task_id, button);

ALTER TABLE tasks DROP CONSTRAINT tasks_pkey;
ALTER TABLE tasks ADD PRIMARY KEY (upstream, id);
ALTER TABLE clicks ADD FOREIGN KEY (upstream, task_id) REFERENCES tasks (upstream, id) ON DELETE CASCADE;

CREATE INDEX tasks_id ON tasks (id);
