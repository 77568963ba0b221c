//! TLS listeners, SASL (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN), client-certificate principals
//! and ACLs, end to end: the Java client (kafka-clients 3.x and 4.x) and librdkafka (the
//! `rdkafka` crate on Debian's librdkafka 2.0.2) over real TLS against a real `silt`, with
//! certificates each test makes for itself ([`TestPki`]).
//!
//! Every broker here has three listeners, configured in a silt.toml named by `SILT_CONFIG`:
//! INTERNAL (PLAINTEXT, the fixture's port), SASL (SASL_SSL) and MTLS (SSL), all on 127.0.0.1.
//! `admin` / `admin-secret` is created at startup and is a super user.

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use silt_e2e::kafka::{check_keyed, create_topic_with, produce_keyed, Got};
use silt_e2e::pki::TestPki;
use silt_e2e::{free_port, http_get, http_request, java_client, run, Silt};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN: (&str, &str) = ("admin", "admin-secret");

// ------------------------------------------------------------------------------ the broker

/// What differs between the brokers of these tests.
struct Options {
    /// `[tls] client_auth`: none | requested | required.
    client_auth: &'static str,
    /// `[authorizer] enabled`.
    authorizer: bool,
    super_users: Vec<&'static str>,
    /// `[sasl] connections_max_reauth_ms`.
    reauth_ms: u64,
    /// `[tls] reload_interval_ms`.
    reload_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client_auth: "none",
            authorizer: true,
            super_users: vec!["User:admin"],
            reauth_ms: 0,
            reload_ms: 10_000,
        }
    }
}

/// A broker with TLS, SASL and (usually) ACLs, and the PKI it uses. When a test panics, the
/// broker's log is printed as this is dropped.
struct Secure {
    silt: Silt,
    pki: TestPki,
    sasl_port: u16,
    ssl_port: u16,
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

impl Secure {
    fn start(options: Options) -> Secure {
        Self::start_with(TestPki::new(), options)
    }

    fn start_with(pki: TestPki, options: Options) -> Secure {
        let plain = free_port();
        let mut sasl = free_port();
        while sasl == plain {
            sasl = free_port();
        }
        let mut ssl = free_port();
        while ssl == plain || ssl == sasl {
            ssl = free_port();
        }
        let super_users: Vec<String> = options.super_users.iter().map(|u| toml_str(u)).collect();
        let config = format!(
            r#"[[listeners]]
name = "INTERNAL"
listen = "127.0.0.1:{plain}"
protocol = "PLAINTEXT"

[[listeners]]
name = "SASL"
listen = "127.0.0.1:{sasl}"
advertised = "127.0.0.1:{sasl}"
protocol = "SASL_SSL"

[[listeners]]
name = "MTLS"
listen = "127.0.0.1:{ssl}"
protocol = "SSL"

[tls]
cert_file = {cert}
key_file = {key}
client_ca_file = {ca}
client_auth = {client_auth}
reload_interval_ms = {reload}

[sasl]
mechanisms = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
users = {{ admin = "admin-secret" }}
connections_max_reauth_ms = {reauth}
failed_authentication_delay_ms = 100

[authorizer]
enabled = {authorizer}
super_users = [{super_users}]
allow_everyone_if_no_acl_found = false
log_denied = "info"
"#,
            cert = toml_str(path_str(&pki.server_cert)),
            key = toml_str(path_str(&pki.server_key)),
            ca = toml_str(path_str(&pki.ca_pem)),
            client_auth = toml_str(options.client_auth),
            reload = options.reload_ms,
            reauth = options.reauth_ms,
            authorizer = options.authorizer,
            super_users = super_users.join(", "),
        );
        let path = pki.dir().join("silt.toml");
        std::fs::write(&path, &config).expect("write silt.toml");
        let silt = match Silt::try_start_on(plain, &[("SILT_CONFIG", path_str(&path))]) {
            Ok(silt) => silt,
            Err(e) => panic!("broker did not start with this silt.toml:\n{config}\n{e:#}"),
        };
        Secure {
            silt,
            pki,
            sasl_port: sasl,
            ssl_port: ssl,
        }
    }

    /// The PLAINTEXT listener.
    fn plain(&self) -> String {
        self.silt.bootstrap()
    }

    /// The SASL_SSL listener.
    fn sasl(&self) -> String {
        format!("127.0.0.1:{}", self.sasl_port)
    }

    /// The SSL listener.
    fn ssl(&self) -> String {
        format!("127.0.0.1:{}", self.ssl_port)
    }

    fn assert_running(&mut self) {
        assert!(self.silt.is_running(), "the broker is still running");
    }

    // ------------------------------------------------------------------------ Java

    /// Java client settings for SASL_SSL as `user` with `mechanism`.
    fn java_sasl(&self, user: &str, password: &str, mechanism: &str) -> PathBuf {
        let module = if mechanism == "PLAIN" {
            "org.apache.kafka.common.security.plain.PlainLoginModule"
        } else {
            "org.apache.kafka.common.security.scram.ScramLoginModule"
        };
        write_properties(
            self.pki.dir(),
            &[
                ("security.protocol", "SASL_SSL".into()),
                ("sasl.mechanism", mechanism.into()),
                (
                    "sasl.jaas.config",
                    format!(r#"{module} required username="{user}" password="{password}";"#),
                ),
                ("ssl.truststore.type", "PEM".into()),
                ("ssl.truststore.location", path_str(&self.pki.ca_pem).into()),
            ],
        )
    }

    /// Java client settings for SSL with a client certificate (PEM given inline: a PEM key
    /// store file would need an encrypted key).
    fn java_mtls(&self, cert: &Path, key: &Path) -> PathBuf {
        let read = |p: &Path| std::fs::read_to_string(p).expect("read PEM");
        write_properties(
            self.pki.dir(),
            &[
                ("security.protocol", "SSL".into()),
                ("ssl.truststore.type", "PEM".into()),
                ("ssl.truststore.location", path_str(&self.pki.ca_pem).into()),
                ("ssl.keystore.type", "PEM".into()),
                ("ssl.keystore.certificate.chain", read(cert).trim().into()),
                ("ssl.keystore.key", read(key).trim().into()),
            ],
        )
    }

    /// Runs the Java client, which must succeed; returns its JSON.
    fn java_ok(&self, major: u32, props: &Path, args: &[&str]) -> Value {
        let r = java(major, props, args);
        assert!(
            r.ok && r.json["ok"] == true,
            "java {major} {args:?} failed after {:?}:\n{}\n{}",
            r.took,
            r.out,
            tail(&r.err, 6000)
        );
        r.json
    }

    /// Runs the Java client, which must fail with `exception` (a class name) in its error,
    /// within `JAVA_REFUSAL`.
    fn java_refused(&self, major: u32, props: &Path, args: &[&str], exception: &str) -> String {
        let r = java(major, props, args);
        let error = r.json["error"].as_str().unwrap_or_default().to_string();
        assert!(
            !r.ok && r.json["ok"] == false && error.contains(exception),
            "java {major} {args:?}: expected {exception}, got after {:?}:\n{}\n{}",
            r.took,
            r.out,
            tail(&r.err, 6000)
        );
        assert!(
            r.took < JAVA_REFUSAL,
            "java {major} {args:?} took {:?} to be refused: {error}",
            r.took
        );
        error
    }

    // -------------------------------------------------------------------- librdkafka

    /// librdkafka settings for SASL_SSL.
    fn rd_sasl(&self, user: &str, password: &str, mechanism: &str) -> Vec<Setting> {
        settings(&[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanisms", mechanism),
            ("sasl.username", user),
            ("sasl.password", password),
            ("ssl.ca.location", path_str(&self.pki.ca_pem)),
        ])
    }

    /// librdkafka settings for SSL, with a client certificate or without.
    fn rd_ssl(&self, client: Option<&(PathBuf, PathBuf)>) -> Vec<Setting> {
        let mut s = settings(&[
            ("security.protocol", "ssl"),
            ("ssl.ca.location", path_str(&self.pki.ca_pem)),
        ]);
        if let Some((cert, key)) = client {
            s.push(("ssl.certificate.location".into(), path_str(cert).into()));
            s.push(("ssl.key.location".into(), path_str(key).into()));
        }
        s
    }
}

impl Drop for Secure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- broker log ----\n{}\n---- end of broker log ----",
                self.silt.log()
            );
        }
    }
}

// ------------------------------------------------------------------------------ Java

/// A refused Java client (JVM start included) answers within this.
const JAVA_REFUSAL: Duration = Duration::from_secs(45);

static FILES: AtomicUsize = AtomicUsize::new(0);

/// A Java .properties file (`SILT_JAVA_CLIENT_CONFIG`) with `entries`.
fn write_properties(dir: &Path, entries: &[(&str, String)]) -> PathBuf {
    let mut text = String::new();
    for (k, v) in entries {
        let v = v
            .replace('\\', "\\\\")
            .replace('\r', "")
            .replace('\n', "\\n");
        text.push_str(&format!("{k}={v}\n"));
    }
    let n = FILES.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("client-{n}.properties"));
    std::fs::write(&path, text).expect("write properties");
    path
}

struct JavaRun {
    ok: bool,
    json: Value,
    out: String,
    err: String,
    took: Duration,
}

/// `SiltJavaClient ARGS` on kafka-clients `major`, with the settings in `props`.
fn java(major: u32, props: &Path, args: &[&str]) -> JavaRun {
    let mut cmd = java_client(major);
    cmd.args(args)
        .env("SILT_JAVA_CLIENT_CONFIG", props)
        .env("SILT_JAVA_TIMEOUT_MS", "15000")
        .stdin(Stdio::null());
    let started = Instant::now();
    let (ok, out, err) = run(&mut cmd, Duration::from_secs(240)).expect("java client ran");
    let json = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    JavaRun {
        ok,
        json,
        out,
        err,
        took: started.elapsed(),
    }
}

/// The last `n` bytes (or so) of `s`.
fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `acl-describe` output as (principal, resource type, pattern type, name, operation,
/// permission) rows.
fn acl_rows(json: &Value) -> BTreeSet<(String, String, String, String, String, String)> {
    json["acls"]
        .as_array()
        .expect("acls array")
        .iter()
        .map(|a| {
            let f = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (
                f("principal"),
                f("resourceType"),
                f("patternType"),
                f("name"),
                f("operation"),
                f("permission"),
            )
        })
        .collect()
}

fn acl(
    principal: &str,
    resource: &str,
    pattern: &str,
    name: &str,
    operation: &str,
    permission: &str,
) -> (String, String, String, String, String, String) {
    (
        principal.into(),
        resource.into(),
        pattern.into(),
        name.into(),
        operation.into(),
        permission.into(),
    )
}

// ------------------------------------------------------------------------ librdkafka

/// One librdkafka setting.
type Setting = (String, String);

fn settings(pairs: &[(&str, &str)]) -> Vec<Setting> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn refs(s: &[Setting]) -> Vec<(&str, &str)> {
    s.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// An error librdkafka reported (error_cb): its code and text.
type Reported = (Option<RDKafkaErrorCode>, String);

/// A client context that keeps librdkafka's global errors (error_cb) instead of logging them.
#[derive(Clone, Default)]
struct Recorder {
    errors: Arc<Mutex<Vec<Reported>>>,
}

impl Recorder {
    fn seen(&self) -> Vec<Reported> {
        self.errors.lock().expect("recorder lock").clone()
    }
}

impl ClientContext for Recorder {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors
            .lock()
            .expect("recorder lock")
            .push((error.rdkafka_error_code(), format!("{error}: {reason}")));
    }
}

impl ConsumerContext for Recorder {}

fn rd_config(bootstrap: &str, extra: &[Setting]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in extra {
        config.set(k, v);
    }
    config
}

/// What [`rd_consume`] read.
struct Consumed {
    records: Vec<Got>,
    /// Consumer errors and librdkafka's global errors.
    errors: Vec<String>,
    /// Records the partitions hold (high minus low watermarks): more than were read would
    /// mean extra records.
    held: i64,
}

/// Reads `partitions` of `topic` from the beginning (assign, `group.id = group`, no commits)
/// until `count` records arrived or `within` passed. Errors are kept, not fatal.
fn rd_consume(
    bootstrap: &str,
    extra: &[Setting],
    topic: &str,
    partitions: i32,
    group: &str,
    count: usize,
    within: Duration,
) -> Consumed {
    let recorder = Recorder::default();
    let mut config = rd_config(bootstrap, extra);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    let consumer: BaseConsumer<Recorder> = config
        .create_with_context(recorder.clone())
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + within;
    let mut records = Vec::with_capacity(count);
    let mut errors = Vec::new();
    while records.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => records.push(Got {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| k.to_vec()),
                value: m.payload().map(|v| v.to_vec()),
                timestamp: m.timestamp().to_millis(),
                headers: Vec::new(),
            }),
            Some(Err(e)) => errors.push(e.to_string()),
            None => {}
        }
    }
    let mut held = 0;
    for p in 0..partitions {
        match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
            Ok((low, high)) => held += high - low,
            Err(e) => errors.push(format!("watermarks of {topic}-{p}: {e}")),
        }
    }
    errors.extend(recorder.seen().into_iter().map(|(_, e)| e));
    Consumed {
        records,
        errors,
        held,
    }
}

/// Consumes and checks exactly records `0..n` of [`produce_keyed`].
fn rd_consume_exactly(
    bootstrap: &str,
    extra: &[Setting],
    topic: &str,
    partitions: i32,
    group: &str,
    n: usize,
) {
    let c = rd_consume(
        bootstrap,
        extra,
        topic,
        partitions,
        group,
        n,
        Duration::from_secs(60),
    );
    assert_eq!(
        c.records.len(),
        n,
        "{topic}: consumed {} of {n}; errors: {:?}",
        c.records.len(),
        c.errors
    );
    assert_eq!(c.held, n as i64, "{topic} holds exactly {n} records");
    check_keyed(&c.records, partitions, n);
}

/// Sends one record to partition 0 of `topic` (message.timeout.ms 10 s) and waits for its
/// delivery report: Ok, or the error; and librdkafka's global errors.
async fn rd_send_one(
    bootstrap: &str,
    extra: &[Setting],
    topic: &str,
) -> (Result<(), KafkaError>, Vec<Reported>) {
    let recorder = Recorder::default();
    let mut config = rd_config(bootstrap, extra);
    config
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "0");
    let producer: FutureProducer<Recorder> = config
        .create_with_context(recorder.clone())
        .expect("producer");
    let queued = producer
        .send_result(FutureRecord::to(topic).partition(0).key("k").payload("v"))
        .map_err(|(e, _)| e);
    let result = match queued {
        Err(e) => Err(e),
        Ok(delivery) => match tokio::time::timeout(Duration::from_secs(30), delivery).await {
            Err(_) => panic!("{topic}: no delivery report within 30 s"),
            Ok(Err(_)) => panic!("{topic}: delivery future canceled"),
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err((e, _)))) => Err(e),
        },
    };
    (result, recorder.seen())
}

/// A librdkafka client with `extra` must get nowhere, promptly: its metadata request fails
/// within 5 s and a record is not delivered (message.timeout.ms 10 s); librdkafka reports at
/// least one error. Returns those errors.
async fn rd_refused(bootstrap: &str, extra: &[Setting], what: &str) -> Vec<Reported> {
    let started = Instant::now();
    let recorder = Recorder::default();
    let producer: FutureProducer<Recorder> = rd_config(bootstrap, extra)
        .create_with_context(recorder.clone())
        .expect("producer");
    let metadata = producer
        .client()
        .fetch_metadata(None, Duration::from_secs(5));
    assert!(
        metadata.is_err(),
        "{what}: metadata was fetched ({} brokers)",
        metadata.map(|m| m.brokers().len()).unwrap_or_default()
    );
    drop(producer);
    let (sent, errors) = rd_send_one(bootstrap, extra, "refused").await;
    assert!(sent.is_err(), "{what}: a record was delivered");
    let mut all = recorder.seen();
    all.extend(errors);
    assert!(!all.is_empty(), "{what}: librdkafka reported no error");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{what}: refusal took {:?}",
        started.elapsed()
    );
    all
}

/// `openssl s_client` to 127.0.0.1:`port` (SNI localhost, trusting `ca`): the server
/// certificate's subject (`CN=silt-a`) and whether it verified.
fn server_certificate(port: u16, ca: &Path) -> (String, bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", "localhost", "-CAfile"])
        .arg(ca)
        .stdin(Stdio::null());
    let (_, out, err) = run(&mut cmd, Duration::from_secs(20)).expect("openssl s_client ran");
    // OpenSSL 3 prints `subject=CN = silt-a`, 1.1 `subject=/CN=silt-a`.
    let subject = out
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .map(|s| s.replace(' ', "").trim_start_matches('/').to_string())
        .unwrap_or_default();
    let verified = out.contains("Verify return code: 0 (ok)");
    (subject, verified, format!("{out}\n{err}"))
}

/// Connects to `addr` and sends a Kafka ApiVersions v0 request in the clear (correlation id
/// 7), then reads for up to 15 s: (bytes received, whether the server closed the connection,
/// how long until it did or the 15 s passed).
fn plaintext_api_versions(addr: &str) -> (Vec<u8>, bool, Duration) {
    use std::io::{Read, Write};
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let client_id = b"silt-e2e";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // v0
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut request = (body.len() as i32).to_be_bytes().to_vec();
    request.extend_from_slice(&body);
    stream.write_all(&request).expect("send request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(15) {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true, started.elapsed()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                // A whole Kafka response: stop reading.
                if got.len() >= 4 {
                    let len = i32::from_be_bytes([got[0], got[1], got[2], got[3]]);
                    if len >= 0 && got.len() >= 4 + len as usize {
                        return (got, false, started.elapsed());
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true, started.elapsed()),
        }
    }
    (got, false, started.elapsed())
}

/// Whether `got` is a Kafka response to [`plaintext_api_versions`].
fn is_kafka_response(got: &[u8]) -> bool {
    got.len() >= 8 && got[4..8] == 7i32.to_be_bytes()
}

// ------------------------------------------------------------------------------ tests

/// a. The Java client over SASL_SSL as the super user `admin`, with the authorizer on: the
/// full round trip (create, produce, consume with exact count and order, offsetsForTimes,
/// endOffsets, delete) with SCRAM-SHA-512 (4.x), SCRAM-SHA-256 (3.x) and PLAIN (4.x).
#[test]
fn java_round_trip_over_sasl_ssl_as_super_user() {
    let secure = Secure::start(Options::default());
    for (major, mechanism) in [(4, "SCRAM-SHA-512"), (3, "SCRAM-SHA-256"), (4, "PLAIN")] {
        let props = secure.java_sasl(ADMIN.0, ADMIN.1, mechanism);
        let topic = format!("java{major}-{}", mechanism.to_ascii_lowercase());
        let out = secure.java_ok(major, &props, &["roundtrip", &secure.sasl(), &topic, "500"]);
        assert_eq!(out["produced"], 500, "{mechanism}: {out}");
        assert_eq!(out["consumed"], 500, "{mechanism}: {out}");
    }
}

/// b. A user created with the Java AdminClient (AlterUserScramCredentials) and given ACLs
/// (CreateAcls) produces and consumes with librdkafka over SASL_SSL SCRAM-SHA-512, exact
/// counts; DescribeUserScramCredentials and DescribeAcls show what was made; a topic the
/// user has no ACL for stays closed to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_scram_user_created_by_admin_client_with_acls() {
    let secure = Secure::start(Options::default());
    let admin = secure.java_sasl(ADMIN.0, ADMIN.1, "SCRAM-SHA-512");
    let sasl = secure.sasl();
    let up = secure.java_ok(
        4,
        &admin,
        &[
            "scram-upsert",
            &sasl,
            "alice",
            "alice-secret",
            "SCRAM-SHA-512",
            "4096",
        ],
    );
    assert_eq!(up["user"], "alice");
    secure.java_ok(
        4,
        &admin,
        &[
            "acl-create",
            &sasl,
            "User:alice",
            "TOPIC",
            "LITERAL",
            "alice-orders",
            "CREATE,WRITE,READ,DESCRIBE",
            "ALLOW",
        ],
    );
    secure.java_ok(
        4,
        &admin,
        &[
            "acl-create",
            &sasl,
            "User:alice",
            "GROUP",
            "LITERAL",
            "alice-group",
            "READ",
        ],
    );
    secure.java_ok(4, &admin, &["create-topic", &sasl, "not-alices", "1"]);

    // Every user (the request's `users` is null), then the two by name.
    for named in [None, Some("admin,alice")] {
        let mut args = vec!["scram-describe", sasl.as_str()];
        args.extend(named);
        let users = secure.java_ok(4, &admin, &args);
        assert_eq!(
            users["users"],
            json!({
                "admin": ["SCRAM-SHA-256:4096", "SCRAM-SHA-512:4096"],
                "alice": ["SCRAM-SHA-512:4096"],
            }),
            "{args:?}: alice has the credential made for her, the admin from [sasl] users has \
             both SCRAM credentials"
        );
    }
    let acls = secure.java_ok(4, &admin, &["acl-describe", &sasl, "User:alice"]);
    let want: BTreeSet<_> = ["CREATE", "WRITE", "READ", "DESCRIBE"]
        .iter()
        .map(|op| {
            acl(
                "User:alice",
                "TOPIC",
                "LITERAL",
                "alice-orders",
                op,
                "ALLOW",
            )
        })
        .chain([acl(
            "User:alice",
            "GROUP",
            "LITERAL",
            "alice-group",
            "READ",
            "ALLOW",
        )])
        .collect();
    assert_eq!(acl_rows(&acls), want, "{acls}");

    let alice = secure.rd_sasl("alice", "alice-secret", "SCRAM-SHA-512");
    create_topic_with(&sasl, "alice-orders", 3, &[], &refs(&alice)).await;
    produce_keyed(&sasl, "alice-orders", 3, 0..300, &refs(&alice)).await;
    rd_consume_exactly(&sasl, &alice, "alice-orders", 3, "alice-group", 300);

    let (sent, errors) = rd_send_one(&sasl, &alice, "not-alices").await;
    match sent {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)) => {}
        result => panic!("alice wrote to not-alices: {result:?}; errors {errors:?}"),
    }
}

/// c. mTLS: on the SSL listener with client_auth = "required" the principal is the
/// certificate's subject. The Java AdminClient with `CN=silt-admin` (a super user) creates the
/// topic and ACLs for `User:CN=mtls-client` only; librdkafka with that certificate produces and
/// consumes (exact counts); the same CA's `CN=other-client` is refused the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_principal_is_the_certificate_subject() {
    let secure = Secure::start(Options {
        client_auth: "required",
        super_users: vec!["User:admin", "User:CN=silt-admin"],
        ..Options::default()
    });
    let ssl = secure.ssl();
    let (admin_cert, admin_key) = secure.pki.client("silt-admin", false);
    let admin = secure.java_mtls(&admin_cert, &admin_key);
    secure.java_ok(4, &admin, &["create-topic", &ssl, "mtls-orders", "2"]);
    secure.java_ok(
        4,
        &admin,
        &[
            "acl-create",
            &ssl,
            "User:CN=mtls-client",
            "TOPIC",
            "LITERAL",
            "mtls-orders",
            "WRITE,READ",
        ],
    );
    secure.java_ok(
        4,
        &admin,
        &[
            "acl-create",
            &ssl,
            "User:CN=mtls-client",
            "GROUP",
            "LITERAL",
            "mtls-group",
            "READ",
        ],
    );
    let acls = secure.java_ok(4, &admin, &["acl-describe", &ssl]);
    assert_eq!(
        acl_rows(&acls),
        BTreeSet::from([
            acl(
                "User:CN=mtls-client",
                "TOPIC",
                "LITERAL",
                "mtls-orders",
                "WRITE",
                "ALLOW"
            ),
            acl(
                "User:CN=mtls-client",
                "TOPIC",
                "LITERAL",
                "mtls-orders",
                "READ",
                "ALLOW"
            ),
            acl(
                "User:CN=mtls-client",
                "GROUP",
                "LITERAL",
                "mtls-group",
                "READ",
                "ALLOW"
            ),
        ]),
        "{acls}"
    );

    let good = secure.rd_ssl(Some(&secure.pki.client("mtls-client", false)));
    produce_keyed(&ssl, "mtls-orders", 2, 0..200, &refs(&good)).await;
    rd_consume_exactly(&ssl, &good, "mtls-orders", 2, "mtls-group", 200);

    let other = secure.rd_ssl(Some(&secure.pki.client("other-client", false)));
    let (sent, errors) = rd_send_one(&ssl, &other, "mtls-orders").await;
    match sent {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)) => {}
        result => panic!("CN=other-client wrote to mtls-orders: {result:?}; errors {errors:?}"),
    }
    let metadata = rd_config(&ssl, &other)
        .create::<BaseConsumer>()
        .expect("client")
        .fetch_metadata(Some("mtls-orders"), Duration::from_secs(10))
        .expect("CN=other-client is connected and gets metadata");
    let topic = &metadata.topics()[0];
    assert_eq!(
        topic.error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "metadata of mtls-orders for CN=other-client"
    );
    assert!(topic.partitions().is_empty(), "no partitions shown");
    let c = rd_consume(
        &ssl,
        &other,
        "mtls-orders",
        2,
        "mtls-group",
        1,
        Duration::from_secs(5),
    );
    assert!(
        c.records.is_empty(),
        "CN=other-client read mtls-orders: {} records",
        c.records.len()
    );
}

/// d. Wrong passwords and unknown users are refused promptly (Java:
/// SaslAuthenticationException; librdkafka: an authentication error) for SCRAM and PLAIN, and
/// the broker goes on serving a good client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_passwords_are_refused_and_the_broker_keeps_serving() {
    let mut secure = Secure::start(Options::default());
    let sasl = secure.sasl();
    for (major, user, password, mechanism) in [
        (4, "admin", "wrong", "SCRAM-SHA-512"),
        (3, "admin", "wrong", "SCRAM-SHA-256"),
        (4, "admin", "wrong", "PLAIN"),
        (4, "mallory", "admin-secret", "SCRAM-SHA-512"),
    ] {
        let props = secure.java_sasl(user, password, mechanism);
        secure.java_refused(
            major,
            &props,
            &["send", &sasl, "anything", "1"],
            "SaslAuthenticationException",
        );
    }
    for (user, password, mechanism) in [
        ("admin", "wrong", "SCRAM-SHA-512"),
        ("admin", "wrong", "SCRAM-SHA-256"),
        ("admin", "wrong", "PLAIN"),
        ("mallory", "x", "SCRAM-SHA-512"),
    ] {
        let what = format!("librdkafka {user}/{password} {mechanism}");
        let errors = rd_refused(&sasl, &secure.rd_sasl(user, password, mechanism), &what).await;
        assert!(
            errors
                .iter()
                .any(|(code, _)| *code == Some(RDKafkaErrorCode::Authentication)),
            "{what}: expected an authentication error, got {errors:?}"
        );
    }
    secure.assert_running();
    let admin = secure.rd_sasl(ADMIN.0, ADMIN.1, "SCRAM-SHA-256");
    create_topic_with(&sasl, "after-bad-passwords", 2, &[], &refs(&admin)).await;
    produce_keyed(&sasl, "after-bad-passwords", 2, 0..50, &refs(&admin)).await;
    rd_consume_exactly(&sasl, &admin, "after-bad-passwords", 2, "g", 50);
}

/// d. On the SSL listener with client_auth = "required": an expired client certificate, one
/// from a CA the broker does not trust and none at all are refused promptly (librdkafka gets
/// no metadata and delivers nothing), and the broker goes on serving a good client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_certificates_are_refused_and_the_broker_keeps_serving() {
    let mut secure = Secure::start(Options {
        client_auth: "required",
        super_users: vec!["User:admin", "User:CN=good-client"],
        ..Options::default()
    });
    let ssl = secure.ssl();
    // Each with the TLS alert the broker answers it with, as librdkafka reports it.
    let cases = [
        (
            "an expired certificate",
            secure.rd_ssl(Some(&secure.pki.client("expired-client", true))),
            "certificate expired",
        ),
        (
            "a certificate from an untrusted CA",
            secure.rd_ssl(Some(&secure.pki.untrusted_client("rogue-client"))),
            "unknown ca",
        ),
        (
            "no certificate",
            secure.rd_ssl(None),
            "certificate required",
        ),
    ];
    for (what, settings, alert) in &cases {
        let errors = rd_refused(&ssl, settings, what).await;
        assert!(
            errors.iter().any(|(_, e)| e.contains(alert)),
            "{what}: expected the TLS alert `{alert}`, librdkafka reported {errors:?}"
        );
    }
    secure.assert_running();
    let good = secure.rd_ssl(Some(&secure.pki.client("good-client", false)));
    create_topic_with(&ssl, "after-bad-certificates", 2, &[], &refs(&good)).await;
    produce_keyed(&ssl, "after-bad-certificates", 2, 0..50, &refs(&good)).await;
    rd_consume_exactly(&ssl, &good, "after-bad-certificates", 2, "g", 50);
}

/// d + g. A client speaking plaintext Kafka to the TLS ports gets no Kafka answer and is
/// disconnected promptly (the same request on the PLAINTEXT port is answered); librdkafka with
/// security.protocol=plaintext gets no metadata; an HTTP GET to the TLS ports gets no HTTP
/// response; /healthz answers on the admin port, which listens on 127.0.0.1 only; afterwards
/// the broker still serves a TLS client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_http_on_tls_ports_get_nothing_and_admin_port_is_separate() {
    let mut secure = Secure::start(Options {
        authorizer: false,
        ..Options::default()
    });
    let (got, closed, _) = plaintext_api_versions(&secure.plain());
    assert!(
        is_kafka_response(&got) && !closed,
        "the PLAINTEXT listener answers ApiVersions: {got:?}"
    );
    for addr in [secure.sasl(), secure.ssl()] {
        let (got, closed, took) = plaintext_api_versions(&addr);
        assert!(
            !is_kafka_response(&got),
            "{addr}: a Kafka answer in the clear on a TLS port: {got:?}"
        );
        assert!(
            closed && took < Duration::from_secs(12),
            "{addr}: not closed promptly (closed {closed} after {took:?}; got {got:?})"
        );
        let plaintext = settings(&[("security.protocol", "plaintext")]);
        rd_refused(
            &addr,
            &plaintext,
            &format!("plaintext librdkafka on {addr}"),
        )
        .await;
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        match http_request(port, "GET", "/healthz", b"") {
            Ok((code, body)) => panic!(
                "{addr} answered HTTP {code}: {}",
                String::from_utf8_lossy(&body)
            ),
            Err(e) => eprintln!("{addr}: no HTTP response ({e})"),
        }
    }

    let health = http_get(secure.silt.admin_port, "/healthz");
    assert_eq!(
        health.as_ref().map(|(code, _)| *code),
        Some(200),
        "/healthz on the admin port: {health:?}"
    );
    // The admin port's listening socket is on 127.0.0.1 (0100007F in /proc/net/tcp) only.
    let want_port = format!(":{:04X}", secure.silt.admin_port);
    let mut listening = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 3 && fields[1].ends_with(&want_port) && fields[3] == "0A" {
                listening.push(fields[1].to_string());
            }
        }
    }
    assert_eq!(
        listening,
        vec![format!("0100007F{want_port}")],
        "the admin port listens on 127.0.0.1 only"
    );

    secure.assert_running();
    let anonymous = secure.rd_ssl(None);
    let ssl = secure.ssl();
    create_topic_with(&ssl, "after-plaintext", 1, &[], &refs(&anonymous)).await;
    produce_keyed(&ssl, "after-plaintext", 1, 0..20, &refs(&anonymous)).await;
    rd_consume_exactly(&ssl, &anonymous, "after-plaintext", 1, "g", 20);
}

/// e. With the authorizer on and allow_everyone_if_no_acl_found = false, a user with no ACLs
/// can create no topic, produce nothing, consume nothing and read no group offsets; after the
/// admin grants topic ACLs it can produce, consume and create its topic but still not use the
/// group; after READ on the group it can consume in the group and read its offsets.
#[test]
fn a_user_without_acls_is_refused_until_granted() {
    let secure = Secure::start(Options::default());
    let sasl = secure.sasl();
    let admin = secure.java_sasl(ADMIN.0, ADMIN.1, "SCRAM-SHA-512");
    secure.java_ok(
        4,
        &admin,
        &["scram-upsert", &sasl, "bob", "bob-secret", "SCRAM-SHA-256"],
    );
    secure.java_ok(4, &admin, &["create-topic", &sasl, "ledger,other", "3"]);
    secure.java_ok(4, &admin, &["send", &sasl, "ledger", "30"]);

    let bob = secure.java_sasl("bob", "bob-secret", "SCRAM-SHA-256");
    secure.java_refused(
        4,
        &bob,
        &["create-topic", &sasl, "bobs", "1"],
        "TopicAuthorizationException",
    );
    secure.java_refused(
        4,
        &bob,
        &["send", &sasl, "ledger", "1"],
        "TopicAuthorizationException",
    );
    secure.java_refused(
        4,
        &bob,
        &["consume", &sasl, "ledger", "1"],
        "TopicAuthorizationException",
    );
    secure.java_refused(
        4,
        &bob,
        &["group-offsets", &sasl, "ledger-readers"],
        "GroupAuthorizationException",
    );

    secure.java_ok(
        4,
        &admin,
        &[
            "acl-create",
            &sasl,
            "User:bob",
            "TOPIC",
            "LITERAL",
            "ledger",
            "READ,WRITE",
        ],
    );
    secure.java_ok(
        4,
        &admin,
        &[
            "acl-create",
            &sasl,
            "User:bob",
            "TOPIC",
            "LITERAL",
            "bobs",
            "CREATE,WRITE,READ",
        ],
    );
    secure.java_ok(4, &bob, &["send", &sasl, "ledger", "10"]);
    let read = secure.java_ok(4, &bob, &["consume", &sasl, "ledger", "40"]);
    assert_eq!(read["consumed"], 40, "{read}");
    assert_eq!(read["available"], 40, "{read}");
    secure.java_ok(4, &bob, &["create-topic", &sasl, "bobs", "2"]);
    secure.java_ok(4, &bob, &["send", &sasl, "bobs", "6"]);
    let read = secure.java_ok(4, &bob, &["consume", &sasl, "bobs", "6"]);
    assert_eq!(read["available"], 6, "{read}");
    secure.java_refused(
        4,
        &bob,
        &["send", &sasl, "other", "1"],
        "TopicAuthorizationException",
    );
    secure.java_refused(
        4,
        &bob,
        &["group-consume", &sasl, "ledger", "ledger-readers", "40"],
        "GroupAuthorizationException",
    );
    secure.java_refused(
        4,
        &bob,
        &["group-offsets", &sasl, "ledger-readers"],
        "GroupAuthorizationException",
    );

    secure.java_ok(
        4,
        &admin,
        &[
            "acl-create",
            &sasl,
            "User:bob",
            "GROUP",
            "LITERAL",
            "ledger-readers",
            "READ",
        ],
    );
    let group = secure.java_ok(
        4,
        &bob,
        &["group-consume", &sasl, "ledger", "ledger-readers", "40"],
    );
    assert_eq!(group["consumed"], 40, "{group}");
    let offsets = secure.java_ok(4, &bob, &["group-offsets", &sasl, "ledger-readers"]);
    assert_eq!(offsets["committed"], 40, "{offsets}");
    assert_eq!(offsets["partitions"], 3, "{offsets}");
}

/// f. A PREFIXED ACL on `team-a.` covers `team-a.orders`, `team-a.events` and new `team-a.*`
/// topics, not `team-b.orders`, `team-a` or `xteam-a.orders`; a LITERAL DENY wins over it;
/// DescribeAcls shows it and DeleteAcls removes it.
#[test]
fn prefixed_acls_cover_only_their_prefix() {
    let secure = Secure::start(Options::default());
    let sasl = secure.sasl();
    let admin = secure.java_sasl(ADMIN.0, ADMIN.1, "SCRAM-SHA-512");
    secure.java_ok(
        4,
        &admin,
        &[
            "scram-upsert",
            &sasl,
            "carol",
            "carol-secret",
            "SCRAM-SHA-512",
        ],
    );
    secure.java_ok(
        4,
        &admin,
        &[
            "create-topic",
            &sasl,
            "team-a.orders,team-a.events,team-b.orders,team-a,xteam-a.orders",
            "1",
        ],
    );
    let ops = "READ,WRITE,DESCRIBE,CREATE";
    secure.java_ok(
        4,
        &admin,
        &[
            "acl-create",
            &sasl,
            "User:carol",
            "TOPIC",
            "PREFIXED",
            "team-a.",
            ops,
        ],
    );
    let acls = secure.java_ok(4, &admin, &["acl-describe", &sasl, "User:carol"]);
    let want: BTreeSet<_> = ops
        .split(',')
        .map(|op| acl("User:carol", "TOPIC", "PREFIXED", "team-a.", op, "ALLOW"))
        .collect();
    assert_eq!(acl_rows(&acls), want, "{acls}");

    let carol = secure.java_sasl("carol", "carol-secret", "SCRAM-SHA-512");
    for topic in ["team-a.orders", "team-a.events"] {
        secure.java_ok(4, &carol, &["send", &sasl, topic, "5"]);
    }
    for topic in ["team-b.orders", "team-a", "xteam-a.orders"] {
        secure.java_refused(
            4,
            &carol,
            &["send", &sasl, topic, "1"],
            "TopicAuthorizationException",
        );
    }
    secure.java_ok(4, &carol, &["create-topic", &sasl, "team-a.new", "1"]);
    secure.java_refused(
        4,
        &carol,
        &["create-topic", &sasl, "team-b.new", "1"],
        "TopicAuthorizationException",
    );
    let read = secure.java_ok(4, &carol, &["consume", &sasl, "team-a.orders", "5"]);
    assert_eq!(read["available"], 5, "{read}");

    // DENY wins over the prefixed ALLOW, for that topic and operation only.
    secure.java_ok(
        4,
        &admin,
        &[
            "acl-create",
            &sasl,
            "User:carol",
            "TOPIC",
            "LITERAL",
            "team-a.events",
            "WRITE",
            "DENY",
        ],
    );
    secure.java_refused(
        4,
        &carol,
        &["send", &sasl, "team-a.events", "1"],
        "TopicAuthorizationException",
    );
    let read = secure.java_ok(4, &carol, &["consume", &sasl, "team-a.events", "5"]);
    assert_eq!(read["available"], 5, "{read}");
    secure.java_ok(4, &carol, &["send", &sasl, "team-a.orders", "5"]);

    let deleted = secure.java_ok(
        4,
        &admin,
        &[
            "acl-delete",
            &sasl,
            "User:carol",
            "TOPIC",
            "PREFIXED",
            "team-a.",
            ops,
        ],
    );
    assert_eq!(deleted["deleted"], 4, "{deleted}");
    let acls = secure.java_ok(4, &admin, &["acl-describe", &sasl, "User:carol"]);
    assert_eq!(
        acl_rows(&acls),
        BTreeSet::from([acl(
            "User:carol",
            "TOPIC",
            "LITERAL",
            "team-a.events",
            "WRITE",
            "DENY"
        )]),
        "{acls}"
    );
    secure.java_refused(
        4,
        &carol,
        &["send", &sasl, "team-a.orders", "1"],
        "TopicAuthorizationException",
    );
}

/// h. KIP-368: with connections_max_reauth_ms = 3000, a Java producer sending for 10 s over
/// SASL_SSL has every record acknowledged, re-authenticates (at least twice, none failing) and
/// never has a connection closed under it.
#[test]
fn java_producer_reauthenticates_and_keeps_producing() {
    let secure = Secure::start(Options {
        reauth_ms: 3000,
        ..Options::default()
    });
    let admin = secure.java_sasl(ADMIN.0, ADMIN.1, "SCRAM-SHA-512");
    let out = secure.java_ok(
        4,
        &admin,
        &["produce-for", &secure.sasl(), "reauth", "10000"],
    );
    eprintln!("produce-for: {out}");
    let sent = out["sent"].as_i64().unwrap_or_default();
    assert!(sent > 10, "records were sent: {out}");
    assert_eq!(out["acked"].as_i64(), Some(sent), "{out}");
    assert!(
        out["reauthentications"].as_i64().unwrap_or_default() >= 2,
        "the producer re-authenticated at least twice in 10 s: {out}"
    );
    assert_eq!(out["failedReauthentications"], 0, "{out}");
    assert_eq!(
        out["connectionsClosed"], 0,
        "no connection was closed: {out}"
    );
    let log = secure.silt.log();
    let mentions = log
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("reauth"))
        .count();
    eprintln!("broker log lines mentioning re-authentication: {mentions}");
    let read = secure.java_ok(
        4,
        &admin,
        &["consume", &secure.sasl(), "reauth", &sent.to_string()],
    );
    assert_eq!(read["available"].as_i64(), Some(sent), "{read}");
}

/// i. Certificate reload: the server certificate files are replaced (CN=silt-a → CN=silt-b,
/// same CA) while the broker runs; within seconds new TLS connections on both TLS listeners
/// get CN=silt-b, verified; a producer connected before the change goes on working, a new one
/// works, and every record is read back. No restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_is_reloaded_without_restart() {
    let mut secure = Secure::start_with(
        TestPki::with_server_cn("silt-a"),
        Options {
            authorizer: false,
            reload_ms: 500,
            ..Options::default()
        },
    );
    let pid = secure.silt.pid();
    let ssl = secure.ssl();
    let (subject, verified, out) = server_certificate(secure.ssl_port, &secure.pki.ca_pem);
    assert!(
        subject == "CN=silt-a" && verified,
        "before the reload: {subject} verified {verified}\n{out}"
    );

    let client = secure.rd_ssl(None);
    create_topic_with(&ssl, "reload", 1, &[], &refs(&client)).await;
    let before = silt_e2e::kafka::producer(&ssl, &refs(&client));
    send_range(&before, "reload", 0..10).await;

    secure.pki.reissue_server("silt-b");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut subject, mut verified, mut out) = (String::new(), false, String::new());
    while Instant::now() < deadline {
        (subject, verified, out) = server_certificate(secure.ssl_port, &secure.pki.ca_pem);
        if subject == "CN=silt-b" {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        subject == "CN=silt-b" && verified,
        "20 s after the files changed: {subject} verified {verified}\n{out}"
    );
    let (subject, verified, out) = server_certificate(secure.sasl_port, &secure.pki.ca_pem);
    assert!(
        subject == "CN=silt-b" && verified,
        "the SASL_SSL listener too: {subject} verified {verified}\n{out}"
    );

    send_range(&before, "reload", 10..20).await;
    let after = silt_e2e::kafka::producer(&ssl, &refs(&client));
    send_range(&after, "reload", 20..30).await;
    rd_consume_exactly(&ssl, &client, "reload", 1, "g", 30);
    secure.assert_running();
    assert_eq!(secure.silt.pid(), pid, "same broker process");
}

/// Records `range` to partition 0 with keys `key-i` (as [`produce_keyed`] with one
/// partition), each acknowledged.
async fn send_range(producer: &FutureProducer, topic: &str, range: std::ops::Range<usize>) {
    let mut pending = Vec::new();
    for i in range {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let queued = producer
            .send_result(
                FutureRecord::to(topic)
                    .partition(0)
                    .key(&key)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .expect("queued");
        pending.push((i, queued));
    }
    for (i, p) in pending {
        match p.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => panic!("record {i} to {topic} not delivered: {e}"),
            Err(_) => panic!("record {i} to {topic}: delivery future canceled"),
        }
    }
}

// ---------------------------------------- authorized operations, allow.everyone.if.no.acl.found

/// Kafka's operation codes in authorized-operations bit sets.
fn bits(ops: &[i32]) -> i32 {
    ops.iter().fold(0, |acc, op| acc | (1 << op))
}

/// With `allow_everyone_if_no_acl_found`, a resource no ACL names is open to everyone and the
/// first ACL on it closes it to everything else; the authorized-operations bit sets in
/// Metadata, DescribeGroups and DescribeCluster follow; the denial is logged at the configured
/// level. Raw requests as `User:ANONYMOUS` on a PLAINTEXT listener: the bit sets are fields no
/// client library shows as they are on the wire.
#[test]
fn authorized_operations_and_allow_everyone_follow_the_acls() {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        CreateAclsRequest, CreateTopicsRequest, DescribeClusterRequest, DescribeGroupsRequest,
        GroupId, MetadataRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use silt_e2e::raw::call;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("silt.toml");
    std::fs::write(
        &config,
        "[authorizer]\nenabled = true\nallow_everyone_if_no_acl_found = true\nlog_denied = \"warn\"\n",
    )
    .unwrap();
    let silt = Silt::try_start_on(port, &[("SILT_CONFIG", path_str(&config))]).expect("starts");
    let addr = silt.bootstrap();
    let name = |s: &str| StrBytes::from_string(s.to_string());

    let created = call(
        &addr,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(name("open")))
                .with_num_partitions(1)
                .with_replication_factor(1)])
            .with_timeout_ms(10_000),
    )
    .unwrap();
    assert_eq!(
        created.topics[0].error_code, 0,
        "no ACL names the cluster or topic"
    );

    let topic_ops = |addr: &str| {
        let r = call(
            addr,
            12,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(TopicName(name("open"))))
                ]))
                .with_include_topic_authorized_operations(true),
        )
        .unwrap();
        (
            r.topics[0].error_code,
            r.topics[0].topic_authorized_operations,
        )
    };
    // READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
    assert_eq!(topic_ops(&addr), (0, bits(&[3, 4, 5, 6, 7, 8, 10, 11])));
    let group_ops = |addr: &str| {
        let r = call(
            addr,
            5,
            &DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(name("g"))])
                .with_include_authorized_operations(true),
        )
        .unwrap();
        (r.groups[0].error_code, r.groups[0].authorized_operations)
    };
    assert_eq!(
        group_ops(&addr),
        (0, bits(&[3, 6, 8])),
        "READ, DELETE, DESCRIBE"
    );

    // The first ACL on the topic: READ for everyone. Only READ and the DESCRIBE it implies are
    // left, for this principal and every other.
    let acl = |resource_type: i8, resource: &str, operation: i8| {
        AclCreation::default()
            .with_resource_type(resource_type)
            .with_resource_name(name(resource))
            .with_resource_pattern_type(3)
            .with_principal(name("User:*"))
            .with_host(name("*"))
            .with_operation(operation)
            .with_permission_type(3)
    };
    let r = call(
        &addr,
        3,
        &CreateAclsRequest::default().with_creations(vec![acl(2, "open", 3)]),
    )
    .unwrap();
    assert_eq!(r.results[0].error_code, 0, "{r:?}");
    assert_eq!(topic_ops(&addr), (0, bits(&[3, 8])), "READ and DESCRIBE");
    assert_eq!(
        group_ops(&addr).1,
        bits(&[3, 6, 8]),
        "the group has no ACL yet"
    );

    // DESCRIBE on the cluster for everyone: the cluster now has an ACL, so creating more ACLs
    // (ALTER on the cluster) is refused, and DescribeCluster's bit set shows only DESCRIBE.
    let r = call(
        &addr,
        3,
        &CreateAclsRequest::default().with_creations(vec![acl(4, "kafka-cluster", 8)]),
    )
    .unwrap();
    assert_eq!(r.results[0].error_code, 0, "{r:?}");
    let r = call(
        &addr,
        3,
        &CreateAclsRequest::default().with_creations(vec![acl(3, "g", 3)]),
    )
    .unwrap();
    assert_eq!(
        r.results[0].error_code, 31,
        "CLUSTER_AUTHORIZATION_FAILED: {r:?}"
    );
    let cluster = call(
        &addr,
        1,
        &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
    )
    .unwrap();
    assert_eq!(cluster.error_code, 0);
    assert_eq!(
        cluster.cluster_authorized_operations,
        bits(&[8]),
        "DESCRIBE only"
    );
    // Creating a topic needs CREATE on the cluster (now named by an ACL) or on the topic (no
    // ACL: open): allowed; on "open" itself, which has an ACL without CREATE: refused.
    let create = |topic: &str| {
        call(
            &addr,
            7,
            &CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(name(topic)))
                    .with_num_partitions(1)
                    .with_replication_factor(1)])
                .with_timeout_ms(10_000),
        )
        .unwrap()
        .topics[0]
            .error_code
    };
    assert_eq!(create("fresh"), 0);
    assert_eq!(create("open"), 29, "TOPIC_AUTHORIZATION_FAILED");
    let log = silt.log();
    assert!(
        log.contains("authorization denied")
            && log.contains("User:ANONYMOUS")
            && log.contains("WARN"),
        "denials are logged at the configured level:\n{log}"
    );
}

// ------------------------------------------------------------ the SASL state machine, raw

/// What a client library hides: on a SASL listener only ApiVersions and the SASL requests pass
/// before authentication (anything else closes the connection); a wrong password is answered
/// SASL_AUTHENTICATION_FAILED and the connection is closed; an unknown mechanism gets
/// UNSUPPORTED_SASL_MECHANISM with the enabled ones; a connection may start only
/// `max_authentications_per_minute` exchanges; frames before authentication are small.
/// SASL_PLAINTEXT, so the bytes are readable.
#[test]
fn sasl_failures_close_the_connection_and_attempts_are_bounded() {
    use kafka_protocol::messages::{
        ApiVersionsRequest, MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
    };
    use kafka_protocol::protocol::StrBytes;
    use silt_e2e::raw::Conn;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sasl_port = free_port();
    let config = dir.path().join("silt.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[listeners]]
name = "INTERNAL"
listen = "127.0.0.1:{port}"
[[listeners]]
name = "SASL"
listen = "127.0.0.1:{sasl_port}"
protocol = "SASL_PLAINTEXT"
[sasl]
mechanisms = ["PLAIN", "SCRAM-SHA-512"]
users = {{ carol = "carol-secret" }}
max_authentications_per_minute = 2
"#
        ),
    )
    .unwrap();
    let silt = Silt::try_start_on(port, &[("SILT_CONFIG", path_str(&config))]).expect("starts");
    let addr = format!("127.0.0.1:{sasl_port}");
    let handshake = |mechanism: &str| {
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into()))
    };
    let plain = |password: &str| {
        SaslAuthenticateRequest::default()
            .with_auth_bytes(format!("\0carol\0{password}").into_bytes().into())
    };

    // Before authentication: ApiVersions is answered, Metadata closes the connection.
    let mut c = Conn::connect(&addr).unwrap();
    let versions = c.call(3, &ApiVersionsRequest::default()).unwrap();
    assert!(
        versions.api_keys.iter().any(|k| k.api_key == 36),
        "SaslAuthenticate advertised"
    );
    assert!(c.call(12, &MetadataRequest::default()).is_err());
    assert!(
        c.closed(),
        "a request before authentication closes the connection"
    );

    // A frame over 512 KiB before authentication closes the connection (Kafka's
    // sasl.server.max.receive.size); the broker does not wait for its bytes.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&(1i32 << 20).to_be_bytes()).unwrap();
        s.write_all(&[0; 8]).unwrap();
        let mut byte = [0u8; 1];
        let closed = match s.read(&mut byte) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(
            closed,
            "a large frame before authentication closes the connection at once"
        );
    }

    // An unknown mechanism: the enabled ones, then the connection is closed.
    let mut c = Conn::connect(&addr).unwrap();
    let r = c.call(1, &handshake("GSSAPI")).unwrap();
    assert_eq!(r.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let enabled: Vec<String> = r.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(enabled, ["PLAIN", "SCRAM-SHA-512"]);
    assert!(c.closed());

    // A wrong password: SASL_AUTHENTICATION_FAILED with a message, then closed.
    let mut c = Conn::connect(&addr).unwrap();
    assert_eq!(c.call(1, &handshake("PLAIN")).unwrap().error_code, 0);
    let r = c.call(2, &plain("wrong")).unwrap();
    assert_eq!(r.error_code, 58, "SASL_AUTHENTICATION_FAILED");
    assert!(r
        .error_message
        .is_some_and(|m| m.contains("invalid credentials")));
    assert!(c.closed(), "one guess per connection");

    // The right password works, on a connection that then serves Metadata; a third exchange
    // within the minute is refused and closes it.
    let mut c = Conn::connect(&addr).unwrap();
    for _ in 0..2 {
        assert_eq!(c.call(1, &handshake("PLAIN")).unwrap().error_code, 0);
        let r = c.call(2, &plain("carol-secret")).unwrap();
        assert_eq!(r.error_code, 0, "{r:?}");
        assert_eq!(
            r.session_lifetime_ms, 0,
            "sessions do not expire by default"
        );
        let brokers = c.call(12, &MetadataRequest::default()).unwrap().brokers;
        assert_eq!(
            brokers[0].port, sasl_port as i32,
            "addresses on the SASL listener"
        );
    }
    let r = c.call(1, &handshake("PLAIN")).unwrap();
    assert_ne!(r.error_code, 0, "the third exchange in a minute is refused");
    assert!(c.closed());
    let log = silt.log();
    assert!(log.contains("too many SASL authentications"), "{log}");
}
