//! `silt-bench`: produce and consume throughput and produce latency with a real client
//! (librdkafka), against a `silt` it starts on a free port with a fresh data directory.
//! Prints one line of JSON. A benchmark, not a test: it asserts nothing about speed.
//!
//! `produce_acks_*`: as fast as the client can send, at most 20,000 records outstanding; the
//! latency there includes queueing in the client. `steady_acks_*`: 1,000 records/s, the latency
//! of one record on an unsaturated broker. `fdatasync`: this disk, 4 KiB append + sync.
//!
//! With `--s3` the broker's object store is a real S3-compatible server (moto, started on a
//! free port) and the line also has: the server's PUT latency and PUTs per GiB ingested (at full
//! speed and at about 1 MB/s), and catch-up reads of evicted segments from the bucket with the
//! read cache cold and warm.
//!
//! With `--cluster` it starts etcd (Debian's etcd-server), moto and three brokers on loopback
//! and reports: etcd's key count, write rate and database growth with 1,000 partitions under a
//! steady load; p50/p99 produce latency at 1,000 records/s for acks=1 and acks=all; PUTs per
//! GiB at full speed summed over the three brokers; and failover time (SIGKILL of a partition's
//! leader under load to the first acknowledged produce on that partition).
//!
//! Usage: silt-bench [--records N] [--record-size BYTES] [--bin PATH-TO-SILT] [--s3 | --cluster]

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use silt_e2e::kafka::{consumer, create_topic, producer};
use silt_e2e::Silt;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 6;
const MAX_OUTSTANDING: usize = 20_000;

struct Args {
    records: usize,
    record_size: usize,
    s3: bool,
    cluster: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        records: 200_000,
        record_size: 1024,
        s3: false,
        cluster: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--records" => args.records = value().parse().expect("--records N"),
            "--record-size" => args.record_size = value().parse().expect("--record-size BYTES"),
            "--bin" => std::env::set_var("SILT_BIN", value()),
            "--s3" => args.s3 = true,
            "--cluster" => args.cluster = true,
            "-h" | "--help" => {
                eprintln!(
                    "silt-bench [--records N] [--record-size BYTES] [--bin PATH-TO-SILT] [--s3 | --cluster]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    if std::env::var("SILT_BIN").is_err() {
        let release =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/silt");
        std::env::set_var("SILT_BIN", release);
    }
    args
}

/// Sends record `i` (round-robin over the partitions); resolves to (send-to-ack time, outcome).
fn send_timed(
    producer: &FutureProducer,
    topic: &str,
    i: usize,
    payload: &[u8],
) -> impl std::future::Future<
    Output = (
        Duration,
        rdkafka::producer::future_producer::OwnedDeliveryResult,
    ),
> {
    let record = FutureRecord::<(), [u8]>::to(topic)
        .partition((i % PARTITIONS as usize) as i32)
        .payload(payload);
    let sent = Instant::now();
    let delivery = producer.send_result(record).expect("enqueue");
    async move {
        let result = delivery.await.expect("delivery future");
        (sent.elapsed(), result)
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn produce(bootstrap: &str, topic: &str, acks: &str, args: &Args) -> serde_json::Value {
    let producer = producer(
        bootstrap,
        &[
            ("acks", acks),
            ("linger.ms", "5"),
            ("batch.size", "1000000"),
            ("queue.buffering.max.messages", "1000000"),
            ("queue.buffering.max.kbytes", "1048576"),
        ],
    );
    let payload = vec![b'x'; args.record_size];
    let mut latencies_us = Vec::with_capacity(args.records);
    let mut outstanding = FuturesUnordered::new();
    let started = Instant::now();
    for i in 0..args.records {
        outstanding.push(send_timed(&producer, topic, i, &payload));
        while outstanding.len() >= MAX_OUTSTANDING {
            let (elapsed, result) = outstanding.next().await.expect("outstanding");
            result.expect("acknowledged");
            latencies_us.push(elapsed.as_micros() as u64);
        }
    }
    while let Some((elapsed, result)) = outstanding.next().await {
        result.expect("acknowledged");
        latencies_us.push(elapsed.as_micros() as u64);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    let bytes = (args.records * args.record_size) as f64;
    serde_json::json!({
        "records_per_s": (args.records as f64 / secs).round(),
        "mb_per_s": (bytes / secs / 1e6 * 10.0).round() / 10.0,
        "latency_p50_ms": percentile(&latencies_us, 0.50),
        "latency_p99_ms": percentile(&latencies_us, 0.99),
    })
}

/// Latency at a fixed, moderate rate (1,000 records/s for 5 s): what one record waits for when
/// the broker is not saturated. `linger.ms=0` so the client adds no batching delay.
async fn latency_at_fixed_rate(
    bootstrap: &str,
    topic: &str,
    acks: &str,
    record_size: usize,
) -> serde_json::Value {
    let producer = producer(bootstrap, &[("acks", acks), ("linger.ms", "0")]);
    let payload = vec![b'y'; record_size];
    // Warm up: connections and metadata for every partition, outside the measurement.
    for p in 0..PARTITIONS as usize {
        send_timed(&producer, topic, p, &payload)
            .await
            .1
            .expect("warm-up");
    }
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut outstanding = FuturesUnordered::new();
    let mut latencies_us = Vec::with_capacity(5000);
    for i in 0..5000usize {
        tick.tick().await;
        outstanding.push(send_timed(&producer, topic, i, &payload));
        while let Some(Some((elapsed, result))) =
            futures::FutureExt::now_or_never(outstanding.next())
        {
            result.expect("acknowledged");
            latencies_us.push(elapsed.as_micros() as u64);
        }
    }
    while let Some((elapsed, result)) = outstanding.next().await {
        result.expect("acknowledged");
        latencies_us.push(elapsed.as_micros() as u64);
    }
    latencies_us.sort_unstable();
    serde_json::json!({
        "records_per_s": 1000,
        "latency_p50_ms": percentile(&latencies_us, 0.50),
        "latency_p99_ms": percentile(&latencies_us, 0.99),
    })
}

fn consume(bootstrap: &str, topic: &str, expected: usize, record_size: usize) -> serde_json::Value {
    let consumer = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut got = 0usize;
    let mut bytes = 0usize;
    while got < expected && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            bytes += m.payload().map_or(0, |p| p.len());
            got += 1;
        }
    }
    assert_eq!(got, expected, "consumed everything");
    let secs = started.elapsed().as_secs_f64();
    let _ = record_size;
    serde_json::json!({
        "records_per_s": (got as f64 / secs).round(),
        "mb_per_s": (bytes as f64 / secs / 1e6 * 10.0).round() / 10.0,
    })
}

/// fdatasync latency of this disk, measured the way the WAL uses it: append 4 KiB, sync.
fn fdatasync_latency(dir: &std::path::Path) -> serde_json::Value {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    let mut samples = Vec::with_capacity(2000);
    for i in 0..2000u64 {
        let t = Instant::now();
        file.write_all_at(&block, i * 4096).unwrap();
        file.sync_data().unwrap();
        samples.push(t.elapsed().as_micros() as u64);
    }
    file.flush().unwrap();
    let _ = std::fs::remove_file(&path);
    samples.sort_unstable();
    serde_json::json!({
        "p50_ms": percentile(&samples, 0.50),
        "p99_ms": percentile(&samples, 0.99),
    })
}

/// Sums of the samples of metric `name` whose labels contain `label` (e.g. `op="put"`).
fn scrape(silt: &Silt, name: &str, label: &str) -> f64 {
    let (_, text) = silt_e2e::http_get(silt.admin_port, "/metrics").expect("metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// p50 and p99 (bucket upper bounds, ms) of histogram `name` for samples with `label`.
fn histogram_percentiles(silt: &Silt, name: &str, label: &str) -> serde_json::Value {
    let (_, text) = silt_e2e::http_get(silt.admin_port, "/metrics").expect("metrics");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket")) && l.contains(label))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    let at = |p: f64| {
        buckets
            .iter()
            .find(|b| b.1 >= p * total)
            .map_or(0.0, |b| b.0 * 1000.0)
    };
    serde_json::json!({ "count": total, "p50_ms_at_most": at(0.5), "p99_ms_at_most": at(0.99) })
}

fn puts_per_gib(silt: &Silt, before: (f64, f64)) -> serde_json::Value {
    let puts = scrape(
        silt,
        "silt_tiering_object_store_requests_total",
        "op=\"put\"",
    ) - before.0;
    let bytes = scrape(silt, "silt_broker_bytes_in_total", "") - before.1;
    serde_json::json!((puts / (bytes / (1u64 << 30) as f64)).round())
}

fn counters(silt: &Silt) -> (f64, f64) {
    (
        scrape(
            silt,
            "silt_tiering_object_store_requests_total",
            "op=\"put\"",
        ),
        scrape(silt, "silt_broker_bytes_in_total", ""),
    )
}

/// Object storage: PUT latency and PUTs/GiB at full speed and at 1 MB/s, then catch-up reads
/// of a topic whose segments were evicted locally, with the cache cold and then warm.
async fn s3_benchmark(args: &Args) -> serde_json::Value {
    let s3 = silt_e2e::S3Server::start();
    let silt = Silt::start_on_s3(
        &s3,
        "bench",
        &[("SILT_TIERING__ARCHIVE_INTERVAL_MS", "200")],
    );
    let bootstrap = silt.bootstrap();
    create_topic(&bootstrap, "s3-acks1", PARTITIONS, &[]).await;
    create_topic(&bootstrap, "s3-acksall", PARTITIONS, &[]).await;
    create_topic(&bootstrap, "s3-steady", PARTITIONS, &[]).await;
    let before = counters(&silt);
    let acks1 = produce(&bootstrap, "s3-acks1", "1", args).await;
    let acks1_puts = puts_per_gib(&silt, before);
    let before = counters(&silt);
    let acks_all = produce(&bootstrap, "s3-acksall", "all", args).await;
    let acks_all_puts = puts_per_gib(&silt, before);
    let before = counters(&silt);
    let steady_1 = latency_at_fixed_rate(&bootstrap, "s3-steady", "1", args.record_size).await;
    let steady_1_puts = puts_per_gib(&silt, before);
    let before = counters(&silt);
    let steady_all = latency_at_fixed_rate(&bootstrap, "s3-steady", "all", args.record_size).await;
    let steady_all_puts = puts_per_gib(&silt, before);
    let put_latency = histogram_percentiles(
        &silt,
        "silt_tiering_object_store_request_duration_seconds",
        "op=\"put\"",
    );

    // Catch-up: every segment archived and evicted locally, then read from offset 0.
    create_topic(
        &bootstrap,
        "s3-history",
        PARTITIONS,
        &[("segment.bytes", "8388608"), ("local.retention.bytes", "0")],
    )
    .await;
    produce(&bootstrap, "s3-history", "all", args).await;
    let logs = silt.data_dir.join("logs");
    let local_bytes = || -> u64 {
        walk(&logs)
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    // What stays local: each partition's active segment (at most segment.bytes).
    let active_bound = PARTITIONS as u64 * (8 << 20);
    while Instant::now() < deadline && local_bytes() > active_bound {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let evicted_to = local_bytes();
    let gets_before = scrape(
        &silt,
        "silt_tiering_object_store_requests_total",
        "op=\"get\"",
    );
    let cold = consume(&bootstrap, "s3-history", args.records, args.record_size);
    let gets_cold = scrape(
        &silt,
        "silt_tiering_object_store_requests_total",
        "op=\"get\"",
    ) - gets_before;
    let warm = consume(&bootstrap, "s3-history", args.records, args.record_size);
    let gets_warm = scrape(
        &silt,
        "silt_tiering_object_store_requests_total",
        "op=\"get\"",
    ) - gets_before
        - gets_cold;
    serde_json::json!({
        "server": "moto_server (S3 over HTTP on loopback)",
        "put_latency": put_latency,
        "produce_acks_1": acks1,
        "produce_acks_1_puts_per_gib": acks1_puts,
        "produce_acks_all": acks_all,
        "produce_acks_all_puts_per_gib": acks_all_puts,
        "steady_acks_1": steady_1,
        "steady_acks_1_puts_per_gib": steady_1_puts,
        "steady_acks_all": steady_all,
        "steady_acks_all_puts_per_gib": steady_all_puts,
        "catch_up_local_bytes_left": evicted_to,
        "catch_up_cold": cold,
        "catch_up_cold_gets": gets_cold,
        "catch_up_warm": warm,
        "catch_up_warm_gets": gets_warm,
    })
}

/// etcd's own gauges and counters (its `/metrics` on the client port).
fn etcd_metric(port: u16, name: &str) -> f64 {
    let (_, text) = silt_e2e::http_get(port, "/metrics").expect("etcd metrics");
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Waits until every partition of `topic` has a leader.
fn wait_for_leaders(bootstrap: &str, topic: &str, partitions: usize) {
    let client = consumer(bootstrap);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(m) = client.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            let led = m
                .topics()
                .iter()
                .flat_map(|t| t.partitions())
                .filter(|p| p.leader() >= 0)
                .count();
            if led == partitions {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: no leaders after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    consumer(bootstrap)
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata")
        .topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .map_or(-1, |p| p.leader())
}

/// Failover: 500 records/s (acks=all, idempotent) over the 6 partitions of a new topic; SIGKILL
/// partition 0's leader; the time to the first acknowledgement on partition 0 after the kill
/// (`None`: none within `within`). The killed broker is started again afterwards.
async fn failover(
    brokers: &mut [Silt],
    bootstrap: &str,
    topic: &str,
    within: Duration,
) -> Option<Duration> {
    create_topic(bootstrap, topic, PARTITIONS, &[]).await;
    wait_for_leaders(bootstrap, topic, PARTITIONS as usize);
    let acks: std::sync::Arc<std::sync::Mutex<Vec<(i32, Instant, Instant)>>> = Default::default();
    let errors: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>> =
        Default::default();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (bootstrap, acks, stop, topic, errors) = (
            bootstrap.to_string(),
            acks.clone(),
            stop.clone(),
            topic.to_string(),
            errors.clone(),
        );
        tokio::spawn(async move {
            let producer = producer(
                &bootstrap,
                &[
                    ("acks", "all"),
                    ("enable.idempotence", "true"),
                    ("linger.ms", "0"),
                    ("message.timeout.ms", "300000"),
                ],
            );
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let mut outstanding = FuturesUnordered::new();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                tick.tick().await;
                let record = FutureRecord::<(), [u8]>::to(&topic)
                    .partition((i % PARTITIONS as usize) as i32)
                    .payload(b"f".as_slice());
                let sent = Instant::now();
                let delivery = producer.send(record, Duration::from_secs(300));
                outstanding.push(async move { (sent, delivery.await) });
                i += 1;
                while let Some(Some((sent, r))) =
                    futures::FutureExt::now_or_never(outstanding.next())
                {
                    match r {
                        Ok((p, _)) => acks.lock().unwrap().push((p, sent, Instant::now())),
                        Err((e, _)) => {
                            *errors.lock().unwrap().entry(e.to_string()).or_default() += 1
                        }
                    }
                }
            }
            drop(outstanding);
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let victim = leader_of(bootstrap, topic, 0);
    let killed = Instant::now();
    // Node n is the n-th broker started.
    let index = usize::try_from(victim - 1).expect("partition 0 has a leader");
    brokers[index].kill9();
    let deadline = killed + within;
    let took = loop {
        let first = acks
            .lock()
            .unwrap()
            .iter()
            // Sent after the kill: an answer the victim wrote just before dying does not count.
            .filter(|(p, sent, _)| *p == 0 && *sent > killed)
            .map(|(_, _, t)| *t)
            .min();
        if let Some(t) = first {
            break Some(t - killed);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Release);
    let _ = load.await;
    if std::env::var("SILT_BENCH_TRACE").is_ok() {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            - killed.elapsed();
        eprintln!(
            "{topic}: killed broker {victim} at unix {:.3}, took {took:?}",
            wall.as_secs_f64()
        );
        for (i, b) in brokers.iter().enumerate().filter(|(i, _)| *i != index) {
            for l in b.log().lines().filter(|l| {
                (l.contains(topic) && !l.contains("append failed"))
                    || l.contains("controller")
                    || l.contains("stepping down")
            }) {
                eprintln!("broker {}: {}", i + 1, &l[..l.len().min(300)]);
            }
        }
    }
    if took.is_none() {
        eprintln!("{topic}: no acknowledgement on partition 0 within {within:?} of killing broker {victim}; producer errors: {:?}", errors.lock().unwrap());
        for (i, b) in brokers.iter().enumerate().filter(|(i, _)| *i != index) {
            let log = b.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| {
                    !l.contains("append failed")
                        && (l.contains("WARN")
                            || l.contains("ERROR")
                            || l.contains(topic)
                            || l.contains("controller"))
                })
                .collect();
            eprintln!("---- broker {} ({} lines)", i + 1, lines.len());
            for l in lines.iter().rev().take(40).rev() {
                eprintln!("{}", &l[..l.len().min(400)]);
            }
        }
    }
    brokers[index].restart();
    took
}

/// Three brokers on one etcd and one bucket: the metadata budget with 1,000 partitions, latency,
/// PUTs/GiB and failover time.
async fn cluster_benchmark(args: &Args) -> serde_json::Value {
    let etcd = silt_e2e::EtcdServer::start();
    let s3 = silt_e2e::S3Server::start();
    let mut env = s3.env("bench");
    env.push(("SILT_METADATA".into(), etcd.url("bench")));
    let mut brokers: Vec<Silt> = (1..=3)
        .map(|node| {
            let node = node.to_string();
            let mut all: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            all.push(("SILT_NODE_ID", &node));
            Silt::start_with_env(&all)
        })
        .collect();
    let bootstrap = brokers
        .iter()
        .map(Silt::bootstrap)
        .collect::<Vec<_>>()
        .join(",");

    // Failover on a fresh cluster (small recorded tails), three times (the killed broker comes
    // back in between and gets its share again).
    let mut failover_fresh = Vec::new();
    for round in 0..3 {
        let topic = format!("cl-failover-{round}");
        let took = failover(&mut brokers, &bootstrap, &topic, Duration::from_secs(60)).await;
        failover_fresh.push(took.map(|d| d.as_millis() as u64));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    // The metadata budget: 1,000 partitions, 2,000 records/s of 1 KiB spread over all of them.
    let budget_partitions = 1000;
    let created = Instant::now();
    create_topic(&bootstrap, "budget", budget_partitions, &[]).await;
    wait_for_leaders(&bootstrap, "budget", budget_partitions as usize);
    let leaders_after = created.elapsed();
    let (rev0, puts0, db0) = (
        etcd_metric(etcd.port, "etcd_debugging_mvcc_current_revision"),
        etcd_metric(etcd.port, "etcd_mvcc_put_total"),
        etcd_metric(etcd.port, "etcd_mvcc_db_total_size_in_bytes"),
    );
    let load_secs = 30u64;
    let started = Instant::now();
    {
        let producer = producer(&bootstrap, &[("acks", "1"), ("linger.ms", "5")]);
        let payload = vec![b'b'; 1024];
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut outstanding = FuturesUnordered::new();
        let mut i = 0usize;
        while started.elapsed() < Duration::from_secs(load_secs) {
            tick.tick().await;
            for _ in 0..2 {
                let record = FutureRecord::<(), [u8]>::to("budget")
                    .partition((i % budget_partitions as usize) as i32)
                    .payload(&payload);
                outstanding.push(producer.send(record, Duration::from_secs(30)));
                i += 1;
            }
            while let Some(Some(r)) = futures::FutureExt::now_or_never(outstanding.next()) {
                r.expect("acknowledged");
            }
        }
        while let Some(r) = outstanding.next().await {
            r.expect("acknowledged");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let budget = serde_json::json!({
        "partitions": budget_partitions,
        "load": "2000 records/s of 1 KiB, acks=1, over all partitions",
        "seconds": load_secs,
        "leaders_assigned_s": (leaders_after.as_secs_f64() * 10.0).round() / 10.0,
        "etcd_keys": etcd_metric(etcd.port, "etcd_debugging_mvcc_keys_total"),
        "etcd_writes_per_s": ((etcd_metric(etcd.port, "etcd_debugging_mvcc_current_revision") - rev0) / secs).round(),
        "etcd_puts_per_s": ((etcd_metric(etcd.port, "etcd_mvcc_put_total") - puts0) / secs).round(),
        "etcd_db_bytes": etcd_metric(etcd.port, "etcd_mvcc_db_total_size_in_bytes"),
        "etcd_db_growth_bytes_per_s": ((etcd_metric(etcd.port, "etcd_mvcc_db_total_size_in_bytes") - db0) / secs).round(),
    });

    // Latency at a fixed rate, through all three brokers.
    create_topic(&bootstrap, "cl-latency", PARTITIONS, &[]).await;
    wait_for_leaders(&bootstrap, "cl-latency", PARTITIONS as usize);
    let steady_1 = latency_at_fixed_rate(&bootstrap, "cl-latency", "1", args.record_size).await;
    let steady_all = latency_at_fixed_rate(&bootstrap, "cl-latency", "all", args.record_size).await;

    // PUTs per GiB at full speed (acks=all), summed over the brokers.
    create_topic(&bootstrap, "cl-puts", PARTITIONS, &[]).await;
    wait_for_leaders(&bootstrap, "cl-puts", PARTITIONS as usize);
    let sum = |brokers: &[Silt]| {
        brokers
            .iter()
            .map(counters)
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let before = sum(&brokers);
    let full = produce(&bootstrap, "cl-puts", "all", args).await;
    let after = sum(&brokers);
    let puts_per_gib =
        ((after.0 - before.0) / ((after.1 - before.1) / (1u64 << 30) as f64)).round();

    // Failover again with the 1,000 partitions' recorded tails (30 s of unarchived data): the
    // survivors rebuild a third of them from WAL objects before serving.
    let failover_loaded = failover(
        &mut brokers,
        &bootstrap,
        "cl-failover-loaded",
        Duration::from_secs(300),
    )
    .await;
    serde_json::json!({
        "brokers": 3,
        "metadata_budget": budget,
        "steady_acks_1": steady_1,
        "steady_acks_all": steady_all,
        "produce_acks_all_full_speed": full,
        "puts_per_gib_full_speed": puts_per_gib,
        "failover_ms_fresh": failover_fresh,
        "failover_ms_after_budget_load": failover_loaded.map(|d| d.as_millis() as u64),
        "lease_ttl_ms": 3000,
    })
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    if args.cluster {
        let line = serde_json::json!({
            "records": args.records,
            "record_bytes": args.record_size,
            "client": "librdkafka",
            "cluster": cluster_benchmark(&args).await,
        });
        println!("{line}");
        return;
    }
    if args.s3 {
        let line = serde_json::json!({
            "records": args.records,
            "record_bytes": args.record_size,
            "partitions": PARTITIONS,
            "client": "librdkafka",
            "s3": s3_benchmark(&args).await,
        });
        println!("{line}");
        return;
    }
    let silt = Silt::start();
    let bootstrap = silt.bootstrap();
    let fsync = fdatasync_latency(&silt.data_dir);
    create_topic(&bootstrap, "bench-acks1", PARTITIONS, &[]).await;
    create_topic(&bootstrap, "bench-acksall", PARTITIONS, &[]).await;
    let acks1 = produce(&bootstrap, "bench-acks1", "1", &args).await;
    let acks_all = produce(&bootstrap, "bench-acksall", "all", &args).await;
    let consumed = consume(&bootstrap, "bench-acksall", args.records, args.record_size);
    create_topic(&bootstrap, "bench-latency", PARTITIONS, &[]).await;
    let steady_1 = latency_at_fixed_rate(&bootstrap, "bench-latency", "1", args.record_size).await;
    let steady_all =
        latency_at_fixed_rate(&bootstrap, "bench-latency", "all", args.record_size).await;
    let line = serde_json::json!({
        "records": args.records,
        "record_bytes": args.record_size,
        "partitions": PARTITIONS,
        "client": "librdkafka",
        "produce_acks_1": acks1,
        "produce_acks_all": acks_all,
        "consume": consumed,
        "steady_acks_1": steady_1,
        "steady_acks_all": steady_all,
        "fdatasync": fsync,
    });
    println!("{line}");
}
