//! The dashboard: one static page (HTML, CSS and JavaScript, no build step, no CDN) embedded in
//! the binary. It asks for credentials, then polls the API every few seconds and draws totals,
//! rate charts (inline SVG), queues, streams, connections and channels.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("dashboard.html");

/// `GET /` and `/index.html`.
pub async fn page() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    r.headers_mut().extend(super::no_cache());
    r
}
