//! Tokens and the audit chain on a real index database (SQLite; PostgreSQL too when
//! `RADRIS_TEST_POSTGRES_URL` is set).

use std::time::Duration;

use radris_auth::audit::{self, AuditQuery};
use radris_auth::{AuditLog, AuthError, Scope, Scopes, Tokens};
use radris_core::TenantId;
use radris_core::audit::{AuditRecord, AuditSink, Outcome};
use radris_store::Index;

async fn indexes(test: &str) -> Vec<(Index, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("index.db").display());
    let mut out = vec![(Index::open(&url).await.unwrap(), Some(dir))];
    if let Ok(pg) = std::env::var("RADRIS_TEST_POSTGRES_URL") {
        let name = format!("radris_t_auth_{test}_{}", std::process::id());
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
        out.push((Index::open(&format!("{base}/{name}")).await.unwrap(), None));
    }
    out
}

#[tokio::test]
async fn tokens_authenticate_expire_and_revoke() {
    for (index, _dir) in indexes("tokens").await {
        let tokens = Tokens::new(index.pool().clone());
        let a = TenantId::parse("alpha").unwrap();
        let (id, secret) = tokens
            .create(&a, "alice", Scopes::of(&[Scope::Read]), None)
            .await
            .unwrap();
        let p = tokens.authenticate(&secret).await.unwrap();
        assert_eq!(p.tenant, a);
        assert_eq!(p.user, "alice");
        assert!(p.can(Scope::Read) && !p.can(Scope::Write));
        // a forged token of the right shape, and garbage
        let forged = format!("rdx_{}", "0".repeat(64));
        assert!(matches!(
            tokens.authenticate(&forged).await,
            Err(AuthError::Unauthenticated)
        ));
        assert!(tokens.authenticate("Bearer x").await.is_err());
        // another tenant cannot revoke it
        let b = TenantId::parse("beta").unwrap();
        assert!(!tokens.revoke(&b, &id).await.unwrap());
        assert!(tokens.authenticate(&secret).await.is_ok());
        assert!(tokens.revoke(&a, &id).await.unwrap());
        assert!(tokens.authenticate(&secret).await.is_err());
        assert!(tokens.list(&a).await.unwrap()[0].revoked);
        // expiry
        let (_, short) = tokens
            .create(&a, "bob", Scopes::all(), Some(Duration::from_millis(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(tokens.authenticate(&short).await.is_err());
        assert!(tokens.create(&a, "", Scopes::all(), None).await.is_err());
    }
}

fn rec(i: usize) -> AuditRecord {
    AuditRecord {
        tenant: if i.is_multiple_of(2) { "alpha" } else { "beta" }.into(),
        actor: format!("token:{i}"),
        action: "dicomweb.qido.studies".into(),
        outcome: Outcome::Success,
        resource: format!("study 1.2.3.{i}"),
        detail: "PatientID=P1".into(),
        source: "127.0.0.1:1234".into(),
    }
}

#[tokio::test]
async fn audit_chain_detects_edit_delete_and_reorder() {
    for (index, _dir) in indexes("chain").await {
        let pool = index.pool().clone();
        let log = AuditLog::start(pool.clone()).await.unwrap();
        for i in 0..40 {
            log.record(rec(i));
        }
        log.flush().await;
        let ok = audit::verify(&pool).await.unwrap();
        assert_eq!(ok.records, 40);
        assert_eq!(ok.broken, None);
        // a restarted writer continues the chain
        drop(log);
        let log = AuditLog::start(pool.clone()).await.unwrap();
        log.record(rec(40));
        log.flush().await;
        assert_eq!(audit::verify(&pool).await.unwrap().broken, None);

        let found = audit::search(
            &pool,
            "alpha",
            &AuditQuery {
                action_prefix: Some("dicomweb.".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(found.len(), 21);
        assert!(found.iter().all(|r| r.tenant == "alpha"));

        // edit a record directly in the database
        sqlx::query("UPDATE audit_log SET detail = 'PatientID=P2' WHERE seq = 7")
            .execute(&pool)
            .await
            .unwrap();
        let r = audit::verify(&pool).await.unwrap();
        assert_eq!(r.broken.as_ref().map(|b| b.0), Some(7), "{r:?}");
        assert!(r.broken.unwrap().1.contains("modified"));
        sqlx::query("UPDATE audit_log SET detail = 'PatientID=P1' WHERE seq = 7")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(audit::verify(&pool).await.unwrap().broken, None);

        // delete one
        sqlx::query("DELETE FROM audit_log WHERE seq = 12")
            .execute(&pool)
            .await
            .unwrap();
        let r = audit::verify(&pool).await.unwrap();
        assert_eq!(r.broken.map(|b| b.0), Some(13));

        // reorder: swap two records' sequence numbers
        sqlx::query("UPDATE audit_log SET seq = 1000 WHERE seq = 3")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET seq = 3 WHERE seq = 4")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET seq = 4 WHERE seq = 1000")
            .execute(&pool)
            .await
            .unwrap();
        let r = audit::verify(&pool).await.unwrap();
        assert_eq!(r.broken.map(|b| b.0), Some(3));
    }
}
