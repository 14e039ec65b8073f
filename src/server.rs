//! The HTTP server under the router: the accept loop, the connection limit, the header-read and
//! idle timeouts, and graceful shutdown. `app.rs` binds the listener and hands it here with the
//! router.
//!
//! `axum::serve` had no header-read or idle timeout and no connection limit: 200 idle or
//! half-sent-header sockets under a 128-descriptor limit were still open after 65 s while
//! `/health` timed out and every accept failed with "Too many open files" (issue #17 row 8).
//!
//! Each connection is in one of three phases, and a timer of its own closes it when a phase
//! lasts too long:
//! - **head**: from the accept, or from the first byte after an idle spell, until the request
//!   head is complete: `HEADER_READ_TIMEOUT_SECONDS`, however the bytes trickle in, so a silent
//!   new connection and a slowloris are cut alike (nginx's `client_header_timeout`, Go's
//!   `ReadHeaderTimeout`);
//! - **idle**: a kept-alive connection between a response and the next request's first byte:
//!   `IDLE_TIMEOUT_SECONDS` (nginx's `keepalive_timeout`, Go's `IdleTimeout`); writing out the
//!   end of a response to a slow reader counts as activity;
//! - **busy**: a request in the handler or its response being sent: the handler is bounded by
//!   `REQUEST_TIMEOUT_SECONDS` (the router's timeout), and the connection is closed when no byte
//!   moves either way for the longer of the idle and the request timeout (a client that asks for
//!   a large listing and never reads it).
//!
//! hyper's own `header_read_timeout` is not used: in hyper 1.x its timer starts whenever the
//! connection waits for a request head, and that includes the wait between requests on a
//! kept-alive connection (`proto/h1/conn.rs`: `poll_read_head` arms it, and a connection that
//! goes idle sets `notify_read` "so we can close the connection if another header isn't received
//! in a timely manner"). With it, an idle connection would be closed after the header timeout
//! and the idle timeout could never be longer.
//!
//! At `MAX_CONNECTIONS` open connections the loop stops accepting: new connections wait in the
//! kernel's listen backlog (tokio's 1024) until a connection closes, rather than being accepted
//! and closed at once. A waiting client is served late instead of failing, and since idle and
//! slow connections are cut by the timers above, the wait is bounded by them.
//!
//! Only HTTP/1.1 (and 1.0) is served, as before: the clients of this API speak HTTP/1.1, and
//! `axum::serve` was built without HTTP/2.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

/// The connection limits and timeouts (`MAX_CONNECTIONS`, `HEADER_READ_TIMEOUT_SECONDS`,
/// `IDLE_TIMEOUT_SECONDS`; `REQUEST_TIMEOUT_SECONDS` bounds a stalled busy connection too).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerLimits {
    /// Connections served at once; beyond it new ones wait in the listen backlog.
    pub max_connections: usize,
    /// From the accept (or the first byte of a next request) to a complete request head.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request.
    pub idle_timeout: Duration,
    /// The handler's bound; a busy connection where nothing moves for the longer of this and
    /// `idle_timeout` is closed.
    pub request_timeout: Duration,
}

/// The shortest and longest pause after an accept that failed for want of resources (EMFILE and
/// the like): a failing accept would otherwise spin the loop, and a log line per attempt would
/// flood the log.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// How often, at most, waiting at the connection limit is logged.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits for
/// the open connections: idle ones are closed at once, requests under way are answered.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // The phases above are timed by `Activity::expired`, not by hyper (see the module docs).
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    let mut backoff = AcceptBackoff::default();
    let mut limit_warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        if permits.available_permits() == 0
            && limit_warned.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_INTERVAL)
        {
            tracing::warn!(
                max_connections = limits.max_connections,
                "Connection limit reached; new connections wait in the listen backlog until \
                 one closes (MAX_CONNECTIONS)."
            );
            limit_warned = Some(Instant::now());
        }
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff.succeeded();
                stream
            }
            Err(error) => {
                if let Some(pause) = backoff.failed(&error) {
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                continue;
            }
        };
        // Responses are written in one go; Nagle's algorithm would only delay the last segment.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY could not be set.");
        }
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let service = {
            let activity = Arc::clone(&activity);
            let router = router.clone();
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let busy = Busy::begin(Arc::clone(&activity));
                let router = router.clone();
                async move {
                    let response = router.oneshot(request.map(Body::new)).await?;
                    Ok::<_, Infallible>(response.map(|body| Body::new(Guarded { body, busy })))
                }
            })
        };
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                served = connection => {
                    if let Err(error) = served {
                        // hyper has answered what it could (400, 431) and closed: the client's fault.
                        tracing::debug!(%error, "Connection ended with an error.");
                    }
                }
                phase = activity.expired(limits) => {
                    tracing::debug!(?phase, "Connection closed: it stayed too long in one phase.");
                }
            }
        });
    }
    // Stop accepting: connections from now on are refused, not left in the backlog.
    drop(listener);
    tracing::info!(
        open = graceful.count(),
        "Stopped accepting; waiting for open connections."
    );
    graceful.shutdown().await;
}

/// Descriptors kept for the rest of the process (the database and its journal, model files, the
/// alert clients' connections, the listener) when comparing `MAX_CONNECTIONS` with the limit.
const OTHER_DESCRIPTORS: u64 = 64;

/// Warns at start-up when `max_connections` cannot all be open under the process's open-file
/// limit: accepts would then fail with EMFILE (paused and retried, but clients wait) before the
/// connection limit is reached. Linux only; elsewhere nothing is said.
pub fn check_open_file_limit(max_connections: usize) {
    let Some(soft) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| soft_open_file_limit(&limits))
    else {
        return;
    };
    let wanted = u64::try_from(max_connections).unwrap_or(u64::MAX);
    if wanted.saturating_add(OTHER_DESCRIPTORS) > soft {
        tracing::warn!(
            max_connections,
            open_file_limit = soft,
            "MAX_CONNECTIONS plus the service's own files exceed the open-file limit: beyond about \
             the limit, new connections wait until others close. Raise the limit (ulimit -n) or \
             lower MAX_CONNECTIONS."
        );
    }
}

/// The soft "Max open files" of a `/proc/PID/limits` text; `None` when unlimited or absent.
fn soft_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Pauses after accepts that fail for want of resources, and logs such a spell once at its start
/// and once at its end, however long it lasts.
#[derive(Debug, Default)]
struct AcceptBackoff {
    failures: u64,
    pause: Duration,
}

impl AcceptBackoff {
    /// The pause before the next accept, `None` when the error concerned one connection only
    /// (reset or aborted before it was accepted: the next one may be fine).
    fn failed(&mut self, error: &io::Error) -> Option<Duration> {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::Interrupted
        ) {
            return None;
        }
        self.failures += 1;
        if self.failures == 1 {
            tracing::error!(
                %error,
                "Accepting connections failed; pausing between tries until it works again. If the \
                 error is \"Too many open files\", raise the open-file limit or lower MAX_CONNECTIONS."
            );
        }
        self.pause = if self.pause.is_zero() {
            ACCEPT_PAUSE_MIN
        } else {
            (self.pause * 2).min(ACCEPT_PAUSE_MAX)
        };
        Some(self.pause)
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::warn!(failures = self.failures, "Accepting connections again.");
            *self = Self::default();
        }
    }
}

/// The phase a connection is in (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head = 0,
    Busy = 1,
    Idle = 2,
}

/// One connection's phase and when it began, and when a byte last moved, as milliseconds since
/// the accept; written by the socket wrapper and the request guard, read by the connection's
/// timer.
#[derive(Debug)]
struct Activity {
    origin: Instant,
    /// `millis << 2 | phase`: both change together.
    phase: AtomicU64,
    last_io_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            phase: AtomicU64::new(Phase::Head as u64),
            last_io_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX >> 2)
    }

    fn at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }

    fn load(&self) -> (Phase, u64) {
        let packed = self.phase.load(Ordering::Acquire);
        let phase = match packed & 3 {
            0 => Phase::Head,
            1 => Phase::Busy,
            _ => Phase::Idle,
        };
        (phase, packed >> 2)
    }

    fn enter(&self, phase: Phase) {
        self.phase
            .store(self.now_ms() << 2 | phase as u64, Ordering::Release);
    }

    /// Bytes were read: the first byte after an idle spell starts the next request's head.
    fn read(&self) {
        let now = self.now_ms();
        self.last_io_ms.store(now, Ordering::Relaxed);
        let current = self.phase.load(Ordering::Acquire);
        if current & 3 == Phase::Idle as u64 {
            // A request that began meanwhile (busy) wins.
            let _ = self.phase.compare_exchange(
                current,
                now << 2 | Phase::Head as u64,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn wrote(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Completes when the connection has stayed in its phase longer than its limit, with that
    /// phase.
    async fn expired(&self, limits: ServerLimits) -> Phase {
        loop {
            let (phase, since) = self.load();
            let last_io = self.last_io_ms.load(Ordering::Relaxed);
            let deadline = match phase {
                Phase::Head => self.at(since) + limits.header_read_timeout,
                Phase::Idle => self.at(since.max(last_io)) + limits.idle_timeout,
                Phase::Busy => {
                    self.at(since.max(last_io)) + limits.idle_timeout.max(limits.request_timeout)
                }
            };
            if Instant::now() >= deadline {
                // Checked again: the phase may have changed while the timer slept.
                if self.load() == (phase, since)
                    && self.last_io_ms.load(Ordering::Relaxed) == last_io
                {
                    return phase;
                }
                continue;
            }
            // A phase change does not wake this timer (waking it on every request would cost
            // every request a wake-up), and the next phase's limit may be shorter than what is
            // left of this one (a head timer of 60 s, then an idle one of 1 s): look again at
            // least as often as the shortest limit. A phase's end is then noticed at most that
            // late; its deadline is still counted from its start.
            let shortest = limits.idle_timeout.min(limits.header_read_timeout);
            tokio::time::sleep_until(deadline.min(Instant::now() + shortest)).await;
        }
    }
}

/// A request in flight: the connection is busy from the moment its head is read until its
/// response body has been sent (or dropped); then it is idle.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.enter(Phase::Busy);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.enter(Phase::Idle);
        }
    }
}

/// A response body that keeps its request's [`Busy`] until hyper has sent it and drops it.
struct Guarded {
    body: Body,
    #[allow(dead_code)] // held for its `Drop`
    busy: Busy,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling its connection's [`Activity`] when bytes move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63451                63451                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_file_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_open_file_limit(unlimited), None);
    }

    #[test]
    fn an_accept_that_failed_for_one_connection_is_retried_at_once() {
        let mut backoff = AcceptBackoff::default();
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.failed(&reset), None);
        assert_eq!(backoff.failures, 0);
    }

    #[test]
    fn running_out_of_descriptors_pauses_longer_each_time_up_to_a_cap() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..10).filter_map(|_| backoff.failed(&emfile)).collect();
        assert_eq!(pauses[0], ACCEPT_PAUSE_MIN);
        assert!(pauses.windows(2).all(|pair| pair[1] >= pair[0]));
        assert_eq!(pauses.last(), Some(&ACCEPT_PAUSE_MAX));
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile), Some(ACCEPT_PAUSE_MIN));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_expires_after_the_header_timeout() {
        let activity = Activity::new();
        let start = Instant::now();
        assert_eq!(activity.expired(limits()).await, Phase::Head);
        assert_eq!(start.elapsed(), limits().header_read_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_expires_after_the_idle_timeout() {
        let activity = Arc::new(Activity::new());
        drop(Busy::begin(Arc::clone(&activity)));
        let start = Instant::now();
        assert_eq!(activity.expired(limits()).await, Phase::Idle);
        assert_eq!(start.elapsed(), limits().idle_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_after_an_idle_spell_starts_the_header_timeout() {
        let activity = Arc::new(Activity::new());
        drop(Busy::begin(Arc::clone(&activity)));
        tokio::time::sleep(Duration::from_secs(30)).await;
        activity.read();
        let start = Instant::now();
        assert_eq!(activity.expired(limits()).await, Phase::Head);
        assert_eq!(start.elapsed(), limits().header_read_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_next_phase_is_noticed_while_the_timer_waits_on_a_longer_one() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(1),
            ..limits()
        };
        let activity = Arc::new(Activity::new());
        let watcher = {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move { activity.expired(limits).await })
        };
        // The timer starts in the head phase, with 60 s to go.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(Busy::begin(Arc::clone(&activity)));
        let phase = tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("closed long before the head timeout")
            .expect("joins");
        assert_eq!(phase, Phase::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_lives_while_bytes_move_and_expires_when_they_stop() {
        let activity = Arc::new(Activity::new());
        let _busy = Busy::begin(Arc::clone(&activity));
        let watcher = {
            let activity = Arc::clone(&activity);
            tokio::spawn(async move { activity.expired(limits()).await })
        };
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(50)).await;
            activity.wrote();
        }
        assert!(!watcher.is_finished(), "bytes moved every 50 s");
        let start = Instant::now();
        assert_eq!(watcher.await.expect("joins"), Phase::Busy);
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }
}
