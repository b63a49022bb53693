//! Local proxies for the tests: HTTP CONNECT, HTTPS (CONNECT inside TLS) and SOCKS5, each with
//! optional username and password, on 127.0.0.1. They tunnel to whatever the client asks for (a
//! fake WhatsApp server, an echo server) and count the tunnels they opened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Https,
    Socks5,
}

/// A running proxy; stops when dropped.
pub struct TestProxy {
    pub addr: SocketAddr,
    tunnels: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost: the HTTPS proxy's, and the root a client
/// must trust to reach it.
pub struct TestCertificate {
    pub der: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivatePkcs8KeyDer<'static>,
}

impl TestCertificate {
    pub fn generate() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("a self-signed certificate");
        Self {
            der: certified.cert.der().clone(),
            key: rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        }
    }

    /// A client connector that trusts this certificate only.
    pub fn client_connector(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("a valid root");
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(vec![self.der.clone()], self.key.clone_key().into())
                .expect("a server certificate");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

type Credentials = Option<(String, String)>;

impl TestProxy {
    /// Starts a proxy of `kind` that requires `credentials` when given. An HTTPS proxy needs its
    /// certificate.
    pub async fn start(
        kind: Kind,
        credentials: Option<(&str, &str)>,
        certificate: Option<&TestCertificate>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let credentials: Credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let acceptor = certificate.map(TestCertificate::acceptor);
        assert!(kind != Kind::Https || acceptor.is_some(), "an HTTPS proxy needs a certificate");
        let tunnels = Arc::new(AtomicUsize::new(0));
        let counted = tunnels.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (credentials, acceptor, counted) =
                    (credentials.clone(), acceptor.clone(), counted.clone());
                tokio::spawn(async move {
                    let opened = match (kind, acceptor) {
                        (Kind::Http, _) => http_proxy(stream, &credentials).await,
                        (Kind::Https, Some(acceptor)) => match acceptor.accept(stream).await {
                            Ok(tls) => http_proxy(tls, &credentials).await,
                            Err(_) => None,
                        },
                        (Kind::Https, None) => None,
                        (Kind::Socks5, _) => socks5_proxy(stream, &credentials).await,
                    };
                    if let Some(pipe) = opened {
                        counted.fetch_add(1, Ordering::SeqCst);
                        pipe.await;
                    }
                });
            }
        });
        Self { addr, tunnels, task }
    }

    /// How many tunnels the proxy has opened.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

type Pipe = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Pipes `client` and `target` both ways until either closes.
fn pipe<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(mut client: S, mut target: TcpStream) -> Pipe {
    Box::pin(async move {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut target).await;
    })
}

async fn http_proxy<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut stream: S,
    credentials: &Credentials,
) -> Option<Pipe> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.ok()?);
        if head.len() > 8192 {
            return None;
        }
    }
    let head = String::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let target = lines.next()?.strip_prefix("CONNECT ")?.split(' ').next()?.to_owned();
    let authorized = match credentials {
        None => true,
        Some((user, password)) => {
            let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
            lines.any(|line| {
                line.split_once(':').is_some_and(|(name, value)| {
                    name.eq_ignore_ascii_case("proxy-authorization") && value.trim() == expected
                })
            })
        }
    };
    if !authorized {
        let refusal =
            "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n\r\n";
        let _ = stream.write_all(refusal.as_bytes()).await;
        return None;
    }
    let target = TcpStream::connect(target.trim_start_matches('[').replace("]:", ":")).await.ok()?;
    stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.ok()?;
    Some(pipe(stream, target))
}

async fn socks5_proxy(mut stream: TcpStream, credentials: &Credentials) -> Option<Pipe> {
    let mut greeting = [0u8; 2];
    stream.read_exact(&mut greeting).await.ok()?;
    let mut methods = vec![0u8; usize::from(greeting[1])];
    stream.read_exact(&mut methods).await.ok()?;
    let wanted = if credentials.is_some() { 0x02 } else { 0x00 };
    if greeting[0] != 5 || !methods.contains(&wanted) {
        let _ = stream.write_all(&[5, 0xff]).await;
        return None;
    }
    stream.write_all(&[5, wanted]).await.ok()?;
    if let Some((user, password)) = credentials {
        let version = stream.read_u8().await.ok()?;
        let mut given_user = vec![0u8; usize::from(stream.read_u8().await.ok()?)];
        stream.read_exact(&mut given_user).await.ok()?;
        let mut given_password = vec![0u8; usize::from(stream.read_u8().await.ok()?)];
        stream.read_exact(&mut given_password).await.ok()?;
        let ok = version == 1 && given_user == user.as_bytes() && given_password == password.as_bytes();
        stream.write_all(&[1, if ok { 0 } else { 1 }]).await.ok()?;
        if !ok {
            return None;
        }
    }
    let mut request = [0u8; 4];
    stream.read_exact(&mut request).await.ok()?;
    let host = match request[3] {
        0x01 => {
            let mut ip = [0u8; 4];
            stream.read_exact(&mut ip).await.ok()?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        0x03 => {
            let mut name = vec![0u8; usize::from(stream.read_u8().await.ok()?)];
            stream.read_exact(&mut name).await.ok()?;
            String::from_utf8(name).ok()?
        }
        0x04 => {
            let mut ip = [0u8; 16];
            stream.read_exact(&mut ip).await.ok()?;
            std::net::Ipv6Addr::from(ip).to_string()
        }
        _ => return None,
    };
    let port = stream.read_u16().await.ok()?;
    let Ok(target) = TcpStream::connect((host.as_str(), port)).await else {
        let _ = stream.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        return None;
    };
    stream.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.ok()?;
    Some(pipe(stream, target))
}
