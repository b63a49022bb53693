//! Blobs as files under one directory. A write goes to a temporary file that is renamed over the old
//! one, so a reader sees the old object or the new one, never a torn mix.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::ports::{BlobKey, BlobStore};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct DirBlobStore {
    root: PathBuf,
}

impl DirBlobStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        // `BlobKey` admits no `..` or absolute segment, so this stays under `root`.
        self.root.join(key.as_str())
    }
}

#[async_trait]
impl BlobStore for DirBlobStore {
    async fn put(&self, key: &BlobKey, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(key);
        tokio::task::spawn_blocking(move || {
            let parent = path.parent().ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
            std::fs::create_dir_all(parent)?;
            let temp = parent.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
            std::fs::write(&temp, &bytes)?;
            std::fs::File::open(&temp)?.sync_all()?;
            std::fs::rename(&temp, &path).inspect_err(|_| {
                let _ = std::fs::remove_file(&temp);
            })
        })
        .await
        .map_err(Error::storage)?
        .map_err(Error::storage)
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(key)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Error::storage(error)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::storage(error)),
        }
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool> {
        tokio::fs::try_exists(self.path(key)).await.map_err(Error::storage)
    }
}
