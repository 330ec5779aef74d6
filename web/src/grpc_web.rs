//! A small gRPC-Web client over the browser's `fetch`: unary calls and server streams,
//! binary protobuf (`application/grpc-web+proto`), no metadata, no compression.
//!
//! It replaces tonic + tonic-web-wasm-client for the page's size: that stack (http, http-body,
//! tower, tonic's codec and status machinery) was the largest part of the wasm, and the page
//! needs none of what it adds over these few hundred lines. [`crate::api`] is its only user.
//!
//! The wire format ([PROTOCOL-WEB]): a request body is one frame; a response body is frames.
//! A frame is a flag byte (`0x00` a message, `0x80` trailers), the payload's length as a
//! big-endian `u32`, and the payload. Trailers are HTTP/1-style `name: value` lines carrying
//! `grpc-status`, `grpc-message` (percent-encoded) and `grpc-status-details-bin` (base64 of
//! an encoded `google.rpc.Status`). A call that fails before answering may be
//! "trailers-only": its status is in the response headers and its body is empty.
//!
//! The framing and status parsing ([`frame`], [`Decoder`], [`status`]) are plain functions
//! with ordinary unit tests; [`unary`] and [`server_stream`] are the fetch side.
//!
//! [PROTOCOL-WEB]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md

use std::marker::PhantomData;

use js_sys::Uint8Array;
use prost::Message;
use wasm_bindgen::{JsCast as _, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, ReadableStreamDefaultReader, ReadableStreamReadResult, RequestInit, Response};

/// A gRPC status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code numbered `value` on the wire; [`Code::Unknown`] for a number gRPC does not define.
    pub fn from_wire(value: &str) -> Code {
        value.trim().parse::<usize>().ok().and_then(|n| Code::ALL.get(n).copied()).unwrap_or(Code::Unknown)
    }

    /// What the code means, for a status that came without a message.
    pub fn description(self) -> &'static str {
        match self {
            Code::Ok => "the call succeeded",
            Code::Cancelled => "the call was cancelled",
            Code::Unknown => "unknown error",
            Code::InvalidArgument => "the request was refused as invalid",
            Code::DeadlineExceeded => "the call took too long",
            Code::NotFound => "not found",
            Code::AlreadyExists => "it already exists",
            Code::PermissionDenied => "permission denied",
            Code::ResourceExhausted => "the server is out of resources",
            Code::FailedPrecondition => "the server is not in a state to do this",
            Code::Aborted => "the call was aborted",
            Code::OutOfRange => "out of range",
            Code::Unimplemented => "the server does not implement this call",
            Code::Internal => "internal error",
            Code::Unavailable => "the service is unavailable",
            Code::DataLoss => "data was lost",
            Code::Unauthenticated => "not authenticated",
        }
    }

    /// The code for an HTTP error status that came without a gRPC status (gRPC's mapping).
    pub fn from_http(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }
}

/// How a call ended: its code, message and encoded `google.rpc.Status` details (empty if none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub message: String,
    pub details: Vec<u8>,
}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status { code, message: message.into(), details: Vec::new() }
    }

    /// The request fields the server refused, as `(field, description)`: the
    /// `google.rpc.BadRequest` among the details, if any.
    pub fn field_violations(&self) -> Vec<(String, String)> {
        let Ok(status) = RpcStatus::decode(self.details.as_slice()) else { return Vec::new() };
        status
            .details
            .iter()
            .filter(|any| any.type_url.ends_with("/google.rpc.BadRequest"))
            .filter_map(|any| BadRequest::decode(any.value.as_slice()).ok())
            .flat_map(|bad| bad.field_violations)
            .map(|violation| (violation.field, violation.description))
            .collect()
    }
}

/// `google.rpc.Status`, as much of it as the page reads (its code and message are the
/// call's own).
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.BadRequest`.
#[derive(Clone, PartialEq, Message)]
struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    field_violations: Vec<FieldViolation>,
}

/// `google.rpc.BadRequest.FieldViolation`, without the fields reco does not send.
#[derive(Clone, PartialEq, Message)]
struct FieldViolation {
    #[prost(string, tag = "1")]
    field: String,
    #[prost(string, tag = "2")]
    description: String,
}

/// The status that headers or trailers carry, looked up by lower-case name; `None` without
/// `grpc-status`.
pub fn status(get: impl Fn(&str) -> Option<String>) -> Option<Status> {
    let code = Code::from_wire(&get("grpc-status")?);
    let message = get("grpc-message").map(|message| percent_decode(message.trim())).unwrap_or_default();
    let details = get("grpc-status-details-bin").and_then(|details| base64_decode(details.trim())).unwrap_or_default();
    Some(Status { code, message, details })
}

/// A trailers frame's payload as `(lower-case name, value)` pairs.
fn trailer_lines(payload: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(payload)
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect()
}

/// `message` as one request frame.
pub fn frame(message: &impl Message) -> Vec<u8> {
    let len = message.encoded_len();
    let mut bytes = Vec::with_capacity(5 + len);
    bytes.push(0);
    bytes.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode_raw(&mut bytes);
    bytes
}

/// One frame of a response body.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// An encoded message.
    Message(Vec<u8>),
    /// The trailers' status; `None` if they had no `grpc-status`.
    Trailers(Option<Status>),
}

/// The longest frame read, as tonic's default limit on a decoded message: 4 MiB.
pub const MAX_FRAME: u32 = 4 << 20;

/// Splits a response body, fed in chunks as they arrive, into frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next whole frame, `Ok(None)` until one has fully arrived; an error for a
    /// compressed or unknown frame (this client asks for neither), or one longer than
    /// [`MAX_FRAME`] (which it would otherwise wait for, holding what arrives).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Status> {
        let Some(header) = self.buffer.first_chunk::<5>() else { return Ok(None) };
        let flags = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if len > MAX_FRAME {
            return Err(Status::new(Code::ResourceExhausted, format!("a frame of {len} bytes (at most {MAX_FRAME})")));
        }
        let end = 5 + len as usize;
        if self.buffer.len() < end {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buffer.drain(..end).skip(5).collect();
        match flags {
            0x00 => Ok(Some(Frame::Message(payload))),
            0x80 => {
                let lines = trailer_lines(&payload);
                let get = |name: &str| lines.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
                Ok(Some(Frame::Trailers(status(get))))
            }
            _ => Err(Status::new(Code::Internal, format!("a response frame this page cannot read (flags {flags})"))),
        }
    }

    /// Whether a partial frame is left over.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }
}

/// `grpc-message`'s percent-encoding undone (invalid UTF-8 replaced, bad escapes kept).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64, padded or not (gRPC sends `-bin` headers unpadded); `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for &c in text {
        bits = bits << 6 | u32::from(sextet(c)?);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    // A lone sextet at the end cannot be a whole byte.
    (count < 6).then_some(out)
}

/// Aborts the fetch when dropped, so a dropped call or stream closes its connection.
struct Abort(AbortController);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A failure of the browser's fetch (no answer at all), as [`Code::Unknown`] with its text.
fn js_error(error: JsValue) -> Status {
    let message = match error.dyn_ref::<js_sys::Error>() {
        Some(error) => String::from(error.to_string()),
        None => error.as_string().unwrap_or_else(|| "the browser's fetch failed".to_owned()),
    };
    Status::new(Code::Unknown, message)
}

/// An open server stream of `M`s.
pub struct Stream<M> {
    body: Body,
    _message: PhantomData<M>,
}

impl<M: Message + Default> Stream<M> {
    /// The next message; `Ok(None)` once the server ended the call with `OK`.
    pub async fn message(&mut self) -> Result<Option<M>, Status> {
        let Some(bytes) = self.body.next_message().await? else { return Ok(None) };
        M::decode(bytes.as_slice()).map(Some).map_err(decode_error)
    }
}

/// A response body being read (the part of [`Stream`] that does not depend on the message
/// type, so it is compiled once).
struct Body {
    reader: Option<ReadableStreamDefaultReader>,
    decoder: Decoder,
    /// Set once the status arrived (trailers, or trailers-only headers); nothing follows.
    ended: bool,
    _abort: Abort,
}

impl Body {
    /// The next encoded message; `Ok(None)` once the server ended the call with `OK`.
    async fn next_message(&mut self) -> Result<Option<Vec<u8>>, Status> {
        loop {
            match self.decoder.next_frame()? {
                Some(Frame::Message(bytes)) => return Ok(Some(bytes)),
                Some(Frame::Trailers(status)) => {
                    self.ended = true;
                    let status = status.unwrap_or_else(|| Status::new(Code::Internal, "trailers without grpc-status"));
                    return if status.code == Code::Ok { Ok(None) } else { Err(status) };
                }
                None if self.ended => return Ok(None),
                None => {}
            }
            let Some(reader) = &self.reader else {
                return Err(Status::new(Code::Internal, "the answer has no body"));
            };
            let read: ReadableStreamReadResult =
                JsFuture::from(reader.read()).await.map_err(js_error)?.unchecked_into();
            if read.get_done().unwrap_or_default() {
                let what = if self.decoder.is_empty() { "without a status" } else { "in the middle of a frame" };
                return Err(Status::new(Code::Unavailable, format!("the answer ended {what}")));
            }
            self.decoder.push(&read.get_value().unchecked_into::<Uint8Array>().to_vec());
        }
    }
}

/// Calls the server-streaming method at `url` (`{base}/{package.Service}/{Method}`).
/// Fails with the call's status if it fails before its first message.
pub async fn server_stream<Req: Message, Res: Message + Default>(
    url: &str,
    request: &Req,
) -> Result<Stream<Res>, Status> {
    Ok(Stream { body: receive(send(url, &frame(request))?).await?, _message: PhantomData })
}

/// Calls the unary method at `url` (`{base}/{package.Service}/{Method}`). The request goes out
/// now, not when the answer is first polled, so a caller can overlap it with other work.
pub fn unary<Req: Message + 'static, Res: Message + Default>(
    url: &str,
    request: &Req,
) -> impl Future<Output = Result<Res, Status>> + use<Req, Res> {
    let sent = send(url, &frame(request));
    async move {
        let answer = call(sent?).await?;
        Res::decode(answer.as_slice()).map_err(decode_error)
    }
}

/// [`unary`] up to the encoded answer (the part that does not depend on the message types).
async fn call(sent: Sent) -> Result<Vec<u8>, Status> {
    let mut body = receive(sent).await?;
    let answer = body.next_message().await?.ok_or_else(|| Status::new(Code::Internal, "the server sent no answer"))?;
    if body.next_message().await?.is_some() {
        return Err(Status::new(Code::Internal, "the server sent more than one answer"));
    }
    Ok(answer)
}

/// Without prost's description of the error: formatting it is ~1 KB of wasm, for an answer
/// that only a server with another `.proto` would send.
fn decode_error(_: prost::DecodeError) -> Status {
    Status::new(Code::Internal, "cannot decode the server's answer (is the server's .proto another version?)")
}

/// A request on its way: the `fetch` promise, and what aborts it when dropped.
struct Sent {
    response: JsFuture,
    abort: Abort,
}

/// Starts `fetch` for one framed request.
fn send(url: &str, frame: &[u8]) -> Result<Sent, Status> {
    let window = web_sys::window().ok_or_else(|| Status::new(Code::Internal, "no window"))?;
    let abort = Abort(AbortController::new().map_err(js_error)?);
    let headers = Headers::new().map_err(js_error)?;
    for (name, value) in
        [("content-type", "application/grpc-web+proto"), ("accept", "application/grpc-web+proto"), ("x-grpc-web", "1")]
    {
        headers.set(name, value).map_err(js_error)?;
    }
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    init.set_body(&Uint8Array::from(frame));
    init.set_signal(Some(&abort.0.signal()));
    Ok(Sent { response: JsFuture::from(window.fetch_with_str_and_init(url, &init)), abort })
}

/// Waits for the response to a [`send`] and checks its headers.
async fn receive(sent: Sent) -> Result<Body, Status> {
    let Sent { response, abort } = sent;
    let response: Response = response.await.map_err(js_error)?.unchecked_into();
    let headers = response.headers();
    let header = |name: &str| headers.get(name).ok().flatten();
    let trailers_only = status(header);
    if let Some(status) = &trailers_only
        && status.code != Code::Ok
    {
        return Err(status.clone());
    }
    if !response.ok() {
        let code = Code::from_http(response.status());
        return Err(Status::new(code, format!("HTTP {} {}", response.status(), response.status_text())));
    }
    let content_type = header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/grpc-web") {
        return Err(Status::new(
            Code::Unknown,
            format!("the answer is not gRPC-Web (content type \"{content_type}\")"),
        ));
    }
    let reader = match response.body() {
        Some(body) => Some(ReadableStreamDefaultReader::new(&body).map_err(js_error)?),
        None => None,
    };
    Ok(Body { reader, decoder: Decoder::default(), ended: trailers_only.is_some(), _abort: abort })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailers(text: &str) -> Vec<u8> {
        let mut bytes = vec![0x80];
        bytes.extend_from_slice(&(text.len() as u32).to_be_bytes());
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }

    #[test]
    fn a_request_is_one_frame() {
        let message = reco_proto::v1::ArticlesRequest { article_ids: vec![1, 300] };
        let bytes = frame(&message);
        assert_eq!(bytes[0], 0);
        assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize, bytes.len() - 5);
        assert_eq!(reco_proto::v1::ArticlesRequest::decode(&bytes[5..]).unwrap(), message);
        assert_eq!(frame(&reco_proto::v1::ChannelsRequest {}), [0, 0, 0, 0, 0]);
    }

    #[test]
    fn frames_come_out_whole_however_the_body_is_chunked() {
        let mut body = frame(&reco_proto::v1::ArticlesRequest { article_ids: vec![7] });
        body.extend(frame(&reco_proto::v1::ChannelsRequest {}));
        body.extend(trailers("grpc-status: 0\r\ngrpc-message: \r\n"));
        for chunk_size in 1..body.len() {
            let mut decoder = Decoder::default();
            let mut frames = Vec::new();
            for chunk in body.chunks(chunk_size) {
                decoder.push(chunk);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert!(decoder.is_empty());
            assert_eq!(
                frames,
                [
                    Frame::Message(vec![10, 1, 7]),
                    Frame::Message(Vec::new()),
                    Frame::Trailers(Some(Status::new(Code::Ok, ""))),
                ],
                "chunks of {chunk_size}"
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_arrives() {
        let mut decoder = Decoder::default();
        decoder.push(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2]);
        let refused = decoder.next_frame().unwrap_err();
        assert_eq!(refused.code, Code::ResourceExhausted);
        assert!(refused.message.contains("4294967295 bytes"), "{}", refused.message);
        let mut decoder = Decoder::default();
        decoder.push(&[0]);
        decoder.push(&MAX_FRAME.to_be_bytes());
        assert_eq!(decoder.next_frame(), Ok(None), "the largest allowed frame is waited for");
    }

    #[test]
    fn compressed_frames_are_refused() {
        let mut decoder = Decoder::default();
        decoder.push(&[1, 0, 0, 0, 0]);
        assert_eq!(decoder.next_frame().unwrap_err().code, Code::Internal);
    }

    #[test]
    fn trailers_carry_the_status() {
        let mut decoder = Decoder::default();
        decoder.push(&trailers(
            "Grpc-Status: 3\r\ngrpc-message: user_id%20is%20empty%3A%20%E7%94%A8%E6%88%B7\r\ngrpc-status-details-bin: CAM\r\n",
        ));
        let Some(Frame::Trailers(Some(status))) = decoder.next_frame().unwrap() else { panic!("no status") };
        assert_eq!(
            status,
            Status { code: Code::InvalidArgument, message: "user_id is empty: 用户".into(), details: vec![8, 3] }
        );
        decoder.push(&trailers("x-other: 1\r\n"));
        assert_eq!(decoder.next_frame().unwrap(), Some(Frame::Trailers(None)));
    }

    #[test]
    fn codes_read_from_the_wire_and_from_http() {
        assert_eq!(Code::from_wire("0"), Code::Ok);
        assert_eq!(Code::from_wire("14"), Code::Unavailable);
        assert_eq!(Code::from_wire("16"), Code::Unauthenticated);
        assert_eq!(Code::from_wire("17"), Code::Unknown);
        assert_eq!(Code::from_wire("x"), Code::Unknown);
        assert_eq!(Code::from_http(404), Code::Unimplemented);
        assert_eq!(Code::from_http(503), Code::Unavailable);
        assert_eq!(Code::from_http(500), Code::Unknown);
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }

    #[test]
    fn base64_padded_or_not() {
        for (text, bytes) in [
            ("", &b""[..]),
            ("Zg", b"f"),
            ("Zg==", b"f"),
            ("Zm8", b"fo"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("+/+/", &[0xfb, 0xff, 0xbf]),
        ] {
            assert_eq!(base64_decode(text).as_deref(), Some(bytes), "{text}");
        }
        assert_eq!(base64_decode("Z"), None);
        assert_eq!(base64_decode("Zm9v!"), None);
    }

    /// What tonic puts in the headers of a failed call, read back here.
    #[test]
    fn tonic_statuses_read_back() {
        use tonic_types::{ErrorDetails, StatusExt as _};
        let details = ErrorDetails::with_bad_request_violation("user_id", "too long: 300 bytes");
        let sent =
            tonic::Status::with_error_details(tonic::Code::InvalidArgument, "user_id is 300 bytes, 上限", details);
        let mut headers = http::HeaderMap::new();
        sent.add_header(&mut headers).unwrap();
        let get = |name: &str| headers.get(name).map(|value| value.to_str().unwrap().to_owned());
        let status = status(get).unwrap();
        assert_eq!(status.code, Code::InvalidArgument);
        assert_eq!(status.message, "user_id is 300 bytes, 上限");
        assert_eq!(status.details, sent.details());
        assert_eq!(status.field_violations(), [("user_id".to_owned(), "too long: 300 bytes".to_owned())]);
    }

    #[test]
    fn details_without_a_bad_request_name_no_fields() {
        use tonic_types::{ErrorDetails, StatusExt as _};
        assert!(Status::new(Code::Internal, "x").field_violations().is_empty());
        let garbage = Status { details: vec![0xff, 0xff], ..Status::new(Code::Internal, "x") };
        assert!(garbage.field_violations().is_empty());
        let details = ErrorDetails::with_resource_info("article", "9", "", "retracted");
        let sent = tonic::Status::with_error_details(tonic::Code::NotFound, "gone", details);
        let status = Status { details: sent.details().to_vec(), ..Status::new(Code::NotFound, "gone") };
        assert!(status.field_violations().is_empty());
        let mut details = ErrorDetails::with_bad_request_violation("from_ms", "must be before to_ms");
        details.add_bad_request_violation("to_ms", "");
        let sent = tonic::Status::with_error_details(tonic::Code::InvalidArgument, "bad window", details);
        let status = Status { details: sent.details().to_vec(), ..Status::new(Code::InvalidArgument, "bad window") };
        assert_eq!(
            status.field_violations(),
            [("from_ms".to_owned(), "must be before to_ms".to_owned()), ("to_ms".to_owned(), String::new())]
        );
    }
}
