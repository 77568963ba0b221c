//! Every key Silt keeps in the metadata store, built here and nowhere else. A key's layout is
//! part of the on-disk (and in-etcd) format: change one only with a migration.
//!
//! Node ids are zero-padded to five digits and partitions to five, so that a prefix listing
//! returns them in numeric order.

use crate::types::{NodeId, TopicId};

/// The cluster's identity (its id, created once).
pub const CLUSTER: &str = "/silt/cluster";
/// The next block of producer ids.
pub const PRODUCER_IDS: &str = "/silt/producer-ids";
/// Topic records, by name.
pub const TOPICS: &str = "/silt/topics/";
/// Partition records, by topic id and index.
pub const PARTITIONS: &str = "/silt/partitions/";
/// Per broker: its generation counter, assignment version and live registration.
pub const BROKERS: &str = "/silt/brokers/";
/// Commit records of WAL objects, by broker, generation and sequence.
pub const COMMITS: &str = "/silt/commits/";
/// The controller election.
pub const CONTROLLER: &str = "/silt/controller";
/// Consumer groups (members' metadata and committed offsets), by group id.
pub const GROUPS: &str = "/silt/groups/";
/// ACL bindings, by a digest of the binding.
pub const ACLS: &str = "/silt/acls/";
/// SCRAM credentials, by escaped user name and mechanism.
pub const SCRAM: &str = "/silt/scram/";
/// The server secret unknown users' SCRAM salts are derived from.
pub const SCRAM_DECOY_SECRET: &str = "/silt/security/scram-decoy-secret";

/// What leadership follows: topics, partitions and brokers.
pub const LEADERSHIP_WATCHES: [&str; 3] = [TOPICS, PARTITIONS, BROKERS];

pub fn topic(name: &str) -> String {
    format!("{TOPICS}{name}")
}

/// The prefix of every partition record of `topic`.
pub fn partitions_of(topic: TopicId) -> String {
    format!("{PARTITIONS}{topic}/")
}

pub fn partition(topic: TopicId, partition: i32) -> String {
    format!("{PARTITIONS}{topic}/{partition:05}")
}

pub fn broker_generation(node: NodeId) -> String {
    format!("{BROKERS}{:05}/generation", node.0)
}

pub fn broker_assignment(node: NodeId) -> String {
    format!("{BROKERS}{:05}/assignment", node.0)
}

pub fn broker_registration(node: NodeId) -> String {
    format!("{BROKERS}{:05}/registration", node.0)
}

/// The prefix of every commit record broker `node` wrote.
pub fn commits_of(node: NodeId) -> String {
    format!("{COMMITS}{:05}/", node.0)
}

/// The key of one commit record.
pub fn commit(node: NodeId, generation: u64, seq: u64) -> String {
    format!("{}{generation:010}-{seq:012}", commits_of(node))
}

pub fn group(id: &str) -> String {
    format!("{GROUPS}{id}")
}

/// An ACL binding's key, from the hex digest of its canonical form.
pub fn acl(digest_hex: &str) -> String {
    format!("{ACLS}{digest_hex}")
}

/// A SCRAM credential's key; `escaped_user` has `/` escaped (it must not split the key).
pub fn scram(escaped_user: &str, mechanism: &str) -> String {
    format!("{SCRAM}{escaped_user}/{mechanism}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_layout() {
        let t = TopicId(uuid::Uuid::nil());
        assert_eq!(
            partition(t, 7),
            "/silt/partitions/00000000-0000-0000-0000-000000000000/00007"
        );
        assert!(partition(t, 7).starts_with(&partitions_of(t)));
        assert_eq!(
            commit(NodeId(3), 2, 9),
            "/silt/commits/00003/0000000002-000000000009"
        );
        assert!(commit(NodeId(3), 2, 9).starts_with(&commits_of(NodeId(3))));
        assert_eq!(
            broker_assignment(NodeId(12)),
            "/silt/brokers/00012/assignment"
        );
        assert_eq!(
            scram("a%2Fb", "SCRAM-SHA-256"),
            "/silt/scram/a%2Fb/SCRAM-SHA-256"
        );
    }
}
