//! The etcd backend: a thin adapter from [`MetadataStore`] to etcd's v3 API (etcd 3.4+).
//!
//! Keys map one to one onto etcd keys under an optional namespace (the URL's path), revisions are
//! etcd's, leases are etcd leases and watches are etcd watches, so the contract in
//! [`crate::store`] holds as etcd defines it.
//!
//! Every request has a deadline. A transaction that fails in transport may or may not have been
//! applied: the error says so ([`Error::Unavailable`]) and callers that must know read back.
//!
//! etcd refuses transactions with more than `--max-txn-ops` operations (default 128) and
//! requests over `--max-request-bytes` (default 1.5 MiB): callers batch below those
//! ([`MAX_TXN_OPS`]).

use crate::store::{
    Compare, KeyValue, LeaseId, MetadataStore, Op, Txn, TxnResponse, WatchEvent, WatchEventKind,
};
use crate::{Error, Result};
use async_trait::async_trait;
use etcd_client as etcd;
use std::time::Duration;
use tokio::sync::mpsc;

/// The most operations one transaction may carry on a default etcd server.
pub const MAX_TXN_OPS: usize = 128;
/// Keys read per page by [`MetadataStore::list`] (all pages at one revision).
const LIST_PAGE: i64 = 1_000;
/// Largest response accepted (tonic's default is 4 MiB): a page of commit records, each listing
/// the extents of many partitions (tens of KiB with 1,000 partitions), is larger than that.
const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// Events buffered per watch before the watcher counts as too far behind.
const WATCH_CHANNEL: usize = 1024;

/// Connection settings for [`EtcdMetadataStore::connect`].
#[derive(Clone)]
pub struct EtcdOptions {
    /// `host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// Prepended to every key (e.g. `/cluster-a`), so clusters can share an etcd.
    pub namespace: String,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// TLS to every member (`etcds://`); `None` for plain gRPC (`etcd://`).
    pub tls: Option<EtcdTls>,
    /// etcd's own authentication (`etcdctl auth enable`): user name and password. The token
    /// etcd hands out is renewed when it expires.
    pub user: Option<(String, String)>,
}

/// TLS to etcd: the CA that signs the members' certificates and, for etcd's
/// `--client-cert-auth`, this client's certificate and key (all PEM).
#[derive(Clone, Default)]
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the members' certificates are checked against, when it is not the host in
    /// the endpoint (e.g. endpoints given as IP addresses).
    pub server_name: Option<String>,
}

/// The password never reaches a log line.
impl std::fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("namespace", &self.namespace)
            .field("tls", &self.tls.is_some())
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .finish_non_exhaustive()
    }
}

impl EtcdOptions {
    /// Parses `etcd://host:2379[,host:2379][/namespace]`, or `etcds://…` for TLS (then
    /// [`EtcdTls`] must be filled in before connecting: at least the CA).
    pub fn from_url(url: &str) -> Result<Self> {
        let (rest, tls) = if let Some(rest) = url.strip_prefix("etcd://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("etcds://") {
            (rest, true)
        } else {
            return Err(Error::Config(format!(
                "{url:?} is not an etcd://host:port or etcds://host:port URL"
            )));
        };
        let (hosts, namespace) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/').to_string()),
            None => (rest, String::new()),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(Error::Config(format!("{url:?} names no etcd endpoint")));
        }
        for e in &endpoints {
            let port = e.rsplit_once(':').map(|(_, p)| p);
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(Error::Config(format!(
                    "etcd endpoint {e:?} in {url:?} needs host:port"
                )));
            }
        }
        Ok(Self {
            endpoints,
            namespace,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            tls: tls.then(EtcdTls::default),
            user: None,
        })
    }
}

/// [`MetadataStore`] on an etcd cluster.
#[derive(Clone)]
pub struct EtcdMetadataStore {
    client: etcd::Client,
    namespace: String,
}

/// An etcd error with its sources: a TLS failure's reason sits under tonic's "transport
/// error", which etcd-client's error does not expose as a source.
fn describe(e: &etcd::Error) -> String {
    match e {
        etcd::Error::TransportError(t) => format!("transport error: {}", error_chain(t)),
        etcd::Error::GRpcStatus(status) => error_chain(status),
        other => other.to_string(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    // Bounded: a chain is a handful of layers.
    for _ in 0..8 {
        let Some(s) = source else { break };
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

fn unavailable(e: etcd::Error) -> Error {
    Error::Unavailable(e.to_string())
}

impl EtcdMetadataStore {
    /// Connects and checks that the cluster answers (one status request).
    pub async fn connect(options: &EtcdOptions) -> Result<Self> {
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoints: Vec<String> = options
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let mut connect = etcd::ConnectOptions::new()
            .with_timeout(options.request_timeout)
            .with_connect_timeout(options.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), options.request_timeout)
            .with_require_leader(true);
        if let Some(tls) = &options.tls {
            if tls.ca_pem.is_empty() {
                return Err(Error::Config(
                    "etcds:// needs the CA that signs etcd's certificates".into(),
                ));
            }
            let mut config =
                etcd::TlsOptions::new().ca_certificate(etcd::Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.client_identity {
                config = config.identity(etcd::Identity::from_pem(cert, key));
            }
            if let Some(name) = &tls.server_name {
                config = config.domain_name(name.clone());
            }
            connect = connect.with_tls(config);
        }
        if let Some((name, password)) = &options.user {
            connect = connect
                .with_user(name.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        let client =
            tokio::time::timeout(options.connect_timeout + options.request_timeout, async {
                let mut client = etcd::Client::connect(&endpoints, Some(connect)).await?;
                client.status().await?;
                Ok::<_, etcd::Error>(client)
            })
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "no answer from etcd at {} within {:?}",
                    options.endpoints.join(","),
                    options.connect_timeout + options.request_timeout
                ))
            })?
            .map_err(|e| {
                // In TLS 1.3 a server that wants a client certificate hangs up after the
                // handshake, which the client sees only as a closed stream.
                let hint = match &options.tls {
                    Some(tls) if tls.client_identity.is_none() => {
                        " (no client certificate was offered: an etcd with --client-cert-auth \
                         wants one)"
                    }
                    _ => "",
                };
                Error::Unavailable(format!(
                    "connect to etcd at {}: {}{hint}",
                    options.endpoints.join(","),
                    describe(&e)
                ))
            })?;
        Ok(Self {
            client,
            namespace: options.namespace.clone(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }

    fn convert(&self, kv: &etcd::KeyValue) -> Result<KeyValue> {
        let key = std::str::from_utf8(kv.key())
            .map_err(|_| Error::Unavailable("etcd returned a key that is not UTF-8".into()))?;
        Ok(KeyValue {
            key: key
                .strip_prefix(self.namespace.as_str())
                .unwrap_or(key)
                .to_string(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            lease: (kv.lease() != 0).then_some(kv.lease()),
        })
    }

    fn lease_error(lease: LeaseId, e: etcd::Error) -> Error {
        let text = e.to_string();
        if text.contains("lease not found") {
            Error::LeaseNotFound(lease)
        } else {
            Error::Unavailable(text)
        }
    }
}

fn revision(header: Option<&etcd::ResponseHeader>) -> i64 {
    header.map(|h| h.revision()).unwrap_or_default()
}

impl EtcdMetadataStore {
    fn kv(&self) -> etcd::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
    }
}

#[async_trait]
impl MetadataStore for EtcdMetadataStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .kv()
            .get(self.key(key), None)
            .await
            .map_err(unavailable)?;
        resp.kvs().first().map(|kv| self.convert(kv)).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        let full = self.key(prefix).into_bytes();
        let range_end = prefix_end(&full);
        let mut kv = self.kv();
        let mut out = Vec::new();
        let mut from = full;
        let mut at_revision = 0;
        // Pages of LIST_PAGE keys, all read at the first page's revision; the number of pages
        // is bounded by the number of keys under the prefix at that revision.
        loop {
            let options = etcd::GetOptions::new()
                .with_range(range_end.clone())
                .with_limit(LIST_PAGE)
                .with_revision(at_revision);
            let resp = kv
                .get(from.clone(), Some(options))
                .await
                .map_err(unavailable)?;
            if at_revision == 0 {
                at_revision = revision(resp.header());
            }
            for item in resp.kvs() {
                out.push(self.convert(item)?);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let compares: Vec<etcd::Compare> = txn
            .compares
            .iter()
            .map(|c| match c {
                Compare::ModRevision { key, revision } => {
                    etcd::Compare::mod_revision(self.key(key), etcd::CompareOp::Equal, *revision)
                }
                Compare::Value { key, value } => {
                    etcd::Compare::value(self.key(key), etcd::CompareOp::Equal, value.clone())
                }
            })
            .collect();
        let ops: Vec<etcd::TxnOp> = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => etcd::TxnOp::put(
                    self.key(key),
                    value.clone(),
                    lease.map(|l| etcd::PutOptions::new().with_lease(l)),
                ),
                Op::Delete { key } => etcd::TxnOp::delete(self.key(key), None),
                Op::DeletePrefix { prefix } => etcd::TxnOp::delete(
                    self.key(prefix),
                    Some(etcd::DeleteOptions::new().with_prefix()),
                ),
            })
            .collect();
        let resp = self
            .kv()
            .txn(etcd::Txn::new().when(compares).and_then(ops))
            .await
            .map_err(|e| {
                match txn.ops.iter().find_map(|op| match op {
                    Op::Put { lease, .. } => *lease,
                    _ => None,
                }) {
                    // etcd refuses the whole transaction: nothing was applied.
                    Some(lease) if e.to_string().contains("lease not found") => {
                        Error::LeaseNotFound(lease)
                    }
                    _ => Error::Unavailable(format!("transaction outcome unknown: {e}")),
                }
            })?;
        Ok(TxnResponse {
            succeeded: resp.succeeded(),
            revision: revision(resp.header()),
        })
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let resp = self
            .client
            .lease_client()
            .grant(secs, None)
            .await
            .map_err(unavailable)?;
        Ok(resp.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        // One request and its answer; etcd-client reports a TTL of 0 as "lease not found".
        self.client
            .lease_client()
            .keep_alive(lease)
            .await
            .map(drop)
            .map_err(|e| Self::lease_error(lease, e))
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.client
            .lease_client()
            .revoke(lease)
            .await
            .map(drop)
            .map_err(|e| Self::lease_error(lease, e))
    }

    async fn watch(&self, prefix: &str) -> Result<mpsc::Receiver<WatchEvent>> {
        let mut stream = self
            .client
            .watch_client()
            .watch(
                self.key(prefix),
                Some(etcd::WatchOptions::new().with_prefix()),
            )
            .await
            .map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = tx.closed() => return,
                    message = stream.message() => message,
                };
                // Stream ended, failed, or was cancelled (e.g. compacted): end the watch; the
                // contract says re-read and re-watch.
                let Ok(Some(resp)) = message else { return };
                if resp.canceled() {
                    return;
                }
                for event in resp.events() {
                    let Some(kv) = event.kv() else { continue };
                    let Ok(kv) = this.convert(kv) else { continue };
                    let kind = match event.event_type() {
                        etcd::EventType::Put => WatchEventKind::Put,
                        etcd::EventType::Delete => WatchEventKind::Delete,
                    };
                    // A watcher this far behind must re-read: dropping the sender closes it.
                    if tx.try_send(WatchEvent { kind, kv }).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's range end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let o = EtcdOptions::from_url("etcd://a:2379,b:2380/silt-a/").unwrap();
        assert_eq!(o.endpoints, vec!["a:2379", "b:2380"]);
        assert_eq!(o.namespace, "/silt-a");
        let o = EtcdOptions::from_url("etcd://127.0.0.1:2379").unwrap();
        assert_eq!(o.namespace, "");
        assert!(o.tls.is_none());
        let o = EtcdOptions::from_url("etcds://a:2379/x").unwrap();
        assert!(o.tls.is_some());
        assert_eq!(o.namespace, "/x");
        assert!(EtcdOptions::from_url("http://a:2379").is_err());
        assert!(EtcdOptions::from_url("etcd://").is_err());
        assert!(EtcdOptions::from_url("etcd://a").is_err());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
    }
}
