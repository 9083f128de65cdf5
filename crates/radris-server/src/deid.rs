//! De-identification (PS3.15 Annex E, `radris_dicom::deid`) as the API and the CLI use it:
//! the options both accept, the salt behind every pseudonym, and `radris deidentify`.
//!
//! Salt: `SHA-256(deid key ‖ tenant ‖ 0 ‖ project)`, where the deid key is derived from the
//! master key. Exports of one project get the same pseudonyms, UIDs and date shifts (a
//! research data set can grow); different projects or tenants cannot be linked; nobody
//! without the master key can recompute a mapping from a known original.

use std::path::{Path, PathBuf};

use anyhow::Context;
use radris_dicom::deid::{
    DeidOptions, Descriptors, PatientCharacteristics, Region, TemporalInformation,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The de-identification secret derived from the master key: the first one, when the
/// master key has been rotated (retired keys are kept), so pseudonyms survive rotations.
pub fn key_from_master(master: &dyn radris_auth::keys::KeyProvider) -> anyhow::Result<[u8; 32]> {
    let key = master
        .previous_keys()
        .first()
        .copied()
        .map_or_else(|| master.master_key(), Ok)?;
    Ok(Sha256::new()
        .chain_update(b"radris-deid-key\0")
        .chain_update(key)
        .finalize()
        .into())
}

/// The salt of one tenant's project.
pub fn salt(deid_key: &[u8; 32], tenant: &str, project: &str) -> Vec<u8> {
    Sha256::new()
        .chain_update(deid_key)
        .chain_update(tenant.as_bytes())
        .chain_update([0u8])
        .chain_update(project.as_bytes())
        .finalize()
        .to_vec()
}

/// A rectangle of burned-in text to blank, in pixels from the top-left corner.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionDto {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// How to de-identify (the basic profile when empty).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeidRequest {
    /// Exports of one project share pseudonyms and UIDs; projects are unlinkable. Default:
    /// `default`.
    pub project: Option<String>,
    /// Retain Longitudinal Temporal Information with Modified Dates: dates shifted by one
    /// offset per patient (`date_shift_days`, or derived from the salt), times kept.
    pub retain_dates: bool,
    pub date_shift_days: Option<i32>,
    /// Clean Descriptors: descriptions kept present but empty (otherwise removed).
    pub clean_descriptors: bool,
    /// Retain Patient Characteristics: sex, age, size, weight, ... kept.
    pub retain_patient_characteristics: bool,
    /// Clean Recognizable Visual Features: rectangles blanked in every frame.
    pub burned_in_regions: Vec<RegionDto>,
    /// Replacement Patient Name / ID (default: a keyed pseudonym of the Patient ID).
    pub patient_name: Option<String>,
    pub patient_id: Option<String>,
    /// Include instances that still declare burned-in annotation after cleaning (by default
    /// they are withheld and listed in the report, as PS3.15 E.1.1 asks).
    pub include_burned_in: bool,
}

impl DeidRequest {
    /// Check the request and turn it into library options under `salt`.
    pub fn options(&self, salt: Vec<u8>) -> Result<DeidOptions, String> {
        if let Some(d) = self.date_shift_days
            && !(-36_500..=36_500).contains(&d)
        {
            return Err("date_shift_days must be within ±36500".into());
        }
        for (name, v) in [
            ("patient_name", &self.patient_name),
            ("patient_id", &self.patient_id),
        ] {
            if let Some(v) = v
                && (v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_control() || c == '\\'))
            {
                return Err(format!(
                    "{name} must be 1 to 64 characters, no control characters or backslash"
                ));
            }
        }
        if self.burned_in_regions.len() > 64 {
            return Err("at most 64 burned-in regions".into());
        }
        if self
            .burned_in_regions
            .iter()
            .any(|r| r.width == 0 || r.height == 0)
        {
            return Err("a burned-in region needs a width and a height".into());
        }
        let mut o = DeidOptions::new(salt);
        if self.retain_dates {
            o.temporal = TemporalInformation::ModifiedDates {
                shift_days: self.date_shift_days,
            };
        }
        if self.clean_descriptors {
            o.descriptors = Descriptors::Clean;
        }
        if self.retain_patient_characteristics {
            o.patient_characteristics = PatientCharacteristics::Retain;
        }
        o.burned_in_regions = self
            .burned_in_regions
            .iter()
            .map(|r| Region {
                x: r.x,
                y: r.y,
                width: r.width,
                height: r.height,
            })
            .collect();
        o.patient_name = self.patient_name.clone();
        o.patient_id = self.patient_id.clone();
        Ok(o)
    }

    pub fn project(&self) -> Result<&str, String> {
        let p = self.project.as_deref().unwrap_or("default");
        if p.is_empty() || p.len() > 64 || p.chars().any(|c| c.is_control()) {
            return Err("project must be 1 to 64 characters without control characters".into());
        }
        Ok(p)
    }
}

fn collect(paths: &[PathBuf], out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for p in paths {
        if p.is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            children.sort();
            collect(&children, out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(())
}

/// `radris deidentify`: de-identified copies of Part-10 files into `out` (named by their
/// new SOP Instance UID). Returns (written, refused).
pub fn run_cli(
    inputs: &[PathBuf],
    out: &Path,
    request: &DeidRequest,
    salt: Vec<u8>,
) -> anyhow::Result<(usize, usize)> {
    let options = request.options(salt).map_err(anyhow::Error::msg)?;
    let mut files = Vec::new();
    collect(inputs, &mut files)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (mut written, mut refused) = (0, 0);
    for f in files {
        let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        match radris_dicom::deid::deidentify_bytes(&bytes, &options) {
            Ok((_, report))
                if report.burned_in_annotation_remains && !request.include_burned_in =>
            {
                eprintln!(
                    "{}: withheld: it declares burned-in annotation (give --region, or --include-burned-in)",
                    f.display()
                );
                refused += 1;
            }
            Ok((clean, report)) => {
                let target = out.join(format!("{}.dcm", report.sop_instance_uid));
                std::fs::write(&target, clean)
                    .with_context(|| format!("writing {}", target.display()))?;
                written += 1;
            }
            Err(e) => {
                eprintln!("{}: refused: {e}", f.display());
                refused += 1;
            }
        }
    }
    Ok((written, refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_differ_per_tenant_and_project_and_requests_are_checked() {
        let k = [1u8; 32];
        assert_eq!(salt(&k, "a", "p"), salt(&k, "a", "p"));
        assert_ne!(salt(&k, "a", "p"), salt(&k, "a", "q"));
        assert_ne!(salt(&k, "a", "p"), salt(&k, "b", "p"));
        assert_ne!(salt(&k, "ab", ""), salt(&k, "a", "b"));
        let bad = DeidRequest {
            date_shift_days: Some(100_000),
            ..Default::default()
        };
        assert!(bad.options(vec![0; 32]).is_err());
        let bad = DeidRequest {
            patient_id: Some("a\\b".into()),
            ..Default::default()
        };
        assert!(bad.options(vec![0; 32]).is_err());
        let ok = DeidRequest {
            retain_dates: true,
            clean_descriptors: true,
            ..Default::default()
        };
        let o = ok.options(vec![0; 32]).unwrap();
        assert_eq!(o.descriptors, Descriptors::Clean);
    }
}
