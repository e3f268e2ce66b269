//! The accept loop: HTTP/1.1 connections, request ids, panic isolation, graceful shutdown.
//!
//! Shaped like mini-redis: [`serve`] takes an already-bound listener and a shutdown future, so
//! `main` binds the configured port and tests bind port 0. The handler is any async function
//! from request to response; routing, auth and bodies are its business (see the sibling
//! modules), which keeps this loop free of API knowledge.
//!
//! Guarantees every handler can rely on:
//! * the request carries a [`RequestId`] extension, and the response an `x-request-id` header
//!   with the same value (the client's own id when it sent a sane one);
//! * a panicking handler yields a 500 envelope and the server keeps serving — input can
//!   never take the process down;
//! * on shutdown, in-flight requests finish (up to a grace period) while idle keep-alive
//!   connections are closed and no new ones are accepted.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};

use super::error::{ApiError, INTERNAL_MESSAGE};
use super::idle::{BodyTimeout, IdleStream, InFlight};
use super::response::HttpResponse;
use crate::ids::new_id;

/// How long shutdown waits for in-flight requests before dropping their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A client that has not sent complete request headers by then is disconnected, so
/// slow-loris connections cannot pile up.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection on which the server waits this long for a byte — an idle keep-alive
/// connection, or a body that stalled — is closed, so stalled clients give their socket
/// back instead of holding it for as long as they like (`ARBITER_IDLE_TIMEOUT_MS`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

fn idle_timeout() -> Duration {
    let ms = std::env::var("ARBITER_IDLE_TIMEOUT_MS").ok().and_then(|v| v.parse::<u64>().ok()).filter(|&ms| ms > 0);
    ms.map_or(IDLE_TIMEOUT, Duration::from_millis)
}

/// Connections served at once unless `ARBITER_MAX_CONNECTIONS` says otherwise; beyond it a
/// new connection gets a 503 and is closed, so a flood of (stalled) connections cannot use
/// up the process's file descriptors and lock every client out.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// Descriptors kept free of connections: the store, log files, the plugins watcher.
const RESERVED_DESCRIPTORS: u64 = 512;

/// The answer to a connection over the limit (and the connection is then closed).
fn overloaded_response() -> Vec<u8> {
    let id = new_id();
    let body = format!(
        r#"{{"error":{{"code":"SERVICE_UNAVAILABLE","message":"too many open connections; retry shortly","status":503,"requestId":"{id}"}}}}"#
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\n\
         {REQUEST_ID_HEADER}: {id}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Raises the soft limit on open files to the hard limit and returns how many
/// connections fit under it: the configured maximum, or fewer if descriptors are short.
pub fn connection_limit() -> usize {
    let wanted = std::env::var("ARBITER_MAX_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let files = raise_fd_limit();
    let fit = files.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize;
    if fit < wanted {
        tracing::warn!(
            open_files = files,
            max_connections = fit,
            "few file descriptors: fewer connections are served at once"
        );
    }
    wanted.min(fit)
}

/// Raises this process's soft open-files limit to its hard limit; returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The header carrying the correlation id, in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest client-supplied request id we reuse; longer ones are replaced.
const MAX_CLIENT_REQUEST_ID: usize = 128;

/// The request's correlation id, inserted into every request's extensions before the handler
/// runs; error envelopes should carry it (`ApiError::into_response(&id.0)`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(pub String);

/// Serves HTTP/1.1 on `listener` until `shutdown` completes, then drains for up to
/// [`SHUTDOWN_GRACE`].
pub async fn serve<H, F>(listener: TcpListener, shutdown: impl Future<Output = ()>, handler: H) -> io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    serve_with_grace(listener, shutdown, handler, SHUTDOWN_GRACE).await
}

/// [`serve`] with an explicit drain period.
pub async fn serve_with_grace<H, F>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    handler: H,
    grace: Duration,
) -> io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "listening");
    }
    // One broadcast flag to every connection: a watch channel, because a connection accepted
    // just before shutdown still sees the current value when it starts waiting.
    let (stop_sender, stop) = watch::channel(false);
    // A JoinSet so shutdown can wait for, and finally abort, exactly the live connections.
    let mut connections = JoinSet::new();
    let max_connections = connection_limit();
    let idle = idle_timeout();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if connections.len() >= max_connections => {
                    tokio::spawn(refuse(stream));
                }
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, idle, handler.clone(), stop.clone()));
                }
                Err(e) => pause_after_accept_error(e).await,
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => log_connection_task(finished),
        }
    }
    drop(listener);
    tracing::info!(open = connections.len(), "shutting down; finishing in-flight requests");
    // Ignoring the error is right: it only means no connection is listening any more.
    let _ = stop_sender.send(true);
    drain(connections, grace).await;
    Ok(())
}

/// Answers a connection over the limit with a 503 and closes it (bounded in time, so
/// a client that does not read cannot keep even this socket).
async fn refuse(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut scratch = [0u8; 4096];
    // Read what the client sent first: closing a socket with unread input resets the
    // connection, and the client would see the reset instead of the 503.
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut scratch)).await;
    let answered = async {
        stream.write_all(&overloaded_response()).await?;
        stream.shutdown().await?;
        while stream.read(&mut scratch).await? > 0 {}
        Ok::<(), io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answered).await;
    tracing::debug!("connection refused: at the connection limit");
}

/// Waits up to `grace` for connections to finish, then aborts the rest.
async fn drain(mut connections: JoinSet<()>, grace: Duration) {
    let all_done = async {
        while let Some(finished) = connections.join_next().await {
            log_connection_task(finished);
        }
    };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        tracing::warn!(open = connections.len(), ?grace, "connections still open after the grace period; closing them");
        connections.shutdown().await;
    }
}

fn log_connection_task(finished: Result<(), JoinError>) {
    if let Err(e) = finished {
        tracing::debug!(error = %e, "connection task ended abnormally");
    }
}

/// Per-connection accept errors (the peer reset before we accepted) are routine; anything else
/// (out of file descriptors) is worth a warning and a short pause instead of a hot loop.
async fn pause_after_accept_error(e: io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted => {
            tracing::debug!(error = %e, "accept failed");
        }
        _ => {
            tracing::warn!(error = %e, "accept failed; pausing briefly");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Serves one connection until the client closes it or shutdown asks it to finish.
async fn serve_connection<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    idle: Duration,
    handler: H,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let in_flight = InFlight::default();
    let requests = in_flight.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        let handler = handler.clone();
        // The connection's idle clock stops while the request is handled; its body is
        // timed by the body readers (`BodyTimeout`).
        let guard = requests.start();
        req.extensions_mut().insert(BodyTimeout(idle));
        async move {
            let response = respond(handler, req).await;
            drop(guard);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder.keep_alive(true).timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let stream = IdleStream::new(stream, idle, in_flight);
    let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection error");
    }
}

/// Resolves once shutdown is signalled — or the server is gone without signalling, which
/// calls for the same response.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The returned guard must not live across an await (it is not `Send`), so drop it here.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Runs the handler for one request with a request id, isolating panics.
///
/// The handler is polled in place under `catch_unwind` ([`CatchPanic`]): a panic becomes a
/// 500 instead of unwinding through hyper. It used to run in a task of its own, which cost
/// two cross-task wake-ups per request and showed as ~25% of server CPU in scheduler code
/// under load. If the client disconnects, the handler future is dropped; commands it
/// already sent to a tenant actor are still applied and persisted by the actor.
async fn respond<H, F>(handler: H, mut req: Request<Incoming>) -> HttpResponse
where
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let id = client_request_id(req.headers()).unwrap_or_else(new_id);
    req.extensions_mut().insert(RequestId(id.clone()));
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let started = Instant::now();
    let mut response = match (CatchPanic { inner: Box::pin(handler(req)) }).await {
        Ok(response) => response,
        Err(payload) => {
            tracing::error!(request_id = %id, %method, %path, panic = %panic_message(payload), "handler failed");
            ApiError::Internal(INTERNAL_MESSAGE.to_string()).into_response(&id)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let micros = started.elapsed().as_micros();
    tracing::debug!(request_id = %id, %method, %path, status = response.status().as_u16(), micros, "request");
    response
}

/// The client's `x-request-id` if it is short and made of safe characters (it is echoed into
/// logs and headers, so anything else is replaced rather than trusted).
fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = !value.is_empty()
        && value.len() <= MAX_CLIENT_REQUEST_ID
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    sane.then(|| value.to_string())
}

/// Polls a future, turning a panic inside it into `Err(payload)`.
struct CatchPanic<F> {
    inner: std::pin::Pin<Box<F>>,
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let inner = self.get_mut().inner.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(std::task::Poll::Ready(value)) => std::task::Poll::Ready(Ok(value)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(payload)),
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::Response;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{mpsc, oneshot};
    use tokio::task::JoinHandle;

    /// A parsed HTTP/1.1 response.
    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }
    }

    /// Reads exactly one response (Content-Length framed, as hyper sends for `Full` bodies).
    async fn read_reply(stream: &mut TcpStream) -> Reply {
        let mut raw = Vec::new();
        let head_end = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the headers: {:?}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = raw[head_end..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..n]);
        }
        Reply { status, headers, body: String::from_utf8(body).unwrap() }
    }

    async fn get(addr: SocketAddr, path: &str, extra_headers: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra_headers}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        read_reply(&mut stream).await
    }

    fn text(status: u16, body: String) -> HttpResponse {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        response
    }

    /// Echoes the request id; panics on `/panic`; sleeps on `/slow/{ms}` after reporting
    /// that it started.
    async fn test_handler(req: Request<Incoming>, started: mpsc::UnboundedSender<()>) -> HttpResponse {
        let id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        let path = req.uri().path().to_string();
        if path == "/panic" {
            panic!("boom");
        }
        if let Some(ms) = path.strip_prefix("/slow/") {
            let _ = started.send(());
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            return text(200, format!("slow done {id}"));
        }
        text(200, format!("id={id}"))
    }

    struct TestServer {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        started: mpsc::UnboundedReceiver<()>,
        task: JoinHandle<io::Result<()>>,
    }

    async fn start(grace: Duration) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (started_sender, started) = mpsc::unbounded_channel();
        let handler = move |req| test_handler(req, started_sender.clone());
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve_with_grace(listener, shutdown, handler, grace));
        TestServer { addr, stop, started, task }
    }

    #[tokio::test]
    async fn request_ids_are_echoed_or_generated() {
        let server = start(SHUTDOWN_GRACE).await;
        let echoed = get(server.addr, "/", "X-Request-Id: client-id_1.2:3\r\n").await;
        assert_eq!(echoed.status, 200);
        assert_eq!(echoed.header("x-request-id"), Some("client-id_1.2:3"));
        assert_eq!(echoed.body, "id=client-id_1.2:3");

        for extra in ["", "X-Request-Id: <script>\r\n", "X-Request-Id: \r\n"] {
            let generated = get(server.addr, "/", extra).await;
            let id = generated.header("x-request-id").unwrap().to_string();
            assert_eq!(id.len(), 36, "{extra:?}: {id}");
            assert_eq!(generated.body, format!("id={id}"));
        }
        let _ = server.stop.send(());
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_panicking_handler_gives_500_and_the_server_keeps_serving() {
        let server = start(SHUTDOWN_GRACE).await;
        let reply = get(server.addr, "/panic", "").await;
        assert_eq!(reply.status, 500);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(json["error"]["code"], "INTERNAL_ERROR");
        assert_eq!(json["error"]["status"], 500);
        assert_eq!(json["error"]["requestId"].as_str(), reply.header("x-request-id"));
        assert!(!reply.body.contains("boom"), "{}", reply.body);

        assert_eq!(get(server.addr, "/", "").await.status, 200);
        let _ = server.stop.send(());
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_on_one_connection() {
        let server = start(SHUTDOWN_GRACE).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        for i in 0..3 {
            let request = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Request-Id: r{i}\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            assert_eq!(read_reply(&mut stream).await.body, format!("id=r{i}"));
        }
        let _ = server.stop.send(());
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_lets_an_in_flight_request_finish_and_closes_idle_connections() {
        let mut server = start(SHUTDOWN_GRACE).await;
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        assert_eq!(read_reply(&mut idle).await.status, 200);

        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"GET /slow/300 HTTP/1.1\r\nHost: t\r\nX-Request-Id: slow-1\r\n\r\n").await.unwrap();
        server.started.recv().await.unwrap();
        let began = Instant::now();
        let _ = server.stop.send(());

        let reply = read_reply(&mut slow).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "slow done slow-1"));
        assert_eq!(reply.header("connection"), Some("close"));
        server.task.await.unwrap().unwrap();
        assert!(began.elapsed() < Duration::from_secs(5), "drain took {:?}", began.elapsed());

        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).await.unwrap(), 0, "idle connection should be closed");
        assert!(TcpStream::connect(server.addr).await.is_err(), "listener should be closed");
    }

    #[tokio::test]
    async fn shutdown_gives_up_on_requests_that_outlast_the_grace_period() {
        let mut server = start(Duration::from_millis(100)).await;
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"GET /slow/60000 HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        server.started.recv().await.unwrap();
        let began = Instant::now();
        let _ = server.stop.send(());
        server.task.await.unwrap().unwrap();
        assert!(began.elapsed() < Duration::from_secs(5), "drain took {:?}", began.elapsed());
    }

    #[test]
    fn client_request_ids_are_vetted() {
        let mut headers = HeaderMap::new();
        assert_eq!(client_request_id(&headers), None);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc-1"));
        assert_eq!(client_request_id(&headers).as_deref(), Some("abc-1"));
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&"a".repeat(129)).unwrap());
        assert_eq!(client_request_id(&headers), None);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("a b"));
        assert_eq!(client_request_id(&headers), None);
    }
}
