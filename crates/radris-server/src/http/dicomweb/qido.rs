//! QIDO-RS (PS3.18 10.6): the same matching as C-FIND (the index's typed queries), with
//! `includefield`, `fuzzymatching`, `limit`/`offset` and a `Warning` when a page is cut.
//!
//! Responses are assembled from the stored DICOM JSON headers by picking keys, without
//! parsing them into DICOM objects: a search of 200 studies costs a few milliseconds.
//!
//! Authorisation: a search under a study (`/studies/{study}/…`) was decided by the auth
//! middleware for that study. A search across studies returns, for a caller who may read only
//! some studies (a referring physician, a technologist of one site), only rows of those
//! studies; `offset` and `limit` then count the rows the caller may see. This scans matches
//! from the start (cost grows with `offset`): at most [`MAX_FILTER_SCAN`] matches are
//! examined per request, beyond which the answer is cut with the usual `Warning`.

use std::collections::{BTreeMap, HashMap};

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use radris_auth::Principal;
use radris_dicom::query::{FindQuery, Matcher, QueryKey, QueryLevel};
use radris_store::FindRow;
use serde_json::{Map, Value, json};

use super::super::AppState;
use super::super::auth::{Authz, StudyReadFilter};
use super::super::problem::ApiError;
use super::{base_url, uid};

/// Most results one request may ask for.
pub const MAX_LIMIT: u64 = 10_000;

/// Most matches a filtered search (see the module documentation) examines.
pub const MAX_FILTER_SCAN: u64 = 50_000;
const FILTER_BATCH: u64 = 1_000;

type Params = Query<Vec<(String, String)>>;

const STUDY_KEYS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::INSTANCE_AVAILABILITY,
    tags::MODALITIES_IN_STUDY,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::STUDY_DESCRIPTION,
    tags::RETRIEVE_URL,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_ID,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
];

const SERIES_KEYS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::MODALITY,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::SERIES_DESCRIPTION,
    tags::INSTANCE_AVAILABILITY,
    tags::RETRIEVE_URL,
    tags::BODY_PART_EXAMINED,
    tags::STUDY_INSTANCE_UID,
    tags::SERIES_INSTANCE_UID,
    tags::SERIES_NUMBER,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::PERFORMED_PROCEDURE_STEP_START_TIME,
];

const INSTANCE_KEYS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::INSTANCE_AVAILABILITY,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::RETRIEVE_URL,
    tags::STUDY_INSTANCE_UID,
    tags::SERIES_INSTANCE_UID,
    tags::INSTANCE_NUMBER,
    tags::NUMBER_OF_FRAMES,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
];

fn hex(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

fn vr_of(tag: Tag) -> VR {
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr().relaxed())
        .unwrap_or(VR::UN)
}

/// A query parameter name (keyword or 8 hex digits) as a tag.
fn parse_attribute(name: &str) -> Result<Tag, ApiError> {
    if name.contains('.') {
        return Err(ApiError::bad_request(format!(
            "{name}: matching on sequence items is not supported"
        )));
    }
    if name.len() == 8 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        let g = u16::from_str_radix(&name[..4], 16).unwrap_or_default();
        let e = u16::from_str_radix(&name[4..], 16).unwrap_or_default();
        return Ok(Tag(g, e));
    }
    StandardDataDictionary
        .by_name(name)
        .map(|e| e.tag())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown query parameter {name:?}: expected an attribute keyword or tag, includefield, fuzzymatching, limit or offset"
            ))
        })
}

/// A parsed QIDO request.
struct Search {
    query: FindQuery,
    include_all: bool,
    include: Vec<Tag>,
    offset: u64,
    limit: u64,
}

fn parse_search(
    level: QueryLevel,
    params: &[(String, String)],
    fixed: &[(Tag, String)],
) -> Result<Search, ApiError> {
    let mut keys: Vec<QueryKey> = Vec::new();
    let mut include = Vec::new();
    let mut include_all = false;
    let fuzzy = wants_fuzzy(params);
    let mut offset = 0;
    let mut limit = None;
    for (k, v) in params {
        match k.as_str() {
            "includefield" => {
                for f in v.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if f == "all" {
                        include_all = true;
                    } else {
                        include.push(parse_attribute(f)?);
                    }
                }
            }
            "fuzzymatching" => {
                if v != "true" && v != "false" {
                    return Err(ApiError::bad_request("fuzzymatching must be true or false"));
                }
            }
            "offset" => {
                offset = v
                    .parse::<u64>()
                    .ok()
                    .filter(|o| *o <= 1 << 40)
                    .ok_or_else(|| {
                        ApiError::bad_request("offset must be an integer from 0 to 2^40")
                    })?
            }
            "limit" => {
                let l: u64 = v
                    .parse()
                    .map_err(|_| ApiError::bad_request("limit must be a positive integer"))?;
                if l == 0 || l > MAX_LIMIT {
                    return Err(ApiError::bad_request(format!(
                        "limit must be between 1 and {MAX_LIMIT}"
                    )));
                }
                limit = Some(l);
            }
            name => {
                let tag = parse_attribute(name)?;
                let vr = vr_of(tag);
                if vr == VR::SQ {
                    return Err(ApiError::bad_request(format!(
                        "{name}: matching on a sequence is not supported"
                    )));
                }
                let value = if fuzzy && fuzzy_candidate(vr, v) {
                    format!("*{}*", v.trim_matches('*'))
                } else {
                    v.clone()
                };
                keys.retain(|k| k.tag != tag);
                keys.push(QueryKey {
                    tag,
                    vr,
                    matcher: Matcher::parse(vr, &value),
                });
            }
        }
    }
    for (tag, value) in fixed {
        keys.retain(|k| k.tag != *tag);
        keys.push(QueryKey {
            tag: *tag,
            vr: VR::UI,
            matcher: Matcher::parse(VR::UI, value),
        });
    }
    keys.sort_by_key(|k| k.tag);
    Ok(Search {
        query: FindQuery { level, keys },
        include_all,
        include,
        offset,
        limit: limit.unwrap_or(MAX_LIMIT),
    })
}

/// Fuzzy matching of person names: a case-insensitive match anywhere in the name (any
/// component, any position), e.g. `PatientName=ohn` finds `Doe^John`.
fn fuzzy_candidate(vr: VR, value: &str) -> bool {
    vr == VR::PN && !value.is_empty() && !value.contains('?')
}

fn wants_fuzzy(params: &[(String, String)]) -> bool {
    params
        .iter()
        .any(|(k, v)| k == "fuzzymatching" && v == "true")
}

fn first_string(map: &Map<String, Value>, tag: Tag) -> Option<String> {
    map.get(&hex(tag))?
        .get("Value")?
        .get(0)?
        .as_str()
        .map(str::to_owned)
}

fn respond(
    state: &AppState,
    headers: &HeaderMap,
    level: QueryLevel,
    search: &Search,
    rows: Vec<FindRow>,
    more: bool,
) -> Result<Response, ApiError> {
    let base = base_url(state, headers);
    let defaults: &[Tag] = match level {
        QueryLevel::Study | QueryLevel::Patient => STUDY_KEYS,
        QueryLevel::Series => SERIES_KEYS,
        QueryLevel::Image => INSTANCE_KEYS,
    };
    let mut wanted: Vec<Tag> = defaults.to_vec();
    wanted.extend(search.include.iter().copied());
    wanted.extend(search.query.keys.iter().map(|k| k.tag));
    wanted.sort();
    wanted.dedup();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let stored: Map<String, Value> = match serde_json::from_str(&row.header_json) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(ApiError::internal(
                    "reading a stored header",
                    "stored header is not a JSON object",
                ));
            }
        };
        let mut obj: BTreeMap<String, Value> = BTreeMap::new();
        if search.include_all {
            for (k, v) in &stored {
                if v.get("BulkDataURI").is_none() {
                    obj.insert(k.clone(), v.clone());
                }
            }
        }
        let study = first_string(&stored, tags::STUDY_INSTANCE_UID).unwrap_or_default();
        let series = first_string(&stored, tags::SERIES_INSTANCE_UID).unwrap_or_default();
        let sop = first_string(&stored, tags::SOP_INSTANCE_UID).unwrap_or_default();
        for &tag in &wanted {
            let key = hex(tag);
            let count = |n: i64| json!({"vr": "IS", "Value": [n]});
            let value = match tag {
                t if t == tags::NUMBER_OF_STUDY_RELATED_SERIES => count(row.num_series),
                t if t == tags::NUMBER_OF_STUDY_RELATED_INSTANCES
                    || t == tags::NUMBER_OF_SERIES_RELATED_INSTANCES =>
                {
                    count(row.num_instances)
                }
                t if t == tags::MODALITIES_IN_STUDY => {
                    if row.modalities.is_empty() {
                        json!({"vr": "CS"})
                    } else {
                        json!({"vr": "CS", "Value": row.modalities})
                    }
                }
                t if t == tags::INSTANCE_AVAILABILITY => json!({"vr": "CS", "Value": ["ONLINE"]}),
                t if t == tags::RETRIEVE_URL => {
                    let url = match level {
                        QueryLevel::Study | QueryLevel::Patient => {
                            format!("{base}/studies/{study}")
                        }
                        QueryLevel::Series => format!("{base}/studies/{study}/series/{series}"),
                        QueryLevel::Image => {
                            format!("{base}/studies/{study}/series/{series}/instances/{sop}")
                        }
                    };
                    json!({"vr": "UR", "Value": [url]})
                }
                _ => match stored.get(&key) {
                    Some(v) if v.get("BulkDataURI").is_none() => v.clone(),
                    Some(_) => continue,
                    None => {
                        // Specific Character Set and Timezone are returned only when present
                        if tag == tags::SPECIFIC_CHARACTER_SET
                            || tag == tags::TIMEZONE_OFFSET_FROM_UTC
                        {
                            continue;
                        }
                        json!({"vr": vr_of(tag).to_string()})
                    }
                },
            };
            obj.insert(key, value);
        }
        out.push(Value::Object(obj.into_iter().collect()));
    }
    let body = serde_json::to_string(&out).map_err(|e| ApiError::internal("QIDO response", e))?;
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/dicom+json"),
        )],
        body,
    )
        .into_response();
    if more {
        resp.headers_mut().insert(
            header::WARNING,
            HeaderValue::from_static(
                "299 radris \"There are more results than returned; use offset to get the next page.\"",
            ),
        );
    }
    Ok(resp)
}

async fn search(
    state: AppState,
    principal: Principal,
    authz: Authz,
    headers: HeaderMap,
    level: QueryLevel,
    params: Vec<(String, String)>,
    fixed: Vec<(Tag, String)>,
) -> Result<Response, ApiError> {
    let s = parse_search(level, &params, &fixed)?;
    // under a study in the path the middleware has decided already
    let readable = if fixed.is_empty() {
        authz.study_filter(&state).await?
    } else {
        None
    };
    let (rows, more) = match readable {
        None => {
            state
                .archive
                .index()
                .find_page(&principal.tenant, &s.query, s.offset, Some(s.limit))
                .await?
        }
        Some(readable) => filtered_page(&state, &principal, &s, &readable).await?,
    };
    respond(&state, &headers, level, &s, rows, more)
}

/// The `offset`/`limit` window of the matches of readable studies; whether there are more.
async fn filtered_page(
    state: &AppState,
    principal: &Principal,
    s: &Search,
    readable: &StudyReadFilter,
) -> Result<(Vec<FindRow>, bool), ApiError> {
    let index = state.archive.index();
    let mut decided: HashMap<String, bool> = HashMap::new();
    let mut skip = s.offset;
    let mut out = Vec::new();
    let mut position = 0u64;
    loop {
        let (rows, more) = index
            .find_page(&principal.tenant, &s.query, position, Some(FILTER_BATCH))
            .await?;
        let n = rows.len() as u64;
        let studies: Vec<String> = rows.iter().map(study_of_row).collect();
        let mut unknown: Vec<String> = studies
            .iter()
            .filter(|u| !decided.contains_key(*u))
            .cloned()
            .collect();
        unknown.sort();
        unknown.dedup();
        for a in index.study_access_many(&principal.tenant, &unknown).await? {
            let allowed = readable.allows(&a);
            decided.insert(a.study_uid.clone(), allowed);
        }
        for (row, study) in rows.into_iter().zip(studies) {
            if !decided.get(&study).copied().unwrap_or(false) {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if out.len() as u64 >= s.limit {
                return Ok((out, true));
            }
            out.push(row);
        }
        position += n;
        if !more || n == 0 {
            return Ok((out, false));
        }
        if position >= MAX_FILTER_SCAN {
            return Ok((out, true));
        }
    }
}

fn study_of_row(row: &FindRow) -> String {
    match serde_json::from_str::<Value>(&row.header_json) {
        Ok(Value::Object(m)) => first_string(&m, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        _ => String::new(),
    }
}

pub async fn studies(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<Authz>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, ApiError> {
    search(st, p, authz, headers, QueryLevel::Study, params, vec![]).await
}

pub async fn all_series(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<Authz>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, ApiError> {
    search(st, p, authz, headers, QueryLevel::Series, params, vec![]).await
}

pub async fn all_instances(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<Authz>,
    headers: HeaderMap,
    Query(params): Params,
) -> Result<Response, ApiError> {
    search(st, p, authz, headers, QueryLevel::Image, params, vec![]).await
}

pub async fn study_series(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<Authz>,
    headers: HeaderMap,
    Path(study): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let fixed = vec![(tags::STUDY_INSTANCE_UID, uid("study UID", &study)?)];
    search(st, p, authz, headers, QueryLevel::Series, params, fixed).await
}

pub async fn study_instances(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<Authz>,
    headers: HeaderMap,
    Path(study): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let fixed = vec![(tags::STUDY_INSTANCE_UID, uid("study UID", &study)?)];
    search(st, p, authz, headers, QueryLevel::Image, params, fixed).await
}

pub async fn series_instances(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<Authz>,
    headers: HeaderMap,
    Path((study, series)): Path<(String, String)>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let fixed = vec![
        (tags::STUDY_INSTANCE_UID, uid("study UID", &study)?),
        (tags::SERIES_INSTANCE_UID, uid("series UID", &series)?),
    ];
    search(st, p, authz, headers, QueryLevel::Image, params, fixed).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn parses_keys_includefield_and_paging() {
        let s = parse_search(
            QueryLevel::Study,
            &p(&[
                ("PatientName", "doe*"),
                ("00080020", "20200101-20201231"),
                ("includefield", "StudyDescription,00081030"),
                ("limit", "10"),
                ("offset", "20"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(s.limit, 10);
        assert_eq!(s.offset, 20);
        assert_eq!(s.query.keys.len(), 2);
        assert!(matches!(
            s.query.matcher(tags::STUDY_DATE),
            Some(Matcher::Range { .. })
        ));
        assert_eq!(
            s.include,
            vec![tags::STUDY_DESCRIPTION, tags::STUDY_DESCRIPTION]
        );
    }

    #[test]
    fn refuses_bad_parameters() {
        for bad in [
            ("Bogus", "1"),
            ("limit", "0"),
            ("limit", "1000000"),
            ("limit", "x"),
            ("offset", "-1"),
            ("fuzzymatching", "maybe"),
            ("ReferencedSeriesSequence.SeriesInstanceUID", "1.2"),
            ("ReferencedSeriesSequence", "1.2"),
        ] {
            assert!(
                parse_search(QueryLevel::Study, &p(&[bad]), &[]).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fuzzy_names_match_anywhere() {
        let s = parse_search(
            QueryLevel::Study,
            &p(&[("fuzzymatching", "true"), ("PatientName", "ohn")]),
            &[],
        )
        .unwrap();
        let m = s.query.matcher(tags::PATIENT_NAME).unwrap();
        assert!(m.matches(VR::PN, "Doe^John"));
    }
}
