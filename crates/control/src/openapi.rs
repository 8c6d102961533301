//! The OpenAPI 3.1 document of the API, generated from the handlers' types
//! and annotations (utoipa): served at `GET /openapi.json` and checked in as
//! `crates/control/openapi.json` (a test fails when the two drift apart).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::FieldError;
use crate::http;
use crate::http::schema::{EnvironmentName, ErrorBody, ErrorDetail, PlanName};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("fpu_...")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("floopy_session"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "floopy-control",
        description = "The management API of floopy: organizations, projects, API keys, members, limits, budgets and alerts, and the analytics of the request logs. Scripts authenticate with a personal access token (Authorization: Bearer fpu_...). The dashboard signs in at /v1/auth/login and sends the floopy_session cookie instead (the `session` scheme); its state-changing requests carry the session's CSRF token in x-csrf-token.",
        license(name = "Apache-2.0")
    ),
    paths(
        http::session::login,
        http::session::logout,
        http::session::me,
        http::session::create_token,
        http::session::list_tokens,
        http::session::revoke_token,
        http::orgs::list,
        http::orgs::read,
        http::orgs::update,
        http::members::set_member_role,
        http::orgs::audit,
        http::projects::list,
        http::projects::create,
        http::projects::read,
        http::projects::update,
        http::projects::archive,
        http::projects::unarchive,
        http::projects::delete,
        http::keys::list,
        http::keys::create,
        http::keys::read,
        http::keys::rename,
        http::keys::revoke,
        http::keys::restore,
        http::limits::list,
        http::limits::set,
        http::limits::remove,
        http::members::list,
        http::members::remove,
        http::members::list_project,
        http::members::set_project,
        http::members::remove_project,
        http::invitations::create,
        http::invitations::accept,
        http::invitations::list,
        http::invitations::revoke,
        http::budgets::list,
        http::budgets::create,
        http::budgets::read,
        http::budgets::update,
        http::budgets::delete,
        http::budgets::restore,
        http::alerts::list_rules,
        http::alerts::create_rule,
        http::alerts::read_rule_handler,
        http::alerts::update_rule,
        http::alerts::delete_rule,
        http::alerts::list_alerts,
        http::analytics::requests::requests,
        http::analytics::requests::request,
        http::analytics::series::timeseries,
        http::analytics::groups::sessions,
        http::analytics::groups::users,
        http::analytics::groups::properties,
        http::analytics::cache::cache,
        http::analytics::series::rate_limits,
        http::analytics::series::security,
        http::analytics::evaluations::evaluations,
        http::analytics::widgets::widget_cost_per_mtok,
        http::analytics::widgets::widget_latency,
        http::analytics::widgets::widget_quality,
        http::analytics::widgets::widget_rank,
        http::analytics::widgets::widget_cost_by_environment,
        http::analytics::projects::projects,
        http::analytics::feedback::create_feedback,
    ),
    components(schemas(ErrorBody, ErrorDetail, FieldError, PlanName, EnvironmentName)),
    modifiers(&Security),
    security(("token" = []))
)]
pub struct ApiDoc;

/// The document as served and checked in.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in.trim_end() == document().trim_end(),
            "{} is out of date: regenerate it with `cargo run -p floopy-control -- openapi > crates/control/openapi.json`",
            path.display()
        );
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let mut ids = Vec::new();
        for methods in doc["paths"].as_object().unwrap().values() {
            for op in methods.as_object().unwrap().values() {
                if let Some(id) = op["operationId"].as_str() {
                    ids.push(id.to_string());
                }
            }
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate operation ids");
    }

    /// (method, path) of every route `http::routes` declares, read from its
    /// source: each `.route("<path>", <method>(...)...)` call.
    fn routed() -> std::collections::BTreeSet<(String, String)> {
        let source = include_str!("http/mod.rs");
        let mut routes = std::collections::BTreeSet::new();
        for call in source.split(".route(").skip(1) {
            let path = call.split('"').nth(1).unwrap_or_default().to_string();
            // The call ends at its closing parenthesis: count them.
            let mut depth = 1;
            let end = call
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(call.len(), |(i, _)| i);
            let methods = &call[..end];
            for method in ["get", "post", "put", "patch", "delete"] {
                let named = methods.match_indices(&format!("{method}(")).any(|(i, _)| {
                    !methods[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if named {
                    routes.insert((method.to_string(), path.clone()));
                }
            }
        }
        routes
    }

    #[test]
    fn every_route_is_documented_and_every_documented_operation_routed() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let mut documented = std::collections::BTreeSet::new();
        for (path, methods) in doc["paths"].as_object().unwrap() {
            for method in methods.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let routed = routed();
        assert!(routed.len() > 60, "the routes were read: {routed:?}");
        assert!(routed.contains(&("post".into(), "/v1/orgs/{org}/keys/{key}/restore".into())));
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes the document lacks: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented but not routed: {unrouted:?}"
        );
    }
}
