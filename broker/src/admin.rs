//! The admin HTTP endpoint: `/healthz` (the process is alive), `/readyz` (the broker has
//! opened its log and serves Kafka) and `/metrics` (Prometheus). A deliberately tiny HTTP/1.1
//! responder: three fixed GET routes do not earn an HTTP framework's build time.
//!
//! With a token file (`admin_token_file`), `/metrics` answers only requests with
//! `Authorization: Bearer <the file's contents>`; the probes stay open (they tell only whether
//! the broker is up, and the kubelet asks them without credentials). The file is read on every
//! request, so a rotated Secret applies at once; one that cannot be read refuses everyone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// Ready when the broker has opened its log and serves Kafka (`set`) and, once a check is
/// installed, while the check holds (the metadata store answers and the broker is a member).
#[derive(Clone, Default)]
pub struct Readiness(Arc<(AtomicBool, std::sync::OnceLock<Check>)>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0 .0.store(ready, Ordering::Release);
    }

    /// Installs the ongoing check (once; later calls are ignored).
    pub fn set_check(&self, check: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.0 .1.set(Arc::new(check));
    }

    pub fn get(&self) -> bool {
        self.0 .0.load(Ordering::Acquire) && self.0 .1.get().is_none_or(|check| check())
    }
}

/// The largest token file read.
const MAX_TOKEN_BYTES: u64 = 4096;

/// The token in `path`, trimmed; `None` when it cannot be read or is empty.
pub fn read_token(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut raw = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_BYTES).read_to_end(&mut raw))
        .ok()?;
    let token = raw.trim_ascii();
    (!token.is_empty()).then(|| token.to_vec())
}

/// Whether the request head carries `Authorization: Bearer <token>` for the token in `path`.
fn authorized(head: &str, path: &Path) -> bool {
    let Some(token) = read_token(path) else {
        // Once a minute at most: any peer can send requests.
        static LAST_WARNED: std::sync::Mutex<Option<std::time::Instant>> =
            std::sync::Mutex::new(None);
        let mut last = LAST_WARNED.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
            *last = Some(std::time::Instant::now());
            tracing::warn!(path = %path.display(), "admin token file unreadable or empty: /metrics refused (said at most once a minute)");
        }
        return false;
    };
    head.lines().skip(1).any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        let value = value.trim();
        // `get`, not indexing: a header may hold any bytes, and a cut inside a character
        // is no token.
        let (Some(scheme), Some(given)) = (value.get(..7), value.get(7..)) else {
            return false;
        };
        // Digests of equal length are compared, so the time taken says nothing about the
        // token's length either.
        let digest = |b: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
        name.trim().eq_ignore_ascii_case("authorization")
            && scheme.eq_ignore_ascii_case("bearer ")
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                digest(given.trim().as_bytes()).as_ref(),
                digest(&token).as_ref(),
            )
            .is_ok()
    })
}

pub async fn serve(
    listener: TcpListener,
    ready: Readiness,
    token_file: Option<PathBuf>,
    cancel: CancellationToken,
) {
    let token_file = token_file.map(Arc::new);
    loop {
        let (mut stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
        };
        let ready = ready.clone();
        let token_file = token_file.clone();
        tokio::spawn(async move {
            // Read the whole request head (bounded) before answering: closing a socket with
            // unread input resets it, and the client may lose the response.
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            let read_head = async {
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), read_head)
                .await
                .is_err()
            {
                return;
            }
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let denied = path == "/metrics"
                && token_file
                    .as_deref()
                    .is_some_and(|file| !authorized(&request, file));
            let mut extra = "";
            let (status, content_type, body) = match path {
                _ if denied => {
                    extra = "www-authenticate: Bearer\r\n";
                    (
                        "401 Unauthorized",
                        "text/plain",
                        "unauthorized\n".to_string(),
                    )
                }
                "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
                "/readyz" if ready.get() => ("200 OK", "text/plain", "ready\n".to_string()),
                "/readyz" => (
                    "503 Service Unavailable",
                    "text/plain",
                    "not ready\n".to_string(),
                ),
                "/metrics" => (
                    "200 OK",
                    "text/plain; version=0.0.4",
                    crate::metrics::render(),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// `GET path` on a broker's admin address, answered within `timeout`; returns the HTTP status
/// (`silt health`, for container health checks).
pub fn probe(admin: &str, path: &str, timeout: Duration) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let addr = admin.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to connect to")
    })?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {admin}\r\n\r\n")?;
    // The status line is all that is needed; bound what is read.
    let mut head = Vec::new();
    stream.take(4096).read_to_end(&mut head)?;
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer"))
}
