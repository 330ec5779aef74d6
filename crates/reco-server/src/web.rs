//! The feed page at `/`: the built page from a directory, or a note on how to build it.

use std::path::Path;

use axum::Router;
use axum::response::Html;
use tower_http::services::{ServeDir, ServeFile};

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

/// Adds the page as the fallback for everything that is not a gRPC route.
pub fn with_page(router: Router, web_dir: Option<&Path>) -> Router {
    match web_dir {
        Some(dir) if dir.join("index.html").is_file() => {
            router.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html"))))
        }
        _ => router.fallback(|| async { Html(NOT_BUILT) }),
    }
}
