//! SIGKILL under load, then restart on the same data directory: every acknowledged record is
//! served, at the offset it was acknowledged with. Also a clean SIGTERM restart.

use futures::future::join_all;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use silt_e2e::kafka::{consume_all, consumer, create_topic, producer};
use silt_e2e::Silt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Produces in waves until `stop`; returns (partition, offset, value) of every acknowledged record.
async fn produce_until(
    bootstrap: String,
    topic: &'static str,
    acks: &'static str,
    stop: Arc<AtomicBool>,
) -> Vec<(i32, i64, String)> {
    let producer = producer(
        &bootstrap,
        &[
            ("acks", acks),
            ("message.timeout.ms", "3000"),
            ("retries", "0"),
            ("linger.ms", "2"),
        ],
    );
    let mut acked = Vec::new();
    let mut seq = 0u64;
    // Bounded: at most 2000 waves.
    for _ in 0..2000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let wave: Vec<_> = (0..200)
            .map(|_| {
                seq += 1;
                let value = format!("{acks}-{seq}");
                let record = FutureRecord::<(), String>::to(topic).payload(&value);
                let fut = producer.send_result(record).ok();
                async move {
                    (
                        value.clone(),
                        match fut {
                            Some(f) => f.await.ok(),
                            None => None,
                        },
                    )
                }
            })
            .collect();
        for (value, result) in join_all(wave).await {
            if let Some(Ok((p, o))) = result {
                acked.push((p, o, value));
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_record() {
    let mut silt = Silt::start();
    create_topic(&silt.bootstrap(), "crash-all", 3, &[]).await;
    create_topic(&silt.bootstrap(), "crash-one", 3, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let all = tokio::spawn(produce_until(
        silt.bootstrap(),
        "crash-all",
        "all",
        stop.clone(),
    ));
    let one = tokio::spawn(produce_until(
        silt.bootstrap(),
        "crash-one",
        "1",
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    silt.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let all = all.await.unwrap();
    let one = one.await.unwrap();
    println!(
        "acknowledged before SIGKILL: acks=all {}, acks=1 {}",
        all.len(),
        one.len()
    );
    assert!(
        all.len() > 1000 && one.len() > 1000,
        "load ran: {} / {}",
        all.len(),
        one.len()
    );

    silt.restart();
    // Data that was synced locally but not yet in the bucket at the kill is uploaded again
    // after the restart, and the high watermarks rise as it is recorded: count the log once
    // that is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let lag = silt_e2e::http_get(silt.admin_port, "/metrics").and_then(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with("silt_tiering_upload_lag_bytes "))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        });
        if lag == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let watermarks = consumer(&silt.bootstrap());
    for (topic, acked) in [("crash-all", &all), ("crash-one", &one)] {
        // Everything in the log (acknowledged or not: a response lost to the kill is fine).
        let mut expected = 0usize;
        for p in 0..3 {
            let (low, high) = watermarks
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            let max_acked = acked
                .iter()
                .filter(|(ap, _, _)| *ap == p)
                .map(|(_, o, _)| *o)
                .max();
            assert!(
                max_acked.is_none_or(|o| o < high),
                "{topic}/{p}: high watermark {high} covers acknowledged offset {max_acked:?}"
            );
            expected += (high - low) as usize;
        }
        let got = consume_all(
            &silt.bootstrap(),
            topic,
            3,
            expected,
            Duration::from_secs(60),
        );
        assert_eq!(got.len(), expected, "{topic}: read the whole log");
        let stored: HashMap<(i32, i64), Vec<u8>> = got
            .into_iter()
            .map(|r| ((r.partition, r.offset), r.value.unwrap_or_default()))
            .collect();
        for (p, o, value) in acked {
            assert_eq!(
                stored
                    .get(&(*p, *o))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .as_deref(),
                Some(value.as_str()),
                "{topic}: acknowledged record at {p}/{o} is served after kill -9"
            );
        }
    }
    assert!(silt.log().contains("silt broker ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_keeps_everything_and_accepts_more() {
    let mut silt = Silt::start();
    create_topic(&silt.bootstrap(), "restart", 2, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let run = tokio::spawn(produce_until(
        silt.bootstrap(),
        "restart",
        "all",
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let first = run.await.unwrap();
    let status = silt.stop().expect("stopped");
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}\n{}",
        silt.log()
    );
    silt.restart();
    let stop = Arc::new(AtomicBool::new(false));
    stop.store(false, Ordering::Relaxed);
    let again = tokio::spawn(produce_until(
        silt.bootstrap(),
        "restart",
        "all",
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let second = again.await.unwrap();
    let total = first.len() + second.len();
    let got = consume_all(
        &silt.bootstrap(),
        "restart",
        2,
        total,
        Duration::from_secs(60),
    );
    assert_eq!(
        got.len(),
        total,
        "every record from before and after the restart"
    );
}
