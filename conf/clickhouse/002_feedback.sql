-- Quality feedback on a request (a score given after the fact), joined to
-- request_logs by request_id for per-project quality metrics.
CREATE TABLE IF NOT EXISTS feedback
(
    request_id  String,
    org_id      String,
    project_id  String,
    score       Float64,
    comment     String,
    ts          DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (org_id, project_id, request_id);
