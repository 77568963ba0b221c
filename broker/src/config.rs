//! Broker configuration: built-in defaults < `silt.toml` (or `--config FILE`) < `SILT_*`
//! environment variables (nested with `__`) < command-line flags, layered with figment.

use crate::topic_config::TimestampType;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Kafka listener address.
    pub listen: String,
    /// `host:port` given to clients in Metadata; the listen address when unset.
    pub advertised_listener: Option<String>,
    /// Listeners, each with its own security protocol (`[[listeners]]`). When given they
    /// replace `listen` and `advertised_listener`; when empty, those two make one PLAINTEXT
    /// listener named `PLAINTEXT`.
    pub listeners: Vec<ListenerSettings>,
    /// Certificates for SSL and SASL_SSL listeners (`[tls]`).
    pub tls: TlsSettings,
    /// SASL on SASL_PLAINTEXT and SASL_SSL listeners (`[sasl]`).
    pub sasl: SaslSettings,
    /// ACLs (`[authorizer]`).
    pub authorizer: AuthorizerSettings,
    /// WAL, hot segments, embedded metadata and (by default) objects.
    pub data_dir: PathBuf,
    pub node_id: i32,
    /// `embedded`, or `etcd://host:2379[,host:2379][/namespace]` (`etcds://` for TLS).
    pub metadata: String,
    /// TLS and authentication to etcd (`[etcd]`).
    pub etcd: EtcdSettings,
    /// Object store URL; `file://<data-dir>/objects` when unset.
    pub object_store: Option<String>,
    /// Admin HTTP (health, readiness, metrics).
    pub admin_listen: String,
    /// A file holding a bearer token that `/metrics` then requires (`Authorization: Bearer
    /// …`); re-read on every request. `/healthz` and `/readyz` stay open for probes.
    pub admin_token_file: Option<PathBuf>,
    /// Log lines as human-readable text or one JSON object per line.
    pub log_format: LogFormat,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    /// Largest request frame accepted; larger ones close the connection.
    pub socket_request_max_bytes: usize,
    /// Bound on how far one compressed batch may expand when validated.
    pub max_decompressed_batch_bytes: usize,
    /// Producers idle this long are forgotten (Kafka's `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// A new group waits this long for more members before its first rebalance completes.
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: u64,
    pub group_max_session_timeout_ms: u64,
    /// Members per group at most.
    pub group_max_size: usize,
    /// Committed offsets of a group without members are kept this long after the last commit.
    pub offsets_retention_minutes: u64,
    /// Longest metadata string accepted with a committed offset.
    pub offset_metadata_max_bytes: usize,
    /// On SIGTERM the broker stops accepting requests, uploads what its WAL holds to the
    /// bucket (for at most four fifths of this) and revokes its lease (its partitions move to
    /// other brokers), within this long; what was not uploaded stays in the local WAL, and a
    /// stop that overruns it exits with an error. Keep it below Kubernetes'
    /// `terminationGracePeriodSeconds`.
    pub shutdown_timeout_ms: u64,
    pub log: LogDefaults,
    pub wal: WalSettings,
    pub tiering: TieringSettings,
    pub cluster: ClusterSettings,
    pub telemetry: TelemetrySettings,
}

/// One Kafka listener: Kafka's `listeners`, `advertised.listeners` and
/// `listener.security.protocol.map` entries for one name, together.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerSettings {
    /// The listener's name (`INTERNAL`, `EXTERNAL`, ...). A client is given the other brokers'
    /// addresses on the listener it connected to.
    pub name: String,
    /// Address to bind, `host:port`.
    pub listen: String,
    /// `host:port` given to clients; the listen address when unset.
    #[serde(default)]
    pub advertised: Option<String>,
    #[serde(default)]
    pub protocol: SecurityProtocol,
}

impl ListenerSettings {
    pub fn advertised(&self) -> &str {
        self.advertised.as_deref().unwrap_or(&self.listen)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SecurityProtocol {
    #[default]
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        })
    }
}

impl SecurityProtocol {
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// Client certificates on TLS listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for (Kafka's `ssl.client.auth=none`).
    #[default]
    None,
    /// Asked for; a client without one connects as `User:ANONYMOUS`.
    Requested,
    /// A client without a certificate signed by `client_ca_file` is refused.
    Required,
}

/// TLS for SSL and SASL_SSL listeners (`[tls]`, `SILT_TLS__*`). The files are PEM and are
/// re-read when they change (checked every `reload_interval_ms`): connections made after a
/// renewal get the new certificate; established ones keep theirs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// CAs that sign client certificates (mTLS); the principal is `User:` and the
    /// certificate's subject (`CN=client,O=Example`), as Kafka's default mapping gives.
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// A TLS handshake that takes longer is abandoned.
    pub handshake_timeout_ms: u64,
    pub reload_interval_ms: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            client_auth: ClientAuth::None,
            handshake_timeout_ms: 10_000,
            reload_interval_ms: 10_000,
        }
    }
}

/// SASL (`[sasl]`, `SILT_SASL__*`). SCRAM credentials live in the metadata store, managed
/// with AlterUserScramCredentials; PLAIN checks a password against them too.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaslSettings {
    /// Enabled mechanisms: `SCRAM-SHA-512`, `SCRAM-SHA-256`, `PLAIN`.
    pub mechanisms: Vec<String>,
    /// Users created at startup when they have no credential yet (name → password), for
    /// both SCRAM mechanisms: how the first administrator gets in. Existing credentials are
    /// never overwritten from here.
    pub users: std::collections::BTreeMap<String, String>,
    /// PBKDF2 iterations of the credentials created from `users`.
    pub scram_iterations: u32,
    /// Kafka's `connections.max.reauth.ms` (KIP-368): a client must re-authenticate within
    /// this long, or its connection is closed at its next request. 0: sessions do not expire.
    pub connections_max_reauth_ms: u64,
    /// A failed authentication is answered after this delay, then the connection is closed.
    pub failed_authentication_delay_ms: u64,
    /// Authentications one connection may start per minute; past it the connection is closed.
    pub max_authentications_per_minute: u32,
}

impl Default for SaslSettings {
    fn default() -> Self {
        SaslSettings {
            mechanisms: vec![
                "SCRAM-SHA-512".into(),
                "SCRAM-SHA-256".into(),
                "PLAIN".into(),
            ],
            users: Default::default(),
            scram_iterations: 4096,
            connections_max_reauth_ms: 0,
            failed_authentication_delay_ms: 100,
            max_authentications_per_minute: 10,
        }
    }
}

/// ACLs (`[authorizer]`, `SILT_AUTHORIZER__*`): off by default, as in Kafka without an
/// `authorizer.class.name`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizerSettings {
    pub enabled: bool,
    /// Principals allowed everything (`User:admin`).
    pub super_users: Vec<String>,
    /// Kafka's `allow.everyone.if.no.acl.found`: a resource no ACL names is open to all.
    pub allow_everyone_if_no_acl_found: bool,
    /// Level of the log line for a denied request: `off`, `error`, `warn`, `info`, `debug`,
    /// `trace` (target `silt::authorizer`).
    pub log_denied: String,
    /// Level of the log line for an allowed request.
    pub log_allowed: String,
    /// ACLs are re-read this often even when the metadata store's watch is quiet.
    pub refresh_ms: u64,
}

impl Default for AuthorizerSettings {
    fn default() -> Self {
        AuthorizerSettings {
            enabled: false,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            log_denied: "info".into(),
            log_allowed: "debug".into(),
            refresh_ms: 10_000,
        }
    }
}

/// How the broker reaches etcd (`[etcd]`, `SILT_ETCD__*`). etcd holds the SCRAM credentials,
/// the ACLs and partition leadership: outside a trusted network use `etcds://` with a CA,
/// and etcd's client certificates (`--client-cert-auth`) or its users, or both.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdSettings {
    /// The CA that signs the etcd members' certificates (PEM); needed by `etcds://`.
    pub ca_file: Option<PathBuf>,
    /// This broker's client certificate chain and key (PEM), for `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the members' certificates must carry, when the endpoints do not (e.g. IPs).
    pub server_name: Option<String>,
    /// An etcd user (`etcdctl user add`) and its password (e.g.
    /// `SILT_ETCD__PASSWORD` from a Kubernetes Secret).
    pub username: Option<String>,
    pub password: Option<String>,
}

/// The password never reaches a log line.
impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("server_name", &self.server_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl EtcdSettings {
    /// The connection settings for `url` (`etcd://` or `etcds://`), with the files read.
    pub fn options(&self, url: &str) -> anyhow::Result<silt_metadata::EtcdOptions> {
        use anyhow::Context;
        let mut options = silt_metadata::EtcdOptions::from_url(url)?;
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).with_context(|| format!("read etcd.{what} {}", path.display()))
        };
        if let Some(tls) = options.tls.as_mut() {
            let ca = self
                .ca_file
                .as_ref()
                .context("etcds:// needs etcd.ca_file, the CA that signs etcd's certificates")?;
            tls.ca_pem = read(ca, "ca_file")?;
            if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
                tls.client_identity = Some((read(cert, "cert_file")?, read(key, "key_file")?));
            }
            tls.server_name = self.server_name.clone();
        }
        if let (Some(name), Some(password)) = (&self.username, &self.password) {
            options.user = Some((name.clone(), password.clone()));
        }
        Ok(options)
    }

    fn validate(&self, url: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.cert_file.is_some() == self.key_file.is_some(),
            "etcd.cert_file and etcd.key_file go together"
        );
        anyhow::ensure!(
            self.username.is_some() == self.password.is_some(),
            "etcd.username and etcd.password go together"
        );
        let tls_settings =
            self.ca_file.is_some() || self.cert_file.is_some() || self.server_name.is_some();
        anyhow::ensure!(
            url.starts_with("etcds://") || !tls_settings,
            "etcd.ca_file, cert_file and server_name are for TLS: use an etcds:// URL"
        );
        anyhow::ensure!(
            !url.starts_with("etcds://") || self.ca_file.is_some(),
            "etcds:// needs etcd.ca_file, the CA that signs etcd's certificates"
        );
        Ok(())
    }
}

/// Membership in the cluster (`[cluster]` in silt.toml, `SILT_CLUSTER__*` in the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// The broker's lease: a broker that stops renewing it is gone after this long. etcd
    /// counts whole seconds (rounding up) and has a floor of about 2 s.
    pub lease_ttl_ms: u64,
    /// The broker's rack (Kafka's `broker.rack`), reported in Metadata.
    pub rack: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 3_000,
            rack: None,
        }
    }
}

/// OTLP export and the consumer-lag metric (`[telemetry]` in silt.toml, `SILT_TELEMETRY__*` in
/// the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// OTLP/HTTP collector, e.g. `http://otel-collector:4318`: traces go to `/v1/traces` and
    /// metrics to `/v1/metrics` below it. Unset: `OTEL_EXPORTER_OTLP_ENDPOINT`, else no export.
    pub otlp_endpoint: Option<String>,
    /// How often the metrics are pushed to the collector.
    pub otlp_metrics_interval_ms: u64,
    /// The share of requests traced (each request is the root of its own trace).
    pub trace_sample_ratio: f64,
    /// Groups whose total lag is exported as `silt_broker_consumer_group_lag_records{group}`:
    /// exact names, or prefixes ending in `*` (`["billing", "etl-*"]`). Empty: no lag metric.
    pub lag_groups: Vec<String>,
    /// At most this many groups get a lag series (the label set stays bounded).
    pub lag_groups_max: usize,
    /// How often the lag metric is recomputed (one metadata-store read per pattern).
    pub lag_refresh_ms: u64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_metrics_interval_ms: 10_000,
            trace_sample_ratio: 0.1,
            lag_groups: Vec::new(),
            lag_groups_max: 100,
            lag_refresh_ms: 5_000,
        }
    }
}

/// Object storage: WAL objects, segment objects, the read cache (`[tiering]` in silt.toml,
/// `SILT_TIERING__*` in the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TieringSettings {
    /// `silt.wal.max.delay`: the longest data waits before its WAL object is uploaded.
    pub wal_max_delay_ms: u64,
    /// The wait while acks=all producers are waiting (shorter: their latency is the PUT).
    pub wal_acks_all_delay_ms: u64,
    /// A WAL object is uploaded once it holds this many bytes.
    pub wal_object_bytes: usize,
    /// WAL objects uploaded at once.
    pub upload_concurrency: usize,
    /// Bytes written locally but not yet recorded in the bucket; past it produce gets a
    /// retriable error. Also bounds the memory held by pending uploads.
    pub max_pending_bytes: usize,
    /// `silt.tail.max.bytes`: recorded bytes not yet in a segment object before one is cut.
    pub tail_max_bytes: u64,
    /// `silt.tail.max.ms`: the longest recorded data stays out of a segment object.
    pub tail_max_ms: u64,
    /// Recorded extents (WAL-object pieces) a partition's tail may hold before it is archived:
    /// a new leader replays the tail with one ranged GET per extent, so this bounds takeover
    /// time; lower is a faster failover for more (and smaller) segment objects.
    pub tail_max_extents: usize,
    /// How often segments are archived, local copies evicted and retention applied.
    pub archive_interval_ms: u64,
    /// Unreferenced WAL objects and deleted segment objects are removed after this long.
    pub gc_grace_ms: u64,
    /// Segment objects larger than this are uploaded in parts of this size.
    pub multipart_bytes: usize,
    pub cache_memory_bytes: usize,
    pub cache_disk_bytes: usize,
    /// Concurrent GETs for reads from the bucket (catch-up consumers).
    pub read_concurrency: usize,
    pub readahead_blocks: u64,
    /// The longest one Fetch waits for the bucket (Kafka's `remote.fetch.max.timeout.ms`):
    /// partitions whose read from the bucket is not done by then are answered
    /// KAFKA_STORAGE_ERROR (retriable for every client) and the rest of the response goes out.
    pub remote_fetch_max_wait_ms: u64,
}

impl Default for TieringSettings {
    fn default() -> Self {
        TieringSettings {
            wal_max_delay_ms: 250,
            wal_acks_all_delay_ms: 5,
            wal_object_bytes: 8 * 1024 * 1024,
            upload_concurrency: 4,
            max_pending_bytes: 256 * 1024 * 1024,
            tail_max_bytes: 64 * 1024 * 1024,
            tail_max_ms: 300_000,
            tail_max_extents: 64,
            archive_interval_ms: 250,
            gc_grace_ms: 600_000,
            multipart_bytes: 16 * 1024 * 1024,
            cache_memory_bytes: 64 * 1024 * 1024,
            cache_disk_bytes: 1024 * 1024 * 1024,
            read_concurrency: 8,
            readahead_blocks: 4,
            remote_fetch_max_wait_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Broker-wide defaults for topic configs (Kafka's `log.*` settings).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LogDefaults {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub message_max_bytes: usize,
    #[serde(with = "timestamp_type")]
    pub message_timestamp_type: TimestampType,
    pub retention_check_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalSettings {
    /// How often dirty segments are fsynced so older WAL files can be removed.
    pub checkpoint_interval_ms: u64,
    /// Checkpoint early once this many bytes were written since the last one.
    pub checkpoint_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9092".into(),
            advertised_listener: None,
            listeners: Vec::new(),
            tls: TlsSettings::default(),
            sasl: SaslSettings::default(),
            authorizer: AuthorizerSettings::default(),
            data_dir: PathBuf::from("./silt-data"),
            node_id: 1,
            metadata: "embedded".into(),
            etcd: EtcdSettings::default(),
            object_store: None,
            admin_listen: "127.0.0.1:9095".into(),
            admin_token_file: None,
            log_format: LogFormat::Text,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            socket_request_max_bytes: 100 * 1024 * 1024,
            max_decompressed_batch_bytes: 64 * 1024 * 1024,
            producer_id_expiration_ms: 86_400_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: 10_000,
            offsets_retention_minutes: 10_080,
            offset_metadata_max_bytes: 4_096,
            shutdown_timeout_ms: 25_000,
            log: LogDefaults::default(),
            wal: WalSettings::default(),
            tiering: TieringSettings::default(),
            cluster: ClusterSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl Default for LogDefaults {
    fn default() -> Self {
        LogDefaults {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            message_max_bytes: 1024 * 1024 + 12,
            message_timestamp_type: TimestampType::CreateTime,
            retention_check_interval_ms: 30_000,
        }
    }
}

impl Default for WalSettings {
    fn default() -> Self {
        WalSettings {
            checkpoint_interval_ms: 10_000,
            checkpoint_bytes: 256 * 1024 * 1024,
        }
    }
}

/// [`Config::expand_env`] on one value, `path` naming it in errors.
fn expand_value(
    value: &mut serde_json::Value,
    lookup: &impl Fn(&str) -> Option<String>,
    path: &str,
) -> anyhow::Result<()> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains("${env:") => *s = expand_str(s, lookup, path)?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, lookup, &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                expand_value(item, lookup, &path)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(
    s: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    path: &str,
) -> anyhow::Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "${env:".len()..];
        let end = after
            .find('}')
            .ok_or_else(|| anyhow::anyhow!("{path}: unterminated ${{env:...}} in {s:?}"))?;
        let name = &after[..end];
        anyhow::ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{path}: {name:?} is not an environment variable name"
        );
        let value = lookup(name).ok_or_else(|| {
            anyhow::anyhow!("{path} refers to ${{env:{name}}}, but {name} is not set")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

mod timestamp_type {
    use super::TimestampType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &TimestampType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match t {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TimestampType, D::Error> {
        match String::deserialize(d)?.as_str() {
            "CreateTime" => Ok(TimestampType::CreateTime),
            "LogAppendTime" => Ok(TimestampType::LogAppendTime),
            other => Err(serde::de::Error::custom(format!(
                "message_timestamp_type must be CreateTime or LogAppendTime, got {other:?}"
            ))),
        }
    }
}

impl Config {
    /// The first listener's advertised address.
    pub fn advertised(&self) -> String {
        self.listeners()[0].advertised().to_string()
    }

    /// The listeners: `listeners`, or one PLAINTEXT listener from `listen` and
    /// `advertised_listener`.
    pub fn listeners(&self) -> Vec<ListenerSettings> {
        if !self.listeners.is_empty() {
            return self.listeners.clone();
        }
        vec![ListenerSettings {
            name: "PLAINTEXT".into(),
            listen: self.listen.clone(),
            advertised: self.advertised_listener.clone(),
            protocol: SecurityProtocol::Plaintext,
        }]
    }

    pub fn object_store_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.object_store {
            return Ok(url.clone());
        }
        let dir = std::path::absolute(self.data_dir.join("objects"))?;
        Ok(format!("file://{}", dir.display()))
    }

    /// Replaces every `${env:NAME}` in a string setting with the environment variable `NAME`
    /// (the syntax of Kafka's EnvVarConfigProvider). A config file shared by every pod (a
    /// Kubernetes ConfigMap) can then name per-pod values, such as the pod's own name in an
    /// advertised address, and secrets, such as SASL passwords, without holding them. A
    /// reference to a variable that is not set is an error that names it.
    pub fn expand_env(self, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let mut value = serde_json::to_value(&self)?;
        expand_value(&mut value, &lookup, "")?;
        Ok(serde_json::from_value(value)?)
    }

    /// The configuration with secrets (SASL passwords) replaced, for printing.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        for password in c.sasl.users.values_mut() {
            *password = "<redacted>".into();
        }
        if let Some(password) = c.etcd.password.as_mut() {
            *password = "<redacted>".into();
        }
        c
    }

    /// Whether the metadata store is shared with other brokers (etcd), not embedded.
    pub fn clustered(&self) -> bool {
        self.metadata != "embedded"
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.node_id >= 0, "node_id must be non-negative");
        anyhow::ensure!(
            self.shutdown_timeout_ms >= 1_000,
            "shutdown_timeout_ms must be at least 1000"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.telemetry.trace_sample_ratio),
            "telemetry.trace_sample_ratio must be between 0 and 1"
        );
        anyhow::ensure!(
            self.telemetry.lag_refresh_ms >= 100,
            "telemetry.lag_refresh_ms must be at least 100"
        );
        anyhow::ensure!(
            self.telemetry.otlp_metrics_interval_ms >= 100,
            "telemetry.otlp_metrics_interval_ms must be at least 100"
        );
        let t = &self.tiering;
        anyhow::ensure!(
            t.multipart_bytes >= 5 * 1024 * 1024,
            "tiering.multipart_bytes must be at least 5 MiB (S3's smallest part), got {}",
            t.multipart_bytes
        );
        anyhow::ensure!(
            (10..=300_000).contains(&t.remote_fetch_max_wait_ms),
            "tiering.remote_fetch_max_wait_ms must be between 10 and 300000, got {}",
            t.remote_fetch_max_wait_ms
        );
        anyhow::ensure!(
            t.upload_concurrency >= 1 && t.read_concurrency >= 1,
            "tiering.upload_concurrency and tiering.read_concurrency must be at least 1"
        );
        anyhow::ensure!(
            t.max_pending_bytes >= 1024 * 1024,
            "tiering.max_pending_bytes must be at least 1 MiB, got {}",
            t.max_pending_bytes
        );
        anyhow::ensure!(
            t.wal_max_delay_ms >= 1 && t.wal_object_bytes >= 1024,
            "tiering.wal_max_delay_ms must be at least 1 and tiering.wal_object_bytes at least 1 KiB"
        );
        anyhow::ensure!(
            (1_000..=300_000).contains(&self.cluster.lease_ttl_ms),
            "cluster.lease_ttl_ms must be between 1000 and 300000, got {}",
            self.cluster.lease_ttl_ms
        );
        anyhow::ensure!(
            self.num_partitions >= 1,
            "num_partitions must be at least 1"
        );
        anyhow::ensure!(
            self.default_replication_factor >= 1,
            "default_replication_factor must be at least 1"
        );
        if self.metadata != "embedded" {
            silt_metadata::EtcdOptions::from_url(&self.metadata).map_err(|e| {
                anyhow::anyhow!(
                    "metadata must be `embedded` or etcd[s]://host:port[,host:port][/namespace]: {e}"
                )
            })?;
            self.etcd.validate(&self.metadata)?;
        } else {
            let e = &self.etcd;
            anyhow::ensure!(
                e.username.is_none()
                    && e.password.is_none()
                    && e.ca_file.is_none()
                    && e.cert_file.is_none()
                    && e.key_file.is_none()
                    && e.server_name.is_none(),
                "[etcd] settings need an etcd:// or etcds:// metadata URL"
            );
        }
        let listeners = self.listeners();
        for (i, l) in listeners.iter().enumerate() {
            anyhow::ensure!(
                !l.name.is_empty()
                    && l.name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "listener name {:?} must be letters, digits, `_` or `-`",
                l.name
            );
            anyhow::ensure!(
                listeners[..i].iter().all(|o| o.name != l.name),
                "listener name {} is used twice",
                l.name
            );
            let (host, port) = l.advertised().rsplit_once(':').ok_or_else(|| {
                anyhow::anyhow!(
                    "advertised address {:?} of listener {} needs host:port",
                    l.advertised(),
                    l.name
                )
            })?;
            anyhow::ensure!(
                !host.is_empty(),
                "advertised address of listener {} needs a host",
                l.name
            );
            port.parse::<u16>().map_err(|_| {
                anyhow::anyhow!(
                    "advertised port {port:?} of listener {} is not a port",
                    l.name
                )
            })?;
        }
        if listeners.iter().any(|l| l.protocol.tls()) {
            anyhow::ensure!(
                self.tls.cert_file.is_some() && self.tls.key_file.is_some(),
                "SSL and SASL_SSL listeners need tls.cert_file and tls.key_file"
            );
        }
        anyhow::ensure!(
            self.tls.client_auth == ClientAuth::None || self.tls.client_ca_file.is_some(),
            "tls.client_auth = {:?} needs tls.client_ca_file",
            self.tls.client_auth
        );
        anyhow::ensure!(
            self.tls.reload_interval_ms >= 100 && self.tls.handshake_timeout_ms >= 100,
            "tls.reload_interval_ms and tls.handshake_timeout_ms must be at least 100"
        );
        for m in &self.sasl.mechanisms {
            anyhow::ensure!(
                crate::security::sasl::Mechanism::parse(m).is_some(),
                "sasl.mechanisms: {m:?} is not SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN"
            );
        }
        if listeners.iter().any(|l| l.protocol.sasl()) {
            anyhow::ensure!(
                !self.sasl.mechanisms.is_empty(),
                "SASL listeners need at least one of sasl.mechanisms"
            );
        }
        anyhow::ensure!(
            (4096..=16384).contains(&self.sasl.scram_iterations),
            "sasl.scram_iterations must be between 4096 and 16384"
        );
        anyhow::ensure!(
            self.sasl.max_authentications_per_minute >= 1,
            "sasl.max_authentications_per_minute must be at least 1"
        );
        for u in &self.authorizer.super_users {
            anyhow::ensure!(
                u.split_once(':')
                    .is_some_and(|(t, n)| !t.is_empty() && !n.is_empty()),
                "authorizer.super_users: {u:?} is not a principal like User:admin"
            );
        }
        for level in [&self.authorizer.log_denied, &self.authorizer.log_allowed] {
            crate::security::acl::parse_level(level)?;
        }
        anyhow::ensure!(
            self.authorizer.refresh_ms >= 100,
            "authorizer.refresh_ms must be at least 100"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_tiering_settings_are_explained() {
        Config::default().validate().unwrap();
        let mut c = Config::default();
        c.tiering.multipart_bytes = 1024;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("multipart_bytes"), "{err}");
        let mut c = Config::default();
        c.tiering.upload_concurrency = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn etcd_settings_are_checked_together_and_the_password_is_never_printed() {
        let with = |metadata: &str, etcd: EtcdSettings| Config {
            metadata: metadata.into(),
            etcd,
            ..Config::default()
        };
        let ca = || Some(PathBuf::from("/etc/ca.pem"));
        let err = |c: Config| c.validate().unwrap_err().to_string();
        assert!(err(with("etcds://e:2379", EtcdSettings::default())).contains("ca_file"));
        let tls_on_plain = EtcdSettings {
            ca_file: ca(),
            ..Default::default()
        };
        assert!(err(with("etcd://e:2379", tls_on_plain.clone())).contains("etcds://"));
        assert!(err(with("embedded", tls_on_plain.clone())).contains("etcd"));
        // Any one [etcd] setting on `embedded` is a mistake worth saying, not ignoring.
        for lone in [
            EtcdSettings {
                password: Some("p".into()),
                ..Default::default()
            },
            EtcdSettings {
                cert_file: ca(),
                ..Default::default()
            },
            EtcdSettings {
                server_name: Some("etcd".into()),
                ..Default::default()
            },
        ] {
            assert!(err(with("embedded", lone)).contains("etcd:// or etcds://"));
        }
        let half_identity = EtcdSettings {
            ca_file: ca(),
            cert_file: ca(),
            ..Default::default()
        };
        assert!(err(with("etcds://e:2379", half_identity)).contains("key_file"));
        let user_without_password = EtcdSettings {
            username: Some("silt".into()),
            ..Default::default()
        };
        assert!(err(with("etcd://e:2379", user_without_password)).contains("password"));
        let good = with(
            "etcds://e:2379/ns",
            EtcdSettings {
                username: Some("silt".into()),
                password: Some("hunter2".into()),
                ..tls_on_plain
            },
        );
        good.validate().unwrap();
        assert!(!format!("{good:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&good.redacted())
            .unwrap()
            .contains("hunter2"));
        // A CA file that cannot be read is named when the broker connects.
        let e = good.etcd.options(&good.metadata).unwrap_err().to_string();
        assert!(e.contains("etcd.ca_file /etc/ca.pem"), "{e}");
    }

    #[test]
    fn env_references_are_expanded_in_every_string_setting() {
        let env = |name: &str| match name {
            "POD_NAME" => Some("silt-2".to_string()),
            "ADMIN_PASSWORD" => Some("s3cret".to_string()),
            _ => None,
        };
        let mut c = Config {
            listeners: vec![ListenerSettings {
                name: "INTERNAL".into(),
                listen: "0.0.0.0:9092".into(),
                advertised: Some("${env:POD_NAME}.silt-headless.kafka.svc:9092".into()),
                protocol: SecurityProtocol::SaslSsl,
            }],
            object_store: Some("s3://bucket/${env:POD_NAME}/x-${env:POD_NAME}".into()),
            ..Config::default()
        };
        c.sasl
            .users
            .insert("admin".into(), "${env:ADMIN_PASSWORD}".into());
        let c = c.expand_env(env).unwrap();
        assert_eq!(
            c.listeners[0].advertised(),
            "silt-2.silt-headless.kafka.svc:9092"
        );
        assert_eq!(c.sasl.users["admin"], "s3cret");
        assert_eq!(
            c.object_store.as_deref(),
            Some("s3://bucket/silt-2/x-silt-2")
        );
        // Defaults survive the round trip unchanged.
        let d = Config::default().expand_env(env).unwrap();
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::to_value(Config::default()).unwrap()
        );

        let c = Config {
            advertised_listener: Some("${env:MISSING}:9092".into()),
            ..Config::default()
        };
        let err = c.expand_env(env).unwrap_err().to_string();
        assert!(
            err.contains("advertised_listener") && err.contains("MISSING is not set"),
            "{err}"
        );
        let c = Config {
            metadata: "etcd://${env:POD_NAME".into(),
            ..Config::default()
        };
        let err = c.expand_env(env).unwrap_err().to_string();
        assert!(err.contains("unterminated"), "{err}");
    }
}
