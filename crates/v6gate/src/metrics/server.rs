//! A tiny HTTP server for `GET /metrics`: one thread, one connection at a time (Prometheus
//! scrapes one at a time), each request bounded in size and time. Every scrape asks the daemon
//! for its status over the control socket, so the numbers are the ones `v6gate status` shows.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::status::{self, Request, Response};

/// Longest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// Bound on reading a request and writing its answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the idle server looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// The running server; stops when dropped.
pub struct MetricsServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `address` and serves the status of the daemon behind `control_socket`.
    pub fn start(address: SocketAddr, control_socket: PathBuf) -> io::Result<Self> {
        let listener = TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = serve(stream, &control_socket);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
                        Err(_) => thread::sleep(POLL),
                    }
                }
            })?;
        Ok(Self {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(mut stream: TcpStream, control_socket: &std::path::Path) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return respond(
                &mut stream,
                "400 Bad Request",
                "text/plain",
                "bad request\n",
            );
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    let (method, target) = (words.next(), words.next());
    if method != Some(b"GET".as_slice()) {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        );
    }
    if target != Some(b"/metrics".as_slice()) {
        return respond(&mut stream, "404 Not Found", "text/plain", "see /metrics\n");
    }
    match status::query(control_socket, &Request::Status) {
        Ok(Response::Status(s)) => respond(
            &mut stream,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &super::render(&s),
        ),
        _ => respond(
            &mut stream,
            "503 Service Unavailable",
            "text/plain",
            "the daemon does not answer on its control socket\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(server: &MetricsServer, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(server.address()).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = stream.write_all(request);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn answers_only_get_metrics_and_says_when_the_daemon_is_away() {
        let socket = std::env::temp_dir().join(format!("v6gate-no-daemon-{}", std::process::id()));
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), socket).unwrap();
        let get = |target: &str| {
            exchange(
                &server,
                format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            )
        };
        assert!(
            get("/metrics").starts_with("HTTP/1.1 503 "),
            "{}",
            get("/metrics")
        );
        assert!(get("/").starts_with("HTTP/1.1 404 "));
        let post = exchange(&server, b"POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        // A head that never ends is cut off at the bound.
        let endless = vec![b'a'; MAX_REQUEST + 10];
        assert!(exchange(&server, &endless).starts_with("HTTP/1.1 400 "));
    }
}
