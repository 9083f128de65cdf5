//! The index on sqlx: SQLite (WAL) by default, PostgreSQL when the URL says so. The same
//! migrations and the same queries run on both (`Any` driver, portable SQL).
//!
//! **Invariant:** every statement filters on `tenant_id`, which callers pass first.
//! **Invariant:** study/series/patient counters and `ModalitiesInStudy` are maintained by the
//! write path (inserts increment, deletions recompute), never computed per query.

//!
//! `sql` builds the matching SQL from typed queries; `write` is the insert/delete path;
//! `annotations` keeps the viewer's per-user, per-study documents.

mod annotations;
mod browse;
mod correct;
pub mod direct;
mod privacy;
mod sql;
mod write;

pub use annotations::AnnotationDoc;
pub use correct::PatientIdentity;
pub use privacy::LegalHold;

pub use browse::{
    InstanceSummary, MAX_FILTER_SCAN, Page, PatientSummary, SeriesSummary, StudyAccess,
    StudyFilter, StudySort, StudySummary,
};

use radris_core::TenantId;
use radris_core::config::DuplicatePolicy;
use radris_dicom::attrs::IndexAttributes;
use radris_dicom::query::{FindQuery, QueryLevel};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Executor, Row};

use crate::StoreError;
use crate::schema::MIGRATIONS;
pub use sql::COMPUTED_KEYS;
use sql::{COLUMNS, Sql, bind_all, from_clause, order_clause, post_filter, where_clause};
use write::{insert_one, recompute, set_sha256};

/// An open write transaction and the outcome of each op inserted in it.
type InsertedInTx<'c> = (
    sqlx::Transaction<'c, sqlx::Any>,
    Vec<Result<InsertOutcome, StoreError>>,
);

/// Which database an index runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The index of patients, studies, series and instances.
#[derive(Clone)]
pub struct Index {
    pool: AnyPool,
    backend: Backend,
    url: String,
}

/// A matched entity of a find.
#[derive(Debug, Clone, Default)]
pub struct FindRow {
    /// DICOM JSON of the entity (for studies and series: of their first instance).
    pub header_json: String,
    pub num_studies: i64,
    pub num_series: i64,
    pub num_instances: i64,
    /// `ModalitiesInStudy` values.
    pub modalities: Vec<String>,
}

/// A stored instance, as retrieval needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInstance {
    pub tenant: String,
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub blob_path: String,
    pub size_bytes: i64,
    pub sha256: String,
}

/// The write the archive asks for after a blob is sealed.
#[derive(Debug, Clone)]
pub struct InsertOp {
    pub tenant: TenantId,
    pub attrs: IndexAttributes,
    pub transfer_syntax: String,
    pub blob_id: String,
    pub blob_path: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub source_ae: String,
    pub header_json: String,
    pub policy: DuplicatePolicy,
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// Duplicate under [`DuplicatePolicy::KeepFirst`]: nothing changed.
    KeptExisting,
    /// Duplicate under [`DuplicatePolicy::Overwrite`]: the old blob must be removed.
    Replaced {
        old_blob_path: String,
    },
}

/// Which entities a deletion removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteLevel {
    Study,
    Series,
    Instance,
}

/// The completions of `ops` (see [`Index::insert_batch_completed`]), with `None` for an op
/// that would be left without a SHA-256.
fn settle(ops: &[InsertOp], done: Vec<Option<String>>) -> Vec<Option<String>> {
    done.into_iter()
        .zip(ops)
        .map(|(d, op)| d.filter(|sha| !sha.is_empty() || !op.sha256.is_empty()))
        .collect()
}

/// The SQLite file behind a `sqlite:` URL; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = opts.get_filename();
    (path != std::path::Path::new(":memory:") && !path.as_os_str().is_empty())
        .then(|| path.to_owned())
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The columns [`stored_instance`] reads, in its order (instances aliased `i`).
macro_rules! stored_instance_columns {
    () => {
        "i.tenant_id, i.study_uid, i.series_uid, i.sop_uid, i.sop_class_uid, \
         i.transfer_syntax, i.blob_path, i.size_bytes, i.sha256"
    };
}

/// One connection made by hand before the pool: the pool retries a failing connect until its
/// acquire timeout and then reports only "pool timed out", hiding why (connection refused, a
/// wrong password, a damaged SQLite file).
async fn probe(url: &str, backend: Backend) -> Result<(), StoreError> {
    let attempt = async {
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        if backend == Backend::Sqlite {
            // the first statement that reads the file: "file is not a database" shows here
            conn.execute("PRAGMA journal_mode = WAL").await?;
        }
        conn.close().await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(30), attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StoreError::Database(format!(
            "cannot open the index at {}: {e}",
            redact_url(url)
        ))),
        Err(_) => Err(StoreError::Database(format!(
            "cannot open the index at {}: no answer within 30 s",
            redact_url(url)
        ))),
    }
}

/// `url` for messages: a SQLite URL whole (a path), any other only as scheme and host:
/// credentials may sit in the user part (even with an unencoded `/`) or in the query.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(database URL)".to_owned();
    };
    if scheme == "sqlite" {
        return url.to_owned();
    }
    // everything up to the last '@' is the user part, whatever it contains
    let after_user = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = after_user.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}/…")
}

impl Index {
    /// Connect, apply pending migrations. A `sqlite://` URL gets WAL, full sync and
    /// case-sensitive LIKE (PN columns are stored upper-cased instead).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "database URL must start with sqlite:// or postgres:// (got {:?})",
                url.split(':').next().unwrap_or_default()
            )));
        };
        let url = if backend == Backend::Sqlite && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_owned()
        };
        probe(&url, backend).await?;
        let mut opts = AnyPoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            // a connection still inside a transaction is closed, never pooled: a COMMIT that
            // failed (a full disk) leaves one that would hold SQLite's write lock and refuse
            // every later BEGIN ("non-zero transaction depth")
            .after_release(|conn, _meta| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            });
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA busy_timeout = 30000; PRAGMA case_sensitive_like = ON; \
                         PRAGMA cache_size = -16000",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = opts
            .connect(&url)
            .await
            .map_err(|e| StoreError::db("connect", e))?;
        let index = Index {
            pool,
            backend,
            url: url.clone(),
        };
        index.migrate().await?;
        Ok(index)
    }

    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later gets
    /// SQLITE_BUSY at once, without waiting, when another writer (the audit log) is active.
    pub async fn begin_write<'c>(
        &self,
        conn: &'c mut sqlx::pool::PoolConnection<sqlx::Any>,
    ) -> Result<sqlx::Transaction<'c, sqlx::Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => conn.begin().await,
        };
        tx.map_err(|e| StoreError::db("begin", e))
    }

    /// The ingest's own writer on the SQLite file ([`direct`]); `None` on PostgreSQL or an
    /// in-memory database.
    pub fn direct_writer(&self) -> Option<Result<direct::DirectWriter, StoreError>> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        sqlite_file(&self.url).map(|path| direct::DirectWriter::open(&path))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| StoreError::db("acquire", e))?;
        conn.execute("CREATE TABLE IF NOT EXISTS radris_schema (version BIGINT NOT NULL)")
            .await
            .map_err(|e| StoreError::db("create radris_schema", e))?;
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM radris_schema")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| StoreError::db("read schema version", e))?;
        let current: i64 = row
            .try_get(0)
            .map_err(|e| StoreError::db("schema version", e))?;
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= current {
                continue;
            }
            let mut tx = conn
                .begin()
                .await
                .map_err(|e| StoreError::db("begin migration", e))?;
            for stmt in migration
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                tx.execute(stmt)
                    .await
                    .map_err(|e| StoreError::db(&format!("migration {version}"), e))?;
            }
            sqlx::query("INSERT INTO radris_schema (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::db("record migration", e))?;
            tx.commit()
                .await
                .map_err(|e| StoreError::db("commit migration", e))?;
            tracing::info!(version, "index migration applied");
        }
        Ok(())
    }

    /// The tenants known to the index.
    pub async fn tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        let rows = sqlx::query("SELECT tenant_id FROM tenants ORDER BY tenant_id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::db("listing tenants", e))?;
        rows.iter()
            .map(|r| {
                let t: String = r
                    .try_get("tenant_id")
                    .map_err(|e| StoreError::db("listing tenants", e))?;
                TenantId::parse(&t).map_err(|e| StoreError::Database(e.to_string()))
            })
            .collect()
    }

    /// Make sure the tenants exist.
    pub async fn ensure_tenants(&self, tenants: &[TenantId]) -> Result<(), StoreError> {
        for t in tenants {
            sqlx::query(
                "INSERT INTO tenants (tenant_id, created_at) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING",
            )
            .bind(t.as_str())
            .bind(now_millis())
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db("ensure tenant", e))?;
        }
        Ok(())
    }

    /// Entities matching a query at its level, with their headers and counters.
    pub async fn find(&self, tenant: &TenantId, q: &FindQuery) -> Result<Vec<FindRow>, StoreError> {
        Ok(self.find_page(tenant, q, 0, None).await?.0)
    }

    /// One page of a find: skip `offset` matches, return at most `limit`, and say whether
    /// more matches follow. Paging is pushed into SQL unless a key needs the header filter.
    pub async fn find_page(
        &self,
        tenant: &TenantId,
        q: &FindQuery,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<(Vec<FindRow>, bool), StoreError> {
        let level = q.level;
        let select = match level {
            QueryLevel::Patient => {
                "p.header_json, p.num_studies, p.num_series, p.num_instances, ''"
            }
            QueryLevel::Study => {
                "st.header_json, 1, st.num_series, st.num_instances, st.modalities"
            }
            QueryLevel::Series => "se.header_json, 1, 1, se.num_instances, st.modalities",
            QueryLevel::Image => "i.header_json, 1, 1, 1, st.modalities",
        };
        let mut sql = Sql {
            text: format!("SELECT {select} FROM {}", from_clause(level)),
            ..Sql::default()
        };
        let post = where_clause(&mut sql, tenant, q, level);
        sql.text.push_str(order_clause(level));
        let in_sql = post.is_empty();
        if in_sql {
            if let Some(l) = limit {
                sql.text
                    .push_str(&format!(" LIMIT {} OFFSET {offset}", l.saturating_add(1)));
            } else if offset > 0 {
                sql.text
                    .push_str(&format!(" LIMIT 9223372036854775807 OFFSET {offset}"));
            }
        }
        let rows = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(sql.text.clone())),
            &sql.args,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("find", e))?;
        let mut out = Vec::with_capacity(rows.len());
        let mut skip = if in_sql { 0 } else { offset };
        for row in rows {
            let header_json: String = row.try_get(0).map_err(|e| StoreError::db("find row", e))?;
            let modalities: String = row.try_get(4).map_err(|e| StoreError::db("find row", e))?;
            if !post_filter(&header_json, &modalities, &post) {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let get = |i: usize| -> Result<i64, StoreError> {
                row.try_get::<i64, _>(i)
                    .map_err(|e| StoreError::db("find row", e))
            };
            out.push(FindRow {
                header_json,
                num_studies: get(1)?,
                num_series: get(2)?,
                num_instances: get(3)?,
                modalities: modalities
                    .split('|')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            });
        }
        let more = limit.is_some_and(|l| out.len() as u64 > l);
        if let Some(l) = limit {
            out.truncate(usize::try_from(l).unwrap_or(usize::MAX));
        }
        Ok((out, more))
    }

    /// One stored instance of the tenant, by SOP Instance UID.
    pub async fn instance(
        &self,
        tenant: &TenantId,
        sop_uid: &str,
    ) -> Result<Option<StoredInstance>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            stored_instance_columns!(),
            " FROM instances i WHERE i.tenant_id = $1 AND i.sop_uid = $2"
        ))
        .bind(tenant.as_str())
        .bind(sop_uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("instance", e))?;
        row.as_ref().map(stored_instance).transpose()
    }

    /// The instances of a study (optionally narrowed to a series and an instance), in series
    /// and instance-number order, with their stored DICOM JSON headers when asked.
    pub async fn instances_of(
        &self,
        tenant: &TenantId,
        study_uid: &str,
        series_uid: Option<&str>,
        sop_uid: Option<&str>,
        with_headers: bool,
    ) -> Result<Vec<(StoredInstance, String)>, StoreError> {
        let mut sql = Sql {
            text: format!(
                concat!(
                    "SELECT ",
                    stored_instance_columns!(),
                    ", {} FROM instances i"
                ),
                if with_headers { "i.header_json" } else { "''" }
            ),
            ..Sql::default()
        };
        let t = sql.arg(tenant.as_str());
        let st = sql.arg(study_uid);
        sql.text
            .push_str(&format!(" WHERE i.tenant_id = {t} AND i.study_uid = {st}"));
        if let Some(se) = series_uid {
            let a = sql.arg(se);
            sql.text.push_str(&format!(" AND i.series_uid = {a}"));
        }
        if let Some(sop) = sop_uid {
            let a = sql.arg(sop);
            sql.text.push_str(&format!(" AND i.sop_uid = {a}"));
        }
        sql.text.push_str(
            " ORDER BY i.series_uid, LENGTH(i.instance_number), i.instance_number, i.sop_uid",
        );
        let rows = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(sql.text.clone())),
            &sql.args,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("instances of", e))?;
        rows.iter()
            .map(|r| {
                let h: String = r
                    .try_get(9)
                    .map_err(|e| StoreError::db("instance row", e))?;
                Ok((stored_instance(r)?, h))
            })
            .collect()
    }

    /// Instances under the entities a C-GET/C-MOVE identifier selects (its level's keys and
    /// above).
    pub async fn find_instances(
        &self,
        tenant: &TenantId,
        q: &FindQuery,
    ) -> Result<Vec<StoredInstance>, StoreError> {
        let mut sql = Sql {
            text: format!(
                concat!("SELECT ", stored_instance_columns!(), " FROM {}"),
                from_clause(QueryLevel::Image)
            ),
            ..Sql::default()
        };
        // keys below the requested level do not narrow a retrieve
        let narrowed = FindQuery {
            level: q.level,
            keys: q
                .keys
                .iter()
                .filter(|k| {
                    COLUMNS
                        .iter()
                        .find(|c| c.tag == k.tag)
                        .is_some_and(|c| c.level <= q.level)
                })
                .cloned()
                .collect(),
        };
        where_clause(&mut sql, tenant, &narrowed, QueryLevel::Image);
        sql.text.push_str(
            " ORDER BY i.study_uid, i.series_uid, LENGTH(i.instance_number), i.instance_number",
        );
        let rows = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(sql.text.clone())),
            &sql.args,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("find instances", e))?;
        rows.iter().map(stored_instance).collect()
    }

    /// Every instance (for `admin verify`), in pages.
    pub async fn all_instances(
        &self,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<StoredInstance>, StoreError> {
        let (t, s) = after.unwrap_or(("", ""));
        let rows = sqlx::query(
            "SELECT tenant_id, study_uid, series_uid, sop_uid, sop_class_uid, transfer_syntax, blob_path, size_bytes, sha256 \
             FROM instances WHERE tenant_id > $1 OR (tenant_id = $1 AND sop_uid > $2) \
             ORDER BY tenant_id, sop_uid LIMIT $3",
        )
        .bind(t)
        .bind(s)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list instances", e))?;
        rows.iter().map(stored_instance).collect()
    }

    /// The instance stored under this blob id, in any tenant (crash recovery).
    pub async fn instance_of_blob(
        &self,
        blob_id: &str,
    ) -> Result<Option<StoredInstance>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            stored_instance_columns!(),
            " FROM instances i WHERE i.blob_id = $1"
        ))
        .bind(blob_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("blob lookup", e))?;
        row.as_ref().map(stored_instance).transpose()
    }

    /// Counts of (studies, series, instances, bytes) of a tenant.
    pub async fn statistics(&self, tenant: &TenantId) -> Result<(i64, i64, i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM studies WHERE tenant_id = $1), \
                    (SELECT COUNT(*) FROM series WHERE tenant_id = $1), \
                    (SELECT COUNT(*) FROM instances WHERE tenant_id = $1), \
                    (SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM instances WHERE tenant_id = $1)",
        )
        .bind(tenant.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("statistics", e))?;
        let g = |i| {
            row.try_get::<i64, _>(i)
                .map_err(|e| StoreError::db("statistics", e))
        };
        Ok((g(0)?, g(1)?, g(2)?, g(3)?))
    }

    /// Apply a batch of inserts in one transaction (group commit). Each op runs inside a
    /// savepoint, so one failing op does not fail the others. Returns one result per op.
    pub async fn insert_batch(&self, ops: &[InsertOp]) -> Vec<Result<InsertOutcome, StoreError>> {
        let done = vec![Some(String::new()); ops.len()];
        self.insert_batch_completed(ops, std::future::ready(done))
            .await
    }

    /// [`Index::insert_batch`] for ops whose blobs are still being made durable, and whose
    /// SHA-256 may still be being computed: the rows are written meanwhile (an op may come
    /// with an empty `sha256`). `done` yields, per op in order, `None` when its blob could not
    /// be made durable, or `Some(sha256)` once it is durable: the hash of an op that came
    /// without one (set on its row before the commit), or empty when the op had it already.
    /// The transaction commits only once every op is complete; otherwise it is rolled back
    /// and the complete ones are inserted again on their own. So the committed index never
    /// references a blob that a crash could lose, nor a row without its SHA-256 (an op left
    /// without one counts as not durable).
    pub async fn insert_batch_completed(
        &self,
        ops: &[InsertOp],
        done: impl std::future::Future<Output = Vec<Option<String>>>,
    ) -> Vec<Result<InsertOutcome, StoreError>> {
        let all_failed = |ops: &[InsertOp], msg: String| {
            ops.iter()
                .map(|_| Err(StoreError::Database(msg.clone())))
                .collect()
        };
        let mut conn = match self.pool.acquire().await {
            Ok(c) => c,
            Err(e) => return all_failed(ops, format!("acquire: {e}")),
        };
        let attempt: Result<Result<_, Vec<Option<String>>>, StoreError> = async {
            let (mut tx, results) = self.insert_in(&mut conn, ops).await?;
            let done = settle(ops, done.await);
            if done.len() == ops.len() && done.iter().all(Option::is_some) {
                for ((op, sha), result) in ops.iter().zip(&done).zip(&results) {
                    let inserted = matches!(
                        result,
                        Ok(InsertOutcome::Inserted | InsertOutcome::Replaced { .. })
                    );
                    if let Some(sha) = sha.as_deref().filter(|s| inserted && !s.is_empty()) {
                        set_sha256(&mut tx, op, sha).await?;
                    }
                }
                if results.iter().any(Result::is_ok) {
                    tx.commit().await.map_err(|e| StoreError::db("commit", e))?;
                }
                Ok(Ok(results))
            } else {
                tx.rollback()
                    .await
                    .map_err(|e| StoreError::db("rollback", e))?;
                Ok(Err(done))
            }
        }
        .await;
        drop(conn);
        match attempt {
            Ok(Ok(results)) => results,
            Err(e) => all_failed(ops, e.to_string()),
            Ok(Err(done)) => {
                // rare (a failed fsync): insert the durable ones again, alone
                let keep: Vec<InsertOp> = ops
                    .iter()
                    .zip(&done)
                    .filter_map(|(op, d)| {
                        let sha = d.as_ref()?;
                        let mut op = op.clone();
                        if !sha.is_empty() {
                            op.sha256 = sha.clone();
                        }
                        Some(op)
                    })
                    .collect();
                let mut redone = Box::pin(self.insert_batch(&keep)).await.into_iter();
                done.iter()
                    .map(|d| {
                        if d.is_some() {
                            redone.next().unwrap_or_else(|| {
                                Err(StoreError::Database("insert batch lost a result".into()))
                            })
                        } else {
                            Err(StoreError::Database(
                                "the blob could not be made durable; nothing was indexed".into(),
                            ))
                        }
                    })
                    .collect()
            }
        }
    }

    /// Open a write transaction and insert `ops` in it. A batch first goes in as it is; if an
    /// op fails (a duplicate refused, a bad value), the transaction is rolled back and the
    /// batch goes in again with a savepoint per op, so only the failing ones fail. (No
    /// savepoint around the first try: SQLite would copy every page the batch touches into a
    /// statement journal, a cost paid on every batch for a failure that is rare.) A lone op
    /// uses the transaction itself as its savepoint (a failure leaves nothing to commit).
    async fn insert_in<'c>(
        &self,
        conn: &'c mut sqlx::pool::PoolConnection<sqlx::Any>,
        ops: &[InsertOp],
    ) -> Result<InsertedInTx<'c>, StoreError> {
        let mut tx = self.begin_write(conn).await?;
        if let [op] = ops {
            let result = insert_one(&mut tx, op).await;
            return Ok((tx, vec![result]));
        }
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            match insert_one(&mut tx, op).await {
                Ok(outcome) => results.push(Ok(outcome)),
                Err(_) => break,
            }
        }
        if results.len() == ops.len() {
            return Ok((tx, results));
        }
        // start over in a fresh transaction on the same connection; `tx` still owns it and
        // will commit or roll back what follows
        let restart = match self.backend {
            Backend::Sqlite => "ROLLBACK; BEGIN IMMEDIATE",
            Backend::Postgres => "ROLLBACK; BEGIN",
        };
        tx.execute(restart)
            .await
            .map_err(|e| StoreError::db("restart transaction", e))?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            tx.execute("SAVEPOINT op")
                .await
                .map_err(|e| StoreError::db("savepoint", e))?;
            match insert_one(&mut tx, op).await {
                Ok(outcome) => {
                    tx.execute("RELEASE SAVEPOINT op")
                        .await
                        .map_err(|e| StoreError::db("release", e))?;
                    results.push(Ok(outcome));
                }
                Err(e) => {
                    tx.execute("ROLLBACK TO SAVEPOINT op")
                        .await
                        .map_err(|e| StoreError::db("rollback", e))?;
                    tx.execute("RELEASE SAVEPOINT op")
                        .await
                        .map_err(|e| StoreError::db("release", e))?;
                    results.push(Err(e));
                }
            }
        }
        Ok((tx, results))
    }

    /// Delete a study, series or instance; returns the blob paths to remove. Studies left
    /// without instances are removed, with their annotation documents.
    pub async fn delete(
        &self,
        tenant: &TenantId,
        level: DeleteLevel,
        uid: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| StoreError::db("acquire", e))?;
        let mut tx = self.begin_write(&mut conn).await?;
        let col = match level {
            DeleteLevel::Study => "study_uid",
            DeleteLevel::Series => "series_uid",
            DeleteLevel::Instance => "sop_uid",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT blob_path, series_uid, study_uid FROM instances WHERE tenant_id = $1 AND {col} = $2"
        )))
        .bind(tenant.as_str())
        .bind(uid)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| StoreError::db("delete: select", e))?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(uid.to_owned()));
        }
        let mut paths = Vec::new();
        let mut series_set = Vec::new();
        let mut study_set = Vec::new();
        for r in &rows {
            let g = |i| {
                r.try_get::<String, _>(i)
                    .map_err(|e| StoreError::db("delete: row", e))
            };
            paths.push(g(0)?);
            let (se, st) = (g(1)?, g(2)?);
            if !series_set.contains(&se) {
                series_set.push(se);
            }
            if !study_set.contains(&st) {
                study_set.push(st);
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM instances WHERE tenant_id = $1 AND {col} = $2"
        )))
        .bind(tenant.as_str())
        .bind(uid)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::db("delete instances", e))?;
        recompute(&mut tx, tenant, &series_set, &study_set).await?;
        // a study that is gone takes its annotation documents with it
        annotations::drop_orphaned(&mut tx, tenant, &study_set).await?;
        // the files go after the commit; until then they are queued with it
        for p in &paths {
            write::queue_removal(&mut tx, p).await?;
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::db("delete: commit", e))?;
        Ok(paths)
    }

    /// Blob files a committed delete still has to remove (after a crash).
    pub async fn pending_removals(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar::<_, String>("SELECT blob_path FROM blob_removals ORDER BY blob_path")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::db("pending removals", e))
    }

    /// These blob files are gone.
    pub async fn removals_done(&self, paths: &[String]) -> Result<(), StoreError> {
        for chunk in paths.chunks(500) {
            let mut sql = Sql::default();
            let args: Vec<String> = chunk.iter().map(|p| sql.arg(p.as_str())).collect();
            sql.text = format!(
                "DELETE FROM blob_removals WHERE blob_path IN ({})",
                args.join(", ")
            );
            bind_all(
                sqlx::query(sqlx::AssertSqlSafe(sql.text.clone())),
                &sql.args,
            )
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db("removals done", e))?;
        }
        Ok(())
    }

    /// The database URL (without credentials) for logs.
    pub fn describe(&self) -> String {
        match self.backend {
            Backend::Sqlite => self.url.clone(),
            Backend::Postgres => "postgres://…".to_owned(),
        }
    }
}

fn stored_instance(r: &AnyRow) -> Result<StoredInstance, StoreError> {
    let g = |i| {
        r.try_get::<String, _>(i)
            .map_err(|e| StoreError::db("instance row", e))
    };
    Ok(StoredInstance {
        tenant: g(0)?,
        study_uid: g(1)?,
        series_uid: g(2)?,
        sop_uid: g(3)?,
        sop_class_uid: g(4)?,
        transfer_syntax: g(5)?,
        blob_path: g(6)?,
        size_bytes: r
            .try_get(7)
            .map_err(|e| StoreError::db("instance row", e))?,
        sha256: g(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_kept_out_of_messages() {
        for (url, shown) in [
            (
                "postgres://radris:s3cret@db:5432/radris?sslmode=require",
                "postgres://db:5432/…",
            ),
            ("postgres://u@db/radris?password=s3cret", "postgres://db/…"),
            ("postgres://u:pa/s3cret@db/radris", "postgres://db/…"),
            ("postgresql://db?password=s3cret", "postgresql://db/…"),
            ("no-scheme:s3cret", "(database URL)"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
        assert_eq!(
            redact_url("sqlite:///var/lib/radris/index.sqlite?mode=rwc"),
            "sqlite:///var/lib/radris/index.sqlite?mode=rwc"
        );
    }

    #[tokio::test]
    async fn a_damaged_sqlite_file_is_named_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let started = std::time::Instant::now();
        let err = Index::open(&format!("sqlite://{}", path.display()))
            .await
            .err()
            .expect("a file that is not a database");
        assert!(err.to_string().contains("not a database"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_refused_connection_is_named_at_once() {
        // a port nothing listens on: bind one, note it, close it
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = Index::open(&format!("postgres://radris:pw@127.0.0.1:{port}/radris"))
            .await
            .err()
            .expect("nothing listens there");
        let text = err.to_string();
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!text.contains("pw"), "{text}");
    }
}
