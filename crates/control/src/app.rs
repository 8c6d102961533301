//! The server: the router over the state every handler shares (`state`),
//! health and metrics, and a graceful shutdown
//! (SIGTERM or SIGINT: stop accepting, let requests in flight finish within
//! the grace period).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::http::routes())
        .merge(crate::dashboard::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let class = usize::from(response.status().as_u16() / 100).clamp(1, 5) - 1;
    state.metrics.responses[class].fetch_add(1, Ordering::Relaxed);
    response
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let ready = async {
        let db = state.db().await?;
        db.query_one("SELECT 1", &[]).await?;
        Ok::<(), ApiError>(())
    }
    .await;
    match ready {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the control database cannot be reached ({})\n",
                e.code()
            ),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> String {
    let mut out = String::from(
        "# HELP floopy_control_responses_total Responses by status class.\n# TYPE floopy_control_responses_total counter\n",
    );
    for (i, counter) in state.metrics.responses.iter().enumerate() {
        out.push_str(&format!(
            "floopy_control_responses_total{{class=\"{}xx\"}} {}\n",
            i + 1,
            counter.load(Ordering::Relaxed)
        ));
    }
    let status = state.pool.status();
    out.push_str(&format!(
        "# HELP floopy_control_db_connections Pooled connections to the control database.\n# TYPE floopy_control_db_connections gauge\nfloopy_control_db_connections {}\n",
        status.size
    ));
    out
}

/// Serves on `listener` until SIGTERM or SIGINT, then lets requests in
/// flight finish within the configured grace period.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> anyhow::Result<()> {
    let grace = state.config.shutdown_grace;
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing the requests in flight");
        // A receiver may be gone only if the server already ended.
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop_rx;
    let server = tokio::spawn(async move { server.await });
    // Past the grace period after the signal, stop waiting for requests.
    let deadline = async move {
        while !*stopped.borrow() {
            if stopped.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result??,
        () = deadline => tracing::warn!("requests still in flight after the grace period; stopping"),
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
