//! The [`MetadataStore`] trait: an etcd-shaped key-value store.
//!
//! # Contract
//! - Keys are UTF-8 strings, values opaque bytes. Every committed write increments the store's
//!   revision; a key carries the revision that created it and the one that last modified it.
//! - [`MetadataStore::txn`] applies its operations atomically if and only if every compare
//!   holds, and is durable when it returns `Ok` (an embedded store has fsynced it).
//! - A key written with a lease is deleted when the lease expires or is revoked. Leases expire
//!   when not kept alive within their TTL; a restarted embedded store has no live leases.
//! - Watches deliver every change under a prefix after the watch was created, in revision order.
//!   A watcher that falls too far behind has its channel closed and must re-read and re-watch.

use crate::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::mpsc;

/// Identifies a lease granted by [`MetadataStore::grant_lease`].
pub type LeaseId = i64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(with = "crate::bytes_field")]
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// Number of writes since creation (1 after the first put).
    pub version: i64,
    pub lease: Option<LeaseId>,
}

/// A condition a transaction checks before applying its operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals this (0 means the key does not exist).
    ModRevision { key: String, revision: i64 },
    /// The key exists with exactly this value.
    Value { key: String, value: Vec<u8> },
}

impl Compare {
    pub fn absent(key: impl Into<String>) -> Self {
        Compare::ModRevision {
            key: key.into(),
            revision: 0,
        }
    }

    pub fn mod_revision(key: impl Into<String>, revision: i64) -> Self {
        Compare::ModRevision {
            key: key.into(),
            revision,
        }
    }

    pub fn value(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Compare::Value {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Put {
        key: String,
        #[serde(with = "crate::bytes_field")]
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
    DeletePrefix {
        prefix: String,
    },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }

    pub fn delete_prefix(prefix: impl Into<String>) -> Self {
        Op::DeletePrefix {
            prefix: prefix.into(),
        }
    }
}

/// Compares, then the operations applied when all of them hold.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    pub fn then(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held and the operations were applied.
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: WatchEventKind,
    /// For deletes, the key with the deleting revision as `mod_revision` and an empty value.
    pub kv: KeyValue,
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Every key starting with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>>;

    async fn txn(&self, txn: Txn) -> Result<TxnResponse>;

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;

    /// Renews the lease for another TTL; `LeaseNotFound` once it has expired.
    async fn keep_alive(&self, lease: LeaseId) -> Result<()>;

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;

    /// Changes under `prefix` from now on.
    async fn watch(&self, prefix: &str) -> Result<mpsc::Receiver<WatchEvent>>;

    /// Unconditional single put; returns the new revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64> {
        Ok(self
            .txn(Txn::new().then(Op::put(key, value)))
            .await?
            .revision)
    }
}
