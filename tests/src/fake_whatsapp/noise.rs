//! The server half of WhatsApp's Noise handshake, and the encrypted node channel that follows it.
//!
//! whatsapp-rust ships only the initiators (XX, IK, XXfallback); the responders here are written
//! against its public `NoiseHandshake` (the Noise spec's MixHash, MixKey and AEAD steps), so each
//! step below mirrors one token of the pattern the client runs. After the handshake every frame is
//! a 3-byte length plus an AES-GCM ciphertext whose nonce is a per-direction counter; the plaintext
//! is a flag byte and a binary node (`marshal` writes the flag, `unpack` reads it).
//!
//! This module knows sockets, keys and bytes; what the nodes mean is [`super::connection`]'s.

use std::fmt;

use tokio::net::TcpStream;
use tokio_websockets::{Message, WebSocketStream};
use whatsapp_rust::bytes::BytesMut;
use whatsapp_rust::futures::{SinkExt, StreamExt};
use whatsapp_rust::wacore::framing::{FrameDecoder, encode_frame};
use whatsapp_rust::wacore::libsignal::protocol::KeyPair;
use whatsapp_rust::wacore::noise::{NoiseCipher, NoiseHandshake};
use whatsapp_rust::wacore::xml::DisplayableNode;
use whatsapp_rust::wacore_binary::consts::{
    NOISE_PATTERN_IK, NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER,
};
use whatsapp_rust::wacore_binary::{Node, marshal, marshal::unmarshal_ref, util::unpack};
use whatsapp_rust::waproto::buffa::{self, Message as _};
use whatsapp_rust::waproto::whatsapp::{self as wa, HandshakeMessage, handshake_message};

/// Why a connection ended before or while it carried nodes. Only logged: the client sees a
/// closed socket, as it would from a real server that gave up on it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_websockets::Error),
    #[error("noise: {0}")]
    Noise(#[from] whatsapp_rust::wacore::noise::HandshakeError),
    #[error("protobuf: {0}")]
    Proto(#[from] buffa::DecodeError),
    #[error("binary node: {0}")]
    Node(#[from] whatsapp_rust::wacore_binary::BinaryError),
    #[error("framing: {0}")]
    Framing(String),
    #[error("the client closed the socket")]
    Closed,
    #[error("{0}")]
    Protocol(&'static str),
}

/// The Noise pattern a connection completed, as chosen by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoisePattern {
    /// First contact, or a client without a cached server key.
    Xx,
    /// A reconnect with the server static key the client cached after an earlier XX.
    Ik,
    /// An IK attempt with a static key that is not this server's (a new server run).
    XxFallback,
}

impl fmt::Display for NoisePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoisePattern::Xx => "XX",
            NoisePattern::Ik => "IK",
            NoisePattern::XxFallback => "XXfallback",
        })
    }
}

/// The server's long-term Noise identity: one static key per server run, so that a client's IK
/// reconnect (which encrypts to the key cached from its first XX) succeeds.
pub(crate) struct ServerIdentity {
    static_key: KeyPair,
    /// A chain whose leaf carries `static_key`; its signatures are zeros, which only a client
    /// built with `danger-skip-cert-chain-verify` accepts.
    cert_chain: Vec<u8>,
}

impl ServerIdentity {
    pub(crate) fn generate() -> Self {
        let static_key = whatsapp_rust::wacore::crypto::generate_curve_key_pair();
        let public = public_bytes(&static_key);
        let cert_chain = wacore_noise::test_util::build_cert_chain_bytes(&public);
        Self { static_key, cert_chain }
    }

    /// Runs the responder side of whichever pattern the client opened with and returns the
    /// channel plus the client's payload (registration or login).
    pub(crate) async fn accept(
        &self,
        ws: WebSocketStream<TcpStream>,
    ) -> Result<(NodeChannel, wa::ClientPayload, NoisePattern), LinkError> {
        let mut link = RawLink { ws, decoder: FrameDecoder::new(), header_seen: false };
        let hello_frame = link.next_frame().await?;
        let hello = HandshakeMessage::decode_from_slice(&hello_frame)?
            .client_hello
            .into_option()
            .ok_or(LinkError::Protocol("first handshake message has no client hello"))?;
        let client_ephemeral: [u8; 32] = hello
            .ephemeral
            .as_deref()
            .and_then(|e| e.try_into().ok())
            .ok_or(LinkError::Protocol("client hello without a 32-byte ephemeral"))?;

        let (noise, payload, pattern) = match (hello.r#static, hello.payload) {
            (Some(encrypted_static), Some(encrypted_payload)) => {
                match self.ik_read_hello(&client_ephemeral, &encrypted_static, &encrypted_payload)? {
                    Some((noise, client_static, payload)) => {
                        let noise =
                            self.ik_write_hello(&mut link, noise, &client_ephemeral, &client_static).await?;
                        (noise, payload, NoisePattern::Ik)
                    }
                    // The client encrypted to a static key that is not ours: answer with an XX-shaped
                    // hello, which the client takes as "fall back", keeping its ephemeral.
                    None => {
                        let (noise, payload) =
                            self.xx_respond(&mut link, NOISE_PATTERN_XXFALLBACK, &client_ephemeral).await?;
                        (noise, payload, NoisePattern::XxFallback)
                    }
                }
            }
            _ => {
                let (noise, payload) =
                    self.xx_respond(&mut link, NOISE_PATTERN_XX, &client_ephemeral).await?;
                (noise, payload, NoisePattern::Xx)
            }
        };

        // The initiator writes with the first split key, so the responder reads with it.
        let (client_to_server, server_to_client) = noise.finish()?;
        let payload = wa::ClientPayload::decode_from_slice(&payload)?;
        let channel = NodeChannel {
            link,
            read: client_to_server,
            write: server_to_client,
            read_counter: 0,
            write_counter: 0,
        };
        Ok((channel, payload, pattern))
    }

    /// IK message 1 (`e, es, s, ss` after the pre-message `<- s`): decrypts the client's static
    /// key and payload. `None` when the client used a static key that is not ours.
    #[allow(clippy::type_complexity)]
    fn ik_read_hello(
        &self,
        client_ephemeral: &[u8; 32],
        encrypted_static: &[u8],
        encrypted_payload: &[u8],
    ) -> Result<Option<(NoiseHandshake, [u8; 32], Vec<u8>)>, LinkError> {
        let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
        noise.authenticate(&public_bytes(&self.static_key));
        noise.authenticate(client_ephemeral);
        noise.mix_shared_secret(self.static_key.private_key.serialize(), client_ephemeral)?;
        let Ok(client_static) = noise.decrypt(encrypted_static) else {
            return Ok(None);
        };
        let client_static: [u8; 32] =
            client_static.try_into().map_err(|_| LinkError::Protocol("client static key is not 32 bytes"))?;
        noise.mix_shared_secret(self.static_key.private_key.serialize(), &client_static)?;
        let payload = noise.decrypt(encrypted_payload)?;
        Ok(Some((noise, client_static, payload)))
    }

    /// IK message 2 (`e, ee, se`), with the certificate chain as its encrypted payload: the
    /// client decrypts it only to authenticate the transcript.
    async fn ik_write_hello(
        &self,
        link: &mut RawLink,
        mut noise: NoiseHandshake,
        client_ephemeral: &[u8; 32],
        client_static: &[u8; 32],
    ) -> Result<NoiseHandshake, LinkError> {
        let ephemeral = whatsapp_rust::wacore::crypto::generate_curve_key_pair();
        noise.authenticate(&public_bytes(&ephemeral));
        noise.mix_shared_secret(ephemeral.private_key.serialize(), client_ephemeral)?;
        noise.mix_shared_secret(ephemeral.private_key.serialize(), client_static)?;
        let payload = noise.encrypt(&self.cert_chain)?;
        let hello = server_hello(&ephemeral, None, payload);
        link.send_frame(&hello.encode_to_vec()).await?;
        Ok(noise)
    }

    /// XX (or XXfallback, which only differs in the protocol name): sends `e, ee, s, es` with the
    /// certificate chain, then reads the client's `s, se` and its payload.
    async fn xx_respond(
        &self,
        link: &mut RawLink,
        protocol: &str,
        client_ephemeral: &[u8; 32],
    ) -> Result<(NoiseHandshake, Vec<u8>), LinkError> {
        let mut noise = NoiseHandshake::new(protocol, &WA_CONN_HEADER)?;
        noise.authenticate(client_ephemeral);
        let ephemeral = whatsapp_rust::wacore::crypto::generate_curve_key_pair();
        noise.authenticate(&public_bytes(&ephemeral));
        noise.mix_shared_secret(ephemeral.private_key.serialize(), client_ephemeral)?;
        let encrypted_static = noise.encrypt(&public_bytes(&self.static_key))?;
        noise.mix_shared_secret(self.static_key.private_key.serialize(), client_ephemeral)?;
        let encrypted_chain = noise.encrypt(&self.cert_chain)?;
        let hello = server_hello(&ephemeral, Some(encrypted_static), encrypted_chain);
        link.send_frame(&hello.encode_to_vec()).await?;

        let finish_frame = link.next_frame().await?;
        let finish = HandshakeMessage::decode_from_slice(&finish_frame)?
            .client_finish
            .into_option()
            .ok_or(LinkError::Protocol("second handshake message has no client finish"))?;
        let (Some(encrypted_static), Some(encrypted_payload)) = (finish.r#static, finish.payload) else {
            return Err(LinkError::Protocol("client finish without static key or payload"));
        };
        let client_static = noise.decrypt(&encrypted_static)?;
        noise.mix_shared_secret(ephemeral.private_key.serialize(), &client_static)?;
        let payload = noise.decrypt(&encrypted_payload)?;
        Ok((noise, payload))
    }
}

fn server_hello(
    ephemeral: &KeyPair,
    encrypted_static: Option<Vec<u8>>,
    payload: Vec<u8>,
) -> HandshakeMessage {
    HandshakeMessage {
        server_hello: buffa::MessageField::some(handshake_message::ServerHello {
            ephemeral: Some(public_bytes(ephemeral).to_vec()),
            r#static: encrypted_static,
            payload: Some(payload),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn public_bytes(key: &KeyPair) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(key.public_key.public_key_bytes());
    out
}

/// Framed bytes over the WebSocket, before and after encryption.
struct RawLink {
    ws: WebSocketStream<TcpStream>,
    decoder: FrameDecoder,
    /// The client's first write starts with the connection header (and, when it has edge
    /// routing info, an `ED` pre-intro before that); every later frame is bare.
    header_seen: bool,
}

impl RawLink {
    /// The next complete frame. Cancel safe: partial input stays in the decoder.
    async fn next_frame(&mut self) -> Result<BytesMut, LinkError> {
        loop {
            if self.header_seen
                && let Some(frame) = self.decoder.decode_frame()
            {
                return Ok(frame);
            }
            let message = match self.ws.next().await {
                Some(message) => message?,
                None => return Err(LinkError::Closed),
            };
            if message.is_close() {
                return Err(LinkError::Closed);
            }
            if !message.is_binary() {
                continue;
            }
            let mut data: &[u8] = message.as_payload();
            if !self.header_seen {
                data = strip_connection_header(data)?;
                self.header_seen = true;
            }
            self.decoder.feed(data);
        }
    }

    async fn send_frame(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        let frame = encode_frame(payload, None).map_err(|e| LinkError::Framing(e.to_string()))?;
        self.ws.send(Message::binary(frame)).await?;
        Ok(())
    }
}

/// Skips the optional edge-routing pre-intro (`ED\0\1`, 3-byte length, data) and checks the
/// `WA` connection header that follows.
fn strip_connection_header(mut data: &[u8]) -> Result<&[u8], LinkError> {
    if data.starts_with(b"ED\x00\x01") {
        let len = data
            .get(4..7)
            .map(|l| (usize::from(l[0]) << 16) | (usize::from(l[1]) << 8) | usize::from(l[2]))
            .ok_or(LinkError::Protocol("truncated edge routing pre-intro"))?;
        data = data.get(7 + len..).ok_or(LinkError::Protocol("truncated edge routing data"))?;
    }
    data.strip_prefix(&WA_CONN_HEADER[..]).ok_or(LinkError::Protocol("missing WA connection header"))
}

/// Binary nodes over the encrypted transport of one connection.
pub(crate) struct NodeChannel {
    link: RawLink,
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl NodeChannel {
    /// The next node from the client. Cancel safe: a frame is decrypted only once complete, and
    /// the read counter moves only then.
    pub(crate) async fn recv(&mut self) -> Result<Node, LinkError> {
        let mut frame = self.link.next_frame().await?;
        let counter = self.read_counter;
        // A wrapped counter would reuse an AES-GCM nonce; no test gets near 2^32 frames.
        self.read_counter = counter.checked_add(1).ok_or(LinkError::Protocol("read counter exhausted"))?;
        self.read
            .decrypt_in_place_with_counter(counter, &mut frame)
            .map_err(|e| LinkError::Framing(e.to_string()))?;
        let plain = unpack(&frame)?;
        Ok(unmarshal_ref(&plain)?.to_owned())
    }

    pub(crate) async fn send(&mut self, node: &Node) -> Result<(), LinkError> {
        tracing::trace!(stanza = %DisplayableNode(node), "fake whatsapp: sending");
        let plain = marshal(node)?;
        let counter = self.write_counter;
        self.write_counter = counter.checked_add(1).ok_or(LinkError::Protocol("write counter exhausted"))?;
        let sealed = self
            .write
            .encrypt_with_counter(counter, &plain)
            .map_err(|e| LinkError::Framing(e.to_string()))?;
        self.link.send_frame(&sealed).await
    }

    /// Ends the connection with a WebSocket close frame, as a server ending the stream does.
    pub(crate) async fn close(&mut self) {
        // The client may already be gone; there is nobody left to tell.
        let _ = self.link.ws.close().await;
    }
}
