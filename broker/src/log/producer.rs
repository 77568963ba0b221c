//! Idempotent producers: per partition, each producer's epoch and the sequence ranges of its
//! last five batches, as Kafka keeps them.
//!
//! - A retried batch whose sequence range is among the last five is a duplicate: it is answered
//!   with the offsets it was first written at and not appended again.
//! - A batch from an older epoch gets INVALID_PRODUCER_EPOCH; a new epoch must start at
//!   sequence 0; otherwise the first sequence must follow the last one (OUT_OF_ORDER_SEQUENCE).
//! - A producer this partition does not know (first write, or expired) may start anywhere.
//!
//! The state survives restarts through snapshots taken at WAL checkpoints plus a replay of the
//! batches after the snapshot's offset (the tail), never a scan of the whole log.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// How many batches per producer are remembered for duplicate detection.
const WINDOW: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// WAL append to wait for before answering a duplicate (0 once durable or after restart).
    #[serde(skip)]
    pub wal_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// Wall-clock time of the last write, for `producer.id.expiration.ms`.
    pub last_write_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer epoch {got} is older than the current epoch {current}")]
    InvalidEpoch { got: i16, current: i16 },
    #[error("out of order sequence: expected {expected}, got {got}")]
    OutOfOrder { expected: i32, got: i32 },
}

/// The outcome of checking a batch against its producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it.
    Append,
    /// Already written: answer with these offsets.
    Duplicate(BatchMeta),
}

/// Last sequence of a batch starting at `first` with `last_offset_delta`, wrapping as Kafka does.
pub fn last_sequence(first: i32, last_offset_delta: i32) -> i32 {
    ((first as i64 + last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

fn follows(last: i32, next: i32) -> bool {
    next as i64 == last as i64 + 1 || (next == 0 && last == i32::MAX)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<Check, SequenceError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(Check::Append);
        };
        if epoch < entry.epoch {
            return Err(SequenceError::InvalidEpoch {
                got: epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            return if first_seq == 0 {
                Ok(Check::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    expected: 0,
                    got: first_seq,
                })
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(Check::Duplicate(*dup));
        }
        match entry.batches.back() {
            None => Ok(Check::Append),
            Some(last) if follows(last.last_seq, first_seq) => Ok(Check::Append),
            Some(last) => Err(SequenceError::OutOfOrder {
                expected: last_sequence(last.last_seq, 1),
                got: first_seq,
            }),
        }
    }

    /// A copy holding only the given producers (a scratch state for checking a request).
    pub fn clone_for(&self, ids: impl Iterator<Item = i64>) -> ProducerStates {
        let mut out = ProducerStates::default();
        for id in ids {
            if let Some(e) = self.producers.get(&id) {
                out.producers.insert(id, e.clone());
            }
        }
        out
    }

    /// Records a batch that was appended (or replayed from the log).
    pub fn record(&mut self, producer_id: i64, epoch: i16, meta: BatchMeta, now_ms: i64) {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::new(),
                last_write_ms: now_ms,
            });
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(meta);
        while entry.batches.len() > WINDOW {
            entry.batches.pop_front();
        }
        entry.last_write_ms = entry.last_write_ms.max(now_ms);
    }

    /// Forgets producers idle for longer than `expiration_ms`.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_write_ms) <= expiration_ms);
        before - self.producers.len()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

/// A snapshot on disk: the state as of `offset` (the log end when it was taken).
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub offset: i64,
    pub states: ProducerStates,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first: i32, last: i32, base: i64) -> BatchMeta {
        BatchMeta {
            first_seq: first,
            last_seq: last,
            base_offset: base,
            last_offset: base + (last - first) as i64,
            wal_seq: 0,
        }
    }

    #[test]
    fn sequences_epochs_and_duplicates() {
        let mut s = ProducerStates::default();
        assert_eq!(
            s.check(7, 0, 42, 44),
            Ok(Check::Append),
            "unknown producer starts anywhere"
        );
        s.record(7, 0, meta(0, 4, 100), 1);
        assert_eq!(s.check(7, 0, 5, 9), Ok(Check::Append));
        assert!(matches!(
            s.check(7, 0, 6, 9),
            Err(SequenceError::OutOfOrder {
                expected: 5,
                got: 6
            })
        ));
        assert_eq!(s.check(7, 0, 0, 4), Ok(Check::Duplicate(meta(0, 4, 100))));
        for i in 1..=5 {
            s.record(7, 0, meta(i * 5, i * 5 + 4, 100 + i as i64 * 5), 2);
        }
        // The first batch fell out of the five-batch window: an old duplicate is out of order.
        assert!(matches!(
            s.check(7, 0, 0, 4),
            Err(SequenceError::OutOfOrder { .. })
        ));
        assert_eq!(
            s.check(7, 0, 25, 29),
            Ok(Check::Duplicate(meta(25, 29, 125)))
        );
        assert!(matches!(
            s.check(7, -1, 30, 30),
            Err(SequenceError::InvalidEpoch { .. })
        ));
        assert!(matches!(
            s.check(7, 1, 3, 3),
            Err(SequenceError::OutOfOrder { expected: 0, .. })
        ));
        assert_eq!(s.check(7, 1, 0, 3), Ok(Check::Append));
        s.record(7, 1, meta(0, 3, 200), 3);
        assert!(matches!(
            s.check(7, 0, 30, 30),
            Err(SequenceError::InvalidEpoch { .. })
        ));
        assert_eq!(s.expire(10_000, 5_000), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn sequence_wraps() {
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        assert!(follows(i32::MAX, 0));
    }
}
