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

fn signer() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9; 32])
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
        let log = AuditLog::start(pool.clone(), Some(signer())).await.unwrap();
        for i in 0..40 {
            log.record(rec(i));
        }
        log.flush().await;
        let ok = audit::verify(&pool, Some(&signer().verifying_key()))
            .await
            .unwrap();
        assert_eq!(ok.records, 40);
        assert_eq!(ok.broken, None);
        // a restarted writer continues the chain
        drop(log);
        let log = AuditLog::start(pool.clone(), Some(signer())).await.unwrap();
        log.record(rec(40));
        log.flush().await;
        assert_eq!(
            audit::verify(&pool, Some(&signer().verifying_key()))
                .await
                .unwrap()
                .broken,
            None
        );

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
        let r = audit::verify(&pool, Some(&signer().verifying_key()))
            .await
            .unwrap();
        assert_eq!(r.broken.as_ref().map(|b| b.0), Some(7), "{r:?}");
        assert!(r.broken.unwrap().1.contains("modified"));
        sqlx::query("UPDATE audit_log SET detail = 'PatientID=P1' WHERE seq = 7")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(
            audit::verify(&pool, Some(&signer().verifying_key()))
                .await
                .unwrap()
                .broken,
            None
        );

        // delete one
        sqlx::query("DELETE FROM audit_log WHERE seq = 12")
            .execute(&pool)
            .await
            .unwrap();
        let r = audit::verify(&pool, Some(&signer().verifying_key()))
            .await
            .unwrap();
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
        let r = audit::verify(&pool, Some(&signer().verifying_key()))
            .await
            .unwrap();
        assert_eq!(r.broken.map(|b| b.0), Some(3));
    }
}

#[tokio::test]
async fn users_login_lockout_and_sessions() {
    use radris_auth::{LoginFailure, Users};
    for (index, _dir) in indexes("users").await {
        let keys = std::sync::Arc::new(radris_auth::keys::MasterKey::from_bytes([3; 32]));
        let users = Users::new(index.pool().clone(), keys).unwrap();
        let t = TenantId::parse("alpha").unwrap();
        let pw = "moonlit ferry over quiet harbour";
        assert!(!users.any_user(&t).await.unwrap());
        assert!(
            users
                .create(&t, "ann", "password123", "admin")
                .await
                .is_err()
        );
        assert!(users.create(&t, "ann", pw, "wizard").await.is_err());
        users.create(&t, "ann", pw, "radiologist").await.unwrap();
        assert!(users.create(&t, "ann", pw, "radiologist").await.is_err());
        assert!(users.any_user(&t).await.unwrap());
        let p = users.login(&t, "ann", pw, None).await.unwrap().unwrap();
        assert!(p.can(Scope::Read) && p.can(Scope::Write) && !p.can(Scope::Admin));
        // another tenant does not know ann
        let b = TenantId::parse("beta").unwrap();
        assert_eq!(
            users.login(&b, "ann", pw, None).await.unwrap(),
            Err(LoginFailure::BadCredentials)
        );
        // sessions
        let secret = users.open_session(&p).await.unwrap();
        assert_eq!(
            users
                .session(&secret, Duration::from_secs(60))
                .await
                .unwrap(),
            p
        );
        assert!(
            users
                .session("rds_bogus", Duration::from_secs(60))
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            users
                .session(&secret, Duration::from_millis(10))
                .await
                .is_err(),
            "idle timeout"
        );
        users.close_session(&secret).await.unwrap();
        assert!(
            users
                .session(&secret, Duration::from_secs(60))
                .await
                .is_err()
        );
        // five wrong passwords lock the account, even for the right password
        for _ in 0..5 {
            assert_eq!(
                users
                    .login(&t, "ann", "wrong password here", None)
                    .await
                    .unwrap(),
                Err(LoginFailure::BadCredentials)
            );
        }
        assert_eq!(
            users.login(&t, "ann", pw, None).await.unwrap(),
            Err(LoginFailure::Locked)
        );
        // the lock runs out: one more mistake starts a fresh count instead of relocking
        sqlx::query("UPDATE users SET locked_until = 1 WHERE user_name = 'ann'")
            .execute(index.pool())
            .await
            .unwrap();
        assert_eq!(
            users
                .login(&t, "ann", "wrong password here", None)
                .await
                .unwrap(),
            Err(LoginFailure::BadCredentials)
        );
        let ok = users.login(&t, "ann", pw, None).await.unwrap();
        assert!(ok.is_ok(), "{ok:?}");
    }
}

#[tokio::test]
async fn totp_second_factor_replay_and_recovery() {
    use radris_auth::{LoginFailure, Users};
    for (index, _dir) in indexes("totp").await {
        let keys = std::sync::Arc::new(radris_auth::keys::MasterKey::from_bytes([4; 32]));
        let users = Users::new(index.pool().clone(), keys).unwrap();
        let t = TenantId::parse("alpha").unwrap();
        let pw = "moonlit ferry over quiet harbour";
        users.create(&t, "bob", pw, "radiologist").await.unwrap();
        let e = users.totp_enrol(&t, "bob").await.unwrap();
        assert!(e.uri.starts_with("otpauth://totp/RADRIS:bob?secret="));
        // the seed is stored sealed, never in clear
        let stored: String =
            sqlx::query_scalar("SELECT totp_pending FROM users WHERE user_name = 'bob'")
                .fetch_one(index.pool())
                .await
                .unwrap();
        assert!(stored.starts_with("v1:") && !stored.contains(&e.secret_base32));
        let seed = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap();
        let totp = totp_rs::Builder::new()
            .with_secret(seed.as_ref().to_vec())
            .build()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(users.totp_confirm(&t, "bob", "000000x").await.is_err());
        // enrolment consumes the current step; the next login uses the next one
        let codes = users
            .totp_confirm(&t, "bob", &totp.generate(now).to_string())
            .await
            .unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(
            users.login(&t, "bob", pw, None).await.unwrap(),
            Err(LoginFailure::SecondFactorRequired)
        );
        // the code just used for enrolment is a replay now
        assert_eq!(
            users
                .login(&t, "bob", pw, Some(&totp.generate(now).to_string()))
                .await
                .unwrap(),
            Err(LoginFailure::BadSecondFactor)
        );
        let next = totp.generate(now + 30).to_string();
        assert!(
            users
                .login(&t, "bob", pw, Some(&next))
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            users.login(&t, "bob", pw, Some(&next)).await.unwrap(),
            Err(LoginFailure::BadSecondFactor),
            "a TOTP code works once"
        );
        // a recovery code works once
        assert!(
            users
                .login(&t, "bob", pw, Some(&codes[0]))
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            users.login(&t, "bob", pw, Some(&codes[0])).await.unwrap(),
            Err(LoginFailure::BadSecondFactor)
        );
    }
}

#[tokio::test]
async fn signed_checkpoints_catch_truncation_and_forgery() {
    for (index, _dir) in indexes("ckpt").await {
        let pool = index.pool().clone();
        let log = AuditLog::start(pool.clone(), Some(signer())).await.unwrap();
        for i in 0..10 {
            log.record(rec(i));
        }
        log.flush().await;
        let key = signer().verifying_key();
        let ok = audit::verify(&pool, Some(&key)).await.unwrap();
        assert_eq!((ok.records, ok.checkpoints, ok.broken), (10, 1, None));
        // another server's key does not verify these checkpoints
        let other = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        assert!(
            audit::verify(&pool, Some(&other))
                .await
                .unwrap()
                .broken
                .is_some()
        );
        // cutting off the newest records leaves a valid chain, but not the checkpoint
        sqlx::query("DELETE FROM audit_log WHERE seq >= 9")
            .execute(&pool)
            .await
            .unwrap();
        let r = audit::verify(&pool, Some(&key)).await.unwrap();
        let (seq, why) = r.broken.unwrap();
        assert_eq!(seq, 9);
        assert!(why.contains("cut short"), "{why}");
        // a forged checkpoint over the shorter chain fails its signature
        sqlx::query("UPDATE audit_checkpoints SET seq = 8, hash = (SELECT hash FROM audit_log WHERE seq = 8)")
            .execute(&pool)
            .await
            .unwrap();
        let r = audit::verify(&pool, Some(&key)).await.unwrap();
        assert!(r.broken.unwrap().1.contains("does not verify"));
    }
}
