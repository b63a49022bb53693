//! `/docs`: Swagger UI over `/openapi.json`, served by the binary itself so that it works with no
//! internet at build or run time.
//!
//! Only the files the page loads are embedded, gzip-compressed by `build.rs`; they are inflated per
//! request (a few milliseconds, and the browser caches them). Serving them compressed would need
//! API Gateway to pass binary bodies for scripts too, so every client gets them plain.
//!
//! Every link is relative: behind an API Gateway stage (`/v1/docs/`) the page still finds its
//! scripts and the document.

use std::io::Read;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flate2::read::GzDecoder;

use crate::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    gzipped: &'static [u8],
}

macro_rules! vendored {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            gzipped: include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".gz")),
        }
    };
}

/// The Swagger UI release files; `build.rs` lists the same names.
const VENDORED: [Asset; 4] = [
    vendored!("swagger-ui.css", "text/css; charset=utf-8"),
    vendored!("swagger-ui-bundle.js", "application/javascript; charset=utf-8"),
    vendored!("swagger-ui-standalone-preset.js", "application/javascript; charset=utf-8"),
    vendored!("favicon-32x32.png", "image/png"),
];

const INDEX: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Ryze WhatsApp Instance API</title>
  <link rel="stylesheet" href="swagger-ui.css">
  <link rel="icon" type="image/png" href="favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="swagger-ui-bundle.js"></script>
  <script src="swagger-ui-standalone-preset.js"></script>
  <script src="swagger-initializer.js"></script>
</body>
</html>
"#;

const INITIALIZER: &str = r##"window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: new URL("../openapi.json", window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
  });
};
"##;

/// The page and its files; `/docs` redirects to `/docs/` so that relative links resolve.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/docs", get(|| async { (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, "docs/")]) }))
        .route("/docs/", get(|| async { served("text/html; charset=utf-8", INDEX.as_bytes().to_vec()) }))
        .route("/docs/{file}", get(file))
}

async fn file(Path(name): Path<String>) -> Result<Response, ApiError> {
    match name.as_str() {
        "index.html" => return Ok(served("text/html; charset=utf-8", INDEX.as_bytes().to_vec())),
        "swagger-initializer.js" => {
            return Ok(served("application/javascript; charset=utf-8", INITIALIZER.as_bytes().to_vec()));
        }
        _ => {}
    }
    let asset = VENDORED.iter().find(|asset| asset.name == name).ok_or_else(ApiError::route_not_found)?;
    let mut content = Vec::with_capacity(asset.gzipped.len() * 4);
    GzDecoder::new(asset.gzipped).read_to_end(&mut content).map_err(|error| {
        tracing::error!(%error, file = %name, "an embedded /docs file does not inflate");
        ApiError::internal()
    })?;
    Ok(served(asset.content_type, content))
}

fn served(content_type: &'static str, content: Vec<u8>) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
    ];
    (headers, content).into_response()
}
