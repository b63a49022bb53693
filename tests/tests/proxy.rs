//! The session host's proxy tunnels against local HTTP, HTTPS and SOCKS5 proxies.

use ryze_core::domain::ProxyProtocol;
use ryze_session_host::proxy::{ProxySpec, open_tunnel};
use ryze_tests::proxies::{Kind, TestCertificate, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An echo server: what a tunnel should reach.
async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    addr
}

fn spec(kind: Kind, proxy: &TestProxy, credentials: Option<(&str, &str)>) -> ProxySpec {
    ProxySpec {
        protocol: match kind {
            Kind::Http => ProxyProtocol::Http,
            Kind::Https => ProxyProtocol::Https,
            Kind::Socks5 => ProxyProtocol::Socks5,
        },
        host: "127.0.0.1".into(),
        port: proxy.addr.port(),
        username: credentials.map(|(u, _)| u.to_owned()),
        password: credentials.map(|(_, p)| p.to_owned()),
    }
}

#[tokio::test]
async fn every_protocol_tunnels_with_and_without_credentials() {
    let target = echo_server().await;
    let certificate = TestCertificate::generate();
    let tls = tokio_websockets::Connector::Rustls(certificate.client_connector());
    for kind in [Kind::Http, Kind::Https, Kind::Socks5] {
        for credentials in [None, Some(("user", "p@ss:word"))] {
            let proxy = TestProxy::start(kind, credentials, Some(&certificate)).await;
            let mut tunnel = open_tunnel(&spec(kind, &proxy, credentials), "127.0.0.1", target.port(), &tls)
                .await
                .unwrap_or_else(|e| panic!("{kind:?} {credentials:?}: {e}"));
            tunnel.write_all(b"ping through the proxy").await.expect("write");
            let mut echoed = [0u8; 22];
            tunnel.read_exact(&mut echoed).await.expect("read");
            assert_eq!(&echoed, b"ping through the proxy", "{kind:?}");
            assert_eq!(proxy.tunnels(), 1, "{kind:?}");
        }
    }
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error() {
    let target = echo_server().await;
    let certificate = TestCertificate::generate();
    let tls = tokio_websockets::Connector::Rustls(certificate.client_connector());
    for kind in [Kind::Http, Kind::Https, Kind::Socks5] {
        let proxy = TestProxy::start(kind, Some(("user", "right")), Some(&certificate)).await;
        for given in [Some(("user", "wrong")), None] {
            let Err(error) = open_tunnel(&spec(kind, &proxy, given), "127.0.0.1", target.port(), &tls).await
            else {
                panic!("{kind:?} accepted {given:?}");
            };
            assert!(error.to_string().contains("authentication failed"), "{kind:?} {given:?}: {error}");
        }
        assert_eq!(proxy.tunnels(), 0);
    }
}

#[tokio::test]
async fn an_unreachable_proxy_or_target_is_a_clear_error() {
    let tls = tokio_websockets::Connector::Plain;
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr").port();
    let nowhere = ProxySpec {
        protocol: ProxyProtocol::Socks5,
        host: "127.0.0.1".into(),
        port: closed,
        username: None,
        password: None,
    };
    let error = open_tunnel(&nowhere, "127.0.0.1", 1, &tls).await.err().expect("no proxy there");
    assert!(error.to_string().contains("cannot reach proxy"), "{error}");

    for kind in [Kind::Http, Kind::Socks5] {
        let proxy = TestProxy::start(kind, None, None).await;
        let error =
            open_tunnel(&spec(kind, &proxy, None), "127.0.0.1", closed, &tls).await.err().expect("no target");
        assert!(
            error.to_string().contains("refused") || error.to_string().contains("failed"),
            "{kind:?}: {error}"
        );
    }
}
