//! The one HTTP client for requests to customer URLs: webhooks, Chatwoot, media by URL.
//!
//! A customer's URL is untrusted input pointing wherever its author likes, so every request here:
//! - reaches only addresses the deployment's [`TargetPolicy`] allows, checked on every new
//!   connection after resolving the host ourselves and dialling exactly the addresses checked (no
//!   DNS rebinding between check and connect; see `connector.rs`);
//! - follows no redirect: a 3xx is the answer;
//! - is bounded in time as a whole (connect, TLS, request, answer and body) and in the body bytes
//!   it reads;
//! - verifies `https` servers against the web PKI's roots, with the URL's host as SNI;
//! - sends a URL's `user:password@` as `Authorization: Basic`, never in the request line, and never
//!   names it in an error.
//!
//! Connections are pooled per scheme and host (HTTP/1.1 keep-alive), so a webhook receiver that
//! gets a burst of events is dialled once. It knows nothing of what it carries.

mod connector;
mod policy;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use connector::{Endpoint, TargetConnector};
pub use policy::{TargetPolicy, non_public_reason};

/// The bound of a whole request when the caller has no other: a webhook's 15 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// The most body bytes read from an answer by default: enough for an API's JSON answer.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// Idle kept-alive connections kept per host. As many as the dispatcher has attempts in flight
/// (`CONCURRENT_ATTEMPTS`): with fewer, a receiver getting a burst from many webhooks at once has
/// most of its connections closed after one request and dialled again for the next.
const IDLE_CONNECTIONS_PER_HOST: usize = 256;
/// How long [`OutboundClient::check_url`] may spend resolving.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request to a customer URL did not get an answer. Messages are meant for the customer (a
/// delivery's `lastError`, an integration's `error`): they name the host or address, never the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("invalid URL: {reason}")]
    InvalidUrl { reason: &'static str },
    #[error("could not resolve {host}: {cause}")]
    Dns { host: String, cause: String },
    #[error("refused target {address}: {reason} (set RYZE_ALLOW_PRIVATE_TARGETS=true to allow)")]
    Refused { address: IpAddr, reason: &'static str },
    #[error("could not connect to {address}: {cause}")]
    Connect { address: SocketAddr, cause: String },
    #[error("TLS with {host} failed: {cause}")]
    Tls { host: String, cause: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke, or the server did not speak HTTP/1.1.
    #[error("the request failed: {cause}")]
    Http { cause: String },
}

/// An answer, whatever its status.
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// At most the client's body limit; the rest is not read.
    pub body: Vec<u8>,
    /// Whether the body went on past the limit.
    pub truncated: bool,
}

/// The client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct OutboundClient {
    http: Client<TargetConnector, Full<Bytes>>,
    policy: TargetPolicy,
    body_limit: usize,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient")
            .field("policy", &self.policy)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl OutboundClient {
    pub fn new(policy: TargetPolicy) -> Self {
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST)
            .pool_timer(TokioTimer::new())
            .build(TargetConnector::new(policy));
        Self { http, policy, body_limit: DEFAULT_BODY_LIMIT }
    }

    /// This client, on the same pool, reading at most `bytes` of each answer's body.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    pub fn policy(&self) -> TargetPolicy {
        self.policy
    }

    /// `POST url` with a JSON `body` (`Content-Type: application/json` unless `headers` say
    /// otherwise), answered within `timeout`.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<OutboundResponse, OutboundError> {
        let mut headers = headers.clone();
        headers.entry(CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
        self.send(Method::POST, url, headers, body.into(), timeout).await
    }

    /// `GET url`, answered within `timeout`.
    pub async fn get(
        &self,
        url: &str,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<OutboundResponse, OutboundError> {
        self.send(Method::GET, url, headers.clone(), Bytes::new(), timeout).await
    }

    /// Whether `url` is one a request could be sent to now: well formed, and its host resolving to
    /// addresses the policy allows. For configuration calls that store a URL either way and report
    /// why it would fail; a request checks again on every connection.
    pub async fn check_url(&self, url: &str) -> Result<(), OutboundError> {
        let target = Target::parse(url)?;
        let Endpoint { host, port, .. } = Endpoint::of(&target.uri)?;
        let checked = connector::resolve_checked(self.policy, host, port);
        match tokio::time::timeout(CHECK_TIMEOUT, checked).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(OutboundError::Timeout(CHECK_TIMEOUT)),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        mut headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<OutboundResponse, OutboundError> {
        let target = Target::parse(url)?;
        // An explicit Authorization (a webhook's) wins over credentials in the URL.
        if let Some(basic) = target.basic {
            headers.entry(AUTHORIZATION).or_insert(basic);
        }
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = target.uri;
        *request.headers_mut() = headers;
        let exchange = async {
            let response = self.http.request(request).await.map_err(client_error)?;
            let status = response.status().as_u16();
            let (parts, body) = response.into_parts();
            let (body, truncated) = read_bounded(body, self.body_limit).await?;
            Ok(OutboundResponse { status, headers: parts.headers, body, truncated })
        };
        // Dropping the exchange on timeout drops its connection: a slow answer is never reused.
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(OutboundError::Timeout(timeout)),
        }
    }
}

/// A URL as sent: without userinfo or fragment, the userinfo turned into a Basic credential.
struct Target {
    uri: Uri,
    basic: Option<HeaderValue>,
}

impl Target {
    fn parse(url: &str) -> Result<Self, OutboundError> {
        let mut url =
            url::Url::parse(url.trim()).map_err(|_| OutboundError::InvalidUrl { reason: "not a URL" })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::InvalidUrl { reason: "the scheme must be http or https" });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(OutboundError::InvalidUrl { reason: "no host" });
        }
        let basic = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let mut credentials = percent_decode(url.username());
            credentials.push(b':');
            credentials.extend(percent_decode(url.password().unwrap_or_default()));
            let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(credentials)))
                .map_err(|_| OutboundError::InvalidUrl { reason: "unusable credentials" })?;
            value.set_sensitive(true);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some(value)
        };
        url.set_fragment(None);
        let uri = url.as_str().parse().map_err(|_| OutboundError::InvalidUrl { reason: "not a URL" })?;
        Ok(Self { uri, basic })
    }
}

/// `%XX` sequences as the bytes they stand for (the URL parser leaves userinfo encoded).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    decoded
}

/// Reads at most `limit` bytes of `body`; whether there was more.
async fn read_bounded(mut body: Incoming, limit: usize) -> Result<(Vec<u8>, bool), OutboundError> {
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| OutboundError::Http { cause: format!("reading the answer: {e}") })?;
        let Ok(data) = frame.into_data() else { continue };
        let room = limit - read.len();
        if data.len() > room {
            read.extend_from_slice(&data[..room]);
            return Ok((read, true));
        }
        read.extend_from_slice(&data);
    }
    Ok((read, false))
}

/// The connector's own error when it is the cause (a refusal, say), else the chain of causes.
fn client_error(error: hyper_util::client::legacy::Error) -> OutboundError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut text = Vec::new();
    while let Some(current) = cause {
        if let Some(ours) = current.downcast_ref::<OutboundError>() {
            return ours.clone();
        }
        text.push(current.to_string());
        cause = current.source();
    }
    OutboundError::Http { cause: text.join(": ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_a_basic_credential_and_leaves_the_uri() {
        let target = Target::parse("https://us%40er:p%3Ass@hooks.example:8443/a/b?c=d#frag").unwrap();
        assert_eq!(target.uri.to_string(), "https://hooks.example:8443/a/b?c=d");
        let basic = target.basic.expect("a credential");
        assert!(basic.is_sensitive());
        let encoded = basic.to_str().unwrap().strip_prefix("Basic ").unwrap().to_owned();
        assert_eq!(STANDARD.decode(encoded).unwrap(), b"us@er:p:ss");
    }

    #[test]
    fn a_user_without_password_still_authenticates() {
        let target = Target::parse("http://token@hooks.example/").unwrap();
        let encoded = target.basic.unwrap().to_str().unwrap()["Basic ".len()..].to_owned();
        assert_eq!(STANDARD.decode(encoded).unwrap(), b"token:");
        assert_eq!(target.uri.to_string(), "http://hooks.example/");
    }

    #[test]
    fn urls_without_credentials_pass_unchanged() {
        let target = Target::parse("http://[::1]:8080/x").unwrap();
        assert!(target.basic.is_none());
        assert_eq!(target.uri.to_string(), "http://[::1]:8080/x");
        let endpoint = Endpoint::of(&target.uri).unwrap();
        assert_eq!((endpoint.https, endpoint.host, endpoint.port), (false, "::1", 8080));
        let https = Target::parse("https://Hooks.Example").unwrap();
        let endpoint = Endpoint::of(&https.uri).unwrap();
        assert_eq!((endpoint.https, endpoint.host, endpoint.port), (true, "hooks.example", 443));
    }

    #[test]
    fn invalid_urls_are_refused_without_echoing_them() {
        for (url, reason) in [
            ("not a url", "not a URL"),
            ("ftp://user:secret@files.example/", "the scheme must be http or https"),
            ("file:///etc/passwd", "the scheme must be http or https"),
            ("http://", "not a URL"),
        ] {
            let error = Target::parse(url).err().unwrap_or_else(|| panic!("{url} accepted"));
            assert_eq!(error, OutboundError::InvalidUrl { reason }, "{url}");
            assert!(!error.to_string().contains("secret"));
        }
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%20b%zz%4"), b"a b%zz%4");
    }

    #[test]
    fn a_refusal_says_why_and_how_to_allow_it() {
        let error =
            OutboundError::Refused { address: "127.0.0.1".parse().unwrap(), reason: "loopback address" };
        assert_eq!(
            error.to_string(),
            "refused target 127.0.0.1: loopback address (set RYZE_ALLOW_PRIVATE_TARGETS=true to allow)"
        );
    }

    #[tokio::test]
    async fn check_url_refuses_literal_and_resolved_private_hosts() {
        let client = OutboundClient::new(TargetPolicy::default());
        let refused = client.check_url("http://169.254.169.254/latest/meta-data/").await.unwrap_err();
        assert!(matches!(
            refused,
            OutboundError::Refused { reason: "link-local address (cloud metadata endpoint)", .. }
        ));
        let refused = client.check_url("http://[::ffff:7f00:1]:9/").await.unwrap_err();
        assert!(matches!(refused, OutboundError::Refused { reason: "loopback address", .. }), "{refused}");
        let refused = client.check_url("http://localhost:9/").await.unwrap_err();
        assert!(matches!(refused, OutboundError::Refused { reason: "loopback address", .. }), "{refused}");
        let open = OutboundClient::new(TargetPolicy { allow_private: true });
        open.check_url("http://localhost:9/").await.unwrap();
        open.check_url("http://127.0.0.1:9/").await.unwrap();
    }
}
