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

/// Normalise a stored or queried value of this VR for comparison.
pub fn normalise(vr: VR, value: &str) -> String {
    let v = value.trim_matches([' ', '\0']);
    if is_case_insensitive(vr) {
        v.to_uppercase()
    } else {
        v.to_owned()
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
            // DT values may carry a UTC offset with '-' (e.g. 20200101120000-0500); a range has
            // the '-' at a position that splits into two parseable halves. Keep it simple and
            // standard: split at the first '-' for DA/TM, and for DT at a '-' that is not part
            // of an offset (offsets follow at least 4 digits of the date).
            let split_at = match vr {
                VR::DT => raw
                    .char_indices()
                    .filter(|(_, c)| *c == '-')
                    .map(|(i, _)| i)
                    .find(|&i| i == 0 || i >= 8 || i + 1 == raw.len()),
                _ => raw.find('-'),
            };
            if let Some(i) = split_at {
                let (from, to) = (&raw[..i], &raw[i + 1..]);
                let opt = |s: &str| {
                    let s = s.trim();
                    (!s.is_empty()).then(|| s.to_owned())
                };
                let (from, to) = (opt(from), opt(to));
                if from.is_none() && to.is_none() {
                    return Matcher::Universal;
                }
                return Matcher::Range { from, to };
            }
        }
        let v = normalise(vr, raw);
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
