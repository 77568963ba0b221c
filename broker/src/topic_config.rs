//! Topic configurations under their Kafka names: the known keys, validation, and the effective
//! values (broker defaults overridden per topic).

use crate::config::LogDefaults;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The effective configuration of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: usize,
    pub message_timestamp_type: TimestampType,
    pub cleanup_policy: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Long {
        min: i64,
    },
    Int {
        min: i64,
    },
    OneOf(&'static [&'static str]),
    CleanupPolicy,
    /// Accepted and stored for compatibility; Silt does not act on it.
    Stored,
}

/// Every topic config a client may set: name and validation.
const KNOWN: &[(&str, Kind)] = &[
    ("cleanup.policy", Kind::CleanupPolicy),
    (
        "compression.type",
        Kind::OneOf(&["uncompressed", "producer", "gzip", "snappy", "lz4", "zstd"]),
    ),
    ("delete.retention.ms", Kind::Stored),
    ("file.delete.delay.ms", Kind::Stored),
    ("flush.messages", Kind::Stored),
    ("flush.ms", Kind::Stored),
    ("index.interval.bytes", Kind::Stored),
    ("local.retention.bytes", Kind::Long { min: -2 }),
    ("local.retention.ms", Kind::Long { min: -2 }),
    ("max.compaction.lag.ms", Kind::Stored),
    ("max.message.bytes", Kind::Int { min: 0 }),
    ("message.downconversion.enable", Kind::Stored),
    ("message.timestamp.after.max.ms", Kind::Stored),
    ("message.timestamp.before.max.ms", Kind::Stored),
    ("message.timestamp.difference.max.ms", Kind::Stored),
    (
        "message.timestamp.type",
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    ("min.cleanable.dirty.ratio", Kind::Stored),
    ("min.compaction.lag.ms", Kind::Stored),
    ("min.insync.replicas", Kind::Int { min: 1 }),
    ("preallocate", Kind::Stored),
    ("remote.storage.enable", Kind::Stored),
    ("retention.bytes", Kind::Long { min: -1 }),
    ("retention.ms", Kind::Long { min: -1 }),
    ("segment.bytes", Kind::Int { min: 14 }),
    ("segment.index.bytes", Kind::Stored),
    ("segment.jitter.ms", Kind::Stored),
    ("segment.ms", Kind::Long { min: 1 }),
    ("silt.durability", Kind::OneOf(&["object", "local"])),
    ("unclean.leader.election.enable", Kind::Stored),
];

/// Checks one topic config; the error text goes back to the client.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some((_, kind)) = KNOWN.iter().find(|(n, _)| *n == name) else {
        return Err(format!("unknown topic config {name}"));
    };
    match kind {
        Kind::Long { min } | Kind::Int { min } => {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name} must be an integer, got {value:?}"))?;
            if v < *min {
                return Err(format!("{name} must be at least {min}, got {v}"));
            }
            if matches!(kind, Kind::Int { .. }) && v > i32::MAX as i64 {
                return Err(format!("{name} must fit in 32 bits, got {v}"));
            }
            Ok(())
        }
        Kind::OneOf(allowed) => {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(format!("{name} must be one of {allowed:?}, got {value:?}"))
            }
        }
        Kind::CleanupPolicy => {
            let ok = value
                .split(',')
                .map(str::trim)
                .all(|p| p == "delete" || p == "compact");
            if ok && !value.trim().is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "cleanup.policy must be delete, compact or both, got {value:?}"
                ))
            }
        }
        Kind::Stored => Ok(()),
    }
}

impl TopicConfig {
    /// Whether retention deletes old segments (`delete` in `cleanup.policy`).
    pub fn deletes_by_retention(&self) -> bool {
        self.cleanup_policy.split(',').any(|p| p.trim() == "delete")
    }

    /// Whether records must have keys (`compact` in `cleanup.policy`).
    pub fn is_compacted(&self) -> bool {
        self.cleanup_policy
            .split(',')
            .any(|p| p.trim() == "compact")
    }

    /// Broker defaults overridden by the topic's stored configs (validated on the way in).
    pub fn resolve(defaults: &LogDefaults, overrides: &BTreeMap<String, String>) -> TopicConfig {
        let long = |name: &str, default: i64| {
            overrides
                .get(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(default)
        };
        TopicConfig {
            retention_ms: long("retention.ms", defaults.retention_ms),
            retention_bytes: long("retention.bytes", defaults.retention_bytes),
            segment_bytes: long("segment.bytes", defaults.segment_bytes as i64).max(14) as u64,
            segment_ms: long("segment.ms", defaults.segment_ms),
            max_message_bytes: long("max.message.bytes", defaults.message_max_bytes as i64).max(0)
                as usize,
            message_timestamp_type: match overrides
                .get("message.timestamp.type")
                .map(String::as_str)
            {
                Some("LogAppendTime") => TimestampType::LogAppendTime,
                Some(_) => TimestampType::CreateTime,
                None => defaults.message_timestamp_type,
            },
            cleanup_policy: overrides
                .get("cleanup.policy")
                .cloned()
                .unwrap_or_else(|| "delete".into()),
        }
    }

    /// The effective value of every config this broker acts on, by Kafka name, for responses.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        vec![
            ("cleanup.policy", self.cleanup_policy.clone()),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            (
                "message.timestamp.type",
                match self.message_timestamp_type {
                    TimestampType::CreateTime => "CreateTime".into(),
                    TimestampType::LogAppendTime => "LogAppendTime".into(),
                },
            ),
            ("retention.bytes", self.retention_bytes.to_string()),
            ("retention.ms", self.retention_ms.to_string()),
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_resolution() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-5").is_err());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("no.such.config", "1").is_err());
        let overrides = BTreeMap::from([
            ("segment.bytes".to_string(), "1048576".to_string()),
            (
                "message.timestamp.type".to_string(),
                "LogAppendTime".to_string(),
            ),
        ]);
        let c = TopicConfig::resolve(&LogDefaults::default(), &overrides);
        assert_eq!(c.segment_bytes, 1048576);
        assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(c.retention_ms, LogDefaults::default().retention_ms);
    }
}
