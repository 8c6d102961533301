-- The Kafka side: a Kafka engine table reading the gateway's topic, and the
-- materialized view that moves its rows into request_logs; the same for
-- feedback and its topic.
-- {{KAFKA_BROKERS}}, {{KAFKA_TOPIC}}, {{KAFKA_FEEDBACK_TOPIC}} and
-- {{KAFKA_GROUP}} are replaced at
-- deployment (scripts/clickhouse.sh does it). The positional engine
-- arguments are the form both ClickHouse 18.16 and current releases accept.
-- Every message the gateway writes is one JSON object with exactly these
-- fields (a test parses every record it writes): an old ClickHouse stops at
-- the first message it cannot parse.
CREATE TABLE IF NOT EXISTS request_logs_kafka
(
    request_id        String,
    ts_ms             UInt64,
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
    gateway_id        String
)
ENGINE = Kafka('{{KAFKA_BROKERS}}', '{{KAFKA_TOPIC}}', '{{KAFKA_GROUP}}', 'JSONEachRow');

CREATE MATERIALIZED VIEW IF NOT EXISTS request_logs_mv TO request_logs AS
SELECT
    request_id,
    ts_ms,
    toDateTime(intDiv(ts_ms, 1000)) AS ts,
    org_id,
    project_id,
    api_key_id,
    environment,
    provider,
    model,
    path,
    status,
    error_code,
    stream,
    prompt_tokens,
    completion_tokens,
    cached_tokens,
    cost_usd,
    cost_micro_usd,
    latency_ms,
    ttfb_ms,
    session_id,
    user_id,
    property_keys,
    property_values,
    gateway_id,
    now() AS inserted_at
FROM request_logs_kafka;

CREATE TABLE IF NOT EXISTS feedback_kafka
(
    feedback_id String,
    request_id  String,
    ts_ms       UInt64,
    org_id      String,
    project_id  String,
    api_key_id  String,
    user_id     String,
    score       Float64,
    comment     String
)
ENGINE = Kafka('{{KAFKA_BROKERS}}', '{{KAFKA_FEEDBACK_TOPIC}}', '{{KAFKA_GROUP}}_feedback', 'JSONEachRow');

CREATE MATERIALIZED VIEW IF NOT EXISTS feedback_mv TO feedback AS
SELECT
    feedback_id,
    request_id,
    ts_ms,
    toDateTime(intDiv(ts_ms, 1000)) AS ts,
    org_id,
    project_id,
    api_key_id,
    user_id,
    score,
    comment,
    now() AS inserted_at
FROM feedback_kafka;
