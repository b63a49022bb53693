//! The outbound client (`ryze_core::outbound`) against local servers on 127.0.0.1: what it refuses,
//! what it sends, what it does not follow, and how long it waits.

// Test code, helpers included: a failed step should panic with the step's error.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use base64::Engine;
use ryze_core::outbound::{OutboundClient, OutboundError, TargetPolicy};
use tokio::net::TcpListener;

/// One request as a local server saw it: method, URI (as in the request line), headers, body.
type SeenRequest = (String, String, HeaderMap, Vec<u8>);

/// What a local server saw: every request, and how many connections it accepted.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<SeenRequest>>,
    connections: AtomicUsize,
}

impl Seen {
    fn requests(&self) -> Vec<SeenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

async fn record(State(seen): State<Arc<Seen>>, request: Request) -> impl IntoResponse {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
    let entry = (parts.method.to_string(), parts.uri.to_string(), parts.headers, body);
    seen.requests.lock().unwrap().push(entry);
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"ok":true}"#)
}

/// A server on 127.0.0.1: `/redirect` answers 302 to `/elsewhere`, `/big` 100 KiB, anything else
/// 200 `{"ok":true}`; every request is recorded.
async fn local_server() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/redirect", get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")]) }))
        .route("/big", get(|| async { vec![b'x'; 100 * 1024] }))
        .fallback(any(record))
        .with_state(seen.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counted = seen.clone();
    let listener = listener.tap_io(move |_| {
        counted.connections.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn allowing_private() -> OutboundClient {
    OutboundClient::new(TargetPolicy { allow_private: true })
}

const SHORT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn loopback_targets_are_refused_by_default_and_say_why() {
    let (addr, seen) = local_server().await;
    let client = OutboundClient::new(TargetPolicy::default());
    let error =
        client.post_json(&format!("http://{addr}/hook"), &HeaderMap::new(), "{}", SHORT).await.unwrap_err();
    assert_eq!(
        error,
        OutboundError::Refused { address: "127.0.0.1".parse().unwrap(), reason: "loopback address" }
    );
    assert_eq!(
        error.to_string(),
        "refused target 127.0.0.1: loopback address (set RYZE_ALLOW_PRIVATE_TARGETS=true to allow)"
    );
    let checked = client.check_url(&format!("http://{addr}/hook")).await.unwrap_err();
    assert_eq!(checked, error);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 0, "nothing reached the server");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_by_default() {
    let (addr, seen) = local_server().await;
    let client = OutboundClient::new(TargetPolicy::default());
    let url = format!("http://localhost:{}/hook", addr.port());
    let error = client.get(&url, &HeaderMap::new(), SHORT).await.unwrap_err();
    assert!(matches!(error, OutboundError::Refused { reason: "loopback address", .. }), "{error}");
    assert!(matches!(client.check_url(&url).await, Err(OutboundError::Refused { .. })));
    assert_eq!(seen.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn private_targets_are_reached_when_allowed() {
    let (addr, seen) = local_server().await;
    let client = allowing_private();
    client.check_url(&format!("http://localhost:{}/", addr.port())).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", "evt_1".parse().unwrap());
    let response = client
        .post_json(&format!("http://{addr}/hook?x=1"), &headers, r#"{"event":"x"}"#, SHORT)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, br#"{"ok":true}"#);
    assert!(!response.truncated);
    assert_eq!(response.headers[header::CONTENT_TYPE], "application/json");
    let requests = seen.requests();
    let (method, uri, headers, body) = &requests[0];
    assert_eq!((method.as_str(), uri.as_str()), ("POST", "/hook?x=1"));
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers["webhook-id"], "evt_1");
    assert_eq!(headers[header::HOST], addr.to_string());
    assert_eq!(body, br#"{"event":"x"}"#);
}

#[tokio::test]
async fn keep_alive_connections_are_reused_per_host() {
    let (addr, seen) = local_server().await;
    let client = allowing_private();
    for _ in 0..3 {
        let response =
            client.post_json(&format!("http://{addr}/"), &HeaderMap::new(), "{}", SHORT).await.unwrap();
        assert_eq!(response.status, 200);
    }
    assert_eq!(seen.requests().len(), 3);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "one connection for three requests");
}

#[tokio::test]
async fn redirects_are_answers_not_followed() {
    let (addr, seen) = local_server().await;
    let response =
        allowing_private().get(&format!("http://{addr}/redirect"), &HeaderMap::new(), SHORT).await.unwrap();
    assert_eq!(response.status, 302);
    assert_eq!(response.headers[header::LOCATION], "/elsewhere");
    assert!(seen.requests().is_empty(), "/elsewhere was not requested");
}

#[tokio::test]
async fn bodies_are_read_up_to_the_limit() {
    let (addr, _) = local_server().await;
    let url = format!("http://{addr}/big");
    let response = allowing_private().get(&url, &HeaderMap::new(), SHORT).await.unwrap();
    assert_eq!(response.body.len(), ryze_core::outbound::DEFAULT_BODY_LIMIT);
    assert!(response.truncated);
    let response =
        allowing_private().with_body_limit(1 << 20).get(&url, &HeaderMap::new(), SHORT).await.unwrap();
    assert_eq!(response.body.len(), 100 * 1024);
    assert!(!response.truncated);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_bound() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts, reads nothing, answers nothing, and keeps the connections open.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let bound = Duration::from_millis(300);
    let error = allowing_private()
        .post_json(&format!("http://{addr}/"), &HeaderMap::new(), "{}", bound)
        .await
        .unwrap_err();
    assert_eq!(error, OutboundError::Timeout(bound));
    assert_eq!(error.to_string(), "no answer within 300ms");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn userinfo_is_sent_as_basic_auth_and_never_shown() {
    let (addr, seen) = local_server().await;
    let client = allowing_private();
    let url = format!("http://hook%20user:s3cr%3At@{addr}/in");
    let response = client.post_json(&url, &HeaderMap::new(), "{}", SHORT).await.unwrap();
    assert_eq!(response.status, 200);
    let requests = seen.requests();
    let (_, uri, headers, _) = &requests[0];
    assert_eq!(uri, "/in", "no userinfo in the request line");
    let expected = base64::engine::general_purpose::STANDARD.encode("hook user:s3cr:t");
    assert_eq!(headers[header::AUTHORIZATION], format!("Basic {expected}"));

    // An explicit Authorization header wins over the URL's credentials.
    let mut explicit = HeaderMap::new();
    explicit.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
    client.post_json(&url, &explicit, "{}", SHORT).await.unwrap();
    assert_eq!(seen.requests()[1].2[header::AUTHORIZATION], "Bearer abc");

    // Whatever fails, the error names the address, not the credentials.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let failures = [
        client.get(&format!("http://hook:s3cret@127.0.0.1:{closed_port}/"), &HeaderMap::new(), SHORT).await,
        OutboundClient::new(TargetPolicy::default())
            .get(&format!("http://hook:s3cret@{addr}/"), &HeaderMap::new(), SHORT)
            .await,
        client.get("http://hook:s3cret@no-such-host.invalid/", &HeaderMap::new(), SHORT).await,
        client.get("gopher://hook:s3cret@example.org/", &HeaderMap::new(), SHORT).await,
    ];
    for failure in failures {
        let error = failure.unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains("s3cret") && !text.contains("hook:"), "{text}");
    }
}

/// A TLS server on 127.0.0.1 with a self-signed certificate for localhost.
async fn self_signed_tls_server() -> SocketAddr {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key.into())
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move { drop(acceptor.accept(stream).await) });
        }
    });
    addr
}

#[tokio::test]
async fn https_to_an_untrusted_certificate_fails_with_a_tls_error() {
    let addr = self_signed_tls_server().await;
    let client = allowing_private();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}/hook", addr.port());
        let error = client.post_json(&url, &HeaderMap::new(), "{}", SHORT).await.unwrap_err();
        let OutboundError::Tls { host: named, cause } = &error else { panic!("not a TLS error: {error}") };
        assert_eq!(named, host);
        assert!(cause.contains("certificate"), "{error}");
    }
}
