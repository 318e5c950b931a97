-- PostgreSQL twin of ../0004_leases.sql: task leases shared by several bot processes.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_expires DOUBLE PRECISION;

CREATE INDEX tasks_lease ON tasks (lease_expires) WHERE delivered = 0;
CREATE INDEX tasks_lease_owner ON tasks (lease_owner) WHERE delivered = 0;
