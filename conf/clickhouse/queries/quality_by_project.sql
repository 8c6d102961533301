-- Average feedback score per project next to the org's.
SELECT
    project_id,
    avg(score) AS avg_score,
    count() AS ratings
FROM feedback FINAL
WHERE org_id = '{{ORG_ID}}'
GROUP BY project_id
ORDER BY project_id;
