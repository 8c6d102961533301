-- Month-to-date spend of one org by environment (the cost-by-environment
-- widget, drawn against the environment caps).
SELECT
    environment,
    sum(cost_micro_usd) / 1000000 AS cost_usd,
    uniqExact(request_id) AS requests
FROM request_logs FINAL
WHERE org_id = '{{ORG_ID}}' AND ts >= toStartOfMonth(now()) AND kind = 'llm'
GROUP BY environment
ORDER BY environment;
