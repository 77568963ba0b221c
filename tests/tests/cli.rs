//! The operator CLI (`silt topics|groups|cluster`) against a live broker, as a person or a
//! script would use it.

use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use silt_e2e::kafka::producer;
use silt_e2e::{run, silt_bin, Silt};
use std::process::Command;
use std::time::Duration;

fn silt(args: &[&str], bootstrap: &str) -> (bool, String, String) {
    let mut cmd = Command::new(silt_bin());
    cmd.args(args)
        .args(["--bootstrap", bootstrap])
        .env_remove("RUST_BACKTRACE");
    run(&mut cmd, Duration::from_secs(60)).expect("silt ran")
}

fn json(args: &[&str], bootstrap: &str) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = silt(&all, bootstrap);
    assert!(ok, "silt {args:?}: {err}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("silt {args:?} printed no JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_groups_and_cluster_from_the_command_line() {
    let broker = Silt::start();
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
