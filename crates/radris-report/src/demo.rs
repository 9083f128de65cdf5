//! Signed reports for the demo department: the orders the RIS demo left claimed and waiting
//! get a report from a fitting starter template, with the required fields filled the way a
//! normal study reads, signed by the radiologist who holds the case, and stored in the study
//! as DICOM SR.

use radris_core::TenantId;
use radris_ris::Actor;
use radris_ris::demo::DemoReport;
use radris_store::Archive;

use crate::model::{ReportContent, ReportStatus};
use crate::service::{ReportError, Reports};
use crate::template::{FieldKind, Template};

/// A template field's value in a normal study: its default, else the first option, the
/// middle of a number's range, today's date, or "normal".
fn normal_value(kind: &FieldKind, default: Option<&str>) -> serde_json::Value {
    if let Some(d) = default.filter(|d| !d.is_empty()) {
        if let FieldKind::Number { .. } = kind
            && let Ok(n) = d.parse::<f64>()
        {
            return serde_json::json!(n);
        }
        return serde_json::json!(d);
    }
    match kind {
        FieldKind::Text { .. } => serde_json::json!("normal"),
        FieldKind::Number { min, max, .. } => serde_json::json!(match (min, max) {
            (Some(a), Some(b)) => ((a + b) / 2.0).round(),
            (Some(a), None) => *a,
            (None, Some(b)) => *b,
            (None, None) => 0.0,
        }),
        FieldKind::Date => serde_json::json!(chrono::Utc::now().format("%Y-%m-%d").to_string()),
        FieldKind::Choice { options, multiple } => {
            let first = options.first().map(|o| o.value.clone()).unwrap_or_default();
            if *multiple {
                serde_json::json!([first])
            } else {
                serde_json::json!(first)
            }
        }
    }
}

fn template_for(description: &str) -> &'static str {
    let d = description.to_ascii_uppercase();
    if d.contains("HEAD") {
        "ct-head"
    } else if d.starts_with("MR") {
        "mr-brain"
    } else if d.starts_with("XR") || d.starts_with("CR") {
        "xr-chest"
    } else if d.contains("NODULE") {
        "lung-nodule"
    } else {
        "ct-chest"
    }
}

/// Write, sign and store the demo reports. Returns how many were signed.
pub async fn seed_reports(
    reports: &Reports,
    archive: &Archive,
    tenant: &TenantId,
    cases: &[DemoReport],
) -> Result<usize, ReportError> {
    let mut signed = 0;
    for case in cases {
        let reader = Actor::user(&case.reader, "local");
        let template_id = template_for(&case.description);
        let report = reports
            .create(tenant, &case.order_id, template_id, &reader)
            .await?;
        let (_, xhtml) = reports
            .template_text(tenant, template_id, Some(report.template_version))
            .await?;
        let t = Template::parse(&xhtml).map_err(|e| ReportError::Database(e.to_string()))?;
        let mut content = ReportContent {
            narrative: case.findings.clone(),
            impression: case.impression.clone(),
            ..Default::default()
        };
        for f in t.fields().iter().filter(|f| f.required) {
            content
                .values
                .insert(f.id.clone(), normal_value(&f.kind, f.default.as_deref()));
        }
        reports
            .save(tenant, &report.id, report.rev, &content, &reader)
            .await?;
        let status = if case.status == "preliminary" {
            ReportStatus::Preliminary
        } else {
            ReportStatus::Final
        };
        let v = reports.sign(tenant, &report.id, status, &reader).await?;
        reports
            .store_sr(archive, tenant, &report.id, v.version)
            .await?;
        signed += 1;
    }
    Ok(signed)
}
