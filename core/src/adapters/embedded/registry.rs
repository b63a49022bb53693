//! The instance registry on a local SQLite file.
//!
//! SQLite is the durable truth. Instances are also held in memory, loaded at open and updated after
//! every committed write, because `list` and every authenticated request read them: this process is
//! their only writer (the CLI writes accounts only, which are always read from SQLite, so an account
//! added while the server runs is seen at once). Writes run on the blocking pool behind one writer
//! lock, so a read-modify-write of an instance cannot lose a concurrent one.
//!
//! Every authenticated request resolves a token and reads its account, so both are cached too. A
//! token's owner never changes (an instance token goes only when its instance is deleted, here), so
//! token entries live until then. Accounts may be changed by the CLI from another process, so an
//! account entry is trusted for [`ACCOUNT_TTL`] only; a miss always reads SQLite, so an account
//! created by the CLI works at once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::domain::{
    Account, AccountId, AccountLimits, ConnectOutcome, ConnectRequest, ConnectRequestId, Instance,
    InstanceChange, InstanceId, InstanceName,
};
use crate::ports::{InstanceRegistry, TokenOwner};
use crate::secrets::TokenHash;
use crate::{Error, Result};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, owner TEXT NOT NULL, instance_id TEXT);
    CREATE INDEX IF NOT EXISTS tokens_by_instance ON tokens (instance_id);
    CREATE TABLE IF NOT EXISTS instances (
        id TEXT PRIMARY KEY, account_id TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL,
        UNIQUE (account_id, name));
    CREATE TABLE IF NOT EXISTS connect_requests (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS hosts (id TEXT PRIMARY KEY, epoch INTEGER NOT NULL, doc TEXT);
    CREATE TABLE IF NOT EXISTS leases (instance_id TEXT PRIMARY KEY, host TEXT, fence INTEGER NOT NULL, doc TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS leases_by_host ON leases (host);
";

/// How long an account read from SQLite is served from memory: the delay for a limit change made by
/// the CLI to reach a running server.
pub const ACCOUNT_TTL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct FileRegistry {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    path: std::path::PathBuf,
    /// Idle connections; readers take one, writers hold `writer` as well.
    pool: Mutex<Vec<Connection>>,
    writer: Mutex<()>,
    index: RwLock<InstanceIndex>,
    tokens: RwLock<HashMap<TokenHash, TokenOwner>>,
    accounts: RwLock<HashMap<AccountId, (Instant, Account)>>,
}

#[derive(Default)]
struct InstanceIndex {
    by_id: HashMap<InstanceId, Arc<Instance>>,
    by_account: HashMap<AccountId, BTreeMap<InstanceName, InstanceId>>,
}

impl InstanceIndex {
    fn put(&mut self, instance: Arc<Instance>) {
        self.by_account
            .entry(instance.account_id.clone())
            .or_default()
            .insert(instance.name.clone(), instance.id.clone());
        self.by_id.insert(instance.id.clone(), instance);
    }

    fn remove(&mut self, id: &InstanceId) -> Option<Arc<Instance>> {
        let instance = self.by_id.remove(id)?;
        if let Some(names) = self.by_account.get_mut(&instance.account_id) {
            names.remove(&instance.name);
        }
        Some(instance)
    }
}

pub(super) fn storage(error: impl Into<crate::error::BoxError>) -> Error {
    Error::storage(error)
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(storage)
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(storage)
}

impl FileRegistry {
    /// Opens the database at `path`, creating it and its schema if needed.
    pub fn open(path: &Path) -> Result<Self> {
        super::restrict_database(path)?;
        let connection = Self::connect(path)?;
        connection.execute_batch(SCHEMA).map_err(storage)?;
        let mut index = InstanceIndex::default();
        {
            let mut statement = connection.prepare("SELECT doc FROM instances").map_err(storage)?;
            let docs = statement.query_map([], |row| row.get::<_, String>(0)).map_err(storage)?;
            for doc in docs {
                index.put(Arc::new(from_json(&doc.map_err(storage)?)?));
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                pool: Mutex::new(vec![connection]),
                writer: Mutex::new(()),
                index: RwLock::new(index),
                tokens: RwLock::default(),
                accounts: RwLock::default(),
            }),
        })
    }

    fn connect(path: &Path) -> Result<Connection> {
        let connection = Connection::open(path).map_err(storage)?;
        connection.busy_timeout(std::time::Duration::from_secs(10)).map_err(storage)?;
        connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(storage)?;
        Ok(connection)
    }
}

impl Inner {
    /// Runs `f` on a pooled connection. Reads are point lookups of microseconds, so they run inline.
    pub(super) fn with_connection<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = self.pool.lock().map_err(|_| storage("pool poisoned"))?.pop();
        let mut connection = match pooled {
            Some(connection) => connection,
            None => FileRegistry::connect(&self.path)?,
        };
        let result = f(&mut connection);
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(connection);
        }
        result
    }

    /// Reads the one JSON column `sql` selects for `key`.
    fn read_json<T: serde::de::DeserializeOwned>(&self, sql: &str, key: &str) -> Result<Option<T>> {
        self.with_connection(|connection| {
            let text: Option<String> = connection
                .prepare_cached(sql)
                .and_then(|mut statement| statement.query_row([key], |row| row.get(0)).optional())
                .map_err(storage)?;
            text.map(|t| from_json(&t)).transpose()
        })
    }

    fn index(&self) -> Result<std::sync::RwLockReadGuard<'_, InstanceIndex>> {
        self.index.read().map_err(|_| storage("index poisoned"))
    }
}

impl FileRegistry {
    /// Runs a write on the blocking pool, one at a time; `f` may update the index after committing.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _writer = inner.writer.lock().map_err(|_| storage("writer poisoned"))?;
            inner.with_connection(|connection| f(connection, &inner))
        })
        .await
        .map_err(storage)?
    }
}

/// Applies `change` to the instance in SQLite and in memory; the caller holds the writer lock.
pub(super) fn apply_change(
    connection: &Connection,
    inner: &Inner,
    id: &InstanceId,
    change: InstanceChange,
    at: DateTime<Utc>,
) -> Result<Arc<Instance>> {
    let current = inner.index()?.by_id.get(id).cloned().ok_or(Error::InstanceNotFound)?;
    let mut updated = Instance::clone(&current);
    updated.apply(change, at);
    connection
        .execute("UPDATE instances SET doc = ?2 WHERE id = ?1", params![id.as_str(), to_json(&updated)?])
        .map_err(storage)?;
    let updated = Arc::new(updated);
    write_index(&inner.index)?.put(updated.clone());
    Ok(updated)
}

fn write_index(index: &RwLock<InstanceIndex>) -> Result<std::sync::RwLockWriteGuard<'_, InstanceIndex>> {
    index.write().map_err(|_| storage("index poisoned"))
}

#[async_trait]
impl InstanceRegistry for FileRegistry {
    async fn insert_account(&self, account: &Account) -> Result<()> {
        let account = account.clone();
        self.write(move |connection, _| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let owner = to_json(&TokenOwner::Account { account: account.id.clone() })?;
            tx.execute(
                "INSERT INTO tokens (hash, owner, instance_id) VALUES (?1, ?2, NULL)",
                params![account.token_hash.as_str(), owner],
            )
            .map_err(storage)?;
            tx.execute(
                "INSERT INTO accounts (id, doc) VALUES (?1, ?2)",
                params![account.id.as_str(), to_json(&account)?],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)
        })
        .await
    }

    async fn update_account_limits(&self, id: &AccountId, limits: AccountLimits) -> Result<Account> {
        let id = id.clone();
        self.write(move |connection, inner| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let doc: Option<String> = tx
                .query_row("SELECT doc FROM accounts WHERE id = ?1", [id.as_str()], |row| row.get(0))
                .optional()
                .map_err(storage)?;
            let mut account: Account = from_json(&doc.ok_or(Error::AccountNotFound)?)?;
            account.limits = limits;
            tx.execute(
                "UPDATE accounts SET doc = ?2 WHERE id = ?1",
                params![id.as_str(), to_json(&account)?],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)?;
            if let Ok(mut cache) = inner.accounts.write() {
                cache.insert(account.id.clone(), (Instant::now(), account.clone()));
            }
            Ok(account)
        })
        .await
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>> {
        if let Some((read_at, account)) = self.inner.accounts.read().ok().and_then(|a| a.get(id).cloned())
            && read_at.elapsed() < ACCOUNT_TTL
        {
            return Ok(Some(account));
        }
        let account: Option<Account> =
            self.inner.read_json("SELECT doc FROM accounts WHERE id = ?1", id.as_str())?;
        if let (Some(account), Ok(mut cache)) = (&account, self.inner.accounts.write()) {
            cache.insert(id.clone(), (Instant::now(), account.clone()));
        }
        Ok(account)
    }

    async fn token_owner(&self, hash: &TokenHash) -> Result<Option<TokenOwner>> {
        if let Some(owner) = self.inner.tokens.read().ok().and_then(|t| t.get(hash).cloned()) {
            return Ok(Some(owner));
        }
        let owner: Option<TokenOwner> =
            self.inner.read_json("SELECT owner FROM tokens WHERE hash = ?1", hash.as_str())?;
        if let (Some(owner), Ok(mut cache)) = (&owner, self.inner.tokens.write()) {
            cache.insert(hash.clone(), owner.clone());
        }
        Ok(owner)
    }

    async fn insert_instance(&self, instance: &Instance, quota: u32) -> Result<()> {
        let instance = Arc::new(instance.clone());
        self.write(move |connection, inner| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let (account, name) = (instance.account_id.as_str(), instance.name.as_str());
            let name_taken: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM instances WHERE account_id = ?1 AND name = ?2)",
                    params![account, name],
                    |row| row.get(0),
                )
                .map_err(storage)?;
            if name_taken {
                return Err(Error::InstanceExists(instance.name.clone()));
            }
            let token_taken: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM tokens WHERE hash = ?1)",
                    [instance.token_hash.as_str()],
                    |row| row.get(0),
                )
                .map_err(storage)?;
            if token_taken {
                return Err(Error::TokenInUse);
            }
            let held: u32 = tx
                .query_row("SELECT COUNT(*) FROM instances WHERE account_id = ?1", [account], |row| {
                    row.get(0)
                })
                .map_err(storage)?;
            if held >= quota {
                return Err(Error::QuotaExceeded);
            }
            let owner = to_json(&TokenOwner::Instance {
                account: instance.account_id.clone(),
                instance: instance.id.clone(),
            })?;
            tx.execute(
                "INSERT INTO tokens (hash, owner, instance_id) VALUES (?1, ?2, ?3)",
                params![instance.token_hash.as_str(), owner, instance.id.as_str()],
            )
            .map_err(storage)?;
            tx.execute(
                "INSERT INTO instances (id, account_id, name, doc) VALUES (?1, ?2, ?3, ?4)",
                params![instance.id.as_str(), account, name, to_json(&*instance)?],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)?;
            write_index(&inner.index)?.put(instance);
            Ok(())
        })
        .await
    }

    async fn instance(&self, id: &InstanceId) -> Result<Option<Arc<Instance>>> {
        Ok(self.inner.index()?.by_id.get(id).cloned())
    }

    async fn instance_by_name(
        &self,
        account: &AccountId,
        name: &InstanceName,
    ) -> Result<Option<Arc<Instance>>> {
        let index = self.inner.index()?;
        let id = index.by_account.get(account).and_then(|names| names.get(name));
        Ok(id.and_then(|id| index.by_id.get(id)).cloned())
    }

    async fn instances(&self, account: &AccountId) -> Result<Vec<Arc<Instance>>> {
        let index = self.inner.index()?;
        let Some(names) = index.by_account.get(account) else {
            return Ok(Vec::new());
        };
        Ok(names.values().filter_map(|id| index.by_id.get(id).cloned()).collect())
    }

    async fn update_instance(
        &self,
        id: &InstanceId,
        change: InstanceChange,
        at: DateTime<Utc>,
    ) -> Result<Arc<Instance>> {
        let id = id.clone();
        self.write(move |connection, inner| apply_change(connection, inner, &id, change, at)).await
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<()> {
        let id = id.clone();
        self.write(move |connection, inner| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            tx.execute("DELETE FROM tokens WHERE instance_id = ?1", [id.as_str()]).map_err(storage)?;
            tx.execute("DELETE FROM instances WHERE id = ?1", [id.as_str()]).map_err(storage)?;
            tx.commit().map_err(storage)?;
            let removed = write_index(&inner.index)?.remove(&id);
            if let (Some(instance), Ok(mut tokens)) = (removed, inner.tokens.write()) {
                tokens.remove(&instance.token_hash);
            }
            Ok(())
        })
        .await
    }

    async fn put_connect_request(&self, request: &ConnectRequest) -> Result<()> {
        let (id, doc) = (request.id.clone(), to_json(request)?);
        self.write(move |connection, _| {
            connection
                .execute(
                    "INSERT OR REPLACE INTO connect_requests (id, doc) VALUES (?1, ?2)",
                    params![id.as_str(), doc],
                )
                .map(drop)
                .map_err(storage)
        })
        .await
    }

    async fn connect_request(&self, id: &ConnectRequestId) -> Result<Option<ConnectRequest>> {
        self.inner.read_json("SELECT doc FROM connect_requests WHERE id = ?1", id.as_str())
    }

    async fn answer_connect_request(&self, id: &ConnectRequestId, outcome: ConnectOutcome) -> Result<()> {
        let id = id.clone();
        self.write(move |connection, _| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let doc: Option<String> = tx
                .query_row("SELECT doc FROM connect_requests WHERE id = ?1", [id.as_str()], |row| row.get(0))
                .optional()
                .map_err(storage)?;
            let Some(doc) = doc else { return Ok(()) };
            let mut request: ConnectRequest = from_json(&doc)?;
            request.outcome = Some(outcome);
            tx.execute(
                "UPDATE connect_requests SET doc = ?2 WHERE id = ?1",
                params![id.as_str(), to_json(&request)?],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)
        })
        .await
    }

    async fn delete_connect_request(&self, id: &ConnectRequestId) -> Result<()> {
        let id = id.clone();
        self.write(move |connection, _| {
            connection
                .execute("DELETE FROM connect_requests WHERE id = ?1", [id.as_str()])
                .map(drop)
                .map_err(storage)
        })
        .await
    }
}
