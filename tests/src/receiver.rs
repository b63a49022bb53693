//! A webhook receiver for the tests: an HTTP server on 127.0.0.1 that records every request and
//! answers what the test tells it to (2xx, an error status, 410), or is down (its port closed) and
//! comes back up on the same port.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the receiver answered.
    pub status: StatusCode,
    /// When it arrived, on the wall clock events are stamped with.
    pub at: chrono::DateTime<chrono::Utc>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    /// Answers to give, in order; then `otherwise`.
    scripted: Mutex<VecDeque<StatusCode>>,
    otherwise: Mutex<Option<StatusCode>>,
    arrived: Notify,
}

pub struct Receiver {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shared = Arc::new(Shared::default());
        let server = Some(serve(listener, shared.clone()));
        Self { address, shared, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.address)
    }

    /// Answers `status` to every request from now on.
    pub fn answer(&self, status: StatusCode) {
        *self.shared.otherwise.lock().unwrap() = Some(status);
    }

    /// Answers these, in order, before falling back to the standing answer.
    pub fn script(&self, statuses: &[StatusCode]) {
        self.shared.scripted.lock().unwrap().extend(statuses.iter().copied());
    }

    /// Closes the port: connections are refused until [`Receiver::up`].
    pub async fn down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.address).await.expect("rebind the same port");
        self.server = Some(serve(listener, self.shared.clone()));
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Those answered with a 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.status.is_success()).collect()
    }

    /// Waits until `enough` holds for what was received, up to `within`. `enough` looks at the
    /// requests in place: copying them all on every arrival would cost a burst of thousands more
    /// than the deliveries being measured.
    pub async fn wait_until(&self, within: Duration, enough: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.shared.arrived.notified();
            let count = {
                let received = self.shared.received.lock().unwrap();
                if enough(&received) {
                    return received.clone();
                }
                received.len()
            };
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("the receiver did not get what was awaited within {within:?}: got {count} requests");
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Serves until aborted. The connections live in the server task's own set, so aborting it closes
/// the kept-alive ones too: a receiver that is down answers nobody.
fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let shared = shared.clone();
            let service =
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let status = record(&shared, parts.uri, parts.headers, body);
                        let response = hyper::Response::builder()
                            .status(status)
                            .body(http_body_util::Empty::<Bytes>::new())
                            .expect("a response");
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
            connections.spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
            while connections.try_join_next().is_some() {}
        }
    })
}

fn record(shared: &Shared, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let scripted = shared.scripted.lock().unwrap().pop_front();
    let status = scripted.or(*shared.otherwise.lock().unwrap()).unwrap_or(StatusCode::NO_CONTENT);
    let at = chrono::Utc::now();
    shared.received.lock().unwrap().push(Received { path: uri.path().to_owned(), headers, body, status, at });
    shared.arrived.notify_waiters();
    status
}
