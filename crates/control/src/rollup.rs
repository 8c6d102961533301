//! The hourly rollup (`request_rollup`, conf/clickhouse/005_rollup.sql):
//! kept by one replica at a time (the tick's advisory lock in the control
//! database), every `clickhouse.rollup_interval_ms`.
//!
//! A run reads ClickHouse's clock (T), finds the (org, hour) pairs that
//! received request logs, or scores for their requests, since the last run
//! (`inserted_at` at or after the newest `computed_at`, less `MARGIN_SECS`
//! for inserts that were still being written), and recomputes each such
//! hour from `request_logs FINAL` with its requests' last scores, inserting
//! the hour's rows with a newer version and `computed_at` T. The first run
//! (an empty rollup) computes every hour.
//!
//! So the rollup is exact for every hour, the current one included, as of
//! the last run: a row inserted since (a live request, a replay into an old
//! hour) counts from the next run, a few seconds later. Its readers count
//! whole UTC hours: their range rounded out to the hour.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analytics::{llm_only, quote, Analytics, StoreError};
use crate::jobs::{take_tick, JobError};

/// Inserts take this long at most to become visible: rows inserted up to
/// this long before the last run's start are looked at again.
pub const MARGIN_SECS: u64 = 10;

/// The advisory lock a run holds (one replica per tick).
const ROLLUP_LOCK: i64 = 0x666c_6f6f_7072;

#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
struct Clock {
    now: u32,
    last: u32,
}

#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
struct Touched {
    org_id: String,
    hour: u32,
}

/// The (org, hour) pairs that received request logs or scores at or after
/// `since` (epoch seconds).
pub fn touched_since(since: u64) -> String {
    format!(
        "SELECT DISTINCT org_id, toUInt32(intDiv(ts_ms, 3600000)) AS hour FROM request_logs \
         WHERE inserted_at >= toDateTime({since}) \
         UNION ALL \
         SELECT DISTINCT org_id, toUInt32(intDiv(ts_ms, 3600000)) AS hour FROM request_logs \
         WHERE org_id IN (SELECT org_id FROM feedback WHERE inserted_at >= toDateTime({since})) \
         AND (org_id, request_id) IN \
         (SELECT org_id, request_id FROM feedback WHERE inserted_at >= toDateTime({since}))"
    )
}

/// Recomputes the rollup rows of `hours` of `org` (`None`: every hour of
/// every org), stamped `computed_at` (epoch seconds) and `version`.
pub fn recompute(org: Option<(&str, &[u32])>, computed_at: u32, version: u64) -> String {
    let (requests, scores) = match org {
        None => ("1 = 1".to_string(), "1 = 1".to_string()),
        Some((org, hours)) => {
            let first = hours.iter().min().copied().unwrap_or(0);
            let last = hours.iter().max().copied().unwrap_or(0);
            let mut list = String::new();
            for (i, h) in hours.iter().enumerate() {
                if i > 0 {
                    list.push_str(", ");
                }
                let _ = write!(list, "{h}");
            }
            (
                format!(
                    "org_id = {org} AND ts >= toDateTime({from}) AND ts < toDateTime({to}) \
                     AND intDiv(ts_ms, 3600000) IN ({list})",
                    org = quote(org),
                    from = u64::from(first) * 3600,
                    to = (u64::from(last) + 1) * 3600,
                ),
                format!("org_id = {}", quote(org)),
            )
        }
    };
    format!(
        "INSERT INTO request_rollup (org_id, hour, project_id, environment, requests, \
         prompt_tokens, completion_tokens, cost_micro_usd, errors, latency_sum_ms, \
         latency_values, latency_counts, ratings, score_sum, computed_at, version) \
         SELECT org_id, r_hour, project_id, environment, r_requests, r_prompt, r_completion, \
         r_cost, r_errors, r_latency, r_lat.1, r_lat.2, r_ratings, r_score, \
         toDateTime({computed_at}), toUInt64({version}) FROM \
         (SELECT org_id, toUInt32(intDiv(ts_ms, 3600000)) AS r_hour, project_id, environment, \
          toUInt64(count()) AS r_requests, toUInt64(sum(prompt_tokens)) AS r_prompt, \
          toUInt64(sum(completion_tokens)) AS r_completion, \
          toUInt64(sum(cost_micro_usd)) AS r_cost, toUInt64(countIf(status >= 400)) AS r_errors, \
          toUInt64(sum(latency_ms)) AS r_latency, sumMap([latency_ms], [toUInt64(1)]) AS r_lat, \
          toUInt64(sum(scored)) AS r_ratings, toFloat64(sum(last_score)) AS r_score \
          FROM (SELECT org_id, request_id, ts_ms, project_id, environment, prompt_tokens, \
                completion_tokens, cost_micro_usd, status, latency_ms \
                FROM request_logs FINAL WHERE {requests}{llm}) AS hour_requests \
          ANY LEFT JOIN \
          (SELECT org_id, request_id, argMax(score, ts_ms) AS last_score, toUInt8(1) AS scored \
           FROM feedback WHERE {scores} GROUP BY org_id, request_id) AS hour_scores \
          USING (org_id, request_id) \
          GROUP BY org_id, r_hour, project_id, environment)",
        llm = llm_only()
    )
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Whether this replica held the tick's lock.
    pub ran: bool,
    /// (org, hour) pairs recomputed (0 on a first, complete run).
    pub hours: usize,
}

/// One run, if this replica takes the tick's lock.
pub async fn run_once(
    db: &mut tokio_postgres::Client,
    analytics: &Analytics,
) -> Result<Run, JobError> {
    let tx = db.transaction().await?;
    if !take_tick(&tx, ROLLUP_LOCK).await? {
        return Ok(Run::default());
    }
    let clock = analytics
        .fetch::<Clock>(
            "SELECT toUInt32(now()) AS now, toUInt32(max(computed_at)) AS last FROM request_rollup",
        )
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Unexpected("no clock from ClickHouse"))?;
    let version = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros()),
    )
    .unwrap_or(u64::MAX);
    if clock.last == 0 {
        analytics
            .execute(&recompute(None, clock.now, version))
            .await?;
        tx.commit().await?;
        return Ok(Run {
            ran: true,
            hours: 0,
        });
    }
    let since = u64::from(clock.last).saturating_sub(MARGIN_SECS);
    let touched: Vec<Touched> = analytics.fetch(&touched_since(since)).await?;
    let mut by_org: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for t in &touched {
        by_org.entry(t.org_id.clone()).or_default().push(t.hour);
    }
    let mut hours = 0;
    for (org, mut list) in by_org {
        list.sort_unstable();
        list.dedup();
        hours += list.len();
        analytics
            .execute(&recompute(Some((&org, &list)), clock.now, version))
            .await?;
    }
    if hours == 0 {
        // Nothing new: the run is still recorded, so the next looks only at
        // what comes after it.
        analytics
            .execute(&format!(
                "INSERT INTO request_rollup (org_id, hour, computed_at, version) \
                 VALUES ('', 0, toDateTime({}), {version})",
                clock.now
            ))
            .await?;
    }
    tx.commit().await?;
    Ok(Run { ran: true, hours })
}

/// Keeps the rollup every `every`, on a connection of its own, until the
/// process ends.
pub async fn run(
    db: floopy_control_db::DbConfig,
    analytics: std::sync::Arc<Analytics>,
    every: std::time::Duration,
) {
    crate::jobs::every_tick(db, "floopy-control-rollup", every, move |db| {
        let analytics = analytics.clone();
        Box::pin(async move {
            let run = run_once(db, &analytics).await?;
            if run.hours > 0 {
                tracing::debug!(hours = run.hours, "analytics rollup updated");
            }
            Ok(())
        })
    })
    .await;
}
