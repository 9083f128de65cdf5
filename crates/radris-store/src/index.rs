//! The index on sqlx: SQLite (WAL) by default, PostgreSQL when the URL says so. The same
//! migrations and the same queries run on both (`Any` driver, portable SQL).
//!
//! **Invariant:** every statement filters on `tenant_id`, which callers pass first.
//! **Invariant:** study/series/patient counters and `ModalitiesInStudy` are maintained by the
//! write path (inserts increment, deletions recompute), never computed per query.

use std::collections::HashMap;

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use radris_core::TenantId;
use radris_core::config::DuplicatePolicy;
use radris_dicom::attrs::IndexAttributes;
use radris_dicom::query::{FindQuery, Matcher, QueryLevel, normalise};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};

use crate::StoreError;
use crate::schema::MIGRATIONS;

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

/// One indexed column that C-FIND/QIDO can match on.
struct Column {
    tag: Tag,
    expr: &'static str,
    level: QueryLevel,
}

const COLUMNS: &[Column] = &[
    Column {
        tag: tags::PATIENT_ID,
        expr: "p.patient_id",
        level: QueryLevel::Patient,
    },
    Column {
        tag: tags::PATIENT_NAME,
        expr: "p.patient_name_norm",
        level: QueryLevel::Patient,
    },
    Column {
        tag: tags::PATIENT_BIRTH_DATE,
        expr: "p.birth_date",
        level: QueryLevel::Patient,
    },
    Column {
        tag: tags::PATIENT_SEX,
        expr: "p.sex",
        level: QueryLevel::Patient,
    },
    Column {
        tag: tags::STUDY_INSTANCE_UID,
        expr: "st.study_uid",
        level: QueryLevel::Study,
    },
    Column {
        tag: tags::STUDY_DATE,
        expr: "st.study_date",
        level: QueryLevel::Study,
    },
    Column {
        tag: tags::STUDY_TIME,
        expr: "st.study_time",
        level: QueryLevel::Study,
    },
    Column {
        tag: tags::ACCESSION_NUMBER,
        expr: "st.accession",
        level: QueryLevel::Study,
    },
    Column {
        tag: tags::STUDY_ID,
        expr: "st.study_id",
        level: QueryLevel::Study,
    },
    Column {
        tag: tags::STUDY_DESCRIPTION,
        expr: "st.description",
        level: QueryLevel::Study,
    },
    Column {
        tag: tags::REFERRING_PHYSICIAN_NAME,
        expr: "st.referring_norm",
        level: QueryLevel::Study,
    },
    Column {
        tag: tags::MODALITIES_IN_STUDY,
        expr: "st.modalities",
        level: QueryLevel::Study,
    },
    Column {
        tag: tags::SERIES_INSTANCE_UID,
        expr: "se.series_uid",
        level: QueryLevel::Series,
    },
    Column {
        tag: tags::MODALITY,
        expr: "se.modality",
        level: QueryLevel::Series,
    },
    Column {
        tag: tags::SERIES_NUMBER,
        expr: "se.series_number",
        level: QueryLevel::Series,
    },
    Column {
        tag: tags::SERIES_DESCRIPTION,
        expr: "se.description",
        level: QueryLevel::Series,
    },
    Column {
        tag: tags::BODY_PART_EXAMINED,
        expr: "se.body_part",
        level: QueryLevel::Series,
    },
    Column {
        tag: tags::SERIES_DATE,
        expr: "se.series_date",
        level: QueryLevel::Series,
    },
    Column {
        tag: tags::SOP_INSTANCE_UID,
        expr: "i.sop_uid",
        level: QueryLevel::Image,
    },
    Column {
        tag: tags::SOP_CLASS_UID,
        expr: "i.sop_class_uid",
        level: QueryLevel::Image,
    },
    Column {
        tag: tags::INSTANCE_NUMBER,
        expr: "i.instance_number",
        level: QueryLevel::Image,
    },
];

/// Keys whose values the index computes (returned from counters, never from a header).
pub const COMPUTED_KEYS: &[Tag] = &[
    tags::MODALITIES_IN_STUDY,
    tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
    tags::NUMBER_OF_PATIENT_RELATED_SERIES,
    tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
];

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

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SQL text with positional arguments, all bound as strings.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<String>,
}

impl Sql {
    fn arg(&mut self, v: impl Into<String>) -> String {
        self.args.push(v.into());
        format!("${}", self.args.len())
    }
}

/// Escape a literal for `LIKE … ESCAPE '!'`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

/// A DICOM wildcard pattern as a LIKE pattern.
fn like_pattern(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '!' | '%' | '_' => {
                out.push('!');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn matcher_sql(sql: &mut Sql, col: &str, m: &Matcher) -> Option<String> {
    Some(match m {
        Matcher::Universal => return None,
        Matcher::Single(v) => format!("{col} = {}", sql.arg(v.clone())),
        Matcher::Wildcard(p) => format!("{col} LIKE {} ESCAPE '!'", sql.arg(like_pattern(p))),
        Matcher::Range { from, to } => {
            let mut parts = vec![format!("{col} <> ''")];
            if let Some(f) = from {
                parts.push(format!("{col} >= {}", sql.arg(f.clone())));
            }
            if let Some(t) = to {
                let a = sql.arg(t.clone());
                let b = sql.arg(format!("{}%", like_escape(t)));
                parts.push(format!("({col} <= {a} OR {col} LIKE {b} ESCAPE '!')"));
            }
            parts.join(" AND ")
        }
        Matcher::List(vs) => {
            let args: Vec<String> = vs.iter().map(|v| sql.arg(v.clone())).collect();
            format!("{col} IN ({})", args.join(", "))
        }
    })
}

/// `ModalitiesInStudy` is stored as `|CT|MR|`.
fn modalities_sql(sql: &mut Sql, m: &Matcher) -> Option<String> {
    let one =
        |sql: &mut Sql, pat: String| format!("st.modalities LIKE {} ESCAPE '!'", sql.arg(pat));
    Some(match m {
        Matcher::Universal | Matcher::Range { .. } => return None,
        Matcher::Single(v) => one(sql, format!("%|{}|%", like_escape(v))),
        Matcher::Wildcard(p) => one(sql, format!("%|{}|%", like_pattern(p))),
        Matcher::List(vs) => {
            let parts: Vec<String> = vs
                .iter()
                .map(|v| one(sql, format!("%|{}|%", like_escape(v))))
                .collect();
            format!("({})", parts.join(" OR "))
        }
    })
}

fn from_clause(level: QueryLevel) -> &'static str {
    match level {
        QueryLevel::Patient => "patients p",
        QueryLevel::Study => {
            "studies st JOIN patients p ON p.tenant_id = st.tenant_id AND p.patient_id = st.patient_id"
        }
        QueryLevel::Series => {
            "series se JOIN studies st ON st.tenant_id = se.tenant_id AND st.study_uid = se.study_uid \
             JOIN patients p ON p.tenant_id = st.tenant_id AND p.patient_id = st.patient_id"
        }
        QueryLevel::Image => {
            "instances i JOIN series se ON se.tenant_id = i.tenant_id AND se.series_uid = i.series_uid \
             JOIN studies st ON st.tenant_id = se.tenant_id AND st.study_uid = se.study_uid \
             JOIN patients p ON p.tenant_id = st.tenant_id AND p.patient_id = st.patient_id"
        }
    }
}

fn tenant_col(level: QueryLevel) -> &'static str {
    match level {
        QueryLevel::Patient => "p.tenant_id",
        QueryLevel::Study => "st.tenant_id",
        QueryLevel::Series => "se.tenant_id",
        QueryLevel::Image => "i.tenant_id",
    }
}

/// WHERE clause for a query at `level`; returns the keys that need filtering in Rust.
fn where_clause<'q>(
    sql: &mut Sql,
    tenant: &TenantId,
    q: &'q FindQuery,
    level: QueryLevel,
) -> Vec<&'q radris_dicom::query::QueryKey> {
    let t = sql.arg(tenant.as_str());
    sql.text
        .push_str(&format!(" WHERE {} = {t}", tenant_col(level)));
    let mut post = Vec::new();
    for key in &q.keys {
        if key.matcher.is_universal() {
            continue;
        }
        match COLUMNS.iter().find(|c| c.tag == key.tag) {
            Some(col) if col.level > level => {} // below the query level: not a matching key
            Some(col) => {
                let cond = if col.tag == tags::MODALITIES_IN_STUDY {
                    modalities_sql(sql, &key.matcher)
                } else {
                    matcher_sql(sql, col.expr, &key.matcher)
                };
                if let Some(c) = cond {
                    sql.text.push_str(" AND ");
                    sql.text.push_str(&c);
                }
            }
            None if COMPUTED_KEYS.contains(&key.tag) => {}
            None => post.push(key),
        }
    }
    post
}

fn order_clause(level: QueryLevel) -> &'static str {
    match level {
        QueryLevel::Patient => " ORDER BY p.patient_id",
        QueryLevel::Study => " ORDER BY st.study_date, st.study_time, st.study_uid",
        QueryLevel::Series => " ORDER BY LENGTH(se.series_number), se.series_number, se.series_uid",
        QueryLevel::Image => " ORDER BY LENGTH(i.instance_number), i.instance_number, i.sop_uid",
    }
}

fn bind_all<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: &'q [String],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    args.iter().fold(query, |q, a| q.bind(a.as_str()))
}

/// Post-filter on keys without a column: match against the stored header.
fn post_filter(header_json: &str, keys: &[&radris_dicom::query::QueryKey]) -> bool {
    if keys.is_empty() {
        return true;
    }
    let Ok(obj) = radris_dicom::attrs::header_from_json(header_json) else {
        return false;
    };
    keys.iter().all(|k| {
        let v = radris_dicom::attrs::text(&obj, k.tag);
        k.matcher.matches(k.vr, &v)
    })
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
        let mut opts = AnyPoolOptions::new().max_connections(8).min_connections(1);
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
        let level = q.level;
        let select = match level {
            QueryLevel::Patient => {
                "p.header_json, p.num_studies, p.num_series, p.num_instances, ''"
            }
            QueryLevel::Study => {
                "st.header_json, 1, st.num_series, st.num_instances, st.modalities"
            }
            QueryLevel::Series => "se.header_json, 1, 1, se.num_instances, ''",
            QueryLevel::Image => "i.header_json, 1, 1, 1, ''",
        };
        let mut sql = Sql {
            text: format!("SELECT {select} FROM {}", from_clause(level)),
            ..Sql::default()
        };
        let post = where_clause(&mut sql, tenant, q, level);
        sql.text.push_str(order_clause(level));
        let rows = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(sql.text.clone())),
            &sql.args,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("find", e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let header_json: String = row.try_get(0).map_err(|e| StoreError::db("find row", e))?;
            if !post_filter(&header_json, &post) {
                continue;
            }
            let get = |i: usize| -> Result<i64, StoreError> {
                row.try_get::<i64, _>(i)
                    .map_err(|e| StoreError::db("find row", e))
            };
            let modalities: String = row.try_get(4).map_err(|e| StoreError::db("find row", e))?;
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
        Ok(out)
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
                "SELECT i.tenant_id, i.study_uid, i.series_uid, i.sop_uid, i.sop_class_uid, \
                 i.transfer_syntax, i.blob_path, i.size_bytes, i.sha256 FROM {}",
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

    /// The relative blob path of an instance stored under this blob id.
    pub async fn blob_path_of(&self, blob_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT blob_path FROM instances WHERE blob_id = $1")
            .bind(blob_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db("blob lookup", e))?;
        row.map(|r| r.try_get(0).map_err(|e| StoreError::db("blob lookup", e)))
            .transpose()
    }

    /// Counts of (studies, series, instances, bytes) of a tenant.
    pub async fn statistics(&self, tenant: &TenantId) -> Result<(i64, i64, i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM studies WHERE tenant_id = $1), \
                    (SELECT COUNT(*) FROM series WHERE tenant_id = $1), \
                    (SELECT COUNT(*) FROM instances WHERE tenant_id = $1), \
                    (SELECT COALESCE(SUM(size_bytes), 0) FROM instances WHERE tenant_id = $1)",
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
        let mut conn = match self.pool.acquire().await {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                return ops
                    .iter()
                    .map(|_| Err(StoreError::Database(format!("acquire: {msg}"))))
                    .collect();
            }
        };
        let result: Result<Vec<Result<InsertOutcome, StoreError>>, StoreError> = async {
            let mut tx = conn.begin().await.map_err(|e| StoreError::db("begin", e))?;
            let mut results = Vec::with_capacity(ops.len());
            if let [op] = ops {
                // one op: the transaction itself is the savepoint
                let r = insert_one(&mut tx, op).await;
                if r.is_ok() {
                    tx.commit().await.map_err(|e| StoreError::db("commit", e))?;
                }
                results.push(r);
                return Ok(results);
            }
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
            tx.commit().await.map_err(|e| StoreError::db("commit", e))?;
            Ok(results)
        }
        .await;
        match result {
            Ok(r) => r,
            Err(e) => {
                let msg = e.to_string();
                ops.iter()
                    .map(|_| Err(StoreError::Database(msg.clone())))
                    .collect()
            }
        }
    }

    /// Delete a study, series or instance; returns the blob paths to remove.
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
        let mut tx = conn.begin().await.map_err(|e| StoreError::db("begin", e))?;
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
        tx.commit()
            .await
            .map_err(|e| StoreError::db("delete: commit", e))?;
        Ok(paths)
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

async fn insert_one(conn: &mut AnyConnection, op: &InsertOp) -> Result<InsertOutcome, StoreError> {
    let mut outcome = InsertOutcome::Inserted;
    if !insert_instance_row(conn, op).await? {
        let t = op.tenant.as_str();
        let sop = op.attrs.instance.sop_instance_uid.as_str();
        match op.policy {
            DuplicatePolicy::KeepFirst => return Ok(InsertOutcome::KeptExisting),
            DuplicatePolicy::Reject => return Err(StoreError::Duplicate(sop.to_owned())),
            DuplicatePolicy::Overwrite => {
                let row = sqlx::query(
                    "SELECT blob_path, series_uid, study_uid FROM instances WHERE tenant_id = $1 AND sop_uid = $2",
                )
                .bind(t)
                .bind(sop)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| StoreError::db("duplicate row", e))?;
                let g = |i| {
                    row.try_get::<String, _>(i)
                        .map_err(|e| StoreError::db("duplicate row", e))
                };
                let (old, se, st) = (g(0)?, g(1)?, g(2)?);
                sqlx::query("DELETE FROM instances WHERE tenant_id = $1 AND sop_uid = $2")
                    .bind(t)
                    .bind(sop)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| StoreError::db("overwrite", e))?;
                recompute(conn, &op.tenant, &[se], &[st]).await?;
                if !insert_instance_row(conn, op).await? {
                    return Err(StoreError::Database(
                        "overwrite: instance row still present".into(),
                    ));
                }
                outcome = InsertOutcome::Replaced { old_blob_path: old };
            }
        }
    }
    upsert_parents(conn, op).await?;
    Ok(outcome)
}

/// Insert the instance row; `false` when the SOP Instance UID is already stored.
async fn insert_instance_row(conn: &mut AnyConnection, op: &InsertOp) -> Result<bool, StoreError> {
    let a = &op.attrs;
    let inserted = sqlx::query(
        "INSERT INTO instances (tenant_id, sop_uid, series_uid, study_uid, sop_class_uid, instance_number, \
         transfer_syntax, blob_id, blob_path, size_bytes, sha256, source_ae, received_at, header_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (tenant_id, sop_uid) DO NOTHING",
    )
    .bind(op.tenant.as_str())
    .bind(a.instance.sop_instance_uid.as_str())
    .bind(a.series.series_uid.as_str())
    .bind(a.study.study_uid.as_str())
    .bind(a.instance.sop_class_uid.as_str())
    .bind(a.instance.number.as_str())
    .bind(op.transfer_syntax.as_str())
    .bind(op.blob_id.as_str())
    .bind(op.blob_path.as_str())
    .bind(op.size_bytes as i64)
    .bind(op.sha256.as_str())
    .bind(op.source_ae.as_str())
    .bind(now_millis())
    .bind(op.header_json.as_str())
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::db("insert instance", e))?
    .rows_affected();
    Ok(inserted == 1)
}

/// Create or count up the series, study and patient of a newly inserted instance: three
/// upserts whose `RETURNING` tells whether the series and study are new.
async fn upsert_parents(conn: &mut AnyConnection, op: &InsertOp) -> Result<(), StoreError> {
    let t = op.tenant.as_str();
    let a = &op.attrs;
    let now = now_millis();
    let series_count: i64 = sqlx::query(
        "INSERT INTO series (tenant_id, series_uid, study_uid, modality, series_number, description, body_part, \
         series_date, num_instances, header_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9) \
         ON CONFLICT (tenant_id, series_uid) DO UPDATE SET num_instances = series.num_instances + 1 \
         RETURNING num_instances",
    )
    .bind(t)
    .bind(a.series.series_uid.as_str())
    .bind(a.study.study_uid.as_str())
    .bind(a.series.modality.as_str())
    .bind(a.series.number.as_str())
    .bind(a.series.description.as_str())
    .bind(a.series.body_part.as_str())
    .bind(a.series.date.as_str())
    .bind(op.header_json.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| StoreError::db("upsert series", e))?
    .try_get(0)
    .map_err(|e| StoreError::db("upsert series", e))?;
    let new_series: i64 = (series_count == 1).into();
    let modality = &a.series.modality;
    let (mods_new, mods_pattern) = if modality.is_empty() {
        ("|".to_owned(), "%".to_owned())
    } else {
        (
            format!("|{modality}|"),
            format!("%|{}|%", like_escape(modality)),
        )
    };
    let study_count: i64 = sqlx::query(
        "INSERT INTO studies (tenant_id, study_uid, patient_id, study_date, study_time, accession, study_id, \
         description, referring_norm, modalities, num_series, num_instances, header_json, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, 1, $11, $12, $12) \
         ON CONFLICT (tenant_id, study_uid) DO UPDATE SET \
           num_instances = studies.num_instances + 1, \
           num_series = studies.num_series + $13, \
           updated_at = $12, \
           modalities = CASE WHEN studies.modalities LIKE $14 ESCAPE '!' THEN studies.modalities \
                             ELSE studies.modalities || $15 || '|' END \
         RETURNING num_instances",
    )
    .bind(t)
    .bind(a.study.study_uid.as_str())
    .bind(a.patient.patient_id.as_str())
    .bind(a.study.date.as_str())
    .bind(a.study.time.as_str())
    .bind(a.study.accession.as_str())
    .bind(a.study.study_id.as_str())
    .bind(a.study.description.as_str())
    .bind(normalise(VR::PN, &a.study.referring_physician))
    .bind(mods_new)
    .bind(op.header_json.as_str())
    .bind(now)
    .bind(new_series)
    .bind(mods_pattern)
    .bind(modality.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| StoreError::db("upsert study", e))?
    .try_get(0)
    .map_err(|e| StoreError::db("upsert study", e))?;
    let new_study: i64 = (study_count == 1).into();
    // counters go to the patient the study belongs to (the first instance's Patient ID)
    sqlx::query(
        "INSERT INTO patients (tenant_id, patient_id, issuer, patient_name, patient_name_norm, birth_date, sex, \
         num_studies, num_series, num_instances, header_json) VALUES ($1, \
         COALESCE((SELECT patient_id FROM studies WHERE tenant_id = $1 AND study_uid = $11), $2), \
         $3, $4, $5, $6, $7, 1, 1, 1, $8) \
         ON CONFLICT (tenant_id, patient_id) DO UPDATE SET \
           num_studies = patients.num_studies + $9, \
           num_series = patients.num_series + $10, \
           num_instances = patients.num_instances + 1",
    )
    .bind(t)
    .bind(a.patient.patient_id.as_str())
    .bind(a.patient.issuer.as_str())
    .bind(a.patient.name.as_str())
    .bind(normalise(VR::PN, &a.patient.name))
    .bind(a.patient.birth_date.as_str())
    .bind(a.patient.sex.as_str())
    .bind(op.header_json.as_str())
    .bind(new_study)
    .bind(new_series)
    .bind(a.study.study_uid.as_str())
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::db("upsert patient", e))?;
    Ok(())
}

/// Recompute counters after instances were removed; drop entities left empty.
async fn recompute(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    series: &[String],
    studies: &[String],
) -> Result<(), StoreError> {
    let t = tenant.as_str();
    let db = |what: &'static str| move |e| StoreError::db(what, e);
    for se in series {
        sqlx::query(
            "UPDATE series SET num_instances = (SELECT COUNT(*) FROM instances WHERE tenant_id = $1 AND series_uid = $2) \
             WHERE tenant_id = $1 AND series_uid = $2",
        )
        .bind(t)
        .bind(se.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("recount series"))?;
        sqlx::query(
            "DELETE FROM series WHERE tenant_id = $1 AND series_uid = $2 AND num_instances = 0",
        )
        .bind(t)
        .bind(se.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("drop empty series"))?;
    }
    let mut patients: HashMap<String, ()> = HashMap::new();
    for st in studies {
        if let Some(row) =
            sqlx::query("SELECT patient_id FROM studies WHERE tenant_id = $1 AND study_uid = $2")
                .bind(t)
                .bind(st.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("study patient"))?
        {
            patients.insert(row.try_get(0).map_err(db("study patient"))?, ());
        }
        let mods = sqlx::query("SELECT DISTINCT modality FROM series WHERE tenant_id = $1 AND study_uid = $2 ORDER BY modality")
            .bind(t)
            .bind(st.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(db("study modalities"))?;
        let mut joined = String::from("|");
        for m in mods {
            let m: String = m.try_get(0).map_err(db("study modalities"))?;
            if !m.is_empty() {
                joined.push_str(&m);
                joined.push('|');
            }
        }
        sqlx::query(
            "UPDATE studies SET modalities = $3, \
             num_series = (SELECT COUNT(*) FROM series WHERE tenant_id = $1 AND study_uid = $2), \
             num_instances = (SELECT COUNT(*) FROM instances WHERE tenant_id = $1 AND study_uid = $2) \
             WHERE tenant_id = $1 AND study_uid = $2",
        )
        .bind(t)
        .bind(st.as_str())
        .bind(joined)
        .execute(&mut *conn)
        .await
        .map_err(db("recount study"))?;
        sqlx::query(
            "DELETE FROM studies WHERE tenant_id = $1 AND study_uid = $2 AND num_instances = 0",
        )
        .bind(t)
        .bind(st.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("drop empty study"))?;
    }
    for p in patients.keys() {
        sqlx::query(
            "UPDATE patients SET \
             num_studies = (SELECT COUNT(*) FROM studies WHERE tenant_id = $1 AND patient_id = $2), \
             num_series = (SELECT COUNT(*) FROM series se JOIN studies st ON st.tenant_id = se.tenant_id AND st.study_uid = se.study_uid WHERE st.tenant_id = $1 AND st.patient_id = $2), \
             num_instances = (SELECT COUNT(*) FROM instances i JOIN studies st ON st.tenant_id = i.tenant_id AND st.study_uid = i.study_uid WHERE st.tenant_id = $1 AND st.patient_id = $2) \
             WHERE tenant_id = $1 AND patient_id = $2",
        )
        .bind(t)
        .bind(p.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("recount patient"))?;
        sqlx::query(
            "DELETE FROM patients WHERE tenant_id = $1 AND patient_id = $2 AND num_studies = 0",
        )
        .bind(t)
        .bind(p.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("drop empty patient"))?;
    }
    Ok(())
}
