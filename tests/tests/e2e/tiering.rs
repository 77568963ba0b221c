//! Object storage as the source of truth, against a real S3-compatible server over HTTP (moto)
//! and real clients: WAL objects before acks=all is answered, archived segments read back from
//! the bucket with librdkafka, a restart with the local disk wiped, `silt read` against a Kafka
//! consumer, an outage of the object store, and retention deleting objects.

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use silt_e2e::kafka::{check_keyed, consume_all, consumer, create_topic, produce_keyed, producer};
use silt_e2e::records::{self, BatchSpec};
use silt_e2e::{raw, run, silt_bin, S3Server, Silt};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// Settings that make archiving, eviction and garbage collection happen within a test.
const FAST: &[(&str, &str)] = &[
    ("SILT_TIERING__ARCHIVE_INTERVAL_MS", "200"),
    ("SILT_TIERING__GC_GRACE_MS", "1000"),
];

fn wait_until(silt: &Silt, what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = silt.log();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    panic!(
        "timed out waiting for {what}; broker log (last lines, newest first):\n{}",
        tail.join("\n")
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Local segment files of every partition of the broker.
fn local_segments(silt: &Silt) -> usize {
    let mut n = 0;
    for topic in std::fs::read_dir(silt.data_dir.join("logs"))
        .unwrap()
        .flatten()
    {
        for p in std::fs::read_dir(topic.path()).unwrap().flatten() {
            n += std::fs::read_dir(p.path())
                .unwrap()
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().ends_with(".log"))
                .count();
        }
    }
    n
}

async fn produce_all(bootstrap: &str, topic: &str, partitions: i32, n: usize, acks: &str) {
    // Uncompressed, so that segment sizes (and how many roll) do not depend on batching.
    // Small batches, so that segments roll near segment.bytes rather than one batch each.
    let settings = [
        ("acks", acks),
        ("compression.type", "none"),
        ("batch.size", "16384"),
    ];
    produce_keyed(bootstrap, topic, partitions, 0..n, &settings).await;
}

/// Runs `silt read` on the bucket under `prefix`: (success, stdout, stderr).
fn silt_read(s3: &S3Server, prefix: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(silt_bin());
    cmd.arg("read").arg(s3.url(prefix)).args(args);
    for (k, v) in s3.env(prefix) {
        cmd.env(k, v);
    }
    run(&mut cmd, Duration::from_secs(60)).expect("silt read finishes")
}

fn metric(silt: &Silt, name: &str) -> f64 {
    let started = Instant::now();
    let Some((_, body)) = (0..3).find_map(|_| silt_e2e::http_get(silt.admin_port, "/metrics"))
    else {
        return f64::NAN;
    };
    if started.elapsed() > Duration::from_secs(1) {
        eprintln!("slow /metrics: {:?}", started.elapsed());
    }
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_is_answered_after_the_wal_object_is_in_the_bucket() {
    let s3 = S3Server::start();
    // A long upload delay for everyone but acks=all, so that acks=1 shows the difference.
    let silt = Silt::start_on_s3(&s3, "acks", &[("SILT_TIERING__WAL_MAX_DELAY_MS", "3000")]);
    create_topic(&silt.bootstrap(), "acks", 1, &[]).await;
    let wal_objects = || -> Vec<Vec<u8>> {
        s3.list("acks/wal/")
            .iter()
            .filter_map(|k| s3.get(k))
            .collect()
    };
    let acks_all = producer(&silt.bootstrap(), &[("acks", "all"), ("linger.ms", "0")]);
    for i in 0..10 {
        let value = format!("acks-all-{i}-payload");
        acks_all
            .send(
                FutureRecord::to("acks").key("k").payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("acked");
        let objects = wal_objects();
        assert!(
            objects.iter().any(|o| contains(o, value.as_bytes())),
            "record {i} is in a WAL object when its acks=all answer arrives"
        );
    }
    // acks=1 is answered after the local sync, long before the 3 s upload delay.
    let acks_one = producer(&silt.bootstrap(), &[("acks", "1"), ("linger.ms", "0")]);
    acks_one
        .send(
            FutureRecord::to("acks")
                .key("k")
                .payload("acks-one-payload"),
            Duration::from_secs(10),
        )
        .await
        .expect("acked");
    assert!(
        !wal_objects()
            .iter()
            .any(|o| contains(o, b"acks-one-payload")),
        "acks=1 does not wait for the bucket"
    );
    // ... and consumers see it only once it is recorded.
    wait_until(
        &silt,
        "the acks=1 record to be uploaded",
        Duration::from_secs(10),
        || {
            wal_objects()
                .iter()
                .any(|o| contains(o, b"acks-one-payload"))
        },
    );
    let got = consume_all(&silt.bootstrap(), "acks", 1, 11, Duration::from_secs(20));
    assert_eq!(got.len(), 11);
    let objects = metric(&silt, "silt_tiering_wal_objects_total");
    assert!(objects >= 10.0, "{objects} WAL objects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_and_evicted_segments_are_read_from_the_bucket_and_by_silt_read() {
    let s3 = S3Server::start();
    let mut silt = Silt::start_on_s3(&s3, "tier", FAST);
    let (partitions, n) = (2, 20_000);
    create_topic(
        &silt.bootstrap(),
        "history",
        partitions,
        &[("segment.bytes", "65536"), ("local.retention.bytes", "0")],
    )
    .await;
    produce_all(&silt.bootstrap(), "history", partitions, n, "all").await;
    // Sealed segments become objects, then their local copies go (the active one stays).
    wait_until(
        &silt,
        "local copies to be evicted",
        Duration::from_secs(30),
        || local_segments(&silt) <= partitions as usize,
    );
    let segments = s3.list("tier/topics/");
    let count = segments.iter().filter(|k| k.ends_with(".seg")).count();
    assert!(count >= 8, "segment objects in the bucket: {count}");
    assert!(segments.iter().any(|k| k.contains("/manifest/")));

    let got = consume_all(
        &silt.bootstrap(),
        "history",
        partitions,
        n,
        Duration::from_secs(60),
    );
    check_keyed(&got, partitions, n);
    let misses = metric(&silt, "silt_tiering_cache_misses_total");
    assert!(
        misses > 0.0,
        "the consumer was served from the bucket: {misses} cache misses"
    );

    // A restart with the local copies evicted (the first local segment starts far past 0)
    // keeps the log start where the bucket has it: the local disk is not the log's start.
    silt.stop();
    silt.restart();
    for p in 0..partitions {
        let (low, high) = consumer(&silt.bootstrap())
            .fetch_watermarks("history", p, Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            low, 0,
            "partition {p}: log start after a restart (end {high})"
        );
    }
    let again = consume_all(
        &silt.bootstrap(),
        "history",
        partitions,
        n,
        Duration::from_secs(60),
    );
    check_keyed(&again, partitions, n);

    // silt read, with no broker involved, returns what the consumer got, up to the end it
    // reports.
    for p in 0..partitions {
        let (ok, out, err) = silt_read(
            &s3,
            "tier",
            &["--topic", "history", "--partition", &p.to_string()],
        );
        assert!(ok, "silt read failed: {err}");
        let end: i64 = err
            .split("bucket end ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no end reported: {err}"));
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kafka: Vec<_> = got
            .iter()
            .filter(|g| g.partition == p && g.offset < end)
            .collect();
        assert!(
            end > 0 && lines.len() == kafka.len(),
            "{} lines, {} from Kafka below {end}",
            lines.len(),
            kafka.len()
        );
        for (line, k) in lines.iter().zip(kafka) {
            assert_eq!(line["offset"].as_i64(), Some(k.offset));
            assert_eq!(line["partition"].as_i64(), Some(p as i64));
            assert_eq!(line["key"].as_str().map(str::as_bytes), k.key.as_deref());
            assert_eq!(
                line["value"].as_str().map(str::as_bytes),
                k.value.as_deref()
            );
            assert_eq!(line["timestamp"].as_i64(), k.timestamp);
        }
    }
    // ListOffsets by time finds records in evicted segments (answered from the bucket).
    let p0: Vec<_> = got.iter().filter(|g| g.partition == 0).collect();
    let target = p0[3000].timestamp.unwrap();
    let expected = p0
        .iter()
        .find(|g| g.timestamp.unwrap() >= target)
        .unwrap()
        .offset;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("history", 0, rdkafka::Offset::Offset(target))
        .unwrap();
    let found = consumer(&silt.bootstrap())
        .offsets_for_times(tpl, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        found.find_partition("history", 0).unwrap().offset(),
        rdkafka::Offset::Offset(expected)
    );

    // A time-based start lands where ListOffsets-by-time would.
    let t = got[0].timestamp.unwrap().to_string();
    let (ok, out, err) = silt_read(
        &s3,
        "tier",
        &[
            "--topic",
            "history",
            "--partition",
            "0",
            "--from-time",
            &t,
            "--to-offset",
            "5",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.lines().count() <= 5 && out.lines().count() > 0, "{out}");

    // DeleteRecords on tiered data moves the log start, for Kafka clients and in the bucket.
    let delete = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("history")))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(5_000)])]);
    let deleted: DeleteRecordsResponse = raw::call(&silt.bootstrap(), 1, &delete).unwrap();
    let r = &deleted.topics[0].partitions[0];
    assert_eq!((r.error_code, r.low_watermark), (0, 5_000));
    let (low, _) = consumer(&silt.bootstrap())
        .fetch_watermarks("history", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(low, 5_000);
    let after = consume_all(
        &silt.bootstrap(),
        "history",
        1,
        5_000,
        Duration::from_secs(30),
    );
    assert_eq!(after.first().map(|g| g.offset), Some(5_000));
    wait_until(
        &silt,
        "the manifest to carry the new log start",
        Duration::from_secs(20),
        || {
            let args = [
                "--topic",
                "history",
                "--partition",
                "0",
                "--to-offset",
                "5001",
            ];
            let (ok, out, err) = silt_read(&s3, "tier", &args);
            ok && err.contains("log start 5000") && out.lines().count() == 1
        },
    );
    // Archiving goes on after a log start inside a segment, and a broker rebuilt from the
    // bucket alone starts there.
    produce_all(&silt.bootstrap(), "history", partitions, 4_000, "all").await;
    wait_until(
        &silt,
        "new segments to be archived and evicted",
        Duration::from_secs(30),
        || local_segments(&silt) <= partitions as usize,
    );
    silt.kill9();
    for dir in ["wal", "logs", "cache"] {
        let _ = std::fs::remove_dir_all(silt.data_dir.join(dir));
    }
    silt.restart();
    let p0 = consume_all(
        &silt.bootstrap(),
        "history",
        1,
        7_000,
        Duration::from_secs(30),
    );
    assert_eq!(p0.len(), 7_000, "offsets 5000..12000 of partition 0");
    assert_eq!(p0.first().map(|g| g.offset), Some(5_000));
    assert_eq!(p0.last().map(|g| g.offset), Some(11_999));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_wal_segments_and_cache_deleted_reads_everything_recorded() {
    let s3 = S3Server::start();
    let mut silt = Silt::start_on_s3(&s3, "wipe", FAST);
    let (partitions, n) = (3, 9_000);
    create_topic(
        &silt.bootstrap(),
        "wiped",
        partitions,
        &[("segment.bytes", "32768")],
    )
    .await;
    produce_all(&silt.bootstrap(), "wiped", partitions, n, "all").await;
    // Some of it archived into segments, the rest only in the recorded tail.
    wait_until(
        &silt,
        "segments to be archived",
        Duration::from_secs(20),
        || s3.list("wipe/topics/").iter().any(|k| k.ends_with(".seg")),
    );
    silt.kill9();
    for dir in ["wal", "logs", "cache"] {
        let _ = std::fs::remove_dir_all(silt.data_dir.join(dir));
    }
    silt.restart();
    assert!(
        silt.log().contains("replayed the recorded tail"),
        "{}",
        silt.log()
    );
    let got = consume_all(
        &silt.bootstrap(),
        "wiped",
        partitions,
        n,
        Duration::from_secs(60),
    );
    check_keyed(&got, partitions, n);
    // And it keeps working: new records follow the old ones.
    produce_all(&silt.bootstrap(), "wiped", partitions, 30, "all").await;
    let consumer = consumer(&silt.bootstrap());
    let (_, hw) = consumer
        .fetch_watermarks("wiped", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(hw, (n / 3 + 10) as i64);
}

fn produce_raw(silt: &Silt, topic: &str, acks: i16, timeout_ms: i32, value: &[u8]) -> i16 {
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records::batch(BatchSpec {
                    count: 10,
                    value: value.to_vec(),
                    ..BatchSpec::default()
                })))])]);
    let response: ProduceResponse = raw::call(&silt.bootstrap(), 9, &request).expect("produce");
    response.responses[0].partition_responses[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_outage_is_bounded_and_nothing_acknowledged_is_lost() {
    let mut s3 = S3Server::start();
    let mut env = FAST.to_vec();
    env.push(("SILT_TIERING__MAX_PENDING_BYTES", "1048576"));
    let mut silt = Silt::start_on_s3(&s3, "outage", &env);
    create_topic(&silt.bootstrap(), "outage", 1, &[]).await;
    assert_eq!(produce_raw(&silt, "outage", -1, 10_000, b"before"), 0);

    s3.kill();
    // acks=all waits for its request timeout, then gets REQUEST_TIMED_OUT.
    let started = Instant::now();
    let code = produce_raw(&silt, "outage", -1, 1_500, b"during");
    assert_eq!(
        code,
        ResponseError::RequestTimedOut.code(),
        "acks=all during the outage"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1_400) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // acks=1 keeps landing in the local WAL...
    let value = vec![b'v'; 10_000];
    let mut acked_local = 0;
    let mut refused = None;
    for _ in 0..400 {
        match produce_raw(&silt, "outage", 1, 10_000, &value) {
            0 => acked_local += 1,
            code => {
                refused = Some(code);
                break;
            }
        }
    }
    // ... up to the bound (1 MiB here), then gets a retriable error.
    assert!(
        acked_local >= 5,
        "acks=1 accepted {acked_local} batches while the store was down"
    );
    assert_eq!(
        refused,
        Some(ResponseError::NotEnoughReplicas.code()),
        "bounded after {acked_local}"
    );
    assert!(ResponseError::NotEnoughReplicas.is_retriable());
    // The broker is still up and serving what it has.
    assert!(silt_e2e::http_get(silt.admin_port, "/healthz").is_some());

    // The store comes back (empty: moto keeps state in memory); every acknowledged record is
    // uploaded again and readable, and produce works again.
    s3.restart();
    wait_until(
        &silt,
        "uploads to catch up",
        Duration::from_secs(60),
        || metric(&silt, "silt_tiering_upload_lag_bytes") == 0.0,
    );
    assert_eq!(produce_raw(&silt, "outage", -1, 10_000, b"after"), 0);
    let expected = 10 * (1 + 1 + acked_local + 1);
    let got = consume_all(
        &silt.bootstrap(),
        "outage",
        1,
        expected,
        Duration::from_secs(30),
    );
    assert!(got.len() >= expected, "{} of {expected}", got.len());
    let values: BTreeMap<Vec<u8>, usize> = got.iter().fold(BTreeMap::new(), |mut m, g| {
        *m.entry(g.value.clone().unwrap_or_default()).or_default() += 1;
        m
    });
    assert_eq!(values.get(&value[..]).copied(), Some(10 * acked_local));
    assert!(values.contains_key(&b"after"[..]));
    assert_eq!(
        values.get(&b"during"[..]).copied(),
        Some(10),
        "timed out, not lost"
    );
    // What was never recorded before the outage is in the bucket now.
    let uploaded: Vec<Vec<u8>> = s3
        .list("outage/wal/")
        .iter()
        .filter_map(|k| s3.get(k))
        .collect();
    assert!(uploaded.iter().any(|o| contains(o, b"during")));
    silt.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_topic_deletion_delete_objects() {
    let s3 = S3Server::start();
    let silt = Silt::start_on_s3(&s3, "ret", FAST);
    create_topic(
        &silt.bootstrap(),
        "short",
        1,
        &[("segment.bytes", "16384"), ("retention.bytes", "65536")],
    )
    .await;
    produce_all(&silt.bootstrap(), "short", 1, 6_000, "all").await;
    let consumer = consumer(&silt.bootstrap());
    wait_until(
        &silt,
        "retention to move the log start",
        Duration::from_secs(30),
        || {
            consumer
                .fetch_watermarks("short", 0, Duration::from_secs(5))
                .is_ok_and(|(low, _)| low > 0)
        },
    );
    let segment_keys = || -> Vec<String> {
        s3.list("ret/topics/")
            .into_iter()
            .filter(|k| k.ends_with(".seg"))
            .collect()
    };
    // Retention keeps about retention.bytes of segments; the dropped objects go after the
    // grace period (1 s here).
    wait_until(
        &silt,
        "dropped segment objects to be deleted",
        Duration::from_secs(30),
        || {
            let keys = segment_keys();
            let bytes: usize = keys.iter().filter_map(|k| s3.get(k)).map(|b| b.len()).sum();
            bytes <= 65_536 + 2 * 16_384
        },
    );
    let (low, high) = consumer
        .fetch_watermarks("short", 0, Duration::from_secs(5))
        .unwrap();
    assert!(low > 0 && high == 6_000, "log start {low}, end {high}");
    let first = segment_keys()
        .iter()
        .filter_map(|k| k.rsplit('/').next()?.split('-').next()?.parse::<i64>().ok())
        .min()
        .expect("retention keeps the newest segment objects");
    assert!(
        first >= low - 2_000,
        "oldest kept segment starts at {first}, log start {low}"
    );

    // Deleting the topic deletes its objects.
    let (ok, _, err) = run(
        Command::new(silt_bin()).args([
            "topics",
            "delete",
            "short",
            "--bootstrap",
            &silt.bootstrap(),
        ]),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(ok, "{err}");
    wait_until(
        &silt,
        "the topic's objects to be deleted",
        Duration::from_secs(30),
        || s3.list("ret/topics/").is_empty(),
    );
}

/// A bucket that answers reads slowly delays a Fetch by at most
/// `tiering.remote_fetch_max_wait_ms`: the partition is answered KAFKA_STORAGE_ERROR (which
/// every client retries) instead of the fetch waiting for the store's own retries; when the
/// bucket is quick again the same fetch gets the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_bucket_delays_a_fetch_by_at_most_the_remote_wait() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::FetchRequest;
    let s3 = S3Server::start();
    let proxy = silt_e2e::SlowProxy::start(s3.port, Duration::ZERO);
    let mut env = s3.env("slow-read");
    for (k, v) in env.iter_mut() {
        if k == "AWS_ENDPOINT" {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    env.extend(FAST.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.push((
        "SILT_TIERING__REMOTE_FETCH_MAX_WAIT_MS".into(),
        "300".into(),
    ));
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let silt = Silt::start_with_env(&refs);
    create_topic(
        &silt.bootstrap(),
        "cold",
        1,
        &[("segment.bytes", "65536"), ("local.retention.bytes", "0")],
    )
    .await;
    produce_all(&silt.bootstrap(), "cold", 1, 3_000, "all").await;
    wait_until(
        &silt,
        "local copies to be evicted",
        Duration::from_secs(30),
        || local_segments(&silt) <= 1,
    );
    let fetch = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("cold")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);

    // Every GET to the bucket now takes 5 s.
    proxy.set_get_delay(Duration::from_secs(5));
    let slow = raw::call(&silt.bootstrap(), 11, &fetch).expect("a slow bucket still answers");
    let p = &slow.responses[0].partitions[0];
    assert_eq!(
        p.error_code,
        ResponseError::KafkaStorageError.code(),
        "the bucket's part of the fetch gave up"
    );
    assert!(
        p.high_watermark >= 3_000,
        "high watermark {}",
        p.high_watermark
    );

    proxy.set_get_delay(Duration::ZERO);
    let mut records = 0;
    for _ in 0..20 {
        let quick = raw::call(&silt.bootstrap(), 11, &fetch).expect("fetch");
        let p = &quick.responses[0].partitions[0];
        if p.error_code == 0 {
            records = p.records.as_ref().map_or(0, |r| r.len());
            break;
        }
        // A GET held from the slow phase may still be in the proxy's queue.
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        records > 0,
        "the records from the bucket once it is quick again"
    );
}
