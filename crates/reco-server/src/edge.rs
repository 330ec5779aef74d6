//! The gRPC edge: what a call needs before and beside the generated services, for gRPC and
//! gRPC-Web alike (it sits inside tonic-web's layer, so it sees gRPC framing either way).
//!
//! - `grpc-timeout`: a call whose deadline passed before its handler ran never runs; one
//!   still running at its deadline is dropped; a stream still open at it is ended. All answer
//!   DEADLINE_EXCEEDED (tonic's own timer would answer CANCELLED; this one fires [`MARGIN`]
//!   earlier). Dropping a handler does not stop an engine call it started on the blocking
//!   pool: that call completes, and a refresh stores its batch in one append or not at all,
//!   so a deadline never leaves half a batch stored.
//! - A request message over the size limit is refused with RESOURCE_EXHAUSTED naming the
//!   limit, from its 5-byte frame header, before any of it is decoded (tonic's own check says
//!   OUT_OF_RANGE). A compressed message is held to the limit once more after decompression,
//!   by tonic (RESOURCE_EXHAUSTED, naming it too).
//! - A gRPC or gRPC-Web call to a path no service serves gets UNIMPLEMENTED ([`unrouted`]),
//!   while every other request there reaches the page.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Request, header};
use http_body::{Frame, SizeHint};
use tokio::time::Instant;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// How much earlier than the client's `grpc-timeout` the edge ends a call. tonic's own timer
/// (outside every layer, started as the call arrives, just before this one) answers CANCELLED
/// at the deadline; one millisecond (tokio's timer resolution) earlier, this one fires first.
pub const MARGIN: Duration = Duration::from_millis(1);

/// Wraps the gRPC routes: deadlines and the message size limit.
#[derive(Clone, Copy, Debug)]
pub struct EdgeLayer {
    pub max_message_bytes: usize,
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge { inner, max_message_bytes: self.max_message_bytes }
    }
}

#[derive(Clone, Debug)]
pub struct Edge<S> {
    inner: S,
    max_message_bytes: usize,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> tower::Service<Request<Body>> for Edge<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> BoxFuture {
        let timeout = grpc_timeout(request.headers());
        let deadline = timeout.map(|t| Instant::now() + t.saturating_sub(MARGIN));
        let max = self.max_message_bytes;
        let request = request.map(|body| Body::new(SizeLimited::new(body, max)));
        let call = self.inner.call(request);
        Box::pin(async move {
            let (Some(deadline), Some(timeout)) = (deadline, timeout) else { return call.await };
            // The handler runs only when polled: past the deadline it never starts.
            if Instant::now() >= deadline {
                return Ok(deadline_exceeded(timeout).into_http());
            }
            match tokio::time::timeout_at(deadline, call).await {
                // A stream (Catalog.Watch) ends at the deadline too.
                Ok(Ok(answer)) => Ok(answer.map(|body| Body::new(Deadlined::new(body, deadline, timeout)))),
                Ok(Err(never)) => match never {},
                Err(_) => Ok(deadline_exceeded(timeout).into_http()),
            }
        })
    }
}

fn deadline_exceeded(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!("the call's deadline (grpc-timeout {timeout:?}) passed before it was done"))
}

/// An answer's body that, when it waits for more past the deadline (a stream between
/// messages), ends with DEADLINE_EXCEEDED trailers instead. A body that is ready is never cut:
/// a unary answer's message and trailers come at once.
struct Deadlined {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    ended: bool,
}

impl Deadlined {
    fn new(inner: Body, deadline: Instant, timeout: Duration) -> Self {
        Self { inner, deadline: Box::pin(tokio::time::sleep_until(deadline)), timeout, ended: false }
    }
}

impl HttpBody for Deadlined {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.ended = frame.as_ref().is_none_or(|f| f.as_ref().is_ok_and(Frame::is_trailers));
            return Poll::Ready(frame);
        }
        ready!(this.deadline.as_mut().poll(cx));
        this.ended = true;
        let mut trailers = HeaderMap::new();
        // Only a message that cannot be a header fails; this one can.
        let _ = deadline_exceeded(this.timeout).add_header(&mut trailers);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }
}

/// The `grpc-timeout` header: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
/// A malformed one is ignored, as tonic does.
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A request body whose gRPC frames may announce at most `max` bytes each: a larger one ends
/// the body with RESOURCE_EXHAUSTED (tonic turns a body error that is a `Status` into the
/// call's status).
struct SizeLimited {
    inner: Body,
    max: usize,
    /// The frame header read so far (flag and big-endian length).
    header: [u8; 5],
    have: usize,
    /// Bytes of the current message still to pass.
    skip: usize,
}

impl SizeLimited {
    fn new(inner: Body, max: usize) -> Self {
        Self { inner, max, header: [0; 5], have: 0, skip: 0 }
    }

    fn check(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.have = 0;
                let len = u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]) as usize;
                if len > self.max {
                    return Err(too_large(len, self.max));
                }
                self.skip = len;
            }
        }
        Ok(())
    }
}

/// RESOURCE_EXHAUSTED for a message of `len` bytes over the limit, with a `QuotaFailure`.
pub fn too_large(len: usize, max: usize) -> Status {
    let message = format!("the request message is {len} bytes, the limit is {max} bytes");
    Status::with_error_details(
        Code::ResourceExhausted,
        message.clone(),
        ErrorDetails::with_quota_failure_violation("request message bytes", message),
    )
}

impl HttpBody for SizeLimited {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref()
            && let Err(status) = this.check(data)
        {
            return Poll::Ready(Some(Err(status.into())));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `request` is a gRPC or gRPC-Web call (its content type `application/grpc…`).
pub fn is_grpc<B>(request: &Request<B>) -> bool {
    request.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The answer to a gRPC call no service serves: UNIMPLEMENTED, trailers-only (in the
/// headers, which gRPC-Web carries the same way), in the caller's content type.
pub fn unrouted<B>(request: &Request<B>) -> Response {
    let status = Status::unimplemented(format!(
        "no service here serves {}: gRPC reflection (v1 or v1alpha) lists the services",
        request.uri().path()
    ));
    let mut response: Response = status.into_http();
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE)
        && content_type.as_bytes().starts_with(b"application/grpc-web")
    {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type.clone());
    } else {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_like_the_spec() {
        let parse = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_static(v));
            grpc_timeout(&h)
        };
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("1n"), Some(Duration::from_nanos(1)));
        for bad in ["", "S", "123456789S", "5x", "-5S", "5 S"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn frames_over_the_limit_are_refused_from_their_header() {
        let frame = |len: u32| {
            let mut f = vec![0];
            f.extend_from_slice(&len.to_be_bytes());
            f.extend(std::iter::repeat_n(7, len as usize));
            f
        };
        let mut ok = SizeLimited::new(Body::empty(), 10);
        let two: Vec<u8> = [frame(10), frame(0), frame(3)].concat();
        // Fed one byte at a time, as a slow client's chunks may split headers anywhere.
        for b in &two {
            ok.check(std::slice::from_ref(b)).unwrap();
        }
        let mut big = SizeLimited::new(Body::empty(), 10);
        let err = big.check(&[frame(3), frame(11)].concat()).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.message().contains("11 bytes, the limit is 10 bytes"), "{}", err.message());
        assert!(err.get_details_quota_failure().is_some());
    }
}
