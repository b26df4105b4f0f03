//! Container logs over REST (`GET /v1/services/{name}/logs`, `GET /v1/tasks/{name}/logs`):
//! the query options, and the NDJSON body decoded into `LogRecord`s.

use std::collections::VecDeque;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use swarm_api::logs::LogRecord;

use crate::ClientError;
use crate::watch::LineDecoder;

/// What to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open for new lines.
    pub follow: bool,
    /// The last N lines of each task; `None`: all.
    pub tail: Option<u64>,
    /// Records carry when each line was written.
    pub timestamps: bool,
}

impl LogOptions {
    /// The query string pairs.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if self.follow {
            q.push(("follow", "true".to_string()));
        }
        if let Some(n) = self.tail {
            q.push(("tail", n.to_string()));
        }
        if self.timestamps {
            q.push(("timestamps", "true".to_string()));
        }
        q
    }
}

/// Log records until the server ends the stream; a transport error ends it after being yielded.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<LogRecord, ClientError>> + Send>>;

fn parse(line: &[u8]) -> Result<LogRecord, ClientError> {
    serde_json::from_slice(line).map_err(|e| ClientError::Decode {
        what: "a log record".into(),
        message: e.to_string(),
    })
}

/// Turns a body of NDJSON records into a stream of records.
pub fn decode_records<S, B, E>(
    bytes: S,
    on_error: impl Fn(E) -> ClientError + Send + 'static,
) -> LogStream
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]>,
{
    let pending: VecDeque<Vec<u8>> = VecDeque::new();
    let state = (
        Box::pin(bytes),
        LineDecoder::default(),
        pending,
        false,
        on_error,
    );
    futures::stream::unfold(
        state,
        |(mut bytes, mut lines, mut pending, mut done, on_error)| async move {
            loop {
                if let Some(line) = pending.pop_front() {
                    let item = parse(&line);
                    return Some((item, (bytes, lines, pending, done, on_error)));
                }
                if done {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => match lines.push(chunk.as_ref()) {
                        Ok(ls) => pending.extend(ls),
                        Err(e) => {
                            done = true;
                            return Some((Err(e), (bytes, lines, pending, done, on_error)));
                        }
                    },
                    Some(Err(e)) => {
                        done = true;
                        return Some((Err(on_error(e)), (bytes, lines, pending, done, on_error)));
                    }
                    None => {
                        done = true;
                        pending.extend(lines.finish());
                    }
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_decoded_however_the_body_is_chunked() {
        let body = b"{\"task\":\"a\",\"line\":\"one\"}\n{\"task\":\"b\",\"li".to_vec();
        let rest = b"ne\":\"two\"}\n{\"node\":\"n\",\"error\":\"gone\"}".to_vec();
        let chunks = futures::stream::iter(vec![Ok::<_, std::convert::Infallible>(body), Ok(rest)]);
        let got: Vec<LogRecord> = decode_records(chunks, |e| match e {})
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(got.len(), 3);
        assert_eq!((got[1].task.as_str(), got[1].line.as_str()), ("b", "two"));
        assert!(got[2].is_error());
        let q = LogOptions {
            follow: true,
            tail: Some(0),
            timestamps: false,
        }
        .query();
        assert_eq!(
            q,
            vec![("follow", "true".to_string()), ("tail", "0".to_string())]
        );
    }
}
