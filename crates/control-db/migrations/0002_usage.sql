-- Spend and request counts exchanged between gateway replicas (SPEC section
-- 3: N replicas admit one cap, not N). Each replica upserts its own
-- cumulative figures, about once a second, under its own replica id (new at
-- every start), and reads the others' back. Rows are never incremented, only
-- replaced, so a retried write cannot count twice. A claim is the most a
-- replica may reach before its next exchange (src/limits/shared.rs).

CREATE TABLE replicas (
    replica    text PRIMARY KEY,
    last_seen  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE replica_usage (
    replica            text NOT NULL,
    org_id             uuid NOT NULL,
    environment        floopy_environment NOT NULL,
    -- year * 100 + month (UTC) of settled_micro_usd
    month              integer NOT NULL CHECK (month BETWEEN 197001 AND 999912),
    settled_micro_usd  bigint NOT NULL CHECK (settled_micro_usd >= 0),
    -- epoch minute of rpm_count
    minute             bigint NOT NULL,
    rpm_count          integer NOT NULL CHECK (rpm_count >= 0),
    spend_claim        bigint NOT NULL DEFAULT 0 CHECK (spend_claim >= 0),
    rpm_claim          integer NOT NULL DEFAULT 0 CHECK (rpm_claim >= 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, environment, month, replica)
);
CREATE INDEX replica_usage_month ON replica_usage (month);

CREATE TABLE replica_project_usage (
    replica            text NOT NULL,
    org_id             uuid NOT NULL,
    project_id         uuid NOT NULL,
    month              integer NOT NULL CHECK (month BETWEEN 197001 AND 999912),
    settled_micro_usd  bigint NOT NULL CHECK (settled_micro_usd >= 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, project_id, month, replica)
);
CREATE INDEX replica_project_usage_month ON replica_project_usage (month);
