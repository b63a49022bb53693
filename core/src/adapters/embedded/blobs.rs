//! Blobs as files under one directory. A write goes to a temporary file that is renamed over the old
//! one, so a reader sees the old object or the new one, never a torn mix. An object's version is the
//! SHA-256 of its bytes; conditional writes are checked under one lock, which suffices because one
//! process owns a data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::ports::{BlobKey, BlobStore, BlobVersion, VersionedBlob};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct DirBlobStore {
    root: PathBuf,
    conditional_writes: Arc<tokio::sync::Mutex<()>>,
}

fn version_of(bytes: &[u8]) -> BlobVersion {
    let digest = Sha256::digest(bytes);
    BlobVersion(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().ok_or_else(|| std::io::Error::other("blob path has no parent"))?;
    std::fs::create_dir_all(parent)?;
    let temp = parent.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    std::fs::write(&temp, bytes)?;
    std::fs::File::open(&temp)?.sync_all()?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

impl DirBlobStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root, conditional_writes: Arc::default() }
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        // `BlobKey` admits no `..` or absolute segment, so this stays under `root`.
        self.root.join(key.as_str())
    }
}

#[async_trait]
impl BlobStore for DirBlobStore {
    async fn put(&self, key: &BlobKey, bytes: Vec<u8>) -> Result<()> {
        let _writing = self.conditional_writes.lock().await;
        let path = self.path(key);
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(Error::storage)?
            .map_err(Error::storage)
    }

    async fn put_if(
        &self,
        key: &BlobKey,
        bytes: Vec<u8>,
        expected: Option<&BlobVersion>,
    ) -> Result<BlobVersion> {
        let _writing = self.conditional_writes.lock().await;
        let current = self.get_versioned(key).await?.map(|blob| blob.version);
        if current.as_ref() != expected {
            return Err(Error::BlobConflict);
        }
        let version = version_of(&bytes);
        let path = self.path(key);
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(Error::storage)?
            .map_err(Error::storage)?;
        Ok(version)
    }

    async fn get_versioned(&self, key: &BlobKey) -> Result<Option<VersionedBlob>> {
        match tokio::fs::read(self.path(key)).await {
            Ok(bytes) => Ok(Some(VersionedBlob { version: version_of(&bytes), bytes })),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Error::storage(error)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<()> {
        let _writing = self.conditional_writes.lock().await;
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
