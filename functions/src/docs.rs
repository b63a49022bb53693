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
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flate2::read::GzDecoder;

use crate::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    content: Content,
}

enum Content {
    /// Ours, written below.
    Text(&'static str),
    /// From the Swagger UI release, compressed by `build.rs`.
    Gzipped(&'static [u8]),
}

macro_rules! vendored {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            content: Content::Gzipped(include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".gz"))),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "application/javascript; charset=utf-8";

/// Every file of the page; `build.rs` lists the vendored names too.
const ASSETS: [Asset; 5] = [
    Asset { name: "index.html", content_type: HTML, content: Content::Text(INDEX) },
    Asset { name: "swagger-initializer.js", content_type: JAVASCRIPT, content: Content::Text(INITIALIZER) },
    vendored!("swagger-ui.css", "text/css; charset=utf-8"),
    vendored!("swagger-ui-bundle.js", "application/javascript; charset=utf-8"),
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
  <script src="swagger-initializer.js"></script>
</body>
</html>
"#;

const INITIALIZER: &str = r##"window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: new URL("../openapi.json", window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The base layout: the standalone one's top bar (a URL box) needs a 70 kB preset in every
    // Lambda bootstrap, for a page that shows one document.
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
};
"##;

/// The page and its files; `/docs` redirects to `/docs/` so that relative links resolve.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/docs", get(|| async { (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, "docs/")]) }))
        .route("/docs/", get(|| serve("index.html")))
        .route("/docs/{file}", get(|Path(file): Path<String>| async move { serve(&file).await }))
}

async fn serve(name: &str) -> Result<Response, ApiError> {
    let asset = ASSETS.iter().find(|asset| asset.name == name).ok_or_else(ApiError::route_not_found)?;
    let body = match asset.content {
        Content::Text(text) => Body::from(text),
        Content::Gzipped(gzipped) => {
            let mut content = Vec::with_capacity(gzipped.len() * 4);
            GzDecoder::new(gzipped).read_to_end(&mut content).map_err(|error| {
                tracing::error!(%error, file = %name, "an embedded /docs file does not inflate");
                ApiError::internal()
            })?;
            Body::from(content)
        }
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
    ];
    Ok((headers, body).into_response())
}
