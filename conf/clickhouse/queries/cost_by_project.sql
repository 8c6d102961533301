-- Spend, tokens and requests per project of one org this month, with each
-- project's cost per million tokens next to the org average.
SELECT
    project_id,
    uniqExact(request_id) AS requests,
    sum(cost_micro_usd) / 1000000 AS cost_usd,
    sum(prompt_tokens + completion_tokens) AS tokens,
    if(tokens = 0, 0, cost_usd * 1000000 / tokens) AS cost_per_mtok,
    avg(latency_ms) AS avg_latency_ms
FROM request_logs FINAL
WHERE org_id = '{{ORG_ID}}' AND ts >= toStartOfMonth(now()) AND kind = 'llm'
GROUP BY project_id
ORDER BY cost_usd DESC;
