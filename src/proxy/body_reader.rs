//! Reads the whole request body in `request_filter` (the model in it picks
//! the provider), within the size limit, so that Pingora can still forward
//! it afterwards.
//!
//! Pingora forwards a body read in `request_filter` only through its retry
//! buffer, which holds at most 64 KiB and is useless once it overflowed.
//! The gateway keeps the whole body itself and only needs Pingora to call
//! `request_body_filter` once with end-of-stream, where the kept body is
//! sent. So retry buffering is turned on only for the last 64 KiB of a body
//! whose `Content-Length` is known: the buffer then never overflows, however
//! large the body. A chunked body of unknown length gets the buffer from its
//! first byte and so is limited to 64 KiB (longer ones: 411).

use bytes::{Bytes, BytesMut};
use pingora::prelude::Session;

use crate::error::GatewayError;

/// Pingora's retry buffer size (`BODY_BUF_LIMIT` in pingora-core).
pub const RETRY_BUFFER_LIMIT: usize = 64 * 1024;

/// Reads the request body, answering `Expect: 100-continue` first.
pub async fn read_body(session: &mut Session, max_body_bytes: u64) -> Result<Bytes, GatewayError> {
    let content_length = match session.get_header(http::header::CONTENT_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| GatewayError::BodyRead("Content-Length is not a number".into()))?,
        ),
    };
    if let Some(length) = content_length {
        if length > max_body_bytes {
            return Err(GatewayError::BodyTooLarge {
                limit: max_body_bytes,
            });
        }
    }
    let expects_continue = session
        .get_header(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .as_downstream_mut()
            .write_continue_response()
            .await
            .map_err(|e| GatewayError::BodyRead(e.to_string()))?;
    }

    // A body that arrives in one chunk (the usual case) is kept as that
    // chunk; a longer one is gathered.
    let mut first: Option<Bytes> = None;
    let mut gathered: Option<BytesMut> = None;
    let mut read = 0usize;
    let mut buffering = false;
    loop {
        let remaining = content_length.map(|l| l as usize - read.min(l as usize));
        if !buffering && remaining.is_none_or(|r| r <= RETRY_BUFFER_LIMIT) {
            session.enable_retry_buffering();
            buffering = true;
        }
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                if read as u64 > max_body_bytes {
                    return Err(GatewayError::BodyTooLarge {
                        limit: max_body_bytes,
                    });
                }
                match (&mut gathered, first.take()) {
                    (Some(all), _) => all.extend_from_slice(&chunk),
                    (None, None) => first = Some(chunk),
                    (None, Some(earlier)) => {
                        let capacity = content_length.map_or(0, |l| l as usize);
                        let mut all = BytesMut::with_capacity(capacity.max(read));
                        all.extend_from_slice(&earlier);
                        all.extend_from_slice(&chunk);
                        gathered = Some(all);
                    }
                }
            }
            Ok(None) => break,
            Err(e) => return Err(GatewayError::BodyRead(e.to_string())),
        }
    }
    // Pingora replays the body from its retry buffer, which holds the last
    // 64 KiB read (buffering starts before them); a truncated one means the
    // body cannot be forwarded.
    if read > 0 && (!buffering || session.as_downstream().retry_buffer_truncated()) {
        return Err(match content_length {
            None => GatewayError::LengthRequired {
                limit: RETRY_BUFFER_LIMIT,
            },
            Some(_) => GatewayError::Internal("the request body could not be replayed".into()),
        });
    }
    Ok(match gathered {
        Some(all) => all.freeze(),
        None => first.unwrap_or_default(),
    })
}
