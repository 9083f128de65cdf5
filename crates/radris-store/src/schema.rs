//! The index schema, one list of migrations that runs unchanged on SQLite and PostgreSQL
//! (portable types only: TEXT and BIGINT; no autoincrement; natural keys).

/// Each entry is one migration: statements separated by `;`. Never edit a released entry;
/// append a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: the archive
    r#"
CREATE TABLE tenants (
    tenant_id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE patients (
    tenant_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    issuer TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    patient_name_norm TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex TEXT NOT NULL,
    num_studies BIGINT NOT NULL,
    num_series BIGINT NOT NULL,
    num_instances BIGINT NOT NULL,
    header_json TEXT NOT NULL,
    PRIMARY KEY (tenant_id, patient_id)
);
CREATE INDEX patients_name ON patients (tenant_id, patient_name_norm);
CREATE TABLE studies (
    tenant_id TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    study_date TEXT NOT NULL,
    study_time TEXT NOT NULL,
    accession TEXT NOT NULL,
    study_id TEXT NOT NULL,
    description TEXT NOT NULL,
    referring_norm TEXT NOT NULL,
    modalities TEXT NOT NULL,
    num_series BIGINT NOT NULL,
    num_instances BIGINT NOT NULL,
    header_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, study_uid)
);
CREATE INDEX studies_patient ON studies (tenant_id, patient_id);
CREATE INDEX studies_date ON studies (tenant_id, study_date);
CREATE INDEX studies_accession ON studies (tenant_id, accession);
CREATE TABLE series (
    tenant_id TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    modality TEXT NOT NULL,
    series_number TEXT NOT NULL,
    description TEXT NOT NULL,
    body_part TEXT NOT NULL,
    series_date TEXT NOT NULL,
    num_instances BIGINT NOT NULL,
    header_json TEXT NOT NULL,
    PRIMARY KEY (tenant_id, series_uid)
);
CREATE INDEX series_study ON series (tenant_id, study_uid);
CREATE TABLE instances (
    tenant_id TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    instance_number TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    blob_path TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    source_ae TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    header_json TEXT NOT NULL,
    PRIMARY KEY (tenant_id, sop_uid)
);
CREATE INDEX instances_series ON instances (tenant_id, series_uid);
CREATE INDEX instances_study ON instances (tenant_id, study_uid);
CREATE UNIQUE INDEX instances_blob ON instances (blob_id)
"#,
    // 2: tables owned by radris-auth: API tokens (stored hashed) and the chained audit log
    r#"
CREATE TABLE api_tokens (
    token_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (token_sha256);
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    resource TEXT NOT NULL,
    detail TEXT NOT NULL,
    source TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_tenant_at ON audit_log (tenant_id, at)
"#,
    // 3: keyset paging of the study worklist (sort key, then the UID as tie-breaker)
    r#"
CREATE INDEX studies_date_key ON studies (tenant_id, study_date, study_time, study_uid);
CREATE INDEX studies_received_key ON studies (tenant_id, created_at, study_uid);
CREATE INDEX studies_accession_key ON studies (tenant_id, accession, study_uid)
"#,
    // 4: tables owned by radris-auth: user accounts (Argon2id hashes) and server-side sessions
    r#"
CREATE TABLE users (
    tenant_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    failed_logins BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    disabled BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_name)
);
CREATE TABLE sessions (
    session_sha256 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_name)
"#,
    // 5: TOTP second factor (seeds sealed with the master key) and single-use recovery codes
    r#"
ALTER TABLE users ADD COLUMN totp_sealed TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN totp_pending TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;
CREATE TABLE mfa_recovery (
    tenant_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    used_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_name, code_sha256)
)
"#,
    // 6: signed checkpoints of the audit chain (Ed25519 over the chain head)
    r#"
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    hash TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signature TEXT NOT NULL
)
"#,
    // 7: envelope encryption: per-tenant data keys, each wrapped by a master key (KEK)
    r#"
CREATE TABLE data_keys (
    key_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT NOT NULL
);
CREATE INDEX data_keys_tenant ON data_keys (tenant_id, created_at)
"#,
    // 8: tables owned by radris-auth: per-tenant Cedar policies (every version kept, the
    // highest in force; is_default = the shipped defaults) and break-glass grants
    // (study_uid '' = the whole tenant; closed_at 0 = not closed early)
    r#"
CREATE TABLE policies (
    tenant_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    policy_text TEXT NOT NULL,
    is_default BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
CREATE TABLE break_glass (
    grant_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    closed_at BIGINT NOT NULL
);
CREATE INDEX break_glass_user ON break_glass (tenant_id, user_name, expires_at)
"#,
    // 8: legal holds: a patient under hold cannot be erased or have data deleted
    r#"
CREATE TABLE legal_holds (
    tenant_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    placed_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, patient_id)
)
"#,
    // 10: tables owned by radris-auth: WebAuthn passkeys (second factor; public keys as COSE,
    // ids and keys base64url) and their pending ceremonies (single use: used_at 0 = open;
    // handle = SHA-256 of the challenge for registrations, of the mfa_ticket for sign-ins)
    r#"
CREATE TABLE webauthn_credentials (
    tenant_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    user_handle TEXT NOT NULL,
    public_key TEXT NOT NULL,
    algorithm BIGINT NOT NULL,
    sign_count BIGINT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, credential_id)
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (tenant_id, user_name);
CREATE TABLE webauthn_ceremonies (
    handle_sha256 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    purpose TEXT NOT NULL,
    challenge TEXT NOT NULL,
    user_handle TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at)
"#,
    // 11: Cedar attributes: the site (and, for referring physicians, the person name as
    // ReferringPhysicianName spells it; _norm = trimmed, upper-cased like referring_norm) of a
    // user account, and the site a study was acquired at ('' = unknown)
    r#"
ALTER TABLE users ADD COLUMN site TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN person_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN person_name_norm TEXT NOT NULL DEFAULT '';
CREATE INDEX users_person_name ON users (tenant_id, person_name_norm);
ALTER TABLE studies ADD COLUMN site TEXT NOT NULL DEFAULT ''
"#,
    // 12: the web viewer's annotation documents (measurements, key images), one JSON document
    // per user and study; version counts writes (optimistic concurrency), updated_at in
    // milliseconds since the Unix epoch. Removed with their study.
    r#"
CREATE TABLE annotations (
    tenant_id TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    user_name TEXT NOT NULL,
    document TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, study_uid, user_name)
)
"#,
    // 13: tables owned by radris-ris: the RIS. Times in milliseconds since the Unix epoch,
    // 0 = not yet. Patients are the RIS's demographic records (merged_into: '' or the id of
    // the record a duplicate was merged into); orders carry one column per workflow milestone
    // (for turnaround analytics) and their reading assignment; appointments are the
    // scheduled procedure steps the modality worklist answers from.
    r#"
CREATE TABLE ris_patients (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    issuer TEXT NOT NULL,
    name TEXT NOT NULL,
    name_norm TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex TEXT NOT NULL,
    merged_into TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX ris_patients_ident ON ris_patients (tenant_id, patient_id, issuer);
CREATE INDEX ris_patients_name ON ris_patients (tenant_id, name_norm);
CREATE TABLE ris_patient_links (
    tenant_id TEXT NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, a, b)
);
CREATE TABLE ris_procedures (
    tenant_id TEXT NOT NULL,
    code TEXT NOT NULL,
    scheme TEXT NOT NULL,
    name TEXT NOT NULL,
    modality TEXT NOT NULL,
    body_part TEXT NOT NULL,
    duration_min BIGINT NOT NULL,
    preparation TEXT NOT NULL,
    subspecialty TEXT NOT NULL,
    PRIMARY KEY (tenant_id, code)
);
CREATE TABLE ris_orders (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    accession TEXT NOT NULL,
    patient TEXT NOT NULL,
    procedure_code TEXT NOT NULL,
    priority TEXT NOT NULL,
    reason TEXT NOT NULL,
    referring TEXT NOT NULL,
    referring_norm TEXT NOT NULL,
    ordered_by TEXT NOT NULL,
    state TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    site TEXT NOT NULL,
    assigned_to TEXT NOT NULL,
    assigned_group TEXT NOT NULL,
    assignment_reason TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    escalated_at BIGINT NOT NULL,
    ordered_at BIGINT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    arrived_at BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    images_at BIGINT NOT NULL,
    preliminary_at BIGINT NOT NULL,
    final_at BIGINT NOT NULL,
    preliminary_by TEXT NOT NULL,
    final_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX ris_orders_accession ON ris_orders (tenant_id, accession);
CREATE INDEX ris_orders_state ON ris_orders (tenant_id, state, ordered_at);
CREATE INDEX ris_orders_patient ON ris_orders (tenant_id, patient);
CREATE INDEX ris_orders_study ON ris_orders (tenant_id, study_uid);
CREATE TABLE ris_order_history (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (tenant_id, order_id, seq)
);
CREATE TABLE ris_resources (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    modality TEXT NOT NULL,
    ae_title TEXT NOT NULL,
    station_name TEXT NOT NULL,
    site TEXT NOT NULL,
    subspecialties TEXT NOT NULL,
    user_name TEXT NOT NULL,
    open_from BIGINT NOT NULL,
    open_to BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE TABLE ris_shifts (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX ris_shifts_time ON ris_shifts (tenant_id, starts_at);
CREATE TABLE ris_appointments (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX ris_appointments_step ON ris_appointments (tenant_id, step_id);
CREATE INDEX ris_appointments_time ON ris_appointments (tenant_id, resource_id, starts_at);
CREATE INDEX ris_appointments_order ON ris_appointments (tenant_id, order_id);
CREATE TABLE ris_mpps (
    tenant_id TEXT NOT NULL,
    mpps_uid TEXT NOT NULL,
    order_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    station_ae TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    detail_json TEXT NOT NULL,
    PRIMARY KEY (tenant_id, mpps_uid)
);
CREATE TABLE ris_unmatched (
    tenant_id TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    resolved_at BIGINT NOT NULL,
    resolved_by TEXT NOT NULL,
    order_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, study_uid)
);
CREATE TABLE ris_settings (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
)
"#,
    // 14: tables owned by radris-report: report templates (IHE MRRT XHTML, versioned per
    // tenant), reports (one per order; the working content of a draft), the immutable signed
    // versions (canonical JSON, its SHA-256 and Ed25519 signature), and peer reviews.
    r#"
CREATE TABLE report_templates (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    title TEXT NOT NULL,
    xhtml TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id, version)
);
CREATE TABLE reports (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    template_id TEXT NOT NULL,
    template_version BIGINT NOT NULL,
    status TEXT NOT NULL,
    draft_json TEXT NOT NULL,
    draft_rev BIGINT NOT NULL,
    signed_versions BIGINT NOT NULL,
    author TEXT NOT NULL,
    critical TEXT NOT NULL,
    critical_at BIGINT NOT NULL,
    critical_ack_by TEXT NOT NULL,
    critical_ack_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX reports_order ON reports (tenant_id, order_id);
CREATE TABLE report_versions (
    tenant_id TEXT NOT NULL,
    report_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    status TEXT NOT NULL,
    canonical TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    signature TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signer TEXT NOT NULL,
    signed_at BIGINT NOT NULL,
    sr_sop_uid TEXT NOT NULL,
    PRIMARY KEY (tenant_id, report_id, version)
);
CREATE TABLE peer_reviews (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    report_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    score BIGINT NOT NULL,
    significance TEXT NOT NULL,
    comment TEXT NOT NULL,
    followup TEXT NOT NULL,
    assigned_at BIGINT NOT NULL,
    reviewed_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX peer_reviews_reviewer ON peer_reviews (tenant_id, reviewer, reviewed_at)
"#,
    // 15: person names compare without trailing empty components (`DOE^JOHN^^` is `DOE^JOHN`,
    // PS3.5 6.2; radris_core::person_name_key): the stored comparison forms follow. They are
    // upper-cased already; RTRIM/LTRIM with a character set mean the same on SQLite and
    // PostgreSQL.
    r#"
UPDATE patients SET patient_name_norm = LTRIM(RTRIM(patient_name_norm, '^= '), ' ');
UPDATE studies SET referring_norm = LTRIM(RTRIM(referring_norm, '^= '), ' ');
UPDATE users SET person_name_norm = LTRIM(RTRIM(person_name_norm, '^= '), ' ');
UPDATE ris_patients SET name_norm = LTRIM(RTRIM(name_norm, '^= '), ' ');
UPDATE ris_orders SET referring_norm = LTRIM(RTRIM(referring_norm, '^= '), ' ')
"#,
    // 16: blobs whose rows a delete has committed away, until their files are gone: a crash
    // in between no longer leaves files no row names (start-up finishes the removals)
    r#"
CREATE TABLE blob_removals (
    blob_path TEXT PRIMARY KEY,
    queued_at BIGINT NOT NULL
)
"#,
];
