//! librdkafka (through the `rdkafka` crate) against a real `silt` process.

use futures::future::join_all;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use silt_e2e::kafka::{by_partition, consume_all, consumer, create_topic, producer};
use silt_e2e::Silt;
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_every_codec_with_keys_headers_timestamps_and_nulls() {
    let silt = Silt::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("round-trip-{codec}");
        create_topic(&silt.bootstrap(), &topic, 3, &[]).await;
        let producer = producer(
            &silt.bootstrap(),
            &[("compression.type", codec), ("acks", "all")],
        );
        let n = 300usize;
        let sends = (0..n).map(|i| {
            let key = format!("key-{i}");
            let value = format!("value-{i}-{}", "x".repeat(i % 50));
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "seq",
                    value: Some(i.to_string().as_bytes()),
                })
                .insert(Header {
                    key: "empty",
                    value: None::<&[u8]>,
                });
            let mut record = FutureRecord::to(&topic)
                .partition((i % 3) as i32)
                .timestamp(T0 + i as i64)
                .headers(headers);
            // Every fifth record has no key, every seventh a null value.
            let key_holder = key.clone();
            let value_holder = value.clone();
            if i % 5 != 0 {
                record = record.key(&key_holder);
            }
            if i % 7 != 0 {
                record = record.payload(&value_holder);
            }
            let delivery = producer.send_result(record).expect("enqueue");
            async move { (i, delivery.await) }
        });
        let acked = join_all(sends.collect::<Vec<_>>()).await;
        for (i, r) in &acked {
            let (partition, _offset) = r
                .as_ref()
                .expect("delivery future")
                .as_ref()
                .unwrap_or_else(|(e, _)| panic!("record {i} with {codec} not acknowledged: {e}"));
            assert_eq!(*partition, (*i % 3) as i32);
        }

        let got = consume_all(&silt.bootstrap(), &topic, 3, n, Duration::from_secs(30));
        assert_eq!(got.len(), n, "{codec}: consumed all records");
        for (partition, records) in by_partition(&got) {
            for (expected_offset, r) in records.iter().enumerate() {
                assert_eq!(
                    r.offset, expected_offset as i64,
                    "{codec}: contiguous offsets in {partition}"
                );
                let seq: usize = String::from_utf8(r.headers[0].1.clone().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(seq % 3, partition as usize);
                assert_eq!(seq / 3, expected_offset, "{codec}: per-partition order");
                assert_eq!(
                    r.headers[1],
                    ("empty".to_string(), None),
                    "{codec}: null header value"
                );
                assert_eq!(
                    r.timestamp,
                    Some(T0 + seq as i64),
                    "{codec}: create time kept"
                );
                let want_key = (!seq.is_multiple_of(5)).then(|| format!("key-{seq}").into_bytes());
                assert_eq!(r.key, want_key, "{codec}: key of {seq}");
                let want_value = (!seq.is_multiple_of(7))
                    .then(|| format!("value-{seq}-{}", "x".repeat(seq % 50)).into_bytes());
                assert_eq!(r.value, want_value, "{codec}: value of {seq}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_and_one_mebibyte_records() {
    let silt = Silt::start();
    let topic = "sizes";
    // A 1 MiB value is above Kafka's default max.message.bytes; raise it as a user would.
    create_topic(
        &silt.bootstrap(),
        topic,
        1,
        &[("max.message.bytes", "4194304")],
    )
    .await;
    let producer = producer(
        &silt.bootstrap(),
        &[("message.max.bytes", "4194304"), ("acks", "all")],
    );
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let small = [7u8];
    let mut deliveries = Vec::new();
    for i in 0..6 {
        let payload: &[u8] = if i % 2 == 0 { &small } else { &big };
        let record = FutureRecord::<(), [u8]>::to(topic)
            .partition(0)
            .payload(payload);
        deliveries.push(producer.send_result(record).expect("enqueue"));
    }
    for d in deliveries {
        d.await.expect("future").expect("acknowledged");
    }
    // A consumer whose partition fetch size is far below 1 MiB still gets the big records
    // (the first batch of a fetch goes out whole).
    let got = consume_all(&silt.bootstrap(), topic, 1, 6, Duration::from_secs(30));
    assert_eq!(got.len(), 6);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        let want: &[u8] = if i % 2 == 0 { &small } else { &big };
        assert_eq!(r.value.as_deref(), Some(want), "record {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_partition_order_over_100k_records() {
    let silt = Silt::start();
    let topic = "order";
    let partitions = 4;
    create_topic(&silt.bootstrap(), topic, partitions, &[]).await;
    let producer = producer(
        &silt.bootstrap(),
        &[
            ("acks", "all"),
            ("linger.ms", "20"),
            ("batch.num.messages", "5000"),
            ("queue.buffering.max.messages", "200000"),
        ],
    );
    let n = 100_000usize;
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let value = i.to_string();
        let record = FutureRecord::<(), String>::to(topic)
            .partition((i % partitions as usize) as i32)
            .payload(&value);
        pending.push(producer.send_result(record).expect("enqueue"));
    }
    for (i, d) in join_all(pending).await.into_iter().enumerate() {
        d.expect("future")
            .unwrap_or_else(|(e, _)| panic!("record {i}: {e}"));
    }
    let got = consume_all(
        &silt.bootstrap(),
        topic,
        partitions,
        n,
        Duration::from_secs(120),
    );
    assert_eq!(got.len(), n);
    for (partition, records) in by_partition(&got) {
        assert_eq!(records.len(), n / partitions as usize);
        for (k, r) in records.iter().enumerate() {
            let seq: usize = String::from_utf8(r.value.clone().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                seq,
                k * partitions as usize + partition as usize,
                "order in partition {partition}"
            );
            assert_eq!(r.offset, k as i64);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_by_timestamp_and_watermarks() {
    let silt = Silt::start();
    let topic = "times";
    create_topic(&silt.bootstrap(), topic, 1, &[]).await;
    let producer = producer(&silt.bootstrap(), &[("acks", "all"), ("linger.ms", "50")]);
    let deliveries: Vec<_> = (0..200)
        .map(|i| {
            let record = FutureRecord::<(), str>::to(topic)
                .partition(0)
                .payload("t")
                .timestamp(T0 + i * 10);
            producer.send_result(record).expect("enqueue")
        })
        .collect();
    for d in join_all(deliveries).await {
        d.expect("future").expect("acknowledged");
    }
    let consumer = consumer(&silt.bootstrap());
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!((low, high), (0, 200));

    let lookup = |ts: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(ts))
            .unwrap();
        let found = consumer
            .offsets_for_times(tpl, Duration::from_secs(10))
            .expect("offsets_for_times");
        found.elements()[0].offset()
    };
    assert_eq!(lookup(T0), Offset::Offset(0));
    assert_eq!(
        lookup(T0 + 505),
        Offset::Offset(51),
        "first record at or after the time"
    );
    assert_eq!(lookup(T0 + 1990), Offset::Offset(199));
    assert_eq!(lookup(T0 + 5000), Offset::End, "no record that late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topics_refuse_records_without_keys() {
    let silt = Silt::start();
    let topic = "compacted";
    create_topic(
        &silt.bootstrap(),
        topic,
        1,
        &[("cleanup.policy", "compact")],
    )
    .await;
    let producer = producer(&silt.bootstrap(), &[("acks", "all"), ("retries", "0")]);
    let keyed = producer
        .send_result(FutureRecord::to(topic).key("k").payload("v"))
        .expect("enqueue")
        .await
        .expect("future");
    assert!(keyed.is_ok(), "keyed record accepted: {keyed:?}");
    let keyless = producer
        .send_result(FutureRecord::<(), str>::to(topic).payload("v"))
        .expect("enqueue")
        .await
        .expect("future");
    let err = keyless.expect_err("keyless record refused").0;
    assert_eq!(
        err.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::InvalidRecord),
        "{err}"
    );
}
