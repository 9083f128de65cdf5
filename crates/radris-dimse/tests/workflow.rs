//! Modality Worklist, MPPS and Storage Commitment against the real SCP (`scp::start` on
//! 127.0.0.1:0, an archive on a temporary directory, a small in-test RIS), driven by
//! independent clients: dcmtk's `findscu -W` and pynetdicom scripts (`tests/scripts/`).
//!
//! A test whose client is not installed prints why and passes without running.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dicom_core::Tag;
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use radris_core::audit::{AuditRecord, AuditSink, Outcome};
use radris_core::config::Config;
use radris_core::events::EventBus;
use radris_core::{AeTitle, TenantId};
use radris_dicom::worklist::{
    ModalityWorkflow, Mpps, MppsStatus, WorkflowError, WorklistItem, WorklistQuery,
};
use radris_dimse::scp::{self, DimseServer, ScpContext};
use radris_store::Archive;

// ---------------------------------------------------------------------------------------------
// The in-test RIS
// ---------------------------------------------------------------------------------------------

/// Scheduled steps in memory; MPPS messages recorded.
struct FakeRis {
    items: Vec<WorklistItem>,
    /// MPPS instance UID → the N-CREATE data set and every N-SET after it.
    performed: Mutex<BTreeMap<String, Vec<Mpps>>>,
}

impl ModalityWorkflow for FakeRis {
    fn worklist(
        &self,
        _tenant: &TenantId,
        _calling: &AeTitle,
        query: &WorklistQuery,
    ) -> Result<Vec<WorklistItem>, WorkflowError> {
        Ok(self
            .items
            .iter()
            .filter(|i| query.matches(i))
            .cloned()
            .collect())
    }

    fn mpps_create(
        &self,
        _tenant: &TenantId,
        _calling: &AeTitle,
        mpps_uid: &str,
        mpps: &Mpps,
    ) -> Result<(), WorkflowError> {
        let known = |acc: &str, step: &str| {
            self.items
                .iter()
                .any(|i| i.accession == acc && i.step_id == step)
        };
        if mpps.steps.is_empty() || !mpps.steps.iter().all(|s| known(&s.accession, &s.step_id)) {
            return Err(WorkflowError::UnknownStep(
                mpps.steps
                    .iter()
                    .map(|s| s.accession.clone())
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        let mut performed = self.performed.lock().unwrap();
        if performed.contains_key(mpps_uid) {
            return Err(WorkflowError::Duplicate(mpps_uid.into()));
        }
        performed.insert(mpps_uid.into(), vec![mpps.clone()]);
        Ok(())
    }

    fn mpps_set(
        &self,
        _tenant: &TenantId,
        _calling: &AeTitle,
        mpps_uid: &str,
        mpps: &Mpps,
    ) -> Result<(), WorkflowError> {
        let mut performed = self.performed.lock().unwrap();
        let history = performed
            .get_mut(mpps_uid)
            .ok_or_else(|| WorkflowError::NoSuchInstance(mpps_uid.into()))?;
        let finished = history
            .iter()
            .filter_map(|m| m.status)
            .any(|s| s != MppsStatus::InProgress);
        if finished {
            return Err(WorkflowError::InvalidState("the step is finished".into()));
        }
        history.push(mpps.clone());
        Ok(())
    }
}

fn worklist_items() -> Vec<WorklistItem> {
    let item =
        |acc: &str, step: &str, name: &str, modality: &str, date: &str, time: &str| WorklistItem {
            patient_name: name.into(),
            patient_id: format!("PID-{acc}"),
            issuer: "HOSP".into(),
            birth_date: "19700101".into(),
            sex: "F".into(),
            accession: acc.into(),
            study_uid: format!(
                "1.2.826.0.1.3680043.8.498.{}",
                acc.len() * 1000 + step.len()
            ),
            requested_procedure_id: format!("RP-{acc}"),
            requested_procedure_description: "CT chest".into(),
            procedure_code: (
                "CTCHEST".into(),
                "99RADRIS".into(),
                "CT of the chest".into(),
            ),
            priority: "ROUTINE".into(),
            referring_physician: "Ref^Doc".into(),
            reason: "cough".into(),
            step_id: step.into(),
            step_description: "CT chest without contrast".into(),
            station_ae: "CT1".into(),
            station_name: "CT room 1".into(),
            modality: modality.into(),
            start_date: date.into(),
            start_time: time.into(),
            performing_physician: "Tech^Tom".into(),
            step_status: "SCHEDULED".into(),
            location: "ROOM1".into(),
            preparation: "fasting".into(),
        };
    vec![
        item(
            "ACC001",
            "SPS001",
            "Müller^Anna",
            "CT",
            "20240315",
            "093000",
        ),
        item("ACC002", "SPS002", "Doe^John", "MR", "20240315", "101500"),
        item("ACC003", "SPS003", "Doe^Jane", "CT", "20240410", "080000"),
    ]
}

// ---------------------------------------------------------------------------------------------
// The harness: archive, SCP, audit
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct AuditLog(Mutex<Vec<AuditRecord>>);

impl AuditSink for AuditLog {
    fn record(&self, record: AuditRecord) {
        self.0.lock().unwrap().push(record);
    }
}

impl AuditLog {
    fn actions(&self, action: &str) -> Vec<AuditRecord> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.action == action)
            .cloned()
            .collect()
    }
}

struct Harness {
    server: Option<DimseServer>,
    ctx: Arc<ScpContext>,
    archive: Archive,
    ris: Arc<FakeRis>,
    audit: Arc<AuditLog>,
    port: u16,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// The SCP as `RADRIS`, open to any calling AE (tenant `default`), a tenant `other`, and
    /// the `[[remote_aes]]` in `remotes`. With `workflow`, the in-test RIS answers MWL/MPPS.
    fn start(remotes: &str, workflow: bool) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cfg = Config::from_toml(&format!(
            "ae_title = \"RADRIS\"\nopen_ae = true\n[[tenants]]\nname = \"other\"\n{remotes}"
        ))
        .unwrap();
        let directory = cfg.ae_directory().unwrap();
        let archive = rt
            .block_on(async {
                let kek = Arc::new(radris_store::crypto::MemoryKek::new([5; 32]));
                let a = Archive::open(
                    dir.path(),
                    None,
                    Default::default(),
                    EventBus::default(),
                    kek,
                )
                .await?;
                a.ensure_tenants(&directory.tenants).await?;
                Ok::<_, radris_store::StoreError>(a)
            })
            .unwrap();
        let ris = Arc::new(FakeRis {
            items: worklist_items(),
            performed: Mutex::default(),
        });
        let audit = Arc::new(AuditLog::default());
        let mut ctx = ScpContext::new(
            archive.clone(),
            rt.handle().clone(),
            directory,
            cfg.dimse.clone(),
        )
        .with_audit(audit.clone());
        if workflow {
            ctx = ctx.with_workflow(ris.clone());
        }
        let ctx = Arc::new(ctx);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = scp::start(listener, ctx.clone()).unwrap();
        let port = server.local_addr().port();
        Harness {
            server: Some(server),
            ctx,
            archive,
            ris,
            audit,
            port,
            rt,
            _dir: dir,
        }
    }

    /// Store a synthetic CT study of `slices` instances for `tenant`: (class, instance) pairs.
    fn store_study(&self, tenant: &str, seed: &str, slices: u32) -> Vec<(String, String)> {
        let tenant = TenantId::parse(tenant).unwrap();
        let mut out = Vec::new();
        radris_dicom::synth::ct_study(slices, 16, 16, seed)
            .generate(|g| {
                self.archive
                    .ingest_part10(tenant.clone(), &g.part10)
                    .unwrap();
                out.push((g.sop_class_uid, g.sop_instance_uid));
                Ok::<(), radris_dicom::DicomError>(())
            })
            .unwrap();
        out
    }

    /// Wait until no association is being served (their end-of-association work is done).
    fn await_idle(&self) {
        let end = Instant::now() + Duration::from_secs(10);
        while self.ctx.active_associations() > 0 {
            assert!(Instant::now() < end, "associations still open");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until an audit record of `action` whose detail contains `needle` shows up.
    fn await_audit(&self, action: &str, needle: &str, within: Duration) -> AuditRecord {
        let end = Instant::now() + within;
        loop {
            if let Some(r) = self
                .audit
                .actions(action)
                .into_iter()
                .find(|r| r.detail.contains(needle))
            {
                return r;
            }
            assert!(
                Instant::now() < end,
                "no {action} audit record with {needle:?}: {:#?}",
                self.audit.0.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(2));
        }
        let _ = &self.rt;
    }
}

// ---------------------------------------------------------------------------------------------
// Running the independent clients
// ---------------------------------------------------------------------------------------------

/// dcmtk's findscu (the `findscu` first on PATH may be pynetdicom's, which has no `-W`).
fn dcmtk_findscu() -> Option<PathBuf> {
    ["/usr/bin/findscu", "/usr/local/bin/findscu"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("dcmtk"))
        })
}

fn pynetdicom() -> bool {
    Command::new("python3")
        .args(["-c", "import pynetdicom"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scripts")
        .join(name)
}

/// What a client run left behind.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    shown: String,
}

impl Run {
    /// The command, its status and its output, for assertion messages.
    fn context(&self) -> String {
        format!(
            "{}\nexit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.shown, self.code, self.stdout, self.stderr
        )
    }

    /// Lines of stdout starting with `prefix`.
    fn lines(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }

    /// The stdout line `case=<case> …`.
    fn case(&self, case: &str) -> &str {
        let prefix = format!("case={case} ");
        self.stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {case:?} line\n{}", self.context()))
    }
}

/// Run a client, killing it after `timeout`.
fn run(program: &Path, args: &[String], timeout: Duration) -> Run {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let r = Run {
        code: status.and_then(|s| s.code()),
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
        shown,
    };
    assert!(status.is_some(), "timed out\n{}", r.context());
    r
}

fn python(name: &str, args: &[String]) -> Run {
    let mut all = vec![script(name).display().to_string()];
    all.extend(args.iter().cloned());
    run(Path::new("python3"), &all, Duration::from_secs(60))
}

/// findscu -W with `keys`, responses extracted into `out`; returns the run and the responses.
fn findscu(findscu: &Path, port: u16, keys: &[&str], out: &Path) -> (Run, Vec<InMemDicomObject>) {
    // -d: the final response's command set is logged, Error Comment included
    let mut args: Vec<String> = ["-d", "-W", "-aet", "FINDSCU", "-aec", "RADRIS", "-X", "-od"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(out.display().to_string());
    for k in keys {
        args.push("-k".into());
        args.push(k.to_string());
    }
    args.push("127.0.0.1".into());
    args.push(port.to_string());
    let r = run(findscu, &args, Duration::from_secs(60));
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    files.sort();
    let responses = files
        .iter()
        .map(|p| {
            dicom_object::OpenFileOptions::new()
                .open_file(p)
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", p.display(), r.context()))
                .into_inner()
        })
        .collect();
    (r, responses)
}

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|s| s.trim_matches([' ', '\0']).to_owned())
        .unwrap_or_default()
}

fn step_item(obj: &InMemDicomObject) -> &InMemDicomObject {
    &obj.get(tags::SCHEDULED_PROCEDURE_STEP_SEQUENCE)
        .and_then(|e| e.items())
        .expect("a Scheduled Procedure Step Sequence")[0]
}

/// A port nobody listens on now (for a peer to listen on next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// Modality Worklist
// ---------------------------------------------------------------------------------------------

#[test]
fn worklist_findscu_date_range_modality_and_return_keys() {
    let Some(findscu_bin) = dcmtk_findscu() else {
        eprintln!("skipped: dcmtk findscu is not installed");
        return;
    };
    let h = Harness::start("", true);
    let out = tempfile::tempdir().unwrap();
    let (r, rsp) = findscu(
        &findscu_bin,
        h.port,
        &[
            "PatientName",
            "PatientID",
            "AccessionNumber",
            "StudyInstanceUID",
            "RequestedProcedurePriority",
            "PatientWeight",
            "RequestedProcedureCodeSequence[0].CodeValue",
            "ScheduledProcedureStepSequence[0].Modality=CT",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20240301-20240331",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
            "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepLocation",
        ],
        out.path(),
    );
    assert_eq!(r.code, Some(0), "{}", r.context());
    assert_eq!(rsp.len(), 1, "one CT step in March\n{}", r.context());
    let m = &rsp[0];
    assert_eq!(text(m, tags::ACCESSION_NUMBER), "ACC001");
    assert_eq!(text(m, tags::PATIENT_NAME), "Müller^Anna");
    assert_eq!(text(m, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
    assert_eq!(text(m, tags::REQUESTED_PROCEDURE_PRIORITY), "ROUTINE");
    // a key we have no value for comes back zero-length; keys not asked for do not come back
    assert!(m.get(tags::PATIENT_WEIGHT).is_some());
    assert_eq!(text(m, tags::PATIENT_WEIGHT), "");
    assert!(m.get(tags::PATIENT_BIRTH_DATE).is_none());
    let code = &m
        .get(tags::REQUESTED_PROCEDURE_CODE_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap()[0];
    assert_eq!(text(code, tags::CODE_VALUE), "CTCHEST");
    assert!(code.get(tags::CODE_MEANING).is_none());
    let sps = step_item(m);
    assert_eq!(
        text(sps, tags::SCHEDULED_PROCEDURE_STEP_START_TIME),
        "093000"
    );
    assert_eq!(text(sps, tags::SCHEDULED_STATION_AE_TITLE), "CT1");
    assert_eq!(text(sps, tags::SCHEDULED_PROCEDURE_STEP_LOCATION), "ROOM1");
    assert!(sps.get(tags::SCHEDULED_PROCEDURE_STEP_ID).is_none());

    // wildcard on a person name, open-ended date range, every step
    let out = tempfile::tempdir().unwrap();
    let (r, rsp) = findscu(
        &findscu_bin,
        h.port,
        &[
            "PatientName=doe*",
            "AccessionNumber",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20240316-",
        ],
        out.path(),
    );
    assert_eq!(r.code, Some(0), "{}", r.context());
    let accessions: Vec<String> = rsp
        .iter()
        .map(|m| text(m, tags::ACCESSION_NUMBER))
        .collect();
    assert_eq!(accessions, vec!["ACC003"], "{}", r.context());

    let audits = h.audit.actions("dimse.mwl-find");
    assert_eq!(audits.len(), 2, "{audits:#?}");
    assert!(audits.iter().all(|a| a.outcome == Outcome::Success));
    assert!(
        audits[0]
            .detail
            .contains("ScheduledProcedureStepStartDate=20240301-20240331"),
        "{audits:#?}"
    );
    assert!(audits[0].detail.ends_with("matches=1"), "{audits:#?}");
}

#[test]
fn worklist_findscu_malformed_date_is_refused() {
    let Some(findscu_bin) = dcmtk_findscu() else {
        eprintln!("skipped: dcmtk findscu is not installed");
        return;
    };
    let h = Harness::start("", true);
    let out = tempfile::tempdir().unwrap();
    let (r, rsp) = findscu(
        &findscu_bin,
        h.port,
        &[
            "PatientName",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=2024-03-15",
        ],
        out.path(),
    );
    assert!(rsp.is_empty(), "{}", r.context());
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("DIMSE Status                  : 0xa900"),
        "expected status 0xA900\n{}",
        r.context()
    );
    assert!(
        all.contains(r#"(0000,0902) LO [ScheduledProcedureStepStartDate "2024-03-15": bad date"#),
        "the Error Comment names the key and the value\n{}",
        r.context()
    );
    let audits = h.audit.actions("dimse.mwl-find");
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].outcome, Outcome::Failure);
}

#[test]
fn worklist_without_a_ris_is_not_supported() {
    let Some(findscu_bin) = dcmtk_findscu() else {
        eprintln!("skipped: dcmtk findscu is not installed");
        return;
    };
    let h = Harness::start("", false);
    let out = tempfile::tempdir().unwrap();
    let (r, rsp) = findscu(&findscu_bin, h.port, &["PatientName"], out.path());
    assert!(rsp.is_empty(), "{}", r.context());
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("DIMSE Status                  : 0x0122")
            && all.contains("[modality worklist not configured]"),
        "expected status 0x0122\n{}",
        r.context()
    );
}

// ---------------------------------------------------------------------------------------------
// MPPS
// ---------------------------------------------------------------------------------------------

#[test]
fn mpps_create_and_set_with_pynetdicom() {
    if !pynetdicom() {
        eprintln!("skipped: python3 with pynetdicom is not installed");
        return;
    }
    let h = Harness::start("", true);
    let r = python(
        "mpps.py",
        &[
            "127.0.0.1".into(),
            h.port.to_string(),
            "CT1".into(),
            "RADRIS".into(),
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.context());
    let status = |case: &str| {
        r.case(case)
            .split_whitespace()
            .find_map(|w| w.strip_prefix("status="))
            .unwrap_or_default()
            .to_owned()
    };
    let expect = [
        ("create", "0x0000"),
        ("duplicate", "0x0111"),
        ("create-without-uid", "0x0000"),
        ("unknown-step", "0x0110"),
        ("create-completed", "0x0106"),
        ("bad-status", "0x0106"),
        ("set-completed", "0x0000"),
        ("set-after-completed", "0x0110"),
        ("set-unknown", "0x0112"),
    ];
    for (case, code) in expect {
        assert_eq!(status(case), code, "{case}\n{}", r.context());
    }
    // every failure explains itself
    for (case, code) in expect {
        if code != "0x0000" {
            let comment = r
                .case(case)
                .split_once("comment=")
                .map(|(_, c)| c)
                .unwrap_or("");
            assert!(
                !comment.is_empty() && comment.len() <= 64,
                "{case}: {comment:?}"
            );
        }
    }
    assert!(
        r.case("unknown-step").contains("NOSUCHACC"),
        "{}",
        r.context()
    );

    let uid = r.lines("uid=")[0].trim_start_matches("uid=").to_owned();
    let performed = h.ris.performed.lock().unwrap();
    let history = performed.get(&uid).expect("the MPPS the modality created");
    assert_eq!(history.len(), 2, "N-CREATE and one N-SET: {history:#?}");
    assert_eq!(history[0].status, Some(MppsStatus::InProgress));
    assert_eq!(history[0].steps[0].accession, "ACC001");
    assert_eq!(history[0].steps[0].step_id, "SPS001");
    assert_eq!(history[0].station_ae.as_deref(), Some("CT1"));
    assert_eq!(history[0].start, Some(("20240315".into(), "093512".into())));
    assert_eq!(history[1].status, Some(MppsStatus::Completed));
    assert_eq!(history[1].end, Some(("20240315".into(), "094000".into())));
    assert_eq!(
        history[1].series[0].sop_instance_uids,
        vec!["1.2.826.0.1.3680043.8.498.3".to_owned()]
    );
    // the N-CREATE without an instance UID got one of ours
    let generated: Vec<&String> = performed.keys().filter(|k| **k != uid).collect();
    assert_eq!(generated.len(), 1, "{performed:#?}");
    assert!(generated[0].starts_with("2.25."), "{generated:?}");
    drop(performed);

    let creates = h.audit.actions("dimse.mpps-create");
    assert_eq!(
        creates
            .iter()
            .filter(|a| a.outcome == Outcome::Success)
            .count(),
        2
    );
    assert_eq!(
        creates
            .iter()
            .filter(|a| a.outcome == Outcome::Failure)
            .count(),
        4
    );
    let sets = h.audit.actions("dimse.mpps-set");
    assert_eq!(sets.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Storage Commitment
// ---------------------------------------------------------------------------------------------

fn refs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(c, i)| format!("{c}:{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn storage_commitment_on_the_same_association() {
    if !pynetdicom() {
        eprintln!("skipped: python3 with pynetdicom is not installed");
        return;
    }
    let h = Harness::start("", true);
    let stored = h.store_study("default", "stgcmt-same", 3);
    let elsewhere = h.store_study("other", "stgcmt-other", 1);
    let unknown = (
        uids::CT_IMAGE_STORAGE.to_owned(),
        "1.2.826.0.1.3680043.8.498.999".to_owned(),
    );
    let wrong_class = (uids::MR_IMAGE_STORAGE.to_owned(), stored[0].1.clone());
    let mut asked = stored.clone();
    asked.extend([wrong_class.clone(), unknown.clone(), elsewhere[0].clone()]);
    let r = python(
        "stgcmt.py",
        &[
            "same".into(),
            "127.0.0.1".into(),
            h.port.to_string(),
            "STGSCU".into(),
            "RADRIS".into(),
            "0".into(),
            refs(&asked),
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.context());
    assert!(r.stdout.contains("action=0x0000"), "{}", r.context());
    let transaction = r.lines("transaction=")[0].trim_start_matches("transaction=");
    assert_eq!(
        r.lines("event="),
        vec![format!("event=2 transaction={transaction}")],
        "{}",
        r.context()
    );
    assert_eq!(
        r.lines("from="),
        vec!["from=RADRIS same=True"],
        "{}",
        r.context()
    );
    let ok: Vec<String> = stored
        .iter()
        .map(|(_, i)| format!("ok={i} ae=RADRIS"))
        .collect();
    assert_eq!(r.lines("ok="), ok, "{}", r.context());
    assert_eq!(
        r.lines("failed="),
        vec![
            format!("failed={} reason=0x0119", wrong_class.1),
            format!("failed={} reason=0x0112", unknown.1),
            // another tenant's instance is no instance of ours
            format!("failed={} reason=0x0112", elsewhere[0].1),
        ],
        "{}",
        r.context()
    );
    let audit = h.await_audit(
        "dimse.storage-commitment",
        "delivery=same-association",
        Duration::from_secs(5),
    );
    assert_eq!(
        audit.detail,
        "requested=6 committed=3 failed=3 delivery=same-association"
    );
    assert_eq!(audit.resource, format!("transaction {transaction}"));
    // the N-EVENT-REPORT-RSP came back: nothing is left unconfirmed (that would be audited
    // as a failure: no address to send it to)
    h.await_idle();
    let failures: Vec<AuditRecord> = h
        .audit
        .actions("dimse.storage-commitment")
        .into_iter()
        .filter(|a| a.outcome == Outcome::Failure)
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");

    // all committed: event type 1
    let r = python(
        "stgcmt.py",
        &[
            "same".into(),
            "127.0.0.1".into(),
            h.port.to_string(),
            "STGSCU".into(),
            "RADRIS".into(),
            "0".into(),
            refs(&stored),
        ],
    );
    assert_eq!(r.lines("event=").len(), 1, "{}", r.context());
    assert!(
        r.lines("event=")[0].starts_with("event=1 "),
        "{}",
        r.context()
    );
    assert!(r.lines("failed=").is_empty(), "{}", r.context());
}

#[test]
fn storage_commitment_request_without_transaction_uid_is_refused() {
    if !pynetdicom() {
        eprintln!("skipped: python3 with pynetdicom is not installed");
        return;
    }
    let h = Harness::start("", true);
    let stored = h.store_study("default", "stgcmt-bad", 1);
    let r = python(
        "stgcmt.py",
        &[
            "missing-transaction".into(),
            "127.0.0.1".into(),
            h.port.to_string(),
            "STGSCU".into(),
            "RADRIS".into(),
            "0".into(),
            refs(&stored),
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.context());
    assert!(
        r.stdout
            .contains("action=0x0120 comment=Transaction UID missing"),
        "{}",
        r.context()
    );
    assert!(r.lines("event=").is_empty(), "{}", r.context());
}

#[test]
fn storage_commitment_on_a_new_association() {
    if !pynetdicom() {
        eprintln!("skipped: python3 with pynetdicom is not installed");
        return;
    }
    let listen = free_port();
    let h = Harness::start(
        &format!(
            "[[remote_aes]]\nae_title = \"STGNEW\"\nhost = \"127.0.0.1\"\nport = {listen}\n\
             storage_commitment_new_association = true\n"
        ),
        true,
    );
    let stored = h.store_study("default", "stgcmt-new", 2);
    let r = python(
        "stgcmt.py",
        &[
            "new".into(),
            "127.0.0.1".into(),
            h.port.to_string(),
            "STGNEW".into(),
            "RADRIS".into(),
            listen.to_string(),
            refs(&stored),
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.context());
    assert!(r.stdout.contains("action=0x0000"), "{}", r.context());
    let transaction = r.lines("transaction=")[0].trim_start_matches("transaction=");
    assert_eq!(
        r.lines("event="),
        vec![format!("event=1 transaction={transaction}")],
        "{}",
        r.context()
    );
    // sent by us, on an association of its own
    assert_eq!(
        r.lines("from="),
        vec!["from=RADRIS same=False"],
        "{}",
        r.context()
    );
    // role selection: we asked for the SCP role, so the listener is the SCU on that context
    assert_eq!(
        r.lines("roles "),
        vec!["roles as_scu=True as_scp=False"],
        "{}",
        r.context()
    );
    assert_eq!(r.lines("ok=").len(), 2, "{}", r.context());
    h.await_audit(
        "dimse.storage-commitment",
        "delivery=new-association",
        Duration::from_secs(5),
    );
    h.await_audit(
        "dimse.storage-commitment",
        "result delivered on a new association",
        Duration::from_secs(10),
    );
}

/// A requestor that releases without waiting for the result (and so never confirms it) gets
/// it on a new association to its configured address. Both ends are plain dicom-ul here, so
/// the order of events is fixed: N-ACTION-RSP read, A-RELEASE-RQ sent, report unanswered.
#[test]
fn storage_commitment_result_unconfirmed_on_the_requesting_association_goes_to_a_new_one() {
    use dicom_ul::association::{ClientAssociationOptions, ServerAssociationOptions};
    use radris_dimse::message::{
        command, decode_dataset, el_u16, el_ui, encode_dataset, read_message, response,
        send_message,
    };

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = listener.local_addr().unwrap().port();
    let h = Harness::start(
        &format!("[[remote_aes]]\nae_title = \"STGREL\"\nhost = \"127.0.0.1\"\nport = {listen}\n"),
        true,
    );
    let stored = h.store_study("default", "stgcmt-release", 2);

    // the requestor's own listener: one association, one N-EVENT-REPORT
    let acceptor = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        let mut assoc = ServerAssociationOptions::new()
            .accept_any()
            .ae_title("STGREL")
            .with_abstract_syntax(uids::STORAGE_COMMITMENT_PUSH_MODEL)
            .read_timeout(Duration::from_secs(20))
            .establish(socket)
            .unwrap();
        let calling = dicom_ul::association::Association::peer_ae_title(&assoc)
            .trim()
            .to_owned();
        let msg = read_message(&mut assoc).unwrap();
        assert_eq!(msg.command_field(), Some(command::N_EVENT_REPORT_RQ));
        let ts = assoc.presentation_contexts()[0]
            .transfer_syntax
            .trim_end_matches('\0')
            .to_owned();
        let report = decode_dataset(msg.dataset.as_deref().unwrap(), &ts).unwrap();
        let id = radris_dimse::message::get_u16(&msg.command, tags::MESSAGE_ID).unwrap();
        let rsp = response(
            command::N_EVENT_REPORT_RSP,
            uids::STORAGE_COMMITMENT_PUSH_MODEL,
            id,
            0x0000,
            false,
            vec![el_ui(
                tags::AFFECTED_SOP_INSTANCE_UID,
                uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
            )],
        );
        send_message(&mut assoc, msg.pc_id, &rsp, None).unwrap();
        // the sender releases
        assert!(read_message(&mut assoc).is_err());
        (calling, report)
    });

    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title("STGREL")
        .called_ae_title("RADRIS")
        .with_presentation_context(
            uids::STORAGE_COMMITMENT_PUSH_MODEL,
            vec![uids::IMPLICIT_VR_LITTLE_ENDIAN],
        )
        .establish_with(&format!("127.0.0.1:{}", h.port))
        .unwrap();
    let pc = assoc.presentation_contexts()[0].id;
    let transaction = "1.2.826.0.1.3680043.8.498.4242";
    let mut request = InMemDicomObject::new_empty();
    request.put(dicom_core::DataElement::new(
        tags::TRANSACTION_UID,
        dicom_core::VR::UI,
        dicom_core::PrimitiveValue::from(transaction),
    ));
    let items = stored
        .iter()
        .map(|(c, i)| {
            InMemDicomObject::from_element_iter([
                el_ui(tags::REFERENCED_SOP_CLASS_UID, c),
                el_ui(tags::REFERENCED_SOP_INSTANCE_UID, i),
            ])
        })
        .collect::<Vec<_>>();
    request.put(dicom_core::DataElement::new(
        tags::REFERENCED_SOP_SEQUENCE,
        dicom_core::VR::SQ,
        dicom_core::value::DataSetSequence::new(items, dicom_core::Length::UNDEFINED),
    ));
    let cmd = radris_dimse::message::command_set(vec![
        el_ui(
            tags::REQUESTED_SOP_CLASS_UID,
            uids::STORAGE_COMMITMENT_PUSH_MODEL,
        ),
        el_u16(tags::COMMAND_FIELD, command::N_ACTION_RQ),
        el_u16(tags::MESSAGE_ID, 7),
        el_u16(tags::COMMAND_DATA_SET_TYPE, 0x0000),
        el_ui(
            tags::REQUESTED_SOP_INSTANCE_UID,
            uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
        ),
        el_u16(tags::ACTION_TYPE_ID, 1),
    ]);
    let data = encode_dataset(&request, uids::IMPLICIT_VR_LITTLE_ENDIAN).unwrap();
    send_message(&mut assoc, pc, &cmd, Some(&data)).unwrap();
    let rsp = read_message(&mut assoc).unwrap();
    assert_eq!(rsp.command_field(), Some(command::N_ACTION_RSP));
    assert_eq!(rsp.status(), Some(0x0000));
    // release at once: the N-EVENT-REPORT-RQ on this association stays unanswered
    let _ = assoc.release();

    let (calling, report) = acceptor.join().unwrap();
    assert_eq!(calling, "RADRIS");
    assert_eq!(text(&report, tags::TRANSACTION_UID), transaction);
    let committed = report
        .get(tags::REFERENCED_SOP_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap();
    assert_eq!(committed.len(), 2);
    assert!(report.get(tags::FAILED_SOP_SEQUENCE).is_none());
    h.await_audit(
        "dimse.storage-commitment",
        "result delivered on a new association",
        Duration::from_secs(10),
    );
}
