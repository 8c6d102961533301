//! Providers: model -> provider -> `HttpPeer`, and the provider credential
//! injected on the upstream request. The credential lives in a `Secret`,
//! whose `Debug` never prints it.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pingora::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// A provider's API dialect; `openai` or `anthropic` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible API.
    OpenAi,
    Anthropic,
}

pub use floopy_model::Secret;

/// The header value a provider of `kind` expects its credential in (OpenAI:
/// `Bearer <secret>` in `Authorization`; Anthropic: the secret in
/// `x-api-key`), marked sensitive. `Err` when the secret cannot be sent in a
/// header: the configuration refuses it at load.
pub fn credential_header(
    kind: ProviderKind,
    secret: &Secret,
) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut value = match kind {
        ProviderKind::OpenAi => HeaderValue::from_str(&format!("Bearer {}", secret.expose()))?,
        ProviderKind::Anthropic => HeaderValue::from_str(secret.expose())?,
    };
    value.set_sensitive(true);
    Ok(value)
}

/// Where a provider is and how to reach it, resolved when the configuration
/// is loaded (never on the request path).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub tls: bool,
    /// Extra CA certificates trusted for this provider's TLS.
    pub ca: Option<Arc<pingora::protocols::tls::CaType>>,
    /// Host name: SNI (IPv6 addresses without brackets).
    pub host: String,
    /// The `Host` header: the host (IPv6 in brackets) and the port when it
    /// is not the scheme's. Checked to be a header value at load.
    pub host_header: HeaderValue,
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
    peer: HttpPeer,
    /// The provider's credential as its header value, built (and checked)
    /// when the configuration loaded; `None` forwards without one.
    credential_header: Option<HeaderValue>,
}

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");

impl Provider {
    pub fn new(
        name: String,
        kind: ProviderKind,
        endpoint: Endpoint,
        credential_header: Option<HeaderValue>,
        timeouts: Timeouts,
    ) -> Self {
        let mut peer = HttpPeer::new(endpoint.address, endpoint.tls, endpoint.host.clone());
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.total_connection_timeout = Some(timeouts.connect * 2);
        peer.options.read_timeout = Some(timeouts.read);
        peer.options.write_timeout = Some(timeouts.write);
        // No idle timeout: Pingora's pool watches every idle connection for
        // the provider's close (and evicts the least recently used beyond
        // its size), so a timeout adds nothing but a timer registered each
        // time a connection goes back to the pool, once per request.
        peer.options.idle_timeout = None;
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
        Provider {
            name: Arc::from(name),
            kind,
            endpoint,
            peer,
            credential_header,
        }
    }

    /// The peer for one request.
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }

    /// Rewrites the client's request header for this provider: path prefix,
    /// `Host`, the provider credential in place of the gateway key, no
    /// gateway-only headers, and the framing of a body of `body_len` bytes
    /// sent whole (`Content-Length`, no `Transfer-Encoding` or `Expect`).
    ///
    /// The header is rebuilt without Pingora's case-preserving name map, as
    /// the gateway's response headers are (see `proxy::add_gateway_headers`);
    /// the request target is kept byte for byte.
    // Out of line: load-tests/instructions.sh reports its cost (one call).
    #[inline(never)]
    pub fn prepare_request(
        &self,
        req: &mut RequestHeader,
        body_len: usize,
    ) -> pingora_error::Result<()> {
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
        let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
        let original = std::mem::replace(req, placeholder);
        // A target that the URI does not reproduce (absolute-form) is set
        // again from its bytes after the rebuild.
        let from_uri = original
            .uri
            .path_and_query()
            .map_or(&b"/"[..], |pq| pq.as_str().as_bytes());
        let raw_target = (original.raw_path() != from_uri).then(|| original.raw_path().to_vec());
        let send_end_stream = original.send_end_stream();
        let mut parts = http::request::Parts::from(original);
        self.rewrite_headers(&mut parts.headers, body_len)?;
        let mut rebuilt = RequestHeader::from(parts);
        if let Some(target) = raw_target {
            rebuilt.set_raw_path(&target)?;
        }
        if let Some(end) = send_end_stream {
            rebuilt.set_send_end_stream(end);
        }
        *req = rebuilt;
        Ok(())
    }

    fn rewrite_headers(
        &self,
        headers: &mut http::HeaderMap,
        body_len: usize,
    ) -> pingora_error::Result<()> {
        use http::header::{
            ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING,
        };
        let credential_name = match self.kind {
            ProviderKind::OpenAi => &AUTHORIZATION,
            ProviderKind::Anthropic => &X_API_KEY,
        };
        let mut length = itoa::Buffer::new();
        let length = length.format(body_len);
        // One look at the client's headers decides what to change: a lookup
        // or a removal by name hashes it, even when it is absent.
        let replaced = self.credential_header.is_some();
        let mut remove: Vec<HeaderName> = Vec::new();
        let (mut lengths, mut same_length) = (0, false);
        let (mut encodings, mut identity, mut version) = (0, false, false);
        for (name, value) in headers.iter() {
            // The client's credentials never reach the provider; the
            // provider's own credential, when configured, replaces them.
            let credential = name == AUTHORIZATION || name == X_API_KEY;
            if name == TRANSFER_ENCODING
                || name == EXPECT
                || credential && !(replaced && name == credential_name)
                || name.as_str().starts_with("floopy-")
            {
                if !remove.contains(name) {
                    remove.push(name.clone());
                }
            } else if name == CONTENT_LENGTH {
                lengths += 1;
                same_length = value.as_bytes() == length.as_bytes();
            } else if name == ACCEPT_ENCODING {
                encodings += 1;
                identity = value.as_bytes() == b"identity";
            } else if name == ANTHROPIC_VERSION {
                version = true;
            }
        }
        for name in &remove {
            headers.remove(name);
        }
        headers.insert(HOST, self.endpoint.host_header.clone());
        if let Some(value) = &self.credential_header {
            headers.insert(credential_name.clone(), value.clone());
        }
        // Usage is read from the body: ask for it uncompressed.
        if !(encodings == 1 && identity) {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        if self.kind == ProviderKind::Anthropic && !version {
            headers.insert(
                ANTHROPIC_VERSION.clone(),
                HeaderValue::from_static("2023-06-01"),
            );
        }
        // The body is sent whole, its length known: usually the client's
        // own single `Content-Length`, left as it is.
        if !(lengths == 1 && same_length) {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(body_len));
        }
        Ok(())
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
                host_header: HeaderValue::from_static("api.example.com"),
                path_prefix: prefix.into(),
            },
            credential_header(kind, &Secret::new("sk-provider")).ok(),
            Timeouts {
                connect: Duration::from_secs(1),
                read: Duration::from_secs(1),
                write: Duration::from_secs(1),
            },
        )
    }

    #[test]
    fn the_provider_is_asked_for_identity_encoding_alone() {
        for values in [
            &["identity"][..],
            &["gzip", "identity"][..],
            &["identity", "identity"][..],
            &[][..],
        ] {
            let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
            for v in values {
                req.append_header("accept-encoding", *v).unwrap();
            }
            provider(ProviderKind::OpenAi, "")
                .prepare_request(&mut req, 0)
                .unwrap();
            let got: Vec<_> = req.headers.get_all("accept-encoding").iter().collect();
            assert_eq!(got, ["identity"], "{values:?}");
        }
    }

    #[test]
    fn client_credentials_are_dropped_even_without_a_provider_credential() {
        let mut p = provider(ProviderKind::Anthropic, "");
        p.credential_header = None;
        let mut req = client_request();
        req.insert_header("x-api-key", "sk-client").unwrap();
        p.prepare_request(&mut req, 0).unwrap();
        assert!(req.headers.get("authorization").is_none());
        assert!(req.headers.get("x-api-key").is_none());
        assert_eq!(req.headers["anthropic-version"], "2023-06-01");
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
            .prepare_request(&mut req, 0)
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
            .prepare_request(&mut req, 0)
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

    fn wire(req: &RequestHeader) -> String {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn body_framing_is_the_length_of_the_body_sent() {
        let mut req = client_request();
        req.insert_header("Transfer-Encoding", "chunked").unwrap();
        req.insert_header("Expect", "100-continue").unwrap();
        provider(ProviderKind::OpenAi, "")
            .prepare_request(&mut req, 512)
            .unwrap();
        assert_eq!(req.headers["content-length"], "512");
        assert!(req.headers.get("transfer-encoding").is_none());
        assert!(req.headers.get("expect").is_none());

        // The client's own single, matching length is left as it is.
        let mut req = client_request();
        req.insert_header("Content-Length", "12").unwrap();
        provider(ProviderKind::OpenAi, "")
            .prepare_request(&mut req, 12)
            .unwrap();
        assert_eq!(req.headers.get_all("content-length").iter().count(), 1);
        assert_eq!(req.headers["content-length"], "12");
    }

    #[test]
    fn rebuilt_header_keeps_target_method_and_other_headers() {
        let mut req = RequestHeader::build(
            "POST",
            b"http://gateway.example/v1/chat/completions?x=1",
            None,
        )
        .unwrap();
        req.insert_header("X-Client-Thing", "kept").unwrap();
        req.insert_header("Content-Type", "application/json")
            .unwrap();
        req.insert_header("floopy-session-id", "s").unwrap();
        provider(ProviderKind::OpenAi, "")
            .prepare_request(&mut req, 2)
            .unwrap();
        assert_eq!(req.method, http::Method::POST);
        assert_eq!(
            req.raw_path(),
            b"http://gateway.example/v1/chat/completions?x=1"
        );
        let wire = wire(&req);
        for line in [
            "Host: api.example.com\r\n",
            "Content-Type: application/json\r\n",
            "x-client-thing: kept\r\n",
            "authorization: Bearer sk-provider\r\n",
            "Content-Length: 2\r\n",
        ] {
            assert!(wire.contains(line), "{line:?} missing from {wire:?}");
        }
        assert!(!wire.contains("floopy-"), "{wire}");
    }

    #[test]
    fn secret_debug_is_masked() {
        let secret = Secret::new("sk-live-123");
        assert_eq!(format!("{secret:?}"), "***");
        let p = provider(ProviderKind::OpenAi, "");
        assert!(!format!("{p:?}").contains("sk-provider"));
    }
}
