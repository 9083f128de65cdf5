//! The one report model (what HL7 ORU and FHIR DiagnosticReport will be produced from next)
//! and its lifecycle rules.
//!
//! ```text
//! draft ──sign──▶ preliminary ──sign──▶ final ──addendum + sign──▶ amended ──▶ amended …
//!   └──────────────sign─────────────────▲
//! ```
//! A signed version never changes; a final report changes only by addendum.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a report is in its life (the status of its latest signature; `Draft` before any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    Draft,
    Preliminary,
    Final,
    Amended,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Draft => "draft",
            ReportStatus::Preliminary => "preliminary",
            ReportStatus::Final => "final",
            ReportStatus::Amended => "amended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ReportStatus::Draft,
            ReportStatus::Preliminary,
            ReportStatus::Final,
            ReportStatus::Amended,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether a report in `self` may be signed as `to`.
    pub fn can_sign(self, to: ReportStatus) -> bool {
        use ReportStatus::*;
        matches!(
            (self, to),
            (Draft, Preliminary)
                | (Draft, Final)
                | (Preliminary, Final)
                | (Final, Amended)
                | (Amended, Amended)
        )
    }

    /// Whether the body (everything but the addendum) may still change.
    pub fn body_editable(self) -> bool {
        matches!(self, ReportStatus::Draft | ReportStatus::Preliminary)
    }
}

/// A measurement taken in the viewer and cited in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    pub label: String,
    pub value: f64,
    /// UCUM unit (`mm`, `mm2`, `[hnsf'U]`, `deg`…).
    pub unit: String,
    #[serde(default)]
    pub sop_instance_uid: String,
    #[serde(default)]
    pub sop_class_uid: String,
    #[serde(default)]
    pub frame: Option<u32>,
}

/// A key image cited in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyImage {
    pub sop_instance_uid: String,
    #[serde(default)]
    pub sop_class_uid: String,
    #[serde(default)]
    pub frame: Option<u32>,
}

/// What the radiologist writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportContent {
    /// Template field values by field id (JSON: strings, numbers, arrays of choices).
    #[serde(default)]
    pub values: BTreeMap<String, serde_json::Value>,
    /// Free text beside the structured fields.
    #[serde(default)]
    pub narrative: String,
    #[serde(default)]
    pub impression: String,
    #[serde(default)]
    pub measurements: Vec<Measurement>,
    #[serde(default)]
    pub key_images: Vec<KeyImage>,
    /// The addenda after the final signature, oldest first; only the last may be unsigned.
    #[serde(default)]
    pub addenda: Vec<String>,
}

/// Largest narrative, impression or addendum (characters).
pub const MAX_TEXT: usize = 64 * 1024;

impl ReportContent {
    /// Size and shape limits that hold for every save.
    pub fn check(&self) -> Result<(), String> {
        for (what, t) in [
            ("narrative", &self.narrative),
            ("impression", &self.impression),
        ] {
            if t.chars().count() > MAX_TEXT {
                return Err(format!("{what} is longer than {MAX_TEXT} characters"));
            }
        }
        if self.addenda.iter().any(|a| a.chars().count() > MAX_TEXT) {
            return Err(format!("an addendum is longer than {MAX_TEXT} characters"));
        }
        if self.measurements.len() > 1000
            || self.key_images.len() > 1000
            || self.values.len() > 2000
        {
            return Err("too many measurements, key images or values".into());
        }
        if let Some(m) = self.measurements.iter().find(|m| !m.value.is_finite()) {
            return Err(format!("measurement {:?} is not a finite number", m.label));
        }
        Ok(())
    }

    /// The body without the addenda (what a final report freezes).
    pub fn body(&self) -> ReportContent {
        ReportContent {
            addenda: Vec::new(),
            ..self.clone()
        }
    }
}

/// Check a save of `new` over the last signed content `signed` in status `status`: after
/// the final signature only a new addendum may be added (the earlier ones stay as signed).
pub fn check_change(
    status: ReportStatus,
    signed: Option<&ReportContent>,
    new: &ReportContent,
) -> Result<(), String> {
    new.check()?;
    if status.body_editable() {
        if !new.addenda.is_empty() {
            return Err("addenda are added after the final signature".into());
        }
        return Ok(());
    }
    let Some(signed) = signed else {
        return Ok(());
    };
    if new.body() != signed.body() {
        return Err(format!(
            "the report is {}: its content changes only by addendum",
            status.as_str()
        ));
    }
    let n = signed.addenda.len();
    if new.addenda.len() < n || new.addenda[..n] != signed.addenda[..] {
        return Err("signed addenda cannot change".into());
    }
    if new.addenda.len() > n + 1 {
        return Err("one addendum at a time".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ReportStatus::*;
    use super::*;

    #[test]
    fn signing_follows_the_lifecycle() {
        for (from, to, ok) in [
            (Draft, Preliminary, true),
            (Draft, Final, true),
            (Preliminary, Final, true),
            (Final, Amended, true),
            (Amended, Amended, true),
            (Draft, Amended, false),
            (Preliminary, Preliminary, false),
            (Final, Final, false),
            (Final, Preliminary, false),
            (Amended, Final, false),
            (Draft, Draft, false),
        ] {
            assert_eq!(from.can_sign(to), ok, "{from:?} → {to:?}");
        }
    }

    fn content(text: &str, addenda: &[&str]) -> ReportContent {
        ReportContent {
            narrative: text.into(),
            addenda: addenda.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_final_report_changes_only_by_addendum() {
        let signed = content("No acute findings.", &[]);
        assert!(check_change(Final, Some(&signed), &content("Changed.", &[])).is_err());
        check_change(
            Final,
            Some(&signed),
            &content("No acute findings.", &["Correction: …"]),
        )
        .unwrap();
        let amended = content("No acute findings.", &["first"]);
        assert!(
            check_change(
                Amended,
                Some(&amended),
                &content("No acute findings.", &["edited"])
            )
            .is_err()
        );
        check_change(
            Amended,
            Some(&amended),
            &content("No acute findings.", &["first", "second"]),
        )
        .unwrap();
        assert!(
            check_change(
                Amended,
                Some(&amended),
                &content("No acute findings.", &["first", "a", "b"])
            )
            .is_err()
        );
        // drafts and preliminaries change freely, but carry no addenda
        check_change(Preliminary, Some(&signed), &content("Rewritten.", &[])).unwrap();
        assert!(check_change(Draft, None, &content("x", &["y"])).is_err());
    }

    #[test]
    fn limits() {
        let mut c = content("x", &[]);
        c.measurements.push(Measurement {
            label: "d".into(),
            value: f64::NAN,
            unit: "mm".into(),
            sop_instance_uid: String::new(),
            sop_class_uid: String::new(),
            frame: None,
        });
        assert!(c.check().is_err());
        assert!(content(&"x".repeat(MAX_TEXT + 1), &[]).check().is_err());
    }
}
