//! The `list` body, rendered from per-instance JSON fragments cached by revision.
//!
//! An account's `list` can carry a thousand instances, each with its token to unseal and its view to
//! serialise: that dominates the route's cost. A fragment is a pure function of the record, and every
//! write bumps the record's revision, so a fragment cached under (id, revision) stays right; the body
//! is the fragments joined. The cache is per process and holds clear tokens in memory only.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use ryze_core::domain::{Instance, InstanceId};
use ryze_core::service::InstanceService;

use crate::error::ApiError;
use crate::views::InstanceView;

/// Past this many fragments the cache starts over, bounding memory to about 1 KiB per entry.
const MAX_ENTRIES: usize = 200_000;

/// An instance's rendered `list` item, and the revision it was rendered from.
struct Fragment {
    revision: u64,
    json: Arc<[u8]>,
}

#[derive(Default)]
pub struct ListRenderer {
    fragments: RwLock<HashMap<InstanceId, Fragment>>,
}

impl ListRenderer {
    pub fn render(
        &self,
        service: &InstanceService,
        instances: &[Arc<Instance>],
    ) -> Result<Response, ApiError> {
        let mut fragments = Vec::with_capacity(instances.len());
        let mut fresh = Vec::new();
        {
            let cache = self.fragments.read().map_err(|_| ApiError::internal())?;
            for instance in instances {
                match cache.get(&instance.id) {
                    Some(cached) if cached.revision == instance.revision => {
                        fragments.push(cached.json.clone())
                    }
                    _ => {
                        let fragment = render_fragment(service, instance)?;
                        fresh.push((instance.id.clone(), instance.revision, fragment.clone()));
                        fragments.push(fragment);
                    }
                }
            }
        }
        if !fresh.is_empty() {
            let mut cache = self.fragments.write().map_err(|_| ApiError::internal())?;
            if cache.len() + fresh.len() > MAX_ENTRIES {
                cache.clear();
            }
            cache.extend(fresh.into_iter().map(|(id, revision, json)| (id, Fragment { revision, json })));
        }

        let total = instances.len();
        let message =
            if total == 1 { "1 Instance found".to_owned() } else { format!("{total} Instances found") };
        let size: usize = fragments.iter().map(|f| f.len() + 1).sum();
        let mut body = Vec::with_capacity(size + 128);
        body.extend_from_slice(br#"{"success":true,"message":"#);
        serde_json::to_writer(&mut body, &message).map_err(|_| ApiError::internal())?;
        body.extend_from_slice(br#","instances":["#);
        for (i, fragment) in fragments.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(fragment);
        }
        body.extend_from_slice(format!(r#"],"meta":{{"total":{total}}}}}"#).as_bytes());

        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(response)
    }

    /// Drops the fragment of a deleted instance.
    pub fn forget(&self, id: &InstanceId) {
        if let Ok(mut cache) = self.fragments.write() {
            cache.remove(id);
        }
    }
}

fn render_fragment(service: &InstanceService, instance: &Instance) -> Result<Arc<[u8]>, ApiError> {
    let token = service.reveal_token(instance)?;
    let bytes = serde_json::to_vec(&InstanceView::new(instance, token)).map_err(|_| ApiError::internal())?;
    Ok(bytes.into())
}
