//! Blobs in S3: credential stores and media, encrypted at rest (SSE-S3, asked for on every write
//! so that a bucket without default encryption still gets it). Conditional writes use S3's own
//! `If-Match` / `If-None-Match`, so a host that lost an instance cannot overwrite the store its
//! successor wrote.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier, ServerSideEncryption};

use super::sdk_error;
use crate::ports::{BlobKey, BlobStore, BlobVersion, VersionedBlob};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: Arc<str>,
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: &str) -> Self {
        Self { client, bucket: bucket.into() }
    }

    fn put_request(
        &self,
        key: &BlobKey,
        bytes: Vec<u8>,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        self.client
            .put_object()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(bytes))
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &BlobKey, bytes: Vec<u8>) -> Result<()> {
        self.put_request(key, bytes).send().await.map_err(sdk_error)?;
        Ok(())
    }

    async fn put_if(
        &self,
        key: &BlobKey,
        bytes: Vec<u8>,
        expected: Option<&BlobVersion>,
    ) -> Result<BlobVersion> {
        let request = match expected {
            Some(version) => self.put_request(key, bytes).if_match(&version.0),
            None => self.put_request(key, bytes).if_none_match("*"),
        };
        match request.send().await {
            Ok(output) => {
                let etag = output.e_tag.ok_or_else(|| Error::storage("S3 returned no ETag"))?;
                Ok(BlobVersion(etag))
            }
            // 412: the object changed; 404 (If-Match on a deleted object); 409: a concurrent
            // conditional write won.
            Err(error)
                if matches!(
                    error.as_service_error().and_then(|e| e.code()),
                    Some("PreconditionFailed" | "NoSuchKey" | "ConditionalRequestConflict")
                ) || matches!(
                    error.raw_response().map(|r| r.status().as_u16()),
                    Some(412 | 404 | 409)
                ) =>
            {
                Err(Error::BlobConflict)
            }
            Err(error) => Err(sdk_error(error)),
        }
    }

    async fn get_versioned(&self, key: &BlobKey) -> Result<Option<VersionedBlob>> {
        let output = match self.client.get_object().bucket(&*self.bucket).key(key.as_str()).send().await {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(error) => return Err(sdk_error(error)),
        };
        let version = BlobVersion(output.e_tag.clone().ok_or_else(|| Error::storage("S3 returned no ETag"))?);
        let bytes = output.body.collect().await.map_err(Error::storage)?.into_bytes().to_vec();
        Ok(Some(VersionedBlob { bytes, version }))
    }

    /// Removes the object and, on a versioned bucket, every earlier version of it: a deleted
    /// credential store must not linger as a noncurrent version. Nothing to remove is one HEAD:
    /// every connect of a new device deletes a store that is usually not there, and a delete
    /// would then leave a delete marker to list and remove (on moto the listing copies every
    /// version in the bucket, which at a thousand sessions held its core and gigabytes). Earlier
    /// versions of an absent object were removed with it; a removal cut short is the lifecycle
    /// rule's (noncurrent versions expire after 7 days).
    async fn delete(&self, key: &BlobKey) -> Result<()> {
        if !self.exists(key).await? {
            return Ok(());
        }
        self.client
            .delete_object()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(sdk_error)?;
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&*self.bucket)
                .prefix(key.as_str())
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(sdk_error)?;
            let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
            let markers = page.delete_markers().iter().map(|m| (m.key(), m.version_id()));
            let doomed = versions
                .chain(markers)
                .filter(|(k, _)| *k == Some(key.as_str()))
                .map(|(_, version)| {
                    ObjectIdentifier::builder()
                        .key(key.as_str())
                        .set_version_id(version.map(str::to_owned))
                        .build()
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(Error::storage)?;
            if !doomed.is_empty() {
                let batch = Delete::builder()
                    .set_objects(Some(doomed))
                    .quiet(true)
                    .build()
                    .map_err(Error::storage)?;
                self.client
                    .delete_objects()
                    .bucket(&*self.bucket)
                    .delete(batch)
                    .send()
                    .await
                    .map_err(sdk_error)?;
            }
            if page.is_truncated() != Some(true) {
                return Ok(());
            }
            key_marker = page.next_key_marker;
            version_marker = page.next_version_id_marker;
        }
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool> {
        match self.client.head_object().bucket(&*self.bucket).key(key.as_str()).send().await {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(error) => Err(sdk_error(error)),
        }
    }
}
