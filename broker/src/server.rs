//! The Kafka listener: framing, header decoding, per-connection ordering.
//!
//! Each connection has a reader and a writer. The reader decodes requests one at a time and
//! runs the part of each request that must happen in arrival order (for Produce: validation and
//! the append); what may wait (the WAL sync, a Fetch long poll) runs as a task whose handle goes
//! to the writer, which sends responses strictly in request order. The queue between them is
//! bounded, which bounds the requests in flight per connection, and Fetch responses (the only
//! large ones) reserve their size in a per-connection byte budget until they are written, which
//! bounds the memory a client that sends requests and never reads can pin.
//!
//! A listener has a security protocol: TLS listeners complete a handshake (bounded by
//! `tls.handshake_timeout_ms`) before the first request; SASL listeners accept only
//! ApiVersions, SaslHandshake and SaslAuthenticate until the client has authenticated, and
//! close a connection whose session expired (KIP-368) at its next other request.

use crate::api;
use crate::api::frame::{parse_header, response_budget, Frame, Reply};
use crate::broker::Broker;
use crate::security::tls::TlsServer;
use crate::security::{Listener, Session};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Requests a connection may have in flight before the reader stops reading.
const MAX_IN_FLIGHT: usize = 64;

pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    info: Arc<Listener>,
    tls: Option<Arc<TlsServer>>,
    cancel: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let cancel = cancel.clone();
        let info = info.clone();
        let tls = tls.clone();
        let span = tracing::info_span!("conn", %peer, listener = %info.name);
        tokio::spawn(
            async move {
                let result = match tls {
                    None => {
                        let principal: Arc<str> = crate::security::ANONYMOUS.into();
                        connection(broker, stream, peer, info, principal, cancel).await
                    }
                    Some(tls) => {
                        let handshake = tls.acceptor(info.protocol.sasl()).accept(stream);
                        match tokio::time::timeout(tls.handshake_timeout(), handshake).await {
                            Ok(Ok(stream)) => {
                                let principal = crate::security::tls::principal(stream.get_ref().1)
                                    .unwrap_or_else(|| crate::security::ANONYMOUS.to_string());
                                tracing::debug!(%principal, "TLS connection");
                                connection(broker, stream, peer, info, principal.into(), cancel)
                                    .await
                            }
                            Ok(Err(error)) => {
                                crate::metrics::metrics().tls_handshake_failures.inc();
                                tracing::info!(%error, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => {
                                crate::metrics::metrics().tls_handshake_failures.inc();
                                tracing::info!("TLS handshake timed out");
                                Ok(())
                            }
                        }
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%error, "connection closed");
                }
            }
            .instrument(span),
        );
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    broker: Arc<Broker>,
    stream: S,
    peer: std::net::SocketAddr,
    listener: Arc<Listener>,
    principal: Arc<str>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut auth = api::sasl::Auth::new(listener.protocol.sasl(), principal);
    let (tx, mut rx) = mpsc::channel::<(Reply, &'static str, std::time::Instant)>(MAX_IN_FLIGHT);
    let responses = response_budget();
    let metrics = crate::metrics::metrics();
    metrics.connections.inc();
    let writer_task = tokio::spawn(async move {
        let abort_rest = |rx: &mut mpsc::Receiver<(Reply, &'static str, std::time::Instant)>| {
            // The connection is gone: stop work nobody will read (long polls, say).
            rx.close();
            while let Ok((reply, _, _)) = rx.try_recv() {
                if let Reply::Later(handle) = reply {
                    handle.abort();
                }
            }
        };
        while let Some((reply, api, started)) = rx.recv().await {
            let frame = match reply {
                Reply::Now(frame) => frame,
                Reply::Later(handle) => match handle.await {
                    Ok(frame) => frame,
                    Err(error) => {
                        tracing::error!(%error, "request task failed; closing the connection");
                        abort_rest(&mut rx);
                        return;
                    }
                },
            };
            metrics.requests.with_label_values(&[api]).inc();
            metrics
                .request_duration
                .with_label_values(&[api])
                .observe(started.elapsed().as_secs_f64());
            match frame {
                // A reservation is given back here, when the bytes are written (or dropped).
                Frame::Bytes(bytes) | Frame::Reserved(bytes, _) => {
                    if writer.write_all(&bytes).await.is_err() {
                        abort_rest(&mut rx);
                        return;
                    }
                }
                Frame::NoResponse => {}
                Frame::Failed => {
                    abort_rest(&mut rx);
                    return;
                }
            }
        }
        let _ = writer.shutdown().await;
    });
    let max = broker.config.socket_request_max_bytes;
    let result = async {
        loop {
            let len = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                len = reader.read_i32() => match len {
                    Ok(len) => len,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                },
            };
            let max = auth.max_frame(max);
            if len < 8 || len as usize > max {
                tracing::warn!(
                    len,
                    max,
                    "request frame size out of bounds; closing the connection"
                );
                anyhow::bail!("frame of {len} bytes");
            }
            let mut body = BytesMut::zeroed(len as usize);
            reader.read_exact(&mut body).await?;
            let body = body.freeze();
            let started = std::time::Instant::now();
            let key = i16::from_be_bytes([body[0], body[1]]);
            let api = api_name(key);
            // SASL requests change the connection's state: handled here, in order.
            let (reply, close) = match auth.gate(key)? {
                api::sasl::Gate::Sasl => {
                    let (frame, close) = auth.handle(&broker, body, &listener).await?;
                    (Reply::Now(frame), close)
                }
                api::sasl::Gate::Pass => {
                    let session = Session::new(
                        peer,
                        listener.clone(),
                        auth.principal(),
                        broker.authorizer.clone(),
                        responses.clone(),
                    );
                    (dispatch(&broker, body, &session).await?, false)
                }
            };
            if tx.send((reply, api, started)).await.is_err() {
                return Ok(());
            }
            if close {
                anyhow::bail!("SASL authentication failed; closing the connection");
            }
        }
    }
    .await;
    drop(tx);
    let _ = writer_task.await;
    metrics.connections.dec();
    result
}

/// A metric label for an API key (a bounded set: the ones we implement, else "other").
fn api_name(key: i16) -> &'static str {
    ApiKey::try_from(key).map(api::label).unwrap_or("other")
}

/// Decodes the header and hands the request to its API's handler.
async fn dispatch(
    broker: &Arc<Broker>,
    mut body: Bytes,
    session: &Session,
) -> anyhow::Result<Reply> {
    let (key, header) = parse_header(&mut body)?;
    let api_version = header.request_api_version;
    let span = tracing::debug_span!(
        "request",
        otel.name = api::label(key),
        otel.kind = "server",
        api = ?key,
        api_version,
        correlation_id = header.correlation_id,
        client_id = header.client_id.as_deref().unwrap_or(""),
        peer = %session.peer,
        principal = %session.principal,
    );
    let supported = api::supported(key);
    if key == ApiKey::ApiVersions {
        return Ok(Reply::Now(api::api_versions::handle(&header, &mut body)));
    }
    let Some((min, max)) = supported else {
        anyhow::bail!("API {key:?} is not supported");
    };
    if api_version < min || api_version > max {
        anyhow::bail!("API {key:?} version {api_version} is not supported ({min}..={max})");
    }
    api::handle(broker, key, header, body, session)
        .instrument(span)
        .await
}
