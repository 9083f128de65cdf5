//! The append-only, hash-chained audit log.
//!
//! Records arrive through [`AuditSink::record`] from request handlers and DIMSE threads
//! without waiting for the database; one writer task numbers them, chains them and inserts
//! them in batches (one transaction per batch). Record `n` stores
//! `hash_n = SHA-256(hash_{n-1} ‖ canonical(record_n))` with `hash_0` all zeros, where the
//! canonical form is the JSON array of the record's fields. [`verify`] recomputes the chain
//! and reports the first record that was edited, deleted, inserted or reordered.
//!
//! Every [`CHECKPOINT_EVERY`] records, every [`CHECKPOINT_INTERVAL`] and at shutdown the
//! writer signs the chain head with the server's Ed25519 key (`audit_checkpoints`). [`verify`]
//! checks every signature and that the chain still reaches the last checkpoint, so cutting
//! off the newest records is detected too (up to the last checkpoint).
//!
//! One writer per database: a multi-node deployment must elect it (or use a sequence per
//! node), which the scale-out work will do.

use radris_core::audit::{AuditRecord, AuditSink, Outcome};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::{AuthError, now_millis};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const BATCH: usize = 512;
/// Sign the chain head after this many new records…
pub const CHECKPOINT_EVERY: i64 = 1000;
/// …or when this much time passed since the last checkpoint and there are new records.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

fn checkpoint_message(seq: i64, hash: &str) -> String {
    format!("radris-audit-checkpoint|{seq}|{hash}")
}

enum Msg {
    Record(AuditRecord, i64),
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Msg>,
}

/// The newest record's sequence number and hash (0 and the genesis hash when empty).
async fn chain_head(pool: &AnyPool) -> Result<(i64, String), AuthError> {
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(pool)
        .await
        .map_err(AuthError::db("reading the audit chain head"))?;
    Ok(match last {
        Some(row) => (
            row.try_get::<i64, _>(0)
                .map_err(AuthError::db("reading the audit chain head"))?,
            row.try_get::<String, _>(1)
                .map_err(AuthError::db("reading the audit chain head"))?,
        ),
        None => (0, GENESIS.to_owned()),
    })
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredRecord {
    pub seq: i64,
    pub at: i64,
    pub tenant: String,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub resource: String,
    pub detail: String,
    pub source: String,
    pub prev_hash: String,
    pub hash: String,
}

fn chain_hash(prev: &str, r: &StoredRecord) -> String {
    let canonical = serde_json::json!([
        r.seq, r.at, r.tenant, r.actor, r.action, r.outcome, r.resource, r.detail, r.source
    ])
    .to_string();
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

impl AuditLog {
    /// Start the writer on the current tokio runtime; with a signing key it writes signed
    /// checkpoints.
    pub async fn start(
        pool: AnyPool,
        signer: Option<ed25519_dalek::SigningKey>,
    ) -> Result<AuditLog, AuthError> {
        let (mut seq, mut head) = chain_head(&pool).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let mut signed_up_to = seq;
        let mut signed_at = std::time::Instant::now();
        tokio::spawn(async move {
            let mut batch: Vec<StoredRecord> = Vec::new();
            let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Record(r, at) => {
                            seq += 1;
                            let mut rec = StoredRecord {
                                seq,
                                at,
                                tenant: r.tenant,
                                actor: r.actor,
                                action: r.action,
                                outcome: r.outcome.as_str().to_owned(),
                                resource: r.resource,
                                detail: r.detail,
                                source: r.source,
                                prev_hash: head.clone(),
                                hash: String::new(),
                            };
                            rec.hash = chain_hash(&head, &rec);
                            head = rec.hash.clone();
                            batch.push(rec);
                        }
                        Msg::Flush(w) => waiters.push(w),
                    }
                    if batch.len() < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    // Retry until stored: a record that cannot be written must not be
                    // skipped, or the chain would have a hole.
                    let mut delay = std::time::Duration::from_millis(50);
                    while let Err(e) = insert(&pool, &batch).await {
                        tracing::error!(error = %e, records = batch.len(), "audit log write failed; retrying");
                        metrics::counter!("radris_audit_write_errors_total").increment(1);
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(5));
                        // another writer (an admin command beside the server) may have
                        // appended: chain the batch onto the head as it is now
                        if let Ok((db_seq, db_head)) = chain_head(&pool).await
                            && batch.first().is_some_and(|r| r.seq != db_seq + 1)
                        {
                            let (mut s2, mut h2) = (db_seq, db_head);
                            for rec in batch.iter_mut() {
                                s2 += 1;
                                rec.seq = s2;
                                rec.prev_hash = h2.clone();
                                rec.hash = chain_hash(&h2, rec);
                                h2 = rec.hash.clone();
                            }
                            seq = s2;
                            head = h2;
                        }
                    }
                    metrics::counter!("radris_audit_records_total").increment(batch.len() as u64);
                    batch.clear();
                }
                let due = seq > signed_up_to
                    && (seq - signed_up_to >= CHECKPOINT_EVERY
                        || signed_at.elapsed() >= CHECKPOINT_INTERVAL
                        || !waiters.is_empty());
                if let (true, Some(key)) = (due, signer.as_ref()) {
                    match checkpoint(&pool, key, seq, &head).await {
                        Ok(()) => {
                            signed_up_to = seq;
                            signed_at = std::time::Instant::now();
                        }
                        Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
                    }
                }
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        });
        Ok(AuditLog { tx })
    }

    /// Wait until every record handed over so far is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

impl AuditSink for AuditLog {
    fn record(&self, record: AuditRecord) {
        if record.outcome != Outcome::Success {
            tracing::info!(action = %record.action, outcome = record.outcome.as_str(), actor = %record.actor, detail = %record.detail, "audit");
        }
        if self.tx.send(Msg::Record(record, now_millis())).is_err() {
            tracing::error!("audit writer has stopped; record lost");
        }
    }
}

async fn checkpoint(
    pool: &AnyPool,
    key: &ed25519_dalek::SigningKey,
    seq: i64,
    head: &str,
) -> Result<(), sqlx::Error> {
    use ed25519_dalek::Signer;
    let sig = key.sign(checkpoint_message(seq, head).as_bytes());
    sqlx::query(
        "INSERT INTO audit_checkpoints (seq, at, hash, public_key, signature) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (seq) DO NOTHING",
    )
    .bind(seq)
    .bind(now_millis())
    .bind(head)
    .bind(hex::encode(key.verifying_key().as_bytes()))
    .bind(hex::encode(sig.to_bytes()))
    .execute(pool)
    .await?;
    Ok(())
}

async fn insert(pool: &AnyPool, batch: &[StoredRecord]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for r in batch {
        sqlx::query(
            "INSERT INTO audit_log (seq, at, tenant_id, actor, action, outcome, resource, detail, source, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(r.seq)
        .bind(r.at)
        .bind(&r.tenant)
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.outcome)
        .bind(&r.resource)
        .bind(&r.detail)
        .bind(&r.source)
        .bind(&r.prev_hash)
        .bind(&r.hash)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

fn stored(row: &sqlx::any::AnyRow) -> Result<StoredRecord, AuthError> {
    let s = |i| {
        row.try_get::<String, _>(i)
            .map_err(AuthError::db("reading the audit log"))
    };
    let n = |i| {
        row.try_get::<i64, _>(i)
            .map_err(AuthError::db("reading the audit log"))
    };
    Ok(StoredRecord {
        seq: n(0)?,
        at: n(1)?,
        tenant: s(2)?,
        actor: s(3)?,
        action: s(4)?,
        outcome: s(5)?,
        resource: s(6)?,
        detail: s(7)?,
        source: s(8)?,
        prev_hash: s(9)?,
        hash: s(10)?,
    })
}

const SELECT: &str = "SELECT seq, at, tenant_id, actor, action, outcome, resource, detail, source, prev_hash, hash FROM audit_log";

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub records: i64,
    /// Signed checkpoints verified.
    pub checkpoints: i64,
    /// The first broken link: the sequence number where the chain stops verifying, and why.
    pub broken: Option<(i64, String)>,
}

/// Recompute the whole chain, then check the signed checkpoints against it (signatures by
/// `public_key` when given, and that no checkpointed record is missing).
pub async fn verify(
    pool: &AnyPool,
    public_key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<ChainReport, AuthError> {
    let mut report = verify_chain(pool).await?;
    if report.broken.is_some() {
        return Ok(report);
    }
    let rows =
        sqlx::query("SELECT seq, hash, public_key, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(pool)
            .await
            .map_err(AuthError::db("reading audit checkpoints"))?;
    for row in &rows {
        let seq: i64 = row
            .try_get(0)
            .map_err(AuthError::db("reading audit checkpoints"))?;
        let s = |i| {
            row.try_get::<String, _>(i)
                .map_err(AuthError::db("reading audit checkpoints"))
        };
        let (hash, key_hex, sig_hex) = (s(1)?, s(2)?, s(3)?);
        let signed_ok = (|| {
            let key_bytes: [u8; 32] = hex::decode(&key_hex).ok()?.try_into().ok()?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes).ok()?;
            if public_key.is_some_and(|k| *k != key) {
                return None;
            }
            let sig_bytes: [u8; 64] = hex::decode(&sig_hex).ok()?.try_into().ok()?;
            let sig = ed25519_dalek::Signature::from_bytes(&sig_bytes);
            key.verify_strict(checkpoint_message(seq, &hash).as_bytes(), &sig)
                .ok()
        })()
        .is_some();
        if !signed_ok {
            report.broken = Some((
                seq,
                "the signed checkpoint covering it does not verify with the server's key".into(),
            ));
            return Ok(report);
        }
        if seq > report.records {
            report.broken = Some((
                report.records + 1,
                format!(
                    "records {}..={seq} were signed in a checkpoint but are missing (the log was cut short)",
                    report.records + 1
                ),
            ));
            return Ok(report);
        }
        let stored: Option<String> =
            sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
                .bind(seq)
                .fetch_optional(pool)
                .await
                .map_err(AuthError::db("reading the audit log"))?;
        if stored.as_deref() != Some(hash.as_str()) {
            report.broken = Some((
                seq,
                "the chain no longer matches the signed checkpoint".into(),
            ));
            return Ok(report);
        }
        report.checkpoints += 1;
    }
    Ok(report)
}

async fn verify_chain(pool: &AnyPool) -> Result<ChainReport, AuthError> {
    let mut prev_hash = GENESIS.to_owned();
    let mut expected_seq = 1;
    let mut records = 0;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE seq >= $1 ORDER BY seq LIMIT 5000"
        )))
        .bind(expected_seq)
        .fetch_all(pool)
        .await
        .map_err(AuthError::db("reading the audit log"))?;
        if rows.is_empty() {
            return Ok(ChainReport {
                records,
                checkpoints: 0,
                broken: None,
            });
        }
        for row in &rows {
            let r = stored(row)?;
            records += 1;
            let fail = |why: String| {
                Ok(ChainReport {
                    records,
                    checkpoints: 0,
                    broken: Some((r.seq, why)),
                })
            };
            if r.seq != expected_seq {
                return fail(format!(
                    "record {expected_seq} is missing (next stored record is {})",
                    r.seq
                ));
            }
            if r.prev_hash != prev_hash {
                return fail(
                    "its link to the previous record does not match (a record before it was deleted, inserted or reordered)".into(),
                );
            }
            if chain_hash(&prev_hash, &r) != r.hash {
                return fail(
                    "its content does not match its hash (the record was modified)".into(),
                );
            }
            prev_hash = r.hash;
            expected_seq += 1;
        }
    }
}

/// Search filters for auditors.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action_prefix: Option<String>,
    pub resource_contains: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: i64,
}

/// A tenant's records matching a query, newest first.
pub async fn search(
    pool: &AnyPool,
    tenant: &str,
    q: &AuditQuery,
) -> Result<Vec<StoredRecord>, AuthError> {
    let mut sql = format!("{SELECT} WHERE tenant_id = $1");
    let mut args: Vec<String> = vec![tenant.to_owned()];
    let mut push = |cond: &str, v: String, args: &mut Vec<String>| {
        args.push(v);
        sql.push_str(&format!(" AND {cond} ${}", args.len()));
    };
    if let Some(a) = &q.actor {
        push("actor =", a.clone(), &mut args);
    }
    if let Some(a) = &q.action_prefix {
        push("action LIKE", format!("{}%", a.replace('%', "")), &mut args);
    }
    if let Some(r) = &q.resource_contains {
        push(
            "resource LIKE",
            format!("%{}%", r.replace('%', "")),
            &mut args,
        );
    }
    let mut query_nums = Vec::new();
    if let Some(s) = q.since {
        query_nums.push(("at >=", s));
    }
    if let Some(u) = q.until {
        query_nums.push(("at <", u));
    }
    let text_args = args.len();
    for (i, (cond, _)) in query_nums.iter().enumerate() {
        sql.push_str(&format!(" AND {cond} ${}", text_args + i + 1));
    }
    sql.push_str(&format!(
        " ORDER BY seq DESC LIMIT {}",
        q.limit.clamp(1, 10_000)
    ));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in &args {
        query = query.bind(a.clone());
    }
    for (_, v) in &query_nums {
        query = query.bind(*v);
    }
    let rows = query
        .fetch_all(pool)
        .await
        .map_err(AuthError::db("searching the audit log"))?;
    rows.iter().map(stored).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_every_field() {
        let r = StoredRecord {
            seq: 1,
            at: 2,
            tenant: "t".into(),
            actor: "a".into(),
            action: "x".into(),
            outcome: "success".into(),
            resource: "r".into(),
            detail: "d".into(),
            source: "s".into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let h = chain_hash(GENESIS, &r);
        let mut r2 = r.clone();
        r2.detail = "e".into();
        assert_ne!(h, chain_hash(GENESIS, &r2));
        // field boundaries are unambiguous
        let mut r3 = r.clone();
        r3.actor = "ax".into();
        r3.action = String::new();
        assert_ne!(h, chain_hash(GENESIS, &r3));
    }
}
