use std::path::PathBuf;

/// Errors of the metadata layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metadata store I/O on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata store file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("encode or decode metadata value for key {key}")]
    Codec {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("lease {0} not found or expired")]
    LeaseNotFound(i64),
    /// A conditional write lost to a concurrent writer; re-read and retry.
    #[error("conditional write on {key} failed: the value changed concurrently")]
    Conflict { key: String },
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic {0} not found")]
    TopicNotFound(String),
    /// A write conditional on a leader epoch or assignment version found it moved on: the
    /// caller is no longer the leader and must step down.
    #[error("fenced on {key}: {reason}")]
    Fenced { key: String, reason: String },
    #[error("metadata store is closed")]
    Closed,
    #[error("metadata store task failed: {0}")]
    Task(String),
    /// The store did not answer (network, timeout, no leader). For a transaction the outcome is
    /// unknown: it may have been applied.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// A transaction larger than the store accepts (the embedded log's record limit, etcd's
    /// request limit): it was not applied, and retrying it unchanged fails the same way.
    #[error("metadata transaction of {bytes} bytes is over the store's limit of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    #[error("metadata store configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::Conflict { .. } | Error::Io { .. } | Error::Task(_) | Error::Unavailable(_)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
