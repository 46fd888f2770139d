//! The kitchen display page (`/kds/`), embedded in the binary so a site serves it with no
//! internet: ws/web/dist, built from ws/web/src by esbuild (`npm ci && npm run build` in
//! ws/web) and committed.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../web/dist/index.html");
const SCRIPT: &str = include_str!("../web/dist/kds.js");
const WASM: &[u8] = include_bytes!("../web/dist/automerge.wasm");

fn file(content_type: &'static str, body: impl IntoResponse) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            // The page's token lives in its fragment; nothing here is secret, but a screen
            // should pick up a new bundle after an upgrade of the device.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The routes of the page: `/kds/`, its script and Automerge's wasm. They need no token
/// (the page is the same for everyone); the page's requests carry the one in its fragment.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/kds", get(|| async { Redirect::permanent("/kds/") }))
        .route(
            "/kds/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/kds/index.html",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/kds/kds.js",
            get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/kds/automerge.wasm",
            get(|| async { file("application/wasm", WASM) }),
        )
}
