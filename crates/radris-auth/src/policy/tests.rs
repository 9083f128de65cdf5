//! The policy engine on a real index database (SQLite; PostgreSQL too when
//! `RADRIS_TEST_POSTGRES_URL` is set, as in `tests/auth_db.rs`).

use std::time::{Duration, Instant};

use radris_store::Index;

use super::*;

async fn engines(test: &str) -> Vec<(PolicyEngine, Index, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("index.db").display());
    let index = Index::open(&url).await.unwrap();
    let mut out = vec![(
        PolicyEngine::load(index.pool().clone()).await.unwrap(),
        index,
        Some(dir),
    )];
    if let Ok(pg) = std::env::var("RADRIS_TEST_POSTGRES_URL") {
        // database names take no hyphens (test names may have them)
        let safe: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        // unique per call: tests run in parallel and may share a name
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("radris_t_policy_{safe}_{}_{n}", std::process::id());
        let admin = Index::open(&pg).await.unwrap();
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(admin.pool())
        .await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin.pool())
            .await
            .unwrap();
        let base = pg.rsplit_once('/').unwrap().0;
        let index = Index::open(&format!("{base}/{name}")).await.unwrap();
        out.push((
            PolicyEngine::load(index.pool().clone()).await.unwrap(),
            index,
            None,
        ));
    }
    out
}

async fn engine() -> (PolicyEngine, Index, tempfile::TempDir) {
    let (engine, index, dir) = engines("sqlite-only").await.into_iter().next().unwrap();
    (engine, index, dir.unwrap())
}

fn north() -> TenantId {
    TenantId::parse("north").unwrap()
}

fn south() -> TenantId {
    TenantId::parse("south").unwrap()
}

fn subject(tenant: &TenantId, user: &str, roles: &str) -> Subject {
    Subject::new(tenant.clone(), user, roles, "a")
}

fn study(tenant: &TenantId, uid: &str, site: &str, referrers: &[&str]) -> Resource {
    Resource::Study(StudyAttributes {
        tenant: tenant.clone(),
        study_uid: Uid::parse(uid).unwrap(),
        site: site.into(),
        referrers: referrers.iter().map(|r| r.to_string()).collect(),
        patient: "P-1".into(),
    })
}

fn decide(engine: &PolicyEngine, s: &Subject, action: Action, r: &Resource) -> Decision {
    decide_with(engine, s, action, r, &[])
}

fn decide_with(
    engine: &PolicyEngine,
    s: &Subject,
    action: Action,
    r: &Resource,
    grants: &[BreakGlassGrant],
) -> Decision {
    engine.authorize(&AccessRequest {
        subject: s,
        action,
        resource: r,
        break_glass: grants,
    })
}

/// The resources of the role matrix, in column order.
fn matrix_resources() -> (Vec<Resource>, Vec<Resource>) {
    let (n, s) = (north(), south());
    let studies = vec![
        study(&n, "1.1", "a", &["dr.ref"]),   // own site, own order
        study(&n, "1.2", "a", &["dr.other"]), // own site, not own order
        study(&n, "1.3", "b", &["dr.ref"]),   // other site, own order
        study(&n, "1.4", "b", &["dr.other"]), // other site, not own order
        study(&s, "1.5", "a", &["dr.ref"]),   // other tenant (same site name, own order)
    ];
    let tenants = vec![Resource::Tenant(n), Resource::Tenant(s)];
    (studies, tenants)
}

/// Role × action × resource → decision under the shipped defaults. Study columns: own site +
/// own order, own site + other order, other site + own order, other site + other order,
/// other tenant. Tenant columns: own tenant, other tenant.
const MATRIX: &str = "
admin        read:YYYYN write:YYYYN delete:YYYYN export:YYYYN admin:YN audit:YN breakGlass:YN
radiologist  read:YYYYN write:YYYYN delete:NNNNN export:YYYYN admin:NN audit:NN breakGlass:YN
technologist read:YYNNN write:YYNNN delete:NNNNN export:NNNNN admin:NN audit:NN breakGlass:YN
referring    read:YNYNN write:NNNNN delete:NNNNN export:NNNNN admin:NN audit:NN breakGlass:YN
auditor      read:NNNNN write:NNNNN delete:NNNNN export:NNNNN admin:NN audit:YN breakGlass:NN
service      read:YYYYN write:YYYYN delete:NNNNN export:NNNNN admin:NN audit:NN breakGlass:NN
nobody       read:NNNNN write:NNNNN delete:NNNNN export:NNNNN admin:NN audit:NN breakGlass:NN
";

/// Check every row of a matrix; all mismatches are reported at once.
fn check_matrix(engine: &PolicyEngine, matrix: &str) {
    let (studies, tenants) = matrix_resources();
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in matrix.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let role = words.next().unwrap();
        let roles = if role == "nobody" { "" } else { role };
        // the referring physician is the one who ordered the "own order" studies
        let user = if role == "referring" { "dr.ref" } else { role };
        let s = subject(&north(), user, roles);
        for cell in words {
            let (action, expected) = cell.split_once(':').unwrap();
            let action = *Action::ALL.iter().find(|a| a.as_str() == action).unwrap();
            let resources = if action.on_study() {
                &studies
            } else {
                &tenants
            };
            assert_eq!(expected.len(), resources.len(), "{line}");
            for (want, resource) in expected.chars().zip(resources) {
                let d = decide(engine, &s, action, resource);
                checked += 1;
                if d.allowed != (want == 'Y') {
                    failures.push(format!(
                        "{role} {action} {}: expected {want}, got {:?}",
                        resource.describe(),
                        d
                    ));
                }
                // every allowed request names the policies that allowed it
                if d.allowed {
                    assert!(!d.reasons.is_empty());
                }
                assert!(d.errors.is_empty(), "{:?}", d.errors);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, 7 * (4 * 5 + 3 * 2));
}

#[tokio::test]
async fn default_policies_role_matrix() {
    let (engine, _index, _dir) = engine().await;
    check_matrix(&engine, MATRIX);

    // a user with several roles gets the union
    let both = subject(&north(), "ra", "radiologist, auditor");
    let (studies, tenants) = matrix_resources();
    assert!(decide(&engine, &both, Action::Export, &studies[3]).allowed);
    assert!(decide(&engine, &both, Action::Audit, &tenants[0]).allowed);
    // a technologist without a site matches no site, not even studies without one
    let nowhere = Subject::new(north(), "t", "technologist", "");
    let unsited = study(&north(), "1.9", "", &[]);
    assert!(!decide(&engine, &nowhere, Action::Read, &unsited).allowed);
    // reasons are the @ids of the deciding policies
    let rad = subject(&north(), "r", "radiologist");
    let d = decide(&engine, &rad, Action::Read, &studies[0]);
    assert_eq!(d.reasons, vec!["radiologist-studies".to_owned()]);
    assert!(!d.via_break_glass);
    // cross-tenant requests stop at the built-in check…
    let d = decide(&engine, &rad, Action::Read, &studies[4]);
    assert_eq!(d.reasons, vec!["builtin:tenant-isolation".to_owned()]);
    // …and the policies forbid them again on their own (belt and braces)
    let admin = subject(&north(), "adm", "admin");
    let d = engine.inner.base.evaluate(
        &engine.inner.base.defaults,
        &admin,
        Action::Read,
        &studies[4],
        false,
    );
    assert!(!d.allowed);
    assert_eq!(d.reasons, vec!["tenant-isolation".to_owned()]);
    // an action on the wrong kind of resource is refused, not evaluated
    let d = decide(&engine, &admin, Action::Admin, &studies[0]);
    assert_eq!(d.reasons, vec!["builtin:resource-kind".to_owned()]);
    let d = decide(&engine, &admin, Action::Read, &tenants[0]);
    assert_eq!(d.reasons, vec!["builtin:resource-kind".to_owned()]);
}

#[test]
fn requests_conform_to_the_schema() {
    // evaluate() skips the schema check for speed; here every shape it builds must pass it
    let base = Base::new().unwrap();
    let (studies, tenants) = matrix_resources();
    let s = Subject::new(north(), "u", "admin,referring,unknown-role", "");
    for action in Action::ALL {
        let resources = if action.on_study() {
            &studies
        } else {
            &tenants
        };
        for r in resources {
            for bg in [false, true] {
                base.build(&s, action, r, bg, Some(base.schema()))
                    .unwrap_or_else(|e| panic!("{action} {}: {e}", r.describe()));
            }
        }
    }
    assert_eq!(base.defaults.len(), 14);
}

#[tokio::test]
async fn break_glass_grants_read_while_active_and_with_reason() {
    for (engine, _index, _dir) in engines("break_glass").await {
        let n = north();
        let doc = subject(&n, "dr.ref", "referring");
        let foreign_order = study(&n, "2.1", "b", &["dr.other"]);
        let other_study = study(&n, "2.2", "b", &["dr.other"]);
        assert!(!decide(&engine, &doc, Action::Read, &foreign_order).allowed);

        // the rules for opening one
        let refused = |r: Result<BreakGlassGrant, PolicyError>| match r {
            Err(e @ PolicyError::BreakGlassRefused { .. }) => {
                assert!(e.is_client_error());
                e.to_string()
            }
            other => panic!("expected a refusal, got {other:?}"),
        };
        let msg = refused(
            engine
                .break_glass_open(&doc, "", None, BreakGlassScope::Tenant)
                .await,
        );
        assert!(msg.contains("reason of at least 10"), "{msg}");
        refused(
            engine
                .break_glass_open(&doc, "  urgent   ", None, BreakGlassScope::Tenant)
                .await,
        );
        let reason = "Unconscious patient in the ER, prior CT needed";
        let msg = refused(
            engine
                .break_glass_open(
                    &doc,
                    reason,
                    Some(Duration::from_secs(5 * 3600)),
                    BreakGlassScope::Tenant,
                )
                .await,
        );
        assert!(msg.contains("at most 240 minutes"), "{msg}");
        refused(
            engine
                .break_glass_open(&doc, reason, Some(Duration::ZERO), BreakGlassScope::Tenant)
                .await,
        );
        // roles the policies do not let open one
        let auditor = subject(&n, "aud", "auditor");
        assert!(matches!(
            engine
                .break_glass_open(&auditor, reason, None, BreakGlassScope::Tenant)
                .await,
            Err(PolicyError::Denied {
                action: Action::BreakGlass,
                ..
            })
        ));
        assert!(
            engine
                .break_glass_active(&n, "dr.ref")
                .await
                .unwrap()
                .is_empty()
        );

        // open: ten minutes, the whole tenant
        let grant = engine
            .break_glass_open(
                &doc,
                reason,
                Some(Duration::from_secs(600)),
                BreakGlassScope::Tenant,
            )
            .await
            .unwrap();
        assert_eq!(grant.expires_at - grant.created_at, 600_000);
        let record = grant.audit_record("10.0.0.1");
        assert_eq!(record.action, "auth.break-glass.open");
        assert_eq!(record.actor, "user:dr.ref");
        assert_eq!(record.tenant, "north");
        assert!(record.detail.contains(reason), "{}", record.detail);
        assert!(
            record.detail.contains("\"minutes\":10"),
            "{}",
            record.detail
        );

        let grants = engine.break_glass_active(&n, "dr.ref").await.unwrap();
        assert_eq!(&*grants, std::slice::from_ref(&grant));
        let d = decide_with(&engine, &doc, Action::Read, &foreign_order, &grants);
        assert!(d.allowed && d.via_break_glass, "{d:?}");
        assert_eq!(d.reasons, vec!["clinical-break-glass-read".to_owned()]);
        let access = grant.access_record(Action::Read, &foreign_order, "10.0.0.1");
        assert_eq!(access.action, "auth.break-glass.access");
        assert_eq!(access.resource, "study:2.1");
        // read only: no store, no export
        assert!(!decide_with(&engine, &doc, Action::Write, &foreign_order, &grants).allowed);
        assert!(!decide_with(&engine, &doc, Action::Export, &foreign_order, &grants).allowed);
        // an access the user had anyway is not a break-glass access
        let own = study(&n, "2.3", "b", &["dr.ref"]);
        let d = decide_with(&engine, &doc, Action::Read, &own, &grants);
        assert!(d.allowed && !d.via_break_glass, "{d:?}");
        // a grant is personal: someone else's grant does not help
        let colleague = subject(&n, "dr.colleague", "referring");
        assert!(!decide_with(&engine, &colleague, Action::Read, &foreign_order, &grants).allowed);
        // nor does it cross tenants
        let south_study = study(&south(), "2.4", "b", &[]);
        assert!(!decide_with(&engine, &doc, Action::Read, &south_study, &grants).allowed);

        // a grant scoped to one study
        let tech = subject(&n, "tech", "technologist");
        let scoped = engine
            .break_glass_open(
                &tech,
                "Re-check of a trauma series from site b",
                None,
                BreakGlassScope::Study(Uid::parse("2.1").unwrap()),
            )
            .await
            .unwrap();
        assert_eq!(scoped.expires_at - scoped.created_at, 3_600_000);
        assert_eq!(scoped.audit_record("local").resource, "study:2.1");
        let tech_grants = engine.break_glass_active(&n, "tech").await.unwrap();
        assert!(decide_with(&engine, &tech, Action::Read, &foreign_order, &tech_grants).allowed);
        assert!(!decide_with(&engine, &tech, Action::Read, &other_study, &tech_grants).allowed);
        // closed early: gone at once (the cache is invalidated)
        assert!(
            engine
                .break_glass_close(&n, "tech", &scoped.id)
                .await
                .unwrap()
        );
        assert!(
            !engine
                .break_glass_close(&n, "tech", &scoped.id)
                .await
                .unwrap()
        );
        assert!(
            engine
                .break_glass_active(&n, "tech")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            scoped.close_record("local").action,
            "auth.break-glass.close"
        );

        // expiry: eleven minutes later the first grant no longer counts, even when a caller
        // still holds it
        engine.advance_clock(Duration::from_secs(660));
        assert!(
            engine
                .break_glass_active(&n, "dr.ref")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(!decide_with(&engine, &doc, Action::Read, &foreign_order, &grants).allowed);
    }
}

#[tokio::test]
async fn grant_cache_serves_repeated_lookups() {
    let (engine, index, _dir) = engine().await;
    let n = north();
    let doc = subject(&n, "dr.ref", "radiologist");
    let grant = engine
        .break_glass_open(
            &doc,
            "Night shift, PACS viewer down",
            None,
            BreakGlassScope::Tenant,
        )
        .await
        .unwrap();
    assert_eq!(
        engine.break_glass_active(&n, "dr.ref").await.unwrap().len(),
        1
    );
    // closed behind the engine's back (another node): still served from the cache…
    sqlx::query("UPDATE break_glass SET closed_at = 1")
        .execute(index.pool())
        .await
        .unwrap();
    assert_eq!(
        engine.break_glass_active(&n, "dr.ref").await.unwrap().len(),
        1
    );
    // …until the cache entry is older than its TTL
    engine.advance_clock(Duration::from_millis(GRANT_CACHE_TTL_MS as u64 + 1));
    assert!(
        engine
            .break_glass_active(&n, "dr.ref")
            .await
            .unwrap()
            .is_empty()
    );
    // a cached grant that expires is not served
    engine.advance_clock(Duration::from_secs(3600));
    assert!(!grant.covers(
        &doc,
        &Resource::Tenant(n.clone()),
        crate::now_millis() + 3_700_000
    ));
}

fn messages(r: Result<PolicyVersion, PolicyError>) -> Vec<String> {
    match r {
        Err(e @ PolicyError::Invalid { .. }) => {
            assert!(e.is_client_error());
            let PolicyError::Invalid { messages, tenant } = e else {
                unreachable!()
            };
            assert_eq!(tenant, north());
            assert!(!messages.is_empty());
            messages
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_policies_are_refused_and_the_old_ones_stay() {
    for (engine, _index, _dir) in engines("invalid").await {
        let n = north();
        let rad = subject(&n, "r", "radiologist");
        let s1 = study(&n, "3.1", "a", &[]);
        // first a valid custom set: radiologists may not export
        let custom = format!(
            "{DEFAULT_POLICIES}\n@id(\"no-export\")\nforbid (principal, action == Radris::Action::\"export\", resource);\n"
        );
        let v1 = engine.set_policies(&n, &custom, "admin").await.unwrap();
        assert_eq!(v1.number, 1);
        assert_eq!(v1.updated_by, "admin");

        // a syntax error: line and column of the problem
        let m = messages(
            engine
                .set_policies(&n, "permit (principal, action, resource", "admin")
                .await,
        );
        assert!(m[0].starts_with("line 1, column"), "{m:?}");
        // parses, but refers to an attribute the schema does not have
        let m = messages(
            engine
                .set_policies(
                    &n,
                    "@id(\"admin\") permit (principal in Radris::Role::\"admin\", action, resource);\n\
                     @id(\"bad\")\npermit (principal, action, resource)\nwhen { principal.nonexistent == \"x\" };",
                    "admin",
                )
                .await,
        );
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("line 4, column 8: ")
                && m[0].contains("policy `bad`")
                && m[0].contains("nonexistent"),
            "{m:?}"
        );
        // an action that does not exist, and an entity type that does not exist
        let m = messages(
            engine
                .set_policies(
                    &n,
                    "permit (principal in Radris::Role::\"admin\", action, resource);\n\
                     permit (principal, action == Radris::Action::\"fly\", resource);\n\
                     permit (principal is Radris::Robot, action, resource);",
                    "admin",
                )
                .await,
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m.iter().any(|m| m.contains("policy1")), "{m:?}");
        // policies that would lock everybody out, administrators included
        for text in ["", "// nothing", "forbid (principal, action, resource);"] {
            let m = messages(engine.set_policies(&n, text, "admin").await);
            assert!(m[0].contains("nobody could change them"), "{m:?}");
        }
        // duplicate @id, templates, oversized text
        let dup = "@id(\"x\") permit (principal in Radris::Role::\"admin\", action, resource);\n\
                   @id(\"x\") permit (principal, action == Radris::Action::\"read\", resource);";
        let m = messages(engine.set_policies(&n, dup, "admin").await);
        assert!(m[0].contains("`x`") && m[0].contains("unique"), "{m:?}");
        let template = "permit (principal == ?principal, action, resource);";
        let m = messages(engine.set_policies(&n, template, "admin").await);
        assert!(m[0].contains("templates"), "{m:?}");
        let huge = " ".repeat(MAX_POLICY_TEXT + 1);
        let m = messages(engine.set_policies(&n, &huge, "admin").await);
        assert!(m[0].contains("at most"), "{m:?}");
        // the message never carries internal detail, only what the author wrote
        let e = engine.validate(&n, "permit (").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the policies for tenant north are invalid")
        );

        // the custom set is still in force, unchanged
        let d = decide(&engine, &rad, Action::Export, &s1);
        assert!(!d.allowed);
        assert_eq!(d.reasons, vec!["no-export".to_owned()]);
        let doc = engine.policies(&n).await.unwrap();
        assert_eq!(doc.version.number, 1);
        assert_eq!(doc.text, custom);
        assert!(!doc.is_default);
        assert_eq!(engine.validate(&n, &custom).unwrap(), 15);
    }
}

#[tokio::test]
async fn policy_sets_are_per_tenant_persist_and_reset() {
    for (engine, index, _dir) in engines("tenants").await {
        let (n, s) = (north(), south());
        let rad_n = subject(&n, "r", "radiologist");
        let rad_s = subject(&s, "r", "radiologist");
        let study_n = study(&n, "4.1", "a", &[]);
        let study_s = study(&s, "4.2", "a", &[]);
        assert!(decide(&engine, &rad_n, Action::Export, &study_n).allowed);

        let custom = format!(
            "{DEFAULT_POLICIES}\n@id(\"no-export\")\nforbid (principal, action == Radris::Action::\"export\", resource);\n"
        );
        engine.set_policies(&n, &custom, "alice").await.unwrap();
        // in force at once for north, and only for north
        assert!(!decide(&engine, &rad_n, Action::Export, &study_n).allowed);
        assert!(decide(&engine, &rad_n, Action::Read, &study_n).allowed);
        assert!(decide(&engine, &rad_s, Action::Export, &study_s).allowed);
        let south_doc = engine.policies(&s).await.unwrap();
        assert!(south_doc.is_default);
        assert_eq!(south_doc.version.number, 0);
        assert_eq!(south_doc.text, DEFAULT_POLICIES);

        // a second engine on the same database (a restart) loads it
        let restarted = PolicyEngine::load(index.pool().clone()).await.unwrap();
        assert!(!decide(&restarted, &rad_n, Action::Export, &study_n).allowed);
        assert!(restarted.lockdowns().is_empty());

        // back to the defaults, as a new version
        let v = engine.reset_to_default(&n, "bob").await.unwrap();
        assert_eq!(v.number, 2);
        assert!(decide(&engine, &rad_n, Action::Export, &study_n).allowed);
        let doc = engine.policies(&n).await.unwrap();
        assert!(doc.is_default);
        assert_eq!(doc.version.updated_by, "bob");
        assert_eq!(doc.text, DEFAULT_POLICIES);
        // the other engine sees it after reload
        assert!(!decide(&restarted, &rad_n, Action::Export, &study_n).allowed);
        restarted.reload().await.unwrap();
        assert!(decide(&restarted, &rad_n, Action::Export, &study_n).allowed);
    }
}

#[tokio::test]
async fn stored_policies_that_no_longer_validate_lock_the_tenant_down() {
    let (engine, index, _dir) = engine().await;
    let east = TenantId::parse("east").unwrap();
    // as if written by an older release whose schema had this attribute
    sqlx::query(
        "INSERT INTO policies (tenant_id, version, policy_text, is_default, updated_at, updated_by) \
         VALUES ('east', 1, 'permit (principal, action, resource) when { principal.department == \"x\" };', 0, 0, 'old')",
    )
    .execute(index.pool())
    .await
    .unwrap();
    engine.reload().await.unwrap();
    let lockdowns = engine.lockdowns();
    assert_eq!(lockdowns.len(), 1);
    assert_eq!(lockdowns[0].0, east);
    assert!(lockdowns[0].1[0].contains("department"), "{lockdowns:?}");
    let admin = subject(&east, "adm", "admin");
    let rad = subject(&east, "r", "radiologist");
    let s1 = study(&east, "5.1", "a", &[]);
    assert!(
        decide(
            &engine,
            &admin,
            Action::Admin,
            &Resource::Tenant(east.clone())
        )
        .allowed
    );
    assert!(!decide(&engine, &admin, Action::Read, &s1).allowed);
    assert!(!decide(&engine, &rad, Action::Read, &s1).allowed);
    // other tenants are unaffected; storing valid policies lifts the lockdown
    assert!(
        decide(
            &engine,
            &subject(&north(), "r", "radiologist"),
            Action::Read,
            &study(&north(), "5.2", "a", &[])
        )
        .allowed
    );
    engine
        .set_policies(&east, DEFAULT_POLICIES, "adm")
        .await
        .unwrap();
    assert!(engine.lockdowns().is_empty());
    assert!(decide(&engine, &rad, Action::Read, &s1).allowed);
}

#[test]
fn subjects_and_line_columns() {
    let s = Subject::new(north(), "u", " admin, ,referring ", "a");
    assert_eq!(s.roles, vec!["admin".to_owned(), "referring".to_owned()]);
    assert!(Subject::new(north(), "u", "", "").roles.is_empty());
    assert_eq!(compiled::line_column("ab\ncd", 4), (2, 2));
    assert_eq!(compiled::line_column("é\né", 99), (2, 2));
    assert_eq!(compiled::line_column("éa", 1), (1, 1));
}

/// Not an assertion: how many decisions per second one core makes (printed; run with
/// `--nocapture`).
#[tokio::test]
async fn authorize_throughput() {
    let (engine, _index, _dir) = engine().await;
    let (studies, _) = matrix_resources();
    let subjects = [
        subject(&north(), "dr.ref", "referring"),
        subject(&north(), "tech", "technologist"),
        subject(&north(), "r", "radiologist"),
    ];
    let n = 20_000;
    let start = Instant::now();
    let mut allowed = 0;
    for i in 0..n {
        let s = &subjects[i % subjects.len()];
        let r = &studies[i % 4];
        allowed += usize::from(decide(&engine, s, Action::Read, r).allowed);
    }
    let elapsed = start.elapsed();
    println!(
        "authorize: {n} decisions in {elapsed:?}: {:.0}/s ({:.1} µs each), {allowed} allowed",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
}

#[tokio::test]
async fn ris_actions_follow_the_roles() {
    use Action::*;
    let ris = [
        ViewWorkflow,
        OrderEntry,
        Schedule,
        Reconcile,
        ReadCase,
        ConfigureWorkflow,
        Analytics,
    ];
    let expect: &[(&str, &[Action])] = &[
        ("admin", &ris),
        (
            "technologist",
            &[ViewWorkflow, OrderEntry, Schedule, Reconcile],
        ),
        ("radiologist", &[ViewWorkflow, ReadCase, Analytics]),
        ("referring", &[ViewWorkflow, OrderEntry]),
        ("auditor", &[Analytics]),
        ("service", &[]),
    ];
    for (engine, _index, _dir) in engines("ris_actions").await {
        let tenant = Resource::Tenant(north());
        for (role, allowed) in expect {
            let s = subject(&north(), "u", role);
            for action in ris {
                let d = decide(&engine, &s, action, &tenant);
                assert_eq!(d.allowed, allowed.contains(&action), "{role} {action}");
            }
        }
        // never across tenants
        let other = Resource::Tenant(TenantId::parse("south").unwrap());
        let admin = subject(&north(), "a", "admin");
        assert!(!decide(&engine, &admin, ViewWorkflow, &other).allowed);
    }
}
