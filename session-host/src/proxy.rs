//! The WhatsApp socket through a proxy: HTTP CONNECT, HTTPS (CONNECT inside TLS to the proxy) and
//! SOCKS5, each with optional username and password.
//!
//! [`open_tunnel`] returns a byte stream to the target through the proxy; the WhatsApp transport
//! then runs TLS and the WebSocket upgrade over it as it would over a direct TCP connection.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ryze_core::domain::ProxyProtocol;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::HostError;

/// A bidirectional byte stream, whatever carries it.
pub trait Tunnel: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Tunnel for T {}

/// A proxy to dial, with its password opened.
#[derive(Clone)]
pub struct ProxySpec {
    pub protocol: ProxyProtocol,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for ProxySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySpec")
            .field("protocol", &self.protocol)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Replies from a proxy are small; a longer one is not a proxy speaking.
const MAX_REPLY_HEAD: usize = 8 * 1024;

/// Opens a stream to `target_host:target_port` through `proxy`. `tls` wraps the connection to an
/// HTTPS proxy (the deployment's trust roots).
pub async fn open_tunnel(
    proxy: &ProxySpec,
    target_host: &str,
    target_port: u16,
    tls: &tokio_websockets::Connector,
) -> Result<Box<dyn Tunnel>, HostError> {
    let stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| HostError::Proxy(format!("cannot reach proxy {}:{}: {e}", proxy.host, proxy.port)))?;
    stream.set_nodelay(true).map_err(|e| HostError::Proxy(e.to_string()))?;
    match proxy.protocol {
        ProxyProtocol::Http => {
            let mut stream = stream;
            http_connect(&mut stream, proxy, target_host, target_port).await?;
            Ok(Box::new(stream))
        }
        ProxyProtocol::Https => {
            let mut stream = tls
                .wrap(&proxy.host, stream)
                .await
                .map_err(|e| HostError::Proxy(format!("TLS to proxy {} failed: {e}", proxy.host)))?;
            http_connect(&mut stream, proxy, target_host, target_port).await?;
            Ok(Box::new(stream))
        }
        ProxyProtocol::Socks5 => {
            let mut stream = stream;
            socks5_connect(&mut stream, proxy, target_host, target_port).await?;
            Ok(Box::new(stream))
        }
    }
}

async fn http_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &ProxySpec,
    host: &str,
    port: u16,
) -> Result<(), HostError> {
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(username) = &proxy.username {
        let credentials = format!("{username}:{}", proxy.password.as_deref().unwrap_or_default());
        request.push_str(&format!("Proxy-Authorization: Basic {}\r\n", STANDARD.encode(credentials)));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io_error)?;

    // Read byte by byte up to the end of the head: nothing of the tunnel may be consumed here.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_REPLY_HEAD {
            return Err(HostError::Proxy("proxy reply too long".into()));
        }
        let byte = stream.read_u8().await.map_err(io_error)?;
        head.push(byte);
    }
    let status_line =
        String::from_utf8_lossy(head.split(|b| *b == b'\r').next().unwrap_or_default()).into_owned();
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(()),
        Some(407) => Err(HostError::Proxy("proxy authentication failed (407)".into())),
        _ => Err(HostError::Proxy(format!("proxy refused the tunnel: {status_line}"))),
    }
}

async fn socks5_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &ProxySpec,
    host: &str,
    port: u16,
) -> Result<(), HostError> {
    const VERSION: u8 = 5;
    const NO_AUTH: u8 = 0x00;
    const USER_PASS: u8 = 0x02;
    let methods: &[u8] = if proxy.username.is_some() { &[USER_PASS] } else { &[NO_AUTH] };
    let mut greeting = vec![VERSION, u8::try_from(methods.len()).unwrap_or(1)];
    greeting.extend_from_slice(methods);
    stream.write_all(&greeting).await.map_err(io_error)?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.map_err(io_error)?;
    if choice[0] != VERSION {
        return Err(HostError::Proxy("not a SOCKS5 proxy".into()));
    }
    match choice[1] {
        NO_AUTH => {}
        USER_PASS => {
            // RFC 1929: version 1, then length-prefixed username and password.
            let username = proxy.username.as_deref().unwrap_or_default().as_bytes();
            let password = proxy.password.as_deref().unwrap_or_default().as_bytes();
            let (Ok(ulen), Ok(plen)) = (u8::try_from(username.len()), u8::try_from(password.len())) else {
                return Err(HostError::Proxy("SOCKS5 credentials longer than 255 bytes".into()));
            };
            let mut auth = vec![1, ulen];
            auth.extend_from_slice(username);
            auth.push(plen);
            auth.extend_from_slice(password);
            stream.write_all(&auth).await.map_err(io_error)?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await.map_err(io_error)?;
            if status[1] != 0 {
                return Err(HostError::Proxy("proxy authentication failed (SOCKS5)".into()));
            }
        }
        0xff => {
            return Err(HostError::Proxy(
                "proxy authentication failed (SOCKS5: no acceptable method)".into(),
            ));
        }
        other => return Err(HostError::Proxy(format!("SOCKS5 proxy chose an unsupported method {other}"))),
    }

    let mut request = vec![VERSION, 0x01, 0x00];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(0x01);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(0x04);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = host.as_bytes();
            let len = u8::try_from(name.len()).map_err(|_| HostError::Proxy("host name too long".into()))?;
            request.push(0x03);
            request.push(len);
            request.extend_from_slice(name);
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.map_err(io_error)?;

    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await.map_err(io_error)?;
    if reply[1] != 0 {
        return Err(HostError::Proxy(format!("SOCKS5 proxy refused the connection (reply {})", reply[1])));
    }
    // Skip the bound address the proxy reports.
    let address_len = match reply[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => usize::from(stream.read_u8().await.map_err(io_error)?),
        other => return Err(HostError::Proxy(format!("SOCKS5 reply with address type {other}"))),
    };
    let mut bound = vec![0u8; address_len + 2];
    stream.read_exact(&mut bound).await.map_err(io_error)?;
    Ok(())
}

fn io_error(error: std::io::Error) -> HostError {
    HostError::Proxy(format!("proxy connection failed: {error}"))
}
