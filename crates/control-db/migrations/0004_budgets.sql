-- Budgets, SPEC section 8: an amount over a period for an org or one of its
-- projects, with alert thresholds, and on breach either an alert or the
-- revocation of the scope's keys. The spend is the gateways' exchanged,
-- exact spend (replica_project_usage); floopy-control's evaluator compares
-- it, once per tick across its replicas (an advisory lock).

ALTER TABLE budgets RENAME COLUMN monthly_limit_micro_usd TO amount_micro_usd;
ALTER TABLE budgets DROP COLUMN auto_revoke;
ALTER TABLE budgets
    ADD COLUMN name text NOT NULL DEFAULT 'Budget'
        CONSTRAINT budgets_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    ADD COLUMN period text NOT NULL DEFAULT 'month'
        CONSTRAINT budgets_period CHECK (period IN ('month')),
    ADD COLUMN thresholds integer[] NOT NULL DEFAULT '{50,80,100}'
        CONSTRAINT budgets_thresholds CHECK (
            cardinality(thresholds) BETWEEN 1 AND 10
            AND 1 <= ALL (thresholds) AND 1000 >= ALL (thresholds)),
    ADD COLUMN action text NOT NULL DEFAULT 'alert'
        CONSTRAINT budgets_action CHECK (action IN ('alert', 'alert_and_revoke'));
CREATE INDEX budgets_org ON budgets (org_id, id);

-- What the evaluator saw of a budget in one period: the thresholds already
-- crossed (each fires once per period) and when the budget was breached.
CREATE TABLE budget_periods (
    budget_id   uuid NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
    period      integer NOT NULL,
    spent_micro_usd bigint NOT NULL DEFAULT 0,
    fired       integer[] NOT NULL DEFAULT '{}',
    breached_at timestamptz,
    PRIMARY KEY (budget_id, period)
);

-- The budget that revoked a key (restoring it clears both).
ALTER TABLE api_keys ADD COLUMN revoked_by_budget uuid REFERENCES budgets (id) ON DELETE SET NULL;
