//! Container logs from Docker: `GET /containers/{id}/logs` with stdout, stderr and timestamps,
//! its frames cut into lines.
//!
//! Without a TTY, Docker sends one frame per log message, already demultiplexed by bollard
//! into stdout and stderr, each starting with its RFC 3339 timestamp and a space and ending
//! with a newline; a line longer than 16 KiB comes as several frames. With a TTY the frames are
//! whatever the daemon read; each is cut the same way, so a line split across two such frames
//! becomes two lines.

use bollard::container::LogOutput;
use bytes::Bytes;

use super::super::{LogEntry, LogSource};

/// Lines longer than this are split (Docker's own log message limit).
pub const MAX_LINE: usize = 16 * 1024;

/// `2026-01-01T00:00:00.123456789Z rest` → (nanoseconds, `rest`); no timestamp → (0, all).
fn split_timestamp(frame: &[u8]) -> (i64, &[u8]) {
    let Some(space) = frame.iter().take(40).position(|b| *b == b' ') else {
        return (0, frame);
    };
    let Ok(text) = std::str::from_utf8(&frame[..space]) else {
        return (0, frame);
    };
    match humantime::parse_rfc3339(text) {
        Ok(t) => {
            let nanos = t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
                .unwrap_or(0);
            (nanos, &frame[space + 1..])
        }
        Err(_) => (0, frame),
    }
}

/// The lines of one frame.
pub fn frame_lines(frame: LogOutput) -> Vec<LogEntry> {
    let (source, bytes): (LogSource, Bytes) = match frame {
        LogOutput::StdErr { message } => (LogSource::Stderr, message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            (LogSource::Stdout, message)
        }
        LogOutput::StdIn { .. } => return Vec::new(),
    };
    let (timestamp_nanos, rest) = split_timestamp(&bytes);
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    let mut out = Vec::new();
    for line in rest.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for piece in line.chunks(MAX_LINE) {
            out.push(LogEntry {
                source,
                timestamp_nanos,
                line: piece.to_vec(),
            });
        }
        if line.is_empty() {
            out.push(LogEntry {
                source,
                timestamp_nanos,
                line: Vec::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(entries: &[LogEntry]) -> Vec<(LogSource, i64, String)> {
        entries
            .iter()
            .map(|e| {
                (
                    e.source,
                    e.timestamp_nanos,
                    String::from_utf8_lossy(&e.line).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn frames_become_lines_with_their_timestamp_and_stream() {
        let f = LogOutput::StdOut {
            message: Bytes::from_static(b"2026-01-01T00:00:00.000000001Z GET / 200\n"),
        };
        assert_eq!(
            text(&frame_lines(f)),
            vec![(
                LogSource::Stdout,
                1_767_225_600_000_000_001,
                "GET / 200".into()
            )]
        );
        let f = LogOutput::StdErr {
            message: Bytes::from_static(b"no timestamp here\r\nsecond\n"),
        };
        assert_eq!(
            text(&frame_lines(f)),
            vec![
                (LogSource::Stderr, 0, "no timestamp here".into()),
                (LogSource::Stderr, 0, "second".into())
            ]
        );
        let f = LogOutput::StdOut {
            message: Bytes::from_static(b"2026-01-01T00:00:00Z \n"),
        };
        assert_eq!(
            text(&frame_lines(f)),
            vec![(LogSource::Stdout, 1_767_225_600_000_000_000, String::new())]
        );
    }

    #[test]
    fn long_lines_are_split() {
        let long = vec![b'x'; MAX_LINE + 10];
        let f = LogOutput::StdOut {
            message: Bytes::from(long),
        };
        let lines = frame_lines(f);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line.len(), MAX_LINE);
        assert_eq!(lines[1].line.len(), 10);
    }
}
