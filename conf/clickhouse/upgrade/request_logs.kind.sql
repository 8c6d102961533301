-- For a request_logs table made before its `kind` column (see
-- 001_request_logs.sql): ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS,
-- so scripts/start-clickhouse.sh runs this file only when system.columns
-- has no request_logs.kind. An ALIAS, so the rows already there have it
-- too. Run it by hand on a deployment started otherwise. The
-- file's name is the table and column it adds.
ALTER TABLE request_logs ADD COLUMN kind String ALIAS multiIf(
    path = '/v1/feedback', 'feedback',
    path = '/v1/models', 'models',
    path IN ('/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/messages'), 'llm',
    'other');
