//! The thread that owns `events.db`'s connection and commits the work of many callers at once.
//!
//! Every call on the events database (a send, an acknowledgement, a delivery record) is a job sent
//! to this thread. The thread takes every job waiting, runs them in one transaction, each inside its
//! own savepoint so that a job that fails is undone alone, commits once, and only then answers each
//! caller. A write is committed before its call returns, as with a commit per call, but a hundred
//! concurrent writes cost one commit instead of a hundred; and SQLite's work runs here, never on an
//! async worker that a statement waiting on a mutex would block.
//!
//! It knows nothing of queues or records: jobs are closures over the connection.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::{Error, Result};

/// Jobs waiting beyond this make their callers wait to hand theirs over.
const WAITING_JOBS: usize = 4096;
/// The most jobs in one transaction: bounds how long the first of them waits for its answer.
const JOBS_PER_COMMIT: usize = 1024;

/// One caller's work and the way back to it.
trait Job: Send {
    /// Runs the work inside the transaction; whether it succeeded (else its savepoint is undone).
    fn run(&mut self, connection: &Connection) -> bool;
    /// Answers the caller once the transaction has ended (`Ok` if it committed); a job that never
    /// ran is answered with the transaction's error.
    fn answer(self: Box<Self>, ended: std::result::Result<(), &str>);
}

struct Call<T, W> {
    work: Option<W>,
    outcome: Option<rusqlite::Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, W> Job for Call<T, W>
where
    T: Send,
    W: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, connection: &Connection) -> bool {
        let outcome = self.work.take().map(|work| work(connection));
        let succeeded = matches!(outcome, Some(Ok(_)));
        self.outcome = outcome;
        succeeded
    }

    fn answer(self: Box<Self>, ended: std::result::Result<(), &str>) {
        let result = match (self.outcome, ended) {
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Err(error)), _) => Err(Error::storage(error)),
            (_, Err(why)) => Err(Error::storage(why.to_owned())),
            (None, Ok(())) => Err(Error::storage("a job was answered without running")),
        };
        // A caller that is gone drops the result here.
        let _ = self.reply.send(result);
    }
}

/// Work nobody waits for.
struct Detached<W>(Option<W>);

impl<W: FnOnce(&Connection) + Send> Job for Detached<W> {
    fn run(&mut self, connection: &Connection) -> bool {
        if let Some(work) = self.0.take() {
            work(connection);
        }
        true
    }

    fn answer(self: Box<Self>, _: std::result::Result<(), &str>) {}
}

/// A handle to the thread. Cheap to clone; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct GroupCommit {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

fn stopped() -> Error {
    Error::storage("the events.db thread stopped")
}

impl GroupCommit {
    /// Moves `connection` to a new thread, named `name`.
    pub(super) fn start(connection: Connection, name: &str) -> Result<Self> {
        let (jobs, waiting) = mpsc::channel(WAITING_JOBS);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(&connection, waiting))
            .map_err(Error::storage)?;
        Ok(Self { jobs })
    }

    /// Runs `work` in the next transaction and returns its result once that transaction has
    /// committed. Dropping the returned future does not undo the work; a result nobody takes is
    /// dropped, so work to be undone then (a receive's hidden messages) undoes itself on drop.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let job = Call { work: Some(work), outcome: None, reply };
        self.jobs.send(Box::new(job)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Queues `work` for the next transaction without waiting for it; `false` when the thread has
    /// stopped or too many jobs wait already. For use where nothing can await, as in a `Drop`.
    pub(super) fn detach(&self, work: impl FnOnce(&Connection) + Send + 'static) -> bool {
        self.jobs.try_send(Box::new(Detached(Some(work)))).is_ok()
    }
}

fn run(connection: &Connection, mut waiting: mpsc::Receiver<Box<dyn Job>>) {
    while let Some(first) = waiting.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < JOBS_PER_COMMIT {
            match waiting.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit(connection, batch);
    }
}

/// Runs `batch` in as few transactions as it takes (one, unless SQLite abandons a transaction
/// midway, as it may on a full disk), answering each job once its transaction has ended.
fn commit(connection: &Connection, batch: Vec<Box<dyn Job>>) {
    let mut jobs = batch.into_iter().peekable();
    while jobs.peek().is_some() {
        // IMMEDIATE: a transaction that read first and wrote later could find another process's
        // commit in between and fail without waiting, where taking the write lock first waits.
        if let Err(error) = execute(connection, "BEGIN IMMEDIATE") {
            let why = error.to_string();
            for job in jobs {
                job.answer(Err(&why));
            }
            return;
        }
        let mut ran = Vec::new();
        let mut abandoned = None;
        for mut job in jobs.by_ref() {
            if let Err(error) = execute(connection, "SAVEPOINT job") {
                abandoned = Some(error.to_string());
                ran.push(job);
                break;
            }
            let succeeded = job.run(connection);
            ran.push(job);
            let closed = if succeeded {
                execute(connection, "RELEASE job")
            } else {
                execute(connection, "ROLLBACK TO job").and_then(|()| execute(connection, "RELEASE job"))
            };
            if let Err(error) = closed {
                abandoned = Some(error.to_string());
                break;
            }
            if connection.is_autocommit() {
                abandoned = Some("SQLite rolled the transaction back".to_owned());
                break;
            }
        }
        let ended = match abandoned {
            None => execute(connection, "COMMIT").map_err(|error| error.to_string()),
            Some(why) => Err(why),
        };
        if ended.is_err() && !connection.is_autocommit() {
            let _ = execute(connection, "ROLLBACK");
        }
        let ended = ended.as_ref().map(drop).map_err(String::as_str);
        for job in ran {
            job.answer(ended);
        }
    }
}

fn execute(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread() -> (tempfile::TempDir, GroupCommit) {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("t.db")).unwrap();
        connection.execute_batch("CREATE TABLE t (n INTEGER UNIQUE)").unwrap();
        (dir, GroupCommit::start(connection, "test-db").unwrap())
    }

    fn count(connection: &Connection) -> rusqlite::Result<i64> {
        connection.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
    }

    #[tokio::test]
    async fn a_failing_job_is_undone_alone() {
        let (_dir, db) = thread();
        let calls = (0..50).map(|n| {
            let db = db.clone();
            tokio::spawn(async move {
                db.call(move |c| {
                    c.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                    // Every tenth job fails after its first write: that write must go too.
                    if n % 10 == 0 {
                        c.execute("INSERT INTO t (n) VALUES (?1)", [n]).map(drop)
                    } else {
                        Ok(())
                    }
                })
                .await
            })
        });
        let mut failed = 0;
        for call in calls.collect::<Vec<_>>() {
            failed += usize::from(call.await.unwrap().is_err());
        }
        assert_eq!(failed, 5);
        assert_eq!(db.call(count).await.unwrap(), 45);
    }

    #[tokio::test]
    async fn detached_work_runs() {
        let (_dir, db) = thread();
        assert!(db.detach(|c| drop(c.execute("INSERT INTO t (n) VALUES (1)", []))));
        // Jobs run in the order handed over: the count comes after the insert.
        assert_eq!(db.call(count).await.unwrap(), 1);
    }
}
