//! Browsing for the REST API and the web application's worklist: filtered, sorted study lists
//! with keyset ("cursor") paging, so page 10,000 of a million studies costs what page 1 does.

use radris_core::TenantId;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Index;
use super::sql::{Sql, bind_all, like_escape, like_pattern};
use crate::StoreError;

/// How a study list is ordered. Every order ends with the Study Instance UID, so it is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StudySort {
    /// Study date and time.
    Date,
    /// When the archive first received the study.
    Received,
    Accession,
}

/// Filters of a study list; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct StudyFilter {
    pub patient_id: Option<String>,
    /// DICOM wildcards allowed (`DOE*`), case-insensitive.
    pub patient_name: Option<String>,
    pub accession: Option<String>,
    pub modality: Option<String>,
    /// `YYYYMMDD`, inclusive.
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    /// Words of the study description, case-sensitive substring.
    pub description: Option<String>,
}

/// One row of a study list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudySummary {
    pub study_uid: String,
    pub patient_id: String,
    pub patient_name: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_date: String,
    pub study_time: String,
    pub accession: String,
    pub description: String,
    pub modalities: Vec<String>,
    pub num_series: i64,
    pub num_instances: i64,
    pub received_at: i64,
    /// The site the study was acquired at ('' = unknown), for authorisation.
    pub site: String,
    /// ReferringPhysicianName, trimmed and upper-cased, for authorisation.
    pub referring_norm: String,
}

/// What authorisation policies need to know of a study (see `radris_auth::policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyAccess {
    pub study_uid: String,
    pub patient_id: String,
    /// '' = unknown.
    pub site: String,
    /// ReferringPhysicianName, trimmed and upper-cased ('' = none).
    pub referring_norm: String,
}

impl StudySummary {
    /// The study's authorisation attributes.
    pub fn access(&self) -> StudyAccess {
        StudyAccess {
            study_uid: self.study_uid.clone(),
            patient_id: self.patient_id.clone(),
            site: self.site.clone(),
            referring_norm: self.referring_norm.clone(),
        }
    }
}

/// Rows a filtered list ([`Index::list_studies_where`], [`Index::list_patients_where`])
/// examines at most per request; a page that reaches it may hold fewer items than asked for
/// but carries a cursor to go on.
pub const MAX_FILTER_SCAN: usize = 10_000;
const FILTER_BATCH: u32 = 500;

/// One page and the cursor of the next (None on the last page).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Where a filtered listing goes after one batch: done, or on from a cursor.
enum Step<T> {
    Done(Page<T>),
    Next(String),
}

/// The kept items of successive keyset pages, up to `limit` (see
/// [`Index::list_studies_where`] for the paging guarantees).
struct Filtered<T> {
    items: Vec<T>,
    scanned: usize,
    limit: usize,
}

impl<T> Filtered<T> {
    fn new(limit: u32) -> Self {
        Filtered {
            items: Vec::new(),
            scanned: 0,
            limit: limit as usize,
        }
    }

    /// Examine one batch: `key` is an item's cursor, `keep` whether the caller gets it.
    fn take(
        &mut self,
        batch: Page<T>,
        key: impl Fn(&T) -> String,
        keep: impl Fn(&T) -> bool,
    ) -> Step<T> {
        let n = batch.items.len();
        for (i, item) in batch.items.into_iter().enumerate() {
            self.scanned += 1;
            let k = key(&item);
            if keep(&item) {
                self.items.push(item);
            }
            if self.items.len() >= self.limit || self.scanned >= MAX_FILTER_SCAN {
                let more = i + 1 < n || batch.next_cursor.is_some();
                return Step::Done(Page {
                    items: std::mem::take(&mut self.items),
                    next_cursor: more.then_some(k),
                });
            }
        }
        match batch.next_cursor {
            Some(c) => Step::Next(c),
            None => Step::Done(Page {
                items: std::mem::take(&mut self.items),
                next_cursor: None,
            }),
        }
    }
}

/// A series of a study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSummary {
    pub series_uid: String,
    pub study_uid: String,
    pub modality: String,
    pub series_number: String,
    pub description: String,
    pub body_part: String,
    pub num_instances: i64,
}

/// An instance of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSummary {
    pub sop_uid: String,
    pub series_uid: String,
    pub study_uid: String,
    pub sop_class_uid: String,
    pub instance_number: String,
    pub transfer_syntax: String,
    pub size_bytes: i64,
    pub sha256: String,
}

/// A patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientSummary {
    pub patient_id: String,
    pub patient_name: String,
    pub birth_date: String,
    pub sex: String,
    pub num_studies: i64,
    pub num_instances: i64,
}

/// Cursors are opaque to clients: hex of the sort key values, unit-separated.
fn encode_cursor(values: &[String]) -> String {
    hex::encode(values.join("\u{1f}"))
}

fn decode_cursor(cursor: &str, n: usize) -> Result<Vec<String>, StoreError> {
    let bad = || StoreError::Mismatch("invalid cursor".into());
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let values: Vec<String> = text.split('\u{1f}').map(str::to_owned).collect();
    if values.len() != n {
        return Err(bad());
    }
    Ok(values)
}

fn err(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::Database(format!("{what}: {e}"))
}

/// The columns [`study_row`] reads, in its order.
const STUDY_SELECT: &str = "SELECT st.study_uid, st.patient_id, p.patient_name, p.birth_date, p.sex, \
     st.study_date, st.study_time, st.accession, st.description, st.modalities, \
     st.num_series, st.num_instances, st.created_at, st.site, st.referring_norm \
     FROM studies st JOIN patients p ON p.tenant_id = st.tenant_id AND p.patient_id = st.patient_id";

fn study_row(r: &AnyRow) -> Result<StudySummary, StoreError> {
    let s = |i| r.try_get::<String, _>(i).map_err(err("study row"));
    let n = |i| r.try_get::<i64, _>(i).map_err(err("study row"));
    Ok(StudySummary {
        study_uid: s(0)?,
        patient_id: s(1)?,
        patient_name: s(2)?,
        patient_birth_date: s(3)?,
        patient_sex: s(4)?,
        study_date: s(5)?,
        study_time: s(6)?,
        accession: s(7)?,
        description: s(8)?,
        modalities: s(9)?
            .split('|')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        num_series: n(10)?,
        num_instances: n(11)?,
        received_at: n(12)?,
        site: s(13)?,
        referring_norm: s(14)?,
    })
}

fn study_cursor(sort: StudySort, s: &StudySummary) -> String {
    encode_cursor(&match sort {
        StudySort::Date => vec![
            s.study_date.clone(),
            s.study_time.clone(),
            s.study_uid.clone(),
        ],
        StudySort::Received => vec![s.received_at.to_string(), s.study_uid.clone()],
        StudySort::Accession => vec![s.accession.clone(), s.study_uid.clone()],
    })
}

const ACCESS_SELECT: &str =
    "SELECT st.study_uid, st.patient_id, st.site, st.referring_norm FROM studies st";

fn access_row(r: &AnyRow) -> Result<StudyAccess, StoreError> {
    let s = |i| r.try_get::<String, _>(i).map_err(err("study access row"));
    Ok(StudyAccess {
        study_uid: s(0)?,
        patient_id: s(1)?,
        site: s(2)?,
        referring_norm: s(3)?,
    })
}

impl Index {
    /// A page of a tenant's studies.
    pub async fn list_studies(
        &self,
        tenant: &TenantId,
        filter: &StudyFilter,
        sort: StudySort,
        descending: bool,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<StudySummary>, StoreError> {
        let mut sql = Sql {
            text: STUDY_SELECT.to_owned(),
            ..Sql::default()
        };
        let t = sql.arg(tenant.as_str());
        sql.text.push_str(&format!(" WHERE st.tenant_id = {t}"));
        if let Some(v) = &filter.patient_id {
            let a = sql.arg(v.clone());
            sql.text.push_str(&format!(" AND st.patient_id = {a}"));
        }
        if let Some(v) = &filter.patient_name {
            let a = sql.arg(like_pattern(&v.trim().to_uppercase()));
            sql.text
                .push_str(&format!(" AND p.patient_name_norm LIKE {a} ESCAPE '!'"));
        }
        if let Some(v) = &filter.accession {
            let a = sql.arg(v.clone());
            sql.text.push_str(&format!(" AND st.accession = {a}"));
        }
        if let Some(v) = &filter.modality {
            let a = sql.arg(format!("%|{}|%", like_escape(&v.to_uppercase())));
            sql.text
                .push_str(&format!(" AND st.modalities LIKE {a} ESCAPE '!'"));
        }
        if let Some(v) = &filter.date_from {
            let a = sql.arg(v.clone());
            sql.text.push_str(&format!(" AND st.study_date >= {a}"));
        }
        if let Some(v) = &filter.date_to {
            let a = sql.arg(v.clone());
            sql.text.push_str(&format!(" AND st.study_date <= {a}"));
        }
        if let Some(v) = &filter.description {
            let a = sql.arg(format!("%{}%", like_escape(v)));
            sql.text
                .push_str(&format!(" AND st.description LIKE {a} ESCAPE '!'"));
        }
        // created_at is numeric: compare it as a number, the text keys as text
        let keys: &[&str] = match sort {
            StudySort::Date => &["st.study_date", "st.study_time", "st.study_uid"],
            StudySort::Received => &["st.created_at", "st.study_uid"],
            StudySort::Accession => &["st.accession", "st.study_uid"],
        };
        let op = if descending { "<" } else { ">" };
        if let Some(c) = cursor {
            let values = decode_cursor(c, keys.len())?;
            let mut placeholders = Vec::new();
            for (k, v) in keys.iter().zip(values) {
                if *k == "st.created_at" {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| StoreError::Mismatch("invalid cursor".into()))?;
                    sql.args.push(n.to_string());
                    placeholders.push(format!("CAST(${} AS BIGINT)", sql.args.len()));
                } else {
                    placeholders.push(sql.arg(v));
                }
            }
            sql.text.push_str(&format!(
                " AND ({}) {op} ({})",
                keys.join(", "),
                placeholders.join(", ")
            ));
        }
        let dir = if descending { " DESC" } else { "" };
        let order: Vec<String> = keys.iter().map(|k| format!("{k}{dir}")).collect();
        sql.text.push_str(&format!(
            " ORDER BY {} LIMIT {}",
            order.join(", "),
            u64::from(limit) + 1
        ));
        let rows = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(sql.text.clone())),
            &sql.args,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err("list studies"))?;
        let mut items = rows.iter().map(study_row).collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => Some(study_cursor(sort, last)),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// One study, if the tenant has it.
    pub async fn study(
        &self,
        tenant: &TenantId,
        study_uid: &str,
    ) -> Result<Option<StudySummary>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{STUDY_SELECT} WHERE st.tenant_id = $1 AND st.study_uid = $2"
        )))
        .bind(tenant.as_str())
        .bind(study_uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(err("study"))?;
        row.as_ref().map(study_row).transpose()
    }

    /// The series of a study, by series number.
    pub async fn series_of(
        &self,
        tenant: &TenantId,
        study_uid: &str,
    ) -> Result<Vec<SeriesSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT series_uid, study_uid, modality, series_number, description, body_part, num_instances \
             FROM series WHERE tenant_id = $1 AND study_uid = $2 \
             ORDER BY LENGTH(series_number), series_number, series_uid",
        )
        .bind(tenant.as_str())
        .bind(study_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(err("series of a study"))?;
        rows.iter()
            .map(|r| {
                let s = |i| r.try_get::<String, _>(i).map_err(err("series row"));
                Ok(SeriesSummary {
                    series_uid: s(0)?,
                    study_uid: s(1)?,
                    modality: s(2)?,
                    series_number: s(3)?,
                    description: s(4)?,
                    body_part: s(5)?,
                    num_instances: r.try_get(6).map_err(err("series row"))?,
                })
            })
            .collect()
    }

    /// The instances of a series, by instance number.
    pub async fn instances_in_series(
        &self,
        tenant: &TenantId,
        series_uid: &str,
    ) -> Result<Vec<InstanceSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT sop_uid, series_uid, study_uid, sop_class_uid, instance_number, transfer_syntax, size_bytes, sha256 \
             FROM instances WHERE tenant_id = $1 AND series_uid = $2 \
             ORDER BY LENGTH(instance_number), instance_number, sop_uid",
        )
        .bind(tenant.as_str())
        .bind(series_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(err("instances of a series"))?;
        rows.iter()
            .map(|r| {
                let s = |i| r.try_get::<String, _>(i).map_err(err("instance row"));
                Ok(InstanceSummary {
                    sop_uid: s(0)?,
                    series_uid: s(1)?,
                    study_uid: s(2)?,
                    sop_class_uid: s(3)?,
                    instance_number: s(4)?,
                    transfer_syntax: s(5)?,
                    size_bytes: r.try_get(6).map_err(err("instance row"))?,
                    sha256: s(7)?,
                })
            })
            .collect()
    }

    /// A page of patients by Patient ID, optionally filtered by name (wildcards allowed).
    pub async fn list_patients(
        &self,
        tenant: &TenantId,
        name: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<PatientSummary>, StoreError> {
        let mut sql = Sql {
            text: "SELECT patient_id, patient_name, birth_date, sex, num_studies, num_instances FROM patients"
                .to_owned(),
            ..Sql::default()
        };
        let t = sql.arg(tenant.as_str());
        sql.text.push_str(&format!(" WHERE tenant_id = {t}"));
        if let Some(n) = name {
            let a = sql.arg(like_pattern(&n.trim().to_uppercase()));
            sql.text
                .push_str(&format!(" AND patient_name_norm LIKE {a} ESCAPE '!'"));
        }
        if let Some(c) = cursor {
            let v = decode_cursor(c, 1)?;
            let a = sql.arg(v[0].clone());
            sql.text.push_str(&format!(" AND patient_id > {a}"));
        }
        sql.text.push_str(&format!(
            " ORDER BY patient_id LIMIT {}",
            u64::from(limit) + 1
        ));
        let rows = bind_all(
            sqlx::query(sqlx::AssertSqlSafe(sql.text.clone())),
            &sql.args,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err("list patients"))?;
        let mut items = rows
            .iter()
            .map(|r| {
                let s = |i| r.try_get::<String, _>(i).map_err(err("patient row"));
                let n = |i| r.try_get::<i64, _>(i).map_err(err("patient row"));
                Ok(PatientSummary {
                    patient_id: s(0)?,
                    patient_name: s(1)?,
                    birth_date: s(2)?,
                    sex: s(3)?,
                    num_studies: n(4)?,
                    num_instances: n(5)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => Some(encode_cursor(std::slice::from_ref(&last.patient_id))),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// A page of the studies `keep` accepts (authorisation: a caller who may read only some
    /// studies). Keyset paging stays exact: the cursor is the sort key of the last study
    /// *examined*, so the next page starts after it whether it was kept or not. At most
    /// [`MAX_FILTER_SCAN`] studies are examined per call.
    #[allow(clippy::too_many_arguments)]
    pub async fn list_studies_where(
        &self,
        tenant: &TenantId,
        filter: &StudyFilter,
        sort: StudySort,
        descending: bool,
        cursor: Option<&str>,
        limit: u32,
        keep: &(dyn Fn(&StudyAccess) -> bool + Sync),
    ) -> Result<Page<StudySummary>, StoreError> {
        let mut found = Filtered::new(limit);
        let mut cursor = cursor.map(str::to_owned);
        loop {
            let batch = self
                .list_studies(
                    tenant,
                    filter,
                    sort,
                    descending,
                    cursor.as_deref(),
                    FILTER_BATCH.max(limit),
                )
                .await?;
            match found.take(batch, |s| study_cursor(sort, s), |s| keep(&s.access())) {
                Step::Done(page) => return Ok(page),
                Step::Next(c) => cursor = Some(c),
            }
        }
    }

    /// A page of the patients for whom `visible` accepts the list of their studies (e.g.: at
    /// least one study the caller may read), with the paging guarantees of
    /// [`Index::list_studies_where`].
    pub async fn list_patients_where(
        &self,
        tenant: &TenantId,
        name: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
        visible: &(dyn Fn(&[StudyAccess]) -> bool + Sync),
    ) -> Result<Page<PatientSummary>, StoreError> {
        let mut found = Filtered::new(limit);
        let mut cursor = cursor.map(str::to_owned);
        loop {
            let batch = self
                .list_patients(tenant, name, cursor.as_deref(), FILTER_BATCH.max(limit))
                .await?;
            let ids: Vec<String> = batch.items.iter().map(|p| p.patient_id.clone()).collect();
            let mut studies: std::collections::HashMap<String, Vec<StudyAccess>> =
                std::collections::HashMap::new();
            for a in self.access_where_in(tenant, "st.patient_id", &ids).await? {
                studies.entry(a.patient_id.clone()).or_default().push(a);
            }
            let step = found.take(
                batch,
                |p| encode_cursor(std::slice::from_ref(&p.patient_id)),
                |p| {
                    visible(
                        studies
                            .get(&p.patient_id)
                            .map(Vec::as_slice)
                            .unwrap_or_default(),
                    )
                },
            );
            match step {
                Step::Done(page) => return Ok(page),
                Step::Next(c) => cursor = Some(c),
            }
        }
    }

    /// The authorisation attributes of a study, if the tenant has it.
    pub async fn study_access(
        &self,
        tenant: &TenantId,
        study_uid: &str,
    ) -> Result<Option<StudyAccess>, StoreError> {
        self.access_by("st.study_uid = $2", tenant, study_uid).await
    }

    /// The authorisation attributes of the study a series belongs to.
    pub async fn study_access_of_series(
        &self,
        tenant: &TenantId,
        series_uid: &str,
    ) -> Result<Option<StudyAccess>, StoreError> {
        self.access_by(
            "st.study_uid = (SELECT se.study_uid FROM series se WHERE se.tenant_id = $1 AND se.series_uid = $2)",
            tenant,
            series_uid,
        )
        .await
    }

    /// The authorisation attributes of the study an instance belongs to.
    pub async fn study_access_of_instance(
        &self,
        tenant: &TenantId,
        sop_uid: &str,
    ) -> Result<Option<StudyAccess>, StoreError> {
        self.access_by(
            "st.study_uid = (SELECT i.study_uid FROM instances i WHERE i.tenant_id = $1 AND i.sop_uid = $2)",
            tenant,
            sop_uid,
        )
        .await
    }

    async fn access_by(
        &self,
        condition: &'static str,
        tenant: &TenantId,
        value: &str,
    ) -> Result<Option<StudyAccess>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ACCESS_SELECT} WHERE st.tenant_id = $1 AND {condition}"
        )))
        .bind(tenant.as_str())
        .bind(value)
        .fetch_optional(&self.pool)
        .await
        .map_err(err("study access"))?;
        row.as_ref().map(access_row).transpose()
    }

    /// The authorisation attributes of the tenant's studies whose `column` (a trusted column
    /// name) is one of `values`, queried 200 values at a time.
    async fn access_where_in(
        &self,
        tenant: &TenantId,
        column: &str,
        values: &[String],
    ) -> Result<Vec<StudyAccess>, StoreError> {
        let mut out = Vec::new();
        for chunk in values.chunks(200) {
            let mut sql = Sql {
                text: ACCESS_SELECT.to_owned(),
                ..Sql::default()
            };
            let t = sql.arg(tenant.as_str());
            let list: Vec<String> = chunk.iter().map(|v| sql.arg(v.clone())).collect();
            sql.text.push_str(&format!(
                " WHERE st.tenant_id = {t} AND {column} IN ({})",
                list.join(", ")
            ));
            let rows = bind_all(
                sqlx::query(sqlx::AssertSqlSafe(sql.text.clone())),
                &sql.args,
            )
            .fetch_all(&self.pool)
            .await
            .map_err(err("study access"))?;
            for r in &rows {
                out.push(access_row(r)?);
            }
        }
        Ok(out)
    }

    /// The authorisation attributes of several studies of a tenant (those it has).
    pub async fn study_access_many(
        &self,
        tenant: &TenantId,
        study_uids: &[String],
    ) -> Result<Vec<StudyAccess>, StoreError> {
        self.access_where_in(tenant, "st.study_uid", study_uids)
            .await
    }

    /// Record the site a study was acquired at, unless it already has one (the first site to
    /// store into a study owns it); whether it changed.
    pub async fn stamp_study_site(
        &self,
        tenant: &TenantId,
        study_uid: &str,
        site: &str,
    ) -> Result<bool, StoreError> {
        if site.is_empty() {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE studies SET site = $1 WHERE tenant_id = $2 AND study_uid = $3 AND site = ''",
        )
        .bind(site)
        .bind(tenant.as_str())
        .bind(study_uid)
        .execute(&self.pool)
        .await
        .map_err(err("stamping a study's site"))?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(&["20200101".into(), "1.2.3".into()]);
        assert_eq!(decode_cursor(&c, 2).unwrap(), vec!["20200101", "1.2.3"]);
        assert!(decode_cursor(&c, 3).is_err());
        assert!(decode_cursor("zz", 1).is_err());
    }

    fn page(items: std::ops::Range<u32>, next: Option<&str>) -> Page<u32> {
        Page {
            items: items.collect(),
            next_cursor: next.map(str::to_owned),
        }
    }

    fn done(step: Step<u32>) -> Page<u32> {
        match step {
            Step::Done(p) => p,
            Step::Next(c) => panic!("expected a page, got the cursor {c}"),
        }
    }

    #[test]
    fn filtered_paging_keeps_the_cursor_of_the_last_examined_item() {
        let key = |x: &u32| x.to_string();
        let even = |x: &u32| x.is_multiple_of(2);
        // the limit is reached inside a batch: the cursor is the last item looked at
        let mut f = Filtered::new(3);
        let p = done(f.take(page(0..10, Some("9")), key, even));
        assert_eq!(p.items, vec![0, 2, 4]);
        assert_eq!(p.next_cursor.as_deref(), Some("4"));
        // a batch without enough goes on from its cursor, then the last batch ends the listing
        let mut f = Filtered::new(3);
        match f.take(page(0..3, Some("2")), key, even) {
            Step::Next(c) => assert_eq!(c, "2"),
            Step::Done(_) => panic!("two kept of three wanted: go on"),
        }
        let p = done(f.take(page(3..6, None), key, even));
        assert_eq!(p.items, vec![0, 2, 4]);
        assert_eq!(p.next_cursor.as_deref(), Some("4"));
        let mut f = Filtered::new(5);
        let p = done(f.take(page(0..4, None), key, even));
        assert_eq!((p.items, p.next_cursor), (vec![0, 2], None));
        // the limit met on a batch's last item: a cursor only if the listing goes on
        let mut f = Filtered::new(1);
        let p = done(f.take(page(0..1, None), key, even));
        assert_eq!((p.items, p.next_cursor), (vec![0], None));
    }

    #[test]
    fn filtered_paging_stops_after_the_scan_budget() {
        let mut f = Filtered::new(10);
        let batch = Page {
            items: (0..MAX_FILTER_SCAN as u32 + 5).collect(),
            next_cursor: None,
        };
        let p = done(f.take(batch, |x| x.to_string(), |_| false));
        assert!(p.items.is_empty());
        // nothing kept, but the caller may ask again from where the scan stopped
        assert_eq!(p.next_cursor, Some((MAX_FILTER_SCAN - 1).to_string()));
    }
}
