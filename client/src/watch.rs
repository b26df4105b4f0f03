//! Watch streams: the apiserver's newline-delimited JSON events (`{"type":"ADDED","object":{…}}`)
//! turned into a `Stream` of typed `WatchEvent`s.
//!
//! The framing is independent of HTTP: `LineDecoder` cuts any sequence of byte chunks into lines
//! (a line may span chunks, a chunk may hold many lines), and `decode_stream` turns a byte stream
//! into events. A stream ends when the server closes it; a watcher resumes from the last
//! `resourceVersion` it saw (`WatchEvent::resource_version`) and re-lists when told the version
//! is gone (`ERROR` with code 410, or `ClientError::is_gone` on the request itself).

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use swarm_api::{Kind, Resource, Status, StatusReason};

use crate::ClientError;

/// The longest watch line accepted (an object may be at most ~1.5 MiB in the store).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<O> {
    Added(O),
    Modified(O),
    /// The object's last state before it went.
    Deleted(O),
    /// Nothing changed, but the stream has seen everything up to this version.
    Bookmark(Bookmark),
    /// The server ended the watch with an error (410 `Expired`: re-list).
    Error(Box<Status>),
}

/// The version a `BOOKMARK` event carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bookmark {
    pub resource_version: String,
}

/// The `type` of an event, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
            EventType::Error => "ERROR",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<O> WatchEvent<O> {
    pub fn event_type(&self) -> EventType {
        match self {
            WatchEvent::Added(_) => EventType::Added,
            WatchEvent::Modified(_) => EventType::Modified,
            WatchEvent::Deleted(_) => EventType::Deleted,
            WatchEvent::Bookmark(_) => EventType::Bookmark,
            WatchEvent::Error(_) => EventType::Error,
        }
    }

    /// The object of an `ADDED`, `MODIFIED` or `DELETED` event.
    pub fn object(&self) -> Option<&O> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => Some(o),
            WatchEvent::Bookmark(_) | WatchEvent::Error(_) => None,
        }
    }

    pub fn into_object(self) -> Option<O> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => Some(o),
            WatchEvent::Bookmark(_) | WatchEvent::Error(_) => None,
        }
    }

    /// Converts the object of the event, keeping its type.
    pub fn map<P>(self, f: impl FnOnce(O) -> P) -> WatchEvent<P> {
        match self {
            WatchEvent::Added(o) => WatchEvent::Added(f(o)),
            WatchEvent::Modified(o) => WatchEvent::Modified(f(o)),
            WatchEvent::Deleted(o) => WatchEvent::Deleted(f(o)),
            WatchEvent::Bookmark(b) => WatchEvent::Bookmark(b),
            WatchEvent::Error(s) => WatchEvent::Error(s),
        }
    }
}

impl<T: Resource> WatchEvent<T> {
    /// The version to resume a watch from after this event (`None` for errors).
    pub fn resource_version(&self) -> Option<&str> {
        match self {
            WatchEvent::Bookmark(b) => Some(&b.resource_version),
            WatchEvent::Error(_) => None,
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                Some(&o.meta().resource_version)
            }
        }
    }
}

impl<O: Serialize> WatchEvent<O> {
    /// The event in its wire form, `{"type":…,"object":…}` (in that order); `kind` names the
    /// bookmark's object.
    pub fn to_wire(&self, kind: Kind) -> serde_json::Value {
        let object = match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                serde_json::to_value(o).unwrap_or(serde_json::Value::Null)
            }
            WatchEvent::Bookmark(b) => serde_json::json!({
                "apiVersion": swarm_api::API_VERSION,
                "kind": kind.name(),
                "metadata": {"resourceVersion": b.resource_version},
            }),
            WatchEvent::Error(s) => serde_json::to_value(s).unwrap_or(serde_json::Value::Null),
        };
        serde_json::json!({"type": self.event_type().as_str(), "object": object})
    }

    /// The wire form as one line of compact JSON (no newline), `type` first, as the
    /// apiserver sends it.
    pub fn to_line(&self, kind: Kind) -> String {
        let wire = self.to_wire(kind);
        format!(
            "{{\"type\":\"{}\",\"object\":{}}}",
            self.event_type().as_str(),
            wire["object"]
        )
    }
}

/// A stream of watch events; ends when the server closes the connection.
pub type WatchStream<O> = Pin<Box<dyn Stream<Item = Result<WatchEvent<O>, ClientError>> + Send>>;

/// Cuts a byte stream into lines, however it is chunked.
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    max: usize,
}

impl Default for LineDecoder {
    fn default() -> Self {
        LineDecoder::new(MAX_LINE)
    }
}

impl LineDecoder {
    /// A decoder that refuses lines longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        LineDecoder {
            buf: Vec::new(),
            max,
        }
    }

    /// Adds a chunk and returns the lines it completes (without `\n` or `\r\n`; blank lines
    /// are skipped). What follows the last newline is kept for the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.buf.extend_from_slice(&rest[..i]);
            rest = &rest[i + 1..];
            let line = std::mem::take(&mut self.buf);
            if let Some(line) = non_blank(line) {
                lines.push(line);
            }
        }
        self.buf.extend_from_slice(rest);
        if self.buf.len() > self.max {
            self.buf.clear();
            return Err(ClientError::LineTooLong { limit: self.max });
        }
        Ok(lines)
    }

    /// At the end of the stream: the last line, if it had no newline.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        non_blank(std::mem::take(&mut self.buf))
    }
}

fn non_blank(mut line: Vec<u8>) -> Option<Vec<u8>> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(line)
    }
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    object: serde_json::Value,
}

/// Parses one NDJSON line into an event.
pub fn parse_event<O: DeserializeOwned>(line: &[u8]) -> Result<WatchEvent<O>, ClientError> {
    let decode = |message: String| ClientError::Decode {
        what: "a watch event".to_string(),
        message,
    };
    let raw: RawEvent = serde_json::from_slice(line).map_err(|e| {
        let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        decode(format!("{e} in line {shown:?}"))
    })?;
    let object =
        |v: serde_json::Value| serde_json::from_value::<O>(v).map_err(|e| decode(e.to_string()));
    Ok(match raw.type_.as_str() {
        "ADDED" => WatchEvent::Added(object(raw.object)?),
        "MODIFIED" => WatchEvent::Modified(object(raw.object)?),
        "DELETED" => WatchEvent::Deleted(object(raw.object)?),
        "BOOKMARK" => WatchEvent::Bookmark(Bookmark {
            resource_version: raw
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(|v| v.as_str())
                .ok_or_else(|| decode("BOOKMARK without metadata.resourceVersion".into()))?
                .to_string(),
        }),
        "ERROR" => WatchEvent::Error(Box::new(error_status(raw.object))),
        other => return Err(decode(format!("unknown event type {other:?}"))),
    })
}

/// The `Status` of an `ERROR` event; a body that is not one still yields a readable status.
fn error_status(v: serde_json::Value) -> Status {
    if let Ok(s) = serde_json::from_value::<Status>(v.clone()) {
        return s;
    }
    let message = v
        .get("message")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string());
    let mut s = Status::new(StatusReason::InternalError, message);
    if let Some(code) = v
        .get("code")
        .and_then(|c| c.as_u64())
        .and_then(|c| u16::try_from(c).ok())
    {
        s.code = code;
        if code == 410 {
            s.reason = StatusReason::Expired;
        }
    }
    s
}

struct DecodeState<S> {
    bytes: Pin<Box<S>>,
    lines: LineDecoder,
    pending: VecDeque<Vec<u8>>,
    done: bool,
}

/// Turns a stream of byte chunks into a stream of events. A transport error ends the stream
/// after being yielded; a malformed line is yielded as an error and the stream goes on.
pub fn decode_stream<S, B, E, O>(
    bytes: S,
    on_error: impl Fn(E) -> ClientError + Send + 'static,
) -> WatchStream<O>
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]>,
    O: DeserializeOwned + Send + 'static,
{
    let state = DecodeState {
        bytes: Box::pin(bytes),
        lines: LineDecoder::default(),
        pending: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold((state, on_error), |(mut st, on_error)| async move {
        loop {
            if let Some(line) = st.pending.pop_front() {
                return Some((parse_event(&line), (st, on_error)));
            }
            if st.done {
                return None;
            }
            match st.bytes.next().await {
                Some(Ok(chunk)) => match st.lines.push(chunk.as_ref()) {
                    Ok(lines) => st.pending.extend(lines),
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), (st, on_error)));
                    }
                },
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(on_error(e)), (st, on_error)));
                }
                None => {
                    st.done = true;
                    st.pending.extend(st.lines.finish());
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use serde_json::{Value, json};
    use swarm_api::Service;

    fn chunks(parts: &[&str]) -> impl Stream<Item = Result<Vec<u8>, String>> + Send + 'static {
        let owned: Vec<Result<Vec<u8>, String>> =
            parts.iter().map(|p| Ok(p.as_bytes().to_vec())).collect();
        futures::stream::iter(owned)
    }

    fn collect<O: DeserializeOwned + Send + 'static>(
        s: impl Stream<Item = Result<Vec<u8>, String>> + Send + 'static,
    ) -> Vec<Result<WatchEvent<O>, ClientError>> {
        let stream = decode_stream(s, |e: String| ClientError::Transport {
            url: "test".into(),
            message: e,
        });
        block_on(stream.collect())
    }

    const SVC: &str = r#"{"type":"ADDED","object":{"apiVersion":"swarm/v1","kind":"Service","metadata":{"name":"web","resourceVersion":"5"},"spec":{}}}"#;

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut d = LineDecoder::default();
        assert!(d.push(b"{\"a\":").unwrap().is_empty());
        assert!(d.push(b"1").unwrap().is_empty());
        let lines = d.push(b"}\n{\"b\":2}\n{\"c\"").unwrap();
        assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        assert_eq!(
            d.push(b":3}\r\n\n  \n").unwrap(),
            vec![b"{\"c\":3}".to_vec()]
        );
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn last_line_without_newline_is_kept() {
        let mut d = LineDecoder::default();
        assert!(d.push(b"{\"x\":1}").unwrap().is_empty());
        assert_eq!(d.finish(), Some(b"{\"x\":1}".to_vec()));
    }

    #[test]
    fn overlong_lines_are_refused() {
        let mut d = LineDecoder::new(8);
        assert!(d.push(b"12345").unwrap().is_empty());
        assert!(matches!(
            d.push(b"67890"),
            Err(ClientError::LineTooLong { limit: 8 })
        ));
        // A long line followed by its newline within one chunk is refused as well.
        let mut d = LineDecoder::new(8);
        let lines = d.push(b"short\n").unwrap();
        assert_eq!(lines.len(), 1);
    }

    #[test]
    fn typed_events_from_one_byte_chunks() {
        let text = format!(
            "{SVC}\n{}\n{}\n",
            SVC.replace("ADDED", "MODIFIED").replace("\"5\"", "\"6\""),
            r#"{"type":"BOOKMARK","object":{"kind":"Service","apiVersion":"swarm/v1","metadata":{"resourceVersion":"9"}}}"#
        );
        let bytes: Vec<Result<Vec<u8>, String>> = text.bytes().map(|b| Ok(vec![b])).collect();
        let events = collect::<Service>(futures::stream::iter(bytes));
        let events: Vec<WatchEvent<Service>> = events.into_iter().map(Result::unwrap).collect();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event_type(), EventType::Added);
        assert_eq!(events[0].object().unwrap().metadata.name, "web");
        assert_eq!(events[1].resource_version(), Some("6"));
        assert_eq!(
            events[2],
            WatchEvent::Bookmark(Bookmark {
                resource_version: "9".into()
            })
        );
        assert_eq!(events[2].resource_version(), Some("9"));
    }

    #[test]
    fn error_events_carry_the_status() {
        let line = r#"{"type":"ERROR","object":{"apiVersion":"swarm/v1","kind":"Status","status":"Failure","message":"too old resource version: 1 (8)","reason":"Expired","code":410}}"#;
        let events = collect::<Value>(chunks(&[line, "\n"]));
        match &events[0] {
            Ok(WatchEvent::Error(s)) => {
                assert_eq!(s.code, 410);
                assert_eq!(s.reason, StatusReason::Expired);
                assert!(s.message.contains("too old"));
            }
            other => panic!("expected an ERROR event, got {other:?}"),
        }
    }

    #[test]
    fn error_events_that_are_not_a_status_stay_readable() {
        let events = collect::<Value>(chunks(&[
            r#"{"type":"ERROR","object":{"message":"gone","code":410}}"#,
        ]));
        match &events[0] {
            Ok(WatchEvent::Error(s)) => {
                assert_eq!(
                    (s.code, s.reason, s.message.as_str()),
                    (410, StatusReason::Expired, "gone")
                );
            }
            other => panic!("expected an ERROR event, got {other:?}"),
        }
    }

    #[test]
    fn malformed_lines_are_errors_and_the_stream_goes_on() {
        let events = collect::<Value>(chunks(&[
            "not json\n{\"type\":\"WHAT\",\"object\":{}}\n",
            SVC,
            "\n",
        ]));
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[0], Err(ClientError::Decode { .. })));
        assert!(events[1].as_ref().unwrap_err().to_string().contains("WHAT"));
        assert_eq!(events[2].as_ref().unwrap().event_type(), EventType::Added);
    }

    #[test]
    fn an_object_of_the_wrong_shape_is_a_decode_error() {
        let line = r#"{"type":"ADDED","object":{"metadata":{"name":"x"},"spec":{"bogus":1}}}"#;
        let events = collect::<Service>(chunks(&[line]));
        assert!(matches!(&events[0], Err(ClientError::Decode { .. })));
    }

    #[test]
    fn transport_errors_end_the_stream() {
        let parts: Vec<Result<Vec<u8>, String>> = vec![
            Ok(format!("{SVC}\n{{\"type\":").into_bytes()),
            Err("connection reset".into()),
            Ok(b"never read\n".to_vec()),
        ];
        let events = collect::<Value>(futures::stream::iter(parts));
        assert_eq!(events.len(), 2);
        assert!(events[0].is_ok());
        assert!(events[1].as_ref().unwrap_err().is_transport());
    }

    #[test]
    fn wire_form_round_trips() {
        let ev: WatchEvent<Value> = parse_event(SVC.as_bytes()).unwrap();
        let wire = ev.to_wire(Kind::Service);
        assert_eq!(wire, serde_json::from_str::<Value>(SVC).unwrap());
        let line = ev.to_line(Kind::Service);
        assert!(line.starts_with(r#"{"type":"ADDED","object":{"#), "{line}");
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), wire);
        let bm: WatchEvent<Value> = WatchEvent::Bookmark(Bookmark {
            resource_version: "3".into(),
        });
        assert_eq!(
            bm.to_wire(Kind::Task),
            json!({"type":"BOOKMARK","object":{"apiVersion":"swarm/v1","kind":"Task","metadata":{"resourceVersion":"3"}}})
        );
    }
}
