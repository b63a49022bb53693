//! The HTTP/1.1 server of `ryze serve`: the router on a TCP listener, with the limits a server
//! facing the internet needs.
//!
//! - A client has [`ServerLimits::header_timeout`] to send a request's head from its first byte (or,
//!   on a new connection, from the accept), and may pause that long at most while sending a body
//!   the handler is reading: half-sent requests cannot hold a connection.
//! - A kept-alive connection with no request in flight is closed after
//!   [`ServerLimits::idle_timeout`] without a byte. A request in flight (a connect call waits up to a
//!   minute for its code) is never cut by either.
//! - At most [`ServerLimits::max_connections`] connections are served at once; beyond, new ones wait
//!   in the listen backlog until one closes. An upgraded connection (a WebSocket) keeps its place
//!   until its socket closes.
//! - An accept that fails (`EMFILE` when descriptors run out, say) is logged and retried after a
//!   short, growing pause, instead of ending the server or spinning.
//! - Shutdown stops accepting, lets requests in flight finish within
//!   [`ServerLimits::shutdown_grace`], then drops what is left.
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive connection waits for its next
//! request, so it cannot tell a slow head from an idle connection: a watchdog beside each
//! connection does, from the byte counts of its socket and the requests of its service.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Response;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long clients may take, and how many may be served at once.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// To send a request head, and the longest pause while sending a body.
    pub header_timeout: Duration,
    /// Of a kept-alive connection with no request in flight.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The first pause after a failed accept; it doubles up to [`MAX_ACCEPT_BACKOFF`] while accepts
/// keep failing.
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` completes, then shuts down gracefully (see the
/// module docs). Returns once every connection has ended or the grace period is over.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
    limits: ServerLimits,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let closing = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            (stream, permit) = accept(&listener, &permits) => {
                let connection = serve_connection(stream, permit, router.clone(), limits, closing.clone());
                connections.spawn(connection);
            }
        }
    }
    drop(listener);
    closing.cancel();
    let open = connections.len();
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drained).await.is_err() {
        tracing::warn!(
            open,
            left = connections.len(),
            "connections still open after the grace period: closed"
        );
        connections.abort_all();
    }
}

/// The next connection, once a place is free. Cancel safe: dropping it keeps no place and loses
/// no connection (`TcpListener::accept` is cancel safe).
async fn accept(listener: &TcpListener, permits: &Arc<Semaphore>) -> (TcpStream, OwnedSemaphorePermit) {
    let permit = permits.clone().acquire_owned().await.unwrap_or_else(|_| unreachable!("never closed"));
    let mut backoff = MIN_ACCEPT_BACKOFF;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                // Answers go out in one write each; Nagle would only hold back the last segment.
                let _ = stream.set_nodelay(true);
                return (stream, permit);
            }
            // The peer gave up between its handshake and our accept: nothing to report.
            Err(error) if is_connection_error(&error) => {}
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until it ends, its watchdog closes it, or shutdown has let it finish.
async fn serve_connection(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    router: Router,
    limits: ServerLimits,
    closing: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(WatchedIo { inner: stream, activity: activity.clone(), _permit: permit });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(service_activity.clone());
        let request =
            request.map(|body| Body::new(WatchedBody { inner: body, activity: in_flight.activity() }));
        let answer = router.clone().oneshot(request);
        async move {
            let response: Result<Response<Body>, std::convert::Infallible> = answer.await;
            drop(in_flight);
            response
        }
    });
    let connection = http1::Builder::new()
        // The watchdog below times heads; hyper's timer would also cut idle keep-alive connections.
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let mut shutting_down = false;
    loop {
        let deadline = activity.deadline(&limits);
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = closing.cancelled(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
            () = activity.changed.notified() => {}
            () = expired => {
                if activity.deadline(&limits).is_some_and(|deadline| deadline <= Instant::now()) {
                    tracing::debug!("closing an idle or stalled connection");
                    return;
                }
            }
        }
    }
}

/// What a connection is doing, as its socket and its requests report it.
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when the deadline may have moved earlier.
    changed: Notify,
}

struct ActivityState {
    /// The last byte read or written.
    last_io: Instant,
    /// Requests whose answer is not complete yet.
    in_flight: usize,
    /// Since when the connection waits for the rest of a request head.
    head_since: Option<Instant>,
    /// Since when a handler waits for the next bytes of a request body.
    body_wait_since: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        // A new connection owes its first head from the accept on.
        let state =
            ActivityState { last_io: now, in_flight: 0, head_since: Some(now), body_wait_since: None };
        Self { state: Mutex::new(state), changed: Notify::new() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // The state is plain data, right after any panic too.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection should be closed, if nothing happens first.
    fn deadline(&self, limits: &ServerLimits) -> Option<Instant> {
        let state = self.state();
        if state.in_flight > 0 {
            state.body_wait_since.map(|since| since.max(state.last_io) + limits.header_timeout)
        } else if let Some(since) = state.head_since {
            Some(since + limits.header_timeout)
        } else {
            Some(state.last_io + limits.idle_timeout)
        }
    }

    fn read(&self) {
        let now = Instant::now();
        let mut state = self.state();
        state.last_io = now;
        if state.in_flight == 0 && state.head_since.is_none() {
            // The first byte of the next request: its head is due sooner than the idle deadline.
            state.head_since = Some(now);
            drop(state);
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.state().last_io = Instant::now();
    }

    fn body_pending(&self) {
        let mut state = self.state();
        if state.body_wait_since.is_none() {
            state.body_wait_since = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    fn body_ready(&self) {
        self.state().body_wait_since = None;
    }
}

/// A request being answered, from its head to its response; dropped, it ends.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        {
            let mut state = activity.state();
            state.in_flight += 1;
            state.head_since = None;
        }
        Self(activity)
    }

    fn activity(&self) -> Arc<Activity> {
        self.0.clone()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut state = self.0.state();
            state.in_flight = state.in_flight.saturating_sub(1);
            state.body_wait_since = None;
            state.last_io = Instant::now();
        }
        // From no deadline to the idle one.
        self.0.changed.notify_one();
    }
}

/// The socket, reporting its traffic; it holds the connection's place until it closes, upgraded
/// or not.
struct WatchedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for WatchedIo {
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

impl AsyncWrite for WatchedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
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

/// A request body, reporting when its reader waits for bytes.
struct WatchedBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() {
            self.activity.body_pending()
        } else {
            self.activity.body_ready()
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::Request;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::JoinHandle;

    use super::*;

    /// Generous: a close, or an answer, that does not come within this is a failure.
    const DEADLINE: Duration = Duration::from_secs(30);

    struct TestServer {
        addr: SocketAddr,
        stop: CancellationToken,
        served: JoinHandle<()>,
    }

    async fn start(limits: ServerLimits) -> TestServer {
        let router = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/echo", post(|body: Bytes| async move { body }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }),
            )
            .route("/upgrade", get(upgrade_to_echo));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let served = tokio::spawn(serve(listener, router, stop.clone().cancelled_owned(), limits));
        TestServer { addr, stop, served }
    }

    /// Answers 101 and echoes whatever the client sends on the upgraded socket.
    async fn upgrade_to_echo(mut request: Request) -> Response<Body> {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0; 64];
            while let Ok(n @ 1..) = io.read(&mut buf).await {
                if io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Body::empty())
            .unwrap()
    }

    fn limits(header: u64, idle: u64, max_connections: usize) -> ServerLimits {
        ServerLimits {
            header_timeout: Duration::from_secs(header),
            idle_timeout: Duration::from_secs(idle),
            max_connections,
            shutdown_grace: Duration::from_secs(10),
        }
    }

    async fn connect(addr: SocketAddr, sent: &str) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(sent.as_bytes()).await.unwrap();
        stream
    }

    /// One response's head and body, read by its `content-length`.
    async fn read_response(stream: &mut TcpStream) -> String {
        let mut received = Vec::new();
        let mut buf = [0; 1024];
        loop {
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned)
                    })
                    .map_or(0, |n| n.trim().parse().unwrap());
                if body.len() >= length {
                    return text;
                }
            }
            let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await.expect("an answer").unwrap();
            assert!(n > 0, "closed before the answer: {text}");
            received.extend_from_slice(&buf[..n]);
        }
    }

    async fn fetch(addr: SocketAddr, path: &str) -> String {
        let mut stream = connect(addr, &format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n")).await;
        read_response(&mut stream).await
    }

    /// Waits for the server to close `stream`, reading (and dropping) whatever it sends first.
    async fn closed_by_the_server(mut stream: TcpStream) {
        let mut buf = [0; 1024];
        let closed = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(DEADLINE, closed).await.expect("the server closes the connection");
    }

    #[tokio::test]
    async fn idle_and_half_sent_connections_are_closed_and_the_server_keeps_serving() {
        let server = start(limits(1, 1, 1000)).await;
        let mut sockets = Vec::new();
        for _ in 0..10 {
            sockets.push(connect(server.addr, "").await);
            sockets.push(connect(server.addr, "GET /health HTTP/1.1\r\nhost: t\r\nx-a").await);
            sockets.push(
                connect(server.addr, "POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nabc")
                    .await,
            );
            let mut kept_alive = connect(server.addr, "GET /health HTTP/1.1\r\nhost: t\r\n\r\n").await;
            assert!(read_response(&mut kept_alive).await.starts_with("HTTP/1.1 200"));
            sockets.push(kept_alive);
        }
        join_all(sockets.into_iter().map(closed_by_the_server)).await;
        assert!(fetch(server.addr, "/health").await.starts_with("HTTP/1.1 200"));
    }

    async fn join_all(waits: impl Iterator<Item = impl Future<Output = ()> + Send + 'static>) {
        let mut all = JoinSet::new();
        for wait in waits {
            all.spawn(wait);
        }
        while let Some(done) = all.join_next().await {
            done.unwrap();
        }
    }

    #[tokio::test]
    async fn a_kept_alive_connection_outlives_the_header_timeout() {
        let server = start(limits(1, 60, 10)).await;
        let request = "GET /health HTTP/1.1\r\nhost: t\r\n\r\n";
        let mut stream = connect(server.addr, request).await;
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        // Past the header timeout, within the idle one: the connection still serves.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_place() {
        let server = start(limits(60, 60, 2)).await;
        let first = connect(server.addr, "").await;
        let _second = connect(server.addr, "").await;
        let addr = server.addr;
        let third = tokio::spawn(async move { fetch(addr, "/health").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!third.is_finished(), "a third connection was served while two held both places");
        drop(first);
        let answer = tokio::time::timeout(DEADLINE, third).await.expect("served once a place is free");
        assert!(answer.unwrap().starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn an_upgraded_connection_is_left_to_its_handler() {
        let server = start(limits(1, 1, 10)).await;
        let mut stream = connect(
            server.addr,
            "GET /upgrade HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
        )
        .await;
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 101"));
        for round in 0..2 {
            stream.write_all(b"ping").await.unwrap();
            let mut echoed = [0; 4];
            tokio::time::timeout(DEADLINE, stream.read_exact(&mut echoed)).await.expect("echo").unwrap();
            assert_eq!(&echoed, b"ping", "round {round}");
            // Longer than both timeouts: they are the HTTP connection's, not the upgraded socket's.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }

    #[tokio::test]
    async fn shutdown_finishes_requests_in_flight_and_stops_accepting() {
        let server = start(limits(10, 10, 10)).await;
        let mut slow = connect(server.addr, "GET /slow HTTP/1.1\r\nhost: t\r\n\r\n").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.stop.cancel();
        let answer = read_response(&mut slow).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");
        tokio::time::timeout(DEADLINE, server.served).await.expect("serve returns").unwrap();
        assert!(TcpStream::connect(server.addr).await.is_err(), "still accepting after shutdown");
    }

    #[tokio::test]
    async fn shutdown_waits_for_stalled_clients_only_as_long_as_the_grace() {
        let limits = ServerLimits { shutdown_grace: Duration::from_millis(200), ..limits(600, 600, 10) };
        let server = start(limits).await;
        let stalled =
            connect(server.addr, "POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\nab").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.stop.cancel();
        tokio::time::timeout(DEADLINE, server.served).await.expect("serve returns after the grace").unwrap();
        closed_by_the_server(stalled).await;
    }
}
