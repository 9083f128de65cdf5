//! Lung-RADS v2022 assessment categories computed from entered nodule findings.
//!
//! Written from the ACR's public description of Lung-RADS v2022 (lung cancer screening
//! with low-dose CT). It assists the radiologist, who confirms the category in the report
//! (the `lungrads_category` field of the `lung-nodule` starter template); it does not
//! replace reading the ACR document.
//!
//! # Rules implemented
//!
//! Sizes are mean diameters in mm (mean of long and short axis), **rounded to one decimal**
//! before the thresholds are applied, as Lung-RADS asks sizes to be reported; "6–<8" means
//! 6.0 ≤ d < 8.0. Each nodule is assessed on its own; the exam category is the highest of
//! its nodules (no nodules → 1), and the nodule that gave it is reported.
//!
//! | nodule | status | 1 / 2 | 3 | 4A | 4B |
//! |---|---|---|---|---|---|
//! | any, with a benign calcification pattern or fat | any | **1** | | | |
//! | solid | baseline | < 6 → 2 | 6–< 8 | 8–< 15 | ≥ 15 |
//! | solid | new | < 4 → 2 | 4–< 6 | 6–< 8 | ≥ 8 |
//! | solid | growing | | | < 8 | ≥ 8 |
//! | part-solid | baseline | total < 6 → 2 | total ≥ 6, solid < 6 | solid 6–< 8 | solid ≥ 8 |
//! | part-solid | new | | total < 6 | total ≥ 6, solid < 4 | total ≥ 6, solid ≥ 4 |
//! | part-solid | growing | | | solid < 4 | solid ≥ 4 |
//! | ground-glass | baseline, new, growing | < 30 → 2 | ≥ 30 (see below) | | |
//! | juxtapleural / perifissural solid | baseline, new | < 10 → 2 | ≥ 10: assessed as a solid nodule | | |
//! | juxtapleural | growing | assessed as a solid nodule | | | |
//!
//! * **Stable** nodules (unchanged or smaller at follow-up) follow v2022's stepped
//!   management when the nodule's category on the prior CT is given: a prior 3 becomes 2, a
//!   prior 4A becomes 3, a prior 4B or 4X stays (stability alone does not clear a very
//!   suspicious finding; its work-up does). Without a prior category a stable nodule is 2
//!   (benign behaviour), which is also what v2022 gives a stable or slowly growing
//!   ground-glass nodule of 30 mm or more.
//! * **4X**: a nodule of category 3 or 4 with additional features that raise the suspicion
//!   of cancer (spiculation, lymphadenopathy, …), as marked by the radiologist, is 4X. The
//!   flag is ignored for categories 1 and 2.
//! * **0**: an incomplete exam (prior CT being obtained, part of the lungs not evaluable,
//!   findings suggesting infection or inflammation) is 0, whatever its nodules; their
//!   assessments are still returned.
//! * **S** is a modifier added to the category when there are clinically significant findings
//!   unrelated to lung cancer.
//!
//! # Simplifications and limits
//!
//! * Growth (> 1.5 mm increase in mean diameter within 12 months) is the radiologist's
//!   call, entered as the status; sizes and dates of the prior CT are not compared here. A
//!   part-solid nodule's "growing" status is read as growth of its solid component.
//! * "Slowly growing" ground-glass nodules cannot be told from fast-growing ones from the
//!   input: a growing ground-glass nodule of 30 mm or more is put at 3 (as if new), the
//!   conservative reading; the radiologist may downgrade one that grew slowly over several
//!   screening rounds.
//! * A new part-solid nodule of less than 6 mm total diameter is 3 whatever its solid
//!   component.
//! * Not modelled: atypical pulmonary cysts, airway (endobronchial) nodules, volumetric
//!   thresholds (mm³), the 1–3-month follow-up for suspected infection (category 0 above),
//!   nodules crossing a size threshold without meeting the growth definition (enter them
//!   with the status that applies), and 4B findings proven benign after work-up.
//! * A part-solid nodule whose solid component is needed but not given, a solid component
//!   larger than the whole nodule, or an implausible diameter is refused, not guessed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::template::{Value, Values};

/// The id of the starter template that [`from_template_values`] reads.
pub const LUNG_NODULE_TEMPLATE_ID: &str = "lung-nodule";

/// The number of nodules the `lung-nodule` template describes (`nodule1_*` … `nodule3_*`).
pub const TEMPLATE_NODULES: usize = 3;

/// The largest mean diameter accepted, in mm.
pub const MAX_DIAMETER_MM: f64 = 300.0;

/// The attenuation (and for juxtapleural nodules, the position) of a nodule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoduleKind {
    Solid,
    PartSolid,
    /// Non-solid (pure ground-glass).
    GroundGlass,
    /// Juxtapleural or perifissural solid nodule with smooth margins and an oval, lentiform or
    /// triangular shape.
    Juxtapleural,
}

/// The nodule at this exam, compared with the prior screening CT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoduleStatus {
    /// First screening exam (no prior).
    Baseline,
    /// Not seen on the prior.
    New,
    /// Mean diameter up by more than 1.5 mm within 12 months.
    Growing,
    /// Unchanged or smaller.
    Stable,
}

/// One nodule's findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nodule {
    pub kind: NoduleKind,
    /// Mean of long and short axis, mm.
    pub mean_diameter_mm: f64,
    /// Mean diameter of the solid component of a part-solid nodule, mm.
    #[serde(default)]
    pub solid_component_mm: Option<f64>,
    pub status: NoduleStatus,
    /// Complete, central, popcorn or concentric-ring calcification, or fat.
    #[serde(default)]
    pub benign_calcification: bool,
    /// Additional features that raise the suspicion of cancer (→ 4X for categories 3 and 4).
    #[serde(default)]
    pub suspicious_features: bool,
    /// The nodule's category on the prior CT (stepped management of stable nodules).
    #[serde(default)]
    pub prior_category: Option<Category>,
}

impl Nodule {
    /// A nodule with no solid component, calcification, suspicious features or prior category.
    pub fn new(kind: NoduleKind, mean_diameter_mm: f64, status: NoduleStatus) -> Self {
        Nodule {
            kind,
            mean_diameter_mm,
            solid_component_mm: None,
            status,
            benign_calcification: false,
            suspicious_features: false,
            prior_category: None,
        }
    }
}

/// One screening exam's findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exam {
    #[serde(default)]
    pub nodules: Vec<Nodule>,
    /// Clinically significant (or potentially significant) findings unrelated to lung cancer.
    #[serde(default)]
    pub other_findings_s: bool,
    /// Prior CT being obtained, lungs not fully evaluable, or findings suggesting infection or
    /// inflammation (→ 0).
    #[serde(default)]
    pub incomplete: bool,
}

/// A Lung-RADS category, ordered by suspicion (0 first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Zero,
    One,
    Two,
    Three,
    FourA,
    FourB,
    FourX,
}

impl Category {
    /// "0", "1", "2", "3", "4A", "4B" or "4X".
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Zero => "0",
            Category::One => "1",
            Category::Two => "2",
            Category::Three => "3",
            Category::FourA => "4A",
            Category::FourB => "4B",
            Category::FourX => "4X",
        }
    }

    /// The category written as [`as_str`](Self::as_str) does (case-insensitive).
    pub fn parse(s: &str) -> Option<Category> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "0" => Category::Zero,
            "1" => Category::One,
            "2" => Category::Two,
            "3" => Category::Three,
            "4A" => Category::FourA,
            "4B" => Category::FourB,
            "4X" => Category::FourX,
            _ => return None,
        })
    }

    /// The short descriptor.
    pub fn descriptor(self) -> &'static str {
        match self {
            Category::Zero => "Incomplete",
            Category::One => "Negative",
            Category::Two => "Benign appearance or behavior",
            Category::Three => "Probably benign",
            Category::FourA => "Suspicious",
            Category::FourB => "Very suspicious",
            Category::FourX => "Very suspicious, with additional features",
        }
    }

    /// The management recommendation.
    pub fn management(self) -> &'static str {
        match self {
            Category::Zero => {
                "Additional screening CT images and/or comparison with prior chest CT; \
                 1–3-month LDCT when the findings suggest an infectious or inflammatory process"
            }
            Category::One | Category::Two => "12-month screening LDCT",
            Category::Three => "6-month LDCT",
            Category::FourA => {
                "3-month LDCT; PET/CT may be used when there is a solid nodule or solid component of 8 mm or more"
            }
            Category::FourB | Category::FourX => {
                "Chest CT with or without contrast, PET/CT and/or tissue sampling, depending on the \
                 probability of malignancy and comorbidities; PET/CT may be used when there is a \
                 solid nodule or solid component of 8 mm or more; referral for further clinical \
                 evaluation as appropriate"
            }
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Category {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Category::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("\"{s}\" is not a Lung-RADS category")))
    }
}

/// One nodule's category and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoduleAssessment {
    pub category: Category,
    /// The rule applied, in words.
    pub reason: String,
}

/// The exam's assessment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub category: Category,
    /// The S modifier.
    pub s_modifier: bool,
    /// The category with the modifier, e.g. "4A" or "2S".
    pub label: String,
    pub descriptor: &'static str,
    pub management: &'static str,
    /// The index (in `Exam::nodules`) of the nodule that gave the category, if one did.
    pub driver: Option<usize>,
    /// Why, in words.
    pub reason: String,
    /// Each nodule's assessment, in the exam's order.
    pub nodules: Vec<NoduleAssessment>,
}

/// Why a nodule cannot be assessed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoduleError {
    #[error("the mean diameter {0} mm is not a size between 0 and {MAX_DIAMETER_MM} mm")]
    InvalidDiameter(f64),
    #[error("the solid component {0} mm is not a size between 0 and {MAX_DIAMETER_MM} mm")]
    InvalidSolidComponent(f64),
    #[error("the solid component of a part-solid nodule is needed for its category")]
    MissingSolidComponent,
    #[error("the solid component ({solid} mm) is larger than the nodule ({total} mm)")]
    SolidLargerThanNodule { solid: f64, total: f64 },
}

/// Why an exam cannot be assessed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LungRadsError {
    /// `index` is 1-based, as reported to people.
    #[error("nodule {index}: {error}")]
    Nodule { index: usize, error: NoduleError },
}

/// Round to one decimal, as sizes are reported.
fn mm(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn size_ok(x: f64) -> bool {
    x.is_finite() && x > 0.0 && x <= MAX_DIAMETER_MM
}

/// The category of one nodule.
pub fn assess_nodule(n: &Nodule) -> Result<NoduleAssessment, NoduleError> {
    use Category::*;
    use NoduleKind::*;
    use NoduleStatus::*;
    if !size_ok(n.mean_diameter_mm) || mm(n.mean_diameter_mm) <= 0.0 {
        return Err(NoduleError::InvalidDiameter(n.mean_diameter_mm));
    }
    let d = mm(n.mean_diameter_mm);
    let solid = match n.solid_component_mm {
        Some(s) if !(s.is_finite() && (0.0..=MAX_DIAMETER_MM).contains(&s)) => {
            return Err(NoduleError::InvalidSolidComponent(s));
        }
        Some(s) if n.kind == PartSolid && mm(s) > d => {
            return Err(NoduleError::SolidLargerThanNodule {
                solid: mm(s),
                total: d,
            });
        }
        Some(s) => Some(mm(s)),
        None => None,
    };
    let done = |category: Category, reason: String| Ok(NoduleAssessment { category, reason });
    if n.benign_calcification {
        return done(One, "benign pattern of calcification or fat".into());
    }
    let (base, reason) = if n.status == Stable {
        match n.prior_category {
            Some(Three) => (
                Two,
                "stable at follow-up of a category 3 nodule (stepped management)".to_owned(),
            ),
            Some(FourA) => (
                Three,
                "stable at follow-up of a category 4A nodule (stepped management)".to_owned(),
            ),
            Some(p @ (FourB | FourX)) => (
                p,
                format!("stable category {p} nodule: stability alone does not change the category"),
            ),
            _ => (
                Two,
                "stable or smaller at follow-up (benign behavior)".to_owned(),
            ),
        }
    } else {
        let kind = match n.kind {
            Juxtapleural if d >= 10.0 || n.status == Growing => Solid,
            k => k,
        };
        let (c, why) = match (kind, n.status) {
            (Juxtapleural, _) => (
                Two,
                format!("juxtapleural/perifissural nodule < 10 mm ({d} mm)"),
            ),
            (Solid, Baseline) => {
                let c = if d < 6.0 {
                    Two
                } else if d < 8.0 {
                    Three
                } else if d < 15.0 {
                    FourA
                } else {
                    FourB
                };
                (c, format!("solid nodule at baseline, {d} mm"))
            }
            (Solid, New) => {
                let c = if d < 4.0 {
                    Two
                } else if d < 6.0 {
                    Three
                } else if d < 8.0 {
                    FourA
                } else {
                    FourB
                };
                (c, format!("new solid nodule, {d} mm"))
            }
            (Solid, _) => (
                if d < 8.0 { FourA } else { FourB },
                format!("growing solid nodule, {d} mm"),
            ),
            (PartSolid, Baseline) if d < 6.0 => {
                (Two, format!("part-solid nodule at baseline, {d} mm total"))
            }
            (PartSolid, New) if d < 6.0 => (Three, format!("new part-solid nodule, {d} mm total")),
            (PartSolid, status) => {
                let s = solid.ok_or(NoduleError::MissingSolidComponent)?;
                let c = match status {
                    Baseline if s < 6.0 => Three,
                    Baseline if s < 8.0 => FourA,
                    Baseline => FourB,
                    _ if s < 4.0 => FourA,
                    _ => FourB,
                };
                let what = match status {
                    Baseline => "part-solid nodule at baseline",
                    New => "new part-solid nodule",
                    _ => "growing part-solid nodule",
                };
                (c, format!("{what}, {d} mm total, solid component {s} mm"))
            }
            (GroundGlass, status) => {
                let what = match status {
                    Baseline => "ground-glass nodule at baseline",
                    New => "new ground-glass nodule",
                    _ => "growing ground-glass nodule",
                };
                (
                    if d < 30.0 { Two } else { Three },
                    format!("{what}, {d} mm"),
                )
            }
        };
        let why = if n.kind == Juxtapleural && kind == Solid {
            format!("juxtapleural nodule assessed as solid: {why}")
        } else {
            why
        };
        (c, why)
    };
    if n.suspicious_features && matches!(base, Three | FourA | FourB) {
        return done(
            FourX,
            format!("{reason}, with additional features raising suspicion"),
        );
    }
    done(base, reason)
}

/// The exam's category: the highest of its nodules (no nodules → 1; incomplete → 0), with
/// the S modifier.
pub fn assess(exam: &Exam) -> Result<Assessment, LungRadsError> {
    let nodules = exam
        .nodules
        .iter()
        .enumerate()
        .map(|(i, n)| {
            assess_nodule(n).map_err(|error| LungRadsError::Nodule {
                index: i + 1,
                error,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let top =
        nodules
            .iter()
            .enumerate()
            .fold(None::<(usize, Category)>, |best, (i, a)| match best {
                Some((_, c)) if c >= a.category => best,
                _ => Some((i, a.category)),
            });
    let (category, driver, reason) = if exam.incomplete {
        (Category::Zero, None, "incomplete examination".to_owned())
    } else {
        match top {
            None => (Category::One, None, "no lung nodules".to_owned()),
            Some((i, c)) => (
                c,
                Some(i),
                format!("nodule {}: {}", i + 1, nodules[i].reason),
            ),
        }
    };
    let s = exam.other_findings_s;
    Ok(Assessment {
        category,
        s_modifier: s,
        label: if s {
            format!("{category}S")
        } else {
            category.to_string()
        },
        descriptor: category.descriptor(),
        management: category.management(),
        driver,
        reason,
        nodules,
    })
}

/// The exam described by the values of the `lung-nodule` template (field ids `exam_type`,
/// `incomplete_reason`, `s_modifier` and, for n = 1…3, `nodule{n}_type`, `_diameter`,
/// `_solid`, `_change`, `_calcification`, `_suspicious`, `_prior_category`).
///
/// `None` when the values hold none of those fields (another template), or when the exam
/// cannot be assessed yet: a nodule with a type but no diameter (or the reverse), a
/// follow-up nodule without its change, or a part-solid nodule whose solid component is
/// needed but missing. A value that is not of its field's type counts as missing.
pub fn from_template_values(values: &Values) -> Option<Exam> {
    let text = |id: &str| -> Option<&str> {
        match values.get(id)? {
            Value::Text(s) | Value::Date(s) => Some(s.trim()).filter(|s| !s.is_empty()),
            Value::Choice(v) if v.len() == 1 => Some(v[0].trim()).filter(|s| !s.is_empty()),
            _ => None,
        }
    };
    let number = |id: &str| -> Option<f64> {
        match values.get(id)? {
            Value::Number(n) => Some(*n),
            Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|n: &f64| n.is_finite())
    };
    let yes = |id: &str| text(id) == Some("yes");

    let mut any = ["exam_type", "incomplete_reason", "s_modifier"]
        .iter()
        .any(|id| values.contains_key(*id));
    let follow_up = match text("exam_type") {
        Some("baseline") => false,
        Some("follow-up") => true,
        _ => (1..=TEMPLATE_NODULES).any(|n| text(&format!("nodule{n}_change")).is_some()),
    };
    let mut nodules = Vec::new();
    for n in 1..=TEMPLATE_NODULES {
        let f = |name: &str| format!("nodule{n}_{name}");
        any |= values.keys().any(|k| k.starts_with(&format!("nodule{n}_")));
        let kind = match text(&f("type")) {
            Some("solid") => Some(NoduleKind::Solid),
            Some("part-solid") => Some(NoduleKind::PartSolid),
            Some("ground-glass") => Some(NoduleKind::GroundGlass),
            Some("juxtapleural") => Some(NoduleKind::Juxtapleural),
            _ => None,
        };
        let diameter = number(&f("diameter"));
        let (kind, diameter) = match (kind, diameter) {
            (None, None) => continue,
            (Some(k), Some(d)) => (k, d),
            _ => return None,
        };
        let status = if !follow_up {
            NoduleStatus::Baseline
        } else {
            match text(&f("change"))? {
                "new" => NoduleStatus::New,
                "growing" => NoduleStatus::Growing,
                "stable" => NoduleStatus::Stable,
                _ => return None,
            }
        };
        let nodule = Nodule {
            kind,
            mean_diameter_mm: diameter,
            solid_component_mm: number(&f("solid")),
            status,
            benign_calcification: yes(&f("calcification")),
            suspicious_features: yes(&f("suspicious")),
            prior_category: text(&f("prior_category")).and_then(Category::parse),
        };
        if assess_nodule(&nodule) == Err(NoduleError::MissingSolidComponent) {
            return None;
        }
        nodules.push(nodule);
    }
    if !any {
        return None;
    }
    Some(Exam {
        nodules,
        other_findings_s: yes("s_modifier"),
        incomplete: text("incomplete_reason").is_some_and(|r| r != "none"),
    })
}

#[cfg(test)]
mod tests {
    use super::Category::*;
    use super::NoduleKind::*;
    use super::NoduleStatus::*;
    use super::*;

    fn cat(kind: NoduleKind, d: f64, solid: Option<f64>, status: NoduleStatus) -> Category {
        let mut n = Nodule::new(kind, d, status);
        n.solid_component_mm = solid;
        match assess_nodule(&n) {
            Ok(a) => a.category,
            Err(e) => panic!("{kind:?} {d} {solid:?} {status:?}: {e}"),
        }
    }

    #[test]
    fn solid_thresholds() {
        let table: &[(f64, NoduleStatus, Category)] = &[
            // baseline: <6 → 2, 6–<8 → 3, 8–<15 → 4A, ≥15 → 4B
            (1.0, Baseline, Two),
            (5.9, Baseline, Two),
            (6.0, Baseline, Three),
            (7.9, Baseline, Three),
            (8.0, Baseline, FourA),
            (14.9, Baseline, FourA),
            (15.0, Baseline, FourB),
            (40.0, Baseline, FourB),
            // new: <4 → 2, 4–<6 → 3, 6–<8 → 4A, ≥8 → 4B
            (3.9, New, Two),
            (4.0, New, Three),
            (5.9, New, Three),
            (6.0, New, FourA),
            (7.9, New, FourA),
            (8.0, New, FourB),
            // growing: <8 → 4A, ≥8 → 4B
            (2.0, Growing, FourA),
            (7.9, Growing, FourA),
            (8.0, Growing, FourB),
            (20.0, Growing, FourB),
            // stable without a prior category → 2
            (20.0, Stable, Two),
        ];
        for &(d, status, want) in table {
            assert_eq!(cat(Solid, d, None, status), want, "solid {d} mm {status:?}");
        }
    }

    #[test]
    fn part_solid_thresholds() {
        let table: &[(f64, Option<f64>, NoduleStatus, Category)] = &[
            // baseline: total <6 → 2; total ≥6 with solid <6 → 3; solid 6–<8 → 4A; ≥8 → 4B
            (5.9, Some(5.0), Baseline, Two),
            (5.9, None, Baseline, Two),
            (6.0, Some(2.0), Baseline, Three),
            (12.0, Some(5.9), Baseline, Three),
            (12.0, Some(6.0), Baseline, FourA),
            (6.0, Some(6.0), Baseline, FourA),
            (12.0, Some(7.9), Baseline, FourA),
            (12.0, Some(8.0), Baseline, FourB),
            // new: total <6 → 3; otherwise solid <4 → 4A, ≥4 → 4B
            (5.9, Some(5.0), New, Three),
            (5.9, None, New, Three),
            (6.0, Some(3.9), New, FourA),
            (6.0, Some(4.0), New, FourB),
            (20.0, Some(10.0), New, FourB),
            // growing: solid <4 → 4A, ≥4 → 4B
            (5.0, Some(2.0), Growing, FourA),
            (10.0, Some(3.9), Growing, FourA),
            (10.0, Some(4.0), Growing, FourB),
            // stable → 2
            (20.0, Some(10.0), Stable, Two),
        ];
        for &(d, s, status, want) in table {
            assert_eq!(
                cat(PartSolid, d, s, status),
                want,
                "part-solid {d} mm solid {s:?} {status:?}"
            );
        }
    }

    #[test]
    fn ground_glass_thresholds() {
        let table: &[(f64, NoduleStatus, Category)] = &[
            (10.0, Baseline, Two),
            (29.9, Baseline, Two),
            (30.0, Baseline, Three),
            (29.9, New, Two),
            (30.0, New, Three),
            (29.9, Growing, Two),
            (30.0, Growing, Three),
            (45.0, Stable, Two),
        ];
        for &(d, status, want) in table {
            assert_eq!(
                cat(GroundGlass, d, None, status),
                want,
                "ground-glass {d} mm {status:?}"
            );
        }
    }

    #[test]
    fn juxtapleural_thresholds() {
        let table: &[(f64, NoduleStatus, Category)] = &[
            (9.9, Baseline, Two),
            (10.0, Baseline, FourA), // as a solid nodule at baseline, 8–<15
            (9.9, New, Two),
            (10.0, New, FourB), // as a new solid nodule, ≥8
            (5.0, Growing, FourA),
            (8.0, Growing, FourB),
            (9.0, Stable, Two),
        ];
        for &(d, status, want) in table {
            assert_eq!(
                cat(Juxtapleural, d, None, status),
                want,
                "juxtapleural {d} mm {status:?}"
            );
        }
    }

    #[test]
    fn diameters_round_to_one_decimal() {
        assert_eq!(cat(Solid, 5.94, None, Baseline), Two);
        assert_eq!(cat(Solid, 5.96, None, Baseline), Three);
        assert_eq!(cat(Solid, 7.999, None, Baseline), FourA);
        assert_eq!(cat(GroundGlass, 29.96, None, Baseline), Three);
    }

    #[test]
    fn benign_calcification_is_one() {
        for kind in [Solid, PartSolid, GroundGlass, Juxtapleural] {
            for status in [Baseline, New, Growing, Stable] {
                let mut n = Nodule::new(kind, 25.0, status);
                n.solid_component_mm = Some(10.0);
                n.benign_calcification = true;
                n.suspicious_features = true;
                assert_eq!(
                    assess_nodule(&n).map(|a| a.category),
                    Ok(One),
                    "{kind:?} {status:?}"
                );
            }
        }
    }

    #[test]
    fn stable_nodules_step_down() {
        let stable = |prior: Option<Category>| {
            let mut n = Nodule::new(Solid, 12.0, Stable);
            n.prior_category = prior;
            assess_nodule(&n).map(|a| a.category)
        };
        assert_eq!(stable(None), Ok(Two));
        assert_eq!(stable(Some(Two)), Ok(Two));
        assert_eq!(stable(Some(Three)), Ok(Two));
        assert_eq!(stable(Some(FourA)), Ok(Three));
        assert_eq!(stable(Some(FourB)), Ok(FourB));
        assert_eq!(stable(Some(FourX)), Ok(FourX));
    }

    #[test]
    fn additional_features_make_4x_only_from_3_and_4() {
        let with = |kind, d, status| {
            let mut n = Nodule::new(kind, d, status);
            n.suspicious_features = true;
            assess_nodule(&n).map(|a| a.category)
        };
        assert_eq!(with(Solid, 5.0, Baseline), Ok(Two));
        assert_eq!(with(Solid, 7.0, Baseline), Ok(FourX));
        assert_eq!(with(Solid, 10.0, Baseline), Ok(FourX));
        assert_eq!(with(Solid, 20.0, Baseline), Ok(FourX));
        assert_eq!(with(GroundGlass, 35.0, New), Ok(FourX));
        let mut n = Nodule::new(Solid, 12.0, Stable);
        n.prior_category = Some(FourA);
        n.suspicious_features = true;
        assert_eq!(assess_nodule(&n).map(|a| a.category), Ok(FourX));
    }

    #[test]
    fn invalid_nodules_are_refused() {
        for d in [f64::NAN, f64::INFINITY, -1.0, 0.0, 0.04, 301.0] {
            assert!(
                matches!(
                    assess_nodule(&Nodule::new(Solid, d, Baseline)),
                    Err(NoduleError::InvalidDiameter(_))
                ),
                "{d}"
            );
        }
        let mut n = Nodule::new(PartSolid, 10.0, Baseline);
        assert_eq!(assess_nodule(&n), Err(NoduleError::MissingSolidComponent));
        n.status = Growing;
        assert_eq!(assess_nodule(&n), Err(NoduleError::MissingSolidComponent));
        n.solid_component_mm = Some(12.0);
        assert_eq!(
            assess_nodule(&n),
            Err(NoduleError::SolidLargerThanNodule {
                solid: 12.0,
                total: 10.0
            })
        );
        n.solid_component_mm = Some(-1.0);
        assert_eq!(
            assess_nodule(&n),
            Err(NoduleError::InvalidSolidComponent(-1.0))
        );
        let exam = Exam {
            nodules: vec![Nodule::new(Solid, 5.0, Baseline), n],
            ..Exam::default()
        };
        let err = assess(&exam).err();
        assert!(
            matches!(err, Some(LungRadsError::Nodule { index: 2, .. })),
            "{err:?}"
        );
        assert!(err.is_some_and(|e| e.to_string().starts_with("nodule 2: ")));
    }

    #[test]
    fn exam_takes_the_highest_nodule() {
        let empty = assess(&Exam::default()).expect("assess");
        assert_eq!(
            (empty.category, empty.driver, empty.label.as_str()),
            (One, None, "1")
        );
        assert_eq!(empty.management, "12-month screening LDCT");

        let exam = Exam {
            nodules: vec![
                Nodule::new(Solid, 4.0, Baseline),
                Nodule::new(Solid, 9.0, Baseline),
                Nodule::new(GroundGlass, 35.0, Baseline),
            ],
            other_findings_s: true,
            incomplete: false,
        };
        let a = assess(&exam).expect("assess");
        assert_eq!(a.category, FourA);
        assert_eq!(a.driver, Some(1));
        assert_eq!(a.label, "4AS");
        assert!(a.s_modifier);
        assert!(a.management.starts_with("3-month LDCT"));
        assert!(
            a.reason
                .starts_with("nodule 2: solid nodule at baseline, 9 mm"),
            "{}",
            a.reason
        );
        let cats: Vec<Category> = a.nodules.iter().map(|n| n.category).collect();
        assert_eq!(cats, vec![Two, FourA, Three]);

        // ties go to the first nodule
        let tie = Exam {
            nodules: vec![
                Nodule::new(Solid, 6.5, Baseline),
                Nodule::new(Solid, 7.0, Baseline),
            ],
            ..Exam::default()
        };
        assert_eq!(assess(&tie).expect("assess").driver, Some(0));

        let incomplete = Exam {
            incomplete: true,
            ..exam
        };
        let a = assess(&incomplete).expect("assess");
        assert_eq!((a.category, a.driver, a.label.as_str()), (Zero, None, "0S"));
        assert_eq!(a.nodules.len(), 3);
    }

    #[test]
    fn categories_read_and_write() {
        for c in [Zero, One, Two, Three, FourA, FourB, FourX] {
            assert_eq!(Category::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).ok(),
                Some(serde_json::json!(c.as_str()))
            );
            assert!(!c.management().is_empty() && !c.descriptor().is_empty());
        }
        assert_eq!(Category::parse("4a"), Some(FourA));
        assert_eq!(Category::parse("5"), None);
        assert!(Zero < One && Three < FourA && FourA < FourB && FourB < FourX);
        assert_eq!(FourB.management(), FourX.management());
        let n: Nodule = serde_json::from_value(serde_json::json!({
            "kind": "part-solid", "mean_diameter_mm": 8.0, "solid_component_mm": 5.0,
            "status": "new", "prior_category": "3"
        }))
        .expect("nodule json");
        assert_eq!(
            (n.kind, n.status, n.prior_category),
            (PartSolid, New, Some(Three))
        );
    }

    fn values(json: serde_json::Value) -> Values {
        serde_json::from_value(json).expect("values json")
    }

    #[test]
    fn exam_from_template_values() {
        let v = values(serde_json::json!({
            "exam_type": "follow-up",
            "nodule1_type": "part-solid", "nodule1_diameter": 12.0, "nodule1_solid": "4.5",
            "nodule1_change": "growing",
            "nodule2_type": ["solid"], "nodule2_diameter": 5.0, "nodule2_change": "stable",
            "nodule2_prior_category": "3", "nodule2_calcification": "no",
            "nodule3_type": "", "nodule3_diameter": "",
            "s_modifier": "yes", "incomplete_reason": "none",
            "impression": "Growing part-solid nodule."
        }));
        let exam = from_template_values(&v).expect("exam");
        assert_eq!(exam.nodules.len(), 2);
        assert!(exam.other_findings_s && !exam.incomplete);
        assert_eq!(exam.nodules[0].kind, PartSolid);
        assert_eq!(exam.nodules[0].solid_component_mm, Some(4.5));
        assert_eq!(exam.nodules[0].status, Growing);
        assert_eq!(exam.nodules[1].prior_category, Some(Three));
        let a = assess(&exam).expect("assess");
        assert_eq!((a.label.as_str(), a.driver), ("4BS", Some(0)));

        // at baseline the change field is ignored
        let v = values(serde_json::json!({
            "exam_type": "baseline", "nodule1_type": "solid", "nodule1_diameter": 7, "nodule1_change": "new",
            "nodule1_calcification": "yes"
        }));
        let exam = from_template_values(&v).expect("exam");
        assert_eq!(exam.nodules[0].status, Baseline);
        assert!(exam.nodules[0].benign_calcification);
        assert_eq!(assess(&exam).map(|a| a.category), Ok(One));

        // no nodules: category 1; incomplete: 0
        let v = values(
            serde_json::json!({"exam_type": "baseline", "incomplete_reason": "prior-pending"}),
        );
        let exam = from_template_values(&v).expect("exam");
        assert!(exam.nodules.is_empty() && exam.incomplete);

        // not computable yet, or another template
        for json in [
            serde_json::json!({"exam_type": "baseline", "nodule1_type": "solid"}),
            serde_json::json!({"exam_type": "baseline", "nodule2_diameter": 5}),
            serde_json::json!({"exam_type": "follow-up", "nodule1_type": "solid", "nodule1_diameter": 5}),
            serde_json::json!({"exam_type": "baseline", "nodule1_type": "part-solid", "nodule1_diameter": 9}),
            serde_json::json!({"lungs": "Clear.", "impression": "Normal."}),
            serde_json::json!({}),
        ] {
            assert_eq!(from_template_values(&values(json.clone())), None, "{json}");
        }
    }

    #[test]
    fn template_values_validate_against_the_starter_template() {
        let xhtml = crate::template::starter_templates()
            .into_iter()
            .find(|(id, _)| *id == LUNG_NODULE_TEMPLATE_ID)
            .map(|(_, x)| x)
            .expect("starter lung-nodule template");
        let t = crate::template::Template::parse(xhtml).expect("parse");
        let v = values(serde_json::json!({
            "exam_type": "follow-up", "comparison_date": "2025-03-01", "incomplete_reason": "none",
            "nodule1_type": "solid", "nodule1_location": "rul", "nodule1_diameter": 9.4,
            "nodule1_change": "new", "nodule1_calcification": "no", "nodule1_suspicious": "no",
            "nodule1_prior_category": "2", "s_modifier": "no",
            "lungrads_category": "4B", "impression": "New 9.4 mm solid nodule, right upper lobe."
        }));
        assert_eq!(t.validate(&v), Ok(()));
        let a = from_template_values(&v)
            .and_then(|e| assess(&e).ok())
            .expect("assessment");
        assert_eq!(a.category, FourB);
        // every nodule field id of the template is one from_template_values reads
        for f in t.fields().iter().filter(|f| f.id.starts_with("nodule")) {
            let n: usize = f.id[6..7].parse().expect("nodule number");
            assert!((1..=TEMPLATE_NODULES).contains(&n), "{}", f.id);
        }
        for id in [
            "exam_type",
            "incomplete_reason",
            "s_modifier",
            "lungrads_category",
            "impression",
        ] {
            assert!(t.field(id).is_some(), "{id}");
        }
        // the category field offers every category
        for c in [Zero, One, Two, Three, FourA, FourB, FourX] {
            assert!(
                t.field("lungrads_category")
                    .and_then(|f| f.option(c.as_str()))
                    .is_some(),
                "{c}"
            );
        }
    }
}
