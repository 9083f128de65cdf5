//! The SQLite ingest writer: the group commit of new instances on a connection of its own,
//! through rusqlite's cached prepared statements, on the writer's own thread.
//!
//! The same statements and values as the sqlx path ([`super::write`]), without its costs on
//! the hottest path: sqlx runs each SQLite statement on a worker thread and hands arguments
//! and rows across a channel, about a quarter of the server's CPU time per stored instance.
//! Only the common case runs here: a batch of instances that are all new. Anything else (a
//! duplicate, a failed statement, a blob that did not become durable) is handed back, with
//! nothing written, for [`super::Index::insert_batch_completed`] to finish with its per-op
//! savepoints and duplicate policies.

use std::future::Future;
use std::path::{Path, PathBuf};

use rusqlite::types::ToSqlOutput;
use rusqlite::{Connection, OpenFlags, ToSql, TransactionBehavior};

use super::write::{
    INSERT_INSTANCE, Param, SET_SHA256, UPSERT_PATIENT, UPSERT_SERIES, UPSERT_STUDY,
    instance_params, patient_params, series_params, sha256_params, study_params,
};
use super::{InsertOp, InsertOutcome, settle};
use crate::StoreError;

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Str(s) => ToSqlOutput::from(*s),
            Param::Owned(s) => ToSqlOutput::from(s.as_str()),
            Param::Int(i) => ToSqlOutput::from(*i),
        })
    }
}

/// Why a batch left the direct path, rolled back: the sqlx path finishes it.
pub enum Handoff<F> {
    /// Before waiting for the blobs: here is the wait, still to do.
    Pending(F),
    /// After: what the wait gave.
    Done(Vec<Option<String>>),
}

/// The writer's own connection to the index's SQLite file.
pub struct DirectWriter {
    conn: Connection,
    path: PathBuf,
}

impl DirectWriter {
    /// Open the index file (already created and migrated by [`super::Index::open`]) with the
    /// same durability settings as the pool: WAL (a property of the file), full sync.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let fail = |e: rusqlite::Error| {
            StoreError::Database(format!("open {} for ingest: {e}", path.display()))
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA busy_timeout = 30000; \
             PRAGMA case_sensitive_like = ON; PRAGMA cache_size = -16000",
        )
        .map_err(fail)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "{} is in journal mode {mode}, not WAL",
                path.display()
            )));
        }
        Ok(DirectWriter {
            conn,
            path: path.to_owned(),
        })
    }

    /// Insert `ops` (all new instances) in one transaction while `done` resolves (see
    /// [`super::Index::insert_batch_completed`]: one completion per op, `Some` once its blob
    /// is durable, with its SHA-256 if the op came without one), then set the late hashes
    /// and commit. `block_on` runs the wait.
    pub fn insert_batch<F>(
        &mut self,
        ops: &[InsertOp],
        done: F,
        block_on: impl FnOnce(F) -> Vec<Option<String>>,
    ) -> Result<Vec<Result<InsertOutcome, StoreError>>, Handoff<F>>
    where
        F: Future<Output = Vec<Option<String>>>,
    {
        let Ok(tx) = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        else {
            return Err(Handoff::Pending(done));
        };
        for op in ops {
            if let Err(e) = insert_new(&tx, op) {
                if let Some(e) = e {
                    tracing::debug!(error = %e, "direct insert handed to the sqlx path");
                }
                return Err(Handoff::Pending(done)); // dropping `tx` rolls back
            }
        }
        let done = settle(ops, block_on(done));
        if done.len() != ops.len() || done.iter().any(Option::is_none) {
            return Err(Handoff::Done(done));
        }
        for (op, sha) in ops.iter().zip(&done) {
            if let Some(sha) = sha.as_deref().filter(|s| !s.is_empty())
                && let Err(e) = run(&tx, SET_SHA256, &sha256_params(op, sha))
            {
                tracing::warn!(error = %e, "setting an instance's SHA-256 failed");
                return Err(Handoff::Done(done));
            }
        }
        if let Err(e) = tx.commit() {
            tracing::warn!(error = %e, path = %self.path.display(), "ingest commit failed");
            return Err(Handoff::Done(done));
        }
        Ok(ops.iter().map(|_| Ok(InsertOutcome::Inserted)).collect())
    }
}

/// Insert a new instance and count up its parents. `Err(None)`: it is already stored.
fn insert_new(conn: &Connection, op: &InsertOp) -> Result<(), Option<rusqlite::Error>> {
    if run(conn, INSERT_INSTANCE, &instance_params(op)).map_err(Some)? != 1 {
        return Err(None);
    }
    let new_series = count(conn, UPSERT_SERIES, &series_params(op)).map_err(Some)? == 1;
    let new_study = count(conn, UPSERT_STUDY, &study_params(op, new_series)).map_err(Some)? == 1;
    run(
        conn,
        UPSERT_PATIENT,
        &patient_params(op, new_study, new_series),
    )
    .map_err(Some)?;
    Ok(())
}

/// The cached statement for `sql` with `params` bound: `$N` is `params[N - 1]`, wherever it
/// appears (SQLite numbers `$N` parameters in order of first appearance, not by N).
fn bound<'c>(
    conn: &'c Connection,
    sql: &str,
    params: &[Param<'_>],
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(sql)?;
    for i in 1..=stmt.parameter_count() {
        let n = stmt
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(i);
        let value = n
            .checked_sub(1)
            .and_then(|k| params.get(k))
            .ok_or(rusqlite::Error::InvalidParameterCount(n, params.len()))?;
        stmt.raw_bind_parameter(i, value)?;
    }
    Ok(stmt)
}

fn run(conn: &Connection, sql: &str, params: &[Param<'_>]) -> rusqlite::Result<usize> {
    bound(conn, sql, params)?.raw_execute()
}

fn count(conn: &Connection, sql: &str, params: &[Param<'_>]) -> rusqlite::Result<i64> {
    let mut stmt = bound(conn, sql, params)?;
    let mut rows = stmt.raw_query();
    match rows.next()? {
        Some(row) => row.get(0),
        None => Err(rusqlite::Error::QueryReturnedNoRows),
    }
}
