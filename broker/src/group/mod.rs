//! The group coordinator for Kafka's classic consumer-group protocol: membership, generations
//! and rebalances (JoinGroup / SyncGroup / Heartbeat / LeaveGroup), and committed offsets.
//!
//! Membership lives in memory (members rejoin after a coordinator moves). Committed offsets
//! live in the metadata store, one key per group holding all of its offsets; commits are
//! group-committed by one flusher, so many commits cost one store write, and a commit is
//! answered only once that write is durable.

mod offsets;
mod state;

pub use offsets::{GroupOffsets, OffsetEntry};
pub use state::{Coordinator, GroupError, GroupSettings, GroupSummary, JoinOutcome, MemberSummary};
