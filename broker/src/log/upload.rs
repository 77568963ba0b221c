//! Where a leader's appended batches go to be recorded in the bucket. The partition log knows
//! only this seam; the tier's upload queue implements it.

use super::partition::Partition;
use std::sync::Arc;

pub trait UploadSink: Send + Sync {
    /// Takes one stamped batch of `p` covering offsets `first..=last`, written in leader
    /// `epoch`, WAL append `wal_seq` (0: from a durable copy already). Called under `p`'s lock,
    /// so in offset order.
    fn push(
        &self,
        p: &Arc<Partition>,
        epoch: i32,
        first: i64,
        last: i64,
        batch: &[u8],
        wal_seq: u64,
    );
}
