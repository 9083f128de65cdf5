//! The RIS service on a real index: SQLite always, and a fresh PostgreSQL database too when
//! `RADRIS_TEST_POSTGRES_URL` names a server (`scripts/test` starts one).

use std::sync::{Arc, Mutex};

use radris_core::TenantId;
use radris_core::audit::{AuditRecord, AuditSink};
use radris_core::events::{Event, EventBus};
use radris_ris::model::*;
use radris_ris::workflow::OrderState;
use radris_ris::{Actor, Priority, Ris, RisError};
use radris_store::Index;
use sqlx::Connection;

#[derive(Default)]
struct Recorded(Mutex<Vec<AuditRecord>>);

impl AuditSink for Recorded {
    fn record(&self, record: AuditRecord) {
        self.0.lock().unwrap().push(record);
    }
}

struct Env {
    ris: Ris,
    audit: Arc<Recorded>,
    events: EventBus,
    _dir: tempfile::TempDir,
}

async fn envs() -> Vec<(&'static str, Env)> {
    let mut urls = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    urls.push((
        "sqlite",
        format!("sqlite://{}", dir.path().join("i.sqlite").display()),
        dir,
    ));
    if let Ok(admin) = std::env::var("RADRIS_TEST_POSTGRES_URL")
        && !admin.is_empty()
    {
        sqlx::any::install_default_drivers();
        let db = format!("radris_t_{}", uuid_like());
        let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
        urls.push((
            "postgres",
            format!("{base}/{db}"),
            tempfile::tempdir().unwrap(),
        ));
    }
    let mut out = Vec::new();
    for (name, url, dir) in urls {
        let index = Index::open(&url).await.unwrap();
        let audit = Arc::new(Recorded::default());
        let events = EventBus::new(1024);
        out.push((
            name,
            Env {
                ris: Ris::new(index, events.clone(), audit.clone()),
                audit,
                events,
                _dir: dir,
            },
        ));
    }
    out
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn tenant() -> TenantId {
    TenantId::default_tenant()
}

fn tech() -> Actor {
    Actor::user("tech", "test")
}

const DAY: i64 = 86_400_000;

async fn setup(ris: &Ris) -> (Resource, Patient) {
    let t = tenant();
    ris.put_procedure(
        &t,
        &Procedure {
            code: "CTCH".into(),
            scheme: "T".into(),
            name: "CT chest".into(),
            modality: "CT".into(),
            body_part: "CHEST".into(),
            duration_min: 20,
            preparation: String::new(),
            subspecialty: "chest".into(),
        },
        &tech(),
    )
    .await
    .unwrap();
    let ct = ris
        .create_resource(
            &t,
            &Resource {
                id: String::new(),
                kind: ResourceKind::Modality,
                name: "CT 1".into(),
                modality: "CT".into(),
                ae_title: "CT01".into(),
                station_name: String::new(),
                site: "main".into(),
                subspecialties: vec![],
                user_name: String::new(),
                open_from: "07:00".into(),
                open_to: "19:00".into(),
            },
            &tech(),
        )
        .await
        .unwrap();
    let p = ris
        .create_patient(
            &t,
            &NewPatient {
                patient_id: "P1".into(),
                issuer: "H".into(),
                name: "Doe^Jane".into(),
                birth_date: "19700101".into(),
                sex: "F".into(),
            },
            &tech(),
        )
        .await
        .unwrap();
    (ct, p)
}

async fn order(ris: &Ris, p: &Patient, priority: Priority) -> Order {
    ris.create_order(
        &tenant(),
        &NewOrder {
            patient: p.id.clone(),
            procedure_code: "CTCH".into(),
            priority,
            reason: String::new(),
            referring_physician: String::new(),
            accession: None,
        },
        &tech(),
    )
    .await
    .unwrap()
}

/// 09:00 UTC on a fixed day.
fn nine() -> Time {
    Time(20_000 * DAY + 9 * 3_600_000)
}

#[tokio::test]
async fn bookings_detect_conflicts_and_opening_hours() {
    for (name, env) in envs().await {
        let ris = &env.ris;
        let t = tenant();
        let (ct, p) = setup(ris).await;
        let a = order(ris, &p, Priority::Routine).await;
        let b = order(ris, &p, Priority::Routine).await;
        let booked = ris.book(&t, &a.id, &ct.id, nine(), &tech()).await.unwrap();
        assert_eq!(booked.ends_at, Time(nine().0 + 20 * 60_000), "{name}");
        // overlapping the end of the first booking
        match ris
            .book(&t, &b.id, &ct.id, Time(nine().0 + 10 * 60_000), &tech())
            .await
        {
            Err(RisError::Conflict { conflicts, .. }) => {
                assert_eq!(conflicts.len(), 1, "{name}");
                assert_eq!(conflicts[0].id, booked.id, "{name}");
            }
            other => panic!("{name}: expected a conflict, got {other:?}"),
        }
        assert_eq!(
            ris.order(&t, &b.id, false).await.unwrap().state,
            OrderState::Ordered
        );
        // back to back is fine; outside opening hours is not
        ris.book(&t, &b.id, &ct.id, Time(nine().0 + 20 * 60_000), &tech())
            .await
            .unwrap();
        let c = order(ris, &p, Priority::Routine).await;
        let late = Time(20_000 * DAY + 18 * 3_600_000 + 50 * 60_000);
        assert!(
            matches!(
                ris.book(&t, &c.id, &ct.id, late, &tech()).await,
                Err(RisError::Conflict { .. })
            ),
            "{name}: 18:50 + 20 min ends after 19:00"
        );
        // a booked order cannot be booked twice
        assert!(matches!(
            ris.book(&t, &a.id, &ct.id, Time(nine().0 + 3 * 3_600_000), &tech())
                .await,
            Err(RisError::Conflict { .. })
        ));
        // cancelling frees the slot and the order
        ris.cancel_appointment(&t, &booked.id, &tech())
            .await
            .unwrap();
        assert_eq!(
            ris.order(&t, &a.id, false).await.unwrap().state,
            OrderState::Ordered
        );
        ris.book(&t, &c.id, &ct.id, nine(), &tech()).await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_bookings_of_one_slot_let_exactly_one_through() {
    for (name, env) in envs().await {
        let ris = &env.ris;
        let t = tenant();
        let (ct, p) = setup(ris).await;
        let mut orders = Vec::new();
        for _ in 0..6 {
            orders.push(order(ris, &p, Priority::Routine).await);
        }
        let tasks: Vec<_> = orders
            .iter()
            .map(|o| {
                let (ris, t, id, res) = (ris.clone(), t.clone(), o.id.clone(), ct.id.clone());
                tokio::spawn(async move { ris.book(&t, &id, &res, nine(), &tech()).await })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(RisError::Conflict { .. }) => {}
                // SQLite may time out a writer under contention; never a double booking
                Err(RisError::Store(_)) | Err(RisError::Database(_)) => {}
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert_eq!(ok, 1, "{name}: exactly one booking of the slot");
        let day = ris
            .appointments(&t, Time(nine().0 - DAY / 2), Time(nine().0 + DAY / 2), None)
            .await
            .unwrap();
        assert_eq!(day.len(), 1, "{name}");
    }
}

#[tokio::test]
async fn transitions_are_checked_audited_and_published() {
    for (name, env) in envs().await {
        let ris = &env.ris;
        let t = tenant();
        let (ct, p) = setup(ris).await;
        let mut rx = env.events.subscribe();
        let o = order(ris, &p, Priority::Stat).await;
        // ordered → final is refused, nothing changes
        assert!(matches!(
            ris.transition(&t, &o.id, OrderState::Final, &tech(), "")
                .await,
            Err(RisError::Illegal(_))
        ));
        assert_eq!(
            ris.order(&t, &o.id, false).await.unwrap().state,
            OrderState::Ordered
        );
        let appt = ris.book(&t, &o.id, &ct.id, nine(), &tech()).await.unwrap();
        ris.arrive(&t, &appt.id, &tech()).await.unwrap();
        ris.transition(&t, &o.id, OrderState::InProgress, &tech(), "")
            .await
            .unwrap();
        ris.transition(&t, &o.id, OrderState::ImagesComplete, &tech(), "")
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let Event::OrderChanged { to, .. } = e {
                seen.push(to);
            }
        }
        assert_eq!(
            seen,
            [
                "ordered",
                "scheduled",
                "arrived",
                "in_progress",
                "images_complete"
            ],
            "{name}"
        );
        let audited: Vec<String> = env
            .audit
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.action == "ris.order.transition")
            .map(|r| r.detail.clone())
            .collect();
        assert_eq!(audited.len(), 4, "{name}: {audited:?}");
        // reading: a radiologist must claim, and only one can
        let alice = Actor::user("alice", "test");
        let bob = Actor::user("bob", "test");
        assert!(matches!(
            ris.transition(&t, &o.id, OrderState::Preliminary, &alice, "")
                .await,
            Err(RisError::Conflict { .. })
        ));
        ris.claim(&t, &o.id, &alice).await.unwrap();
        assert!(matches!(
            ris.claim(&t, &o.id, &bob).await,
            Err(RisError::Conflict { .. })
        ));
        assert!(matches!(
            ris.unclaim(&t, &o.id, &bob).await,
            Err(RisError::Conflict { .. })
        ));
        ris.transition(&t, &o.id, OrderState::Final, &alice, "")
            .await
            .unwrap();
        let done = ris.order(&t, &o.id, true).await.unwrap();
        assert!(
            done.times.final_.0 > 0 && done.history.unwrap().len() == 6,
            "{name}"
        );
        // once reported it cannot be cancelled
        assert!(matches!(
            ris.cancel_order(&t, &o.id, "mistake", &tech()).await,
            Err(RisError::Illegal(_))
        ));
    }
}

#[tokio::test]
async fn stat_cases_unread_too_long_are_escalated_once() {
    for (name, env) in envs().await {
        let ris = &env.ris;
        let t = tenant();
        let (ct, p) = setup(ris).await;
        let o = order(ris, &p, Priority::Stat).await;
        let appt = ris.book(&t, &o.id, &ct.id, nine(), &tech()).await.unwrap();
        ris.arrive(&t, &appt.id, &tech()).await.unwrap();
        for s in [OrderState::InProgress, OrderState::ImagesComplete] {
            ris.transition(&t, &o.id, s, &tech(), "").await.unwrap();
        }
        let now = Time::now();
        assert_eq!(
            ris.escalate_overdue(&t, now).await.unwrap(),
            0,
            "{name}: not yet"
        );
        let later = Time(now.0 + 31 * 60_000);
        assert_eq!(ris.escalate_overdue(&t, later).await.unwrap(), 1, "{name}");
        assert_eq!(
            ris.escalate_overdue(&t, later).await.unwrap(),
            0,
            "{name}: once"
        );
        let list = ris
            .reading_list(
                &t,
                "x",
                &ReadingFilter {
                    scope: Some("all".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(list[0].id, o.id, "{name}: escalated first");
        assert!(list[0].escalated_at.0 > 0);
    }
}

#[tokio::test]
async fn tenants_do_not_see_each_other() {
    for (name, env) in envs().await {
        let ris = &env.ris;
        let (_, p) = setup(ris).await;
        let o = order(ris, &p, Priority::Routine).await;
        let other = TenantId::parse("other").unwrap();
        assert!(
            matches!(
                ris.order(&other, &o.id, false).await,
                Err(RisError::NotFound(_))
            ),
            "{name}"
        );
        assert!(ris.patients(&other, "", 50).await.unwrap().is_empty());
        assert!(ris.procedures(&other).await.unwrap().is_empty());
        assert!(matches!(
            ris.claim(&other, &o.id, &Actor::user("x", "t")).await,
            Err(RisError::NotFound(_))
        ));
    }
}
