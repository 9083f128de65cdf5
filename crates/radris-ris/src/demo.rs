//! The demo department's day (`radris demo`, `radris serve --demo`): a procedure catalogue,
//! a CT (`CT01`) and an MR (`MR01`) with opening hours, radiologists on shift with their
//! subspecialties, routing rules, patients, the orders behind the demo studies (already
//! performed: some reported, some waiting on reading worklists), today's appointments on
//! both scanners in every state, and a few orders still to schedule (one STAT).
//!
//! Everything goes through the same service calls the API uses (so it is audited and
//! published like real work); only the timestamps of orders performed in the past are set
//! afterwards, so the analytics show realistic turnaround times.

use radris_core::TenantId;

use crate::Priority;
use crate::model::*;
use crate::routing::Rule;
use crate::service::{Actor, Ris, RisError};
use crate::workflow::OrderState;

/// A demo order left claimed with its images complete, for the report module to write,
/// sign (`status`: `final` or `preliminary`) and store.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub order_id: String,
    pub reader: String,
    pub status: String,
    pub description: String,
    pub findings: String,
    pub impression: String,
}

/// An archived demo study, for the order behind it.
#[derive(Debug, Clone)]
pub struct DemoStudy {
    pub study_uid: String,
    pub patient_id: String,
    pub patient_name: String,
    pub birth_date: String,
    pub sex: String,
    pub accession: String,
    pub description: String,
}

const MIN: i64 = 60_000;
const DAY: i64 = 24 * 60 * MIN;

fn procedure(
    code: &str,
    name: &str,
    modality: &str,
    body: &str,
    duration: i64,
    prep: &str,
    sub: &str,
) -> Procedure {
    Procedure {
        code: code.into(),
        scheme: "RADRIS".into(),
        name: name.into(),
        modality: modality.into(),
        body_part: body.into(),
        duration_min: duration,
        preparation: prep.into(),
        subspecialty: sub.into(),
    }
}

/// The catalogue procedure of a demo study, by its description.
fn procedure_of(description: &str) -> &'static str {
    let d = description.to_ascii_uppercase();
    if d.starts_with("PET") {
        "PTWB"
    } else if d.starts_with("MR BRAIN") {
        "MRBR"
    } else if d.starts_with("CT HEAD") {
        "CTHD"
    } else if d.starts_with("XR CHEST") {
        "XRCH"
    } else {
        "CTCH"
    }
}

/// Seed the demo day into `tenant` (once: nothing happens when the tenant has a catalogue).
/// `now` fixes "today". Returns whether anything was written.
pub async fn seed_demo_day(
    ris: &Ris,
    tenant: &TenantId,
    studies: &[DemoStudy],
    readers: &[(&str, &[&str])],
    now: Time,
) -> Result<Option<Vec<DemoReport>>, RisError> {
    if !ris.procedures(tenant).await?.is_empty() {
        return Ok(None);
    }
    let mut to_report = Vec::new();
    let sys = Actor::system();
    for p in [
        procedure("CTCH", "CT chest", "CT", "CHEST", 20, "", "chest"),
        procedure(
            "CTHD",
            "CT head without contrast",
            "CT",
            "HEAD",
            15,
            "",
            "neuro",
        ),
        procedure(
            "CTAP",
            "CT abdomen and pelvis with contrast",
            "CT",
            "ABDOMEN",
            25,
            "Oral contrast 1 h before; creatinine",
            "body",
        ),
        procedure(
            "CTPE",
            "CT pulmonary angiography",
            "CT",
            "CHEST",
            20,
            "IV access 18G",
            "chest",
        ),
        procedure(
            "MRBR",
            "MR brain",
            "MR",
            "HEAD",
            40,
            "MR safety questionnaire",
            "neuro",
        ),
        procedure(
            "MRLS",
            "MR lumbar spine",
            "MR",
            "LSPINE",
            35,
            "MR safety questionnaire",
            "msk",
        ),
        procedure(
            "MRKN",
            "MR knee",
            "MR",
            "KNEE",
            30,
            "MR safety questionnaire",
            "msk",
        ),
        procedure(
            "MRLI",
            "MR liver with contrast",
            "MR",
            "ABDOMEN",
            45,
            "Fasting 4 h; MR safety questionnaire",
            "body",
        ),
        procedure("XRCH", "XR chest PA", "CR", "CHEST", 10, "", "chest"),
        procedure(
            "PTWB",
            "PET-CT whole body FDG",
            "PT",
            "WHOLEBODY",
            60,
            "Fasting 6 h; glucose < 11 mmol/l",
            "nuclear",
        ),
    ] {
        ris.put_procedure(tenant, &p, &sys).await?;
    }
    let resource =
        |kind, name: &str, modality: &str, ae: &str, subs: &[&str], user: &str| Resource {
            id: String::new(),
            kind,
            name: name.into(),
            modality: modality.into(),
            ae_title: ae.into(),
            station_name: if ae.is_empty() {
                String::new()
            } else {
                format!("{ae}-STATION")
            },
            site: "main".into(),
            subspecialties: subs.iter().map(|s| s.to_string()).collect(),
            user_name: user.into(),
            open_from: "07:00".into(),
            open_to: "19:00".into(),
        };
    let ct = ris
        .create_resource(
            tenant,
            &resource(ResourceKind::Modality, "CT 1", "CT", "CT01", &[], ""),
            &sys,
        )
        .await?;
    let mr = ris
        .create_resource(
            tenant,
            &resource(ResourceKind::Modality, "MR 1", "MR", "MR01", &[], ""),
            &sys,
        )
        .await?;
    let today = Time(now.0.div_euclid(DAY) * DAY);
    for (user, subs) in readers {
        let staff = ris
            .create_resource(
                tenant,
                &resource(ResourceKind::Staff, user, "", "", subs, user),
                &sys,
            )
            .await?;
        // on shift around the clock for three days, so the demo routes whenever it is opened
        for d in 0..3 {
            ris.create_shift(
                tenant,
                &staff.id,
                Time(today.0 + d * DAY),
                Time(today.0 + (d + 1) * DAY - MIN),
                &sys,
            )
            .await?;
        }
    }
    ris.set_routing_config(
        tenant,
        &RoutingConfig {
            rules: vec![
                Rule {
                    name: "STAT CT to the emergency radiologist".into(),
                    modality: "CT".into(),
                    priority: Some(Priority::Stat),
                    subspecialty: "emergency".into(),
                    group: "emergency".into(),
                    ..Rule::default()
                },
                Rule {
                    name: "Neuroradiology".into(),
                    body_part: "HEAD".into(),
                    subspecialty: "neuro".into(),
                    group: "neuro".into(),
                    ..Rule::default()
                },
                Rule {
                    name: "Chest".into(),
                    body_part: "CHEST".into(),
                    subspecialty: "chest".into(),
                    group: "body".into(),
                    ..Rule::default()
                },
                Rule {
                    name: "Musculoskeletal MR".into(),
                    modality: "MR".into(),
                    subspecialty: "msk".into(),
                    group: "msk".into(),
                    ..Rule::default()
                },
            ],
            stat_escalation_minutes: 30,
        },
        &sys,
    )
    .await?;

    // the orders behind the archived demo studies: performed in the past
    let mut patients: std::collections::HashMap<String, String> = Default::default();
    for (i, st) in studies.iter().enumerate() {
        let pid = match patients.get(&st.patient_id) {
            Some(id) => id.clone(),
            None => {
                let p = ris
                    .create_patient(
                        tenant,
                        &NewPatient {
                            patient_id: st.patient_id.clone(),
                            issuer: "RADRIS-DEMO".into(),
                            name: st.patient_name.clone(),
                            birth_date: st.birth_date.clone(),
                            sex: st.sex.clone(),
                        },
                        &sys,
                    )
                    .await?;
                patients.insert(st.patient_id.clone(), p.id.clone());
                p.id
            }
        };
        let o = ris
            .create_order(
                tenant,
                &NewOrder {
                    patient: pid,
                    procedure_code: procedure_of(&st.description).into(),
                    priority: if i == 2 {
                        Priority::Stat
                    } else {
                        Priority::Routine
                    },
                    reason: st.description.to_lowercase(),
                    referring_physician: "Hansen^Kari".into(),
                    // the PET-CT's order got another accession number than the modality
                    // sent: the study waits in the reconciliation queue
                    accession: (i != 5).then(|| st.accession.clone()),
                },
                &sys,
            )
            .await?;
        if i == 5 {
            ris.seed_past(
                tenant,
                &o.id,
                &o.study_uid,
                &[OrderState::InProgress],
                "",
                false,
                now.0 - DAY,
            )
            .await?;
            continue;
        }
        // reported (their signed reports come from the report module): the baseline a year
        // ago and the head CT final, the MR preliminary; the rest (the chest CT follow-up,
        // the CR) wait on reading worklists
        // the reports are signed by colleagues of the demo user (so that it has reports
        // of others to peer review): the first other radiologist with the subspecialty
        let wanted = if i == 1 { "chest" } else { "neuro" };
        let reader = readers
            .iter()
            .find(|(user, subs)| *user != "demo" && subs.contains(&wanted))
            .or_else(|| readers.first())
            .map(|r| r.0)
            .unwrap_or("");
        let report = matches!(i, 1..=3);
        let holder = ris
            .seed_past(
                tenant,
                &o.id,
                &st.study_uid,
                &[OrderState::InProgress, OrderState::ImagesComplete],
                reader,
                report,
                now.0 - (6 - i as i64) * DAY / 2,
            )
            .await?;
        if report {
            let (findings, impression) = match i {
                1 => (
                    "Three solid pulmonary nodules, the largest 6 mm in the right upper lobe. No lymphadenopathy. No pleural effusion.",
                    "Pulmonary nodules up to 6 mm: follow-up CT in 12 months.",
                ),
                2 => (
                    "No intracranial haemorrhage, mass effect or midline shift. Grey-white differentiation preserved.",
                    "No acute intracranial abnormality.",
                ),
                _ => (
                    "No acute infarct on diffusion. No mass. Scattered small T2 hyperintensities in the white matter.",
                    "Mild small-vessel disease. Final report to follow.",
                ),
            };
            to_report.push(DemoReport {
                order_id: o.id.clone(),
                reader: holder,
                status: if i == 3 { "preliminary" } else { "final" }.into(),
                description: st.description.clone(),
                findings: findings.into(),
                impression: impression.into(),
            });
        }
    }

    // today: new patients, orders and appointments on CT 1 and MR 1 in every state
    let people = [
        (
            "RDM1001",
            "Berg^Anna",
            "19800212",
            "F",
            "CTAP",
            Priority::Routine,
        ),
        (
            "RDM1002",
            "Silva^Pedro",
            "19751120",
            "M",
            "CTHD",
            Priority::Urgent,
        ),
        (
            "RDM1003",
            "Kowalski^Ewa",
            "19921004",
            "F",
            "CTCH",
            Priority::Routine,
        ),
        (
            "RDM1004",
            "Haddad^Omar",
            "19660630",
            "M",
            "CTPE",
            Priority::Stat,
        ),
        (
            "RDM1005",
            "Jensen^Mette",
            "19840415",
            "F",
            "MRBR",
            Priority::Routine,
        ),
        (
            "RDM1006",
            "Tanaka^Hiro",
            "19590808",
            "M",
            "MRLS",
            Priority::Routine,
        ),
        (
            "RDM1007",
            "Dubois^Claire",
            "20010117",
            "F",
            "MRKN",
            Priority::Routine,
        ),
        (
            "RDM1008",
            "Novak^Petr",
            "19700302",
            "M",
            "MRLI",
            Priority::Urgent,
        ),
        (
            "RDM1009",
            "Moreau^Luc",
            "19881225",
            "M",
            "CTAP",
            Priority::Routine,
        ),
        (
            "RDM1010",
            "Ivanova^Olga",
            "19950709",
            "F",
            "MRBR",
            Priority::Routine,
        ),
        (
            "RDM1011",
            "Fischer^Jonas",
            "19620521",
            "M",
            "CTCH",
            Priority::Stat,
        ),
    ];
    let mut ct_at = today.0 + 8 * 60 * MIN;
    let mut mr_at = today.0 + 8 * 60 * MIN;
    for (k, (pid, name, birth, sex, code, prio)) in people.iter().enumerate() {
        let p = ris
            .create_patient(
                tenant,
                &NewPatient {
                    patient_id: (*pid).into(),
                    issuer: "RADRIS-DEMO".into(),
                    name: (*name).into(),
                    birth_date: (*birth).into(),
                    sex: (*sex).into(),
                },
                &sys,
            )
            .await?;
        let o = ris
            .create_order(
                tenant,
                &NewOrder {
                    patient: p.id,
                    procedure_code: (*code).into(),
                    priority: *prio,
                    reason: "demo day".into(),
                    referring_physician: "Hansen^Kari".into(),
                    accession: None,
                },
                &sys,
            )
            .await?;
        if k >= 9 {
            continue; // left to schedule (one STAT): the auto-scheduler's work
        }
        let (res, at) = if code.starts_with("MR") {
            (&mr, &mut mr_at)
        } else {
            (&ct, &mut ct_at)
        };
        let a = ris.book(tenant, &o.id, &res.id, Time(*at), &sys).await?;
        *at = a.ends_at.0 + 10 * MIN;
        match k % 4 {
            1 => {
                ris.arrive(tenant, &a.id, &sys).await?;
            }
            2 if k < 4 => {
                ris.arrive(tenant, &a.id, &sys).await?;
                ris.transition(
                    tenant,
                    &o.id,
                    OrderState::InProgress,
                    &sys,
                    "demo: scanning",
                )
                .await?;
            }
            _ => {}
        }
    }
    Ok(Some(to_report))
}

impl Ris {
    /// Demo only: walk an order along `path` (linked to an archived study); with `claim`,
    /// `reader` claims it. Then date its milestones from
    /// `start` on (minutes apart as a department would see them). Returns who holds it.
    #[allow(clippy::too_many_arguments)]
    async fn seed_past(
        &self,
        tenant: &TenantId,
        order_id: &str,
        study_uid: &str,
        path: &[OrderState],
        reader: &str,
        claim: bool,
        start: i64,
    ) -> Result<String, RisError> {
        let sys = Actor::system();
        let mut conn = self.conn().await?;
        sqlx::query("UPDATE ris_orders SET study_uid = $1, state = 'scheduled' WHERE tenant_id = $2 AND id = $3")
            .bind(study_uid)
            .bind(tenant.as_str())
            .bind(order_id)
            .execute(&mut *conn)
            .await
            .map_err(RisError::db("demo order"))?;
        drop(conn);
        for st in path {
            self.transition(tenant, order_id, *st, &sys, "demo history")
                .await?;
        }
        let mut holder = String::new();
        if claim {
            holder = reader.to_owned();
            self.claim(tenant, order_id, &Actor::user(&holder, "local"))
                .await?;
        }
        let at = |m: i64| start + m * MIN;
        let reached = |s: OrderState| path.contains(&s);
        let mut conn = self.conn().await?;
        sqlx::query(
            "UPDATE ris_orders SET ordered_at = $1, scheduled_at = $2, arrived_at = $3, started_at = $4, images_at = $5, \
             preliminary_at = $6, final_at = $7, updated_at = $8 WHERE tenant_id = $9 AND id = $10",
        )
        .bind(at(0))
        .bind(at(30))
        .bind(at(24 * 60 - 20))
        .bind(at(24 * 60))
        .bind(at(24 * 60 + 25))
        .bind(if reached(OrderState::Preliminary) { at(24 * 60 + 95) } else { 0 })
        .bind(if reached(OrderState::Final) { at(24 * 60 + 180) } else { 0 })
        .bind(at(24 * 60 + 25))
        .bind(tenant.as_str())
        .bind(order_id)
        .execute(&mut *conn)
        .await
        .map_err(RisError::db("demo times"))?;
        Ok(holder)
    }
}
