//! `GET /metrics` over plain HTTP/1.1 on std threads: one accept thread,
//! one short-lived thread per connection (at most [`MAX_CONNECTIONS`] at
//! once; more are answered 503 and closed). Every response closes the
//! connection. A request must arrive whole within [`READ_TIMEOUT`] and
//! its head within [`MAX_HEAD_BYTES`]; anything else gets a 4xx and the
//! listener keeps serving. No input panics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const MAX_CONNECTIONS: usize = 16;
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running listener; dropping it stops accepting.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl MetricsServer {
    /// Serves [`crate::render`] on `listener`.
    pub fn start(listener: TcpListener) -> std::io::Result<MetricsServer> {
        Self::start_with(listener, crate::render)
    }

    /// Serves `render()` as the `/metrics` body (tests use their own).
    pub fn start_with(
        listener: TcpListener,
        render: fn() -> String,
    ) -> std::io::Result<MetricsServer> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || accept_loop(listener, thread_stop, render))?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, render: fn() -> String) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    let mut stream = stream;
                    let _ = respond(
                        &mut stream,
                        503,
                        "Service Unavailable",
                        "text/plain",
                        b"busy\n",
                        false,
                    );
                    continue;
                }
                let held = active.clone();
                let spawned = std::thread::Builder::new()
                    .name("metrics-conn".into())
                    .spawn(move || {
                        let mut stream = stream;
                        handle(&mut stream, render);
                        held.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    // The closure (and its decrement) never ran.
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// What a request head turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// `GET` or `HEAD` of a path (query string dropped).
    Request {
        head_only: bool,
        path: String,
    },
    BadRequest,
    MethodNotAllowed,
    VersionNotSupported,
}

/// Parses a complete request head (up to the blank line).
pub fn parse_head(head: &[u8]) -> Parsed {
    let Ok(text) = std::str::from_utf8(head) else {
        return Parsed::BadRequest;
    };
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::BadRequest;
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
        || target.bytes().any(|b| b.is_ascii_control())
    {
        return Parsed::BadRequest;
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => return Parsed::VersionNotSupported,
        _ => return Parsed::BadRequest,
    }
    for line in lines {
        if line.is_empty() {
            continue;
        }
        match line.split_once(':') {
            Some((name, _))
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':') => {}
            _ => return Parsed::BadRequest,
        }
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Parsed::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or_default().to_string();
    Parsed::Request { head_only, path }
}

enum Head {
    Complete(Vec<u8>),
    TooLarge,
    Incomplete,
}

/// Reads until the blank line that ends the head, the size limit, EOF or
/// the deadline (a request that dribbles in byte by byte still has
/// [`READ_TIMEOUT`] in all).
fn read_head(stream: &mut TcpStream) -> Head {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    // Bytes already searched for the blank line (less three, which may
    // start it).
    let mut scanned = 0;
    loop {
        if let Some(end) = head[scanned..].windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(scanned + end);
            return Head::Complete(head);
        }
        scanned = head.len().saturating_sub(3);
        if head.len() > MAX_HEAD_BYTES {
            return Head::TooLarge;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Head::Incomplete;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Head::Incomplete,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
}

fn handle(stream: &mut TcpStream, render: fn() -> String) {
    let head = match read_head(stream) {
        Head::Complete(head) => head,
        Head::TooLarge => {
            let _ = respond(
                stream,
                431,
                "Request Header Fields Too Large",
                "text/plain",
                b"request head too large\n",
                false,
            );
            return;
        }
        Head::Incomplete => {
            let _ = respond(
                stream,
                408,
                "Request Timeout",
                "text/plain",
                b"incomplete request\n",
                false,
            );
            return;
        }
    };
    let _ = match parse_head(&head) {
        Parsed::Request { head_only, path } if path == "/metrics" => {
            let body = render();
            respond(
                stream,
                200,
                "OK",
                crate::CONTENT_TYPE,
                body.as_bytes(),
                head_only,
            )
        }
        Parsed::Request { head_only, .. } => respond(
            stream,
            404,
            "Not Found",
            "text/plain",
            b"not found: try /metrics\n",
            head_only,
        ),
        Parsed::MethodNotAllowed => respond(
            stream,
            405,
            "Method Not Allowed",
            "text/plain",
            b"only GET and HEAD\n",
            false,
        ),
        Parsed::VersionNotSupported => respond(
            stream,
            505,
            "HTTP Version Not Supported",
            "text/plain",
            b"HTTP/1.1 only\n",
            false,
        ),
        Parsed::BadRequest => respond(
            stream,
            400,
            "Bad Request",
            "text/plain",
            b"bad request\n",
            false,
        ),
    };
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    let mut bytes = response.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    stream.write_all(&bytes)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let the client read the response before the socket closes (a close
    // with unread input would reset the connection).
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 512];
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_or_are_refused() {
        let ok = |head: &str, path: &str, head_only: bool| {
            assert_eq!(
                parse_head(head.as_bytes()),
                Parsed::Request {
                    head_only,
                    path: path.into()
                },
                "{head:?}"
            )
        };
        ok("GET /metrics HTTP/1.1\r\nHost: x", "/metrics", false);
        ok("GET /metrics?x=1 HTTP/1.0", "/metrics", false);
        ok("HEAD /other HTTP/1.1", "/other", true);
        for bad in [
            "",
            "GET",
            "GET /metrics",
            "GET metrics HTTP/1.1",
            "GET /metrics HTTP/1.1 extra",
            "get /metrics HTTP/1.1",
            "GET /metrics FTP/1.0",
            "GET /met\x01rics HTTP/1.1",
            "GET /metrics HTTP/1.1\r\nno colon here",
            "GET /metrics HTTP/1.1\r\n: empty name",
        ] {
            assert_eq!(parse_head(bad.as_bytes()), Parsed::BadRequest, "{bad:?}");
        }
        assert_eq!(parse_head(b"\xff\xfe"), Parsed::BadRequest);
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1"),
            Parsed::MethodNotAllowed
        );
        assert_eq!(
            parse_head(b"GET /metrics HTTP/2.0"),
            Parsed::VersionNotSupported
        );
    }
}
