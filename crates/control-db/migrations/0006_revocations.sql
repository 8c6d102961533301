-- Keys a budget revoked stay restorable after the budget is gone, and every
-- revocation is announced by an alert of its own.

-- Whether the key's revocation was a budget's (revoked_by_budget names the
-- budget while it exists; deleting a budget restores its keys, but a key
-- stranded by a deletion before this migration keeps this mark and can be
-- restored through the key). A key revoked by a person is never restorable.
ALTER TABLE api_keys ADD COLUMN revoked_by_a_budget boolean NOT NULL DEFAULT false;
-- The budget's revocation and its `budget.revoke` audit entry were written
-- in one transaction, so they carry the same now().
UPDATE api_keys k SET revoked_by_a_budget = true
 WHERE k.revoked_at IS NOT NULL
   AND (k.revoked_by_budget IS NOT NULL
        OR EXISTS (SELECT 1 FROM audit_log a
                    WHERE a.org_id = k.org_id AND a.action = 'budget.revoke'
                      AND a.at = k.revoked_at));

-- How many times the budget revoked its keys in the period (a breach after
-- a restore revokes again).
ALTER TABLE budget_periods ADD COLUMN revocations integer NOT NULL DEFAULT 0;

-- An alert is a threshold crossed (once per period) or a revocation (each
-- one: `revocation` is its number in the period, 0 for a threshold).
ALTER TABLE alerts ADD COLUMN revocation integer NOT NULL DEFAULT 0;
ALTER TABLE alerts DROP CONSTRAINT alerts_source_id_period_threshold_key;
ALTER TABLE alerts ADD CONSTRAINT alerts_once UNIQUE (source_id, period, threshold, revocation);
