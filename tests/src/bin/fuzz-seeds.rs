//! Writes seed inputs for the fuzz targets (`fuzz/corpus/request`, `fuzz/corpus/batch`): one
//! request of every supported API at its lowest and highest version, and record batches in
//! every codec. Run from the workspace root: `cargo run -p silt-e2e --bin fuzz-seeds`.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::path::Path;

fn batch(compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from_static(b"key")),
            value: (i != 1).then(|| Bytes::from_static(b"value")),
            headers: [(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"v")),
            )]
            .into_iter()
            .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

fn frame<R: Request>(request: &R, version: i16) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("seed")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version)).ok()?;
    request.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let requests = root.join("request");
    let batches = root.join("batch");
    std::fs::create_dir_all(&requests).unwrap();
    std::fs::create_dir_all(&batches).unwrap();
    let mut n = 0;
    let mut write = |dir: &Path, name: String, bytes: Option<Vec<u8>>| {
        if let Some(bytes) = bytes {
            std::fs::write(dir.join(name), bytes).unwrap();
            n += 1;
        }
    };
    for (codec, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let records = batch(compression);
        write(&batches, format!("batch-{codec}"), Some(records.to_vec()));
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_records(Some(records))
                ])]);
        for v in [3, 9] {
            write(
                &requests,
                format!("produce-v{v}-{codec}"),
                frame(&produce, v),
            );
        }
    }
    let topic = || TopicName(StrBytes::from_static_str("t"));
    for v in [4, 12] {
        let fetch = FetchRequest::default()
            .with_max_wait_ms(100)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(topic())
                .with_partitions(vec![
                    fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20)
                ])]);
        write(&requests, format!("fetch-v{v}"), frame(&fetch, v));
    }
    for v in [1, 7] {
        let lo = ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic())
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)
                ]),
        ]);
        write(&requests, format!("list-offsets-v{v}"), frame(&lo, v));
    }
    for v in [1, 12] {
        let md = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
        ]));
        write(&requests, format!("metadata-v{v}"), frame(&md, v));
    }
    for v in [0, 3] {
        write(
            &requests,
            format!("api-versions-v{v}"),
            frame(&ApiVersionsRequest::default(), v),
        );
    }
    for v in [2, 7] {
        let ct = CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic())
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("1000")))]),
        ]);
        write(&requests, format!("create-topics-v{v}"), frame(&ct, v));
    }
    for v in [1, 6] {
        let dt = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(topic())),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic()])
        };
        write(&requests, format!("delete-topics-v{v}"), frame(&dt, v));
    }
    for v in [2, 4] {
        let o = OffsetForLeaderEpochRequest::default().with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic())
                .with_partitions(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default(),
                ]),
        ]);
        write(
            &requests,
            format!("offset-for-leader-epoch-v{v}"),
            frame(&o, v),
        );
    }
    for v in [0, 4] {
        write(
            &requests,
            format!("init-producer-id-v{v}"),
            frame(&InitProducerIdRequest::default(), v),
        );
    }
    for v in [1, 4] {
        let dc = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t")),
        ]);
        write(&requests, format!("describe-configs-v{v}"), frame(&dc, v));
    }
    for v in [0, 1] {
        let iac = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("5"))),
                ]),
        ]);
        write(
            &requests,
            format!("incremental-alter-configs-v{v}"),
            frame(&iac, v),
        );
        write(
            &requests,
            format!("describe-cluster-v{v}"),
            frame(&DescribeClusterRequest::default(), v),
        );
    }
    for v in [0, 2] {
        let ac = AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t")),
        ]);
        write(&requests, format!("alter-configs-v{v}"), frame(&ac, v));
        let dr = DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic())
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default().with_offset(5),
                ]),
        ]);
        write(&requests, format!("delete-records-v{v}"), frame(&dr, v));
    }
    for v in [0, 3] {
        let cp = CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic())
                .with_count(4),
        ]);
        write(&requests, format!("create-partitions-v{v}"), frame(&cp, v));
    }
    for v in [1, 4] {
        write(
            &requests,
            format!("describe-log-dirs-v{v}"),
            frame(&DescribeLogDirsRequest::default(), v),
        );
    }
    let group = || GroupId(StrBytes::from_static_str("g"));
    for v in [0, 4] {
        let fc = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_static_str("g"))
            .with_coordinator_keys(vec![StrBytes::from_static_str("g")]);
        write(&requests, format!("find-coordinator-v{v}"), frame(&fc, v));
        write(
            &requests,
            format!("list-groups-v{v}"),
            frame(&ListGroupsRequest::default(), v),
        );
        let hb = HeartbeatRequest::default()
            .with_group_id(group())
            .with_member_id(StrBytes::from_static_str("m"));
        write(&requests, format!("heartbeat-v{v}"), frame(&hb, v));
    }
    for v in [0, 9] {
        let jg = JoinGroupRequest::default()
            .with_group_id(group())
            .with_session_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 1, b't']))]);
        write(&requests, format!("join-group-v{v}"), frame(&jg, v));
    }
    for v in [0, 5] {
        let sg = SyncGroupRequest::default()
            .with_group_id(group())
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_static_str("m"))
                    .with_assignment(Bytes::from_static(&[0, 1, 0, 0, 0, 0])),
            ]);
        write(&requests, format!("sync-group-v{v}"), frame(&sg, v));
        let lg = LeaveGroupRequest::default()
            .with_group_id(group())
            .with_member_id(StrBytes::from_static_str("m"))
            .with_members(vec![leave_group_request::MemberIdentity::default()
                .with_member_id(StrBytes::from_static_str("m"))]);
        write(&requests, format!("leave-group-v{v}"), frame(&lg, v));
        let dg = DescribeGroupsRequest::default().with_groups(vec![group()]);
        write(&requests, format!("describe-groups-v{v}"), frame(&dg, v));
    }
    for v in [2, 8] {
        let oc = OffsetCommitRequest::default()
            .with_group_id(group())
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic())
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_committed_offset(3),
                    ]),
            ]);
        write(&requests, format!("offset-commit-v{v}"), frame(&oc, v));
    }
    for v in [1, 8] {
        let of = OffsetFetchRequest::default()
            .with_group_id(group())
            .with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(group()),
            ]);
        write(&requests, format!("offset-fetch-v{v}"), frame(&of, v));
    }
    for v in [0, 2] {
        let dg = DeleteGroupsRequest::default().with_groups_names(vec![group()]);
        write(&requests, format!("delete-groups-v{v}"), frame(&dg, v));
    }
    let od = OffsetDeleteRequest::default()
        .with_group_id(group())
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(topic())
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default(),
                ]),
        ]);
    write(&requests, "offset-delete-v0".into(), frame(&od, 0));
    println!("wrote {n} seeds under {}", root.display());
}
