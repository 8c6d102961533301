-- The request log table: one row per request (SPEC section 4).
-- Written in the subset that ClickHouse 18.16 and current releases both
-- accept. ReplacingMergeTree with request_id in the sorting key: a record
-- delivered twice (replayed from the gateway's spool after an uncertain
-- delivery) collapses to one row on merge; queries that must be exact
-- before merges use FINAL or count distinct request_id.
CREATE TABLE IF NOT EXISTS request_logs
(
    request_id        String,
    ts_ms             UInt64,
    ts                DateTime,
    org_id            String,
    project_id        String,
    api_key_id        String,
    environment       String,
    provider          String,
    model             String,
    path              String,
    status            UInt16,
    error_code        String,
    stream            UInt8,
    prompt_tokens     UInt64,
    completion_tokens UInt64,
    cached_tokens     UInt64,
    cost_usd          Float64,
    cost_micro_usd    UInt64,
    latency_ms        UInt64,
    ttfb_ms           UInt64,
    session_id        String,
    user_id           String,
    property_keys     Array(String),
    property_values   Array(String),
    gateway_id        String,
    -- When the row reached ClickHouse: the hourly rollup (005_rollup.sql)
    -- recomputes the hours that received rows since its last run.
    inserted_at       DateTime DEFAULT now(),
    -- The kind of request, from its path: `llm` for a call to a model,
    -- `feedback` for a score (POST /v1/feedback), `models` for a model
    -- listing (GET /v1/models), `other` for a path the gateway serves
    -- nothing on. The analytics count `llm` unless asked (`kind=`). An
    -- ALIAS, computed when read: every row has it however it arrived (the
    -- Kafka and direct sides' views insert no kind, and ClickHouse 18.16
    -- refuses a view's insert that lacks a stored column). A table made
    -- before it: upgrade/request_logs.kind.sql.
    kind              String ALIAS multiIf(
        path = '/v1/feedback', 'feedback',
        path = '/v1/models', 'models',
        path IN ('/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/messages'), 'llm',
        'other')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (org_id, project_id, ts, request_id);
