//! A WebSocket client for the tests of `GET /ws`: connect, and read the next event envelope.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `ws://{address}{path}`; the error's text when the server refuses the upgrade.
pub async fn connect(address: SocketAddr, path: &str) -> Result<Socket, String> {
    let uri: axum::http::Uri = format!("ws://{address}{path}").parse().map_err(|e| format!("{e}"))?;
    ClientBuilder::from_uri(uri).connect().await.map(|(socket, _)| socket).map_err(|e| e.to_string())
}

/// The next text frame, as JSON (pings and other frames are skipped); panics after 30 s.
pub async fn next_frame(socket: &mut Socket) -> Value {
    let frame = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let message = socket.next().await.expect("the socket stays open").expect("a frame");
            if let Some(text) = message.as_text() {
                return serde_json::from_str::<Value>(text).expect("a JSON frame");
            }
        }
    });
    frame.await.expect("a frame within 30 s")
}
