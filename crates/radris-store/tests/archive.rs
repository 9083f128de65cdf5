//! Archive and index tests. Every test runs on SQLite and, when `RADRIS_TEST_POSTGRES_URL`
//! names a server (CI starts one), on a fresh PostgreSQL database too.

use std::path::PathBuf;

use dicom_core::VR;
use dicom_core::value::PrimitiveValue;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use radris_core::TenantId;
use radris_core::config::DuplicatePolicy;
use radris_core::events::EventBus;
use radris_dicom::query::FindQuery;
use radris_dicom::synth::{Phantom, SeriesSpec, StudySpec};
use radris_store::{Archive, DeleteLevel, StoreError};
use sqlx::Connection;

struct Backend {
    name: &'static str,
    dir: tempfile::TempDir,
    url: Option<String>,
}

async fn backends() -> Vec<Backend> {
    let mut out = vec![Backend {
        name: "sqlite",
        dir: tempfile::tempdir().unwrap(),
        url: None,
    }];
    if let Ok(admin) = std::env::var("RADRIS_TEST_POSTGRES_URL")
        && !admin.is_empty()
    {
        sqlx::any::install_default_drivers();
        let db = format!("radris_t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::AnyConnection::connect(&admin)
            .await
            .expect("connect to RADRIS_TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(admin.clone());
        out.push(Backend {
            name: "postgres",
            dir: tempfile::tempdir().unwrap(),
            url: Some(format!("{base}/{db}")),
        });
    }
    out
}

async fn open(b: &Backend, policy: DuplicatePolicy) -> Archive {
    let kek = std::sync::Arc::new(radris_store::crypto::MemoryKek::new([3; 32]));
    let a = Archive::open(
        b.dir.path(),
        b.url.as_deref(),
        policy,
        EventBus::default(),
        kek,
    )
    .await
    .unwrap();
    let tenants: Vec<TenantId> = ["default", "hospital-a", "hospital-b", "other"]
        .into_iter()
        .map(tenant)
        .collect();
    a.ensure_tenants(&tenants).await.unwrap();
    a
}

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn study(seed: &str, name: &str, date: &str, phantom: Phantom, slices: u32) -> StudySpec {
    StudySpec {
        seed: seed.into(),
        patient_id: format!("PID-{seed}"),
        patient_name: name.into(),
        birth_date: "19700101".into(),
        sex: "F".into(),
        accession: format!("ACC-{seed}"),
        description: "TEST".into(),
        date: date.into(),
        time: "120000".into(),
        series: vec![SeriesSpec {
            phantom,
            slices,
            rows: 16,
            cols: 16,
            description: "s".into(),
            number: 1,
        }],
    }
}

/// Store every instance of the studies; returns the Part-10 files by SOP Instance UID.
async fn store(archive: &Archive, t: &TenantId, studies: &[StudySpec]) -> Vec<(String, Vec<u8>)> {
    let (archive, t, studies) = (archive.clone(), t.clone(), studies.to_vec());
    tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        for s in &studies {
            s.generate(|g| {
                archive.ingest_part10(t.clone(), &g.part10)?;
                files.push((g.sop_instance_uid, g.part10));
                Ok::<(), StoreError>(())
            })
            .unwrap();
        }
        files
    })
    .await
    .unwrap()
}

fn query(level: &str, keys: &[(dicom_core::Tag, VR, &str)]) -> FindQuery {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(InMemElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level),
    ));
    for (tag, vr, v) in keys {
        obj.put(InMemElement::new(*tag, *vr, PrimitiveValue::from(*v)));
    }
    FindQuery::from_identifier(&obj).unwrap()
}

/// Run a query and return one attribute of every match.
async fn check(
    archive: &Archive,
    t: &TenantId,
    q: FindQuery,
    attr: dicom_core::Tag,
) -> Vec<String> {
    archive
        .find(t, &q)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            radris_dicom::attrs::text(
                &radris_dicom::attrs::header_from_json(&r.header_json).unwrap(),
                attr,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn find_at_every_level_with_standard_matching() {
    for b in backends().await {
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let t = tenant("default");
        store(
            &a,
            &t,
            &[
                study("s1", "Doe^John", "20190310", Phantom::ChestCt, 3),
                study("s2", "DOE^Jane", "20200615", Phantom::MrBrain, 2),
                study("s3", "Smith^Anna", "20211201", Phantom::ChestCt, 1),
            ],
        )
        .await;
        let n = b.name;
        // PN: case-insensitive wildcard
        let mut names = check(
            &a,
            &t,
            query("PATIENT", &[(tags::PATIENT_NAME, VR::PN, "doe*")]),
            tags::PATIENT_NAME,
        )
        .await;
        names.sort();
        assert_eq!(names, ["DOE^Jane", "Doe^John"], "{n}");
        assert_eq!(
            check(
                &a,
                &t,
                query("PATIENT", &[(tags::PATIENT_NAME, VR::PN, "?mith*")]),
                tags::PATIENT_NAME
            )
            .await,
            ["Smith^Anna"],
            "{n}"
        );
        // date ranges, closed and open
        assert_eq!(
            check(
                &a,
                &t,
                query("STUDY", &[(tags::STUDY_DATE, VR::DA, "20200101-20201231")]),
                tags::PATIENT_NAME
            )
            .await,
            ["DOE^Jane"],
            "{n}"
        );
        assert_eq!(
            check(
                &a,
                &t,
                query("STUDY", &[(tags::STUDY_DATE, VR::DA, "-20191231")]),
                tags::PATIENT_NAME
            )
            .await,
            ["Doe^John"],
            "{n}"
        );
        assert_eq!(
            check(
                &a,
                &t,
                query("STUDY", &[(tags::STUDY_DATE, VR::DA, "20200101-")]),
                tags::PATIENT_NAME
            )
            .await
            .len(),
            2,
            "{n}"
        );
        // ModalitiesInStudy and counters are maintained
        let rows = a
            .find(
                &t,
                &query("STUDY", &[(tags::MODALITIES_IN_STUDY, VR::CS, "MR")]),
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{n}");
        assert_eq!(
            (
                rows[0].num_series,
                rows[0].num_instances,
                rows[0].modalities.clone()
            ),
            (1, 2, vec!["MR".to_owned()]),
            "{n}"
        );
        // UID list
        let s1 = radris_dicom::synth::uid_from("s1/study");
        let s3 = radris_dicom::synth::uid_from("s3/study");
        let uids = check(
            &a,
            &t,
            query(
                "STUDY",
                &[(tags::STUDY_INSTANCE_UID, VR::UI, &format!("{s1}\\{s3}"))],
            ),
            tags::STUDY_INSTANCE_UID,
        )
        .await;
        assert_eq!(uids.len(), 2, "{n}");
        // series and image levels
        assert_eq!(
            check(
                &a,
                &t,
                query("SERIES", &[(tags::MODALITY, VR::CS, "CT")]),
                tags::MODALITY
            )
            .await
            .len(),
            2,
            "{n}"
        );
        let images = check(
            &a,
            &t,
            query("IMAGE", &[(tags::STUDY_INSTANCE_UID, VR::UI, &s1)]),
            tags::INSTANCE_NUMBER,
        )
        .await;
        assert_eq!(images, ["1", "2", "3"], "{n}: ordered by instance number");
        // a key without a column is matched against the stored header
        assert_eq!(
            check(
                &a,
                &t,
                query("STUDY", &[(tags::INSTITUTION_NAME, VR::LO, "RADRIS Demo*")]),
                tags::PATIENT_NAME
            )
            .await
            .len(),
            3,
            "{n}"
        );
        assert!(
            check(
                &a,
                &t,
                query("STUDY", &[(tags::INSTITUTION_NAME, VR::LO, "Elsewhere")]),
                tags::PATIENT_NAME
            )
            .await
            .is_empty(),
            "{n}"
        );
        // LIKE metacharacters are literals
        assert!(
            check(
                &a,
                &t,
                query("PATIENT", &[(tags::PATIENT_NAME, VR::PN, "D_E*")]),
                tags::PATIENT_NAME
            )
            .await
            .is_empty(),
            "{n}"
        );
        // patient counters
        let p = a
            .find(
                &t,
                &query("PATIENT", &[(tags::PATIENT_ID, VR::LO, "PID-s1")]),
            )
            .await
            .unwrap();
        assert_eq!(
            (p[0].num_studies, p[0].num_series, p[0].num_instances),
            (1, 1, 3),
            "{n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn find_edge_cases_of_names_times_and_modalities() {
    for b in backends().await {
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let t = tenant("default");
        // a CT + MR study at 12:00 (stored as `1200`) of a name padded with empty components
        let mut padded = study("e1", "SMITH^JANE^^", "20200115", Phantom::ChestCt, 1);
        padded.time = "1200".into();
        padded.series.push(SeriesSpec {
            phantom: Phantom::MrBrain,
            number: 2,
            ..padded.series[0].clone()
        });
        let mut other = study("e2", "Doe^John", "20200115", Phantom::ChestCt, 1);
        other.time = "130100".into();
        store(&a, &t, &[padded, other]).await;
        let n = b.name;
        let names = |level: &'static str, key, vr, value: &'static str| {
            let a = a.clone();
            let t = t.clone();
            async move {
                let mut v = check(
                    &a,
                    &t,
                    query(level, &[(key, vr, value)]),
                    tags::PATIENT_NAME,
                )
                .await;
                v.sort();
                v
            }
        };
        // PS3.5 6.2: trailing empty components do not make another name
        assert_eq!(
            names("PATIENT", tags::PATIENT_NAME, VR::PN, "smith^jane").await,
            ["SMITH^JANE^^"],
            "{n}"
        );
        assert_eq!(
            names("PATIENT", tags::PATIENT_NAME, VR::PN, "DOE^JOHN^").await,
            ["Doe^John"],
            "{n}"
        );
        // a lower bound with more precision than the stored value: 1200 is 12:00:00
        assert_eq!(
            names("STUDY", tags::STUDY_TIME, VR::TM, "120000-1300").await,
            ["SMITH^JANE^^"],
            "{n}"
        );
        assert_eq!(
            names("STUDY", tags::STUDY_TIME, VR::TM, "120001-").await,
            ["Doe^John"],
            "{n}"
        );
        // a wildcard matches one modality, never a run across two (CT and MR are not C*R)
        assert!(
            names("STUDY", tags::MODALITIES_IN_STUDY, VR::CS, "C*R")
                .await
                .is_empty(),
            "{n}"
        );
        assert_eq!(
            names("STUDY", tags::MODALITIES_IN_STUDY, VR::CS, "M?").await,
            ["SMITH^JANE^^"],
            "{n}"
        );
        assert_eq!(
            names("SERIES", tags::MODALITIES_IN_STUDY, VR::CS, "C*").await,
            ["Doe^John", "SMITH^JANE^^", "SMITH^JANE^^"],
            "{n}: at series level too"
        );
        // paging still counts only matches when the wildcard is checked after SQL
        let (page, more) = a
            .index()
            .find_page(
                &t,
                &query("STUDY", &[(tags::MODALITIES_IN_STUDY, VR::CS, "C*")]),
                1,
                Some(1),
            )
            .await
            .unwrap();
        assert_eq!((page.len(), more), (1, false), "{n}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenant_sees_nothing() {
    for b in backends().await {
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        store(
            &a,
            &tenant("hospital-a"),
            &[study("iso", "Doe^John", "20200101", Phantom::ChestCt, 2)],
        )
        .await;
        let other = tenant("hospital-b");
        for level in ["PATIENT", "STUDY", "SERIES", "IMAGE"] {
            assert!(
                a.find(&other, &query(level, &[])).await.unwrap().is_empty(),
                "{} {level}",
                b.name
            );
        }
        assert!(
            a.find_instances(&other, &query("STUDY", &[]))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            a.delete(
                &other,
                DeleteLevel::Study,
                &radris_dicom::synth::uid_from("iso/study")
            )
            .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            a.find_instances(&tenant("hospital-a"), &query("STUDY", &[]))
                .await
                .unwrap()
                .len(),
            2
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retrieve_returns_the_bytes_as_received() {
    for b in backends().await {
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let t = tenant("default");
        let files = store(
            &a,
            &t,
            &[study("rt", "X^Y", "20200101", Phantom::ChestCt, 2)],
        )
        .await;
        let insts = a.find_instances(&t, &query("STUDY", &[])).await.unwrap();
        assert_eq!(insts.len(), 2);
        for inst in insts {
            let (_, file) = files.iter().find(|(u, _)| *u == inst.sop_uid).unwrap();
            // written directly to its last byte: padded to end on a block (where the file
            // system takes direct writes, as the ext4 of CI does)
            let blob = a.blobs().path_of(&inst.blob_path);
            let on_disk = std::fs::metadata(&blob).unwrap().len();
            if radris_store::direct_io::supported(blob.parent().unwrap()) {
                assert_eq!(
                    on_disk % radris_store::direct_io::ALIGN as u64,
                    0,
                    "{}",
                    b.name
                );
            }
            let layout = radris_dicom::part10::read_layout(file.as_slice()).unwrap();
            let a2 = a.clone();
            let got = tokio::task::spawn_blocking(move || a2.read_dataset(&inst).unwrap())
                .await
                .unwrap();
            assert_eq!(got, file[layout.dataset_offset as usize..], "{}", b.name);
        }
        assert!(a.verify().await.unwrap().is_clean());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_policies() {
    for b in backends().await {
        let t = tenant("default");
        let spec = study("dup", "Dup^Pat", "20200101", Phantom::ChestCt, 1);
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let files = store(&a, &t, std::slice::from_ref(&spec)).await;
        let bytes = files[0].1.clone();
        let a2 = a.clone();
        let again =
            tokio::task::spawn_blocking(move || a2.ingest_part10(tenant("default"), &bytes))
                .await
                .unwrap()
                .unwrap();
        assert!(!again.newly_stored, "{}: keep-first keeps", b.name);
        drop(a);
        let a = open(&b, DuplicatePolicy::Reject).await;
        let (a2, bytes) = (a.clone(), files[0].1.clone());
        let r = tokio::task::spawn_blocking(move || a2.ingest_part10(tenant("default"), &bytes))
            .await
            .unwrap();
        assert!(matches!(r, Err(StoreError::Duplicate(_))), "{}", b.name);
        drop(a);
        let a = open(&b, DuplicatePolicy::Overwrite).await;
        let (a2, bytes) = (a.clone(), files[0].1.clone());
        let r = tokio::task::spawn_blocking(move || a2.ingest_part10(tenant("default"), &bytes))
            .await
            .unwrap()
            .unwrap();
        assert!(r.newly_stored);
        let rows = a.find(&t, &query("STUDY", &[])).await.unwrap();
        assert_eq!(
            (rows.len(), rows[0].num_instances),
            (1, 1),
            "{}: counters after overwrite",
            b.name
        );
        let report = a.verify().await.unwrap();
        assert!(
            report.is_clean() && report.ok == 1,
            "{}: {report:?}",
            b.name
        );
        assert!(
            a.index().pending_removals().await.unwrap().is_empty(),
            "{}: the replaced file's removal is queued, done and unqueued",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_keeps_index_and_blobs_consistent() {
    for b in backends().await {
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let t = tenant("default");
        let s1 = study("del1", "Del^One", "20200101", Phantom::ChestCt, 3);
        let mut s2 = study("del2", "Del^One", "20200102", Phantom::ChestCt, 2);
        s2.patient_id = s1.patient_id.clone();
        store(&a, &t, &[s1.clone(), s2.clone()]).await;
        let first = a
            .find_instances(
                &t,
                &query(
                    "IMAGE",
                    &[(tags::STUDY_INSTANCE_UID, VR::UI, &s1.study_uid())],
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            a.delete(&t, DeleteLevel::Instance, &first[0].sop_uid)
                .await
                .unwrap(),
            1
        );
        let rows = a
            .find(
                &t,
                &query(
                    "STUDY",
                    &[(tags::STUDY_INSTANCE_UID, VR::UI, &s1.study_uid())],
                ),
            )
            .await
            .unwrap();
        assert_eq!(rows[0].num_instances, 2, "{}", b.name);
        assert_eq!(
            a.delete(&t, DeleteLevel::Study, &s1.study_uid())
                .await
                .unwrap(),
            2
        );
        let p = a.find(&t, &query("PATIENT", &[])).await.unwrap();
        assert_eq!(
            (p.len(), p[0].num_studies, p[0].num_instances),
            (1, 1, 2),
            "{}",
            b.name
        );
        assert_eq!(
            a.delete(&t, DeleteLevel::Study, &s2.study_uid())
                .await
                .unwrap(),
            2
        );
        assert!(
            a.find(&t, &query("PATIENT", &[])).await.unwrap().is_empty(),
            "{}: empty patient removed",
            b.name
        );
        let report = a.verify().await.unwrap();
        assert!(
            report.is_clean() && report.ok == 0,
            "{}: {report:?}",
            b.name
        );
        assert!(a.blobs().list_published().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_cut_short_after_its_commit_is_finished_on_the_next_start() {
    for b in backends().await {
        let (a, insts) = ct_study_in_default(&b, "k", "Kill^Delete", 3).await;
        let t = tenant("default");
        // the rows go (and the removals are queued with them); the process dies before the files
        let paths = a
            .index()
            .delete(&t, DeleteLevel::Study, &insts[0].study_uid)
            .await
            .unwrap();
        assert_eq!(paths.len(), 3, "{}", b.name);
        assert!(a.blobs().path_of(&paths[0]).exists());
        drop(a);
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        for p in &paths {
            assert!(!a.blobs().path_of(p).exists(), "{}: {p} removed", b.name);
        }
        assert!(a.index().pending_removals().await.unwrap().is_empty());
        let report = a.verify().await.unwrap();
        assert!(report.is_clean(), "{}: {report:?}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_left_in_a_transaction_is_never_handed_out_again() {
    for b in backends().await {
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let index = a.index();
        let mut conn = index.pool().acquire().await.unwrap();
        let tx = index.begin_write(&mut conn).await.unwrap();
        // what a COMMIT that failed on a full disk leaves: the transaction still open
        std::mem::forget(tx);
        drop(conn);
        // the next writer begins at once (a pooled stale connection would refuse to, or hold
        // SQLite's write lock for the 30 s busy timeout)
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let mut conn = index.pool().acquire().await.unwrap();
            index.begin_write(&mut conn).await.map(drop)
        })
        .await;
        assert!(matches!(next, Ok(Ok(()))), "{}: {next:?}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_data_sets_leave_nothing_behind() {
    for b in backends().await {
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let t = tenant("default");
        let mut file = None;
        study("bad", "B^C", "20200101", Phantom::ChestCt, 1)
            .generate(|g| {
                file = Some(g.part10);
                Ok::<(), StoreError>(())
            })
            .unwrap();
        let file = file.unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", file[..file.len() - 1000].to_vec()),
            ("not dicom", b"hello".to_vec()),
            ("header only", file[..300].to_vec()),
        ];
        for (what, bytes) in cases {
            let a2 = a.clone();
            let r =
                tokio::task::spawn_blocking(move || a2.ingest_part10(tenant("default"), &bytes))
                    .await
                    .unwrap();
            assert!(
                matches!(r, Err(StoreError::Unparseable(_))),
                "{} {what}: {r:?}",
                b.name
            );
        }
        assert!(a.find(&t, &query("IMAGE", &[])).await.unwrap().is_empty());
        let report = a.verify().await.unwrap();
        assert!(report.is_clean(), "{}: {report:?}", b.name);
    }
}

/// A fresh archive on `b` with one generated CT study of `slices` instances in tenant
/// `default`, and its instances.
async fn ct_study_in_default(
    b: &Backend,
    seed: &str,
    name: &str,
    slices: u32,
) -> (Archive, Vec<radris_store::index::StoredInstance>) {
    let t = tenant("default");
    let a = open(b, DuplicatePolicy::KeepFirst).await;
    store(
        &a,
        &t,
        &[study(seed, name, "20200101", Phantom::ChestCt, slices)],
    )
    .await;
    let insts = a.find_instances(&t, &query("STUDY", &[])).await.unwrap();
    (a, insts)
}

/// Where an instance's blob sat in staging before it was published.
fn staging_path(b: &Backend, inst: &radris_store::index::StoredInstance) -> PathBuf {
    let id = inst.blob_path.rsplit('.').nth(1).unwrap();
    b.dir.path().join("staging").join(format!("{id}.part"))
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_detects_tampering_and_orphans_and_recovery_finishes_staging() {
    for b in backends().await {
        let (a, insts) = ct_study_in_default(&b, "v", "V^W", 2).await;
        let path: PathBuf = a.blobs().path_of(&insts[0].blob_path);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(
            a.blobs().blobs_dir().join("default").join("stray.dcm"),
            b"x",
        )
        .unwrap();
        let report = a.verify().await.unwrap();
        assert_eq!(
            (report.ok, report.mismatches.len(), report.orphans.len()),
            (1, 1, 1),
            "{}: {report:?}",
            b.name
        );
        // crash between index commit and publish: the blob is back in staging
        std::fs::rename(
            a.blobs().path_of(&insts[1].blob_path),
            staging_path(&b, &insts[1]),
        )
        .unwrap();
        // it is still read (from staging), and verify says it waits to be published
        let a2 = a.clone();
        let inst = insts[1].clone();
        tokio::task::spawn_blocking(move || a2.read_dataset(&inst).unwrap())
            .await
            .unwrap();
        let report = a.verify().await.unwrap();
        assert_eq!(
            (
                report.missing.len(),
                report.unpublished.len(),
                report.staged.len()
            ),
            (0, 1, 0),
            "{}: {report:?}",
            b.name
        );
        // and an unacknowledged staging file
        std::fs::write(
            b.dir
                .path()
                .join("staging")
                .join("0190ffffffffffffffffffffffffffff.part"),
            b"partial",
        )
        .unwrap();
        drop(a);
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        assert!(
            a.blobs().path_of(&insts[1].blob_path).exists(),
            "{}: published on recovery",
            b.name
        );
        assert!(
            a.blobs().staged_ids().unwrap().is_empty(),
            "{}: unacknowledged staging removed",
            b.name
        );
    }
}

/// The SQLite writer commits the row of a blob in a spare before the blob's fsync; a crash in
/// between leaves a row whose blob is empty, short or torn in staging. Recovery keeps only
/// whole blobs and removes the other rows (never acknowledged), counters included.
#[tokio::test(flavor = "multi_thread")]
async fn recovery_removes_rows_whose_blobs_never_reached_the_disk() {
    for b in backends().await {
        let t = tenant("default");
        let (a, insts) = ct_study_in_default(&b, "torn", "Torn^Blob", 5).await;
        assert_eq!(insts.len(), 5, "{}", b.name);
        let back_to_staging = |k: usize, edit: &dyn Fn(&mut Vec<u8>)| {
            let final_path = a.blobs().path_of(&insts[k].blob_path);
            let mut bytes = std::fs::read(&final_path).unwrap();
            edit(&mut bytes);
            let staged = staging_path(&b, &insts[k]);
            std::fs::write(&staged, &bytes).unwrap();
            std::fs::remove_file(&final_path).unwrap();
            staged
        };
        let short = back_to_staging(0, &|b| b.truncate(b.len() / 2));
        let empty = back_to_staging(1, &|b| b.clear());
        let whole = back_to_staging(2, &|_| {});
        let torn = back_to_staging(3, &|b| {
            // the blob's last block, as a crash can leave it (the padding after the header
            // carries no data)
            let end = b.len();
            b[end - 64..end - 48].fill(0);
        });
        drop(a);
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let mut left: Vec<String> = a
            .find_instances(&t, &query("STUDY", &[]))
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.sop_uid)
            .collect();
        left.sort();
        let mut want = vec![insts[2].sop_uid.clone(), insts[4].sop_uid.clone()];
        want.sort();
        assert_eq!(left, want, "{}: only whole blobs keep their rows", b.name);
        let rows = a.find(&t, &query("STUDY", &[])).await.unwrap();
        assert_eq!(rows[0].num_instances, 2, "{}: counters", b.name);
        for p in [&short, &empty, &whole, &torn] {
            assert!(!p.exists(), "{}: {} left in staging", b.name, p.display());
        }
        assert!(
            a.blobs().path_of(&insts[2].blob_path).exists(),
            "{}",
            b.name
        );
        let report = a.verify().await.unwrap();
        assert!(report.is_clean(), "{}: {report:?}", b.name);
    }
}

/// Recovery removes a row only when its blob is shown to be incomplete: a staged blob it
/// cannot check (here, one naming a data key nobody has) stops the start instead, and the
/// row and the file stay for the next one.
#[tokio::test(flavor = "multi_thread")]
async fn recovery_never_removes_a_row_it_could_not_check() {
    for b in backends().await {
        let (a, insts) = ct_study_in_default(&b, "unk", "Unknown^Key", 2).await;
        let staged = staging_path(&b, &insts[0]);
        std::fs::rename(a.blobs().path_of(&insts[0].blob_path), &staged).unwrap();
        let whole = std::fs::read(&staged).unwrap();
        let mut other_key = whole.clone();
        other_key[8..24].copy_from_slice(uuid::Uuid::now_v7().as_bytes());
        std::fs::write(&staged, &other_key).unwrap();
        drop(a);
        let kek = std::sync::Arc::new(radris_store::crypto::MemoryKek::new([3; 32]));
        let refused = Archive::open(
            b.dir.path(),
            b.url.as_deref(),
            DuplicatePolicy::KeepFirst,
            EventBus::default(),
            kek,
        )
        .await;
        assert!(
            matches!(refused, Err(StoreError::UnknownKey(_))),
            "{}: {:?}",
            b.name,
            refused.err()
        );
        assert!(staged.exists(), "{}: the staged blob is kept", b.name);
        std::fs::write(&staged, &whole).unwrap();
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let t = tenant("default");
        assert_eq!(
            a.find_instances(&t, &query("STUDY", &[]))
                .await
                .unwrap()
                .len(),
            2,
            "{}: the row is kept",
            b.name
        );
        assert!(
            a.blobs().path_of(&insts[0].blob_path).exists(),
            "{}",
            b.name
        );
        assert!(a.verify().await.unwrap().is_clean(), "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_instances_stream_to_disk_and_hash_inline() {
    for b in backends().await {
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        a.set_in_memory_limit(1000);
        let t = tenant("default");
        let files = store(
            &a,
            &t,
            &[study("big", "Big^One", "20200101", Phantom::ChestCt, 2)],
        )
        .await;
        let insts = a.find_instances(&t, &query("STUDY", &[])).await.unwrap();
        assert_eq!(insts.len(), 2, "{}", b.name);
        let report = a.verify().await.unwrap();
        assert!(
            report.is_clean() && report.ok == 2,
            "{}: {report:?}",
            b.name
        );
        // truncated beyond the in-memory limit is still refused, and leaves nothing
        let mut cut = files[0].1.clone();
        cut.truncate(cut.len() - 10);
        let a2 = a.clone();
        let r = tokio::task::spawn_blocking(move || a2.ingest_part10(tenant("other"), &cut))
            .await
            .unwrap();
        assert!(r.is_err(), "{}: {r:?}", b.name);
        assert!(a.blobs().staged_ids().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mutated_files_are_stored_or_refused_never_half() {
    for b in backends().await {
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let mut file = None;
        study("mut", "Mut^Ant", "20200101", Phantom::ChestCt, 1)
            .generate(|g| {
                file = Some(g.part10);
                Ok::<(), StoreError>(())
            })
            .unwrap();
        let file = file.unwrap();
        let a2 = a.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let mut rng = radris_dicom::synth::XorShift::new(0x1234_5678_9ABC_DEF1);
            let mut next = move || rng.next_u64();
            let mut stored = 0;
            for _ in 0..300 {
                let mut m = file.clone();
                // mutate the header region (first 2 KiB), where the structure lives
                for _ in 0..1 + next() % 3 {
                    let i = (next() as usize) % 2048.min(m.len());
                    m[i] = next() as u8;
                }
                if next() % 5 == 0 {
                    m.truncate((next() as usize) % m.len());
                }
                if let Ok(s) = a2.ingest_part10(tenant("default"), &m) {
                    stored += usize::from(s.newly_stored);
                }
            }
            stored
        })
        .await
        .unwrap();
        let report = a.verify().await.unwrap();
        assert!(report.is_clean(), "{}: {report:?}", b.name);
        assert_eq!(
            report.ok as usize, stored,
            "{}: every stored mutant is indexed once",
            b.name
        );
        assert!(a.blobs().staged_ids().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn legal_hold_blocks_deletion_and_erasure_until_lifted() {
    for b in backends().await {
        let t = tenant("default");
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        store(
            &a,
            &t,
            &[
                study("h1", "HOLD^ME", "20200101", Phantom::ChestCt, 2),
                study("h2", "KEEP^ME", "20200102", Phantom::ChestCt, 1),
            ],
        )
        .await;
        let held = "PID-h1";
        let studies = a.index().studies_of_patient(&t, held).await.unwrap();
        assert_eq!(studies.len(), 1, "{}", b.name);
        a.index()
            .place_hold(&t, held, "litigation 2026-17", "user:counsel")
            .await
            .unwrap();
        // another tenant's hold table is separate
        assert!(
            a.index()
                .hold_of(&tenant("other"), held)
                .await
                .unwrap()
                .is_none()
        );
        let refused = a.delete(&t, DeleteLevel::Study, &studies[0]).await;
        assert!(
            matches!(refused, Err(radris_store::StoreError::LegalHold { .. })),
            "{}: {refused:?}",
            b.name
        );
        assert!(matches!(
            a.erase_patient(&t, held).await,
            Err(radris_store::StoreError::LegalHold { .. })
        ));
        assert_eq!(
            a.find_instances(&t, &query("STUDY", &[]))
                .await
                .unwrap()
                .len(),
            3
        );
        assert!(a.index().lift_hold(&t, held).await.unwrap());
        assert_eq!(a.erase_patient(&t, held).await.unwrap(), (1, 2));
        let left = a.find_instances(&t, &query("STUDY", &[])).await.unwrap();
        assert_eq!(left.len(), 1, "{}: only the other patient remains", b.name);
        assert!(a.verify().await.unwrap().is_clean());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn annotations_are_versioned_per_user_and_go_with_their_study() {
    for b in backends().await {
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let (t, other) = (tenant("default"), tenant("other"));
        let s1 = study("ann1", "Ann^One", "20200101", Phantom::ChestCt, 2);
        let mut s2 = study("ann2", "Ann^One", "20200102", Phantom::ChestCt, 1);
        s2.patient_id = s1.patient_id.clone();
        store(&a, &t, &[s1.clone(), s2.clone()]).await;
        let (u1, u2) = (s1.study_uid(), s2.study_uid());
        let index = a.index();
        let doc1 = r#"{"measurements":[{"id":"m1"}],"keyImages":[]}"#;
        let doc2 = r#"{"measurements":[],"keyImages":[{"sop":"1.2"}]}"#;

        assert_eq!(index.annotations(&t, &u1, "alice").await.unwrap(), None);
        assert_eq!(
            index
                .put_annotations(&t, &u1, "alice", doc1, None)
                .await
                .unwrap(),
            1,
            "{}",
            b.name
        );
        let got = index.annotations(&t, &u1, "alice").await.unwrap().unwrap();
        assert_eq!((got.document.as_str(), got.version), (doc1, 1));
        assert!(got.updated_at > 0);
        // "must not exist yet", and a stale version: conflicts that change nothing
        for stale in [None, Some(0), Some(2)] {
            match index.put_annotations(&t, &u1, "alice", doc2, stale).await {
                Err(StoreError::Conflict { expected, current }) => {
                    assert_eq!((expected, current), (stale, Some(1)), "{}", b.name)
                }
                other => panic!("{}: expected a conflict, got {other:?}", b.name),
            }
        }
        assert_eq!(
            index
                .annotations(&t, &u1, "alice")
                .await
                .unwrap()
                .unwrap()
                .document,
            doc1
        );
        assert_eq!(
            index
                .put_annotations(&t, &u1, "alice", doc2, Some(1))
                .await
                .unwrap(),
            2
        );
        // updating a document that does not exist is a conflict too
        assert!(matches!(
            index.put_annotations(&t, &u1, "bob", doc2, Some(1)).await,
            Err(StoreError::Conflict { current: None, .. })
        ));
        // per user, per study, per tenant
        assert_eq!(index.annotations(&t, &u1, "bob").await.unwrap(), None);
        assert_eq!(index.annotations(&t, &u2, "alice").await.unwrap(), None);
        assert_eq!(index.annotations(&other, &u1, "alice").await.unwrap(), None);
        index
            .put_annotations(&t, &u1, "bob", doc1, None)
            .await
            .unwrap();
        index
            .put_annotations(&t, &u2, "alice", doc1, None)
            .await
            .unwrap();
        // no document without its study (in the tenant)
        assert!(matches!(
            index
                .put_annotations(&other, &u1, "alice", doc1, None)
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            index
                .put_annotations(&t, "1.2.3.999", "alice", doc1, None)
                .await,
            Err(StoreError::NotFound(_))
        ));
        // deleting an instance leaves the study and its documents
        let first = a
            .find_instances(
                &t,
                &query("IMAGE", &[(tags::STUDY_INSTANCE_UID, VR::UI, &u1)]),
            )
            .await
            .unwrap();
        a.delete(&t, DeleteLevel::Instance, &first[0].sop_uid)
            .await
            .unwrap();
        assert_eq!(
            index
                .annotations(&t, &u1, "alice")
                .await
                .unwrap()
                .unwrap()
                .version,
            2
        );
        // deleting the study removes every user's document of it, and only of it
        a.delete(&t, DeleteLevel::Study, &u1).await.unwrap();
        assert_eq!(index.annotations(&t, &u1, "alice").await.unwrap(), None);
        assert_eq!(index.annotations(&t, &u1, "bob").await.unwrap(), None);
        assert!(index.annotations(&t, &u2, "alice").await.unwrap().is_some());
        // erasing the patient removes the rest
        assert_eq!(a.erase_patient(&t, &s1.patient_id).await.unwrap(), (1, 1));
        assert_eq!(index.annotations(&t, &u2, "alice").await.unwrap(), None);
        let left = sqlx::query("SELECT COUNT(*) FROM annotations")
            .fetch_one(index.pool())
            .await
            .unwrap();
        assert_eq!(sqlx::Row::get::<i64, _>(&left, 0), 0, "{}", b.name);
    }
}

/// Completions that only say whether each blob became durable (the ops carry their hashes).
fn durable(flags: &[bool]) -> Vec<Option<String>> {
    flags.iter().map(|d| d.then(String::new)).collect()
}

/// The index rows of a generated study's instances, as the archive would write them.
fn insert_ops(
    t: &TenantId,
    spec: &StudySpec,
    policy: DuplicatePolicy,
) -> Vec<radris_store::index::InsertOp> {
    let mut ops = Vec::new();
    spec.generate(|g| {
        let obj = dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Never)
            .from_reader(std::io::Cursor::new(&g.part10[128..]))
            .unwrap()
            .into_inner();
        let attrs = radris_dicom::attrs::IndexAttributes::from_header(&obj).unwrap();
        let header_json = radris_dicom::attrs::index_header_json(&obj, &attrs).unwrap();
        let blob_id = uuid::Uuid::now_v7().simple().to_string();
        ops.push(radris_store::index::InsertOp {
            tenant: t.clone(),
            blob_path: format!("{t}/x/{blob_id}.dcm"),
            attrs,
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            blob_id,
            size_bytes: g.part10.len() as u64,
            sha256: radris_store::blob::sha256_hex(&[&g.part10]),
            source_ae: String::new(),
            header_json,
            policy,
        });
        Ok::<(), StoreError>(())
    })
    .unwrap();
    ops
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_commits_only_the_instances_whose_blobs_are_durable() {
    for b in backends().await {
        let t = tenant("default");
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let spec = study("gate", "Gate^Keeper", "20200101", Phantom::ChestCt, 3);
        let ops = insert_ops(&t, &spec, DuplicatePolicy::KeepFirst);
        // the second blob's fsync failed: it must not be indexed, the others must
        let results = a
            .index()
            .insert_batch_completed(&ops, std::future::ready(durable(&[true, false, true])))
            .await;
        assert!(
            results[0].is_ok() && results[2].is_ok(),
            "{}: {results:?}",
            b.name
        );
        assert!(results[1].is_err(), "{}: {results:?}", b.name);
        let insts = a.find_instances(&t, &query("STUDY", &[])).await.unwrap();
        let mut sops: Vec<&str> = insts.iter().map(|i| i.sop_uid.as_str()).collect();
        sops.sort();
        let mut want = vec![
            ops[0].attrs.instance.sop_instance_uid.as_str(),
            ops[2].attrs.instance.sop_instance_uid.as_str(),
        ];
        want.sort();
        assert_eq!(sops, want, "{}", b.name);
        let rows = a.find(&t, &query("STUDY", &[])).await.unwrap();
        assert_eq!(rows[0].num_instances, 2, "{}: counters", b.name);
        // nothing durable: nothing indexed
        let more = insert_ops(
            &t,
            &study("gate2", "Gate^Two", "20200102", Phantom::ChestCt, 2),
            DuplicatePolicy::KeepFirst,
        );
        let results = a
            .index()
            .insert_batch_completed(&more, std::future::ready(durable(&[false, false])))
            .await;
        assert!(results.iter().all(Result::is_err), "{}", b.name);
        assert_eq!(a.find(&t, &query("STUDY", &[])).await.unwrap().len(), 1);
        // a refused duplicate inside a batch fails alone (the batch is redone op by op)
        let mut dup = ops[0].clone();
        dup.policy = DuplicatePolicy::Reject;
        let batch = vec![dup, ops[1].clone()];
        let results = a
            .index()
            .insert_batch_completed(&batch, std::future::ready(durable(&[true, true])))
            .await;
        assert!(
            matches!(results[0], Err(StoreError::Duplicate(_))),
            "{}: {results:?}",
            b.name
        );
        assert!(results[1].is_ok(), "{}: {results:?}", b.name);
        let rows = a.find(&t, &query("STUDY", &[])).await.unwrap();
        assert_eq!(rows[0].num_instances, 3, "{}: counters", b.name);
        // ... also after ops that went in: the batch starts over, and they go in once
        let third = insert_ops(
            &t,
            &study("gate3", "Gate^Three", "20200103", Phantom::ChestCt, 2),
            DuplicatePolicy::KeepFirst,
        );
        let mut dup = ops[2].clone();
        dup.policy = DuplicatePolicy::Reject;
        let batch = vec![third[0].clone(), third[1].clone(), dup];
        let results = a
            .index()
            .insert_batch_completed(&batch, std::future::ready(durable(&[true, true, true])))
            .await;
        assert!(
            results[0].is_ok() && results[1].is_ok(),
            "{}: {results:?}",
            b.name
        );
        assert!(
            matches!(results[2], Err(StoreError::Duplicate(_))),
            "{}: {results:?}",
            b.name
        );
        let rows = a.find(&t, &query("STUDY", &[])).await.unwrap();
        assert_eq!(rows.len(), 2, "{}", b.name);
        let mut counts: Vec<(i64, i64)> = rows
            .iter()
            .map(|r| (r.num_series, r.num_instances))
            .collect();
        counts.sort();
        assert_eq!(counts, vec![(1, 2), (1, 3)], "{}: {counts:?}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_written_before_their_hash_commit_with_it_or_not_at_all() {
    for b in backends().await {
        let t = tenant("default");
        let a = open(&b, DuplicatePolicy::KeepFirst).await;
        let spec = study("late", "Late^Hash", "20200104", Phantom::ChestCt, 3);
        let ops = insert_ops(&t, &spec, DuplicatePolicy::KeepFirst);
        let want: Vec<String> = ops.iter().map(|o| o.sha256.clone()).collect();
        let mut sent = ops.clone();
        sent[0].sha256.clear();
        sent[2].sha256.clear();
        // the first's hash arrives with its completion; the second had its own; the third's
        // hash never came: it must not be indexed, and the others must commit with theirs
        let done = vec![
            Some(want[0].clone()),
            Some(String::new()),
            Some(String::new()),
        ];
        let results = a
            .index()
            .insert_batch_completed(&sent, std::future::ready(done))
            .await;
        assert!(
            results[0].is_ok() && results[1].is_ok() && results[2].is_err(),
            "{}: {results:?}",
            b.name
        );
        let insts = a.find_instances(&t, &query("STUDY", &[])).await.unwrap();
        assert_eq!(insts.len(), 2, "{}", b.name);
        for i in &insts {
            let k = ops
                .iter()
                .position(|o| o.attrs.instance.sop_instance_uid.as_str() == i.sop_uid)
                .unwrap();
            assert_eq!(i.sha256, want[k], "{}: row {k}", b.name);
        }
        let rows = a.find(&t, &query("STUDY", &[])).await.unwrap();
        assert_eq!(rows[0].num_instances, 2, "{}: counters", b.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sqlite_ingest_writer_commits_new_instances_and_hands_back_the_rest() {
    use radris_store::index::direct::Handoff;
    let b = &backends().await[0];
    let t = tenant("default");
    let a = open(b, DuplicatePolicy::Reject).await;
    let ops = insert_ops(
        &t,
        &study("direct", "Direct^Writer", "20200105", Phantom::ChestCt, 4),
        DuplicatePolicy::Reject,
    );
    let index = a.index().clone();
    let stored = |index: radris_store::index::Index, t: TenantId| async move {
        let q = query("IMAGE", &[]);
        let mut rows: Vec<(String, String)> = index
            .find_instances(&t, &q)
            .await
            .unwrap()
            .into_iter()
            .map(|i| (i.sop_uid, i.sha256))
            .collect();
        rows.sort();
        rows
    };
    let handle = tokio::runtime::Handle::current();
    let ops2 = ops.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut w = index.direct_writer().expect("a SQLite file").unwrap();
        let block_on = |f| handle.block_on(f);
        // new instances, one of them with its hash arriving late: committed with it
        let mut first = vec![ops2[0].clone(), ops2[1].clone()];
        let late = std::mem::take(&mut first[1].sha256);
        let done = std::future::ready(vec![Some(String::new()), Some(late)]);
        let ok =
            matches!(w.insert_batch(&first, done, block_on), Ok(r) if r.iter().all(Result::is_ok));
        // a duplicate in the batch: handed back before the wait, nothing written
        let dup = vec![ops2[2].clone(), ops2[0].clone()];
        let done = std::future::ready(vec![Some(String::new()); 2]);
        let pending = matches!(
            w.insert_batch(&dup, done, block_on),
            Err(Handoff::Pending(_))
        );
        // a blob that did not become durable: handed back after the wait, nothing written
        let lost = vec![ops2[2].clone(), ops2[3].clone()];
        let done = std::future::ready(vec![Some(String::new()), None]);
        let after = match w.insert_batch(&lost, done, block_on) {
            Err(Handoff::Done(d)) => d,
            other => panic!(
                "expected a hand-back after the wait, got ok={}",
                other.is_ok()
            ),
        };
        (ok, pending, after)
    })
    .await
    .unwrap();
    assert!(outcome.0, "new instances commit");
    assert!(outcome.1, "a duplicate is handed back before the wait");
    assert_eq!(outcome.2, vec![Some(String::new()), None]);
    let mut want: Vec<(String, String)> = ops[..2]
        .iter()
        .map(|o| {
            (
                o.attrs.instance.sop_instance_uid.to_string(),
                o.sha256.clone(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(stored(a.index().clone(), t.clone()).await, want);
    let rows = a.find(&t, &query("STUDY", &[])).await.unwrap();
    assert_eq!((rows[0].num_series, rows[0].num_instances), (1, 2));
    // what was handed back, finished by the sqlx path: the duplicate is refused alone
    let dup = vec![ops[2].clone(), ops[0].clone()];
    let results = a
        .index()
        .insert_batch_completed(&dup, std::future::ready(vec![Some(String::new()); 2]))
        .await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(StoreError::Duplicate(_))),
        "{results:?}"
    );
    assert_eq!(stored(a.index().clone(), t.clone()).await.len(), 3);
}
