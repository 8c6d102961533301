-- Quality feedback on a request: a score in [0, 1] (and an optional
-- comment) given after the fact by the application, with its API key
-- (`POST /v1/feedback` on the gateway), or by a project member from the
-- control plane. A request may be scored again: the last score counts
-- (queries take argMax(score, ts_ms) per request). Joined to request_logs
-- by (org_id, request_id): a score counts only for a request of its own org,
-- and the request's project (not the scorer's) is the one it belongs to.
-- One partition: a request rescored months later still replaces its score
-- on merge; the table is small next to request_logs.
CREATE TABLE IF NOT EXISTS feedback
(
    feedback_id String,
    request_id  String,
    ts_ms       UInt64,
    ts          DateTime,
    org_id      String,
    project_id  String,
    api_key_id  String,
    user_id     String,
    score       Float64,
    comment     String,
    -- When the row reached ClickHouse (see request_logs.inserted_at).
    inserted_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(ts_ms)
PARTITION BY tuple()
ORDER BY (org_id, request_id, feedback_id);
