//! The one writer of the SQLite store.
//!
//! SQLite takes one writer at a time, so every write of the store runs on one thread
//! of its own, on one rusqlite connection whose statements are prepared once. Writes
//! queue for it; whatever is waiting when the thread is free goes into one transaction
//! (group commit), each write in a savepoint of its own, in arrival order, and one
//! `fsync` makes the group durable before any of its writes is answered. Under load
//! many writes share a sync; alone, a write commits at once. A write that fails is
//! rolled back to its savepoint and fails alone.
//!
//! Statements run synchronously on this thread: through sqlx's driver, each statement
//! was a hand-off to a worker thread and back, which cost more than the statement.

use crate::domain::ports::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most writes committed by one transaction.
const GROUP_MAX: usize = 256;

/// Statements kept prepared: every statement the store writes with, some formatted
/// per variant, fits.
const PREPARED_STATEMENTS: usize = 256;

/// A queued write, run on the writer's thread; it answers its caller once the group's
/// commit has succeeded or failed.
type Job = Box<dyn FnOnce(&Connection) -> Ran + Send>;

/// A write that ran: whether it failed (and so was rolled back), and its answer, to
/// send once the commit is known.
struct Ran {
    failed: bool,
    answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Opens the database at `path` for writing and starts the writer's thread; `memory`
    /// for a database kept in memory under that name (shared with the store's readers).
    pub(super) fn open(path: &Path, memory: bool) -> Result<Self, StoreError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if memory {
            flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
        }
        let connection = Connection::open_with_flags(path, flags)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        // The journal is WAL already (set when the store opened); these last for the
        // connection only. Its page cache (8 MiB) keeps the pages writes come back to.
        connection.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -8192;",
        )?;
        connection.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
        let (jobs, queue) = mpsc::channel(GROUP_MAX * 4);
        std::thread::Builder::new()
            .name("walleot-writer".into())
            .spawn(move || serve(connection, queue))
            .map_err(|e| StoreError::Database(format!("starting the writer: {e}")))?;
        Ok(Writer { jobs })
    }

    /// Runs `write` in the writer's next transaction and answers once that is committed:
    /// its own result, or the commit's failure. An error from `write` rolls back what it
    /// wrote and nothing else.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let result = write(db);
            Ran {
                failed: result.is_err(),
                answer: Box::new(move |commit| {
                    let _ = done.send(commit.and(result));
                }),
            }
        });
        let stopped = || StoreError::WriteFailed("the writer has stopped".into());
        self.jobs.send(job).await.map_err(|_| stopped())?;
        // A write dropped unanswered was part of a transaction that failed before it ran.
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::WriteFailed(
                "not written: the transaction it was queued for failed".into(),
            ))
        })
    }
}

/// The writer's thread: groups of queued writes, one transaction each, until the store
/// is dropped.
fn serve(db: Connection, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let mut ran = Vec::with_capacity(group.len());
        let committed = commit_group(&db, group, &mut ran);
        if committed.is_err() && !db.is_autocommit() {
            if let Err(e) = db.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "the writer could not roll back a failed group");
            }
        }
        let commit = committed.map_err(|e| e.to_string());
        for write in ran {
            (write.answer)(commit.clone().map_err(StoreError::WriteFailed));
        }
    }
}

/// Runs a group in one transaction, each write in a savepoint; the writes that ran go
/// to `ran` whatever happens, so that each is answered.
fn commit_group(db: &Connection, group: Vec<Job>, ran: &mut Vec<Ran>) -> rusqlite::Result<()> {
    let run = |sql: &str| db.prepare_cached(sql)?.execute([]).map(drop);
    // A transaction left open by a group whose rollback failed would make every later
    // BEGIN fail: it is ended first.
    if !db.is_autocommit() {
        if let Err(e) = db.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "the writer could not end a failed transaction");
        }
    }
    run("BEGIN IMMEDIATE")?;
    for job in group {
        run("SAVEPOINT write")?;
        // A write that panics fails alone: its answer is dropped, which tells its caller.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(db))) {
            Ok(write) => {
                let failed = write.failed;
                ran.push(write);
                if failed {
                    run("ROLLBACK TO write")?;
                }
            }
            Err(_) => run("ROLLBACK TO write")?,
        }
        run("RELEASE write")?;
    }
    run("COMMIT")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let path = dir.path().join("writer.db");
        let db = Connection::open(&path).unwrap();
        db.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER PRIMARY KEY);")
            .unwrap();
        path
    }

    fn count(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    /// A job inserting `n`, then failing if `fail`; its answer goes to the channel.
    fn insert(n: i64, fail: bool, answers: std::sync::mpsc::Sender<(i64, bool)>) -> Job {
        Box::new(move |db| {
            let result = db
                .execute("INSERT INTO t (n) VALUES (?)", [n])
                .map_err(StoreError::from)
                .and_then(|_| match fail {
                    true => Err(StoreError::Database("refused".into())),
                    false => Ok(()),
                });
            Ran {
                failed: result.is_err(),
                answer: Box::new(move |commit| {
                    let _ = answers.send((n, commit.and(result).is_ok()));
                }),
            }
        })
    }

    #[test]
    fn a_failing_write_in_a_group_is_rolled_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(&dir);
        let db = Connection::open(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let group = vec![
            insert(1, false, tx.clone()),
            insert(2, true, tx.clone()),
            insert(3, false, tx.clone()),
        ];
        let mut ran = Vec::new();
        commit_group(&db, group, &mut ran).unwrap();
        assert_eq!(ran.len(), 3);
        for write in ran {
            (write.answer)(Ok(()));
        }
        let answers: Vec<_> = rx.try_iter().collect();
        assert_eq!(answers, vec![(1, true), (2, false), (3, true)]);
        let kept: Vec<i64> = db
            .prepare("SELECT n FROM t ORDER BY n")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, vec![1, 3]);
    }

    #[test]
    fn a_transaction_left_open_is_ended_before_the_next_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(&dir);
        let db = Connection::open(&path).unwrap();
        db.execute_batch("BEGIN; INSERT INTO t (n) VALUES (1);")
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut ran = Vec::new();
        commit_group(&db, vec![insert(2, false, tx)], &mut ran).unwrap();
        for write in ran {
            (write.answer)(Ok(()));
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![(2, true)]);
        assert_eq!(count(&path), 1);
    }

    #[tokio::test]
    async fn a_write_that_panics_fails_alone_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(&dir);
        let writer = Writer::open(&path, false).unwrap();
        let panicked = writer
            .run(|db| -> Result<(), StoreError> {
                db.execute("INSERT INTO t (n) VALUES (1)", [])?;
                panic!("a bug in a write")
            })
            .await;
        assert!(matches!(panicked, Err(StoreError::WriteFailed(_))));
        let written = writer
            .run(|db| Ok(db.execute("INSERT INTO t (n) VALUES (2)", [])?))
            .await;
        assert_eq!(written.unwrap(), 1);
        assert_eq!(count(&path), 1);
    }

    #[tokio::test]
    async fn an_answer_comes_only_once_its_write_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(&dir);
        let writer = Writer::open(&path, false).unwrap();
        let writes: Vec<_> = (0..50)
            .map(|n| writer.run(move |db| Ok(db.execute("INSERT INTO t (n) VALUES (?)", [n])?)))
            .collect();
        for written in futures::future::join_all(writes).await {
            assert_eq!(written.unwrap(), 1);
        }
        // Another connection sees every answered write.
        assert_eq!(count(&path), 50);
        let duplicate = writer
            .run(|db| Ok(db.execute("INSERT INTO t (n) VALUES (7)", [])?))
            .await;
        assert!(matches!(duplicate, Err(StoreError::Database(_))));
        assert_eq!(count(&path), 50);
    }
}
