//! Committed offsets of one group, as stored under `/silt/groups/{group}`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetEntry {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_ms: i64,
}

/// topic → partition → committed offset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffsets {
    pub offsets: BTreeMap<String, BTreeMap<i32, OffsetEntry>>,
}

impl GroupOffsets {
    pub fn get(&self, topic: &str, partition: i32) -> Option<&OffsetEntry> {
        self.offsets.get(topic)?.get(&partition)
    }

    pub fn put(&mut self, topic: &str, partition: i32, entry: OffsetEntry) {
        self.offsets
            .entry(topic.to_string())
            .or_default()
            .insert(partition, entry);
    }

    pub fn remove(&mut self, topic: &str, partition: i32) -> bool {
        let Some(parts) = self.offsets.get_mut(topic) else {
            return false;
        };
        let removed = parts.remove(&partition).is_some();
        if parts.is_empty() {
            self.offsets.remove(topic);
        }
        removed
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn newest_commit_ms(&self) -> Option<i64> {
        self.offsets
            .values()
            .flat_map(|p| p.values())
            .map(|e| e.commit_ms)
            .max()
    }
}
