//! Each project's figures over a range (requests, tokens, cost, errors,
//! latency, scores): what the widgets and the all-projects table compute
//! from.

use std::collections::HashMap;

use uuid::Uuid;

use super::widgets::{comparison, Comparison};
use super::{ratio, Ask};
use crate::analytics as sql;
use crate::error::ApiError;

/// One project's figures over the range.
#[derive(Debug, Clone, Default)]
pub(super) struct Figure {
    pub(super) project_id: String,
    pub(super) requests: u64,
    pub(super) tokens: u64,
    pub(super) cost_micro_usd: u64,
    pub(super) errors: u64,
    pub(super) latency_sum_ms: u64,
    pub(super) p95_latency_ms: f64,
    /// Scored requests and the sum of their last scores.
    pub(super) ratings: u64,
    pub(super) score_sum: f64,
}

/// The figures of each project the caller sees (requests of no project
/// left out): from the hourly rollup when the filters allow it (the
/// environment only), else from the raw rows.
pub(super) struct ProjectFigures {
    pub(super) rows: Vec<Figure>,
}

impl ProjectFigures {
    /// With `p95`, each project's 95th percentile latency too (a costlier
    /// read).
    pub(super) async fn load(a: &Ask, p95: bool) -> Result<ProjectFigures, ApiError> {
        if sql::rollup_answers(&a.filters) {
            let rows: Vec<sql::RolledProjectRow> = a
                .analytics
                .fetch(&sql::by_project_rolled(
                    &a.peers,
                    &a.range,
                    a.filters.environment.as_deref(),
                    p95,
                ))
                .await?;
            return Ok(ProjectFigures {
                rows: rows
                    .into_iter()
                    .map(|r| Figure {
                        p95_latency_ms: sql::histogram_quantile(
                            &r.latencies.0,
                            &r.latencies.1,
                            0.95,
                        ),
                        project_id: r.project_id,
                        requests: r.requests,
                        tokens: r.tokens,
                        cost_micro_usd: r.cost_micro_usd,
                        errors: r.errors,
                        latency_sum_ms: r.latency_sum_ms,
                        ratings: r.ratings,
                        score_sum: r.score_sum,
                    })
                    .collect(),
            });
        }
        let queries = (
            sql::by_project(&a.peers, &a.range, &a.filters),
            sql::quality_by_project(&a.peers, &a.range, &a.filters),
        );
        let (rows, quality) = tokio::try_join!(
            a.analytics.fetch::<sql::ProjectRow>(&queries.0),
            a.analytics.fetch::<sql::QualityRow>(&queries.1),
        )?;
        let quality: HashMap<String, sql::QualityRow> = quality
            .into_iter()
            .map(|q| (q.project_id.clone(), q))
            .collect();
        Ok(ProjectFigures {
            rows: rows
                .into_iter()
                .map(|r| {
                    let q = quality.get(&r.project_id);
                    Figure {
                        ratings: q.map_or(0, |q| q.ratings),
                        score_sum: q.map_or(0.0, |q| q.score_sum),
                        project_id: r.project_id,
                        requests: r.requests,
                        tokens: r.tokens,
                        cost_micro_usd: r.cost_micro_usd,
                        errors: r.errors,
                        latency_sum_ms: r.latency_sum_ms,
                        p95_latency_ms: r.p95_latency_ms,
                    }
                })
                .collect(),
        })
    }

    /// The selected project's figure, and `value` of it against the same
    /// over all projects (the sums' ratio).
    pub(super) fn compare(
        &self,
        project: Uuid,
        part: impl Fn(&Figure) -> (f64, u64),
    ) -> Comparison {
        let id = project.to_string();
        let mine = self.rows.iter().find(|r| r.project_id == id).and_then(|r| {
            let (n, d) = part(r);
            ratio(n, d)
        });
        let (n, d) = self
            .rows
            .iter()
            .map(&part)
            .fold((0.0, 0), |(n, d), (a, b)| (n + a, d + b));
        comparison(project, mine, ratio(n, d))
    }
}
