-- The hourly rollup of request_logs (with each request's last score), the
-- analytics' fast path: the widgets, the all-projects table, cost by
-- environment and the time series read it, counting whole UTC hours (their
-- range rounded out to the hour), the current hour as of the last run.
--
-- floopy-control keeps it (crates/control/src/analytics/rollup.rs): every
-- few seconds one replica finds the (org, hour) pairs that received request
-- logs or scores since its last run (their inserted_at), recomputes each
-- such hour from request_logs FINAL (so a replayed record counts once) and
-- inserts the hour's rows with a newer version; ReplacingMergeTree keeps
-- the newest, and readers take each row's newest version (argMax). An hour's latencies are kept as a
-- histogram (each distinct latency in ms and its count), from which the
-- exact percentiles of any set of hours are read.
CREATE TABLE IF NOT EXISTS request_rollup
(
    org_id            String,
    -- Epoch hour: intDiv(ts_ms, 3600000).
    hour              UInt32,
    project_id        String,
    environment       String,
    requests          UInt64,
    prompt_tokens     UInt64,
    completion_tokens UInt64,
    cost_micro_usd    UInt64,
    errors            UInt64,
    latency_sum_ms    UInt64,
    latency_values    Array(UInt64),
    latency_counts    Array(UInt64),
    -- Scored requests of the hour and the sum of their last scores.
    ratings           UInt64,
    score_sum         Float64,
    -- When the row was computed (ClickHouse's clock): the next run looks
    -- for rows inserted since, less a margin.
    computed_at       DateTime,
    version           UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY intDiv(hour, 720)
ORDER BY (org_id, hour, project_id, environment);
