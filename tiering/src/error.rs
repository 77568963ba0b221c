#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid object store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("open object store at {url}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{op} {key}")]
    Store {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("object {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("open read cache in {path}: {reason}")]
    Cache { path: String, reason: String },
}

impl Error {
    /// Whether trying again later may succeed (the store was unreachable, not the data wrong).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Error::Store { source, .. } if !matches!(source, object_store::Error::NotFound { .. }))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
