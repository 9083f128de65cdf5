//! Typed queries → SQL: the indexed columns, PS3.4 matching as SQL predicates (LIKE with
//! `!` as escape, ranges, lists), joins per query level, and the post-filter on the stored
//! header for keys without a column.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use radris_core::TenantId;
use radris_dicom::query::{FindQuery, Matcher, QueryKey, QueryLevel};

/// One indexed column that C-FIND/QIDO can match on.
pub(super) struct Column {
    pub(super) tag: Tag,
    pub(super) expr: &'static str,
    pub(super) level: QueryLevel,
}

pub(super) const COLUMNS: &[Column] = &[
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

/// SQL text with positional arguments, all bound as strings.
#[derive(Default)]
pub(super) struct Sql {
    pub(super) text: String,
    pub(super) args: Vec<String>,
}

impl Sql {
    pub(super) fn arg(&mut self, v: impl Into<String>) -> String {
        self.args.push(v.into());
        format!("${}", self.args.len())
    }
}

/// Escape a literal for `LIKE … ESCAPE '!'`.
pub(super) fn like_escape(s: &str) -> String {
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
pub(super) fn like_pattern(p: &str) -> String {
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

pub(super) fn from_clause(level: QueryLevel) -> &'static str {
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
pub(super) fn where_clause<'q>(
    sql: &mut Sql,
    tenant: &TenantId,
    q: &'q FindQuery,
    level: QueryLevel,
) -> Vec<&'q QueryKey> {
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
                    // LIKE's `%` would run across the `|` between values: the wildcard is
                    // checked again on each value
                    if matches!(key.matcher, Matcher::Wildcard(_)) {
                        post.push(key);
                    }
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

pub(super) fn order_clause(level: QueryLevel) -> &'static str {
    match level {
        QueryLevel::Patient => " ORDER BY p.patient_id",
        QueryLevel::Study => " ORDER BY st.study_date, st.study_time, st.study_uid",
        QueryLevel::Series => " ORDER BY LENGTH(se.series_number), se.series_number, se.series_uid",
        QueryLevel::Image => " ORDER BY LENGTH(i.instance_number), i.instance_number, i.sop_uid",
    }
}

pub(super) fn bind_all<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: &'q [String],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    args.iter().fold(query, |q, a| q.bind(a.as_str()))
}

/// Post-filter on keys without a column (matched against the stored header) and on a
/// wildcard for ModalitiesInStudy (matched against each of the study's `modalities`, stored as
/// `|CT|MR|`).
pub(super) fn post_filter(header_json: &str, modalities: &str, keys: &[&QueryKey]) -> bool {
    if keys.is_empty() {
        return true;
    }
    let (on_modalities, on_header): (Vec<&QueryKey>, Vec<&QueryKey>) = keys
        .iter()
        .partition(|k| k.tag == tags::MODALITIES_IN_STUDY);
    if !on_modalities.is_empty() {
        let values = modalities.trim_matches('|').replace('|', "\\");
        if values.is_empty()
            || !on_modalities
                .iter()
                .all(|k| k.matcher.matches(k.vr, &values))
        {
            return false;
        }
    }
    if on_header.is_empty() {
        return true;
    }
    let Ok(obj) = radris_dicom::attrs::header_from_json(header_json) else {
        return false;
    };
    on_header.iter().all(|k| {
        let v = radris_dicom::attrs::text(&obj, k.tag);
        k.matcher.matches(k.vr, &v)
    })
}
