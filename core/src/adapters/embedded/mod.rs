//! The embedded adapters: everything one process on one machine needs, under one data directory.
//!
//! - `ryze.db`: the registry, a SQLite database (WAL), so that the operator CLI can add an account
//!   while the server runs.
//! - `blobs/`: credential stores and media, one file each, replaced atomically.
//! - `seal.key`: the master key, generated on first use, readable by its owner only.
//! - `events.db`: the event and delivery queues and the delivery log, durable (see [`DurableQueue`]),
//!   on a thread of its own that commits concurrent callers' writes together.
//! - commands and rate counters live in memory: one process is the whole deployment, and a command
//!   is worth nothing after a restart.

mod blobs;
mod channels;
mod counters;
mod delivery_log;
mod durable_queue;
mod group_commit;
mod leases;
mod queue;
mod registry;
mod take;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

pub use blobs::DirBlobStore;
pub use channels::InProcessChannels;
pub use counters::MemoryRateCounter;
pub use delivery_log::SqliteDeliveryLog;
pub use durable_queue::{DurableQueue, EventsDb};
pub use queue::InProcessQueue;
pub use registry::FileRegistry;

use crate::ports::Ports;
use crate::secrets::MasterKey;
use crate::{Error, Result};

/// How often a waiting connect call reads its request item on these adapters: a SQLite point read
/// costs nothing, and polling often takes the code to the caller sooner.
pub const CONNECT_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Commands and events waiting in memory beyond this are refused rather than piling up.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Opens (creating if needed) every embedded adapter under `data_dir`.
pub fn open(data_dir: &Path) -> Result<Ports> {
    create_private_dir(data_dir)?;
    let events_db = data_dir.join("events.db");
    restrict_database(&events_db)?;
    let events = EventsDb::open(&events_db)?;
    let registry = Arc::new(FileRegistry::open(&data_dir.join("ryze.db"))?);
    Ok(Ports {
        registry: registry.clone(),
        leases: registry,
        counters: Arc::new(MemoryRateCounter::default()),
        commands: Arc::new(InProcessQueue::new(QUEUE_CAPACITY)),
        channels: Arc::new(InProcessChannels::default()),
        events: Arc::new(events.queue("events")),
        deliveries: Arc::new(events.queue(durable_queue::DELIVERY_QUEUE)),
        dead_deliveries: Arc::new(events.queue("dead-deliveries")),
        delivery_log: Arc::new(SqliteDeliveryLog::new(&events)),
        blobs: Arc::new(DirBlobStore::new(data_dir.join("blobs"))),
    })
}

/// Reads the master key from `data_dir/seal.key`, creating it (mode 0600) on first use. Two processes
/// starting at once agree on one key: only one can create the file.
pub fn master_key(data_dir: &Path) -> Result<MasterKey> {
    create_private_dir(data_dir)?;
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

/// Creates `dir`, and any parent missing, readable by its owner only (0700); one that exists is left
/// as it is.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(Error::storage)
}

/// Makes the SQLite database at `path` (created empty when missing) and its `-wal` and `-shm` files
/// readable by their owner only (0600), before SQLite opens it: SQLite gives the files it creates
/// beside a database the database's own mode.
pub(crate) fn restrict_database(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).mode(0o600);
        options.open(path).map_err(Error::storage)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::storage(error));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn the_store_is_readable_by_its_owner_only() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        let ports = open(&dir).unwrap();
        // A write, so that SQLite has its -wal and -shm files in use.
        let account = crate::domain::Account {
            id: crate::domain::AccountId::generate(),
            name: "a".into(),
            token_hash: crate::secrets::TokenHash::from_stored("h".into()),
            limits: crate::domain::AccountLimits::default(),
            created_at: chrono::Utc::now(),
        };
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(ports.registry.insert_account(&account))
            .unwrap();
        assert_eq!(mode(&dir), 0o700);
        for file in ["ryze.db", "ryze.db-wal", "ryze.db-shm", "events.db", "events.db-wal", "events.db-shm"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_store_made_by_an_earlier_version_is_restricted_on_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).unwrap());
        for file in ["ryze.db", "ryze.db-wal", "ryze.db-shm"] {
            let path = dir.path().join(file);
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        drop(open(dir.path()).unwrap());
        for file in ["ryze.db", "ryze.db-wal", "ryze.db-shm"] {
            let path = dir.path().join(file);
            if path.exists() {
                assert_eq!(mode(&path), 0o600, "{file}");
            }
        }
    }

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
