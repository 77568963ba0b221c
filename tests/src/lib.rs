//! Helpers for end-to-end tests: start real `silt` processes on free loopback ports, stop them
//! by pid, and drive them with real Kafka clients (librdkafka via `rdkafka`, kcat, the Java
//! client).

use anyhow::{bail, Context};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `silt` binary under test: `$SILT_BIN`, else `target/debug/silt`.
pub fn silt_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("SILT_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    let bin = target.join("debug/silt");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p silt-broker) or set SILT_BIN",
        bin.display()
    );
    bin
}

/// A running `silt` broker with its own data directory and ports.
pub struct Silt {
    pub data_dir: PathBuf,
    pub port: u16,
    pub admin_port: u16,
    extra_env: Vec<(String, String)>,
    /// An address-space limit (RLIMIT_AS, bytes) the broker runs under, set with `prlimit`: a
    /// pod's memory limit, where a reservation of gigabytes fails instead of being overcommitted.
    address_space_limit: Option<u64>,
    child: Option<Child>,
    log_path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Silt {
    /// Starts a broker on fresh ports with a fresh data directory.
    pub fn start() -> Silt {
        Self::start_with_env(&[])
    }

    /// Starts a broker whose object store is `s3` (under `prefix`), with extra settings.
    pub fn start_on_s3(s3: &S3Server, prefix: &str, env: &[(&str, &str)]) -> Silt {
        let mut all: Vec<(String, String)> = s3.env(prefix);
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::start_with_env(&refs)
    }

    /// Starts a broker with extra `SILT_*` environment settings.
    pub fn start_with_env(env: &[(&str, &str)]) -> Silt {
        Self::try_start_with_env(env).expect("start silt")
    }

    /// Like [`Silt::start_with_env`], for brokers that are expected to refuse to start: the
    /// error carries the broker's log.
    pub fn try_start_with_env(env: &[(&str, &str)]) -> anyhow::Result<Silt> {
        Self::try_start_on(free_port(), env)
    }

    /// Like [`Silt::start_with_env`] with the Kafka port (`--listen 127.0.0.1:PORT`, what
    /// [`Silt::bootstrap`] names) chosen by the caller: for a config file (`SILT_CONFIG`)
    /// whose `[[listeners]]` must name that port before the broker starts.
    pub fn start_on(port: u16, env: &[(&str, &str)]) -> Silt {
        Self::try_start_on(port, env).expect("start silt")
    }

    /// Starts a broker whose address space is limited to `bytes` (see `address_space_limit`).
    pub fn start_with_address_space_limit(bytes: u64) -> Silt {
        Self::try_start_limited(free_port(), &[], Some(bytes)).expect("start silt")
    }

    /// [`Silt::start_on`] for brokers that may refuse to start: the error carries the log.
    pub fn try_start_on(port: u16, env: &[(&str, &str)]) -> anyhow::Result<Silt> {
        Self::try_start_limited(port, env, None)
    }

    fn try_start_limited(
        port: u16,
        env: &[(&str, &str)],
        address_space_limit: Option<u64>,
    ) -> anyhow::Result<Silt> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut silt = Silt {
            data_dir: tmp.path().join("data"),
            port,
            admin_port: free_port(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            address_space_limit,
            child: None,
            log_path: tmp.path().join("silt.log"),
            _tmp: Some(tmp),
        };
        silt.spawn()?;
        Ok(silt)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut cmd = match self.address_space_limit {
            Some(bytes) => {
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--as={bytes}")).arg("--").arg(silt_bin());
                cmd
            }
            None => Command::new(silt_bin()),
        };
        cmd.arg("--listen")
            .arg(self.bootstrap())
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", self.admin_port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("spawn silt")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    /// Waits for `/readyz` to answer 200.
    fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "silt exited with {status} during start; log:\n{}",
                        self.log()
                    );
                }
            }
            if http_get(self.admin_port, "/readyz").is_some_and(|(code, _)| code == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("silt not ready within {within:?}; log:\n{}", self.log())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the broker process is still running (not exited, not killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, then wait for the process to be gone.
    pub fn kill9(&mut self) {
        kill_child(&mut self.child);
    }

    /// SIGTERM and wait (bounded) for a clean exit; SIGKILL if it does not come.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Starts the broker again on the same ports and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the broker first");
        self.spawn().expect("restart silt");
    }
}

impl Drop for Silt {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// SIGKILL a child process (if running) and reap it.
fn kill_child(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A minimal HTTP GET against the admin port: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let (code, body) = http_request(port, "GET", path, b"").ok()?;
    Some((code, String::from_utf8_lossy(&body).into_owned()))
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: (status code, body). No auth: for test servers.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP header end")?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((code, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// A real S3-compatible server for tests: moto (`pip install 'moto[server]'`), which speaks S3
/// over HTTP, including ranged GETs, multipart uploads and conditional PUTs. Started on a free
/// loopback port, stopped by pid. Its state lives in memory: a restart starts empty.
pub struct S3Server {
    pub port: u16,
    child: Option<Child>,
    pub bucket: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let mut s = S3Server {
            port: free_port(),
            child: None,
            bucket: "silt-test".into(),
        };
        s.spawn()
            .expect("start moto_server (pip install 'moto[server]')");
        s
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn moto_server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_request(self.port, "GET", "/", b"").is_ok() {
                let (code, body) =
                    http_request(self.port, "PUT", &format!("/{}", self.bucket), b"")?;
                anyhow::ensure!(
                    code == 200,
                    "create bucket: {code} {}",
                    String::from_utf8_lossy(&body)
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("moto_server did not answer on port {}", self.port)
    }

    /// SIGKILL: the store becomes unreachable (connections refused).
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts again on the same port, with an empty bucket of the same name.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().expect("restart moto_server");
    }

    /// `SILT_OBJECT_STORE` and the `AWS_*` variables a broker needs for this server.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            ("SILT_OBJECT_STORE".into(), self.url(prefix)),
            (
                "AWS_ENDPOINT".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// Keys under `prefix` (ListObjectsV2, following continuation tokens).
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let mut path = format!("/{}?list-type=2&prefix={prefix}", self.bucket);
            if let Some(t) = &token {
                path.push_str(&format!(
                    "&continuation-token={}",
                    t.replace('=', "%3D")
                        .replace('+', "%2B")
                        .replace('/', "%2F")
                ));
            }
            let (code, body) = http_request(self.port, "GET", &path, b"").expect("list");
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
            let text = String::from_utf8_lossy(&body).to_string();
            keys.extend(xml_values(&text, "Key"));
            token = xml_values(&text, "NextContinuationToken")
                .into_iter()
                .next();
            if token.is_none() {
                break;
            }
        }
        keys
    }

    /// One object's bytes (a signed GET through object_store, on a thread of its own so that
    /// async tests can call it).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        use object_store::ObjectStoreExt;
        let (port, bucket, key) = (self.port, self.bucket.clone(), key.to_string());
        std::thread::spawn(move || {
            let store = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(format!("http://127.0.0.1:{port}"))
                .with_allow_http(true)
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .with_region("us-east-1")
                .build()
                .ok()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let r = store.get(&object_store::path::Path::from(key)).await.ok()?;
                r.bytes().await.ok().map(|b| b.to_vec())
            })
        })
        .join()
        .ok()
        .flatten()
    }
}

fn xml_values(text: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    text.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next())
        .map(|v| v.replace("&amp;", "&"))
        .collect()
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A single-member etcd server (Debian's `etcd-server`) on free loopback ports, with its own
/// data directory; stopped by pid.
pub struct EtcdServer {
    pub port: u16,
    peer_port: u16,
    /// Plain-HTTP `/health` and `/metrics` (what the readiness check asks, TLS or not).
    metrics_port: u16,
    tls: Option<EtcdServerTls>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// TLS on etcd's client port: its certificate and key, and the CA that must sign clients'
/// certificates (`--client-cert-auth`); PEM files.
#[derive(Clone)]
pub struct EtcdServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    /// etcd's auth token lifetime (`--auth-token-ttl`, seconds): short, so tests see a renewal.
    pub auth_token_ttl_s: u32,
}

impl EtcdServer {
    pub fn start() -> EtcdServer {
        Self::start_with(None)
    }

    /// etcd that speaks only TLS on its client port and wants a client certificate.
    pub fn start_tls(tls: EtcdServerTls) -> EtcdServer {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<EtcdServerTls>) -> EtcdServer {
        let mut s = EtcdServer {
            port: free_port(),
            peer_port: free_port(),
            metrics_port: free_port(),
            tls,
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        s.spawn().expect("start etcd (apt-get install etcd-server)");
        s
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg("--name=silt-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=silt-test={peer}"))
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                self.metrics_port
            ))
            .args(self.tls.iter().flat_map(|t| {
                [
                    format!("--cert-file={}", t.cert.display()),
                    format!("--key-file={}", t.key.display()),
                    format!("--trusted-ca-file={}", t.client_ca.display()),
                    "--client-cert-auth".to_string(),
                    format!("--auth-token-ttl={}", t.auth_token_ttl_s),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn etcd")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(self.metrics_port, "/health")
                .is_some_and(|(code, body)| code == 200 && body.contains("true"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("etcd did not become healthy on port {}", self.port)
    }

    /// `etcd://127.0.0.1:PORT/namespace` (`etcds://` with TLS): each test gets its own
    /// namespace.
    pub fn url(&self, namespace: &str) -> String {
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://127.0.0.1:{}/{namespace}", self.port)
    }

    /// Turns on etcd's authentication over this server's TLS port (client certificate
    /// `client`): a `root` user with `root_password` (what `auth enable` requires) and `user`
    /// allowed to read and write only the keys under `prefix`.
    pub async fn enable_auth(
        &self,
        client: (&Path, &Path),
        root_password: &str,
        user: &str,
        password: &str,
        prefix: &str,
    ) -> anyhow::Result<()> {
        use etcd_client::{Certificate, ConnectOptions, Identity, Permission, TlsOptions};
        let tls = self.tls.as_ref().context("enable_auth needs a TLS etcd")?;
        let config = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(&tls.client_ca)?))
            .identity(Identity::from_pem(
                std::fs::read(client.0)?,
                std::fs::read(client.1)?,
            ));
        let endpoint = format!("https://127.0.0.1:{}", self.port);
        let mut c = etcd_client::Client::connect(
            [endpoint],
            Some(
                ConnectOptions::new()
                    .with_tls(config)
                    .with_timeout(Duration::from_secs(5)),
            ),
        )
        .await?;
        c.user_add("root", root_password, None).await?;
        c.user_grant_role("root", "root").await?;
        c.role_add(user).await?;
        c.role_grant_permission(user, Permission::read_write(prefix).with_prefix())
            .await?;
        c.user_add(user, password, None).await?;
        c.user_grant_role(user, user).await?;
        c.auth_enable().await?;
        Ok(())
    }

    /// etcd's own log (TLS and authentication failures are reported there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts again on the same ports and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().expect("restart etcd");
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command with a timeout; returns (success, stdout, stderr).
pub fn run(cmd: &mut Command, timeout: Duration) -> anyhow::Result<(bool, String, String)> {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {cmd:?}"))?;
    // Drain both pipes while the child runs: a full pipe would block it.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{cmd:?} timed out after {timeout:?}\nstdout: {}\nstderr: {}",
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((
        status.success(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

/// Builds the Java test client once per test process; returns the java command line prefix
/// for kafka-clients major version `major` (3 or 4).
pub fn java_client(major: u32) -> Command {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let root = workspace_root();
    let built = BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(root.join("tests/java/build.sh"))
            .current_dir(&root)
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("tests/java/build.sh failed: {status}"))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(format!(
            "{}:{}/*",
            root.join(format!("tests/java/classes/{major}")).display(),
            root.join(format!("tests/java/lib/{major}")).display()
        ))
        .arg("SiltJavaClient")
        .current_dir(&root);
    cmd
}

pub mod kafka {
    //! librdkafka through the `rdkafka` crate.
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::FutureProducer;
    use rdkafka::{Offset, TopicPartitionList};
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        config.create().expect("producer")
    }

    pub fn consumer(bootstrap: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "silt-e2e-unused")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("consumer")
    }

    pub async fn create_topic(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) {
        create_topic_with(bootstrap, topic, partitions, configs, &[]).await
    }

    /// [`create_topic`] with extra client settings (`security.protocol`, `sasl.*`, `ssl.*`).
    pub async fn create_topic_with(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
        client: &[(&str, &str)],
    ) {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        for (k, v) in client {
            config.set(*k, *v);
        }
        let admin: AdminClient<DefaultClientContext> = config.create().expect("admin");
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            new = new.set(k, v);
        }
        let results = admin
            .create_topics(
                &[new],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create_topics");
        for r in results {
            r.expect("topic created");
        }
    }

    /// A consumed record, owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Got {
        pub partition: i32,
        pub offset: i64,
        pub key: Option<Vec<u8>>,
        pub value: Option<Vec<u8>>,
        pub timestamp: Option<i64>,
        pub headers: Vec<(String, Option<Vec<u8>>)>,
    }

    /// Reads `partitions` of `topic` from the beginning until `count` records arrived or
    /// `within` passed.
    pub fn consume_all(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        count: usize,
        within: Duration,
    ) -> Vec<Got> {
        let consumer = consumer(bootstrap);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + within;
        let mut out = Vec::with_capacity(count);
        while out.len() < count && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => out.push(Got {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| k.to_vec()),
                    value: m.payload().map(|v| v.to_vec()),
                    timestamp: m.timestamp().to_millis(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Some(Err(e)) => panic!("consume error: {e}"),
                None => {}
            }
        }
        out
    }

    /// Records grouped by partition, in consumption order.
    /// Produces records `range`: record `i` goes to partition `i % partitions` with key
    /// `key-{i}` and a value of 8 to 200-odd bytes; waits until every one is acknowledged.
    pub async fn produce_keyed(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        range: std::ops::Range<usize>,
        extra: &[(&str, &str)],
    ) {
        let producer = producer(bootstrap, extra);
        let mut pending = Vec::with_capacity(range.len());
        for i in range {
            let key = format!("key-{i}");
            let value = format!("value-{i}-{}", "x".repeat(i % 200));
            let queued = producer
                .send_result(
                    rdkafka::producer::FutureRecord::to(topic)
                        .partition((i % partitions as usize) as i32)
                        .key(&key)
                        .payload(&value),
                )
                .map_err(|(e, _)| e)
                .expect("queued");
            pending.push(queued);
        }
        for p in pending {
            p.await.expect("delivered").expect("acked");
        }
    }

    /// Checks that `got` is exactly records `0..n` of [`produce_keyed`]: every partition in
    /// order from offset 0, each record's key where the round-robin put it.
    pub fn check_keyed(got: &[Got], partitions: i32, n: usize) {
        assert_eq!(got.len(), n, "every record comes back");
        for (p, records) in by_partition(got) {
            for (i, r) in records.iter().enumerate() {
                assert_eq!(r.offset, i as i64, "partition {p} in order from 0");
                let index = i * partitions as usize + p as usize;
                assert_eq!(r.key.as_deref(), Some(format!("key-{index}").as_bytes()));
            }
        }
    }

    pub fn by_partition(records: &[Got]) -> BTreeMap<i32, Vec<&Got>> {
        let mut map: BTreeMap<i32, Vec<&Got>> = BTreeMap::new();
        for r in records {
            map.entry(r.partition).or_default().push(r);
        }
        map
    }
}

pub mod raw {
    //! A bare Kafka request/response exchange, for checking fields no client library exposes
    //! (leader epochs). Real clients remain the oracle for everything else.
    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::messages::{RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn call<R: Request>(addr: &str, version: i16, request: &R) -> anyhow::Result<R::Response> {
        Conn::connect(addr)?.call(version, request)
    }

    /// One connection for several requests in turn (SASL exchanges, say).
    pub struct Conn {
        stream: TcpStream,
        correlation_id: i32,
    }

    impl Conn {
        pub fn connect(addr: &str) -> anyhow::Result<Conn> {
            let stream = TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            Ok(Conn {
                stream,
                correlation_id: 7,
            })
        }

        pub fn call<R: Request>(
            &mut self,
            version: i16,
            request: &R,
        ) -> anyhow::Result<R::Response> {
            let correlation_id = self.send(version, request)?;
            self.receive::<R>(version, correlation_id)
        }

        /// Sends a request without waiting for its response; returns its correlation id.
        pub fn send<R: Request>(&mut self, version: i16, request: &R) -> anyhow::Result<i32> {
            self.correlation_id += 1;
            let header = RequestHeader::default()
                .with_request_api_key(R::KEY)
                .with_request_api_version(version)
                .with_correlation_id(self.correlation_id)
                .with_client_id(Some(StrBytes::from_static_str("silt-e2e")));
            let mut buf = BytesMut::new();
            buf.put_i32(0);
            header.encode(&mut buf, R::header_version(version))?;
            request.encode(&mut buf, version)?;
            let len = (buf.len() - 4) as i32;
            buf[0..4].copy_from_slice(&len.to_be_bytes());
            self.stream.write_all(&buf)?;
            Ok(self.correlation_id)
        }

        /// Reads the next response, which must answer `correlation_id`.
        pub fn receive<R: Request>(
            &mut self,
            version: i16,
            correlation_id: i32,
        ) -> anyhow::Result<R::Response> {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len)?;
            let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
            self.stream.read_exact(&mut body)?;
            let mut body = bytes::Bytes::from(body);
            let header = ResponseHeader::decode(
                &mut body,
                <R::Response as HeaderVersion>::header_version(version),
            )?;
            anyhow::ensure!(header.correlation_id == correlation_id, "correlation id");
            let response = R::Response::decode(&mut body, version)?;
            anyhow::ensure!(!body.has_remaining(), "trailing bytes in response");
            Ok(response)
        }

        /// Whether the broker has closed the connection (EOF within the read timeout).
        pub fn closed(&mut self) -> bool {
            let mut byte = [0u8; 1];
            matches!(self.stream.read(&mut byte), Ok(0))
        }
    }
}

pub mod records {
    //! Record batches built with kafka-protocol's encoder, for bare Produce requests.
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    pub struct BatchSpec {
        pub count: usize,
        /// -1: not an idempotent producer.
        pub producer_id: i64,
        pub producer_epoch: i16,
        pub first_sequence: i32,
        pub value: Vec<u8>,
        pub compression: Compression,
    }

    impl Default for BatchSpec {
        fn default() -> Self {
            BatchSpec {
                count: 1,
                producer_id: -1,
                producer_epoch: -1,
                first_sequence: 0,
                value: b"v".to_vec(),
                compression: Compression::None,
            }
        }
    }

    /// One magic-2 batch; record i has key `k{first_sequence + i}`.
    pub fn batch(spec: BatchSpec) -> Bytes {
        let records: Vec<Record> = (0..spec.count)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: spec.producer_id,
                producer_epoch: spec.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch unless offset - sequence stays constant.
                sequence: spec.first_sequence + i as i32,
                timestamp: 1_700_000_000_000,
                key: Some(
                    format!("k{}", spec.first_sequence + i as i32)
                        .into_bytes()
                        .into(),
                ),
                value: Some(spec.value.clone().into()),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: spec.compression,
            },
        )
        .expect("encode batch");
        buf.freeze()
    }
}

/// One read from a socket that has a read timeout.
enum Got {
    Bytes(usize),
    /// The timeout passed with nothing to read.
    Nothing,
    /// Closed or failed.
    Closed,
}

fn read_some(stream: &mut impl std::io::Read, buf: &mut [u8]) -> Got {
    match stream.read(buf) {
        Ok(0) => Got::Closed,
        Ok(n) => Got::Bytes(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Got::Nothing
        }
        Err(_) => Got::Closed,
    }
}

/// Requests an [`OtlpCollector`] received: (path, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Runs the operator CLI (`silt ARGS --bootstrap B`): (success, stdout, stderr).
pub fn silt_cli(args: &[&str], bootstrap: &str) -> (bool, String, String) {
    let mut cmd = Command::new(silt_bin());
    cmd.args(args)
        .args(["--bootstrap", bootstrap])
        .env_remove("RUST_BACKTRACE");
    run(&mut cmd, Duration::from_secs(60)).expect("silt ran")
}

/// The operator CLI's `--json` output, parsed (the command must succeed).
pub fn silt_cli_json(args: &[&str], bootstrap: &str) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = silt_cli(&all, bootstrap);
    assert!(ok, "silt {args:?}: {err}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("silt {args:?} printed no JSON ({e}): {out}"))
}

/// An OTLP/HTTP receiver on a free loopback port that keeps every export it is sent, decoded
/// with the OpenTelemetry protobuf definitions (what a collector's `otlp` receiver accepts on
/// port 4318). Its threads stop when it is dropped.
pub struct OtlpCollector {
    pub port: u16,
    received: Received,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl OtlpCollector {
    pub fn start() -> OtlpCollector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind collector");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (r, s) = (r.clone(), s.clone());
                        std::thread::spawn(move || Self::serve(stream, &r, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        OtlpCollector {
            port,
            received,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers HTTP/1.1 requests on one (keep-alive) connection with an empty 200.
    fn serve(
        mut stream: std::net::TcpStream,
        received: &Mutex<Vec<(String, Vec<u8>)>>,
        stop: &std::sync::atomic::AtomicBool,
    ) {
        use std::io::Write;
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                match read_some(&mut stream, &mut chunk) {
                    Got::Bytes(n) => buf.extend_from_slice(&chunk[..n]),
                    Got::Nothing => {}
                    Got::Closed => return,
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let total = head_end + 4 + length;
            while buf.len() < total {
                match read_some(&mut stream, &mut chunk) {
                    Got::Bytes(n) => buf.extend_from_slice(&chunk[..n]),
                    Got::Nothing => {}
                    Got::Closed => return,
                }
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
            }
            let body = buf[head_end + 4..total].to_vec();
            buf.drain(..total);
            received.lock().expect("collector lock").push((path, body));
            let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn decoded<T: prost::Message + Default>(&self, path: &str) -> Vec<T> {
        self.received
            .lock()
            .expect("collector lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, body)| T::decode(body.as_slice()).expect("a valid OTLP message"))
            .collect()
    }

    /// Every trace export received.
    pub fn traces(
        &self,
    ) -> Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest> {
        self.decoded("/v1/traces")
    }

    /// Every metrics export received.
    pub fn metrics(
        &self,
    ) -> Vec<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest> {
        self.decoded("/v1/metrics")
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One HTTP request seen by a [`SlowProxy`]: its request line, when it arrived from the client
/// and when the server's answer started back (None: not yet).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub request: String,
    pub sent: Instant,
    pub answered: Option<Instant>,
}

/// A TCP proxy on a free loopback port in front of an HTTP server (the S3 server) that holds
/// the bytes of every PUT request for `delay` before passing them on, so a broker's uploads
/// are really in flight for that long (and GETs for their own delay, zero unless set); other
/// requests pass at once. It records every request's line, arrival and answer. Its threads
/// stop when it is dropped.
pub struct SlowProxy {
    pub port: u16,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    get_delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl SlowProxy {
    pub fn start(upstream_port: u16, delay: Duration) -> SlowProxy {
        use std::sync::atomic::Ordering::Relaxed;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let exchanges: Arc<Mutex<Vec<Exchange>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(delay.as_millis() as u64));
        let get_delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (ex, st, d, g) = (
            exchanges.clone(),
            stop.clone(),
            delay_ms.clone(),
            get_delay_ms.clone(),
        );
        std::thread::spawn(move || {
            while !st.load(Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                Self::relay(
                    client,
                    server,
                    [d.clone(), g.clone()],
                    ex.clone(),
                    st.clone(),
                );
            }
        });
        SlowProxy {
            port,
            exchanges,
            stop,
            delay_ms,
            get_delay_ms,
        }
    }

    /// Holds GET requests (reads from the bucket) this long from now on.
    pub fn set_get_delay(&self, delay: Duration) {
        self.get_delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Changes the hold for PUTs from now on (bytes already held keep their time).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Client → server through a delaying queue, server → client at once.
    fn relay(
        client: std::net::TcpStream,
        server: std::net::TcpStream,
        [delay_ms, get_delay_ms]: [Arc<std::sync::atomic::AtomicU64>; 2],
        exchanges: Arc<Mutex<Vec<Exchange>>>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) {
        use std::io::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let (Ok(mut from_client), Ok(mut to_server)) = (client.try_clone(), server.try_clone())
        else {
            return;
        };
        let (mut from_server, mut to_client) = (server, client);
        for s in [&from_client, &from_server] {
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        }
        // This connection's requests, in order; answers match them in order (HTTP/1.1).
        let mine: Arc<Mutex<Vec<usize>>> = Arc::default();
        let (queue, due) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        let st = stop.clone();
        std::thread::spawn(move || {
            while let Ok((at, bytes)) = due.recv() {
                if let Some(wait) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if st.load(Relaxed) || to_server.write_all(&bytes).is_err() {
                    let _ = to_server.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
            let _ = to_server.shutdown(std::net::Shutdown::Write);
        });
        let (ex, st, m) = (exchanges.clone(), stop.clone(), mine.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            // The delay that applies to the request being relayed (PUT, GET, or none).
            let mut hold: Option<&Arc<std::sync::atomic::AtomicU64>> = None;
            while !st.load(Relaxed) {
                let n = match read_some(&mut from_client, &mut buf) {
                    Got::Bytes(n) => n,
                    Got::Nothing => continue,
                    Got::Closed => return,
                };
                let chunk = &buf[..n];
                let methods: [&[u8]; 5] = [b"PUT ", b"GET ", b"POST ", b"DELETE ", b"HEAD "];
                if methods.iter().any(|m| chunk.starts_with(m)) {
                    let line = String::from_utf8_lossy(chunk)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    hold = if line.starts_with("PUT ") {
                        Some(&delay_ms)
                    } else if line.starts_with("GET ") {
                        Some(&get_delay_ms)
                    } else {
                        None
                    };
                    let mut all = ex.lock().expect("proxy lock");
                    all.push(Exchange {
                        request: line,
                        sent: Instant::now(),
                        answered: None,
                    });
                    m.lock().expect("proxy lock").push(all.len() - 1);
                }
                let delay = hold.map_or(0, |d| d.load(Relaxed));
                let at = Instant::now() + Duration::from_millis(delay);
                if queue.send((at, chunk.to_vec())).is_err() {
                    return;
                }
            }
        });
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut answered = 0;
            while !stop.load(Relaxed) {
                let n = match read_some(&mut from_server, &mut buf) {
                    Got::Bytes(n) => n,
                    Got::Nothing => continue,
                    Got::Closed => break,
                };
                if buf[..n].starts_with(b"HTTP/1.") {
                    let index = mine.lock().expect("proxy lock").get(answered).copied();
                    if let Some(i) = index {
                        exchanges.lock().expect("proxy lock")[i].answered = Some(Instant::now());
                    }
                    answered += 1;
                }
                if to_client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to_client.shutdown(std::net::Shutdown::Both);
        });
    }

    /// Every request seen so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().expect("proxy lock").clone()
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub mod pki {
    //! Certificates made by the test itself with rcgen: a CA, a server certificate for
    //! 127.0.0.1 and localhost, client certificates (current, expired, or signed by a CA the
    //! broker does not trust). Every file is PEM, keys PKCS#8; they live in a temporary
    //! directory removed with the [`TestPki`].
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use std::path::{Path, PathBuf};

    /// A certificate authority: what signs, and its certificate.
    struct Ca {
        issuer: Issuer<'static, KeyPair>,
    }

    impl Ca {
        fn new(cn: &str) -> (Ca, String) {
            let key = KeyPair::generate().expect("CA key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.distinguished_name = subject(cn);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2099, 12, 31);
            let cert = params.self_signed(&key).expect("self-signed CA");
            (
                Ca {
                    issuer: Issuer::new(params, key),
                },
                cert.pem(),
            )
        }

        /// A leaf certificate and its key (PEM): subject `CN=cn` and nothing else.
        fn leaf(
            &self,
            cn: &str,
            sans: &[&str],
            usage: ExtendedKeyUsagePurpose,
            expired: bool,
        ) -> (String, String) {
            let key = KeyPair::generate().expect("leaf key");
            let names: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name = subject(cn);
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            params.use_authority_key_identifier_extension = true;
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = if expired {
                date_time_ymd(2021, 1, 1)
            } else {
                date_time_ymd(2099, 12, 31)
            };
            let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
            (cert.pem(), key.serialize_pem())
        }
    }

    fn subject(cn: &str) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn
    }

    /// Writes `contents` to `path` through a temporary file and a rename, so that a reader
    /// (the broker's reload) never sees half a file.
    fn write_atomic(path: &Path, contents: &str) {
        use std::os::unix::fs::PermissionsExt;
        let name = path.file_name().expect("file name").to_string_lossy();
        let tmp = path.with_file_name(format!(".{name}.new"));
        std::fs::write(&tmp, contents).expect("write PEM");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).expect("chmod PEM");
        std::fs::rename(&tmp, path).expect("rename PEM");
    }

    /// A test's own PKI.
    pub struct TestPki {
        dir: tempfile::TempDir,
        ca: Ca,
        other_ca: Ca,
        /// The CA that signs the server's and the good clients' certificates.
        pub ca_pem: PathBuf,
        /// A second CA the broker is not told about.
        pub other_ca_pem: PathBuf,
        /// The server's certificate (SANs: IP 127.0.0.1 and DNS localhost) and key.
        pub server_cert: PathBuf,
        pub server_key: PathBuf,
    }

    impl TestPki {
        /// A CA, a second (untrusted) CA and a server certificate with subject `CN=silt-test`.
        pub fn new() -> TestPki {
            Self::with_server_cn("silt-test")
        }

        /// Like [`TestPki::new`], with the server certificate's subject `CN=server_cn`.
        pub fn with_server_cn(server_cn: &str) -> TestPki {
            let dir = tempfile::tempdir().expect("pki tempdir");
            let (ca, ca_cert) = Ca::new("Silt Test CA");
            let (other_ca, other_cert) = Ca::new("Untrusted Test CA");
            let ca_pem = dir.path().join("ca.pem");
            let other_ca_pem = dir.path().join("other-ca.pem");
            write_atomic(&ca_pem, &ca_cert);
            write_atomic(&other_ca_pem, &other_cert);
            let pki = TestPki {
                server_cert: dir.path().join("server.pem"),
                server_key: dir.path().join("server.key"),
                dir,
                ca,
                other_ca,
                ca_pem,
                other_ca_pem,
            };
            pki.reissue_server(server_cn);
            pki
        }

        /// The directory the files are in (tests may put their own files there too).
        pub fn dir(&self) -> &Path {
            self.dir.path()
        }

        /// Replaces the server's certificate and key files with a new pair (new key, subject
        /// `CN=cn`, same CA and SANs): the key file first, then the certificate, each by rename.
        pub fn reissue_server(&self, cn: &str) {
            let (cert, key) = self.ca.leaf(
                cn,
                &["localhost", "127.0.0.1"],
                ExtendedKeyUsagePurpose::ServerAuth,
                false,
            );
            write_atomic(&self.server_key, &key);
            write_atomic(&self.server_cert, &cert);
        }

        /// A client certificate with subject `CN=cn` signed by the trusted CA, valid until
        /// 2099 or (`expired`) only during 2020: (certificate path, key path).
        pub fn client(&self, cn: &str, expired: bool) -> (PathBuf, PathBuf) {
            let (cert, key) = self
                .ca
                .leaf(cn, &[], ExtendedKeyUsagePurpose::ClientAuth, expired);
            self.write_pair(cn, &cert, &key)
        }

        /// A current client certificate with subject `CN=cn` signed by the other CA.
        pub fn untrusted_client(&self, cn: &str) -> (PathBuf, PathBuf) {
            let (cert, key) =
                self.other_ca
                    .leaf(cn, &[], ExtendedKeyUsagePurpose::ClientAuth, false);
            self.write_pair(cn, &cert, &key)
        }

        fn write_pair(&self, cn: &str, cert: &str, key: &str) -> (PathBuf, PathBuf) {
            let base: String = cn
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let cert_path = self.dir.path().join(format!("client-{base}.pem"));
            let key_path = self.dir.path().join(format!("client-{base}.key"));
            write_atomic(&key_path, key);
            write_atomic(&cert_path, cert);
            (cert_path, key_path)
        }
    }

    impl Default for TestPki {
        fn default() -> Self {
            Self::new()
        }
    }
}
