//! Serving HTTP connections with bounds that `axum::serve` does not set: a cap on open
//! connections (more are closed as soon as they are accepted), a timeout on reading a request
//! head (clients that send their headers a byte at a time), and an idle timeout (a connection
//! with no request in flight and no bytes either way for that long is closed). Request bodies
//! are bounded by the request deadline (see
//! [`AppState::within_deadline`](crate::state::AppState::within_deadline)).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use embedrt_runtime::config::ConnectionLimits;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// File descriptors kept free of connections: for model files, plugins, the gRPC listener and
/// its connections, Redis.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then it stops
/// accepting, lets the requests in flight finish and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.idle_timeout / 2);
    let open = Arc::new(Semaphore::new(connection_cap(limits.max_connections)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(place) = Arc::clone(&open).try_acquire_owned() else {
            metrics::counter!(embedrt_runtime::telemetry::REFUSED_CONNECTIONS).increment(1);
            drop(stream);
            continue;
        };
        // Without TCP_NODELAY, a small answer waits for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = Watched {
            stream,
            activity: Arc::clone(&activity),
        };
        let service = TowerToHyperService::new(Counted {
            router: router.clone(),
            activity: Arc::clone(&activity),
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            tokio::pin!(connection);
            loop {
                let idle_until = activity.idle_until(idle_timeout);
                tokio::select! {
                    _ = &mut connection => break,
                    () = tokio::time::sleep_until(idle_until) => {
                        if activity.is_idle(idle_timeout) {
                            // Dropping the connection closes it.
                            break;
                        }
                    }
                }
            }
            drop(place);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// When a connection last moved bytes, and how many of its requests are being answered.
struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last read or write.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// When the connection turns idle for `timeout` if nothing happens before.
    fn idle_until(&self, timeout: Duration) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + timeout
    }

    /// Whether no request is being answered and no byte moved for `timeout`.
    fn is_idle(&self, timeout: Duration) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && Instant::now() >= self.idle_until(timeout)
    }
}

/// A connection's socket, recording its activity.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
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
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The router, counting a connection's requests in flight (an idle timeout must not cut a
/// request that waits for a long batch).
#[derive(Clone)]
struct Counted {
    router: Router,
    activity: Arc<Activity>,
}

/// Counts one request in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl<B> tower::Service<Request<B>> for Counted
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight(Arc::clone(&self.activity));
        let request = request.map(axum::body::Body::new);
        let answer = tower::Service::call(&mut self.router, request);
        Box::pin(async move {
            let response = answer.await;
            drop(in_flight);
            response
        })
    }
}

/// The most connections that can be open at once: `configured`, or fewer when the process may
/// not open that many files (its soft `RLIMIT_NOFILE` is first raised to the hard limit, as
/// servers commonly do). Past the file limit, `accept` itself would fail for everyone.
fn connection_cap(configured: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid `rlimit`.
    let files = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return configured;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                ..limit
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        limit.rlim_cur
    };
    let room = usize::try_from(files.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX);
    if room < configured {
        tracing::warn!(
            configured,
            cap = room,
            "`max_connections` is above what the file-descriptor limit allows; serving at most cap"
        );
    }
    configured.min(room.max(1))
}
