//! A signed version as DICOM SR and as PDF, from the one report model: both are made from
//! the signed document (the canonical JSON that was signed), never from the working copy.

use radris_core::TenantId;
use radris_dicom::sr;
use radris_store::{Archive, StudySummary};

use crate::model::ReportContent;
use crate::pdf::PdfReport;
use crate::service::{ReportError, Reports};
use crate::template::CodedValue;

/// What an output needs to know besides the signed document.
pub struct OutputContext<'a> {
    pub institution: &'a str,
    /// The archived study (dates, referring physician) when it is in the archive.
    pub study: Option<&'a StudySummary>,
    /// The SR of the previous signed version (an amendment refers to it).
    pub predecessor: Option<sr::Predecessor>,
    /// SOP Class UIDs of the cited images, when the archive knows them.
    pub sop_class_of: &'a (dyn Fn(&str) -> Option<(String, String)> + Sync),
}

fn text(doc: &serde_json::Value, key: &str) -> String {
    doc.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// `2026-11-28T09:30:00Z` → (`20261128`, `093000`).
fn dicom_datetime(iso: &str) -> (String, String) {
    let digits: String = iso.chars().filter(char::is_ascii_digit).collect();
    (
        digits.get(..8).unwrap_or("").to_owned(),
        digits.get(8..14).unwrap_or("").to_owned(),
    )
}

/// The DICOM heading of a report section.
fn heading(name: &str) -> sr::Code {
    let n = name.to_ascii_lowercase();
    if n.starts_with("impression") || n.starts_with("conclusion") {
        sr::codes::impressions()
    } else if n.starts_with("addend") {
        sr::codes::addendum()
    } else if n.starts_with("history") || n.starts_with("clinical") {
        sr::codes::history()
    } else if n.starts_with("indication") {
        sr::codes::indications()
    } else if n.starts_with("recommend") {
        sr::codes::recommendations()
    } else if n.starts_with("technique") || n.starts_with("procedure") {
        sr::codes::procedure_descriptions()
    } else {
        sr::codes::findings()
    }
}

impl Reports {
    /// The sections of a signed document: the template's sections with their values, the
    /// narrative, the impression and the addenda.
    pub async fn signed_sections(
        &self,
        tenant: &radris_core::TenantId,
        doc: &serde_json::Value,
    ) -> Result<
        (
            ReportContent,
            Vec<(String, String)>,
            Vec<crate::template::CodedFinding>,
        ),
        ReportError,
    > {
        let content: ReportContent = serde_json::from_value(doc["content"].clone())
            .map_err(|e| ReportError::Database(format!("signed content: {e}")))?;
        let template_id = doc["template"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let version = doc["template"]["version"].as_i64().unwrap_or(1);
        let (_, xhtml) = self
            .template_text(tenant, &template_id, Some(version))
            .await?;
        let t = crate::template::Template::parse(&xhtml)
            .map_err(|e| ReportError::Database(format!("stored template: {e}")))?;
        let values: crate::template::Values =
            serde_json::from_value(serde_json::to_value(&content.values).unwrap_or_default())
                .map_err(|e| ReportError::Database(format!("signed values: {e}")))?;
        let mut sections = t.sections_text(&values);
        if !content.narrative.trim().is_empty() {
            sections.push(("Narrative".into(), content.narrative.clone()));
        }
        if !content.impression.trim().is_empty() {
            sections.push(("Impression".into(), content.impression.clone()));
        }
        for (i, a) in content.addenda.iter().enumerate() {
            sections.push((format!("Addendum {}", i + 1), a.clone()));
        }
        let coded = t.coded_findings(&values);
        Ok((content, sections, coded))
    }
}

/// The signed version as a DICOM SR document: Comprehensive SR (TID 1500) when it cites
/// measurements, Basic Text SR otherwise.
pub fn sr_report(
    doc: &serde_json::Value,
    content: &ReportContent,
    sections: &[(String, String)],
    coded: &[crate::template::CodedFinding],
    ctx: &OutputContext<'_>,
) -> sr::SrReport {
    let (date, time) = dicom_datetime(&text(doc, "signed_at"));
    let study = ctx.study;
    let image = |uid: &str, class: &str, frame: Option<u32>| {
        let (series, known_class) = (ctx.sop_class_of)(uid).unwrap_or_default();
        sr::ImageRef {
            study_uid: None,
            series_uid: series,
            sop_class_uid: if class.is_empty() {
                known_class
            } else {
                class.to_owned()
            },
            sop_instance_uid: uid.to_owned(),
            frame,
        }
    };
    let signer = text(doc, "signer");
    let status = text(doc, "status");
    sr::SrReport {
        study: sr::StudyRef {
            study_uid: text(doc, "study_uid"),
            patient_id: text(doc, "patient_id"),
            patient_name: text(doc, "patient_name"),
            birth_date: study
                .map(|s| s.patient_birth_date.clone())
                .unwrap_or_default(),
            sex: study.map(|s| s.patient_sex.clone()).unwrap_or_default(),
            accession: text(doc, "accession"),
            study_date: study.map(|s| s.study_date.clone()).unwrap_or_default(),
            study_time: study.map(|s| s.study_time.clone()).unwrap_or_default(),
            referring_physician: String::new(),
            study_id: String::new(),
            study_description: study
                .map(|s| s.description.clone())
                .unwrap_or_else(|| text(doc, "procedure")),
        },
        series_uid: None,
        sop_instance_uid: None,
        series_number: 9000,
        instance_number: doc["version"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1),
        content_date: date.clone(),
        content_time: time.clone(),
        title: sr::codes::diagnostic_imaging_report(),
        language: Some(sr::codes::english_us()),
        procedure: None,
        author: sr::Person {
            name: signer.clone(),
            organization: Some(ctx.institution.to_owned()),
        },
        verified: (status != "preliminary").then(|| sr::Verification {
            verifying_observer_name: signer.clone(),
            organization: ctx.institution.to_owned(),
            datetime: format!("{date}{time}"),
        }),
        complete: status != "preliminary",
        sections: sections
            .iter()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(h, t)| sr::Section {
                heading: heading(h),
                text: format!("{h}: {t}"),
            })
            .collect(),
        measurements: content
            .measurements
            .iter()
            .map(|m| sr::Measurement {
                name: sr::Code::new("410668003", "SCT", &m.label),
                value: m.value,
                unit: sr::codes::ucum(&m.unit),
                // only images the archive knows (their series and class are needed)
                image: Some(image(&m.sop_instance_uid, &m.sop_class_uid, m.frame))
                    .filter(|i| !i.series_uid.is_empty() && !i.sop_class_uid.is_empty()),
                ..Default::default()
            })
            .collect(),
        coded_findings: coded
            .iter()
            .filter_map(|f| {
                let concept = f.concept.as_ref()?;
                let CodedValue::Code { code } = &f.value else {
                    return None;
                };
                Some((
                    sr::Code::new(&concept.value, &concept.scheme, &concept.meaning),
                    sr::Code::new(&code.value, &code.scheme, &code.meaning),
                ))
            })
            .collect(),
        key_images: content
            .key_images
            .iter()
            .map(|k| image(&k.sop_instance_uid, &k.sop_class_uid, k.frame))
            .filter(|i| !i.series_uid.is_empty() && !i.sop_class_uid.is_empty())
            .collect(),
        predecessor: ctx.predecessor.clone(),
    }
}

/// The signed version as a printable PDF.
pub fn pdf_report(
    doc: &serde_json::Value,
    content: &ReportContent,
    sections: &[(String, String)],
    sha256: &str,
    ctx: &OutputContext<'_>,
    logo_png: Option<Vec<u8>>,
) -> PdfReport {
    let study = ctx.study;
    let status = text(doc, "status").to_ascii_uppercase();
    PdfReport {
        institution: ctx.institution.to_owned(),
        logo_png,
        title: format!("Radiology report: {}", text(doc, "procedure")),
        patient_lines: vec![
            (
                "Patient".into(),
                text(doc, "patient_name").replace('^', ", "),
            ),
            ("Patient ID".into(), text(doc, "patient_id")),
            (
                "Birth date".into(),
                study
                    .map(|s| s.patient_birth_date.clone())
                    .unwrap_or_default(),
            ),
            (
                "Sex".into(),
                study.map(|s| s.patient_sex.clone()).unwrap_or_default(),
            ),
        ],
        exam_lines: vec![
            ("Accession".into(), text(doc, "accession")),
            ("Procedure".into(), text(doc, "procedure")),
            (
                "Exam date".into(),
                study.map(|s| s.study_date.clone()).unwrap_or_default(),
            ),
            ("Report version".into(), doc["version"].to_string()),
        ],
        sections: sections.to_vec(),
        measurements: content
            .measurements
            .iter()
            .map(|m| (m.label.clone(), format!("{} {}", m.value, m.unit)))
            .collect(),
        status: if status == "AMENDED" {
            "AMENDED".into()
        } else {
            status
        },
        signature: Some(format!(
            "Electronically signed by {} on {}; SHA-256 {}",
            text(doc, "signer"),
            text(doc, "signed_at"),
            sha256
        )),
        footer: format!(
            "{} · report {} · generated by RADRIS",
            ctx.institution,
            text(doc, "report_id")
        ),
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> ReportError {
    ReportError::Database(format!("{what}: {e}"))
}

/// The series and SOP class of an archived instance.
async fn instance_classes(
    archive: &Archive,
    tenant: &TenantId,
    uids: &[String],
) -> std::collections::HashMap<String, (String, String)> {
    let mut out = std::collections::HashMap::new();
    for uid in uids {
        if let Ok(Some(i)) = archive.index().instance(tenant, uid).await {
            out.insert(uid.clone(), (i.series_uid, i.sop_class_uid));
        }
    }
    out
}

impl Reports {
    /// Make the SR of a signed version, store it in the order's study, and record its SOP
    /// Instance UID on the version. Returns that UID.
    pub async fn store_sr(
        &self,
        archive: &Archive,
        tenant: &TenantId,
        id: &str,
        version: i64,
    ) -> Result<String, ReportError> {
        let reports = self;
        let doc = reports.signed_document(tenant, id, version).await?;
        let (content, sections, coded) = reports.signed_sections(tenant, &doc).await?;
        let study_uid = doc["study_uid"].as_str().unwrap_or_default().to_owned();
        let study = archive
            .index()
            .study(tenant, &study_uid)
            .await
            .map_err(|e| internal("study", e))?;
        let (institution, _) = reports.branding(tenant).await?;
        let cited: Vec<String> = content
            .measurements
            .iter()
            .map(|m| m.sop_instance_uid.clone())
            .chain(
                content
                    .key_images
                    .iter()
                    .map(|k| k.sop_instance_uid.clone()),
            )
            .filter(|u| !u.is_empty())
            .collect();
        let classes = instance_classes(archive, tenant, &cited).await;
        let lookup = |uid: &str| classes.get(uid).cloned();
        let predecessor = match reports
            .versions(tenant, id)
            .await?
            .iter()
            .find(|v| v.version == version - 1)
        {
            Some(prev) if !prev.sr_sop_uid.is_empty() => archive
                .index()
                .instance(tenant, &prev.sr_sop_uid)
                .await
                .ok()
                .flatten()
                .map(|i| radris_dicom::sr::Predecessor {
                    study_uid: i.study_uid,
                    series_uid: i.series_uid,
                    sop_instance_uid: i.sop_uid,
                    sop_class_uid: i.sop_class_uid,
                }),
            _ => None,
        };
        let ctx = OutputContext {
            institution: &institution,
            study: study.as_ref(),
            predecessor,
            sop_class_of: &lookup,
        };
        let same_series = ctx.predecessor.as_ref().map(|p| p.series_uid.clone());
        let mut sr = sr_report(&doc, &content, &sections, &coded, &ctx);
        // every version of a report goes into one series
        sr.series_uid = same_series;
        let sop_uid = format!("2.25.{}", uuid::Uuid::now_v7().as_u128());
        sr.sop_instance_uid = Some(sop_uid.clone());
        let obj = if sr.measurements.is_empty() {
            radris_dicom::sr::basic_text_sr(&sr)
        } else {
            radris_dicom::sr::comprehensive_sr(&sr)
        }
        .map_err(|e| internal("making the SR", e))?;
        let bytes =
            radris_dicom::sr::to_part10(&obj).map_err(|e| internal("encoding the SR", e))?;
        let archive = archive.clone();
        let t = tenant.clone();
        tokio::task::spawn_blocking(move || archive.ingest_part10(t, &bytes))
            .await
            .map_err(|e| internal("storing the SR", e))?
            .map_err(|e| internal("storing the SR", e))?;
        reports.set_sr(tenant, id, version, &sop_uid).await?;
        Ok(sop_uid)
    }

    /// The PDF of a report's latest signed version (a draft has none: 409).
    pub async fn pdf(
        &self,
        archive: &Archive,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Vec<u8>, ReportError> {
        let reports = self;
        // another tenant's report is not found, not "unsigned"
        let versions = reports.get(tenant, id).await?.versions;
        let Some(last) = versions.last() else {
            return Err(ReportError::Conflict(
                "the report is not signed yet: there is no PDF of a draft".into(),
            ));
        };
        let doc = reports.signed_document(tenant, id, last.version).await?;
        let (content, sections, _) = reports.signed_sections(tenant, &doc).await?;
        let study_uid = doc["study_uid"].as_str().unwrap_or_default().to_owned();
        let study = archive
            .index()
            .study(tenant, &study_uid)
            .await
            .map_err(|e| internal("study", e))?;
        let (institution, logo) = reports.branding(tenant).await?;
        let none = |_: &str| None;
        let ctx = OutputContext {
            institution: &institution,
            study: study.as_ref(),
            predecessor: None,
            sop_class_of: &none,
        };
        let pdf = pdf_report(&doc, &content, &sections, &last.sha256, &ctx, logo);
        tokio::task::spawn_blocking(move || crate::pdf::render(&pdf))
            .await
            .map_err(|e| internal("rendering the PDF", e))?
            .map_err(|e| internal("rendering the PDF", e))
    }
}
