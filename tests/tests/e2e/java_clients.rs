//! The Java client (kafka-clients 3.x and 4.x): AdminClient create/delete, producer, consumer,
//! offsetsForTimes, endOffsets — all in `tests/java/SiltJavaClient.java`.

use silt_e2e::{java_client, run, Silt};
use std::time::Duration;

fn roundtrip(major: u32, silt: &Silt, topic: &str, count: usize, codec: &str) {
    let mut cmd = java_client(major);
    cmd.arg("roundtrip")
        .arg(silt.bootstrap())
        .arg(topic)
        .arg(count.to_string())
        .arg(codec);
    let (ok, stdout, stderr) = run(&mut cmd, Duration::from_secs(240)).expect("java client ran");
    assert!(
        ok && stdout.contains("\"ok\":true"),
        "java {major} {codec}: {stdout}\n{stderr}\nbroker log:\n{}",
        silt.log()
    );
}

#[test]
fn java_3_round_trip_every_codec() {
    let silt = Silt::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        roundtrip(3, &silt, &format!("java3-{codec}"), 2000, codec);
    }
}

#[test]
fn java_4_round_trip_every_codec() {
    let silt = Silt::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        roundtrip(4, &silt, &format!("java4-{codec}"), 2000, codec);
    }
}

#[test]
fn java_consumer_reads_across_a_restart() {
    // The restart starts a new leader epoch; the Java consumer validates its position with
    // OffsetForLeaderEpoch when it sees the new epoch.
    let mut silt = Silt::start();
    let mut produce = java_client(4);
    produce
        .arg("produce")
        .arg(silt.bootstrap())
        .arg("restarted")
        .arg("500");
    let (ok, out, err) = run(&mut produce, Duration::from_secs(120)).unwrap();
    assert!(ok, "{out}\n{err}");
    silt.stop();
    silt.restart();
    let mut produce = java_client(3);
    produce
        .arg("produce")
        .arg(silt.bootstrap())
        .arg("restarted")
        .arg("500");
    let (ok, out, err) = run(&mut produce, Duration::from_secs(120)).unwrap();
    assert!(ok, "{out}\n{err}");
    let mut consume = java_client(4);
    consume
        .arg("consume")
        .arg(silt.bootstrap())
        .arg("restarted")
        .arg("1000");
    let (ok, out, err) = run(&mut consume, Duration::from_secs(120)).unwrap();
    assert!(ok && out.contains("\"ok\":true"), "{out}\n{err}");
}

#[test]
fn java_admin_client_topics_configs_partitions_cluster_log_dirs_records() {
    let silt = Silt::start();
    for major in [3, 4] {
        let mut cmd = java_client(major);
        cmd.arg("admin")
            .arg(silt.bootstrap())
            .arg(format!("admin-{major}"));
        let (ok, out, err) = run(&mut cmd, Duration::from_secs(180)).unwrap();
        assert!(
            ok && out.contains("\"ok\":true"),
            "java {major}: {out}\n{err}\n{}",
            silt.log()
        );
    }
}

#[test]
fn java_transactional_producer_is_refused_cleanly() {
    let silt = Silt::start();
    for major in [3, 4] {
        let mut cmd = java_client(major);
        cmd.arg("transactional").arg(silt.bootstrap()).arg("tx");
        let (ok, out, err) = run(&mut cmd, Duration::from_secs(120)).unwrap();
        assert!(
            ok && out.contains("\"refused\""),
            "java {major}: {out}\n{err}"
        );
    }
}
