//! The feed page at `/`: the built page from a directory, or a note on how to build it.
//!
//! Files are served as built, precompressed when the build left `.br` or `.gz` beside them
//! (`scripts/build-web.sh` does) and the client accepts it. A file whose name carries a
//! content hash (`name-<16 hex>.ext`, as the build names the script, the wasm and the style)
//! may be cached for good; anything else, `index.html` first, is revalidated on every visit.
//! A path that is no file answers 404: the page has no client-side routes.

use std::path::Path;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tower::ServiceExt as _;
use tower_http::services::ServeDir;

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

/// Cache-Control of a file named with its content hash.
const FOREVER: &str = "public, max-age=31536000, immutable";

/// Adds the page as the fallback for every request no gRPC route takes, but for gRPC calls
/// (content type `application/grpc…`) to other paths: those get UNIMPLEMENTED.
pub fn with_page(router: Router, web_dir: Option<&Path>) -> Router {
    match web_dir {
        Some(dir) if dir.join("index.html").is_file() => {
            let files = ServeDir::new(dir).precompressed_br().precompressed_gzip();
            let page = Router::new().fallback_service(files).layer(axum::middleware::from_fn(cache_control));
            router.fallback(move |request: Request| async move {
                if edge::is_grpc(&request) {
                    return edge::unrouted(&request);
                }
                match page.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            })
        }
        _ => router.fallback(|request: Request| async move {
            if edge::is_grpc(&request) {
                return edge::unrouted(&request);
            }
            if request.uri().path() == "/" {
                return Html(NOT_BUILT).into_response();
            }
            (StatusCode::NOT_FOUND, "not found: the page has not been built\n").into_response()
        }),
    }
}

/// Sets how long a served file may be cached, and that its encoding varies.
async fn cache_control(request: Request, next: Next) -> Response {
    let hashed = is_hashed(request.uri().path());
    let mut response = next.run(request).await;
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(if hashed { FOREVER } else { "no-cache" }));
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// Whether the file name has a 16-hex-digit content hash after its last `-`.
fn is_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let Some((_, tail)) = name.rsplit_once('-') else { return false };
    let hash = tail.split(['.', '_']).next().unwrap_or_default();
    hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::is_hashed;

    #[test]
    fn hashed_names_are_the_builds_content_hashed_files() {
        for path in
            ["/reco-web-0123456789abcdef.js", "/reco-web-0123456789abcdef_bg.wasm", "/style-fedcba9876543210.css"]
        {
            assert!(is_hashed(path), "{path}");
        }
        for path in ["/", "/index.html", "/style.css", "/reco-web_bg.wasm", "/a-0123456789ABCDEF.js", "/a-0123.js"] {
            assert!(!is_hashed(path), "{path}");
        }
    }
}
