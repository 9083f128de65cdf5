//! Query identifiers (C-FIND, QIDO-RS) parsed into typed matching keys, with the matching
//! rules of PS3.4 C.2.2.2: single value, wildcard (`*`, `?`), range (DA/TM/DT), list of UIDs,
//! universal. Person names match case-insensitively.
//!
//! The index translates [`Matcher`]s into SQL; [`Matcher::matches`] is the same rule in Rust,
//! used for keys the index has no column for.

use dicom_core::header::Header;
use dicom_core::value::Value;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// Why a query identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryError {
    #[error("Query/Retrieve Level (0008,0052) is missing")]
    MissingLevel,
    #[error("unknown Query/Retrieve Level {0:?}")]
    UnknownLevel(String),
    #[error("retrieve at {level} level needs a {key} value")]
    MissingUniqueKey {
        level: &'static str,
        key: &'static str,
    },
}

/// The level of a query (PS3.4 C.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QueryLevel {
    Patient,
    Study,
    Series,
    Image,
}

impl QueryLevel {
    pub fn parse(raw: &str) -> Result<Self, QueryError> {
        match raw.trim_matches([' ', '\0']).to_ascii_uppercase().as_str() {
            "PATIENT" => Ok(QueryLevel::Patient),
            "STUDY" => Ok(QueryLevel::Study),
            "SERIES" => Ok(QueryLevel::Series),
            "IMAGE" | "INSTANCE" => Ok(QueryLevel::Image),
            other => Err(QueryError::UnknownLevel(other.chars().take(32).collect())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QueryLevel::Patient => "PATIENT",
            QueryLevel::Study => "STUDY",
            QueryLevel::Series => "SERIES",
            QueryLevel::Image => "IMAGE",
        }
    }
}

/// How one key matches (PS3.4 C.2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Empty value: every entity matches; the key is only returned.
    Universal,
    /// Exact value (already upper-cased for PN).
    Single(String),
    /// `*` and `?` wildcards (already upper-cased for PN).
    Wildcard(String),
    /// Inclusive range; an open end is `None`.
    Range {
        from: Option<String>,
        to: Option<String>,
    },
    /// Any of these values (UID list matching, value lists).
    List(Vec<String>),
}

fn is_range_vr(vr: VR) -> bool {
    matches!(vr, VR::DA | VR::TM | VR::DT)
}

/// Whether matching on this VR ignores case: person names (PS3.4 C.2.2.2.1 leaves case to
/// the SCP; radiology users expect `doe*` to find `DOE^JOHN`).
pub fn is_case_insensitive(vr: VR) -> bool {
    vr == VR::PN
}

/// Normalise a stored or queried value of this VR for comparison: trimmed; a person name
/// also upper-cased and without trailing empty components ([`radris_core::person_name_key`]).
pub fn normalise(vr: VR, value: &str) -> String {
    if is_case_insensitive(vr) {
        radris_core::person_name_key(value)
    } else {
        value.trim_matches([' ', '\0']).to_owned()
    }
}

impl Matcher {
    /// Interpret a raw key value of the given VR.
    pub fn parse(vr: VR, raw: &str) -> Matcher {
        let raw = raw.trim_matches([' ', '\0']);
        if raw.is_empty() || raw == "*" {
            return Matcher::Universal;
        }
        if raw.contains('\\') && vr != VR::PN {
            let values: Vec<String> = raw
                .split('\\')
                .map(|v| normalise(vr, v))
                .filter(|v| !v.is_empty())
                .collect();
            return match values.len() {
                0 => Matcher::Universal,
                1 => Matcher::parse(vr, &values[0]),
                _ => Matcher::List(values),
            };
        }
        if is_range_vr(vr) && raw.contains('-') {
            let split_at = match vr {
                VR::DT => dt_range_separator(raw),
                _ => raw.find('-'),
            };
            if let Some(i) = split_at {
                let (from, to) = (&raw[..i], &raw[i + 1..]);
                let opt = |s: &str| {
                    let s = s.trim();
                    (!s.is_empty()).then(|| s.to_owned())
                };
                let (from, to) = (opt(from).map(|f| lower_bound(vr, f)), opt(to));
                if from.is_none() && to.is_none() {
                    return Matcher::Universal;
                }
                return Matcher::Range { from, to };
            }
        }
        let v = normalise(vr, raw);
        if v.is_empty() {
            // a name of empty components only (`^^`)
            return Matcher::Universal;
        }
        if vr != VR::UI && (v.contains('*') || v.contains('?')) {
            if v.chars().all(|c| c == '*') {
                return Matcher::Universal;
            }
            return Matcher::Wildcard(v);
        }
        Matcher::Single(v)
    }

    pub fn is_universal(&self) -> bool {
        matches!(self, Matcher::Universal)
    }

    /// Whether a stored value (possibly multi-valued, `\`-joined) matches.
    pub fn matches(&self, vr: VR, stored: &str) -> bool {
        if self.is_universal() {
            return true;
        }
        let stored = normalise(vr, stored);
        let values: Vec<&str> = if vr == VR::PN {
            vec![stored.as_str()]
        } else {
            stored.split('\\').collect()
        };
        values.iter().any(|v| self.matches_one(v))
    }

    fn matches_one(&self, value: &str) -> bool {
        match self {
            Matcher::Universal => true,
            Matcher::Single(s) => value == s,
            Matcher::Wildcard(p) => wildcard_match(p.as_bytes(), value.as_bytes()),
            Matcher::Range { from, to } => {
                !value.is_empty()
                    && from.as_deref().is_none_or(|f| value >= f)
                    && to.as_deref().is_none_or(|t| range_upper_ok(value, t))
            }
            Matcher::List(vs) => vs.iter().any(|v| v == value),
        }
    }
}

/// Where a DT range splits: the first `-` that is not the sign of a UTC offset. An offset is
/// `-HHMM` (at most 14 hours) after at least a year, ending the value or the range's first half
/// (`20200101120000-0500-20200102`). So `2020-2021` and `202001-202012` are ranges.
fn dt_range_separator(raw: &str) -> Option<usize> {
    let bytes = raw.as_bytes();
    raw.char_indices()
        .filter(|&(_, c)| c == '-')
        .map(|(i, _)| i)
        .find(|&i| {
            let offset = bytes
                .get(i + 1..i + 5)
                .filter(|d| d.iter().all(u8::is_ascii_digit));
            let is_offset = i >= 4
                && offset.is_some_and(|d| {
                    let (h, m) = (
                        (d[0] - b'0') * 10 + d[1] - b'0',
                        (d[2] - b'0') * 10 + d[3] - b'0',
                    );
                    h <= 14 && m <= 59
                })
                && matches!(bytes.get(i + 5), None | Some(b'-'));
            !is_offset
        })
}

/// A range's lower bound as the shortest value with the same meaning, so that comparing
/// strings also admits stored values of lower precision: a TM `120000` is `12` (a stored
/// `1200`, 12:00, is not before it), a DT `20200101000000` is `2020`. Trailing zero fractions
/// go too. Other VRs, and DT bounds with a UTC offset, are kept as given.
fn lower_bound(vr: VR, from: String) -> String {
    let (floor, min_len) = match vr {
        VR::TM => ("00", 2),
        VR::DT if from.bytes().all(|b| b.is_ascii_digit() || b == b'.') => ("00", 8),
        _ => return from,
    };
    let mut s = match from.split_once('.') {
        Some((whole, frac)) if frac.bytes().all(|b| b == b'0') => whole.to_owned(),
        Some(_) => return from,
        None => from,
    };
    while s.len() > min_len && s.len() % 2 == 0 && s.ends_with(floor) {
        s.truncate(s.len() - 2);
    }
    if vr == VR::DT {
        // the first day of a month, the first month of a year
        while (s.len() == 8 || s.len() == 6) && s.ends_with("01") {
            s.truncate(s.len() - 2);
        }
    }
    s
}

/// `value <= to`, where a shorter upper bound covers everything it is a prefix of
/// (a TM bound `1200` includes `1200.5`, a DA bound includes the whole day).
fn range_upper_ok(value: &str, to: &str) -> bool {
    value <= to || value.starts_with(to)
}

/// Glob match with `*` (any run) and `?` (one character), iterative with backtracking.
pub fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let text: Vec<char> = String::from_utf8_lossy(text).chars().collect();
    let pattern: Vec<char> = String::from_utf8_lossy(pattern).chars().collect();
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == '*' {
        p += 1;
    }
    p == pattern.len()
}

/// One key of an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryKey {
    pub tag: Tag,
    pub vr: VR,
    pub matcher: Matcher,
}

/// A parsed C-FIND / QIDO identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindQuery {
    pub level: QueryLevel,
    /// Every key of the identifier in tag order (matching and return keys), except
    /// Query/Retrieve Level and Specific Character Set.
    pub keys: Vec<QueryKey>,
}

impl FindQuery {
    /// Parse a C-FIND identifier.
    pub fn from_identifier(obj: &InMemDicomObject) -> Result<Self, QueryError> {
        let level = obj
            .get(tags::QUERY_RETRIEVE_LEVEL)
            .and_then(|e| e.value().to_str().ok())
            .ok_or(QueryError::MissingLevel)?;
        let level = QueryLevel::parse(&level)?;
        let mut keys = Vec::new();
        for elem in obj.iter() {
            let tag = elem.tag();
            if tag == tags::QUERY_RETRIEVE_LEVEL
                || tag == tags::SPECIFIC_CHARACTER_SET
                || tag.group() == 0x0002
            {
                continue;
            }
            let matcher = match elem.value() {
                Value::Primitive(p) => Matcher::parse(elem.vr(), &p.to_str()),
                // sequence matching is not supported: the key is returned, never filtered on
                _ => Matcher::Universal,
            };
            keys.push(QueryKey {
                tag,
                vr: elem.vr(),
                matcher,
            });
        }
        Ok(FindQuery { level, keys })
    }

    /// The matcher of a key, if the identifier has it.
    pub fn matcher(&self, tag: Tag) -> Option<&Matcher> {
        self.keys.iter().find(|k| k.tag == tag).map(|k| &k.matcher)
    }

    /// A C-GET / C-MOVE identifier reduced to what selects the instances to send: the unique
    /// keys of the retrieve level and of the levels above it (PS3.4 C.4.2.1.4, C.4.2.2.1,
    /// C.4.3.2.1). Every other key is ignored, values are taken literally (no wildcards), and
    /// the level's own unique key must carry a value: one value, or a list of UIDs. A key above
    /// the level with no value narrows nothing. Patient ID is a unique key only in the Patient
    /// Root model (`patient_root`).
    pub fn retrieve_keys(&self, patient_root: bool) -> Result<FindQuery, QueryError> {
        let unique = [
            (QueryLevel::Patient, tags::PATIENT_ID, "Patient ID"),
            (
                QueryLevel::Study,
                tags::STUDY_INSTANCE_UID,
                "Study Instance UID",
            ),
            (
                QueryLevel::Series,
                tags::SERIES_INSTANCE_UID,
                "Series Instance UID",
            ),
            (
                QueryLevel::Image,
                tags::SOP_INSTANCE_UID,
                "SOP Instance UID",
            ),
        ];
        let mut keys = Vec::new();
        for (level, tag, name) in unique {
            if level > self.level || (level == QueryLevel::Patient && !patient_root) {
                continue;
            }
            let key = self.keys.iter().find(|k| k.tag == tag);
            let matcher = key.map(|k| match &k.matcher {
                Matcher::Wildcard(literal) => Matcher::Single(literal.clone()),
                m => m.clone(),
            });
            match (key, matcher) {
                (Some(key), Some(matcher)) if !matcher.is_universal() => keys.push(QueryKey {
                    tag,
                    vr: key.vr,
                    matcher,
                }),
                _ if level == self.level => {
                    return Err(QueryError::MissingUniqueKey {
                        level: level.as_str(),
                        key: name,
                    });
                }
                _ => {}
            }
        }
        Ok(FindQuery {
            level: self.level,
            keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(vr: VR, query: &str, stored: &str, expect: bool) {
        let m = Matcher::parse(vr, query);
        assert_eq!(
            m.matches(vr, stored),
            expect,
            "{vr:?} {query:?} vs {stored:?} ({m:?})"
        );
    }

    #[test]
    fn single_and_universal() {
        check(VR::LO, "P1", "P1", true);
        check(VR::LO, "P1", "p1", false);
        check(VR::LO, "", "anything", true);
        check(VR::LO, "*", "anything", true);
    }

    #[test]
    fn person_names_ignore_case() {
        check(VR::PN, "doe*", "Doe^John", true);
        check(VR::PN, "DOE^JOHN", "Doe^John", true);
        check(VR::PN, "d?e*", "Doe^Jane", true);
        check(VR::PN, "smith*", "Doe^John", false);
    }

    #[test]
    fn wildcards() {
        check(VR::LO, "AB*", "ABC", true);
        check(VR::LO, "A?C", "ABC", true);
        check(VR::LO, "A?C", "ABBC", false);
        check(VR::LO, "*C", "ABC", true);
        check(VR::LO, "a*", "ABC", false);
        assert!(wildcard_match(b"*a*b", b"xxaxxb"));
        assert!(!wildcard_match(b"*a*b", b"xxaxxbc"));
    }

    #[test]
    fn date_ranges() {
        check(VR::DA, "20200101-20201231", "20200615", true);
        check(VR::DA, "20200101-20201231", "20210101", false);
        check(VR::DA, "-20191231", "20190615", true);
        check(VR::DA, "-20191231", "20200101", false);
        check(VR::DA, "20210101-", "20210101", true);
        check(VR::DA, "20210101-", "", false);
        check(VR::TM, "0800-1200", "1200.5", true);
        check(VR::TM, "0800-1200", "1201", false);
    }

    #[test]
    fn person_names_ignore_trailing_empty_components() {
        // PS3.5 6.2: trailing empty components and their delimiters may be left out
        check(VR::PN, "SMITH^JANE", "SMITH^JANE^^", true);
        check(VR::PN, "DOE^JOHN^", "Doe^John", true);
        check(VR::PN, "smith^jane*", "SMITH^JANE^^", true);
        check(VR::PN, "SMITH^JANE", "SMITH^JANET", false);
        assert_eq!(Matcher::parse(VR::PN, "^^"), Matcher::Universal);
    }

    #[test]
    fn range_lower_bounds_admit_values_of_lower_precision() {
        // a stored 1200 is 12:00:00, inside 120000-1300
        check(VR::TM, "120000-1300", "1200", true);
        check(VR::TM, "120000.000-", "12", true);
        check(VR::TM, "120000-1300", "1159", false);
        check(VR::TM, "123000-", "12", false);
        check(VR::TM, "123000-", "1230", true);
        check(VR::TM, "083000.6-", "083000.5", false);
        check(VR::DT, "20200101000000-", "2020", true);
        check(VR::DT, "20200115-", "202001", false);
        check(VR::DA, "20200101-", "20191231", false);
    }

    #[test]
    fn date_time_ranges_with_short_bounds_and_offsets() {
        check(VR::DT, "2020-2021", "20200115103000", true);
        check(VR::DT, "2020-2021", "20220101", false);
        check(VR::DT, "202001-202012", "20200115103000", true);
        check(VR::DT, "202001-202012", "20210101", false);
        check(VR::DT, "-2019", "20191231235959", true);
        // a '-' followed by a UTC offset is not a range
        assert_eq!(
            Matcher::parse(VR::DT, "20200101120000-0500"),
            Matcher::Single("20200101120000-0500".into())
        );
        assert_eq!(
            Matcher::parse(VR::DT, "20200101120000-0500-20200102"),
            Matcher::Range {
                from: Some("20200101120000-0500".into()),
                to: Some("20200102".into())
            }
        );
    }

    fn identifier(level: &str, keys: &[(Tag, VR, &str)]) -> FindQuery {
        use dicom_object::mem::InMemElement;
        let mut obj = InMemDicomObject::from_element_iter([InMemElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            level,
        )]);
        for &(tag, vr, v) in keys {
            obj.put(InMemElement::new(tag, vr, v));
        }
        FindQuery::from_identifier(&obj).unwrap()
    }

    #[test]
    fn retrieves_select_by_unique_keys_only() {
        // an empty or missing unique key of the level is not "everything"
        for keys in [
            &[(tags::STUDY_INSTANCE_UID, VR::UI, "")][..],
            &[(tags::PATIENT_NAME, VR::PN, "DOE*")][..],
            &[],
        ] {
            assert!(matches!(
                identifier("STUDY", keys).retrieve_keys(false),
                Err(QueryError::MissingUniqueKey { level: "STUDY", .. })
            ));
        }
        assert!(
            identifier(
                "SERIES",
                &[
                    (tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
                    (tags::SERIES_INSTANCE_UID, VR::UI, "")
                ]
            )
            .retrieve_keys(false)
            .is_err()
        );
        // other keys do not narrow; a list of UIDs is kept; the study above narrows
        let q = identifier(
            "SERIES",
            &[
                (tags::PATIENT_ID, VR::LO, "P1"),
                (tags::PATIENT_NAME, VR::PN, "NOBODY"),
                (tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
                (tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.1\\1.2.3.2"),
                (tags::MODALITY, VR::CS, "XA"),
            ],
        )
        .retrieve_keys(false)
        .unwrap();
        let kept: Vec<(Tag, Matcher)> = q.keys.into_iter().map(|k| (k.tag, k.matcher)).collect();
        assert_eq!(
            kept,
            [
                (tags::STUDY_INSTANCE_UID, Matcher::Single("1.2.3".into())),
                (
                    tags::SERIES_INSTANCE_UID,
                    Matcher::List(vec!["1.2.3.1".into(), "1.2.3.2".into()])
                ),
            ]
        );
        // Patient ID is a unique key in the Patient Root model only, and taken literally
        let q = identifier("PATIENT", &[(tags::PATIENT_ID, VR::LO, "P*")])
            .retrieve_keys(true)
            .unwrap();
        assert_eq!(q.keys[0].matcher, Matcher::Single("P*".into()));
        let q = identifier(
            "STUDY",
            &[
                (tags::PATIENT_ID, VR::LO, "P1"),
                (tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
            ],
        );
        assert_eq!(q.retrieve_keys(true).unwrap().keys.len(), 2);
        assert_eq!(q.retrieve_keys(false).unwrap().keys.len(), 1);
        // a universal Patient ID above the level narrows nothing
        let q = identifier(
            "STUDY",
            &[
                (tags::PATIENT_ID, VR::LO, ""),
                (tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3"),
            ],
        );
        assert_eq!(q.retrieve_keys(true).unwrap().keys.len(), 1);
    }

    #[test]
    fn uid_lists_and_value_lists() {
        check(VR::UI, "1.2.3\\1.2.4", "1.2.4", true);
        check(VR::UI, "1.2.3\\1.2.4", "1.2.5", false);
        check(VR::CS, "CT\\MR", "MR", true);
        // a multi-valued stored attribute matches when any value does
        check(VR::CS, "MR", "CT\\MR", true);
        // a UI value is never a wildcard
        assert_eq!(
            Matcher::parse(VR::UI, "1.2.*"),
            Matcher::Single("1.2.*".into())
        );
    }

    #[test]
    fn identifier_parsing() {
        use dicom_object::mem::InMemElement;
        let obj = InMemDicomObject::from_element_iter([
            InMemElement::new(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
            InMemElement::new(tags::PATIENT_NAME, VR::PN, "doe*"),
            InMemElement::new(tags::STUDY_DATE, VR::DA, "20200101-"),
            InMemElement::new(tags::STUDY_INSTANCE_UID, VR::UI, ""),
        ]);
        let q = FindQuery::from_identifier(&obj).unwrap();
        assert_eq!(q.level, QueryLevel::Study);
        assert_eq!(q.keys.len(), 3);
        assert_eq!(
            q.matcher(tags::PATIENT_NAME),
            Some(&Matcher::Wildcard("DOE*".into()))
        );
        assert!(q.matcher(tags::STUDY_INSTANCE_UID).unwrap().is_universal());
        let empty = InMemDicomObject::new_empty();
        assert_eq!(
            FindQuery::from_identifier(&empty),
            Err(QueryError::MissingLevel)
        );
    }
}

/// Values the index computes for a matched entity (PS3.4 C.3.4 "additional query keys").
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub patient_related_studies: Option<i64>,
    pub patient_related_series: Option<i64>,
    pub patient_related_instances: Option<i64>,
    pub study_related_series: Option<i64>,
    pub study_related_instances: Option<i64>,
    pub series_related_instances: Option<i64>,
    pub modalities_in_study: Option<Vec<String>>,
}

fn is_text_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::ST
            | VR::TM
            | VR::UC
            | VR::UI
            | VR::UR
            | VR::UT
    )
}

/// The response identifier for one match: every key of the query (values from the stored
/// header or the counters; empty when unknown), the unique keys of the levels down to the
/// query level, Query/Retrieve Level and Retrieve AE Title.
pub fn response_identifier(
    q: &FindQuery,
    header: &InMemDicomObject,
    counters: &Counters,
    retrieve_ae: &str,
) -> InMemDicomObject {
    use dicom_core::DataElement;
    use dicom_core::value::PrimitiveValue;
    let mut out = InMemDicomObject::new_empty();
    let count = |v: Option<i64>| v.map(|n| PrimitiveValue::from(n.to_string()));
    for key in &q.keys {
        let computed = match key.tag {
            t if t == tags::NUMBER_OF_PATIENT_RELATED_STUDIES => {
                Some(count(counters.patient_related_studies))
            }
            t if t == tags::NUMBER_OF_PATIENT_RELATED_SERIES => {
                Some(count(counters.patient_related_series))
            }
            t if t == tags::NUMBER_OF_PATIENT_RELATED_INSTANCES => {
                Some(count(counters.patient_related_instances))
            }
            t if t == tags::NUMBER_OF_STUDY_RELATED_SERIES => {
                Some(count(counters.study_related_series))
            }
            t if t == tags::NUMBER_OF_STUDY_RELATED_INSTANCES => {
                Some(count(counters.study_related_instances))
            }
            t if t == tags::NUMBER_OF_SERIES_RELATED_INSTANCES => {
                Some(count(counters.series_related_instances))
            }
            t if t == tags::MODALITIES_IN_STUDY => Some(
                counters
                    .modalities_in_study
                    .as_ref()
                    .map(|m| PrimitiveValue::Strs(m.iter().cloned().collect())),
            ),
            t if t == tags::RETRIEVE_AE_TITLE => Some(Some(PrimitiveValue::from(retrieve_ae))),
            t if t == tags::INSTANCE_AVAILABILITY => Some(Some(PrimitiveValue::from("ONLINE"))),
            _ => None,
        };
        let vr = match key.vr {
            VR::UN => dicom_core::dictionary::DataDictionary::by_tag(
                &dicom_dictionary_std::StandardDataDictionary,
                key.tag,
            )
            .map(|e| e.vr.relaxed())
            .unwrap_or(VR::UN),
            vr => vr,
        };
        match computed {
            Some(value) => {
                let vr = if key.tag == tags::RETRIEVE_AE_TITLE {
                    VR::AE
                } else if key.tag == tags::MODALITIES_IN_STUDY
                    || key.tag == tags::INSTANCE_AVAILABILITY
                {
                    VR::CS
                } else {
                    VR::IS
                };
                out.put(DataElement::new(
                    key.tag,
                    vr,
                    value.unwrap_or(PrimitiveValue::Empty),
                ));
            }
            None => match header.get(key.tag) {
                Some(e) => {
                    out.put(e.clone());
                }
                None => {
                    if vr == VR::SQ {
                        out.put(DataElement::new(
                            key.tag,
                            VR::SQ,
                            dicom_core::value::DataSetSequence::<InMemDicomObject>::empty(),
                        ));
                    } else {
                        out.put(DataElement::new(key.tag, vr, PrimitiveValue::Empty));
                    }
                }
            },
        }
    }
    let unique: &[Tag] = match q.level {
        QueryLevel::Patient => &[tags::PATIENT_ID],
        QueryLevel::Study => &[tags::STUDY_INSTANCE_UID],
        QueryLevel::Series => &[tags::STUDY_INSTANCE_UID, tags::SERIES_INSTANCE_UID],
        QueryLevel::Image => &[
            tags::STUDY_INSTANCE_UID,
            tags::SERIES_INSTANCE_UID,
            tags::SOP_INSTANCE_UID,
        ],
    };
    for &t in unique {
        if out.get(t).is_none()
            && let Some(e) = header.get(t)
        {
            out.put(e.clone());
        }
    }
    out.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(q.level.as_str()),
    ));
    let non_ascii = out
        .iter()
        .any(|e| is_text_vr(e.vr()) && e.value().to_str().map(|s| !s.is_ascii()).unwrap_or(false));
    if non_ascii {
        out.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 192"),
        ));
    }
    out
}
