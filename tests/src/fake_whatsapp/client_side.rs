//! What a whatsapp-rust client needs to talk to the fake server and nothing else: the WebSocket
//! transport aimed at it and an HTTP client that refuses every request.

use whatsapp_rust::anyhow;
use whatsapp_rust::async_trait;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::transport::TokioWebSocketTransportFactory;

use super::FakeWhatsApp;

/// The protocol version every test client pins, so it never fetches WhatsApp Web's `sw.js`.
pub const CLIENT_VERSION: (u32, u32, u32) = (2, 3000, 1);

/// An HTTP client that refuses every request, so a test client cannot reach the internet (media,
/// version checks) even by mistake.
#[derive(Clone, Copy, Debug, Default)]
pub struct RefuseHttp;

#[async_trait]
impl HttpClient for RefuseHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        Err(anyhow::anyhow!("offline test: HTTP {} {} refused", request.method, request.url))
    }
}

impl FakeWhatsApp {
    /// The client transport for this server (`ws://127.0.0.1:<port>/ws/chat`).
    pub fn transport(&self) -> TokioWebSocketTransportFactory {
        TokioWebSocketTransportFactory::new().with_url(self.url())
    }
}
