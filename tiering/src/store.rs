//! Object stores by URL: `file:///path` (the zero-config default), `memory://`.
//! `s3://bucket/prefix` arrives with the object-storage work; until then it is refused with a
//! clear message rather than silently writing somewhere else.

use crate::{Error, Result};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use std::sync::Arc;

/// Opens the object store named by `url`, creating a local directory if needed.
pub fn from_url(url: &str) -> Result<Arc<dyn ObjectStore>> {
    let parsed = url::Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: url.into(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "file" => {
            let path = parsed.to_file_path().map_err(|()| Error::InvalidUrl {
                url: url.into(),
                reason: "file URLs need an absolute path, e.g. file:///var/lib/silt/objects".into(),
            })?;
            std::fs::create_dir_all(&path).map_err(|e| Error::InvalidUrl {
                url: url.into(),
                reason: format!("cannot create {}: {e}", path.display()),
            })?;
            let store = LocalFileSystem::new_with_prefix(&path).map_err(|source| Error::Open {
                url: url.into(),
                source,
            })?;
            Ok(Arc::new(store))
        }
        "memory" => {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let prefix = parsed.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(store)
            } else {
                Ok(Arc::new(PrefixStore::new(store, prefix)))
            }
        }
        "s3" => Err(Error::InvalidUrl {
            url: url.into(),
            reason: "S3 object storage is not built into this version of silt yet; use file:// or memory://".into(),
        }),
        other => Err(Error::InvalidUrl {
            url: url.into(),
            reason: format!("unknown scheme {other:?}; expected file://, memory:// or s3://"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::path::Path;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn file_and_memory_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/objects", dir.path().display());
        for url in [url.as_str(), "memory://", "memory:///some/prefix"] {
            let store = from_url(url).unwrap();
            let key = Path::from("a/b");
            store.put(&key, b"hello".to_vec().into()).await.unwrap();
            let got = store.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(&got[..], b"hello", "{url}");
        }
        assert!(dir.path().join("objects/a/b").exists());
    }

    #[test]
    fn bad_urls_are_explained() {
        for url in ["nonsense", "ftp://x/y", "s3://bucket/prefix"] {
            let Err(err) = from_url(url) else {
                panic!("{url} was accepted")
            };
            let err = err.to_string();
            assert!(err.contains(url), "{err}");
        }
    }
}
