//! Providers: model -> provider -> `HttpPeer`, and the provider credential
//! injected on the upstream request. The credential lives in a `Secret`,
//! whose `Debug` never prints it.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pingora::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use rustc_hash::FxHashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Any OpenAI-compatible API.
    OpenAi,
    Anthropic,
}

impl ProviderKind {
    pub fn parse(s: &str) -> Option<ProviderKind> {
        match s {
            "openai" => Some(ProviderKind::OpenAi),
            "anthropic" => Some(ProviderKind::Anthropic),
            _ => None,
        }
    }
}

/// A credential. Printing it shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a provider is and how to reach it, resolved when the configuration
/// is loaded (never on the request path).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub tls: bool,
    /// Extra CA certificates trusted for this provider's TLS.
    pub ca: Option<Arc<pingora::protocols::tls::CaType>>,
    /// Host name: SNI and the `Host` header.
    pub host: String,
    /// `Host` header value (with the port when it is not the scheme's).
    pub authority: String,
    /// Prefix put before the request path (`/openai` in
    /// `http://proxy/openai`); empty for none.
    pub path_prefix: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
}

#[derive(Debug)]
pub struct Provider {
    /// Shared with every request log record of the provider.
    pub name: Arc<str>,
    pub kind: ProviderKind,
    pub endpoint: Endpoint,
    pub credential: Option<Secret>,
    peer: HttpPeer,
    /// Built once: the `Host` header and the credential header.
    host_header: HeaderValue,
    credential_header: Option<HeaderValue>,
}

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

impl Provider {
    pub fn new(
        name: String,
        kind: ProviderKind,
        endpoint: Endpoint,
        credential: Option<Secret>,
        timeouts: Timeouts,
    ) -> Self {
        let mut peer = HttpPeer::new(endpoint.address, endpoint.tls, endpoint.host.clone());
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.total_connection_timeout = Some(timeouts.connect * 2);
        peer.options.read_timeout = Some(timeouts.read);
        peer.options.write_timeout = Some(timeouts.write);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer.options.ca = endpoint.ca.clone();
        // Pingora's connection pool key leaves out the trusted CAs: without
        // a group per provider, a connection verified under one provider's
        // CA file could be reused for another provider at the same address.
        peer.group_key = {
            use std::hash::{Hash, Hasher};
            let mut h = rustc_hash::FxHasher::default();
            name.hash(&mut h);
            h.finish()
        };
        // The configuration refuses credentials with control characters, so
        // both are valid header values; an invalid one is refused per request.
        let host_header = HeaderValue::from_str(&endpoint.authority)
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        let credential_header = credential.as_ref().and_then(|secret| {
            let value = match kind {
                ProviderKind::OpenAi => format!("Bearer {}", secret.expose()),
                ProviderKind::Anthropic => secret.expose().to_owned(),
            };
            let mut value = HeaderValue::from_str(&value).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Provider {
            name: Arc::from(name),
            kind,
            endpoint,
            credential,
            peer,
            host_header,
            credential_header,
        }
    }

    /// The peer for one request.
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }

    /// Rewrites the client's request header for this provider: path prefix,
    /// `Host`, the provider credential in place of the gateway key, and no
    /// gateway-only headers.
    pub fn prepare_request(&self, req: &mut RequestHeader) -> pingora_error::Result<()> {
        if !self.endpoint.path_prefix.is_empty() {
            let path_and_query = req
                .uri
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("/");
            let uri = format!("{}{}", self.endpoint.path_prefix, path_and_query);
            let uri = http::Uri::try_from(uri).map_err(|e| {
                pingora_error::Error::because(
                    pingora_error::ErrorType::InternalError,
                    "building the upstream path",
                    e,
                )
            })?;
            req.set_uri(uri);
        }
        req.insert_header(http::header::HOST, self.host_header.clone())?;
        // The client's credentials never reach the provider; the provider's
        // own credential, when configured, takes their place.
        let credential_name = match self.kind {
            ProviderKind::OpenAi => &http::header::AUTHORIZATION,
            ProviderKind::Anthropic => &X_API_KEY,
        };
        match (&self.credential, &self.credential_header) {
            (Some(_), Some(value)) => req.insert_header(credential_name, value.clone())?,
            (Some(_), None) => {
                return pingora_error::Error::e_explain(
                    pingora_error::ErrorType::InternalError,
                    "the provider credential is not a valid header value",
                )
            }
            (None, _) => {
                req.remove_header(credential_name);
            }
        }
        let other_credential = match self.kind {
            ProviderKind::OpenAi => &X_API_KEY,
            ProviderKind::Anthropic => &http::header::AUTHORIZATION,
        };
        req.remove_header(other_credential);
        strip_gateway_headers(req);
        // Usage is read from the body: ask for it uncompressed.
        if req
            .headers
            .get(http::header::ACCEPT_ENCODING)
            .is_none_or(|v| v.as_bytes() != b"identity")
        {
            req.insert_header(
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            )?;
        }
        if self.kind == ProviderKind::Anthropic && !req.headers.contains_key(&ANTHROPIC_VERSION) {
            req.insert_header(&ANTHROPIC_VERSION, HeaderValue::from_static("2023-06-01"))?;
        }
        Ok(())
    }
}

/// Removes `floopy-*` headers: they are for the gateway, not the provider.
fn strip_gateway_headers(req: &mut RequestHeader) {
    // An empty `Vec` does not allocate: nothing is spent without such headers.
    let names: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|name| name.as_str().starts_with("floopy-"))
        .cloned()
        .collect();
    for name in names {
        req.remove_header(&name);
    }
}

/// Model name -> provider.
#[derive(Debug, Default)]
pub struct Routes {
    by_model: FxHashMap<String, Arc<Provider>>,
    /// Models in configuration order, for `GET /v1/models`.
    pub models: Vec<(String, String)>,
}

impl Routes {
    pub fn new(providers: &[Arc<Provider>], models: &[(String, usize)]) -> Self {
        let mut routes = Routes::default();
        for (model, index) in models {
            if let Some(provider) = providers.get(*index) {
                routes.by_model.insert(model.clone(), provider.clone());
                routes
                    .models
                    .push((model.clone(), provider.name.to_string()));
            }
        }
        routes
    }

    pub fn provider_for(&self, model: &str) -> Option<&Arc<Provider>> {
        self.by_model.get(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(kind: ProviderKind, prefix: &str) -> Provider {
        Provider::new(
            "p".into(),
            kind,
            Endpoint {
                address: "127.0.0.1:9".parse().unwrap(),
                tls: false,
                ca: None,
                host: "api.example.com".into(),
                authority: "api.example.com".into(),
                path_prefix: prefix.into(),
            },
            Some(Secret::new("sk-provider".into())),
            Timeouts {
                connect: Duration::from_secs(1),
                read: Duration::from_secs(1),
                write: Duration::from_secs(1),
            },
        )
    }

    fn client_request() -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions?x=1", None).unwrap();
        req.insert_header("authorization", "Bearer fpk_gateway")
            .unwrap();
        req.insert_header("floopy-project-id", "x").unwrap();
        req.insert_header("floopy-property-team", "a").unwrap();
        req.insert_header("accept-encoding", "gzip").unwrap();
        req
    }

    #[test]
    fn openai_request_gets_provider_bearer_and_loses_gateway_headers() {
        let mut req = client_request();
        provider(ProviderKind::OpenAi, "")
            .prepare_request(&mut req)
            .unwrap();
        assert_eq!(req.headers["authorization"], "Bearer sk-provider");
        assert_eq!(req.headers["host"], "api.example.com");
        assert_eq!(req.headers["accept-encoding"], "identity");
        assert!(req.headers.get("floopy-project-id").is_none());
        assert!(req.headers.get("floopy-property-team").is_none());
        assert_eq!(req.uri.path(), "/v1/chat/completions");
    }

    #[test]
    fn anthropic_request_gets_api_key_and_version_and_prefix() {
        let mut req = client_request();
        provider(ProviderKind::Anthropic, "/anthropic")
            .prepare_request(&mut req)
            .unwrap();
        assert!(
            req.headers.get("authorization").is_none(),
            "gateway key never forwarded"
        );
        assert_eq!(req.headers["x-api-key"], "sk-provider");
        assert_eq!(req.headers["anthropic-version"], "2023-06-01");
        assert_eq!(
            req.uri.path_and_query().unwrap().as_str(),
            "/anthropic/v1/chat/completions?x=1"
        );
    }

    #[test]
    fn secret_debug_is_masked() {
        let secret = Secret::new("sk-live-123".into());
        assert_eq!(format!("{secret:?}"), "***");
        let p = provider(ProviderKind::OpenAi, "");
        assert!(!format!("{p:?}").contains("sk-provider"));
    }
}
