//! Graceful shutdown on SIGTERM (what Kubernetes and `docker compose stop` send): the broker
//! uploads what its WAL holds and hands its partitions over before it exits, within
//! `shutdown_timeout_ms`; past the deadline it exits anyway and keeps the data in its WAL.
//! Against a real etcd and a real S3-compatible server (moto) behind a proxy that holds PUTs.

use silt_e2e::kafka::{check_keyed, consume_all, create_topic, produce_keyed};
use silt_e2e::{EtcdServer, S3Server, Silt, SlowProxy};
use std::time::{Duration, Instant};

/// The environment of a broker whose bucket is reached through `proxy`.
fn through(proxy: &SlowProxy, s3: &S3Server, prefix: &str) -> Vec<(String, String)> {
    let mut env = s3.env(prefix);
    for (k, v) in env.iter_mut() {
        if k == "AWS_ENDPOINT" {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    env
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// acks=1 records are answered from the local WAL; their upload is still held by the proxy
/// when broker 1 gets SIGTERM. It must finish the uploads and revoke its lease before it
/// exits: broker 2, started afterwards with a disk of its own, then serves every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_uploads_the_wal_and_hands_the_partitions_over() {
    let etcd = EtcdServer::start();
    let s3 = S3Server::start();
    let proxy = SlowProxy::start(s3.port, Duration::ZERO);
    let mut env = through(&proxy, &s3, "drain");
    env.push(("SILT_METADATA".into(), etcd.url("drain")));
    let mut first_env = env.clone();
    first_env.push(("SILT_NODE_ID".into(), "1".into()));
    let mut first = Silt::start_with_env(&refs(&first_env));
    let (topic, partitions, n) = ("drain", 3, 600);
    create_topic(&first.bootstrap(), topic, partitions, &[]).await;

    // From now on every PUT waits 3 s: the acks=1 records are in broker 1's WAL only.
    proxy.set_delay(Duration::from_secs(3));
    produce_keyed(
        &first.bootstrap(),
        topic,
        partitions,
        0..n,
        &[("acks", "1")],
    )
    .await;

    let stopping = Instant::now();
    let status = first.stop().expect("broker 1 ran");
    let took = stopping.elapsed();
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}\n{}",
        first.log()
    );
    let held_puts = proxy
        .exchanges()
        .into_iter()
        .filter(|e| e.request.starts_with("PUT ") && e.request.contains(".wal"))
        .count();
    assert!(
        held_puts > 0,
        "broker 1 uploaded WAL objects while stopping"
    );
    println!("SIGTERM with {n} acks=1 records in uploads held 3 s: exited cleanly in {took:?}");

    // A replacement broker with a disk of its own (a rescheduled pod) finds everything.
    let mut second_env = s3.env("drain");
    second_env.push(("SILT_METADATA".into(), etcd.url("drain")));
    second_env.push(("SILT_NODE_ID".into(), "2".into()));
    let second = Silt::start_with_env(&refs(&second_env));

    let got = consume_all(
        &second.bootstrap(),
        topic,
        partitions,
        n,
        Duration::from_secs(60),
    );
    check_keyed(&got, partitions, n);
    assert!(
        second.log().contains("took over the partition"),
        "broker 2 took the partitions over"
    );
}

/// With the bucket unreachable (every PUT held for a minute), SIGTERM still ends the broker
/// within `shutdown_timeout_ms`: it stops waiting for the uploads, says so, and the
/// acknowledged data it could not upload is in its WAL: after a restart (the bucket reachable
/// again) every record is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_bucket_unreachable_keeps_to_the_deadline_and_loses_nothing() {
    let s3 = S3Server::start();
    let proxy = SlowProxy::start(s3.port, Duration::ZERO);
    let mut env = through(&proxy, &s3, "deadline");
    env.push(("SILT_SHUTDOWN_TIMEOUT_MS".into(), "3000".into()));
    let mut silt = Silt::start_with_env(&refs(&env));
    let (topic, partitions, n) = ("deadline", 2, 400);
    create_topic(&silt.bootstrap(), topic, partitions, &[]).await;
    proxy.set_delay(Duration::from_secs(60));
    produce_keyed(&silt.bootstrap(), topic, partitions, 0..n, &[("acks", "1")]).await;

    let stopping = Instant::now();
    let status = silt.stop().expect("the broker ran");
    let took = stopping.elapsed();
    let log = silt.log();
    // Its own exit, not the SIGKILL `stop` sends after 20 s: it gives up on the uploads
    // within the deadline and says what it left in the WAL.
    assert!(status.code().is_some(), "{status}\n{log}");
    assert!(
        log.contains("shutting down with data not yet in the bucket; the local WAL keeps it"),
        "{log}"
    );
    // Without the deadline the upload waited for the held PUT (60 s) or a fixed 10 s.
    assert!(
        took < Duration::from_secs(9),
        "exited {took:?} after SIGTERM with a 3 s deadline"
    );
    println!("SIGTERM with the bucket unreachable: exited in {took:?} (deadline 3 s)");

    proxy.set_delay(Duration::ZERO);
    silt.restart();
    let got = consume_all(
        &silt.bootstrap(),
        topic,
        partitions,
        n,
        Duration::from_secs(60),
    );
    check_keyed(&got, partitions, n);
}
