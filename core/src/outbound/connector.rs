//! The connector under the outbound client: resolves a URL's host, checks every address against the
//! [`TargetPolicy`], connects to one of the addresses it checked, and speaks TLS for `https`.
//!
//! Resolving and connecting in one place is what defeats DNS rebinding: the addresses dialled are the
//! very ones checked, never a second resolution's answer. Each new connection is checked; a pooled
//! one was checked when it was made.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{OutboundError, TargetPolicy};

/// How long one address may take to accept a TCP connection before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A `tower::Service<Uri>` for hyper-util's pooled client.
#[derive(Clone)]
pub(super) struct TargetConnector {
    policy: TargetPolicy,
    tls: TlsConnector,
}

impl TargetConnector {
    /// Verifies servers against the web PKI's roots, and nothing else: no bypass, no private CA.
    pub(super) fn new(policy: TargetPolicy) -> Self {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self { policy, tls: TlsConnector::from(Arc::new(config)) }
    }

    async fn connect(self, uri: Uri) -> Result<TokioIo<TargetStream>, OutboundError> {
        let Endpoint { https, host, port } = Endpoint::of(&uri)?;
        let addresses = resolve_checked(self.policy, host, port).await?;
        let tcp = connect_any(&addresses).await?;
        if !https {
            return Ok(TokioIo::new(TargetStream::Plain(tcp)));
        }
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| OutboundError::InvalidUrl { reason: "the host is not a valid TLS server name" })?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| OutboundError::Tls { host: host.to_owned(), cause: e.to_string() })?;
        Ok(TokioIo::new(TargetStream::Tls(Box::new(tls))))
    }
}

impl tower::Service<Uri> for TargetConnector {
    type Response = TokioIo<TargetStream>;
    type Error = OutboundError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// Where a URI points.
pub(super) struct Endpoint<'a> {
    pub https: bool,
    /// A name, or an IP literal without its brackets.
    pub host: &'a str,
    pub port: u16,
}

impl<'a> Endpoint<'a> {
    pub fn of(uri: &'a Uri) -> Result<Self, OutboundError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(OutboundError::InvalidUrl { reason: "the scheme must be http or https" }),
        };
        let host = uri.host().ok_or(OutboundError::InvalidUrl { reason: "no host" })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Self { https, host, port })
    }
}

/// Every address `host` stands for (itself, for an IP literal), after checking that `policy`
/// allows each one: a name with one refused address among public ones is refused as a whole, since
/// which of them a connection would reach is not up to us.
pub(super) async fn resolve_checked(
    policy: TargetPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, OutboundError> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| OutboundError::Dns { host: host.to_owned(), cause: e.to_string() })?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(OutboundError::Dns { host: host.to_owned(), cause: "no address found".into() });
    }
    for address in &addresses {
        if let Some(reason) = policy.refusal(address.ip()) {
            return Err(OutboundError::Refused { address: address.ip(), reason });
        }
    }
    Ok(addresses)
}

/// The first of `addresses` that accepts a connection, in resolver order.
async fn connect_any(addresses: &[SocketAddr]) -> Result<TcpStream, OutboundError> {
    let mut last = None;
    for &address in addresses {
        let cause = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                // Small JSON posts: waiting to coalesce them only adds latency.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
        };
        last = Some(OutboundError::Connect { address, cause });
    }
    Err(last.unwrap_or(OutboundError::Dns { host: String::new(), cause: "no address found".into() }))
}

/// A connection to a checked address, in clear or in TLS.
pub(super) enum TargetStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for TargetStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for TargetStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TargetStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
