//! The admin HTTP endpoint: `/healthz` (the process is alive), `/readyz` (the broker has
//! opened its log and serves Kafka) and `/metrics` (Prometheus). A deliberately tiny HTTP/1.1
//! responder: three fixed GET routes do not earn an HTTP framework's build time.

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

pub async fn serve(listener: TcpListener, ready: Readiness, cancel: CancellationToken) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
        };
        let ready = ready.clone();
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
            let (status, content_type, body) = match path {
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
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
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
