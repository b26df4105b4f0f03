//! `hello`: the demo web app of the examples. It answers every request with who served it
//! (hostname, task, version), so a `curl` through the routing mesh shows which task answered,
//! and logs one line per request on stdout (`swarm service logs` shows them; `/health` probes
//! are not logged).
//!
//! Configuration, all from the environment:
//! * `PORT` (default 8080): where to listen.
//! * `VERSION` (default baked in at build time from `HELLO_VERSION`, else `1`): reported in replies.
//! * `TASK_NAME`, `TASK_SLOT`, `NODE_NAME`: reported when set (the agent sets them).
//! * `FAIL_AT_START=CODE`: exit with CODE at once (an image that can never start).
//! * `FAIL_AFTER=SECONDS`: exit with code 3 after that long (a task that crashes later).
//! * `UNHEALTHY_AFTER=SECONDS`: `/health` answers 500 after that long.
//!
//! `hello probe [URL]` is a tiny HTTP client for the image's HEALTHCHECK (the image has no
//! shell and no curl): exit 0 if `URL` (default `http://127.0.0.1:$PORT/health`) answers 200.
//!
//! Only the standard library: the image is `FROM scratch` plus this one static binary.

use std::env;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().collect();
    if args.get(1).map(String::as_str) == Some("probe") {
        return probe(args.get(2).cloned());
    }
    if let Some(code) = env_u64("FAIL_AT_START") {
        eprintln!("hello: FAIL_AT_START={code}: exiting at start as asked");
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    serve()
}

fn env_u64(name: &str) -> Option<u64> {
    env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn port() -> u16 {
    env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080)
}

/// What this instance reports about itself.
struct Identity {
    hostname: String,
    task: String,
    slot: String,
    node: String,
    version: String,
}

impl Identity {
    fn from_env() -> Self {
        let hostname = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .or_else(|_| env::var("HOSTNAME"))
            .unwrap_or_else(|_| "unknown".to_string());
        let get = |k: &str| env::var(k).unwrap_or_default();
        let version = env::var("VERSION")
            .ok()
            .or_else(|| option_env!("HELLO_VERSION").map(str::to_string))
            .unwrap_or_else(|| "1".to_string());
        Identity {
            hostname,
            task: get("TASK_NAME"),
            slot: get("TASK_SLOT"),
            node: get("NODE_NAME"),
            version,
        }
    }

    fn json(&self, served: u64) -> String {
        format!(
            "{{\"hostname\":{},\"task\":{},\"slot\":{},\"node\":{},\"version\":{},\"served\":{served}}}\n",
            quote(&self.hostname),
            quote(&self.task),
            quote(&self.slot),
            quote(&self.node),
            quote(&self.version),
        )
    }
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn serve() -> ExitCode {
    let port = port();
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hello: cannot listen on port {port}: {e}");
            return ExitCode::from(2);
        }
    };
    let identity = Arc::new(Identity::from_env());
    let started = Instant::now();
    let served = Arc::new(AtomicU64::new(0));
    let unhealthy_after = env_u64("UNHEALTHY_AFTER").map(Duration::from_secs);
    if let Some(secs) = env_u64("FAIL_AFTER") {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            eprintln!("hello: FAIL_AFTER={secs}: exiting with code 3 as asked");
            std::process::exit(3);
        });
    }
    eprintln!(
        "hello: version {} listening on :{port} (host {})",
        identity.version, identity.hostname
    );
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let identity = Arc::clone(&identity);
        let served = Arc::clone(&served);
        std::thread::spawn(move || {
            let healthy = unhealthy_after.is_none_or(|after| started.elapsed() < after);
            if let Err(e) = handle(stream, &identity, &served, healthy) {
                eprintln!("hello: connection error: {e}");
            }
        });
    }
    ExitCode::SUCCESS
}

fn handle(
    stream: TcpStream,
    identity: &Identity,
    served: &AtomicU64,
    healthy: bool,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers; the app needs only the path.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or("GET");
    let path = words.next().unwrap_or("/");
    let (status, body) = match path {
        "/health" if healthy => ("200 OK", "ok\n".to_string()),
        "/health" => ("500 Internal Server Error", "unhealthy\n".to_string()),
        _ => {
            let n = served.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per request on stdout (health probes stay quiet), for `service logs`.
            let peer = stream
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| "-".into());
            println!(
                "hello: {method} {path} 200 from {peer} (request {n}, version {})",
                identity.version
            );
            ("200 OK", identity.json(n))
        }
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// `hello probe [URL]`: GET the URL, exit 0 on a 200 answer.
fn probe(url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{}/health", port()));
    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("hello probe: only http:// URLs are supported, got {url}");
        return ExitCode::from(2);
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let result = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect(hostport)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    })();
    match result {
        Ok(answer) if answer.starts_with("HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(answer) => {
            eprintln!(
                "hello probe: {url}: {}",
                answer.lines().next().unwrap_or("empty answer")
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("hello probe: {url}: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn identity_json_is_well_formed() {
        let id = Identity {
            hostname: "h".into(),
            task: "web.1.1".into(),
            slot: "1".into(),
            node: "n1".into(),
            version: "2".into(),
        };
        assert_eq!(
            id.json(7),
            "{\"hostname\":\"h\",\"task\":\"web.1.1\",\"slot\":\"1\",\"node\":\"n1\",\"version\":\"2\",\"served\":7}\n"
        );
    }
}
