//! Silt on etcd (Debian's etcd-server) and an S3-compatible server (moto), with real clients:
//! the broker's only state is etcd and the bucket, so its whole data directory can be wiped
//! or another broker can take its partitions; node ids are unique; readiness follows the
//! metadata store. (Three brokers at once: `three_brokers.rs`.)

use silt_e2e::kafka::{check_keyed, consume_all, create_topic, produce_keyed};
use silt_e2e::{http_get, EtcdServer, S3Server, Silt};
use std::time::{Duration, Instant};

fn env<'a>(
    s3: &'a S3Server,
    etcd_url: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(String, String)> {
    let mut all = s3.env("cluster");
    all.push(("SILT_METADATA".into(), etcd_url.to_string()));
    all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all
}

fn start(all: &[(String, String)]) -> anyhow::Result<Silt> {
    let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Silt::try_start_with_env(&refs)
}

async fn produce_acks_all(bootstrap: &str, topic: &str, partitions: i32, from: usize, n: usize) {
    let settings = [("acks", "all"), ("enable.idempotence", "true")];
    produce_keyed(bootstrap, topic, partitions, from..from + n, &settings).await;
}

fn wait(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {within:?} waiting for {what}");
}

/// kill -9, then the whole data directory (WAL, segments, cache, and no embedded metadata to
/// lose) is deleted: the broker comes back from etcd and the bucket alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_on_etcd_survives_losing_its_whole_data_directory() {
    let etcd = EtcdServer::start();
    let s3 = S3Server::start();
    let url = etcd.url("wipe");
    let all = env(&s3, &url, &[]);
    let mut silt = start(&all).expect("start");
    let (partitions, n) = (3, 3_000);
    create_topic(&silt.bootstrap(), "stateless", partitions, &[]).await;
    produce_acks_all(&silt.bootstrap(), "stateless", partitions, 0, n).await;
    silt.kill9();
    std::fs::remove_dir_all(&silt.data_dir).expect("wipe the data dir");
    silt.restart();
    let got = consume_all(
        &silt.bootstrap(),
        "stateless",
        partitions,
        n,
        Duration::from_secs(60),
    );
    check_keyed(&got, partitions, n);
    // New records follow the old ones.
    produce_acks_all(&silt.bootstrap(), "stateless", partitions, n, 30).await;
    let got = consume_all(
        &silt.bootstrap(),
        "stateless",
        partitions,
        n + 30,
        Duration::from_secs(60),
    );
    check_keyed(&got, partitions, n + 30);
}

/// kill -9 of a broker on etcd with acknowledged data not yet in the bucket (acks=1, and
/// acks=all on a `silt.durability=local` topic; uploads held back by a long WAL-object delay):
/// it comes back on the same disk, still leads the partitions' last epoch (nobody else took
/// them over while it was away), and records its own data before serving, so nothing
/// acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_on_etcd_keeps_its_unrecorded_data_across_kill_9() {
    let etcd = EtcdServer::start();
    let s3 = S3Server::start();
    let url = etcd.url("unrecorded");
    let all = env(&s3, &url, &[("SILT_TIERING__WAL_MAX_DELAY_MS", "600000")]);
    let mut silt = start(&all).expect("start");
    let b = silt.bootstrap();
    let (partitions, n) = (3, 600);
    create_topic(&b, "acks1", partitions, &[]).await;
    create_topic(&b, "local", partitions, &[("silt.durability", "local")]).await;
    produce_keyed(&b, "acks1", partitions, 0..n, &[("acks", "1")]).await;
    produce_keyed(&b, "local", partitions, 0..n, &[("acks", "all")]).await;
    // The premise: none of it is in the bucket yet.
    let wal_objects = || {
        s3.list("cluster")
            .into_iter()
            .filter(|k| k.ends_with(".wal"))
            .count()
    };
    assert_eq!(wal_objects(), 0, "{:?}", s3.list("cluster"));
    silt.kill9();
    silt.restart();
    let b = silt.bootstrap();
    for topic in ["acks1", "local"] {
        let got = consume_all(&b, topic, partitions, n, Duration::from_secs(60));
        check_keyed(&got, partitions, n);
    }
    assert!(wal_objects() > 0, "recorded at the takeover");
    // The terms that follow continue the log.
    produce_keyed(&b, "acks1", partitions, n..n + 30, &[("acks", "all")]).await;
    let got = consume_all(&b, "acks1", partitions, n + 30, Duration::from_secs(60));
    check_keyed(&got, partitions, n + 30);
}

/// A second broker with a live broker's node id is refused; one with another id joins the
/// cluster. When the first stops cleanly (SIGTERM: flush to the bucket, revoke the lease), the
/// second takes its partitions over from the bucket, with its own disk, and serves everything
/// the first acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ids_are_unique_and_another_broker_takes_over_from_the_bucket() {
    let etcd = EtcdServer::start();
    let s3 = S3Server::start();
    let url = etcd.url("unique");
    let mut first = start(&env(&s3, &url, &[("SILT_NODE_ID", "1")])).expect("start");
    let (partitions, n) = (2, 1_000);
    create_topic(&first.bootstrap(), "handoff", partitions, &[]).await;
    produce_acks_all(&first.bootstrap(), "handoff", partitions, 0, n).await;

    let same_id = start(&env(&s3, &url, &[("SILT_NODE_ID", "1")]))
        .err()
        .expect("a second broker with node id 1 is refused");
    assert!(
        same_id
            .to_string()
            .contains("node id 1 is in use by a live broker"),
        "{same_id:#}"
    );
    let second = start(&env(&s3, &url, &[("SILT_NODE_ID", "2")])).expect("start node 2");
    operator_cli_reaches_every_broker(&first.bootstrap(), &second.bootstrap(), partitions, n).await;

    let stopped = Instant::now();
    assert!(
        first.stop().is_some_and(|s| s.success()),
        "clean exit on SIGTERM"
    );
    let got = consume_all(
        &second.bootstrap(),
        "handoff",
        partitions,
        n,
        Duration::from_secs(60),
    );
    check_keyed(&got, partitions, n);
    println!(
        "hand-off: SIGTERM of broker 1 to all {n} records read from broker 2: {:?}",
        stopped.elapsed()
    );
    produce_acks_all(&second.bootstrap(), "handoff", partitions, n, 10).await;
    let log = second.log();
    assert!(log.contains("took over the partition"), "{log}");
}

/// The operator CLI, bootstrapped from broker 1 once broker 2 leads a partition: offsets come
/// from each partition's leader, group offsets from each group's coordinator, and the group
/// list from every broker.
async fn operator_cli_reaches_every_broker(
    bootstrap: &str,
    other: &str,
    partitions: i32,
    n: usize,
) {
    wait(
        "the controller to give broker 2 a partition",
        Duration::from_secs(30),
        || {
            let cluster = silt_e2e::silt_cli_json(&["cluster"], bootstrap);
            let leaders: std::collections::BTreeSet<i64> = cluster["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["leader"].as_i64().unwrap())
                .collect();
            leaders.len() == 2 && cluster["errors"].as_array().unwrap().is_empty()
        },
    );
    // Both brokers name the same, elected controller.
    let controller = |b: &str| silt_e2e::silt_cli_json(&["cluster"], b)["controller"].clone();
    assert_eq!(controller(bootstrap), controller(other));
    let per_partition = (n / partitions as usize) as i64;
    let described = silt_e2e::silt_cli_json(&["topics", "describe", "handoff"], bootstrap);
    assert_eq!(
        described["errors"].as_array().unwrap().len(),
        0,
        "{described}"
    );
    for p in described["partitions"].as_array().unwrap() {
        assert_eq!(p["high_watermark"], per_partition, "{described}");
    }
    // Eight groups: rendezvous placement puts some on each broker (1 in 128 that it does not).
    let groups: Vec<String> = (0..8).map(|i| format!("cli-group-{i}")).collect();
    for (i, g) in groups.iter().enumerate() {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", g)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset("handoff", p, rdkafka::Offset::Offset(i as i64))
                .expect("tpl");
        }
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }
    let listed = silt_e2e::silt_cli_json(&["groups", "list"], bootstrap);
    for g in &groups {
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["group"] == g.as_str()),
            "{g} in {listed}"
        );
    }
    let mut coordinators = std::collections::BTreeSet::new();
    for (i, g) in groups.iter().enumerate() {
        let d = silt_e2e::silt_cli_json(&["groups", "describe", g], bootstrap);
        assert_eq!(d["errors"].as_array().unwrap().len(), 0, "{d}");
        let lag: i64 = d["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["lag"].as_i64().unwrap())
            .sum();
        assert_eq!(lag, (per_partition - i as i64) * partitions as i64, "{d}");
        coordinators.insert(d["coordinator"].as_i64().unwrap());
    }
    println!("groups coordinated by brokers {coordinators:?}");
}

/// /readyz says whether the metadata store answers: it turns 503 within about a lease TTL of
/// etcd going away and 200 again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_metadata_store() {
    let mut etcd = EtcdServer::start();
    let s3 = S3Server::start();
    let url = etcd.url("ready");
    let silt = start(&env(&s3, &url, &[])).expect("start");
    let ready = || http_get(silt.admin_port, "/readyz").map(|(code, _)| code);
    assert_eq!(ready(), Some(200));
    etcd.kill();
    wait(
        "/readyz to report not ready",
        Duration::from_secs(20),
        || ready() == Some(503),
    );
    assert_eq!(
        http_get(silt.admin_port, "/healthz").map(|(code, _)| code),
        Some(200),
        "the process stays alive"
    );
    etcd.restart();
    wait(
        "/readyz to report ready again",
        Duration::from_secs(30),
        || ready() == Some(200),
    );
}

/// A broker whose etcd speaks only TLS, wants a client certificate and has authentication on,
/// with a user whose role covers only the broker's namespace: the broker serves, keeps
/// serving after its etcd token expired, and with a wrong password refuses to start, saying
/// that etcd refused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_uses_etcd_over_tls_as_a_user_limited_to_its_namespace() {
    use silt_e2e::pki::TestPki;
    let pki = TestPki::new();
    let (cert, key) = pki.client("silt-broker", false);
    let etcd = EtcdServer::start_tls(silt_e2e::EtcdServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: pki.ca_pem.clone(),
        auth_token_ttl_s: 2,
    });
    etcd.enable_auth((&cert, &key), "root-secret", "silt", "silt-secret", "/tls/")
        .await
        .expect("enable etcd auth");
    let s3 = S3Server::start();
    let url = etcd.url("tls");
    let (ca, cert, key) = (
        pki.ca_pem.display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    let settings = |password: &'static str| {
        let extra: Vec<(&str, &str)> = vec![
            ("SILT_ETCD__CA_FILE", ca.as_str()),
            ("SILT_ETCD__CERT_FILE", cert.as_str()),
            ("SILT_ETCD__KEY_FILE", key.as_str()),
            ("SILT_ETCD__USERNAME", "silt"),
            ("SILT_ETCD__PASSWORD", password),
        ];
        env(&s3, &url, &extra)
    };
    let silt = start(&settings("silt-secret")).expect("start on etcds://");
    let partitions = 2;
    create_topic(&silt.bootstrap(), "over-tls", partitions, &[]).await;
    produce_acks_all(&silt.bootstrap(), "over-tls", partitions, 0, 200).await;
    // Past the token's lifetime: leadership, the lease and new writes go on.
    tokio::time::sleep(Duration::from_secs(4)).await;
    produce_acks_all(&silt.bootstrap(), "over-tls", partitions, 200, 200).await;
    let got = consume_all(
        &silt.bootstrap(),
        "over-tls",
        partitions,
        400,
        Duration::from_secs(60),
    );
    check_keyed(&got, partitions, 400);
    assert_eq!(
        http_get(silt.admin_port, "/readyz").map(|(code, _)| code),
        Some(200),
        "ready: its lease is renewed over TLS"
    );
    assert!(
        !silt.log().contains("permission denied"),
        "nothing the broker needs lies outside its namespace:\n{}",
        silt.log()
    );

    let refused = start(&settings("wrong"))
        .err()
        .expect("a wrong password stops the start");
    let message = format!("{refused:#}");
    assert!(
        message.contains("etcd") && message.contains("authentication failed"),
        "{message}"
    );
}
