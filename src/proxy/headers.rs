//! The gateway's own response headers: `floopy-request-id`,
//! `floopy-project-id` and OpenAI's `x-ratelimit-*` (with `Retry-After` on a
//! 429), added to every response (the provider's and the gateway's own),
//! and the framing change a rewritten stream needs. Nothing here reads the
//! session.

use bytes::BytesMut;
use http::HeaderValue;
use pingora_http::ResponseHeader;

use super::ctx::RequestCtx;
use super::{PROJECT_ID_NAME, REQUEST_ID_HEADER};

/// Names parsed once: `ResponseHeader::insert_header` parses (and, for a
/// name outside the standard set, allocates) the name on every call.
static REQUEST_ID_NAME: http::HeaderName = http::HeaderName::from_static(REQUEST_ID_HEADER);
static RATELIMIT_LIMIT: http::HeaderName =
    http::HeaderName::from_static("x-ratelimit-limit-requests");
static RATELIMIT_REMAINING: http::HeaderName =
    http::HeaderName::from_static("x-ratelimit-remaining-requests");
static RATELIMIT_RESET: http::HeaderName =
    http::HeaderName::from_static("x-ratelimit-reset-requests");

/// How the body of a response is framed once the gateway has seen it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// As the upstream (or the gateway) framed it.
    Unchanged,
    /// The body changes length on its way: no `Content-Length`, chunked.
    Chunked,
}

/// Adds the gateway's headers (request id, project id, OpenAI's
/// `x-ratelimit-*`) to a response, replacing any of the same name.
///
/// The header is rebuilt without Pingora's second, case-preserving name map:
/// `insert_header` parses each name and inserts into both maps, about twice
/// the cost of these inserts. Header names are case-insensitive (RFC 9110,
/// section 5.1); Pingora still writes the common ones in title case. Status,
/// version, reason phrase and extensions are kept.
// Out of line: load-tests/instructions.sh reports its cost (one call).
#[inline(never)]
pub fn add_gateway_headers(
    resp: &mut ResponseHeader,
    ctx: &RequestCtx,
    framing: Framing,
) -> pingora_error::Result<()> {
    let placeholder = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let original = std::mem::replace(resp, placeholder);
    let reason = original.get_reason_phrase();
    let custom_reason = (reason != original.status.canonical_reason())
        .then(|| reason.map(str::to_owned))
        .flatten();
    let mut parts = http::response::Parts::from(original);
    let headers = &mut parts.headers;
    headers.reserve(6);
    // The values' text in one buffer, each header a slice of it: one
    // allocation for all of them instead of one each.
    let mut text = BytesMut::with_capacity(2 * 36 + 4 * 21);
    let mut buf = uuid::Uuid::encode_buffer();
    for id in std::iter::once(ctx.request_id).chain(ctx.project_id) {
        text.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    }
    let ids_end = text.len();
    // OpenAI's formats: the reset as "2s"; Retry-After is its digits alone.
    let mut ends = [ids_end; 3];
    if let Some(rpm) = &ctx.rpm {
        let numbers = [
            u64::from(rpm.limit),
            u64::from(rpm.remaining),
            rpm.reset_secs(),
        ];
        for (end, n) in ends.iter_mut().zip(numbers) {
            text.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            *end = text.len();
        }
        text.extend_from_slice(b"s");
    }
    let text = text.freeze();
    // SAFETY: hex digits, hyphens, decimal digits and `s`: visible ASCII.
    let value = |from: usize, to: usize| unsafe {
        HeaderValue::from_maybe_shared_unchecked(text.slice(from..to))
    };
    headers.insert(REQUEST_ID_NAME.clone(), value(0, 36));
    if ids_end > 36 {
        headers.insert(PROJECT_ID_NAME.clone(), value(36, ids_end));
    }
    if let Some(rpm) = &ctx.rpm {
        headers.insert(RATELIMIT_LIMIT.clone(), value(ids_end, ends[0]));
        headers.insert(RATELIMIT_REMAINING.clone(), value(ends[0], ends[1]));
        headers.insert(RATELIMIT_RESET.clone(), value(ends[1], ends[2] + 1));
        if !rpm.allowed {
            headers.insert(http::header::RETRY_AFTER, value(ends[1], ends[2]));
        }
    }
    if framing == Framing::Chunked {
        headers.remove(http::header::CONTENT_LENGTH);
        headers.insert(
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let mut rebuilt = ResponseHeader::from(parts);
    if custom_reason.is_some() {
        rebuilt.set_reason_phrase(custom_reason.as_deref())?;
    }
    *resp = rebuilt;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::rpm::RpmDecision;

    fn wire(resp: &ResponseHeader) -> String {
        let mut buf = Vec::new();
        resp.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    #[test]
    fn gateway_headers_replace_upstream_ones_and_keep_the_rest() -> pingora_error::Result<()> {
        let mut resp = ResponseHeader::build(200, None)?;
        resp.set_reason_phrase(Some("Fine"))?;
        resp.insert_header("X-Upstream-Thing", "kept")?;
        resp.insert_header("Content-Type", "application/json")?;
        resp.insert_header("Content-Length", "10")?;
        resp.insert_header("x-ratelimit-limit-requests", "5000")?;
        resp.insert_header("x-ratelimit-limit-tokens", "800000")?;
        let mut ctx = RequestCtx::new();
        ctx.project_id = Some(uuid::Uuid::from_u128(0xabc));
        ctx.rpm = Some(RpmDecision {
            allowed: false,
            limit: 60,
            remaining: 0,
            reset_ms: 1_500,
        });

        add_gateway_headers(&mut resp, &ctx, Framing::Unchanged)?;

        assert_eq!(resp.status.as_u16(), 200);
        assert_eq!(resp.get_reason_phrase(), Some("Fine"));
        let value = |name: &str| {
            let values: Vec<_> = resp.headers.get_all(name).iter().collect();
            assert!(values.len() <= 1, "{name} appears {} times", values.len());
            values
                .first()
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = ctx.request_id.hyphenated().to_string();
        assert_eq!(
            value("floopy-request-id").as_deref(),
            Some(request_id.as_str())
        );
        assert_eq!(
            value("floopy-project-id").as_deref(),
            Some("00000000-0000-0000-0000-000000000abc")
        );
        assert_eq!(value("x-ratelimit-limit-requests").as_deref(), Some("60"));
        assert_eq!(
            value("x-ratelimit-remaining-requests").as_deref(),
            Some("0")
        );
        assert_eq!(value("x-ratelimit-reset-requests").as_deref(), Some("2s"));
        assert_eq!(value("retry-after").as_deref(), Some("2"));
        assert_eq!(value("x-ratelimit-limit-tokens").as_deref(), Some("800000"));
        assert_eq!(value("x-upstream-thing").as_deref(), Some("kept"));
        assert_eq!(value("content-length").as_deref(), Some("10"));

        let wire = wire(&resp);
        assert!(
            wire.contains("Content-Type: application/json\r\n"),
            "{wire}"
        );
        assert!(wire.contains("Content-Length: 10\r\n"), "{wire}");
        assert!(wire.contains("x-upstream-thing: kept\r\n"), "{wire}");
        assert!(
            wire.contains(&format!("floopy-request-id: {request_id}\r\n")),
            "{wire}"
        );
        assert_eq!(wire.matches("\r\n").count(), 10, "{wire}");
        Ok(())
    }

    #[test]
    fn chunked_framing_drops_the_length() -> pingora_error::Result<()> {
        let mut resp = ResponseHeader::build(200, None)?;
        resp.insert_header("Content-Type", "text/event-stream")?;
        resp.insert_header("Content-Length", "300")?;
        let ctx = RequestCtx::new();

        add_gateway_headers(&mut resp, &ctx, Framing::Chunked)?;

        assert_eq!(resp.get_reason_phrase(), Some("OK"));
        assert!(resp.headers.get("content-length").is_none());
        assert_eq!(
            resp.headers.get("transfer-encoding").map(|v| v.as_bytes()),
            Some(&b"chunked"[..])
        );
        assert!(resp.headers.get("x-ratelimit-limit-requests").is_none());
        assert!(resp.headers.get("floopy-project-id").is_none());
        assert!(resp.headers.get("floopy-request-id").is_some());
        Ok(())
    }
}
