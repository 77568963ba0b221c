//! kcat (Debian's kcat on librdkafka 2.0.2, which misreads some optional tagged fields) as
//! producer, consumer, metadata and offset-lookup client, crossed with the other clients.

use futures::future::join_all;
use rdkafka::producer::FutureRecord;
use silt_e2e::kafka::{consume_all, create_topic, producer};
use silt_e2e::{run, Silt};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn kcat() -> Command {
    Command::new("kcat")
}

fn kcat_produce(bootstrap: &str, topic: &str, lines: &str, extra: &[&str]) {
    let mut child = kcat()
        .args(["-b", bootstrap, "-t", topic, "-P", "-K", ":"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat -P: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_produces_and_librdkafka_consumes_every_codec() {
    let silt = Silt::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kcat-{codec}");
        let lines: String = (0..100).map(|i| format!("k{i}:v{i}\n")).collect();
        // The topic does not exist: kcat's Metadata request auto-creates it.
        kcat_produce(
            &silt.bootstrap(),
            &topic,
            &lines,
            &["-z", codec, "-p", "0", "-H", "origin=kcat"],
        );
        let got = consume_all(&silt.bootstrap(), &topic, 1, 100, Duration::from_secs(30));
        assert_eq!(got.len(), 100, "{codec}");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
            assert_eq!(r.value.as_deref(), Some(format!("v{i}").as_bytes()));
            assert_eq!(
                r.headers,
                vec![("origin".to_string(), Some(b"kcat".to_vec()))]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_produces_and_kcat_consumes_lists_and_looks_up() {
    let silt = Silt::start();
    let topic = "to-kcat";
    create_topic(&silt.bootstrap(), topic, 2, &[]).await;
    let producer = producer(&silt.bootstrap(), &[("acks", "all")]);
    let sends: Vec<_> = (0..50)
        .map(|i| {
            let key = format!("k{i}");
            let value = format!("v{i}");
            let record = FutureRecord::to(topic)
                .partition(i % 2)
                .key(&key)
                .payload(&value)
                .timestamp(1_700_000_000_000 + i as i64 * 1000);
            producer.send_result(record).expect("enqueue")
        })
        .collect();
    for d in join_all(sends).await {
        d.expect("future").expect("acknowledged");
    }

    let (ok, out, err) = run(
        kcat().args([
            "-b",
            &silt.bootstrap(),
            "-t",
            topic,
            "-C",
            "-e",
            "-p",
            "1",
            "-f",
            "%p %o %k %s %T\n",
        ]),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 25, "{out}");
    for (n, line) in lines.iter().enumerate() {
        let i = 2 * n + 1;
        assert_eq!(
            *line,
            format!("1 {n} k{i} v{i} {}", 1_700_000_000_000i64 + i as i64 * 1000)
        );
    }

    let (ok, out, err) = run(
        kcat().args(["-b", &silt.bootstrap(), "-L", "-t", topic]),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("topic \"to-kcat\" with 2 partitions"), "{out}");
    assert!(
        out.contains("partition 1, leader 1, replicas: 1, isrs: 1"),
        "{out}"
    );

    // Offset by timestamp through kcat's -Q: partition 0 holds i = 0, 2, 4...; 10.5 s after
    // the start the first record at or after it is i = 12, offset 6.
    let query = format!("{topic}:0:{}", 1_700_000_010_500i64);
    let (ok, out, err) = run(
        kcat().args(["-b", &silt.bootstrap(), "-Q", "-t", &query]),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("offset 6"), "{out}");
}

#[test]
fn kcat_produces_and_java_consumes() {
    let silt = Silt::start();
    let lines: String = (0..300).map(|i| format!("k{i}:v{i}\n")).collect();
    kcat_produce(&silt.bootstrap(), "kcat-to-java", &lines, &["-z", "lz4"]);
    let mut consume = silt_e2e::java_client(3);
    consume
        .arg("consume")
        .arg(silt.bootstrap())
        .arg("kcat-to-java")
        .arg("300");
    let (ok, out, err) = run(&mut consume, Duration::from_secs(120)).unwrap();
    assert!(ok && out.contains("\"ok\":true"), "{out}\n{err}");
}
