//! Structured reports against independent tools.
//!
//! Each document (Comprehensive SR and Basic Text SR; verified and unverified; a non-ASCII
//! patient name; an amendment with its predecessor) is written as a Part-10 file and
//!
//! * checked with dicom3tools' `dciodvfy`: no "Error" line is allowed, warnings are printed;
//! * read with DCMTK's `dsrdump`, which checks the relationship content constraints;
//! * read back with pydicom: the Content Sequence is walked and the TEXT values, NUM values
//!   and their units must be those of the report.
//!
//! Either check is skipped, with a printed reason, when its tool is not installed
//! (`apt-get install dicom3tools`, `pip install pydicom`; see `scripts/deps.sh`). Set
//! `RADRIS_SR_KEEP=<dir>` to keep a copy of the files.

use std::path::Path;
use std::process::Command;

use radris_dicom::sr::{
    self, Code, GraphicType, ImageRef, Measurement, Person, Predecessor, Region, Section, SrReport,
    StudyRef, Verification, codes,
};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const ENHANCED_CT: &str = "1.2.840.10008.5.1.4.1.1.2.1";
const STUDY: &str = "1.2.826.0.1.3680043.9.7.100";
const SERIES: &str = "1.2.826.0.1.3680043.9.7.100.2";

fn image(n: u32) -> ImageRef {
    ImageRef {
        study_uid: None,
        series_uid: SERIES.into(),
        sop_class_uid: CT.into(),
        sop_instance_uid: format!("{SERIES}.{n}"),
        frame: None,
    }
}

fn base_report() -> SrReport {
    SrReport {
        study: StudyRef {
            study_uid: STUDY.into(),
            patient_id: "DEMO0001".into(),
            patient_name: "Lindqvist^Maria".into(),
            birth_date: "19580314".into(),
            sex: "F".into(),
            accession: "DA0001".into(),
            study_date: "20260912".into(),
            study_time: "083000".into(),
            referring_physician: "Referrer^Rita".into(),
            study_id: "1".into(),
            study_description: "CT CHEST LUNG NODULE FOLLOW-UP".into(),
        },
        series_number: 900,
        instance_number: 1,
        content_date: "20260912".into(),
        content_time: "101500".into(),
        title: codes::diagnostic_imaging_report(),
        author: Person {
            name: "Reader^Rosa".into(),
            organization: Some("RADRIS Demo Hospital".into()),
        },
        complete: true,
        sections: vec![
            Section {
                heading: codes::history(),
                text: "Follow-up of a pulmonary nodule.".into(),
            },
            Section {
                heading: codes::findings(),
                text: "Solid nodule in the right upper lobe, 12.5 x 9 mm.\r\nNo new nodules."
                    .into(),
            },
            Section {
                heading: codes::impressions(),
                text: "Stable nodule.".into(),
            },
        ],
        measurements: vec![
            Measurement {
                name: codes::long_axis(),
                value: 12.5,
                unit: codes::millimeter(),
                finding_site: Some(Code::new("45653009", "SCT", "Upper lobe of lung")),
                tracking_id: Some("Nodule 1".into()),
                tracking_uid: Some("1.2.826.0.1.3680043.9.7.100.77".into()),
                image: Some(image(120)),
                region: Some(Region {
                    graphic_type: GraphicType::Polyline,
                    points: vec![(201.5, 180.0), (230.25, 190.5)],
                }),
                derivation: None,
            },
            Measurement {
                name: codes::short_axis(),
                value: 9.0,
                unit: codes::millimeter(),
                finding_site: Some(Code::new("45653009", "SCT", "Upper lobe of lung")),
                tracking_id: Some("Nodule 1".into()),
                tracking_uid: Some("1.2.826.0.1.3680043.9.7.100.77".into()),
                image: Some(image(120)),
                ..Default::default()
            },
            Measurement {
                name: Code::new("112031", "DCM", "Attenuation Coefficient"),
                value: 0.1 + 0.2, // needs the Floating Point Value next to the DS
                unit: Code::new("[hnsf'U]", "UCUM", "Hounsfield unit"),
                image: Some(ImageRef {
                    sop_class_uid: ENHANCED_CT.into(),
                    frame: Some(2),
                    ..image(121)
                }),
                derivation: Some(Code::new("373098007", "SCT", "Mean")),
                ..Default::default()
            },
        ],
        coded_findings: vec![(
            Code::new("121071", "DCM", "Finding"),
            Code::new("27925004", "SCT", "Nodule"),
        )],
        key_images: vec![image(120), image(130)],
        ..Default::default()
    }
}

fn verified(mut r: SrReport) -> SrReport {
    r.verified = Some(Verification {
        verifying_observer_name: "Signer^Sam".into(),
        organization: "RADRIS Demo Hospital".into(),
        datetime: "20260912103000+0100".into(),
    });
    r
}

fn non_ascii(mut r: SrReport) -> SrReport {
    r.study.patient_name = "Ødegård^Åse=山田^太郎".into();
    r.author.name = "Müller^Jürgen".into();
    r.sections[1].text = "Rundherd im rechten Oberlappen, größenkonstant.".into();
    r
}

/// An amended report: PARTIAL unless verified (only a COMPLETE report may be VERIFIED).
fn amendment(mut r: SrReport) -> SrReport {
    r.instance_number = 2;
    r.complete = r.verified.is_some();
    r.predecessor = Some(Predecessor {
        study_uid: STUDY.into(),
        series_uid: "1.2.826.0.1.3680043.9.7.100.900".into(),
        sop_instance_uid: "1.2.826.0.1.3680043.9.7.100.900.1".into(),
        sop_class_uid: sr::COMPREHENSIVE_SR.into(),
    });
    r.sections.push(Section {
        heading: codes::addendum(),
        text: "Corrected the short axis.".into(),
    });
    // a prior study's image: Pertinent Other Evidence
    r.key_images.push(ImageRef {
        study_uid: Some("1.2.826.0.1.3680043.9.7.99".into()),
        series_uid: "1.2.826.0.1.3680043.9.7.99.2".into(),
        sop_class_uid: CT.into(),
        sop_instance_uid: "1.2.826.0.1.3680043.9.7.99.2.40".into(),
        frame: None,
    });
    r
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Comprehensive,
    BasicText,
}

fn cases() -> Vec<(&'static str, Kind, SrReport)> {
    vec![
        (
            "comprehensive-unverified",
            Kind::Comprehensive,
            base_report(),
        ),
        (
            "comprehensive-verified-nonascii",
            Kind::Comprehensive,
            verified(non_ascii(base_report())),
        ),
        (
            "comprehensive-amendment",
            Kind::Comprehensive,
            amendment(verified(base_report())),
        ),
        ("basic-unverified", Kind::BasicText, base_report()),
        (
            "basic-verified-nonascii",
            Kind::BasicText,
            verified(non_ascii(base_report())),
        ),
        (
            "basic-amendment-nonascii",
            Kind::BasicText,
            amendment(non_ascii(base_report())),
        ),
    ]
}

fn write_cases(dir: &Path) -> Vec<(String, Kind, SrReport, std::path::PathBuf)> {
    cases()
        .into_iter()
        .map(|(name, kind, report)| {
            let obj = match kind {
                Kind::Comprehensive => sr::comprehensive_sr(&report),
                Kind::BasicText => sr::basic_text_sr(&report),
            }
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let bytes = sr::to_part10(&obj).unwrap_or_else(|e| panic!("{name}: {e}"));
            let path = dir.join(format!("{name}.dcm"));
            std::fs::write(&path, bytes).expect("write temp file");
            (name.to_owned(), kind, report, path)
        })
        .collect()
}

#[test]
fn dciodvfy_finds_no_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = write_cases(dir.path());
    // RADRIS_SR_KEEP=<dir> keeps a copy of the documents for inspection
    if let Some(keep) = std::env::var_os("RADRIS_SR_KEEP") {
        std::fs::create_dir_all(&keep).expect("create RADRIS_SR_KEEP");
        for (_, _, _, path) in &files {
            if let Some(file_name) = path.file_name() {
                std::fs::copy(path, Path::new(&keep).join(file_name)).expect("copy");
            }
        }
    }
    let mut failures = Vec::new();
    for (name, _, _, path) in &files {
        let out = match Command::new("dciodvfy").arg(path).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("SKIPPED: dciodvfy is not installed (apt-get install dicom3tools)");
                return;
            }
            Err(e) => panic!("running dciodvfy: {e}"),
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
        let warnings: Vec<&str> = text.lines().filter(|l| l.contains("Warning")).collect();
        eprintln!(
            "dciodvfy {name}: {} errors, {} warnings",
            errors.len(),
            warnings.len()
        );
        for w in &warnings {
            eprintln!("  {w}");
        }
        for e in &errors {
            eprintln!("  {e}");
        }
        if !errors.is_empty() {
            failures.push(format!("{name}:\n{}", errors.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "dciodvfy errors:\n{}",
        failures.join("\n")
    );
}

/// DCMTK's SR reader checks what dciodvfy does not: the relationship content constraints of
/// each IOD (which value types may be the target of which relationship, by value).
#[test]
fn dsrdump_accepts_the_content_trees() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = write_cases(dir.path());
    let mut failures = Vec::new();
    for (name, _, _, path) in &files {
        let out = match Command::new("dsrdump").arg(path).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("SKIPPED: dsrdump is not installed (apt-get install dcmtk)");
                return;
            }
            Err(e) => panic!("running dsrdump: {e}"),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines().filter(|l| l.starts_with("W:")) {
            eprintln!("dsrdump {name}: {line}");
        }
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("F:"))
            .collect();
        if !out.status.success() || !errors.is_empty() {
            failures.push(format!("{name}: {}", errors.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "dsrdump errors:\n{}",
        failures.join("\n")
    );
}

/// Walks the Content Sequence of each file with pydicom and prints, as JSON, the TEXT items
/// (own concept meaning, parent container meaning, text) and the NUM items (concept meaning,
/// value, unit code value, unit scheme, whether a Floating Point Value was present).
const PYDICOM_SCRIPT: &str = r#"
import json, sys
import pydicom

def walk(item, parent, out):
    for child in item.get("ContentSequence", []):
        vt = child.ValueType
        name = child.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in child else ""
        if vt == "TEXT" and child.RelationshipType == "CONTAINS":
            out["text"].append([name, parent, str(child.TextValue)])
        elif vt == "NUM":
            mv = child.MeasuredValueSequence[0]
            unit = mv.MeasurementUnitsCodeSequence[0]
            if "FloatingPointValue" in mv:
                value, fd = float(mv.FloatingPointValue), True
            else:
                value, fd = float(mv.NumericValue), False
            out["num"].append([name, value, unit.CodeValue, unit.CodingSchemeDesignator, fd])
        walk(child, name if vt == "CONTAINER" else parent, out)

result = {}
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path)
    out = {
        "patient_name": str(ds.PatientName),
        "charset": ds.get("SpecificCharacterSet", ""),
        "sop_class": str(ds.SOPClassUID),
        "verification": ds.VerificationFlag,
        "completion": ds.CompletionFlag,
        "predecessor": [
            s.ReferencedSOPInstanceUID
            for st in ds.get("PredecessorDocumentsSequence", [])
            for se in st.ReferencedSeriesSequence
            for s in se.ReferencedSOPSequence
        ],
        "text": [],
        "num": [],
    }
    walk(ds, ds.ConceptNameCodeSequence[0].CodeMeaning, out)
    result[path] = out
json.dump(result, sys.stdout)
"#;

#[test]
fn pydicom_reads_text_numbers_and_units_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = write_cases(dir.path());
    let out = match Command::new("python3")
        .arg("-c")
        .arg(PYDICOM_SCRIPT)
        .args(files.iter().map(|f| &f.3))
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: python3 is not installed");
            return;
        }
        Err(e) => panic!("running python3: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("No module named 'pydicom'") {
        eprintln!("SKIPPED: pydicom is not installed (pip install pydicom)");
        return;
    }
    assert!(out.status.success(), "pydicom failed:\n{stderr}");
    let parsed: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("pydicom script prints JSON");
    for (name, kind, report, path) in &files {
        let doc = &parsed[path.to_string_lossy().as_ref()];
        let s = |k: &str| doc[k].as_str().unwrap_or_default().to_owned();
        // PN: pydicom shows the component groups joined by '='
        assert_eq!(s("patient_name"), report.study.patient_name, "{name}");
        let ascii = report.study.patient_name.is_ascii()
            && report.author.name.is_ascii()
            && report.sections.iter().all(|x| x.text.is_ascii());
        assert_eq!(
            s("charset"),
            if ascii { "" } else { "ISO_IR 192" },
            "{name}"
        );
        assert_eq!(
            s("verification"),
            if report.verified.is_some() {
                "VERIFIED"
            } else {
                "UNVERIFIED"
            },
            "{name}"
        );
        assert_eq!(
            s("completion"),
            if report.complete {
                "COMPLETE"
            } else {
                "PARTIAL"
            },
            "{name}"
        );
        let preds: Vec<&str> = doc["predecessor"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let want: Vec<&str> = report
            .predecessor
            .iter()
            .map(|p| p.sop_instance_uid.as_str())
            .collect();
        assert_eq!(preds, want, "{name}");

        // every section's text, under its heading (as the TEXT's concept name or its
        // container's), in order
        let texts: Vec<(String, String, String)> = doc["text"]
            .as_array()
            .expect("text list")
            .iter()
            .map(|t| {
                let f = |i: usize| t[i].as_str().unwrap_or_default().to_owned();
                (f(0), f(1), f(2))
            })
            .collect();
        assert_eq!(texts.len(), report.sections.len(), "{name}: {texts:?}");
        for (sec, (own, parent, text)) in report.sections.iter().zip(&texts) {
            assert!(
                *own == sec.heading.meaning || *parent == sec.heading.meaning,
                "{name}: heading {} not found in ({own}, {parent})",
                sec.heading.meaning
            );
            assert_eq!(text.trim_end(), sec.text.trim_end(), "{name}");
        }

        let nums = doc["num"].as_array().expect("num list");
        if *kind == Kind::BasicText {
            assert!(nums.is_empty(), "{name}: Basic Text SR has no NUM");
            continue;
        }
        assert_eq!(nums.len(), report.measurements.len(), "{name}");
        for (m, n) in report.measurements.iter().zip(nums) {
            assert_eq!(n[0].as_str(), Some(m.name.meaning.as_str()), "{name}");
            let value = n[1].as_f64().expect("value");
            let exact = n[4].as_bool().unwrap_or(false);
            if exact {
                assert_eq!(value, m.value, "{name}: Floating Point Value");
            } else {
                assert!((value - m.value).abs() <= m.value.abs() * 1e-12, "{name}");
            }
            assert_eq!(n[2].as_str(), Some(m.unit.value.as_str()), "{name}");
            assert_eq!(n[3].as_str(), Some("UCUM"), "{name}");
        }
    }
}

#[test]
fn read_back_with_dicom_rs() {
    for (name, kind, report) in cases() {
        let obj = match kind {
            Kind::Comprehensive => sr::comprehensive_sr(&report),
            Kind::BasicText => sr::basic_text_sr(&report),
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let bytes = sr::to_part10(&obj).unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = dicom_object::OpenFileOptions::new()
            .from_reader(&bytes[128..])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // what the archive's ingest reads: the Part-10 layout and the index attributes
        let layout = radris_dicom::part10::read_layout(bytes.as_slice())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(layout.meta.transfer_syntax(), "1.2.840.10008.1.2.1");
        let index = radris_dicom::attrs::IndexAttributes::from_header(&back)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(index.series.modality, "SR");
        assert_eq!(index.study.study_uid.as_str(), STUDY);
        assert_eq!(index.patient.name, report.study.patient_name);
        assert_eq!(
            index.instance.sop_class_uid.as_str(),
            match kind {
                Kind::Comprehensive => sr::COMPREHENSIVE_SR,
                Kind::BasicText => sr::BASIC_TEXT_SR,
            }
        );
        let text = sr::read_text(&back);
        let want: Vec<(String, String)> = report
            .sections
            .iter()
            .map(|s| (s.heading.meaning.clone(), s.text.clone()))
            .collect();
        assert_eq!(text, want, "{name}");
        let nums = sr::read_measurements(&back);
        if kind == Kind::Comprehensive {
            assert_eq!(nums.len(), report.measurements.len(), "{name}");
            for (n, m) in nums.iter().zip(&report.measurements) {
                assert_eq!((n.value, &n.unit, &n.name), (m.value, &m.unit, &m.name));
            }
        } else {
            assert!(nums.is_empty());
        }
    }
}
