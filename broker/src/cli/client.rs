//! A small blocking Kafka client for the operator CLI: connects to the first reachable
//! bootstrap address, learns the broker's API versions, and sends one request at a time.

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response accepted.
const MAX_RESPONSE: usize = 256 * 1024 * 1024;

pub struct Client {
    stream: TcpStream,
    pub address: String,
    versions: HashMap<i16, (i16, i16)>,
    correlation: i32,
}

impl Client {
    /// Connects to the first of `bootstrap` (comma-separated host:port) that answers.
    pub fn connect(bootstrap: &str) -> anyhow::Result<Client> {
        let mut errors = Vec::new();
        for address in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match Self::connect_one(address) {
                Ok(c) => return Ok(c),
                Err(e) => errors.push(format!("{address}: {e:#}")),
            }
        }
        bail!("cannot reach a broker ({})", errors.join("; "))
    }

    fn connect_one(address: &str) -> anyhow::Result<Client> {
        let addr = address
            .to_socket_addrs()
            .with_context(|| format!("resolve {address}"))?
            .next()
            .context("no address")?;
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).context("connect")?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let mut client = Client {
            stream,
            address: address.to_string(),
            versions: HashMap::new(),
            correlation: 0,
        };
        let response: ApiVersionsResponse = client.send(&ApiVersionsRequest::default(), 0)?;
        if response.error_code != 0 {
            bail!("ApiVersions failed with error {}", response.error_code);
        }
        client.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(client)
    }

    /// Sends `request` at the highest version both sides support, up to `max`.
    pub fn call<R: Request>(&mut self, request: &R, max: i16) -> anyhow::Result<R::Response> {
        let Some(&(lo, hi)) = self.versions.get(&R::KEY) else {
            bail!(
                "the broker at {} does not support API {}",
                self.address,
                R::KEY
            );
        };
        let version = hi.min(max);
        if version < lo {
            bail!(
                "the broker at {} needs API {} version {lo} or later",
                self.address,
                R::KEY
            );
        }
        self.send(request, version)
    }

    fn send<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<R::Response> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("silt-cli")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, R::header_version(version))?;
        request.encode(&mut buf, version)?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).context("send request")?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).context("read response")?;
        let len = i32::from_be_bytes(len);
        if len < 4 || len as usize > MAX_RESPONSE {
            bail!("response of {len} bytes");
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).context("read response")?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(
            &mut body,
            <R::Response as HeaderVersion>::header_version(version),
        )?;
        if header.correlation_id != self.correlation {
            bail!("response for another request ({})", header.correlation_id);
        }
        let response = R::Response::decode(&mut body, version)?;
        if body.has_remaining() {
            tracing::debug!(trailing = body.remaining(), "response has trailing bytes");
        }
        Ok(response)
    }
}
