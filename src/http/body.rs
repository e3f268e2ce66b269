//! Request bodies: the JSON content-type rule, size limits, and a streaming reader for bulk
//! row uploads.
//!
//! Two ways in:
//! * [`read_json_body`] collects a whole (bounded) body — for every ordinary endpoint.
//! * [`JsonRowStream`] hands out the elements of a top-level `{"rows": [...]}` array one at a
//!   time, so a large customer-data load is parsed row by row instead of being buffered as
//!   bytes *and* as a `serde_json::Value` tree. It holds at most the current (partial) row plus
//!   one incoming chunk.
//!
//! Both are generic over the body type so tests can feed `http_body_util::Full` or a chunked
//! body instead of hyper's `Incoming`.

use std::fmt::Display;
use std::ops::Range;
use std::pin::{pin, Pin};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body (at most 1 MiB) must arrive within this long, however it trickles in:
/// the connection's idle timeout alone would let a byte every few seconds hold it open.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The whole body of a JSON request, at most `limit` bytes.
///
/// 415 unless `Content-Type` is `application/json` (parameters such as `charset` are fine, as
/// are `application/*+json` types); a body-less request may omit the header. 413 as soon as the
/// declared `Content-Length` or the bytes received exceed `limit`, so an oversized upload is
/// never buffered.
pub async fn read_json_body<B>(req: Request<B>, limit: usize) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Display,
{
    let (parts, body) = req.into_parts();
    let idle = idle_of(&parts.extensions);
    let typed = check_content_type(&parts.headers)?;
    check_declared_length(&parts.headers, body.size_hint().lower(), limit)?;
    if !typed && body.size_hint().lower() > 0 {
        return Err(missing_content_type());
    }
    let bytes = collect_in_time(body, limit, idle).await?;
    if !typed && !bytes.is_empty() {
        return Err(missing_content_type());
    }
    Ok(bytes)
}

/// `Ok(true)` for a JSON content type, `Ok(false)` when the header is absent, 415 otherwise.
fn check_content_type(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(false);
    };
    let text = value.to_str().unwrap_or("<non-ASCII>");
    if is_json_media_type(text) {
        Ok(true)
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type `{text}` is not supported; send `Content-Type: application/json`"
        )))
    }
}

fn is_json_media_type(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

fn missing_content_type() -> ApiError {
    ApiError::UnsupportedMediaType(
        "the request has a body but no Content-Type; send `Content-Type: application/json`".into(),
    )
}

/// 413 before reading anything when the client already told us the body is too big.
fn check_declared_length(headers: &HeaderMap, size_hint: u64, limit: usize) -> Result<(), ApiError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let at_least = declared.unwrap_or(0).max(size_hint);
    if at_least > limit as u64 {
        return Err(too_large(limit));
    }
    Ok(())
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("request body exceeds the limit of {limit} bytes"))
}

fn read_error(e: impl Display) -> ApiError {
    ApiError::BadRequest(format!("could not read the request body: {e}"))
}

/// Collects data frames, failing as soon as the total passes `limit`. A single-frame body
/// (the common case) is returned without copying.
async fn collect_limited<B>(body: B, limit: usize, idle: Option<Duration>) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Display,
{
    let mut body = pin!(body);
    let mut first = Bytes::new();
    let mut more: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = next_frame(body.as_mut(), idle).await? {
        let Ok(chunk) = frame.map_err(read_error)?.into_data() else { continue };
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(too_large(limit));
        }
        match &mut more {
            Some(buffer) => buffer.extend_from_slice(&chunk),
            None if first.is_empty() => first = chunk,
            None => {
                let mut buffer = BytesMut::with_capacity(total);
                buffer.extend_from_slice(&first);
                buffer.extend_from_slice(&chunk);
                more = Some(buffer);
            }
        }
    }
    Ok(more.map_or(first, BytesMut::freeze))
}

/// How long a body may go without a byte (the connection's idle timeout, when served).
fn idle_of(extensions: &hyper::http::Extensions) -> Option<Duration> {
    extensions.get::<super::idle::BodyTimeout>().map(|t| t.0)
}

/// The next frame of a body, or 408 when none arrives within `idle`.
async fn next_frame<B>(
    mut body: Pin<&mut B>,
    idle: Option<Duration>,
) -> Result<Option<Result<Frame<Bytes>, B::Error>>, ApiError>
where
    B: Body<Data = Bytes> + ?Sized,
{
    let Some(idle) = idle else { return Ok(body.frame().await) };
    tokio::time::timeout(idle, body.frame()).await.map_err(|_| {
        ApiError::RequestTimeout(format!("the request body stalled: nothing arrived for {} ms", idle.as_millis()))
    })
}

/// A whole body of any type (a rule file's text), at most `limit` bytes, timed like the others.
pub async fn read_body<B>(req: Request<B>, limit: usize) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Display,
{
    let (parts, body) = req.into_parts();
    let idle = idle_of(&parts.extensions);
    check_declared_length(&parts.headers, body.size_hint().lower(), limit)?;
    collect_in_time(body, limit, idle).await
}

/// `collect_limited` within `BODY_DEADLINE` as a whole (408 past it).
async fn collect_in_time<B>(body: B, limit: usize, idle: Option<Duration>) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Display,
{
    tokio::time::timeout(BODY_DEADLINE, collect_limited(body, limit, idle)).await.map_err(|_| {
        ApiError::RequestTimeout(format!("the request body did not arrive within {} s", BODY_DEADLINE.as_secs()))
    })?
}

/// The elements of a body shaped `{"rows": [ ... ], ...}`, one at a time.
///
/// Other top-level members are refused as unknown fields, like those of every other body.
/// The body is validated to its end before the stream reports `Ok(None)`, so a
/// handler that commits only after `None` never commits a truncated upload.
#[derive(Debug)]
pub struct JsonRowStream<B> {
    /// How long the body may go without a byte.
    idle: Option<Duration>,
    body: B,
    buffer: BytesMut,
    scanner: RowScanner,
    limit: usize,
    received: usize,
    rows: usize,
    body_done: bool,
}

impl<B> JsonRowStream<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Display,
{
    /// Checks the headers (415, early 413) and prepares to stream at most `limit` body bytes.
    ///
    /// Unlike [`read_json_body`], a missing `Content-Type` is always a 415: an empty body is
    /// not a valid rows upload either, and the type is the clearer complaint.
    pub fn new(req: Request<B>, limit: usize) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        if !check_content_type(&parts.headers)? {
            return Err(missing_content_type());
        }
        check_declared_length(&parts.headers, body.size_hint().lower(), limit)?;
        Ok(JsonRowStream {
            idle: idle_of(&parts.extensions),
            body,
            buffer: BytesMut::new(),
            scanner: RowScanner::default(),
            limit,
            received: 0,
            rows: 0,
            body_done: false,
        })
    }

    /// How many rows have been handed out so far (the index of the next one).
    pub fn rows_read(&self) -> usize {
        self.rows
    }

    /// The next row's raw JSON bytes, `Ok(None)` after the whole body has been validated.
    pub async fn next_raw(&mut self) -> Result<Option<Bytes>, ApiError> {
        let Some(range) = self.next_range().await? else { return Ok(None) };
        self.consume(range.start);
        let row = self.buffer.split_to(range.len()).freeze();
        self.scanner.shift(range.len());
        self.rows += 1;
        Ok(Some(row))
    }

    /// The next row deserialized as `T`; errors name the row (`rows[3].age: invalid type ...`).
    pub async fn next_row<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ApiError> {
        let Some(range) = self.next_range().await? else { return Ok(None) };
        let parsed = parse_row(&self.buffer[range.clone()], self.rows);
        self.consume(range.end);
        self.rows += 1;
        parsed.map(Some)
    }

    /// Scans until a row is complete, reading more body as needed.
    async fn next_range(&mut self) -> Result<Option<Range<usize>>, ApiError> {
        loop {
            if let Some(range) = self.scanner.step(&self.buffer).map_err(ScanError::into_api_error)? {
                return Ok(Some(range));
            }
            if self.body_done {
                return Ok(None);
            }
            self.consume(self.scanner.keep_from());
            if !self.read_chunk().await? {
                self.body_done = true;
                self.scanner.finish().map_err(ScanError::into_api_error)?;
                return Ok(None);
            }
        }
    }

    /// Drops the first `n` buffered bytes, which the scanner no longer needs.
    fn consume(&mut self, n: usize) {
        self.buffer.advance(n);
        self.scanner.shift(n);
    }

    /// Appends the next data frame; `false` at the end of the body.
    async fn read_chunk(&mut self) -> Result<bool, ApiError> {
        while let Some(frame) = next_frame(Pin::new(&mut self.body), self.idle).await? {
            let Ok(chunk) = frame.map_err(read_error)?.into_data() else { continue };
            self.received = self.received.saturating_add(chunk.len());
            if self.received > self.limit {
                return Err(too_large(self.limit));
            }
            self.buffer.extend_from_slice(&chunk);
            return Ok(true);
        }
        Ok(false)
    }
}

fn parse_row<T: DeserializeOwned>(bytes: &[u8], index: usize) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let location = match path.as_str() {
            "." => format!("rows[{index}]"),
            p if p.starts_with('[') => format!("rows[{index}]{p}"),
            p => format!("rows[{index}].{p}"),
        };
        ApiError::BadRequest(format!("{location}: {}", e.into_inner()))
    })
}

/// Where the scanner is in `{"rows": [ ... ]}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Before the opening `{`.
    #[default]
    Start,
    /// After `{` or `,`: a member name (or `}` right after `{`).
    MemberStart { first: bool },
    /// Inside a member name; `mark` is its opening quote.
    Key,
    /// After the member name `"rows"` (any other name is refused as an unknown field).
    Colon,
    /// After `"rows":`, expecting `[`.
    RowsOpen,
    /// After a member's value: `,` or `}`.
    MemberEnd,
    /// After `[` or `,` in the rows array: a row (or `]` right after `[`).
    RowStart { first: bool },
    /// Inside a row; `mark` is its first byte.
    Row,
    /// After a row: `,` or `]`.
    RowEnd,
    /// After the closing `}`: only whitespace may follow.
    Done,
}

/// An incremental scanner that finds the byte range of each row in a growing buffer.
///
/// It does not parse JSON — serde does that per row — it only tracks strings, escapes and
/// bracket depth, so each input byte is looked at once however the body is chunked. Positions
/// are indices into the caller's buffer; [`RowScanner::shift`] rebases them when the caller
/// drops a prefix.
#[derive(Debug, Default)]
struct RowScanner {
    state: State,
    /// The next byte to examine.
    pos: usize,
    /// Start of the member name or row being scanned.
    mark: usize,
    value: ValueScan,
    seen_rows: bool,
    /// Bytes dropped before the buffer's start, so errors can give absolute offsets.
    dropped: u64,
}

/// A malformed body, at an absolute byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScanError {
    offset: u64,
    expected: &'static str,
    /// A top-level member other than `rows`.
    unknown: Option<String>,
}

impl ScanError {
    fn into_api_error(self) -> ApiError {
        match self.unknown {
            Some(name) => crate::model::unknown_field_error(name.clone(), &name, &["rows"]).into(),
            None => {
                ApiError::BadRequest(format!("malformed rows body at byte {}: expected {}", self.offset, self.expected))
            }
        }
    }
}

impl RowScanner {
    /// Advances over `buffer[pos..]`; `Some(range)` when a row is complete, `None` when every
    /// available byte has been examined.
    fn step(&mut self, buffer: &[u8]) -> Result<Option<Range<usize>>, ScanError> {
        while let Some(&byte) = buffer.get(self.pos) {
            if let Some(row) = self.advance(byte, buffer)? {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    /// Handles one byte: moves `pos` on (or leaves it for the next state to re-read).
    fn advance(&mut self, byte: u8, buffer: &[u8]) -> Result<Option<Range<usize>>, ScanError> {
        let structural = !matches!(self.state, State::Key | State::Row);
        if structural && is_whitespace(byte) {
            self.pos += 1;
            return Ok(None);
        }
        match self.state {
            State::Start => {
                self.expect(byte == b'{', State::MemberStart { first: true }, "`{` opening a JSON object")?
            }
            State::MemberStart { first } => self.member_start(byte, first)?,
            State::Key => self.key(byte, buffer)?,
            State::Colon => self.colon(byte)?,
            State::RowsOpen => {
                self.expect(byte == b'[', State::RowStart { first: true }, "`[`: `rows` must be an array")?
            }
            State::MemberEnd => self.member_end(byte)?,
            State::RowStart { first } => self.row_start(byte, first)?,
            State::Row => return self.row(byte),
            State::RowEnd => self.row_end(byte)?,
            State::Done => return Err(self.error("nothing after the closing `}`")),
        }
        Ok(None)
    }

    fn expect(&mut self, ok: bool, next: State, expected: &'static str) -> Result<(), ScanError> {
        if !ok {
            return Err(self.error(expected));
        }
        self.pos += 1;
        self.state = next;
        Ok(())
    }

    fn member_start(&mut self, byte: u8, first: bool) -> Result<(), ScanError> {
        match byte {
            b'}' if first => self.close_object(),
            b'"' => {
                self.begin_value(State::Key);
                Ok(())
            }
            _ => Err(self.error("a member name in double quotes")),
        }
    }

    fn key(&mut self, byte: u8, buffer: &[u8]) -> Result<(), ScanError> {
        if self.feed(byte)? == Feed::More {
            return Ok(());
        }
        let name = &buffer[self.mark + 1..self.pos - 1];
        if name != b"rows" {
            let unknown = Some(String::from_utf8_lossy(name).into_owned());
            return Err(ScanError { unknown, ..self.error("the member `rows`") });
        }
        self.state = State::Colon;
        Ok(())
    }

    fn colon(&mut self, byte: u8) -> Result<(), ScanError> {
        if self.seen_rows {
            return Err(self.error("only one `rows` member"));
        }
        self.seen_rows = true;
        self.expect(byte == b':', State::RowsOpen, "`:` after a member name")?;
        self.value = ValueScan::default();
        Ok(())
    }

    fn member_end(&mut self, byte: u8) -> Result<(), ScanError> {
        match byte {
            b',' => self.expect(true, State::MemberStart { first: false }, ""),
            b'}' => self.close_object(),
            _ => Err(self.error("`,` or `}` after a member")),
        }
    }

    fn close_object(&mut self) -> Result<(), ScanError> {
        if !self.seen_rows {
            return Err(self.error("a `rows` array in the body object"));
        }
        self.expect(true, State::Done, "")
    }

    fn row_start(&mut self, byte: u8, first: bool) -> Result<(), ScanError> {
        match byte {
            b']' if first => self.expect(true, State::MemberEnd, ""),
            b']' => Err(self.error("a row after `,` (no trailing commas)")),
            _ => {
                self.begin_value(State::Row);
                Ok(())
            }
        }
    }

    fn row(&mut self, byte: u8) -> Result<Option<Range<usize>>, ScanError> {
        match self.feed(byte)? {
            Feed::More => Ok(None),
            Feed::Ended => {
                self.state = State::RowEnd;
                Ok(Some(self.mark..self.pos))
            }
        }
    }

    fn row_end(&mut self, byte: u8) -> Result<(), ScanError> {
        match byte {
            b',' => self.expect(true, State::RowStart { first: false }, ""),
            b']' => self.expect(true, State::MemberEnd, ""),
            _ => Err(self.error("`,` or `]` after a row")),
        }
    }

    /// Starts capturing a value (member name or row) at the current byte, which `state`
    /// re-reads.
    fn begin_value(&mut self, state: State) {
        self.mark = self.pos;
        self.value = ValueScan::default();
        self.state = state;
    }

    /// Feeds the current byte to the value scanner; on `Ended`, `pos` is just past the value.
    fn feed(&mut self, byte: u8) -> Result<Feed, ScanError> {
        match self.value.feed(byte) {
            Err(expected) => Err(self.error(expected)),
            Ok(ValueStep::More) => {
                self.pos += 1;
                Ok(Feed::More)
            }
            Ok(ValueStep::EndsAfter) => {
                self.pos += 1;
                Ok(Feed::Ended)
            }
            Ok(ValueStep::EndedBefore) => Ok(Feed::Ended),
        }
    }

    /// At the end of the body: only a completed object is acceptable.
    fn finish(&self) -> Result<(), ScanError> {
        if self.state == State::Done {
            Ok(())
        } else {
            Err(self.error("more JSON: the body ended before the object was complete"))
        }
    }

    /// The first buffered byte still needed: the start of a partly scanned name or row.
    fn keep_from(&self) -> usize {
        match self.state {
            State::Key | State::Row => self.mark,
            _ => self.pos,
        }
    }

    /// The caller dropped the first `n` buffered bytes.
    fn shift(&mut self, n: usize) {
        self.pos -= n;
        self.mark = self.mark.saturating_sub(n);
        self.dropped += n as u64;
    }

    fn error(&self, expected: &'static str) -> ScanError {
        ScanError { offset: self.dropped + self.pos as u64, expected, unknown: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    More,
    Ended,
}

/// What one byte did to a value being scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueStep {
    More,
    /// This byte (a closing quote or bracket) is the value's last.
    EndsAfter,
    /// A scalar ended just before this byte (a delimiter).
    EndedBefore,
}

/// Tracks one JSON value's extent: strings and escapes, bracket depth, or a bare scalar.
#[derive(Debug, Clone, Copy, Default)]
struct ValueScan {
    started: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
    scalar: bool,
}

impl ValueScan {
    fn feed(&mut self, byte: u8) -> Result<ValueStep, &'static str> {
        if self.in_string {
            return Ok(self.string_byte(byte));
        }
        if self.scalar {
            let delimiter = is_whitespace(byte) || matches!(byte, b',' | b']' | b'}');
            return Ok(if delimiter { ValueStep::EndedBefore } else { ValueStep::More });
        }
        if !self.started {
            return self.first_byte(byte);
        }
        Ok(self.container_byte(byte))
    }

    fn string_byte(&mut self, byte: u8) -> ValueStep {
        if self.escaped {
            self.escaped = false;
        } else if byte == b'\\' {
            self.escaped = true;
        } else if byte == b'"' {
            self.in_string = false;
            if self.depth == 0 {
                return ValueStep::EndsAfter;
            }
        }
        ValueStep::More
    }

    fn first_byte(&mut self, byte: u8) -> Result<ValueStep, &'static str> {
        if is_whitespace(byte) {
            return Ok(ValueStep::More);
        }
        self.started = true;
        match byte {
            b'{' | b'[' => self.depth = 1,
            b'"' => self.in_string = true,
            b'}' | b']' | b',' | b':' => return Err("a JSON value"),
            _ => self.scalar = true,
        }
        Ok(ValueStep::More)
    }

    fn container_byte(&mut self, byte: u8) -> ValueStep {
        match byte {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    return ValueStep::EndsAfter;
                }
            }
            _ => {}
        }
        ValueStep::More
    }
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body_util::Full;
    use hyper::body::Frame;
    use serde::Deserialize;

    /// A body delivered in the given chunks, one frame each.
    struct Chunks(VecDeque<Bytes>);

    impl Chunks {
        /// `data` cut into pieces whose sizes cycle through `sizes`.
        fn split(data: &[u8], sizes: &[usize]) -> Chunks {
            let mut chunks = VecDeque::new();
            let mut at = 0;
            for size in sizes.iter().cycle() {
                if at >= data.len() {
                    break;
                }
                let end = (at + size).min(data.len());
                chunks.push_back(Bytes::copy_from_slice(&data[at..end]));
                at = end;
            }
            Chunks(chunks)
        }
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
        }
    }

    fn request<B>(content_type: Option<&str>, body: B) -> Request<B> {
        let mut builder = Request::builder().method("POST").uri("/x");
        if let Some(value) = content_type {
            builder = builder.header(CONTENT_TYPE, value);
        }
        builder.body(body).unwrap()
    }

    fn full(content_type: Option<&str>, body: &'static str) -> Request<Full<Bytes>> {
        request(content_type, Full::new(Bytes::from_static(body.as_bytes())))
    }

    #[tokio::test]
    async fn reads_json_with_or_without_parameters() {
        for content_type in
            ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"]
        {
            let body = read_json_body(full(Some(content_type), r#"{"a":1}"#), 100).await.unwrap();
            assert_eq!(&body[..], br#"{"a":1}"#, "{content_type}");
        }
    }

    #[tokio::test]
    async fn content_type_rules() {
        let wrong = read_json_body(full(Some("text/plain"), "{}"), 100).await.unwrap_err();
        assert_eq!(wrong.code(), "UNSUPPORTED_MEDIA_TYPE");
        assert!(wrong.message().contains("Content-Type: application/json"), "{}", wrong.message());
        let missing = read_json_body(full(None, "{}"), 100).await.unwrap_err();
        assert_eq!(missing.code(), "UNSUPPORTED_MEDIA_TYPE");
        assert!(missing.message().contains("Content-Type: application/json"), "{}", missing.message());
        let chunked_missing = read_json_body(request(None, Chunks::split(b"{}", &[1])), 100).await.unwrap_err();
        assert_eq!(chunked_missing.code(), "UNSUPPORTED_MEDIA_TYPE");
        assert!(read_json_body(full(None, ""), 100).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn limit_is_enforced_early_and_while_streaming() {
        let declared = Request::builder()
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, "1000")
            .body(Chunks(VecDeque::new()))
            .unwrap();
        let early = read_json_body(declared, 100).await.unwrap_err();
        assert_eq!(early.code(), "PAYLOAD_TOO_LARGE");
        assert!(early.message().contains("100 bytes"), "{}", early.message());

        let data = vec![b' '; 101];
        let streamed = read_json_body(request(Some("application/json"), Chunks::split(&data, &[7])), 100).await;
        assert_eq!(streamed.unwrap_err().code(), "PAYLOAD_TOO_LARGE");
        let exact = read_json_body(request(Some("application/json"), Chunks::split(&data[..100], &[7])), 100).await;
        assert_eq!(exact.unwrap().len(), 100);
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Row {
        id: u64,
        name: String,
        tags: Vec<u32>,
    }

    fn big_body(rows: usize) -> Vec<u8> {
        let mut body = String::from("{\n \"rows\" : [\n");
        for i in 0..rows {
            if i > 0 {
                body.push_str(",\n");
            }
            // Names contain every character the scanner must not mistake for structure.
            body.push_str(&format!(r#"{{"id":{i},"name":"n\"{i},]}}[\\","tags":[{i},7]}}"#));
        }
        body.push_str("\n]}\n");
        body.into_bytes()
    }

    #[tokio::test]
    async fn streams_100k_rows_from_odd_chunks() {
        let rows = 100_000;
        let data = big_body(rows);
        let body = Chunks::split(&data, &[1, 7, 13, 4093, 3, 65_537]);
        let mut stream = JsonRowStream::new(request(Some("application/json"), body), data.len()).unwrap();
        let mut count = 0u64;
        while let Some(row) = stream.next_row::<Row>().await.unwrap() {
            assert_eq!(row, Row { id: count, name: format!("n\"{count},]}}[\\"), tags: vec![count as u32, 7] });
            count += 1;
        }
        assert_eq!(count, rows as u64);
        assert_eq!(stream.rows_read(), rows);
        assert!(stream.next_row::<Row>().await.unwrap().is_none());
        assert!(stream.buffer.capacity() < 200_000, "buffer grew to {}", stream.buffer.capacity());
    }

    async fn raw_rows(body: &str, chunk: usize) -> Result<Vec<String>, ApiError> {
        let chunks = Chunks::split(body.as_bytes(), &[chunk]);
        let mut stream = JsonRowStream::new(request(Some("application/json"), chunks), 1 << 20)?;
        let mut rows = Vec::new();
        while let Some(row) = stream.next_raw().await? {
            rows.push(String::from_utf8(row.to_vec()).unwrap());
        }
        Ok(rows)
    }

    #[tokio::test]
    async fn scalar_nested_and_empty_rows() {
        for chunk in [1, 2, 5, 1000] {
            let rows =
                raw_rows(r#" { "rows" : [ 1 , -2.5e3,"s\\\"", [[]] , {"a":{"b":[]}}, true,null ] } "#, chunk).await;
            let expected = ["1", "-2.5e3", r#""s\\\"""#, "[[]]", r#"{"a":{"b":[]}}"#, "true", "null"];
            assert_eq!(rows.unwrap(), expected, "chunk {chunk}");
            assert_eq!(raw_rows(r#"{"rows":[]}"#, chunk).await.unwrap(), Vec::<String>::new());
        }
    }

    #[tokio::test]
    async fn malformed_bodies_are_400_with_offsets() {
        let cases = [
            ("[]", "byte 0: expected `{`"),
            (r#"{"rows": {}}"#, "`rows` must be an array"),
            (r#"{"other": 1}"#, "other: unknown field; expected one of `rows`"),
            (r#"{"rows": [], "row": 1}"#, "row: unknown field (did you mean `rows`?)"),
            (r#"{"rows": [1,]}"#, "no trailing commas"),
            (r#"{"rows": [1 2]}"#, "`,` or `]`"),
            (r#"{"rows": [1], "rows": [2]}"#, "only one `rows`"),
            (r#"{"rows": [1]"#, "body ended"),
            (r#"{"rows": [1]} x"#, "nothing after"),
            (r#"{"rows": [,]}"#, "a JSON value"),
            (r#"{rows: []}"#, "member name"),
        ];
        for (body, expected) in cases {
            let error = raw_rows(body, 3).await.unwrap_err();
            assert_eq!(error.code(), "BAD_REQUEST", "{body}");
            assert!(error.message().contains(expected), "{body}: {}", error.message());
        }
    }

    #[tokio::test]
    async fn row_errors_name_the_row_and_field() {
        let body = r#"{"rows": [{"id": 1, "name": "a", "tags": []}, {"id": "x", "name": "b", "tags": []}]}"#;
        let mut stream = JsonRowStream::new(full(Some("application/json"), body), 1000).unwrap();
        assert!(stream.next_row::<Row>().await.unwrap().is_some());
        let error = stream.next_row::<Row>().await.unwrap_err();
        assert!(error.message().starts_with("rows[1].id: invalid type"), "{}", error.message());
    }

    #[tokio::test]
    async fn stream_enforces_limits_and_content_type() {
        let data = big_body(1000);
        let mut stream =
            JsonRowStream::new(request(Some("application/json"), Chunks::split(&data, &[999])), 10_000).unwrap();
        let error = loop {
            match stream.next_raw().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("limit not enforced"),
                Err(e) => break e,
            }
        };
        assert_eq!(error.code(), "PAYLOAD_TOO_LARGE");
        let wrong = JsonRowStream::new(full(Some("text/csv"), "a,b"), 10).unwrap_err();
        assert_eq!(wrong.code(), "UNSUPPORTED_MEDIA_TYPE");
        let declared = JsonRowStream::new(full(Some("application/json"), "{\"rows\":[1,2,3]}"), 5).unwrap_err();
        assert_eq!(declared.code(), "PAYLOAD_TOO_LARGE");
    }
}
