//! The per-request context: what each phase learned, for the next phases
//! and for the request log.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use uuid::Uuid;

use super::admission::{Admitted, BodyFacts, Forward, HeaderRefusal};
use super::route::Route;
use crate::auth::Principal;
use crate::error::GatewayError;
use crate::limits::rpm::RpmDecision;
use crate::limits::Admission;
use crate::request_id;
use crate::snapshot::Snapshot;
use crate::upstream::Provider;
use crate::usage::json::ResponseCapture;
use crate::usage::sse::SseUsageParser;

pub struct RequestCtx {
    pub started: Instant,
    pub request_id: Uuid,
    /// Loaded once in `request_filter`; the whole request uses this one.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Set once the key is known, even when it turns out revoked.
    pub principal: Option<Principal>,
    pub project_id: Option<Uuid>,
    pub route: Option<Route>,
    pub provider: Option<Arc<Provider>>,
    pub model: String,
    pub stream: bool,
    /// The body's `user`, for the log when there is no `floopy-user-id`.
    pub body_user: Option<String>,
    /// The body sent upstream (possibly changed from the client's).
    pub upstream_body: Bytes,
    /// The gateway asked for stream usage the client did not ask for.
    pub inject_usage: bool,
    /// Status sent to the client (the gateway's own or the provider's).
    pub status: Option<u16>,
    /// The error the gateway answered with, if it answered itself.
    pub error: Option<GatewayError>,
    pub first_byte_at: Option<Instant>,
    /// Boxed: the context lives in every request's future, and most
    /// answers are not streams.
    pub sse: Option<Box<SseUsageParser>>,
    pub capture: Option<ResponseCapture>,
    /// What the limits admitted; settled once, in `logging`.
    pub admission: Option<Admission>,
    /// The RPM state, for the `x-ratelimit-*` headers.
    pub rpm: Option<RpmDecision>,
    /// The request's record was submitted (before the answer's last byte).
    pub logged: bool,
    /// Its phase timeline, with `FLOOPY_TIMELINE=1` (see `timeline`).
    pub timeline: Option<Box<crate::timeline::Marks>>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            request_id: Uuid::now_v7(),
            snapshot: None,
            principal: None,
            project_id: None,
            route: None,
            provider: None,
            model: String::new(),
            stream: false,
            body_user: None,
            upstream_body: Bytes::new(),
            inject_usage: false,
            status: None,
            error: None,
            first_byte_at: None,
            sse: None,
            capture: None,
            admission: None,
            rpm: None,
            logged: false,
            timeline: crate::timeline::enabled().then(crate::timeline::Marks::start),
        }
    }
}

impl RequestCtx {
    /// Keeps what the header told, admitted or not (a known key tags the
    /// request id with its org), and passes the decision on.
    pub fn learn_header(
        &mut self,
        header: Result<Admitted, HeaderRefusal>,
    ) -> Result<Admitted, GatewayError> {
        let (principal, route, project) = match &header {
            Ok(a) => (Some(&a.principal), Some(a.route), Some(a.project_id)),
            Err(r) => (r.principal.as_ref(), r.route, None),
        };
        if let Some(principal) = principal {
            self.request_id = request_id::tagged(self.request_id, principal.org_id);
            self.principal = Some(principal.clone());
        }
        self.route = route;
        self.project_id = project;
        header.map_err(|r| r.error)
    }

    /// Keeps what the body told, admitted or not.
    pub fn learn_body(&mut self, facts: BodyFacts) {
        self.model = facts.model;
        self.stream = facts.stream;
        self.body_user = facts.user;
        self.provider = facts.provider;
        self.rpm = facts.rpm;
    }

    /// Keeps how an admitted request goes to its provider.
    pub fn forward(&mut self, forward: Forward) {
        self.admission = forward.admission;
        self.upstream_body = forward.upstream_body;
        self.inject_usage = forward.inject_usage;
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
