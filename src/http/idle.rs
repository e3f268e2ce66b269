//! The connection's idle timeout: a connection that sends nothing for the idle period
//! while the server waits for a request is closed. While a request is being handled the
//! clock is stopped — a long row load or training run is not idleness — and the body's
//! own reads are timed by the body readers instead (`BodyTimeout`), so a stalled body
//! still ends.
//!
//! hyper keeps a read pending on the socket while a handler runs, so a plain read
//! timeout would cut those requests off; hence this small wrapper, whose clock restarts
//! on every byte read or written and runs only when no request is in flight.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a request body may go without a byte: the connection's idle timeout,
/// handed to the body readers as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Requests of one connection being handled now (hyper handles one at a time on
/// HTTP/1, but a counter makes no assumption).
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Marks a request as started; the returned guard marks it done when dropped.
    pub fn start(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

pub struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream whose pending reads fail with `TimedOut` after `idle` without any traffic,
/// unless a request is in flight.
pub struct IdleStream<S> {
    inner: S,
    idle: Duration,
    in_flight: InFlight,
    /// When a byte last moved. Kept apart from the timer, which is moved to
    /// `last + idle` only when a read waits: resetting a registered timer takes the time
    /// driver's lock, too dear on every read and write of every request.
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<S> IdleStream<S> {
    pub fn new(inner: S, idle: Duration, in_flight: InFlight) -> IdleStream<S> {
        IdleStream { inner, idle, in_flight, last: Instant::now(), timer: Box::pin(tokio::time::sleep(idle)) }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Polls the idle timer, first moving it to `last + idle` if traffic came since it
    /// was set; ready when the connection has really been idle that long.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.last + self.idle;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.touch();
                Poll::Ready(result)
            }
            Poll::Pending if this.in_flight.busy() => Poll::Pending,
            Poll::Pending if this.idle_expired(cx) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        if written.is_ready() {
            self.touch();
        }
        written
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
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if written.is_ready() {
            self.touch();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
