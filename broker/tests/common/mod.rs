//! Shared by the broker's integration tests: record batches and bounded waits.
#![allow(dead_code)]

use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::time::{Duration, Instant};

/// One uncompressed batch of `n` records valued `{tag}-{i}{suffix}`.
pub fn batch(n: usize, tag: &str, suffix: &str) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(format!("{tag}-{i}{suffix}").into_bytes().into()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.to_vec()
}

/// Polls `f` every 20 ms until it holds; panics after `within`.
pub async fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A broker on the given stores with its background tasks running and topic `t` (one
/// partition) created: the setup the store-fault tests share.
pub struct OneTopic {
    pub broker: std::sync::Arc<silt_broker::broker::Broker>,
    pub p: std::sync::Arc<silt_broker::log::partition::Partition>,
    cancel: tokio_util::sync::CancellationToken,
    background: tokio::task::JoinHandle<Option<String>>,
}

impl OneTopic {
    pub async fn start(
        config: silt_broker::config::Config,
        catalog: silt_metadata::catalog::Catalog,
        store: std::sync::Arc<dyn object_store::ObjectStore>,
    ) -> OneTopic {
        let broker = silt_broker::broker::Broker::open_with_store(config, catalog, store)
            .await
            .unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let background = tokio::spawn(broker.clone().run_background(cancel.clone()));
        let topic = broker
            .create_topic("t", 1, 1, Default::default(), false)
            .await
            .unwrap();
        let p = topic.partition(0).unwrap().clone();
        OneTopic {
            broker,
            p,
            cancel,
            background,
        }
    }

    /// Validates and appends one batch (as Produce would) to the partition.
    pub fn append(&self, mut bytes: Vec<u8>) -> silt_broker::log::partition::Appended {
        let limits = silt_broker::log::batch::Limits {
            max_message_bytes: 10 << 20,
            max_decompressed_bytes: 10 << 20,
            require_keys: false,
        };
        let batches = silt_broker::log::batch::validate_record_set(&bytes, &limits).unwrap();
        self.p
            .append(&mut bytes, &batches, &self.broker.wal)
            .unwrap()
    }

    /// Stops the background tasks and shuts the broker down.
    pub async fn stop(self) {
        self.cancel.cancel();
        assert_eq!(self.background.await.unwrap(), None, "stopped by itself");
        self.broker.shutdown().await;
    }
}
