//! A deadline for each request's header: from its first byte, the whole
//! header must arrive within `server.header_timeout_ms`, or the connection
//! is closed (`floopy_header_timeouts_total`). Pingora's own timeout is per
//! read (60 s), so without this a client sending a byte at a time holds a
//! connection, its task and its buffers for as long as it likes.
//!
//! `HeaderDeadline` wraps the proxy's `ServerApp`: each accepted connection
//! (plain, or TLS after its handshake) is wrapped in a `DeadlineStream`,
//! and on a kept-alive connection's next request the same wrapper is armed
//! again. The common case costs nothing: a header that arrives in one read
//! is seen whole in that read, and no timer is ever registered. Only a
//! header split across reads arms a timer, while the next read waits.
//!
//! An HTTP/2 connection's preface ends like a header, so the deadline never
//! applies to it (HTTP/2 has its own idle timeout).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;

/// The proxy's `ServerApp`, with a deadline on every request header.
pub struct HeaderDeadline<A> {
    inner: Arc<A>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl<A> HeaderDeadline<A> {
    pub fn new(inner: A, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        HeaderDeadline {
            inner: Arc::new(inner),
            timeout,
            metrics,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeaderDeadline<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream: Stream = if stream.as_any().is::<DeadlineStream>() {
            // A kept-alive connection, back for its next request.
            let Ok(mut again) = stream.into_any().downcast::<DeadlineStream>() else {
                unreachable!("checked to be a DeadlineStream");
            };
            again.arm();
            again
        } else {
            Box::new(DeadlineStream {
                inner: stream,
                timeout: self.timeout,
                state: State::Waiting,
                metrics: self.metrics.clone(),
            })
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

#[derive(Debug)]
enum State {
    /// No byte of the next header yet: nothing is timed.
    Waiting,
    /// Part of a header came; the rest is due by `deadline`.
    Reading {
        deadline: Instant,
        /// Registered only when a read has to wait.
        timer: Option<Pin<Box<Sleep>>>,
        /// The last two bytes read, for a header end split across reads.
        tail: [u8; 2],
    },
    /// The header is complete: reads are the body's, not timed here.
    Done,
}

/// A connection whose request headers have a deadline.
#[derive(Debug)]
pub struct DeadlineStream {
    inner: Stream,
    timeout: Duration,
    state: State,
    metrics: Arc<Metrics>,
}

impl DeadlineStream {
    /// The next request's header is timed from its first byte.
    fn arm(&mut self) {
        self.state = State::Waiting;
    }

    /// Notes bytes just read; true when they complete the header.
    fn saw(&mut self, new: &[u8]) -> bool {
        let tail = match &mut self.state {
            State::Done => return true,
            State::Waiting => [0, 0],
            State::Reading { tail, .. } => *tail,
        };
        if header_ends(tail, new) {
            self.state = State::Done;
            return true;
        }
        let mut last = [tail[0], tail[1]];
        for b in new {
            last = [last[1], *b];
        }
        match &mut self.state {
            State::Reading { tail, .. } => *tail = last,
            _ => {
                self.state = State::Reading {
                    deadline: Instant::now() + self.timeout,
                    timer: None,
                    tail: last,
                }
            }
        }
        false
    }

    fn expired(&self) -> io::Error {
        self.metrics.header_timeouts.inc();
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "request header not complete within {} ms",
                self.timeout.as_millis()
            ),
        )
    }
}

/// Whether a blank line (`\n\n` or `\n\r\n`) ends in `new`, given the two
/// bytes read before it.
fn header_ends(tail: [u8; 2], new: &[u8]) -> bool {
    let at = |i: isize| -> u8 {
        if i >= 0 {
            new[i as usize]
        } else {
            tail[(2 + i) as usize]
        }
    };
    memchr::memchr_iter(b'\n', new).any(|i| {
        let i = i as isize;
        at(i - 1) == b'\n' || (at(i - 1) == b'\r' && at(i - 2) == b'\n')
    })
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.state, State::Done) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                // An empty read is the end of the connection: nothing to time.
                if !new.is_empty() && !this.saw(new) {
                    if let State::Reading { deadline, .. } = &this.state {
                        if Instant::now() >= *deadline {
                            return Poll::Ready(Err(this.expired()));
                        }
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let State::Reading {
                    deadline, timer, ..
                } = &mut this.state
                {
                    let timer =
                        timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(*deadline)));
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(this.expired()));
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora_core::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_line_ends_the_header_even_split_across_reads() {
        assert!(header_ends([0, 0], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(header_ends([0, 0], b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(!header_ends([0, 0], b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(header_ends(*b"\r\n", b"\r\n"));
        assert!(header_ends([b'a', b'\n'], b"\r\n"));
        assert!(header_ends([b'\n', b'\r'], b"\n"));
        assert!(header_ends([b'x', b'\n'], b"\n"));
        assert!(!header_ends([b'\r', b'\n'], b"X"));
        assert!(!header_ends([0, 0], b""));
    }
}
