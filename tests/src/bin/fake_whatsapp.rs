//! The fake WhatsApp server as a process, for benchmarks and for trying `ryze serve` end to end on
//! one machine with no phone:
//!
//!   ryze-fake-whatsapp [--control 127.0.0.1:7070]
//!   RYZE_WHATSAPP_URL=<printed url> cargo run --features insecure-test-whatsapp -- serve
//!   curl -X POST 127.0.0.1:7070/scan -H 'content-type: application/json' \
//!        -d '{"qr": "<qrCode from connect>", "phone": "5511999999999"}'
//!
//! It prints `whatsapp=<ws url>` and `control=<http address>` on stdout, then serves until killed.
//! Control routes: `POST /scan {qr, phone}` plays the phone scanning a QR code;
//! `POST /pairing-code {phone, code}` plays the phone entering a pairing code.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use ryze_tests::fake_whatsapp::FakeWhatsApp;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut control: SocketAddr = "127.0.0.1:0".parse()?;
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--control", Some(address)) => control = address.parse()?,
            _ => return Err(format!("usage: ryze-fake-whatsapp [--control HOST:PORT] (got {flag})").into()),
        }
    }
    if !control.ip().is_loopback() {
        return Err("the control address must be loopback".into());
    }
    let fake = Arc::new(FakeWhatsApp::start().await);
    let listener = tokio::net::TcpListener::bind(control).await?;
    println!("whatsapp={}", fake.url());
    println!("control={}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/scan", post(scan))
        .route("/pairing-code", post(pairing_code))
        .with_state(fake);
    axum::serve(listener, app).await?;
    Ok(())
}

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, (StatusCode, Json<Value>)> {
    body[name]
        .as_str()
        .ok_or_else(|| (StatusCode::BAD_REQUEST, Json(json!({"error": format!("{name} is required")}))))
}

async fn scan(State(fake): State<Arc<FakeWhatsApp>>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let (qr, phone) = match (field(&body, "qr"), field(&body, "phone")) {
        (Ok(qr), Ok(phone)) => (qr, phone),
        (Err(refusal), _) | (_, Err(refusal)) => return refusal,
    };
    match fake.scan_qr(qr, phone).await {
        Ok(()) => (StatusCode::OK, Json(json!({"scanned": true}))),
        Err(error) => (StatusCode::CONFLICT, Json(json!({"error": error.to_string()}))),
    }
}

async fn pairing_code(
    State(fake): State<Arc<FakeWhatsApp>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let (phone, code) = match (field(&body, "phone"), field(&body, "code")) {
        (Ok(phone), Ok(code)) => (phone, code),
        (Err(refusal), _) | (_, Err(refusal)) => return refusal,
    };
    match fake.enter_pairing_code(phone, code).await {
        Ok(()) => (StatusCode::OK, Json(json!({"paired": true}))),
        Err(error) => (StatusCode::CONFLICT, Json(json!({"error": error.to_string()}))),
    }
}
