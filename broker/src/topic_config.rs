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
    /// `silt.durability=object`: acks=all waits until the data is recorded in the bucket.
    pub durability_object: bool,
    /// Resolved `local.retention.*` (-1: no limit).
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
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

/// DescribeConfigs' config types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic config a client may set.
pub struct Spec {
    pub name: &'static str,
    kind: Kind,
    pub config_type: ConfigType,
    /// Kafka's default where the broker has no setting for it.
    pub fixed_default: &'static str,
    /// The broker setting this topic config defaults to, if any (for synonyms).
    pub broker_synonym: Option<&'static str>,
    pub doc: &'static str,
}

const MAX: &str = "9223372036854775807";

macro_rules! spec {
    ($name:expr, $kind:expr, $ty:ident, $default:expr, $syn:expr, $doc:expr) => {
        Spec {
            name: $name,
            kind: $kind,
            config_type: ConfigType::$ty,
            fixed_default: $default,
            broker_synonym: $syn,
            doc: $doc,
        }
    };
}

/// Every topic config a client may set, in name order.
pub const KNOWN: &[Spec] = &[
    spec!("cleanup.policy", Kind::CleanupPolicy, List, "delete", Some("log.cleanup.policy"),
        "delete: old segments are removed by retention; compact: records need keys and are kept (compaction is not implemented yet)."),
    spec!("compression.type", Kind::OneOf(&["uncompressed", "producer", "gzip", "snappy", "lz4", "zstd"]), String, "producer", Some("compression.type"),
        "Stored for compatibility; batches keep the producer's compression."),
    spec!("delete.retention.ms", Kind::Stored, Long, "86400000", Some("log.cleaner.delete.retention.ms"), "Stored for compatibility."),
    spec!("file.delete.delay.ms", Kind::Stored, Long, "60000", Some("log.segment.delete.delay.ms"), "Stored for compatibility."),
    spec!("flush.messages", Kind::Stored, Long, MAX, Some("log.flush.interval.messages"), "Stored for compatibility; every acknowledged write is fsynced."),
    spec!("flush.ms", Kind::Stored, Long, MAX, Some("log.flush.interval.ms"), "Stored for compatibility; every acknowledged write is fsynced."),
    spec!("index.interval.bytes", Kind::Stored, Int, "4096", Some("log.index.interval.bytes"), "Stored for compatibility; the index interval is 4096 bytes."),
    spec!("local.retention.bytes", Kind::Long { min: -2 }, Long, "-2", Some("log.local.retention.bytes"), "Local copies of uploaded segments are kept up to this size (-2: retention.bytes)."),
    spec!("local.retention.ms", Kind::Long { min: -2 }, Long, "-2", Some("log.local.retention.ms"), "Local copies of uploaded segments are kept this long (-2: retention.ms)."),
    spec!("max.compaction.lag.ms", Kind::Stored, Long, MAX, Some("log.cleaner.max.compaction.lag.ms"), "Stored for compatibility."),
    spec!("max.message.bytes", Kind::Int { min: 0 }, Int, "1048588", Some("message.max.bytes"), "Largest record batch accepted, in bytes."),
    spec!("message.downconversion.enable", Kind::Stored, Boolean, "true", Some("log.message.downconversion.enable"), "Stored for compatibility."),
    spec!("message.timestamp.after.max.ms", Kind::Stored, Long, "3600000", Some("log.message.timestamp.after.max.ms"), "Stored for compatibility."),
    spec!("message.timestamp.before.max.ms", Kind::Stored, Long, MAX, Some("log.message.timestamp.before.max.ms"), "Stored for compatibility."),
    spec!("message.timestamp.difference.max.ms", Kind::Stored, Long, MAX, Some("log.message.timestamp.difference.max.ms"), "Stored for compatibility."),
    spec!("message.timestamp.type", Kind::OneOf(&["CreateTime", "LogAppendTime"]), String, "CreateTime", Some("log.message.timestamp.type"),
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's time."),
    spec!("min.cleanable.dirty.ratio", Kind::Stored, Double, "0.5", Some("log.cleaner.min.cleanable.ratio"), "Stored for compatibility."),
    spec!("min.compaction.lag.ms", Kind::Stored, Long, "0", Some("log.cleaner.min.compaction.lag.ms"), "Stored for compatibility."),
    spec!("min.insync.replicas", Kind::Int { min: 1 }, Int, "1", Some("min.insync.replicas"), "Stored for compatibility; durability comes from the WAL and the bucket."),
    spec!("preallocate", Kind::Stored, Boolean, "false", Some("log.preallocate"), "Stored for compatibility."),
    spec!("remote.storage.enable", Kind::Stored, Boolean, "false", None, "Stored for compatibility; object storage is always the home of data."),
    spec!("retention.bytes", Kind::Long { min: -1 }, Long, "-1", Some("log.retention.bytes"), "Largest size of a partition before old segments are deleted (-1: no limit)."),
    spec!("retention.ms", Kind::Long { min: -1 }, Long, "604800000", Some("log.retention.ms"), "How long segments are kept before deletion (-1: forever)."),
    spec!("segment.bytes", Kind::Int { min: 14 }, Int, "1073741824", Some("log.segment.bytes"), "Size at which a new segment is started."),
    spec!("segment.index.bytes", Kind::Stored, Int, "10485760", Some("log.index.size.max.bytes"), "Stored for compatibility."),
    spec!("segment.jitter.ms", Kind::Stored, Long, "0", Some("log.roll.jitter.ms"), "Stored for compatibility."),
    spec!("segment.ms", Kind::Long { min: 1 }, Long, "604800000", Some("log.roll.ms"), "Age at which a new segment is started."),
    spec!("silt.durability", Kind::OneOf(&["object", "local"]), String, "object", None,
        "object: acks=all is answered once data is in the bucket; local: once it is in the local WAL."),
    spec!("unclean.leader.election.enable", Kind::Stored, Boolean, "false", Some("unclean.leader.election.enable"), "Stored for compatibility."),
];

pub fn spec(name: &str) -> Option<&'static Spec> {
    KNOWN.iter().find(|s| s.name == name)
}

/// Checks one topic config; the error text goes back to the client.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some(spec) = spec(name) else {
        return Err(format!("unknown topic config {name}"));
    };
    let kind = &spec.kind;
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
            durability_object: overrides
                .get("silt.durability")
                .is_none_or(|d| d != "local"),
            local_retention_ms: match long("local.retention.ms", -2) {
                -2 => long("retention.ms", defaults.retention_ms),
                v => v,
            },
            local_retention_bytes: match long("local.retention.bytes", -2) {
                -2 => long("retention.bytes", defaults.retention_bytes),
                v => v,
            },
        }
    }

    /// The value a topic without an override has for `name` (broker default or Kafka's).
    pub fn default_value(defaults: &LogDefaults, name: &str) -> Option<String> {
        let value = match name {
            "retention.ms" => defaults.retention_ms.to_string(),
            "retention.bytes" => defaults.retention_bytes.to_string(),
            "segment.bytes" => defaults.segment_bytes.to_string(),
            "segment.ms" => defaults.segment_ms.to_string(),
            "max.message.bytes" => defaults.message_max_bytes.to_string(),
            "message.timestamp.type" => match defaults.message_timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
            other => spec(other)?.fixed_default.to_string(),
        };
        Some(value)
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
