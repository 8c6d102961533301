//! `providers[]`: each provider's kind, base URL (resolved, unless
//! `--check-config`), CA file, credential and models, checked into the
//! `ProviderConfig`s the snapshot's routes are built from. The headers a
//! provider is sent (`Host`, the credential) are built here, so one that
//! cannot be sent is a configuration error, never a failed request.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::raw::{RawCredential, RawProvider};
use super::{Errors, ProviderConfig, Resolve};
use crate::upstream::{credential_header, Endpoint, Secret};

pub(super) fn validate_providers(
    raw: &[RawProvider],
    resolve: Resolve,
    errors: &mut Errors,
) -> Vec<ProviderConfig> {
    let mut providers = Vec::new();
    let mut names = FxHashSet::default();
    let mut models: FxHashMap<&str, usize> = FxHashMap::default();
    for (i, p) in raw.iter().enumerate() {
        let path = format!("providers[{i}]");
        if p.name.is_empty() {
            errors.add(format!("{path}.name"), "must not be empty");
        } else if !names.insert(p.name.as_str()) {
            errors.add(
                format!("{path}.name"),
                format!("provider {:?} is declared twice", p.name),
            );
        }
        let kind = p.kind;
        let endpoint = parse_base_url(&p.base_url, &format!("{path}.base_url"), resolve, errors);
        let credential = p
            .credential
            .as_ref()
            .and_then(|c| read_credential(c, &format!("{path}.credential"), errors));
        if p.models.is_empty() {
            errors.add(format!("{path}.models"), "must list at least one model");
        }
        for (j, model) in p.models.iter().enumerate() {
            if model.is_empty() {
                errors.add(format!("{path}.models[{j}]"), "must not be empty");
            } else if let Some(other) = models.insert(model, i) {
                errors.add(
                    format!("{path}.models[{j}]"),
                    format!("model {model:?} is already served by providers[{other}]"),
                );
            }
        }
        let ca = p
            .ca_file
            .as_ref()
            .and_then(|file| read_ca_file(file, &format!("{path}.ca_file"), errors));
        let credential_header = credential.and_then(|secret| {
            credential_header(kind, &secret)
                .map_err(|_| {
                    errors.add(
                        format!("{path}.credential"),
                        "the credential cannot be sent in an HTTP header (only visible ASCII, spaces and tabs)",
                    )
                })
                .ok()
        });
        if let Some(mut endpoint) = endpoint {
            endpoint.ca = ca;
            providers.push(ProviderConfig {
                name: p.name.clone(),
                kind,
                endpoint,
                credential_header,
                models: p.models.clone(),
            });
        }
    }
    providers
}

/// `http[s]://host[:port][/prefix]` -> a resolved `Endpoint`.
fn parse_base_url(
    value: &str,
    path: &str,
    resolve: Resolve,
    errors: &mut Errors,
) -> Option<Endpoint> {
    let uri: http::Uri = match value.parse() {
        Ok(uri) => uri,
        Err(e) => {
            errors.add(path, format!("{value:?} is not a URL: {e}"));
            return None;
        }
    };
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            errors.add(
                path,
                format!("{value:?} must start with http:// or https://"),
            );
            return None;
        }
    };
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        errors.add(path, format!("{value:?} has no host"));
        return None;
    };
    if uri.query().is_some() {
        errors.add(path, format!("{value:?} must not have a query string"));
        return None;
    }
    let default_port = if tls { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let resolved = match resolve {
        Resolve::Skip => Ok(vec![SocketAddr::from(([0, 0, 0, 0], port))].into_iter()),
        Resolve::Hosts => (host.as_str(), port).to_socket_addrs(),
    };
    let address = match resolved {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            errors.add(path, format!("cannot resolve host {host:?}: {e}"));
            return None;
        }
    };
    let Some(address) = address else {
        errors.add(path, format!("host {host:?} resolves to no address"));
        return None;
    };
    // The Host header keeps an IPv6 address in its brackets (RFC 9110,
    // section 7.2: the authority's form).
    let host_in_authority = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let authority = if port == default_port {
        host_in_authority
    } else {
        format!("{host_in_authority}:{port}")
    };
    let Ok(host_header) = http::HeaderValue::from_str(&authority) else {
        errors.add(
            path,
            format!("{authority:?} cannot be sent as a Host header"),
        );
        return None;
    };
    Some(Endpoint {
        address,
        tls,
        ca: None,
        host,
        host_header,
        path_prefix: uri.path().trim_end_matches('/').to_string(),
    })
}

fn read_ca_file(
    file: &str,
    path: &str,
    errors: &mut Errors,
) -> Option<Arc<pingora::protocols::tls::CaType>> {
    let pem = match std::fs::read(file) {
        Ok(pem) => pem,
        Err(e) => {
            errors.add(path, format!("cannot read {file}: {e}"));
            return None;
        }
    };
    match pingora::tls::x509::X509::stack_from_pem(&pem) {
        Ok(certs) if !certs.is_empty() => Some(Arc::new(certs.into_boxed_slice())),
        Ok(_) => {
            errors.add(path, format!("{file} holds no PEM certificate"));
            None
        }
        Err(e) => {
            errors.add(path, format!("{file} is not PEM certificates: {e}"));
            None
        }
    }
}

fn read_credential(raw: &RawCredential, path: &str, errors: &mut Errors) -> Option<Secret> {
    let value = match (&raw.env, &raw.file) {
        (Some(var), None) => match std::env::var(var) {
            Ok(v) => v,
            Err(_) => {
                errors.add(
                    format!("{path}.env"),
                    format!("environment variable {var} is not set"),
                );
                return None;
            }
        },
        (None, Some(file)) => match std::fs::read_to_string(file) {
            Ok(v) => v,
            Err(e) => {
                errors.add(format!("{path}.file"), format!("cannot read {file}: {e}"));
                return None;
            }
        },
        _ => {
            errors.add(path, "give exactly one of env, file");
            return None;
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        errors.add(path, "the credential is empty");
        return None;
    }
    if value.bytes().any(|b| b.is_ascii_control()) {
        errors.add(path, "the credential contains control characters");
        return None;
    }
    Some(Secret::new(value))
}
