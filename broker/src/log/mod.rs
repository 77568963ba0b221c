//! The partition log: record batches, the broker-wide WAL, hot segments, and partition state.

pub mod batch;
pub mod partition;
pub mod producer;
pub mod segment;
pub mod upload;
pub mod wal;
