-- Alerts, SPEC section 8: budgets over a day, a week or a month; alert rules
-- (a USD amount over a period); every alert fired kept in a durable outbox
-- and delivered to a webhook from there.

-- Spend per project and UTC day, exchanged by the gateways like the monthly
-- rows (each replica replaces its own cumulative figure for the day, so a
-- retried exchange never counts twice). A day, a week or a month of spend is
-- the sum of its days. `day` is year * 10000 + month * 100 + day (20261130).
CREATE TABLE replica_project_daily_usage (
    replica            text NOT NULL,
    org_id             uuid NOT NULL,
    project_id         uuid NOT NULL,
    day                integer NOT NULL CHECK (day BETWEEN 19700101 AND 99991231),
    settled_micro_usd  bigint NOT NULL CHECK (settled_micro_usd >= 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, day, project_id, replica)
);
CREATE INDEX replica_project_daily_usage_day ON replica_project_daily_usage (day);

-- Periods: `period` in budget_periods is the period's first day
-- (year * 10000 + month * 100 + day) for every kind of period.
ALTER TABLE budgets DROP CONSTRAINT budgets_period;
ALTER TABLE budgets ADD CONSTRAINT budgets_period CHECK (period IN ('day', 'week', 'month'));
UPDATE budget_periods SET period = period * 100 + 1 WHERE period < 1000000;
ALTER TABLE budgets
    ADD COLUMN webhook_url text
        CONSTRAINT budgets_webhook_url_length CHECK (char_length(webhook_url) BETWEEN 1 AND 2000),
    ADD COLUMN webhook_secret text
        CONSTRAINT budgets_webhook_secret_length CHECK (char_length(webhook_secret) BETWEEN 16 AND 200);

-- The unused first draft of alerts.
DROP TABLE alerts;

CREATE TABLE alert_rules (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id          uuid,
    name                text NOT NULL
        CONSTRAINT alert_rules_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    threshold_micro_usd bigint NOT NULL
        CONSTRAINT alert_rules_threshold CHECK (threshold_micro_usd >= 0),
    period              text NOT NULL DEFAULT 'month'
        CONSTRAINT alert_rules_period CHECK (period IN ('day', 'week', 'month')),
    webhook_url         text NOT NULL
        CONSTRAINT alert_rules_webhook_url_length CHECK (char_length(webhook_url) BETWEEN 1 AND 2000),
    webhook_secret      text NOT NULL
        CONSTRAINT alert_rules_webhook_secret_length CHECK (char_length(webhook_secret) BETWEEN 16 AND 200),
    created_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON DELETE CASCADE
);
CREATE INDEX alert_rules_org ON alert_rules (org_id, id);

-- Every alert fired: one row per (budget or rule, period, threshold), so the
-- unique key is what makes an alert fire once, whichever replica evaluates.
-- It is also the webhook outbox: `state` pending until delivered, retried at
-- `next_attempt_at` (a claim by a sender pushes it past the delivery
-- timeout, so a sender that dies mid-delivery leaves it to the next one);
-- failed once the retries are exhausted; recorded when there is no webhook.
CREATE TABLE alerts (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id        uuid,
    source            text NOT NULL CHECK (source IN ('budget', 'rule')),
    source_id         uuid NOT NULL,
    period            integer NOT NULL,
    -- The budget's threshold in percent; 100 for an alert rule.
    threshold         integer NOT NULL,
    body              jsonb NOT NULL,
    webhook_url       text,
    state             text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'recorded')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_attempt_at   timestamptz,
    last_status       integer,
    last_error        text,
    delivered_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_id, period, threshold)
);
CREATE INDEX alerts_org ON alerts (org_id, id);
CREATE INDEX alerts_due ON alerts (next_attempt_at) WHERE state = 'pending';
