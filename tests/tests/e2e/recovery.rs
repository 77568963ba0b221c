//! What a restart must preserve and change: leader epochs grow on every restart and answer
//! OffsetForLeaderEpoch; a torn WAL tail is cut, never served; retention removes whole
//! segments and advances the log start offset on a live broker.

use futures::future::join_all;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{MetadataRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use silt_e2e::kafka::{consume_all, consumer, create_topic, producer};
use silt_e2e::{raw, Silt};
use std::io::Write;
use std::time::Duration;

fn leader_epoch(silt: &Silt, topic: &str) -> i32 {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.into()))))]));
    let response = raw::call(&silt.bootstrap(), 12, &request).expect("metadata");
    response.topics[0].partitions[0].leader_epoch
}

fn end_offset_for(silt: &Silt, topic: &str, epoch: i32) -> (i32, i64) {
    let request =
        OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(epoch)])]);
    let response = raw::call(&silt.bootstrap(), 4, &request).expect("offset for leader epoch");
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.leader_epoch, p.end_offset)
}

async fn produce(silt: &Silt, topic: &str, n: usize) {
    let producer = producer(&silt.bootstrap(), &[("acks", "all")]);
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let value = format!("v{i}");
            producer
                .send_result(
                    FutureRecord::<(), String>::to(topic)
                        .partition(0)
                        .payload(&value),
                )
                .expect("enqueue")
        })
        .collect();
    for d in join_all(sends).await {
        d.expect("future").expect("acknowledged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_epoch_grows_on_every_restart_and_answers_offset_for_leader_epoch() {
    let mut silt = Silt::start();
    create_topic(&silt.bootstrap(), "epochs", 1, &[]).await;
    let e0 = leader_epoch(&silt, "epochs");
    produce(&silt, "epochs", 10).await;
    silt.stop();
    silt.restart();
    let e1 = leader_epoch(&silt, "epochs");
    assert!(e1 > e0, "epoch grew on restart: {e0} -> {e1}");
    produce(&silt, "epochs", 5).await;
    silt.kill9();
    silt.restart();
    let e2 = leader_epoch(&silt, "epochs");
    assert!(e2 > e1, "epoch grew on restart after kill -9: {e1} -> {e2}");

    assert_eq!(
        end_offset_for(&silt, "epochs", e0),
        (e0, 10),
        "epoch {e0} ended where {e1} began"
    );
    assert_eq!(end_offset_for(&silt, "epochs", e1), (e1, 15));
    assert_eq!(
        end_offset_for(&silt, "epochs", e2),
        (e2, 15),
        "current epoch: the log end"
    );
    assert_eq!(
        end_offset_for(&silt, "epochs", e2 + 1),
        (-1, -1),
        "unknown future epoch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_wal_tail_is_cut_and_never_served() {
    let mut silt = Silt::start();
    create_topic(&silt.bootstrap(), "torn", 1, &[]).await;
    produce(&silt, "torn", 100).await;
    silt.kill9();
    // A crash in the middle of a WAL write leaves a partial record: a length that promises
    // more than is there, then garbage.
    let wal_dir = silt.data_dir.join("wal");
    let newest = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .expect("a WAL file");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    f.write_all(&[0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
        .unwrap();
    drop(f);
    silt.restart();
    let got = consume_all(&silt.bootstrap(), "torn", 1, 101, Duration::from_secs(5));
    assert_eq!(got.len(), 100, "exactly the acknowledged records");
    produce(&silt, "torn", 1).await;
    let got = consume_all(&silt.bootstrap(), "torn", 1, 101, Duration::from_secs(30));
    assert_eq!(got.len(), 101);
    assert_eq!(got[100].offset, 100, "offsets continue after the cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_segments_and_advances_log_start() {
    let silt = Silt::start_with_env(&[("SILT_LOG__RETENTION_CHECK_INTERVAL_MS", "200")]);
    create_topic(
        &silt.bootstrap(),
        "short",
        1,
        &[("segment.bytes", "2048"), ("retention.bytes", "4096")],
    )
    .await;
    // Eighty acknowledged waves: eighty batches, about three times retention.bytes.
    for _ in 0..80 {
        produce(&silt, "short", 10).await;
    }
    let consumer = consumer(&silt.bootstrap());
    // Retention ran while we produced; wait until it has nothing left to delete (the log
    // start stays put across several checks).
    let mut low = 0;
    let mut stable_for = 0;
    for _ in 0..100 {
        let now = consumer
            .fetch_watermarks("short", 0, Duration::from_secs(5))
            .unwrap()
            .0;
        stable_for = if now == low && now > 0 {
            stable_for + 1
        } else {
            0
        };
        low = now;
        if stable_for >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        low > 0,
        "log start offset advanced; broker log:\n{}",
        silt.log()
    );
    let (_, high) = consumer
        .fetch_watermarks("short", 0, Duration::from_secs(5))
        .unwrap();
    assert_eq!(high, 800);
    // A consumer from the beginning starts at the new log start.
    let got = consume_all(
        &silt.bootstrap(),
        "short",
        1,
        (high - low) as usize,
        Duration::from_secs(30),
    );
    assert_eq!(got.first().map(|r| r.offset), Some(low));
    assert_eq!(got.last().map(|r| r.offset), Some(799));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_produced_and_consumed() {
    let silt = Silt::start();
    create_topic(&silt.bootstrap(), "metered", 1, &[]).await;
    produce(&silt, "metered", 250).await;
    let got = consume_all(
        &silt.bootstrap(),
        "metered",
        1,
        250,
        Duration::from_secs(30),
    );
    assert_eq!(got.len(), 250);
    let (code, text) = silt_e2e::http_get(silt.admin_port, "/metrics").expect("metrics served");
    assert_eq!(code, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
    };
    assert_eq!(
        value("silt_broker_records_in_total{topic=\"metered\"}"),
        250.0
    );
    assert!(value("silt_broker_bytes_in_total{topic=\"metered\"}") >= 250.0 * 2.0);
    assert!(value("silt_broker_records_out_total{topic=\"metered\"}") >= 250.0);
    assert!(value("silt_broker_requests_total{api=\"Produce\"}") >= 1.0);
    assert!(value("silt_broker_wal_fsync_duration_seconds_count") >= 1.0);
    assert!(value("silt_broker_connections_active") >= 0.0);
    assert_eq!(value("silt_broker_partitions_led"), 1.0);
    // The exported names, as a snapshot: renaming one breaks dashboards.
    let mut names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec![
            "silt_broker_bytes_in_total",
            "silt_broker_bytes_out_total",
            "silt_broker_connections_active",
            "silt_broker_partitions_led",
            "silt_broker_records_in_total",
            "silt_broker_records_out_total",
            "silt_broker_request_duration_seconds",
            "silt_broker_requests_total",
            "silt_broker_tls_handshake_failures_total",
            "silt_broker_wal_fsync_duration_seconds",
            "silt_broker_wal_sync_bytes",
            "silt_tiering_cache_hits_total",
            "silt_tiering_cache_misses_total",
            "silt_tiering_object_store_bytes_total",
            "silt_tiering_object_store_request_duration_seconds",
            "silt_tiering_object_store_requests_total",
            "silt_tiering_segments_uploaded_total",
            "silt_tiering_unrecorded_offsets_dropped_total",
            "silt_tiering_upload_lag_bytes",
            "silt_tiering_upload_lag_seconds",
            "silt_tiering_wal_objects_total",
        ]
    );
}
