//! The feed page at `/`: the built page from a directory, or a note on how to build it.

use std::path::Path;

use axum::Router;
use axum::extract::Request;
use axum::response::{Html, IntoResponse};
use tower::ServiceExt as _;
use tower_http::services::{ServeDir, ServeFile};

use crate::edge;

const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>reco</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>reco is running</h1>
<p>gRPC and gRPC-Web are served on this port, but the feed page has not been built.</p>
<p>Build it with <code>scripts/build-web.sh</code> (it writes <code>dist/</code>), then restart
<code>reco serve</code> (or pass <code>--web-dir DIR</code>), or run the whole demo with
<code>scripts/demo.sh</code>.</p>
</body></html>
"#;

/// Adds the page as the fallback for every request no gRPC route takes, but for gRPC calls
/// (content type `application/grpc…`) to other paths: those get UNIMPLEMENTED.
pub fn with_page(router: Router, web_dir: Option<&Path>) -> Router {
    match web_dir {
        Some(dir) if dir.join("index.html").is_file() => {
            let page = ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")));
            router.fallback(move |request: Request| async move {
                if edge::is_grpc(&request) {
                    return edge::unrouted(&request);
                }
                match page.oneshot(request).await {
                    Ok(response) => response.into_response(),
                    Err(never) => match never {},
                }
            })
        }
        _ => router.fallback(|request: Request| async move {
            if edge::is_grpc(&request) {
                return edge::unrouted(&request);
            }
            Html(NOT_BUILT).into_response()
        }),
    }
}
