-- Task leases (issue 8): several bot processes share the tracking work. A process tracks a task only
-- while it holds the lease (lease_owner = its name, lease_expires in the future, unix seconds) and
-- renews it every few seconds; a lease that ran out is free for any process to claim.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;     -- NULL = nobody
ALTER TABLE tasks ADD COLUMN lease_expires REAL;   -- NULL = free

-- Finding free undelivered tasks (claim_tasks) and our own (renew_leases).
CREATE INDEX tasks_lease ON tasks (lease_expires) WHERE delivered = 0;
CREATE INDEX tasks_lease_owner ON tasks (lease_owner) WHERE delivered = 0;
