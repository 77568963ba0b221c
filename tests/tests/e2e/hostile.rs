//! Malformed and hostile requests get an error or a closed connection, never a dead broker.

use silt_e2e::Silt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends one raw frame; returns what came back before the broker answered or closed.
fn send_raw(silt: &Silt, frame: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(silt.bootstrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(frame).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn assert_alive(silt: &Silt) {
    let meta = silt_e2e::raw::call(
        &silt.bootstrap(),
        12,
        &kafka_protocol::messages::MetadataRequest::default().with_topics(None),
    );
    assert!(
        meta.is_ok(),
        "broker still serves: {meta:?}\n{}",
        silt.log()
    );
}

#[test]
fn absurd_lengths_and_garbage_do_not_kill_the_broker() {
    let silt = Silt::start();
    let header = |key: i16, version: i16| {
        let mut h = Vec::new();
        h.extend_from_slice(&key.to_be_bytes());
        h.extend_from_slice(&version.to_be_bytes());
        h.extend_from_slice(&7i32.to_be_bytes());
        h.extend_from_slice(&(-1i16).to_be_bytes());
        h
    };
    // Metadata v1 claiming 2^31-1 topics in 14 bytes.
    let mut body = header(3, 1);
    body.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
    send_raw(&silt, &framed(&body));
    assert_alive(&silt);

    // Metadata v12 (compact array) claiming 2^31 topics.
    let mut body = header(3, 12);
    body.push(0); // header tagged fields
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    send_raw(&silt, &framed(&body));
    assert_alive(&silt);

    // Produce v9 with a partition list of 2^31-1 entries.
    let mut body = header(0, 3);
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id
    body.extend_from_slice(&1i16.to_be_bytes()); // acks
    body.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    body.extend_from_slice(&1i16.to_be_bytes());
    body.push(b't');
    body.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
    send_raw(&silt, &framed(&body));
    assert_alive(&silt);

    // Frames with negative, tiny and over-limit lengths, an unknown API key, random bytes.
    for frame in [
        (-5i32).to_be_bytes().to_vec(),
        framed(&[1, 2]),
        (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
        framed(&header(999, 0)),
        framed(&[0xde; 64]),
    ] {
        send_raw(&silt, &frame);
        assert_alive(&silt);
    }
}

/// A frame near the 100 MiB request limit whose array count claims 2^31-1 elements: the count
/// must not size a reservation of gigabytes. Under a 3 GiB address-space limit (a pod's memory
/// limit) such a reservation fails and aborts the process; here the broker must answer or close
/// the connection and go on serving.
#[test]
fn array_counts_in_large_frames_do_not_reserve_gigabytes() {
    let silt = Silt::start_with_address_space_limit(3 << 30);
    let mut header = Vec::with_capacity(100 * 1024 * 1024);
    header.extend_from_slice(&3i16.to_be_bytes()); // Metadata
    header.extend_from_slice(&1i16.to_be_bytes()); // v1
    header.extend_from_slice(&7i32.to_be_bytes());
    header.extend_from_slice(&(-1i16).to_be_bytes());
    // Metadata v1: 2^31-1 topics, then null names (an error at the first element).
    header.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
    header.resize(100 * 1024 * 1024 - 64, 0xff);
    send_raw(&silt, &framed(&header));
    assert_alive(&silt);
}

mod produce_errors {
    use super::assert_alive;
    use bytes::Bytes;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::Compression;
    use kafka_protocol::ResponseError;
    use silt_e2e::kafka::create_topic;
    use silt_e2e::records::{self, BatchSpec};
    use silt_e2e::{raw, Silt};
    use std::io::Write;

    fn batch(count: usize, value_len: usize, compression: Compression) -> Vec<u8> {
        records::batch(BatchSpec {
            count,
            value: vec![b'x'; value_len],
            compression,
            ..BatchSpec::default()
        })
        .to_vec()
    }

    fn fix_crc(b: &mut [u8]) {
        let crc = crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    fn crc32c(data: &[u8]) -> u32 {
        // CRC-32C (Castagnoli), bitwise: enough for a test.
        let mut crc = !0u32;
        for &byte in data {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn produce(silt: &Silt, topic: &str, records: Vec<u8>) -> i16 {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(records)))])]);
        let response = raw::call(&silt.bootstrap(), 9, &request).expect("produce answered");
        response.responses[0].partition_responses[0].error_code
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_batches_get_their_kafka_error_codes() {
        let silt = Silt::start();
        create_topic(
            &silt.bootstrap(),
            "victim",
            1,
            &[("max.message.bytes", "2000")],
        )
        .await;

        let mut corrupt = batch(3, 10, Compression::None);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x55;
        assert_eq!(
            produce(&silt, "victim", corrupt),
            ResponseError::CorruptMessage.code(),
            "CRC mismatch"
        );

        // A gzip batch whose header claims one record more than it holds (CRC made valid).
        let mut lying = batch(5, 10, Compression::Gzip);
        lying[23..27].copy_from_slice(&5i32.to_be_bytes());
        lying[57..61].copy_from_slice(&6i32.to_be_bytes());
        fix_crc(&mut lying);
        let code = produce(&silt, "victim", lying);
        assert!(
            code == ResponseError::CorruptMessage.code()
                || code == ResponseError::InvalidRecord.code(),
            "record count vs records inside a compressed batch: {code}"
        );

        assert_eq!(
            produce(&silt, "victim", batch(1, 5000, Compression::None)),
            ResponseError::MessageTooLarge.code(),
            "over max.message.bytes"
        );
        assert_eq!(
            produce(&silt, "no-such-topic", batch(1, 10, Compression::None)),
            ResponseError::UnknownTopicOrPartition.code(),
            "Produce never creates topics"
        );

        // A decompression bomb: 128 MiB of zeros (twice the bound) in ~130 KB of gzip.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..128 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb_body = gz.finish().unwrap();
        let mut bomb = batch(1, 1, Compression::Gzip);
        bomb.truncate(61);
        bomb.extend_from_slice(&bomb_body);
        let len = (bomb.len() - 12) as i32;
        bomb[8..12].copy_from_slice(&len.to_be_bytes());
        fix_crc(&mut bomb);
        create_topic(
            &silt.bootstrap(),
            "bombed",
            1,
            &[("max.message.bytes", "8000000")],
        )
        .await;
        assert_eq!(
            produce(&silt, "bombed", bomb),
            ResponseError::CorruptMessage.code(),
            "bounded decompression"
        );

        // Invalid topic names are refused, not auto-created.
        let meta = raw::call(
            &silt.bootstrap(),
            12,
            &MetadataRequest::default()
                .with_allow_auto_topic_creation(true)
                .with_topics(Some(vec![MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("bad name!"))))])),
        )
        .unwrap();
        assert_eq!(
            meta.topics[0].error_code,
            ResponseError::InvalidTopicException.code()
        );
        assert_alive(&silt);
    }
}

/// The broker's resident memory (VmRSS), bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// A client that pipelines Fetch requests for megabytes each and never reads pins at most the
/// connection's response budget (64 MiB), not one response per request in flight (32 × 16 MiB
/// here, 64 × 55 MiB at worst); once it reads, every response arrives, in order, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_pins_bounded_memory() {
    unread_fetches(&[], 18, 900, 55 << 20, 32).await;
}

/// The same with `max_bytes` 0: each response still carries one whole batch (KIP-74), here
/// 8 MiB, so its reservation is the topic's `max.message.bytes`, not `max_bytes` (on a bound
/// taken from `max_bytes` alone, 64 such fetches pinned half a gigabyte).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_fetches_of_one_oversized_batch_pin_bounded_memory() {
    unread_fetches(&[("max.message.bytes", "9000000")], 1, 8000, 0, 64).await;
}

/// Produces `batches` batches of `count` 1 KB records to a one-partition topic, then sends
/// `unread` fetches of everything (`max_bytes`) without reading, watches the broker's RSS,
/// and reads every response.
async fn unread_fetches(
    configs: &[(&str, &str)],
    batches: usize,
    count: usize,
    max_bytes: i32,
    unread: usize,
) {
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use silt_e2e::raw;
    use silt_e2e::records::{self, BatchSpec};

    let silt = Silt::start();
    silt_e2e::kafka::create_topic(&silt.bootstrap(), "wide", 1, configs).await;
    let name = || TopicName(StrBytes::from_static_str("wide"));
    let mut produced = 0usize;
    let mut first_batch = 0usize;
    for _ in 0..batches {
        let batch = records::batch(BatchSpec {
            count,
            value: vec![b'v'; 1000],
            ..BatchSpec::default()
        });
        produced += batch.len();
        if first_batch == 0 {
            first_batch = batch.len();
        }
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(batch.to_vec())))])]);
        let response = raw::call(&silt.bootstrap(), 9, &request).expect("produce");
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let fetch = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(max_bytes)])]);
    let records_of = |r: &kafka_protocol::messages::FetchResponse| {
        r.responses[0].partitions[0]
            .records
            .as_ref()
            .map_or(0, |b| b.len())
    };
    // What one response carries: everything, or (max_bytes 0) the first batch whole.
    let expected = if max_bytes == 0 {
        first_batch
    } else {
        produced
    };
    // Warm up (allocator arenas, page cache): one fetch read whole.
    let mut conn = raw::Conn::connect(&silt.bootstrap()).unwrap();
    let first = conn.call(11, &fetch).expect("fetch");
    assert_eq!(records_of(&first), expected);
    let before = rss(silt.pid());

    let sent: Vec<i32> = (0..unread)
        .map(|_| conn.send(11, &fetch).unwrap())
        .collect();
    // Without the budget every fetch completes and its response waits in memory: hundreds of
    // MiB within a few seconds. With it, one or two are held at a time.
    let mut peak = before;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss(silt.pid()));
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "RSS {} MiB before, peak {} MiB with {unread} unread fetches of {} MiB",
        before >> 20,
        peak >> 20,
        expected >> 20
    );
    assert!(
        grown < 200 << 20,
        "a client that never reads pinned {} MiB",
        grown >> 20
    );
    for correlation_id in sent {
        let response = conn
            .receive::<FetchRequest>(11, correlation_id)
            .expect("every response, in order");
        assert_eq!(records_of(&response), expected);
    }
    assert_alive(&silt);
}
