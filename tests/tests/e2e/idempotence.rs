//! Idempotent producers: InitProducerId, duplicates answered with their original offsets,
//! sequence gaps and fenced epochs refused, state kept across kill -9; and the Java producer
//! with its default settings (idempotence on) delivering exactly once across a broker kill.

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use rdkafka::consumer::Consumer;
use silt_e2e::kafka::{consume_all, consumer, create_topic};
use silt_e2e::records::{self, BatchSpec};
use silt_e2e::{java_client, raw, run, Silt};
use std::collections::BTreeMap;
use std::time::Duration;

fn batch(producer_id: i64, epoch: i16, first_seq: i32, count: i32) -> bytes::Bytes {
    records::batch(BatchSpec {
        count: count as usize,
        producer_id,
        producer_epoch: epoch,
        first_sequence: first_seq,
        ..BatchSpec::default()
    })
}

/// Produces one batch; returns (error code, base offset).
fn produce(silt: &Silt, topic: &str, records: bytes::Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response: ProduceResponse = raw::call(&silt.bootstrap(), 9, &request).expect("produce");
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn high_watermark(silt: &Silt, topic: &str) -> i64 {
    consumer(&silt.bootstrap())
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_gaps_and_epochs_and_state_survives_kill9() {
    let mut silt = Silt::start();
    create_topic(&silt.bootstrap(), "idem", 1, &[]).await;
    let init = raw::call(
        &silt.bootstrap(),
        4,
        &InitProducerIdRequest::default().with_transactional_id(None),
    )
    .expect("init producer id");
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    let other = raw::call(&silt.bootstrap(), 4, &InitProducerIdRequest::default()).unwrap();
    assert_ne!(other.producer_id.0, pid, "producer ids are unique");

    assert_eq!(produce(&silt, "idem", batch(pid, 0, 0, 5)), (0, 0));
    assert_eq!(produce(&silt, "idem", batch(pid, 0, 5, 5)), (0, 5));
    // The second batch was written but its response lost: the retry gets its original offset.
    assert_eq!(
        produce(&silt, "idem", batch(pid, 0, 5, 5)),
        (0, 5),
        "duplicate answered, not appended"
    );
    assert_eq!(high_watermark(&silt, "idem"), 10);
    // A gap in the sequence.
    assert_eq!(
        produce(&silt, "idem", batch(pid, 0, 20, 1)).0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    // A new epoch starts at sequence 0; then the old epoch is fenced.
    assert_eq!(
        produce(&silt, "idem", batch(pid, 1, 3, 1)).0,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    assert_eq!(produce(&silt, "idem", batch(pid, 1, 0, 2)), (0, 10));
    assert_eq!(
        produce(&silt, "idem", batch(pid, 0, 10, 1)).0,
        ResponseError::InvalidProducerEpoch.code()
    );

    // kill -9: the state comes back (snapshot and/or replay of the tail).
    silt.kill9();
    silt.restart();
    assert_eq!(
        produce(&silt, "idem", batch(pid, 1, 0, 2)),
        (0, 10),
        "duplicate after restart"
    );
    assert_eq!(
        produce(&silt, "idem", batch(pid, 0, 10, 1)).0,
        ResponseError::InvalidProducerEpoch.code()
    );
    assert_eq!(
        produce(&silt, "idem", batch(pid, 1, 2, 3)),
        (0, 12),
        "sequence continues"
    );
    assert_eq!(high_watermark(&silt, "idem"), 15);

    // A clean restart goes through a snapshot.
    silt.stop();
    silt.restart();
    assert_eq!(produce(&silt, "idem", batch(pid, 1, 2, 3)), (0, 12));
    assert!(
        std::fs::read_dir(silt.data_dir.join("logs"))
            .unwrap()
            .flat_map(|t| std::fs::read_dir(t.unwrap().path().join("0")).unwrap())
            .any(|f| f
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".producers")),
        "a producer snapshot was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_default_producer_is_exactly_once_across_a_broker_kill() {
    let mut silt = Silt::start();
    create_topic(&silt.bootstrap(), "exactly-once", 3, &[]).await;
    let n = 30_000usize;
    let mut cmd = java_client(3);
    cmd.env("SILT_JAVA_DEFAULT_PRODUCER", "1")
        .arg("produce")
        .arg(silt.bootstrap())
        .arg("exactly-once")
        .arg(n.to_string());
    let producer = std::thread::spawn(move || run(&mut cmd, Duration::from_secs(300)));
    // Let it get going, then kill the broker under it and bring it back.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while high_watermark_sum(&silt) < 2_000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at_kill = high_watermark_sum(&silt);
    silt.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    silt.restart();
    println!("records in the log when the broker was killed: {at_kill} of {n}");
    assert!(
        (at_kill as usize) < n,
        "the kill came while the producer was still sending"
    );
    let (ok, out, err) = producer.join().unwrap().expect("java ran");
    assert!(
        ok,
        "the default Java producer delivered everything: {out}\n{err}\n{}",
        silt.log()
    );

    let total = high_watermark_sum(&silt) as usize;
    let got = consume_all(
        &silt.bootstrap(),
        "exactly-once",
        3,
        total,
        Duration::from_secs(120),
    );
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got {
        *seen
            .entry(String::from_utf8(r.key.clone().unwrap()).unwrap())
            .or_default() += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(duplicates.is_empty(), "no record twice: {duplicates:?}");
    assert_eq!(seen.len(), n, "every record once");
    assert_eq!(got.len(), n);
}

fn high_watermark_sum(silt: &Silt) -> i64 {
    let c = consumer(&silt.bootstrap());
    (0..3)
        .map(|p| {
            c.fetch_watermarks("exactly-once", p, Duration::from_secs(5))
                .map(|w| w.1)
                .unwrap_or(0)
        })
        .sum()
}
