//! The operator CLI (`silt topics|groups|cluster`) against a live broker, as a person or a
//! script would use it.

use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use silt_e2e::kafka::producer;
use silt_e2e::Silt;
use silt_e2e::{silt_cli as silt, silt_cli_json as json};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_groups_and_cluster_from_the_command_line() {
    let broker = Silt::start_with_env(&[("SILT_TIERING__TAIL_MAX_MS", "1000")]);
    let b = broker.bootstrap();
    let (ok, out, err) = silt(
        &[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=60000",
        ],
        &b,
    );
    assert!(ok && out.contains("created topic orders"), "{out}{err}");
    let (ok, _, err) = silt(&["topics", "create", "orders"], &b);
    assert!(
        !ok && err.contains("TopicAlreadyExists"),
        "a clear error: {err}"
    );

    let (ok, out, _) = silt(&["topics", "list"], &b);
    assert!(
        ok && out
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["orders", "3", "1"]),
        "{out}"
    );

    // 30 records, then a group that consumed and committed 20 of them (lag 10).
    let p = producer(&b, &[("acks", "all")]);
    let sends: Vec<_> = (0..30)
        .map(|i| {
            p.send_result(
                FutureRecord::<(), str>::to("orders")
                    .partition(i % 3)
                    .payload("x"),
            )
            .unwrap()
        })
        .collect();
    for d in join_all(sends).await {
        d.unwrap().unwrap();
    }
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "billing")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("orders", 0, Offset::Offset(10))
        .unwrap();
    offsets
        .add_partition_offset("orders", 1, Offset::Offset(6))
        .unwrap();
    offsets
        .add_partition_offset("orders", 2, Offset::Offset(4))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();

    let described = json(&["topics", "describe", "orders"], &b);
    assert_eq!(described["configs"]["retention.ms"], "60000");
    let ends: Vec<i64> = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .collect();
    assert_eq!(ends, vec![10, 10, 10]);

    let (ok, out, err) = silt(
        &[
            "topics",
            "alter",
            "orders",
            "--config",
            "retention.ms=120000",
            "--partitions",
            "4",
        ],
        &b,
    );
    assert!(ok, "{out}{err}");
    let described = json(&["topics", "describe", "orders"], &b);
    assert_eq!(described["configs"]["retention.ms"], "120000");
    assert_eq!(described["partitions"].as_array().unwrap().len(), 4);

    let groups = json(&["groups", "list"], &b);
    assert!(
        groups
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "billing"),
        "{groups}"
    );
    let group = json(&["groups", "describe", "billing"], &b);
    let lag: i64 = group["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["lag"].as_i64().unwrap())
        .sum();
    assert_eq!(lag, 10, "lag per partition: {group}");
    let (ok, out, _) = silt(&["groups", "describe", "billing"], &b);
    assert!(ok && out.contains("LAG"), "a table for people: {out}");

    let cluster = json(&["cluster"], &b);
    assert_eq!(cluster["brokers"].as_array().unwrap().len(), 1);
    assert_eq!(cluster["brokers"][0]["partitions_led"], 4);
    // Tiering status: with a 1 s tail limit the records are archived into segment objects (in
    // the local object store here); every partition ends up with no tail.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cluster = json(&["cluster"], &b);
        let parts: Vec<&serde_json::Value> = cluster["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["topic"] == "orders")
            .collect();
        assert_eq!(parts.len(), 4, "{cluster}");
        assert_eq!(cluster["errors"].as_array().unwrap().len(), 0, "{cluster}");
        for p in &parts {
            assert_eq!(p["log_start_offset"], 0, "{p}");
            assert_eq!(p["local_log_start_offset"], 0, "{p}");
        }
        let archived: Vec<i64> = parts
            .iter()
            .map(|p| p["archived_end_offset"].as_i64().unwrap())
            .collect();
        let hw: Vec<i64> = parts
            .iter()
            .map(|p| p["high_watermark"].as_i64().unwrap())
            .collect();
        assert_eq!(hw, vec![10, 10, 10, 0]);
        if archived == hw {
            assert!(parts.iter().all(|p| p["tail_records"] == 0));
            break;
        }
        assert!(Instant::now() < deadline, "never all archived: {cluster}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, _) = silt(&["cluster"], &b);
    assert!(
        ok && out.contains("ARCHIVED END"),
        "a table for people: {out}"
    );

    let (ok, _, err) = silt(&["topics", "delete", "orders"], &b);
    assert!(ok, "{err}");
    let (ok, _, err) = silt(&["topics", "describe", "orders"], &b);
    assert!(!ok && err.contains("UnknownTopicOrPartition"), "{err}");
    let (_, out, _) = silt(&["topics", "list"], &b);
    assert!(
        !out.contains("orders"),
        "describing a missing topic did not create it: {out}"
    );
}

/// With the default five-minute tail limit, fresh records are the tail: recorded in WAL
/// objects, not yet in a segment object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_shows_the_tail_not_yet_archived() {
    let broker = Silt::start();
    let b = broker.bootstrap();
    silt_e2e::kafka::create_topic(&b, "held", 1, &[]).await;
    silt_e2e::kafka::produce_keyed(&b, "held", 1, 0..25, &[("acks", "all")]).await;
    let cluster = json(&["cluster"], &b);
    let p = &cluster["partitions"][0];
    assert_eq!(p["high_watermark"], 25, "{cluster}");
    assert_eq!(p["archived_end_offset"], 0, "{cluster}");
    assert_eq!(p["tail_records"], 25, "{cluster}");
}

/// A tail of many small extents is archived once it passes `tail_max_extents`, long before
/// the five-minute `tail_max_ms`: the takeover replay stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_of_many_extents_is_archived() {
    let broker = Silt::start_with_env(&[("SILT_TIERING__TAIL_MAX_EXTENTS", "8")]);
    let b = broker.bootstrap();
    silt_e2e::kafka::create_topic(&b, "chatty", 1, &[]).await;
    let producer = producer(&b, &[("acks", "all"), ("linger.ms", "0")]);
    // One record at a time: each acknowledgement waits for its own WAL object.
    for i in 0..40 {
        let value = format!("v{i}");
        producer
            .send(
                FutureRecord::<(), String>::to("chatty").payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("acknowledged");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cluster = json(&["cluster"], &b);
        let p = &cluster["partitions"][0];
        assert_eq!(p["high_watermark"], 40, "{cluster}");
        if p["archived_end_offset"].as_i64().unwrap() >= 32 {
            assert!(p["tail_records"].as_i64().unwrap() <= 8, "{cluster}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tail was never archived: {cluster}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_unreachable_broker_is_a_clear_error() {
    let port = silt_e2e::free_port();
    let (ok, out, err) = silt(&["topics", "list"], &format!("127.0.0.1:{port}"));
    assert!(!ok, "{out}");
    assert!(
        err.contains("cannot reach a broker") && err.contains(&port.to_string()),
        "{err}"
    );
}
