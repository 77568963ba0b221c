//! Silt's metadata: the [`MetadataStore`] trait, the domain types shared by every crate, and the
//! embedded (single-process, file-backed) and etcd backends.
//!
//! This crate owns *how* cluster metadata is stored: keys, revisions, leases, watches and
//! conditional transactions, modelled on etcd so that the etcd backend is a thin adapter.
//! [`catalog`] is the typed layer (topics, partition leader epochs) that the broker uses.
//!
//! It must not know about Kafka wire types or object storage.

mod bytes_field;
pub mod catalog;
pub mod embedded;
mod error;
pub mod etcd;
pub mod keys;
pub mod store;
pub mod testsuite;
pub mod types;

pub use embedded::EmbeddedMetadataStore;
pub use error::{Error, Result};
pub use etcd::{EtcdMetadataStore, EtcdOptions, EtcdTls};
pub use store::{
    Compare, KeyValue, LeaseId, MetadataStore, Op, Txn, TxnResponse, WatchEvent, WatchEventKind,
};
pub use types::{LeaderEpoch, NodeId, Offset, TopicId, TopicPartition};
