//! Three brokers on loopback sharing one etcd (Debian's etcd-server) and one bucket (moto),
//! with librdkafka clients: partitions spread over the brokers, and when a leader dies or is
//! paused another broker rebuilds its partitions from the bucket.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use silt_e2e::kafka::{check_keyed, consume_all, create_topic, produce_keyed};
use silt_e2e::{EtcdServer, S3Server, Silt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Cluster {
    _etcd: EtcdServer,
    _s3: S3Server,
    env: Vec<(String, String)>,
    brokers: BTreeMap<i32, Silt>,
}

impl Cluster {
    fn start(name: &str, nodes: &[i32], extra: &[(&str, &str)]) -> Cluster {
        let etcd = EtcdServer::start();
        let s3 = S3Server::start();
        let mut env = s3.env(name);
        env.push(("SILT_METADATA".into(), etcd.url(name)));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut cluster = Cluster {
            _etcd: etcd,
            _s3: s3,
            env,
            brokers: BTreeMap::new(),
        };
        for &node in nodes {
            cluster.add(node, &[]);
        }
        cluster
    }

    fn add(&mut self, node: i32, extra: &[(&str, &str)]) {
        let id = node.to_string();
        let mut all: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.push(("SILT_NODE_ID", &id));
        all.extend_from_slice(extra);
        self.brokers.insert(node, Silt::start_with_env(&all));
    }

    /// Creates `topic` through broker 1 and waits until broker 3 reports a live leader for
    /// every partition; returns partition → leader.
    async fn create_topic(&self, topic: &str, partitions: i32) -> BTreeMap<i32, i32> {
        create_topic(&self.bootstrap(1), topic, partitions, &[]).await;
        wait_for_leaders(
            &self.bootstrap(3),
            topic,
            partitions,
            &[1, 2, 3],
            Duration::from_secs(20),
        )
    }

    fn bootstrap(&self, node: i32) -> String {
        self.brokers[&node].bootstrap()
    }

    /// Every broker's address (clients may be given dead ones too, as in production).
    fn bootstrap_all(&self) -> String {
        self.brokers
            .values()
            .map(Silt::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Partition → leader node, as `bootstrap` reports it (-1: no leader).
fn leaders(bootstrap: &str, topic: &str) -> BTreeMap<i32, i32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client");
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return BTreeMap::new();
    };
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| (p.id(), p.leader()))
        .collect()
}

/// Waits until `bootstrap` reports a live leader for each of `partitions` among `nodes`.
fn wait_for_leaders(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    nodes: &[i32],
    within: Duration,
) -> BTreeMap<i32, i32> {
    let deadline = Instant::now() + within;
    loop {
        let l = leaders(bootstrap, topic);
        if l.len() == partitions as usize && l.values().all(|n| nodes.contains(n)) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no leaders among {nodes:?} within {within:?}: {l:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A record acknowledged by the cluster: its sequence number, partition and offset, and when.
#[derive(Debug, Clone, Copy)]
struct Acked {
    seq: usize,
    partition: i32,
    offset: i64,
    at: Instant,
}

/// Produces keyed records `from..` (record `i` to partition `i % partitions`, key `key-{i}`)
/// with an idempotent acks=all producer, at most 100 in flight, until `stop`.
async fn steady_producer(
    bootstrap: String,
    topic: String,
    partitions: i32,
    from: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<Acked>, usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let mut in_flight = futures::stream::FuturesOrdered::new();
    let mut acked = Vec::new();
    let mut failed = 0;
    let mut i = from;
    let collect = |r: Result<Result<(i32, i64), _>, _>, seq: usize, acked: &mut Vec<Acked>| {
        if let Ok(Ok((partition, offset))) = r {
            acked.push(Acked {
                seq,
                partition,
                offset,
                at: Instant::now(),
            });
        }
    };
    use futures::StreamExt;
    while !stop.load(Ordering::Acquire) {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let queued = producer
            .send_result(
                FutureRecord::to(&topic)
                    .partition((i % partitions as usize) as i32)
                    .key(&key)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .expect("queued");
        let seq = i;
        in_flight.push_back(async move { (seq, queued.await) });
        i += 1;
        if in_flight.len() >= 100 {
            let (seq, r) = in_flight.next().await.expect("one in flight");
            let before = acked.len();
            collect(r.map(|r| r.map_err(|(e, _)| e)), seq, &mut acked);
            failed += usize::from(acked.len() == before);
        } else {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    while let Some((seq, r)) = in_flight.next().await {
        let before = acked.len();
        collect(r.map(|r| r.map_err(|(e, _)| e)), seq, &mut acked);
        failed += usize::from(acked.len() == before);
    }
    (acked, failed)
}

/// Deliveries to a group consumer: (partition, offset, key).
type Deliveries = Arc<Mutex<Vec<(i32, i64, String)>>>;

/// The group consumer's own account (librdkafka's group and topic debug log, and the errors
/// its polls and commits returned), newest last and bounded: printed when it falls short.
type ClientLog = Arc<Mutex<std::collections::VecDeque<String>>>;

struct Captured(ClientLog);

impl Captured {
    fn push(log: &ClientLog, line: String) {
        let mut log = log.lock().unwrap();
        if log.len() >= 3000 {
            log.pop_front();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        log.push_back(format!(
            "{}.{:03} {line}",
            now.as_secs() % 100_000,
            now.subsec_millis()
        ));
    }
}

impl rdkafka::ClientContext for Captured {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        Captured::push(&self.0, format!("{level:?} {fac} {message}"));
    }
}

impl rdkafka::consumer::ConsumerContext for Captured {}

/// A consumer in group `group` that records every delivery (partition, offset, key) and
/// commits synchronously after each one, until `stop`.
fn group_consumer(
    bootstrap: String,
    topic: String,
    group: String,
    stop: Arc<AtomicBool>,
) -> (Deliveries, ClientLog, std::thread::JoinHandle<()>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let log: ClientLog = Arc::default();
    let context = Captured(log.clone());
    let handle = std::thread::spawn(move || {
        let consumer: BaseConsumer<Captured> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
            .set("session.timeout.ms", "10000")
            .set("debug", "cgrp,topic")
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug)
            .create_with_context(context)
            .expect("consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        while !stop.load(Ordering::Acquire) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                    sink.lock().unwrap().push((m.partition(), m.offset(), key));
                    // A commit that fails (the coordinator moving) is redelivered, not lost.
                    let committing = Instant::now();
                    let committed = consumer.commit_message(&m, CommitMode::Sync);
                    if committing.elapsed() > Duration::from_secs(1) {
                        Captured::push(
                            &consumer.context().0,
                            format!(
                                "TEST commit of {}@{} took {:?}",
                                m.partition(),
                                m.offset(),
                                committing.elapsed()
                            ),
                        );
                    }
                    if let Err(e) = committed {
                        Captured::push(
                            &consumer.context().0,
                            format!(
                                "TEST commit of {}@{} failed: {e}",
                                m.partition(),
                                m.offset()
                            ),
                        );
                    }
                }
                Some(Err(e)) => Captured::push(&consumer.context().0, format!("TEST poll: {e}")),
                None => {}
            }
        }
    });
    (got, log, handle)
}

/// Checks one partition's deliveries to a group consumer against what the producer had
/// acknowledged: the log holds every acknowledged record once, at the offset it was
/// acknowledged at, in production order; deliveries never skip an offset (a record may come
/// again after a rebalance, at the same offset with the same key, never elsewhere).
fn check_partition(p: i32, deliveries: &[(i64, String)], acked: &[Acked]) {
    let mut log: BTreeMap<i64, &str> = BTreeMap::new();
    let mut high = -1;
    for (offset, key) in deliveries {
        assert!(
            *offset <= high + 1,
            "partition {p}: delivery jumped from {high} to {offset}"
        );
        high = high.max(*offset);
        if let Some(previous) = log.insert(*offset, key) {
            assert_eq!(
                previous, key,
                "partition {p}: offset {offset} changed its record"
            );
        }
    }
    let keys: HashSet<&str> = log.values().copied().collect();
    assert_eq!(
        keys.len(),
        log.len(),
        "partition {p}: a record is in the log twice"
    );
    let mut last = -1;
    for a in acked {
        assert!(a.offset > last, "partition {p}: acknowledged out of order");
        last = a.offset;
        assert_eq!(
            log.get(&a.offset).copied(),
            Some(format!("key-{}", a.seq).as_str()),
            "partition {p}: acknowledged record {} at offset {} was not consumed there",
            a.seq,
            a.offset
        );
    }
}

/// Bootstrap from any broker; produce and consume across all three; then SIGKILL the leader of
/// a partition under steady idempotent acks=all load with a consumer group reading: every
/// acknowledged record is consumed, once in the log and in order, and the time from the kill
/// to the first acknowledgement on the moved partition is printed (the failover figure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_share_partitions_and_survive_sigkill_of_a_leader() {
    let mut cluster = Cluster::start("three", &[1, 2, 3], &[]);
    let (topic, partitions) = ("spread", 6);
    let placed = cluster.create_topic(topic, partitions).await;
    let used: HashSet<i32> = placed.values().copied().collect();
    assert_eq!(
        used.len(),
        3,
        "six partitions spread over three brokers: {placed:?}"
    );

    // Produce through broker 2's bootstrap, consume through broker 3's.
    let warmup = 600;
    produce_keyed(
        &cluster.bootstrap(2),
        topic,
        partitions,
        0..warmup,
        &[("acks", "all"), ("enable.idempotence", "true")],
    )
    .await;
    let got = consume_all(
        &cluster.bootstrap(3),
        topic,
        partitions,
        warmup,
        Duration::from_secs(60),
    );
    check_keyed(&got, partitions, warmup);

    // Steady load and a group consumer, then kill the leader of partition 0.
    let stop_producing = Arc::new(AtomicBool::new(false));
    let stop_consuming = Arc::new(AtomicBool::new(false));
    let (deliveries, client_log, consumer) = group_consumer(
        cluster.bootstrap_all(),
        topic.to_string(),
        "spans-failover".to_string(),
        stop_consuming.clone(),
    );
    let producer = tokio::spawn(steady_producer(
        cluster.bootstrap_all(),
        topic.to_string(),
        partitions,
        warmup,
        stop_producing.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let victim = leaders(&cluster.bootstrap_all(), topic)[&0];
    assert!(victim > 0, "partition 0 has a leader");
    cluster.brokers.get_mut(&victim).unwrap().kill9();
    let killed_at = Instant::now();
    let survivors: Vec<i32> = [1, 2, 3].into_iter().filter(|n| *n != victim).collect();
    let survivor = cluster.bootstrap(survivors[0]);
    wait_for_leaders(
        &survivor,
        topic,
        partitions,
        &survivors,
        Duration::from_secs(30),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop_producing.store(true, Ordering::Release);
    let (acked, failed) = producer.await.expect("producer task");
    let first_after = acked
        .iter()
        .filter(|a| a.partition == 0 && a.at > killed_at)
        .map(|a| a.at)
        .min()
        .expect("partition 0 acknowledged records after the kill");
    println!(
        "failover: SIGKILL of broker {victim} to the first acknowledged produce on partition 0: {:?}; {} records acknowledged under load, {} failed",
        first_after - killed_at,
        acked.len(),
        failed
    );

    // Everything acknowledged (warm-up included) reaches the group consumer.
    let mut all = warmed_up(&got);
    all.extend(acked);
    verify_group_consumption(
        &cluster,
        topic,
        partitions,
        &all,
        (&deliveries, &client_log),
        stop_consuming,
        consumer,
    );
}

/// Records `0..n` of `produce_keyed` as read back: acknowledged, at these offsets.
fn warmed_up(got: &[silt_e2e::kafka::Got]) -> Vec<Acked> {
    got.iter()
        .map(|r| Acked {
            seq: String::from_utf8_lossy(r.key.as_deref().unwrap())
                .trim_start_matches("key-")
                .parse()
                .unwrap(),
            partition: r.partition,
            offset: r.offset,
            at: Instant::now(),
        })
        .collect()
}

/// Waits (bounded) until the group consumer got every acknowledged record, stops it, and
/// checks each partition with [`check_partition`]. If the consumer falls short, the failure
/// says which offsets it lacks, whether a fresh consumer can read them, and what the brokers
/// logged at WARN and above.
fn verify_group_consumption(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    acked: &[Acked],
    (deliveries, client_log): (&Deliveries, &ClientLog),
    stop_consuming: Arc<AtomicBool>,
    consumer: std::thread::JoinHandle<()>,
) {
    let wanted: HashSet<(i32, i64)> = acked.iter().map(|a| (a.partition, a.offset)).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen: HashSet<(i32, i64)> = deliveries
            .lock()
            .unwrap()
            .iter()
            .map(|(p, o, _)| (*p, *o))
            .collect();
        if wanted.is_subset(&seen) {
            break;
        }
        if Instant::now() >= deadline {
            let missing: Vec<(i32, i64)> = wanted.difference(&seen).copied().collect();
            panic!(
                "the group consumer got {} of {} acknowledged records\n{}",
                wanted.intersection(&seen).count(),
                wanted.len(),
                shortfall(cluster, topic, partitions, acked.len(), &missing, &seen)
                    + "the group consumer's last log lines:\n"
                    + &client_tail(client_log, 250)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_consuming.store(true, Ordering::Release);
    consumer.join().expect("consumer thread");
    let deliveries = deliveries.lock().unwrap().clone();
    let mut by_partition: HashMap<i32, Vec<Acked>> = HashMap::new();
    for a in acked {
        by_partition.entry(a.partition).or_default().push(*a);
    }
    for p in 0..partitions {
        let mine: Vec<(i64, String)> = deliveries
            .iter()
            .filter(|(q, _, _)| *q == p)
            .map(|(_, o, k)| (*o, k.clone()))
            .collect();
        let mut acked = by_partition.remove(&p).unwrap_or_default();
        acked.sort_by_key(|a| a.seq);
        check_partition(p, &mine, &acked);
    }
}

/// What a group consumer that fell short lacks, per partition (missing offsets, the highest
/// delivered), whether a fresh consumer reads the missing offsets, and the brokers' WARN and
/// ERROR lines: enough to tell a stuck consumer from lost data.
fn shortfall(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    acked: usize,
    missing: &[(i32, i64)],
    seen: &HashSet<(i32, i64)>,
) -> String {
    let mut out = String::new();
    for p in 0..partitions {
        let mut lacking: Vec<i64> = missing.iter().filter(|m| m.0 == p).map(|m| m.1).collect();
        lacking.sort_unstable();
        let high = seen.iter().filter(|s| s.0 == p).map(|s| s.1).max();
        out += &format!(
            "partition {p}: {} missing (first {:?}, last {:?}), highest delivered {high:?}\n",
            lacking.len(),
            lacking.first(),
            lacking.last()
        );
    }
    let fresh = consume_all(
        &cluster.bootstrap_all(),
        topic,
        partitions,
        acked,
        Duration::from_secs(30),
    );
    let readable: HashSet<(i32, i64)> = fresh.iter().map(|g| (g.partition, g.offset)).collect();
    out += &format!(
        "a fresh consumer read {} records; {} of the missing are among them\n",
        fresh.len(),
        missing.iter().filter(|m| readable.contains(m)).count()
    );
    out += &format!(
        "leaders now: {:?}\n",
        leaders(&cluster.bootstrap_all(), topic)
    );
    let watermarks: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_all())
        .create()
        .expect("watermark client");
    let short: HashSet<i32> = missing.iter().map(|m| m.0).collect();
    for p in &short {
        out += &format!(
            "partition {p}: watermarks {:?}\n",
            watermarks.fetch_watermarks(topic, *p, Duration::from_secs(5))
        );
    }
    // What the brokers did with the partitions that fell short, and anything at WARN or above
    // (but the routine refusals of produce requests sent to a former leader).
    for (node, broker) in &cluster.brokers {
        for line in broker
            .log()
            .lines()
            .filter(|l| {
                (l.contains("WARN") || l.contains("ERROR")) && !l.contains("append failed")
                    || l.contains("silt_broker::group")
                    || l.contains("consumer groups")
                    || short.iter().any(|p| {
                        let plain = strip_ansi(l);
                        plain.contains(&format!("partition={p} "))
                            || plain.ends_with(&format!("partition={p}"))
                    })
            })
            .take(200)
        {
            out += &format!("broker {node}: {}\n", strip_ansi(line));
        }
    }
    out
}

/// The last `n` lines of a client's captured log.
fn client_tail(log: &ClientLog, n: usize) -> String {
    let log = log.lock().unwrap();
    log.iter()
        .skip(log.len().saturating_sub(n))
        .map(|l| format!("client: {l}\n"))
        .collect()
}

/// A log line without its terminal colours.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Rolling restart under steady idempotent acks=all load with a group consumer: each broker in
/// turn is stopped with SIGTERM (it flushes and revokes its lease; the controller hands its
/// partitions to the others) and started again (it gets its share back). The producer never
/// sees a non-retriable error, and every acknowledged record is consumed once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing() {
    let mut cluster = Cluster::start("rolling", &[1, 2, 3], &[]);
    let (topic, partitions) = ("rolling", 6);
    cluster.create_topic(topic, partitions).await;
    let stop_producing = Arc::new(AtomicBool::new(false));
    let stop_consuming = Arc::new(AtomicBool::new(false));
    let (deliveries, client_log, consumer) = group_consumer(
        cluster.bootstrap_all(),
        topic.to_string(),
        "rolling-group".to_string(),
        stop_consuming.clone(),
    );
    let producer = tokio::spawn(steady_producer(
        cluster.bootstrap_all(),
        topic.to_string(),
        partitions,
        0,
        stop_producing.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for node in [1, 2, 3] {
        let b = cluster.brokers.get_mut(&node).unwrap();
        let stopped = Instant::now();
        assert!(
            b.stop().is_some_and(|s| s.success()),
            "broker {node} exits cleanly"
        );
        b.restart();
        println!(
            "rolling restart: broker {node} stopped and ready again in {:?}",
            stopped.elapsed()
        );
        // Wait until the restarted broker leads partitions again before the next one goes.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !leaders(&cluster.bootstrap_all(), topic)
            .values()
            .any(|l| *l == node)
        {
            assert!(
                Instant::now() < deadline,
                "broker {node} got no partitions back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop_producing.store(true, Ordering::Release);
    let (acked, failed) = producer.await.expect("producer task");
    println!(
        "rolling restart: {} records acknowledged, {failed} failed",
        acked.len()
    );
    assert_eq!(failed, 0, "the producer saw only retriable errors");
    verify_group_consumption(
        &cluster,
        topic,
        partitions,
        &acked,
        (&deliveries, &client_log),
        stop_consuming,
        consumer,
    );
}

/// SIGSTOP the leader of a partition while its upload of acknowledged (acks=1) data is in
/// flight (a proxy holds its PUTs to the S3 server for 8 s), until its lease expires and
/// another broker takes the partition; then SIGCONT it. The PUT completes, but its commit is
/// fenced: a produce sent straight to it is refused with NOT_LEADER_OR_FOLLOWER, and the log
/// (read through the new leader) continues without a fork: the records written through the
/// new leader follow the recorded prefix, and nothing the paused broker had in flight or was
/// sent afterwards appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_fenced_and_steps_down() {
    let mut cluster = Cluster::start("zombie", &[1, 2, 3], &[]);
    let (topic, partitions) = ("paused", 3);
    let placed = cluster.create_topic(topic, partitions).await;
    let victim = placed[&0];
    // Recorded data first (acks=all), through any broker.
    produce_keyed(
        &cluster.bootstrap_all(),
        topic,
        partitions,
        0..300,
        &[("acks", "all"), ("enable.idempotence", "true")],
    )
    .await;
    // Restart the victim behind a proxy that holds its PUTs for 8 s, then give it acks=1 data:
    // its upload is in flight when it is paused.
    cluster.brokers.get_mut(&victim).unwrap().stop();
    cluster.brokers.remove(&victim);
    let proxy = silt_e2e::SlowProxy::start(cluster._s3.port, Duration::from_secs(8));
    let via_proxy = format!("http://127.0.0.1:{}", proxy.port);
    cluster.add(victim, &[("AWS_ENDPOINT", &via_proxy)]);
    // The controller gives the rejoined broker its share again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let victim_partition = loop {
        let placed = leaders(&cluster.bootstrap_all(), topic);
        if let Some((p, _)) = placed.iter().find(|(_, l)| **l == victim) {
            break *p;
        }
        assert!(
            Instant::now() < deadline,
            "broker {victim} leads no partition again: {placed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let unrecorded: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_all())
        .set("acks", "1")
        .create()
        .unwrap();
    for i in 0..50 {
        unrecorded
            .send(
                FutureRecord::to(topic)
                    .partition(victim_partition)
                    .key(&format!("zombie-{i}"))
                    .payload("held by the paused leader"),
                Duration::from_secs(10),
            )
            .await
            .expect("acks=1 acknowledged by the leader");
    }
    // Let the uploader cut its WAL object (wal_max_delay_ms is 250) and send the PUT.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let pid = cluster.brokers[&victim].pid().to_string();
    let paused = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    // Its lease expires and another broker takes the partition over.
    let others: Vec<i32> = [1, 2, 3].into_iter().filter(|n| *n != victim).collect();
    let others_bootstrap = others
        .iter()
        .map(|n| cluster.bootstrap(*n))
        .collect::<Vec<_>>()
        .join(",");
    wait_for_leaders(
        &others_bootstrap,
        topic,
        partitions,
        &others,
        Duration::from_secs(30),
    );
    produce_keyed_to(&others_bootstrap, topic, victim_partition, "after", 0..100).await;
    // Uploads from now on go through at once (the held PUT keeps its 8 s).
    proxy.set_delay(Duration::ZERO);
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    // The resumed broker refuses the partition's writes at once. (Later it registers again
    // and the controller may give it a partition again, after a takeover: writes it accepts
    // then must be in the log, and those it refused must not.)
    let first = raw_produce(&cluster.bootstrap(victim), topic, victim_partition, 1000);
    assert_eq!(first, 6, "NOT_LEADER_OR_FOLLOWER right after SIGCONT");
    let mut raw = vec![(1000, first)];
    for round in 1..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let key = 1000 + round;
        raw.push((
            key,
            raw_produce(&cluster.bootstrap(victim), topic, victim_partition, key),
        ));
    }
    let raw_acked: HashSet<String> = raw
        .iter()
        .filter(|(_, code)| *code == 0)
        .map(|(k, _)| format!("k{k}"))
        .collect();
    // More writes through the new leader, after the paused one had every chance to commit.
    tokio::time::sleep(Duration::from_secs(2)).await;
    produce_keyed_to(
        &others_bootstrap,
        topic,
        victim_partition,
        "after",
        100..150,
    )
    .await;

    let got = consume_all(
        &others_bootstrap,
        topic,
        partitions,
        300 + 150 + raw_acked.len(),
        Duration::from_secs(60),
    );
    let mine: Vec<_> = got
        .iter()
        .filter(|g| g.partition == victim_partition)
        .collect();
    let keys: Vec<String> = mine
        .iter()
        .map(|g| String::from_utf8_lossy(g.key.as_deref().unwrap()).to_string())
        .collect();
    for (i, g) in mine.iter().enumerate() {
        assert_eq!(g.offset, i as i64, "offsets are contiguous");
    }
    assert_eq!(
        keys.len(),
        100 + 150 + raw_acked.len(),
        "recorded prefix plus everything acknowledged after: {keys:?}"
    );
    assert!(
        keys.iter().all(|k| !k.starts_with("zombie")),
        "nothing the paused leader held unrecorded became visible: {keys:?}"
    );
    let raw_seen: HashSet<String> = keys
        .iter()
        .filter(|k| k.starts_with('k') && !k.starts_with("key-"))
        .cloned()
        .collect();
    assert_eq!(
        raw_seen, raw_acked,
        "exactly the direct writes it acknowledged: {raw:?}"
    );
    let after: Vec<&String> = keys.iter().filter(|k| k.starts_with("after")).collect();
    let expected: Vec<String> = (0..150).map(|i| format!("after-{i}")).collect();
    assert_eq!(
        after.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let log = cluster.brokers[&victim].log();
    assert!(
        log.contains("stepping down") || log.contains("stepped down"),
        "the paused broker noticed it lost the partition"
    );
    let in_flight: Vec<_> = proxy
        .exchanges()
        .into_iter()
        .filter(|e| {
            e.request.starts_with("PUT ")
                && e.request.contains(".wal")
                && e.sent < paused
                && e.answered.is_none_or(|a| a > paused)
        })
        .collect();
    assert!(
        !in_flight.is_empty(),
        "a WAL-object PUT was in flight when the leader was paused: {:?}",
        proxy.exchanges()
    );
    for e in &in_flight {
        println!(
            "in flight at the pause: {} (sent {:?} before, answered {:?} after)",
            e.request,
            paused - e.sent,
            e.answered.map(|a| a - paused)
        );
    }
}

/// Produces keys `{prefix}-{i}` to one partition with an idempotent acks=all producer.
async fn produce_keyed_to(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    prefix: &str,
    range: std::ops::Range<usize>,
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    for i in range {
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(&format!("{prefix}-{i}"))
                    .payload("v"),
                Duration::from_secs(30),
            )
            .await
            .expect("acknowledged");
    }
}

/// One acks=1 Produce of one record with key `k{key}`, sent straight to `addr` (no metadata,
/// no retries); its error code (-1: no answer).
fn raw_produce(addr: &str, topic: &str, partition: i32, key: i32) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let batch = silt_e2e::records::batch(silt_e2e::records::BatchSpec {
        first_sequence: key,
        ..Default::default()
    });
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    match silt_e2e::raw::call(addr, 9, &request) {
        Ok(r) => r.responses[0].partition_responses[0].error_code,
        Err(_) => -1,
    }
}

/// Every broker killed with SIGKILL and every local disk wiped: the cluster comes back from
/// etcd and the bucket alone with every record acknowledged with acks=all, and takes more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_comes_back_with_every_disk_wiped() {
    let mut cluster = Cluster::start("wiped", &[1, 2, 3], &[]);
    let (topic, partitions, n) = ("wiped", 6, 3_000);
    cluster.create_topic(topic, partitions).await;
    let settings = [("acks", "all"), ("enable.idempotence", "true")];
    produce_keyed(&cluster.bootstrap_all(), topic, partitions, 0..n, &settings).await;
    for b in cluster.brokers.values_mut() {
        b.kill9();
        std::fs::remove_dir_all(&b.data_dir).expect("wipe the data dir");
    }
    for b in cluster.brokers.values_mut() {
        b.restart();
    }
    let got = consume_all(
        &cluster.bootstrap_all(),
        topic,
        partitions,
        n,
        Duration::from_secs(90),
    );
    check_keyed(&got, partitions, n);
    produce_keyed(
        &cluster.bootstrap_all(),
        topic,
        partitions,
        n..n + 60,
        &settings,
    )
    .await;
    let got = consume_all(
        &cluster.bootstrap_all(),
        topic,
        partitions,
        n + 60,
        Duration::from_secs(60),
    );
    check_keyed(&got, partitions, n + 60);
}
