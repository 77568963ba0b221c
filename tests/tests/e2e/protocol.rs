//! Protocol details that client libraries hide: the ApiVersions fallback, CreateTopics
//! validation, what Metadata reports. Checked with bare requests (see `silt_e2e::raw`).

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use silt_e2e::{raw, Silt};
use std::io::{Read, Write};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

#[test]
fn api_versions_at_an_unknown_version_answers_in_the_v0_layout() {
    let silt = Silt::start();
    // ApiVersions v99: header v2 (flexible) as a newer client would send it.
    let mut frame = Vec::new();
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&99i16.to_be_bytes());
    frame.extend_from_slice(&42i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    frame.push(0); // no tagged fields
    frame.extend_from_slice(&[0, 0, 0]); // body: compact strings + tagged fields
    let mut stream = std::net::TcpStream::connect(silt.bootstrap()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(&(frame.len() as i32).to_be_bytes())
        .unwrap();
    stream.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    // v0 layout: correlation id, error code, api_keys array (int32 count, 6 bytes each).
    assert_eq!(i32::from_be_bytes(body[0..4].try_into().unwrap()), 42);
    assert_eq!(
        i16::from_be_bytes(body[4..6].try_into().unwrap()),
        ResponseError::UnsupportedVersion.code()
    );
    let count = i32::from_be_bytes(body[6..10].try_into().unwrap()) as usize;
    assert_eq!(body.len(), 10 + count * 6, "exactly the v0 layout");
    let keys: Vec<i16> = (0..count)
        .map(|i| i16::from_be_bytes(body[10 + i * 6..12 + i * 6].try_into().unwrap()))
        .collect();
    assert!(keys.contains(&(ApiKey::ApiVersions as i16)));

    // And at v3 the client learns exactly the implemented ranges.
    let response = raw::call(&silt.bootstrap(), 3, &ApiVersionsRequest::default()).unwrap();
    assert_eq!(response.error_code, 0);
    let produce = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 9));
    assert!(
        !response
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::EndTxn as i16),
        "nothing unimplemented is advertised"
    );
}

#[test]
fn create_topics_validates_and_validate_only_creates_nothing() {
    let silt = Silt::start();
    let topic = |n: &str, partitions: i32, rf: i16| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
    };
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_validate_only(true)
        .with_topics(vec![topic("dry-run", 3, 3)]);
    let response = raw::call(&silt.bootstrap(), 7, &request).unwrap();
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].num_partitions, 3);
    let all = raw::call(
        &silt.bootstrap(),
        12,
        &MetadataRequest::default().with_topics(None),
    )
    .unwrap();
    assert!(all.topics.is_empty(), "validate_only created nothing");

    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            topic("ok-defaults", -1, -1),
            topic("bad name!", 1, 1),
            topic("zero-partitions", 0, 1),
            topic("bad-config", 1, 1).with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("soon")))]),
            topic("unknown-config", 1, 1).with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("no.such.thing"))
                .with_value(Some(StrBytes::from_static_str("1")))]),
            topic("rf3", 2, 3),
        ]);
    let response = raw::call(&silt.bootstrap(), 7, &request).unwrap();
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        vec![
            0,
            ResponseError::InvalidTopicException.code(),
            ResponseError::InvalidPartitions.code(),
            ResponseError::InvalidConfig.code(),
            ResponseError::InvalidConfig.code(),
            0,
        ]
    );
    assert_eq!(
        response.topics[0].num_partitions, 1,
        "-1 means the broker default"
    );
    assert_eq!(
        response.topics[5].replication_factor, 3,
        "any replication factor is accepted"
    );

    let again = CreateTopicsRequest::default().with_topics(vec![topic("rf3", 2, 3)]);
    let response = raw::call(&silt.bootstrap(), 7, &again).unwrap();
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::TopicAlreadyExists.code()
    );

    let meta = raw::call(
        &silt.bootstrap(),
        12,
        &MetadataRequest::default()
            .with_topics(None)
            .with_include_topic_authorized_operations(true),
    )
    .unwrap();
    let rf3 = meta
        .topics
        .iter()
        .find(|t| t.name == Some(name("rf3")))
        .unwrap();
    assert_eq!(rf3.partitions.len(), 2);
    assert!(!rf3.topic_id.is_nil(), "topics have ids");
    for p in &rf3.partitions {
        assert_eq!(p.replica_nodes, vec![p.leader_id], "replicas = [leader]");
        assert_eq!(p.isr_nodes, vec![p.leader_id], "ISR = [leader]");
    }
    assert!(
        rf3.topic_authorized_operations > 0,
        "a real bit set when asked for"
    );
    let meta = raw::call(
        &silt.bootstrap(),
        12,
        &MetadataRequest::default().with_topics(None),
    )
    .unwrap();
    assert_eq!(
        meta.topics[0].topic_authorized_operations,
        i32::MIN,
        "i32::MIN when not asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_long_polls_until_data_or_max_wait() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::FetchRequest;
    use rdkafka::producer::FutureRecord;
    use std::time::{Duration, Instant};

    let silt = Silt::start();
    silt_e2e::kafka::create_topic(&silt.bootstrap(), "polled", 1, &[]).await;
    let fetch = |max_wait_ms: i32| {
        FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("polled"))
                .with_partitions(vec![FetchPartition::default()
                    .with_current_leader_epoch(-1)
                    .with_partition_max_bytes(1 << 20)
                    .with_log_start_offset(-1)])])
    };
    // Nothing to read: the answer comes after max_wait_ms, empty.
    let bootstrap = silt.bootstrap();
    let started = Instant::now();
    let r = tokio::task::spawn_blocking(move || raw::call(&bootstrap, 12, &fetch(800)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(750),
        "held for max_wait_ms: {:?}",
        started.elapsed()
    );
    assert!(r.responses[0].partitions[0]
        .records
        .as_ref()
        .is_none_or(|b| b.is_empty()));

    // Data arriving during the wait answers the fetch at once.
    let bootstrap = silt.bootstrap();
    let started = Instant::now();
    let waiting = tokio::task::spawn_blocking(move || raw::call(&bootstrap, 12, &fetch(20_000)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let producer = silt_e2e::kafka::producer(&silt.bootstrap(), &[("acks", "all")]);
    producer
        .send_result(
            FutureRecord::<(), str>::to("polled")
                .partition(0)
                .payload("wake"),
        )
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    let r = waiting.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "answered when data arrived, not after 20 s: {took:?}"
    );
    let p = &r.responses[0].partitions[0];
    assert!(
        p.records.as_ref().is_some_and(|b| !b.is_empty()),
        "the new record is in the answer"
    );
    assert_eq!(p.high_watermark, 1);
}

#[test]
fn one_create_topics_request_creates_a_bounded_number_of_partitions() {
    let silt = Silt::start();
    let topic = |n: &str, partitions: i32| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
    };
    // validate_only runs the same checks without opening anything.
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_validate_only(true)
        .with_topics(vec![
            topic("wide-1", 60_000),
            topic("wide-2", 60_000),
            topic("narrow", 3),
        ]);
    let response = raw::call(&silt.bootstrap(), 7, &request).unwrap();
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![0, ResponseError::InvalidPartitions.code(), 0]);
    let message = response.topics[1]
        .error_message
        .as_deref()
        .unwrap_or_default();
    assert!(message.contains("another request"), "{message}");
}
