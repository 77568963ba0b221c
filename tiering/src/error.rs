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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
