//! Framing of requests and responses: the request header, a body decoded at its version, a
//! response frame with its length prefix, what a handler gives back, and the per-connection
//! budget large responses reserve until written.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Response bytes a connection may have reserved and not yet written: above one Fetch
/// response's bound (55 MiB), so one fetch always fits; a second waits (and the reader with it,
/// as Kafka serves one request per connection at a time) until the first is written.
pub const MAX_QUEUED_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A fresh connection's response budget.
pub fn response_budget() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(MAX_QUEUED_RESPONSE_BYTES))
}

/// A response frame (length prefix included).
pub enum Frame {
    Bytes(Bytes),
    /// A frame holding part of the connection's response budget, given back once written.
    Reserved(Bytes, tokio::sync::OwnedSemaphorePermit),
    /// acks=0 Produce: no response at all.
    NoResponse,
    /// The response could not be encoded: the connection is closed rather than left waiting.
    Failed,
}

/// What a handler gives back: the response now, or a task that will produce it.
pub enum Reply {
    Now(Frame),
    Later(JoinHandle<Frame>),
}

/// Encodes a response frame for a request with `header`.
pub fn frame<R: Encodable>(header: &RequestHeader, body: &R) -> Frame {
    let response_header_version = ApiKey::try_from(header.request_api_key)
        .map(|k| k.response_header_version(header.request_api_version))
        .unwrap_or(0);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let rh = ResponseHeader::default().with_correlation_id(header.correlation_id);
    if let Err(error) = rh
        .encode(&mut buf, response_header_version)
        .and_then(|()| body.encode(&mut buf, header.request_api_version))
    {
        tracing::error!(%error, api_key = header.request_api_key, version = header.request_api_version, "encoding a response failed; closing the connection");
        return Frame::Failed;
    }
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Frame::Bytes(buf.freeze())
}

/// Reads the API key and version and decodes the request header (frames are at least 8 bytes).
pub fn parse_header(body: &mut Bytes) -> anyhow::Result<(ApiKey, RequestHeader)> {
    anyhow::ensure!(
        body.len() >= 8,
        "request of {} bytes is too short",
        body.len()
    );
    let api_key = i16::from_be_bytes([body[0], body[1]]);
    let api_version = i16::from_be_bytes([body[2], body[3]]);
    let Ok(key) = ApiKey::try_from(api_key) else {
        anyhow::bail!("unknown API key {api_key}");
    };
    let header_version = key.request_header_version(api_version);
    let header = RequestHeader::decode(body, header_version)
        .map_err(|e| anyhow::anyhow!("bad request header: {e}"))?;
    Ok((key, header))
}

/// Decodes a request body of type `T` at the header's version.
pub fn decode<T: Decodable>(header: &RequestHeader, body: &mut Bytes) -> anyhow::Result<T> {
    let request = T::decode(body, header.request_api_version)
        .map_err(|e| anyhow::anyhow!("malformed request: {e}"))?;
    if body.has_remaining() {
        tracing::debug!(trailing = body.remaining(), "request has trailing bytes");
    }
    Ok(request)
}
