//! The embedded adapters: everything one process on one machine needs, under one data directory.
//!
//! - `ryze.db`: the registry, a SQLite database (WAL), so that the operator CLI can add an account
//!   while the server runs.
//! - `blobs/`: credential stores and media, one file each, replaced atomically.
//! - `seal.key`: the master key, generated on first use, readable by its owner only.
//! - `events.db`: the event and delivery queues and the delivery log, durable (see [`DurableQueue`]).
//! - commands and rate counters live in memory: one process is the whole deployment, and a command
//!   is worth nothing after a restart.

mod blobs;
mod counters;
mod durable_queue;
mod queue;
mod registry;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

pub use blobs::DirBlobStore;
pub use counters::MemoryRateCounter;
pub use durable_queue::{DurableQueue, EventsDb, SqliteDeliveryLog};
pub use queue::InProcessQueue;
pub use registry::FileRegistry;

use crate::ports::Ports;
use crate::secrets::MasterKey;
use crate::{Error, Result};

/// Commands and events waiting in memory beyond this are refused rather than piling up.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Opens (creating if needed) every embedded adapter under `data_dir`.
pub fn open(data_dir: &Path) -> Result<Ports> {
    std::fs::create_dir_all(data_dir).map_err(Error::storage)?;
    let events = EventsDb::open(&data_dir.join("events.db"))?;
    Ok(Ports {
        registry: Arc::new(FileRegistry::open(&data_dir.join("ryze.db"))?),
        counters: Arc::new(MemoryRateCounter::default()),
        commands: Arc::new(InProcessQueue::new(QUEUE_CAPACITY)),
        events: Arc::new(events.queue("events")),
        deliveries: Arc::new(events.queue("deliveries")),
        dead_deliveries: Arc::new(events.queue("dead-deliveries")),
        delivery_log: Arc::new(SqliteDeliveryLog::new(&events)),
        blobs: Arc::new(DirBlobStore::new(data_dir.join("blobs"))),
    })
}

/// Reads the master key from `data_dir/seal.key`, creating it (mode 0600) on first use. Two processes
/// starting at once agree on one key: only one can create the file.
pub fn master_key(data_dir: &Path) -> Result<MasterKey> {
    std::fs::create_dir_all(data_dir).map_err(Error::storage)?;
    let path = data_dir.join("seal.key");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            let key = MasterKey::generate();
            file.write_all(key.to_base64().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(Error::storage)?;
            tracing::info!(path = %path.display(), "generated a new sealing key");
            Ok(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(Error::storage)?;
            MasterKey::from_base64(&text)
        }
        Err(error) => Err(Error::storage(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = master_key(dir.path()).unwrap();
        let second = master_key(dir.path()).unwrap();
        assert_eq!(first.to_base64(), second.to_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("seal.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
