//! Smart routing of reading cases: which radiologist reads an order whose images are in.
//!
//! The first [`Rule`] whose set fields all match the order (modality, body part, priority)
//! names the subspecialty (and group) the case needs. Among the radiologists on shift now who
//! have that subspecialty, the one with the least open work reads it; open work counts a
//! STAT case as 3, urgent as 2, routine as 1. Ties go to the name that sorts first, so the
//! choice is reproducible. With nobody eligible the case goes to the rule's group (everyone
//! in it sees it under "my groups"). Every decision carries an explanation in words.

use serde::{Deserialize, Serialize};

use crate::Priority;

/// One routing rule; an unset (empty) field matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub modality: String,
    #[serde(default)]
    pub body_part: String,
    #[serde(default)]
    pub priority: Option<Priority>,
    /// The subspecialty the case needs ('' = any radiologist).
    #[serde(default)]
    pub subspecialty: String,
    /// The reading group the case belongs to ('' = none).
    #[serde(default)]
    pub group: String,
}

impl Rule {
    fn matches(&self, case: &Case) -> bool {
        let eq = |want: &str, have: &str| want.is_empty() || want.eq_ignore_ascii_case(have);
        eq(&self.modality, &case.modality)
            && eq(&self.body_part, &case.body_part)
            && self.priority.is_none_or(|p| p == case.priority)
    }
}

/// What routing knows of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub modality: String,
    pub body_part: String,
    pub priority: Priority,
    /// The subspecialty the procedure asks for ('' = none), used when no rule matches.
    pub subspecialty: String,
}

/// A radiologist who could read: on shift now, with subspecialties and open work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub user: String,
    pub subspecialties: Vec<String>,
    /// Open cases assigned to or claimed by this reader, by priority.
    pub open: Vec<Priority>,
}

impl Reader {
    /// Open work weighted by priority (STAT 3, urgent 2, routine 1).
    pub fn load(&self) -> u32 {
        self.open
            .iter()
            .map(|p| match p {
                Priority::Stat => 3,
                Priority::Urgent => 2,
                Priority::Routine => 1,
            })
            .sum()
    }
}

/// Where a case goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The radiologist ('' when nobody eligible is on shift).
    pub user: String,
    pub group: String,
    pub reason: String,
}

/// Route one case.
pub fn route(rules: &[Rule], case: &Case, on_shift: &[Reader]) -> Assignment {
    let rule = rules.iter().find(|r| r.matches(case));
    let (subspecialty, group, why_rule) = match rule {
        Some(r) => (
            r.subspecialty.clone(),
            r.group.clone(),
            format!("rule '{}' matched ({})", r.name, describe_case(case)),
        ),
        None => (
            case.subspecialty.clone(),
            String::new(),
            format!(
                "no rule matched ({}); the procedure's subspecialty applies",
                describe_case(case)
            ),
        ),
    };
    let needs = if subspecialty.is_empty() {
        "any radiologist".to_owned()
    } else {
        format!("subspecialty {subspecialty}")
    };
    let mut eligible: Vec<&Reader> = on_shift
        .iter()
        .filter(|r| {
            subspecialty.is_empty()
                || r.subspecialties
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&subspecialty))
        })
        .collect();
    eligible.sort_by(|a, b| a.load().cmp(&b.load()).then_with(|| a.user.cmp(&b.user)));
    match eligible.first() {
        Some(best) => {
            let loads = eligible
                .iter()
                .map(|r| format!("{} {}", r.user, r.load()))
                .collect::<Vec<_>>()
                .join(", ");
            Assignment {
                user: best.user.clone(),
                group,
                reason: format!(
                    "{why_rule}; needs {needs}; on shift and eligible (weighted open work): {loads}; assigned to {} (least loaded)",
                    best.user
                ),
            }
        }
        None => Assignment {
            user: String::new(),
            reason: format!(
                "{why_rule}; needs {needs}; nobody eligible is on shift; left to {}",
                if group.is_empty() {
                    "the common worklist".to_owned()
                } else {
                    format!("group {group}")
                }
            ),
            group,
        },
    }
}

fn describe_case(c: &Case) -> String {
    format!(
        "modality {}, body part {}, priority {}",
        if c.modality.is_empty() {
            "-"
        } else {
            &c.modality
        },
        if c.body_part.is_empty() {
            "-"
        } else {
            &c.body_part
        },
        c.priority.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<Rule> {
        vec![
            Rule {
                name: "neuro MR".into(),
                modality: "MR".into(),
                body_part: "HEAD".into(),
                subspecialty: "neuro".into(),
                group: "neuro".into(),
                ..Rule::default()
            },
            Rule {
                name: "STAT CT to emergency".into(),
                modality: "CT".into(),
                priority: Some(Priority::Stat),
                subspecialty: "emergency".into(),
                group: "ed".into(),
                ..Rule::default()
            },
            Rule {
                name: "chest".into(),
                body_part: "CHEST".into(),
                subspecialty: "chest".into(),
                group: "body".into(),
                ..Rule::default()
            },
        ]
    }

    fn reader(user: &str, subs: &[&str], open: &[Priority]) -> Reader {
        Reader {
            user: user.into(),
            subspecialties: subs.iter().map(|s| s.to_string()).collect(),
            open: open.to_vec(),
        }
    }

    fn case(modality: &str, body: &str, p: Priority) -> Case {
        Case {
            modality: modality.into(),
            body_part: body.into(),
            priority: p,
            subspecialty: String::new(),
        }
    }

    #[test]
    fn first_matching_rule_picks_subspecialty_and_least_loaded_reader() {
        let on = [
            reader("alice", &["neuro"], &[Priority::Routine, Priority::Routine]),
            reader("bob", &["neuro", "chest"], &[Priority::Routine]),
            reader("carol", &["chest"], &[]),
        ];
        let a = route(&rules(), &case("MR", "HEAD", Priority::Routine), &on);
        assert_eq!(a.user, "bob");
        assert_eq!(a.group, "neuro");
        assert!(a.reason.contains("rule 'neuro MR'"), "{}", a.reason);
        assert!(a.reason.contains("alice 2, bob 1") || a.reason.contains("bob 1, alice 2"));
    }

    #[test]
    fn priority_rules_only_match_their_priority() {
        let on = [
            reader("ed1", &["emergency"], &[]),
            reader("gen", &["chest"], &[]),
        ];
        let stat = route(&rules(), &case("CT", "CHEST", Priority::Stat), &on);
        assert_eq!(stat.user, "ed1");
        let routine = route(&rules(), &case("CT", "CHEST", Priority::Routine), &on);
        assert_eq!(
            routine.user, "gen",
            "routine chest CT goes by the chest rule"
        );
    }

    #[test]
    fn stat_work_weighs_more_than_routine() {
        let on = [
            reader("a", &["chest"], &[Priority::Stat]),
            reader("b", &["chest"], &[Priority::Routine, Priority::Routine]),
        ];
        let x = route(&rules(), &case("XR", "CHEST", Priority::Routine), &on);
        assert_eq!(x.user, "b", "3 (one STAT) > 2 (two routine)");
    }

    #[test]
    fn nobody_eligible_leaves_the_case_to_the_group() {
        let on = [reader("carol", &["chest"], &[])];
        let a = route(&rules(), &case("MR", "HEAD", Priority::Urgent), &on);
        assert_eq!(a.user, "");
        assert_eq!(a.group, "neuro");
        assert!(a.reason.contains("nobody eligible"), "{}", a.reason);
    }

    #[test]
    fn without_a_rule_the_procedure_subspecialty_or_anyone() {
        let on = [
            reader("zed", &[], &[]),
            reader("amy", &["msk"], &[Priority::Routine]),
        ];
        let mut c = case("XR", "KNEE", Priority::Routine);
        assert_eq!(route(&rules(), &c, &on).user, "zed", "anyone, least loaded");
        c.subspecialty = "msk".into();
        let a = route(&rules(), &c, &on);
        assert_eq!(a.user, "amy");
        assert!(a.reason.contains("no rule matched"));
    }

    #[test]
    fn ties_break_by_name() {
        let on = [reader("y", &[], &[]), reader("x", &[], &[])];
        assert_eq!(
            route(&[], &case("CT", "", Priority::Routine), &on).user,
            "x"
        );
    }
}
