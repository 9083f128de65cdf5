//! Command line: `serve`, `import`, `demo`, `generate`, `admin`, `dicom`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use radris_core::TenantId;
use radris_core::config::Config;
use radris_dimse::scu::{self, ScuOptions};

#[derive(Parser)]
#[command(
    name = "radris",
    version,
    about = "RADRIS: radiology archive (PACS) and information system"
)]
pub struct Cli {
    /// Log as JSON lines (for log shippers). `--log-json=false` or `RADRIS_LOG_JSON=0` to
    /// turn it off; booleans take true/false, 1/0, yes/no, on/off.
    #[arg(long, global = true, env = "RADRIS_LOG_JSON", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub log_json: Option<bool>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the archive: DIMSE and HTTP.
    Serve(ServeArgs),
    /// Import DICOM files or folders (recursive, parallel, resumable).
    Import(ImportArgs),
    /// Write the synthetic demo data set into an archive.
    Demo(DemoArgs),
    /// Generate synthetic DICOM files (tests and benchmarks).
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Administration.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// De-identified copies of DICOM files (PS3.15 Annex E basic profile and its options).
    Deidentify(DeidentifyArgs),
    /// DIMSE service user for administrators: echo, store, find, move, get.
    #[command(subcommand)]
    Dicom(DicomCommand),
    /// A picture of an archived series (MPR, slab, curved reformat or volume rendering) as a
    /// PNG or JPEG file, for scripting and batch snapshots.
    Render(Box<RenderArgs>),
}

#[derive(Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Series Instance UID.
    #[arg(long)]
    pub series: String,
    /// Study Instance UID (default: looked up from the series).
    #[arg(long)]
    pub study: Option<String>,
    #[arg(long, value_enum, default_value = "mpr")]
    pub mode: crate::render::Mode,
    #[command(flatten)]
    pub view: crate::render::ViewParams,
    /// Output file; `.jpg`/`.jpeg` writes JPEG unless --format says otherwise.
    #[arg(long)]
    pub out: PathBuf,
}

/// Options every archive command shares; each also comes from the TOML file and `RADRIS_*`.
#[derive(Args, Clone)]
pub struct ArchiveArgs {
    /// TOML configuration file.
    #[arg(long, env = "RADRIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (blobs, staging, SQLite index).
    #[arg(long, env = "RADRIS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Index database URL: sqlite://… or postgres://… (default: SQLite in the data directory).
    #[arg(long, env = "RADRIS_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub archive: ArchiveArgs,
    #[arg(long, env = "RADRIS_DICOM_LISTEN")]
    pub dicom_listen: Option<SocketAddr>,
    #[arg(long, env = "RADRIS_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Our AE title.
    #[arg(long, env = "RADRIS_AE_TITLE")]
    pub ae_title: Option<String>,
    /// Accept any calling AE into the `default` tenant (off unless asked for or in demo mode).
    /// `--open-ae=false` (or `RADRIS_OPEN_AE=false`) overrides `open_ae = true` in the file.
    #[arg(long, env = "RADRIS_OPEN_AE", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub open_ae: Option<bool>,
    /// Store the demo studies not stored yet (and the RIS day), and accept any calling AE.
    #[arg(long, env = "RADRIS_DEMO", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: Option<bool>,
    /// Serve HTTP requests without credentials as an anonymous read/write principal of the
    /// `default` tenant. For benchmarks and closed test networks only.
    #[arg(long, env = "RADRIS_HTTP_ANONYMOUS", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub http_anonymous: Option<bool>,
    /// PEM certificate chain for TLS (HTTP and DICOM).
    #[arg(long, env = "RADRIS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, env = "RADRIS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTP over TLS (HTTPS with HSTS) on --http-listen.
    #[arg(long, env = "RADRIS_HTTP_TLS", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub http_tls: Option<bool>,
    /// Open a DICOM TLS listener here (PS3.15 Annex B; 2762 by convention).
    #[arg(long, env = "RADRIS_DICOM_TLS_LISTEN")]
    pub dicom_tls_listen: Option<SocketAddr>,
    /// The built web application to serve at / (default: web/dist here or beside the
    /// checkout the binary was built in).
    #[arg(long, env = "RADRIS_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct DeidentifyArgs {
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Folder for the de-identified files (named by their new SOP Instance UID).
    #[arg(long)]
    pub out: PathBuf,
    /// File holding the secret salt (at least 16 bytes). Without it, the salt of --tenant and
    /// --project under the archive's master key: the same pseudonyms and UIDs as the API.
    #[arg(long)]
    pub salt_file: Option<PathBuf>,
    #[arg(long, default_value = "default")]
    pub tenant: String,
    #[arg(long, default_value = "default")]
    pub project: String,
    /// Retain Longitudinal Temporal Information with Modified Dates (dates shifted per patient).
    #[arg(long)]
    pub retain_dates: bool,
    #[arg(long, allow_hyphen_values = true)]
    pub date_shift_days: Option<i32>,
    /// Clean Descriptors option: descriptions kept present but empty.
    #[arg(long)]
    pub clean_descriptors: bool,
    /// Retain Patient Characteristics option.
    #[arg(long)]
    pub retain_patient_characteristics: bool,
    /// Burned-in text to blank, as x,y,width,height (repeatable).
    #[arg(long = "region", value_parser = parse_region)]
    pub regions: Vec<crate::deid::RegionDto>,
    #[arg(long)]
    pub patient_name: Option<String>,
    #[arg(long)]
    pub patient_id: Option<String>,
    /// Also write instances that still declare burned-in annotation.
    #[arg(long)]
    pub include_burned_in: bool,
    /// Files or folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

fn parse_region(s: &str) -> Result<crate::deid::RegionDto, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("region {s:?}: expected x,y,width,height"))?;
    match v.as_slice() {
        [x, y, width, height] => Ok(crate::deid::RegionDto {
            x: *x,
            y: *y,
            width: *width,
            height: *height,
        }),
        _ => Err(format!("region {s:?}: expected x,y,width,height")),
    }
}

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Tenant to import into.
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Parallel workers (default: number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Files or folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub archive: ArchiveArgs,
}

#[derive(Subcommand)]
pub enum GenerateCommand {
    /// A single-series chest CT as Part-10 files.
    Ct {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 100)]
        slices: u32,
        #[arg(long, default_value_t = 512)]
        rows: u16,
        #[arg(long, default_value_t = 512)]
        cols: u16,
        #[arg(long, default_value = "1")]
        seed: String,
    },
    /// An analytic test phantom with known geometry as Part-10 files: sphere, beads, tube,
    /// calcium, dynamic (4D), or registration (a CT and a shifted MR-like series of one study).
    Phantom {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "1")]
        seed: String,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Re-hash every stored object and check that index and blobs agree.
    Verify {
        #[command(flatten)]
        archive: ArchiveArgs,
    },
    /// Create the first administrator of a tenant (password from a file or standard input).
    Bootstrap {
        #[command(flatten)]
        archive: ArchiveArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// File holding the password (first line); without it the password is read from
        /// standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// API tokens for scripts and integrations (sent as `Authorization: Bearer`).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Envelope encryption keys: list, rotate a tenant's data key, re-wrap after a master
    /// key change.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Delete a study, series or instance (index and blobs together).
    Delete {
        #[command(flatten)]
        archive: ArchiveArgs,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long, value_parser = ["study", "series", "instance"])]
        level: String,
        uid: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// A tenant's data keys (ids, master key id, created, retired; never key material).
    List {
        #[command(flatten)]
        archive: ArchiveArgs,
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Make a new active data key for a tenant; with --reencrypt, move every blob to it.
    /// Safe while the server runs: old keys stay readable.
    Rotate {
        #[command(flatten)]
        archive: ArchiveArgs,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        reencrypt: bool,
    },
    /// Re-wrap every data key under the current master key.
    Rewrap {
        #[command(flatten)]
        archive: ArchiveArgs,
    },
    /// Replace the master key file with a new one (the old one is kept under
    /// keys/previous/ to open what it sealed) and re-wrap every data key under the new one.
    /// Safe while the server runs; restart it to make it wrap new keys with the new key.
    RotateMaster {
        #[command(flatten)]
        archive: ArchiveArgs,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (it is shown only this once).
    Create {
        #[command(flatten)]
        archive: ArchiveArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// Comma separated: read, write, delete, admin.
        #[arg(long, default_value = "read,write")]
        scope: String,
        /// Lifetime in days (default: no expiry).
        #[arg(long)]
        days: Option<u64>,
    },
    /// List a tenant's tokens (never their secrets).
    List {
        #[command(flatten)]
        archive: ArchiveArgs,
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a token.
    Revoke {
        #[command(flatten)]
        archive: ArchiveArgs,
        #[arg(long)]
        tenant: String,
        token_id: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's hash chain and report the first broken record.
    Verify {
        #[command(flatten)]
        archive: ArchiveArgs,
    },
}

#[derive(Args)]
pub struct PeerArgs {
    /// Our (calling) AE title.
    #[arg(long = "aet", default_value = "RADRISSCU")]
    pub calling: String,
    /// The peer's (called) AE title.
    #[arg(long = "aec", default_value = "RADRIS")]
    pub called: String,
    pub host: String,
    pub port: u16,
    /// Seconds to wait for the peer: for its answer to the association request, and then for
    /// each message.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
}

#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub peer: PeerArgs,
    /// PATIENT, STUDY, SERIES or IMAGE.
    #[arg(long, default_value = "STUDY")]
    pub level: String,
    /// Use the Patient Root model (default: Study Root).
    #[arg(long)]
    pub patient_root: bool,
    /// Keys as Keyword=value (value may be empty): -k PatientName=DOE* -k StudyDate
    #[arg(short = 'k', long = "key")]
    pub keys: Vec<String>,
}

#[derive(Subcommand)]
pub enum DicomCommand {
    Echo(PeerArgs),
    Store {
        #[command(flatten)]
        peer: PeerArgs,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    Find(QueryArgs),
    Move {
        #[command(flatten)]
        query: QueryArgs,
        #[arg(long)]
        dest: String,
    },
    Get {
        #[command(flatten)]
        query: QueryArgs,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn init_tracing(json: bool) {
    // dicom-ul's association requestor logs "Received TLS response to non-TLS request!" at
    // ERROR whenever a peer sends nothing before the read timeout; our own error says what
    // happened (a timeout, a refusal), so its requestor's log is off unless RADRIS_LOG asks
    let filter = tracing_subscriber::EnvFilter::try_from_env("RADRIS_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,dicom_ul::association::client=off")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Layer the TOML file and the flags over the defaults.
pub fn load_config(a: &ArchiveArgs) -> anyhow::Result<Config> {
    let mut cfg = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(d) = &a.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(u) = &a.database_url {
        cfg.database_url = Some(u.clone());
    }
    Ok(cfg)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Open the archive as the server does (with crash recovery).
async fn open_archive(cfg: &Config) -> anyhow::Result<radris_store::Archive> {
    open_archive_as(cfg, true).await
}

/// Open the archive beside a server that may be running (no crash recovery), making it if
/// there is none yet (import, demo, bootstrap, tokens).
async fn attach_archive(cfg: &Config) -> anyhow::Result<radris_store::Archive> {
    open_archive_as(cfg, false).await
}

/// [`attach_archive`] for commands that inspect or change an archive that must already
/// exist (verify, delete, audit, keys): a mistyped `--data-dir` is an error, not a new, empty
/// archive with a new master key that then checks out clean.
async fn existing_archive(cfg: &Config) -> anyhow::Result<radris_store::Archive> {
    archive_exists(cfg)?;
    open_archive_as(cfg, false).await
}

fn archive_exists(cfg: &Config) -> anyhow::Result<()> {
    if !cfg.data_dir.join("blobs").is_dir() {
        anyhow::bail!(
            "no archive in {}: it has no blobs/ folder (check --data-dir, RADRIS_DATA_DIR or data_dir in the configuration file)",
            cfg.data_dir.display()
        );
    }
    Ok(())
}

async fn open_archive_as(cfg: &Config, recover: bool) -> anyhow::Result<radris_store::Archive> {
    let events = radris_core::events::EventBus::default();
    let url = cfg.database_url.as_deref();
    let kek = master_kek(cfg)?;
    let archive = if recover {
        radris_store::Archive::open(&cfg.data_dir, url, cfg.duplicate_policy, events, kek).await
    } else {
        radris_store::Archive::attach(&cfg.data_dir, url, cfg.duplicate_policy, events, kek).await
    }
    .with_context(|| format!("opening the archive in {}", cfg.data_dir.display()))?;
    let dir = cfg.ae_directory()?;
    archive.ensure_tenants(&dir.tenants).await?;
    Ok(archive)
}

/// `radris generate`: every instance of `specs` as `IMG00001.dcm`, … in `out`; the count.
fn write_studies(specs: &[radris_dicom::synth::StudySpec], out: &Path) -> anyhow::Result<u32> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut k = 0u32;
    for spec in specs {
        spec.generate(|g| {
            k += 1;
            let path = out.join(format!("IMG{k:05}.dcm"));
            std::fs::write(&path, &g.part10).with_context(|| format!("writing {}", path.display()))
        })?;
    }
    Ok(k)
}

/// `radris render`: the same pictures as `/api/v1/render/…`, from the archive on disk.
fn render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    use crate::render as r;
    let cfg = load_config(&args.archive)?;
    let tenant = TenantId::parse(&args.tenant)?;
    let mut view = args.view;
    if view.format.is_none() {
        let ext = args
            .out
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        view.format = Some(
            if ext == "jpg" || ext == "jpeg" {
                "jpeg"
            } else {
                "png"
            }
            .into(),
        );
    }
    let (format, _) = r::format_of(&view)?;
    let rt = runtime()?;
    let (bytes, geometry, warnings) = rt.block_on(async {
        let archive = existing_archive(&cfg).await?;
        let study = match args.study {
            Some(s) => s,
            None => archive
                .index()
                .study_access_of_series(&tenant, &args.series)
                .await?
                .map(|a| a.study_uid)
                .with_context(|| {
                    format!("no series {} in tenant {}", args.series, tenant.as_str())
                })?,
        };
        let volumes = r::Volumes::new(usize::MAX);
        let series = volumes
            .series(&archive, &tenant, &study, &args.series)
            .await?;
        let pic = r::draw(&series, args.mode, &view)?;
        let geometry = serde_json::to_string(&pic.geometry())?;
        anyhow::Ok((
            r::encode(&pic, format)?,
            geometry,
            r::warnings(&series.report),
        ))
    })?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    println!("{} {geometry}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// The master key that wraps the blob data keys: `RADRIS_MASTER_KEY` or the key file.
fn master_kek(cfg: &Config) -> anyhow::Result<Arc<dyn radris_core::keys::KeyWrapper>> {
    use radris_auth::keys::KeyProvider;
    let master = radris_auth::keys::MasterKey::load_or_create(&cfg.data_dir)?;
    Ok(Arc::new(
        radris_store::crypto::MemoryKek::new(master.master_key()?)
            .with_previous(master.previous().iter().copied()),
    ))
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let mut cfg = load_config(&args.archive)?;
            if let Some(a) = args.dicom_listen {
                cfg.dicom_listen = a;
            }
            if let Some(a) = args.http_listen {
                cfg.http_listen = a;
            }
            if let Some(ae) = args.ae_title {
                cfg.ae_title = ae;
            }
            let demo = args.demo.unwrap_or(false);
            // demo mode opens the archive unless --open-ae=false says otherwise
            match args.open_ae {
                Some(open) => cfg.open_ae = open,
                None if demo => cfg.open_ae = true,
                None => {}
            }
            if let Some(anonymous) = args.http_anonymous {
                cfg.http.anonymous = anonymous;
            }
            if let Some(p) = args.tls_cert {
                cfg.tls.cert_file = Some(p);
            }
            if let Some(p) = args.tls_key {
                cfg.tls.key_file = Some(p);
            }
            if let Some(tls) = args.http_tls {
                cfg.tls.http = tls;
            }
            if let Some(a) = args.dicom_tls_listen {
                cfg.tls.dicom_listen = Some(a);
            }
            if let Some(d) = args.web_dir {
                cfg.http.web_dir = Some(d);
            }
            cfg.tls.validate()?;
            let rt = runtime()?;
            rt.block_on(async move {
                let archive = open_archive(&cfg).await?;
                if demo {
                    load_demo(&archive).await?;
                    demo_token(&cfg, &archive).await?;
                    demo_user(&cfg, &archive).await?;
                    demo_day(&cfg, &archive).await?;
                }
                crate::serve::serve(cfg, archive, crate::serve::shutdown_signal()).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => {
            let cfg = load_config(&args.archive)?;
            let tenant = TenantId::parse(&args.tenant)?;
            let rt = runtime()?;
            let archive = rt.block_on(attach_archive(&cfg))?;
            let summary = crate::import::import(&archive, &rt, tenant, &args.paths, args.jobs)?;
            Ok(if summary.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Demo(args) => {
            let cfg = load_config(&args.archive)?;
            let rt = runtime()?;
            rt.block_on(async {
                let archive = attach_archive(&cfg).await?;
                load_demo(&archive).await?;
                demo_day(&cfg, &archive).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deidentify(args) => {
            let salt = match &args.salt_file {
                Some(f) => {
                    let s = std::fs::read(f)
                        .with_context(|| format!("reading the salt file {}", f.display()))?;
                    let s = s.trim_ascii().to_vec();
                    if s.len() < radris_dicom::deid::MIN_SALT_LEN {
                        bail!(
                            "the salt file holds {} bytes; at least {} are needed",
                            s.len(),
                            radris_dicom::deid::MIN_SALT_LEN
                        );
                    }
                    s
                }
                None => {
                    let cfg = load_config(&args.archive)?;
                    let master = radris_auth::keys::MasterKey::load_or_create(&cfg.data_dir)?;
                    let key = crate::deid::key_from_master(&master)?;
                    crate::deid::salt(&key, TenantId::parse(&args.tenant)?.as_str(), &args.project)
                }
            };
            let request = crate::deid::DeidRequest {
                project: Some(args.project.clone()),
                retain_dates: args.retain_dates,
                date_shift_days: args.date_shift_days,
                clean_descriptors: args.clean_descriptors,
                retain_patient_characteristics: args.retain_patient_characteristics,
                burned_in_regions: args.regions.clone(),
                patient_name: args.patient_name.clone(),
                patient_id: args.patient_id.clone(),
                include_burned_in: args.include_burned_in,
            };
            let (written, refused) = crate::deid::run_cli(&args.paths, &args.out, &request, salt)?;
            println!("deidentify: {written} written, {refused} refused");
            Ok(if refused == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Generate(GenerateCommand::Ct {
            out,
            slices,
            rows,
            cols,
            seed,
        }) => {
            let spec = radris_dicom::synth::ct_study(slices, rows, cols, &seed);
            let k = write_studies(std::slice::from_ref(&spec), &out)?;
            println!(
                "generated {k} instances of study {} in {}",
                spec.study_uid(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(GenerateCommand::Phantom { kind, out, seed }) => {
            use radris_dicom::synth::test_phantoms::{TestPhantom, registration_pair};
            let specs = if kind == "registration" {
                let (ct, mut mr) = registration_pair(&seed);
                // one study: the MR becomes the CT study's second series
                mr.seed.clone_from(&ct.seed);
                mr.date.clone_from(&ct.date);
                for s in &mut mr.series {
                    s.number = 2;
                }
                vec![ct, mr]
            } else {
                let p = TestPhantom::ALL
                    .into_iter()
                    .find(|p| p.name() == kind)
                    .with_context(|| {
                        format!(
                            "unknown phantom {kind:?}: sphere, beads, tube, calcium, dynamic or registration"
                        )
                    })?;
                vec![p.study(&seed)]
            };
            let k = write_studies(&specs, &out)?;
            println!(
                "generated {k} instances of the {kind} phantom in {}",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::Verify { archive }) => {
            let cfg = load_config(&archive)?;
            let rt = runtime()?;
            let report = rt.block_on(async {
                existing_archive(&cfg)
                    .await?
                    .verify()
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            for (p, why) in &report.mismatches {
                println!("MISMATCH {p}: {why}");
            }
            for p in &report.missing {
                println!("MISSING {p}");
            }
            for p in &report.orphans {
                println!("ORPHAN {p}");
            }
            for p in &report.staged {
                println!("STAGED {p}");
            }
            for id in &report.unpublished {
                println!(
                    "UNPUBLISHED {id} (indexed; read from staging until the next start publishes it)"
                );
            }
            println!(
                "verify: {} objects ok, {} mismatches, {} missing, {} orphans",
                report.ok,
                report.mismatches.len(),
                report.missing.len(),
                report.orphans.len() + report.staged.len()
            );
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Admin(AdminCommand::Delete {
            archive,
            tenant,
            level,
            uid,
        }) => {
            let cfg = load_config(&archive)?;
            let tenant = TenantId::parse(&tenant)?;
            let level = match level.as_str() {
                "study" => radris_store::DeleteLevel::Study,
                "series" => radris_store::DeleteLevel::Series,
                _ => radris_store::DeleteLevel::Instance,
            };
            let rt = runtime()?;
            let n = rt.block_on(async {
                existing_archive(&cfg)
                    .await?
                    .delete(&tenant, level, &uid)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            println!("deleted {n} instances");
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(AdminCommand::Token(cmd)) => token(cmd),
        Command::Admin(AdminCommand::Keys(cmd)) => keys(cmd),
        Command::Admin(AdminCommand::Bootstrap {
            archive,
            tenant,
            user,
            password_file,
        }) => {
            let cfg = load_config(&archive)?;
            let tenant = TenantId::parse(&tenant)?;
            let password = match password_file {
                Some(f) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?,
                None => {
                    eprint!("password for {user}@{tenant}: ");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line
                }
            };
            let password = password.lines().next().unwrap_or_default().to_owned();
            let rt = runtime()?;
            rt.block_on(async {
                let archive = attach_archive(&cfg).await?;
                archive.ensure_tenants(std::slice::from_ref(&tenant))
                    .await?;
                let keys = radris_auth::keys::MasterKey::load_or_create(&cfg.data_dir)?;
                let users =
                    radris_auth::Users::new(archive.index().pool().clone(), std::sync::Arc::new(keys))?;
                if users.any_admin(&tenant).await? {
                    bail!("tenant {tenant} already has users with the admin role; bootstrap creates only the first administrator");
                }
                users.create(&tenant, &user, &password, "admin").await?;
                anyhow::Ok(())
            })?;
            println!("administrator {user} created in tenant {tenant}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { archive }) => {
            let cfg = load_config(&archive)?;
            let rt = runtime()?;
            let report = rt.block_on(async {
                let archive = existing_archive(&cfg).await?;
                let key = radris_auth::keys::audit_signing_key(&cfg.data_dir)?.verifying_key();
                radris_auth::audit::verify(archive.index().pool(), Some(&key))
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            match report.broken {
                None => {
                    println!(
                        "audit log intact: {} records verified, {} signed checkpoints",
                        report.records, report.checkpoints
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some((seq, why)) => {
                    println!("audit log BROKEN at record {seq}: {why}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Dicom(cmd) => dicom(cmd),
        Command::Render(args) => render(*args),
    }
}

/// Write one audit record for an administrative command run from the CLI.
async fn cli_audit(
    cfg: &Config,
    archive: &radris_store::Archive,
    tenant: &TenantId,
    action: &str,
    resource: String,
    detail: String,
) -> anyhow::Result<()> {
    use radris_core::audit::{AuditRecord, AuditSink, Outcome};
    let signer = radris_auth::keys::audit_signing_key(&cfg.data_dir)?;
    let log = radris_auth::AuditLog::start(archive.index().pool().clone(), Some(signer)).await?;
    log.record(AuditRecord {
        tenant: tenant.as_str().to_owned(),
        actor: format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        ),
        action: action.to_owned(),
        outcome: Outcome::Success,
        resource,
        detail,
        source: "local".into(),
    });
    log.flush().await;
    Ok(())
}

fn keys(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        KeysCommand::List { archive, tenant } => {
            let cfg = load_config(&archive)?;
            let tenant = TenantId::parse(&tenant)?;
            let keys = rt.block_on(async {
                let archive = existing_archive(&cfg).await?;
                archive
                    .data_keys()
                    .list(&tenant)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            for k in keys {
                let state = if k.retired_at == 0 {
                    "active"
                } else {
                    "retired"
                };
                println!("{}\t{}\t{}\t{}", k.key_id, k.kek_id, k.created_at, state);
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate {
            archive,
            tenant,
            reencrypt,
        } => {
            let cfg = load_config(&archive)?;
            let tenant = TenantId::parse(&tenant)?;
            rt.block_on(async {
                let archive = existing_archive(&cfg).await?;
                let id = archive.data_keys().rotate(&tenant).await?;
                cli_audit(
                    &cfg,
                    &archive,
                    &tenant,
                    "admin.keys.rotate",
                    format!("data key {id}"),
                    String::new(),
                )
                .await?;
                println!("tenant {tenant}: new active data key {id}");
                if reencrypt {
                    let n = archive.reencrypt(&tenant).await?;
                    cli_audit(
                        &cfg,
                        &archive,
                        &tenant,
                        "admin.keys.reencrypt",
                        format!("data key {id}"),
                        format!("{n} blobs re-encrypted"),
                    )
                    .await?;
                    println!("tenant {tenant}: {n} blobs re-encrypted");
                }
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::RotateMaster { archive } => {
            let cfg = load_config(&archive)?;
            archive_exists(&cfg)?;
            radris_auth::keys::rotate_master_key(&cfg.data_dir)?;
            let n = rt.block_on(rewrap_data_keys(
                &cfg,
                "admin.keys.rotate-master",
                "master key",
            ))?;
            println!("master key rotated; {n} data keys re-wrapped");
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rewrap { archive } => {
            let cfg = load_config(&archive)?;
            let n = rt.block_on(rewrap_data_keys(&cfg, "admin.keys.rewrap", "data keys"))?;
            println!("{n} data keys re-wrapped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn token(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        TokenCommand::Create {
            archive,
            tenant,
            user,
            scope,
            days,
        } => {
            let cfg = load_config(&archive)?;
            let tenant = TenantId::parse(&tenant)?;
            let scopes = radris_auth::Scopes::parse(&scope)?;
            let (id, secret) = rt.block_on(async {
                let archive = attach_archive(&cfg).await?;
                archive
                    .ensure_tenants(std::slice::from_ref(&tenant))
                    .await?;
                radris_auth::Tokens::new(archive.index().pool().clone())
                    .create(
                        &tenant,
                        &user,
                        scopes,
                        days.map(|d| std::time::Duration::from_secs(d * 86_400)),
                    )
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            eprintln!("token {id} for {user} in tenant {tenant} with scopes {scopes}");
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { archive, tenant } => {
            let cfg = load_config(&archive)?;
            let tenant = TenantId::parse(&tenant)?;
            let list = rt.block_on(async {
                let archive = existing_archive(&cfg).await?;
                radris_auth::Tokens::new(archive.index().pool().clone())
                    .list(&tenant)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            for t in list {
                println!(
                    "{}\t{}\t{}\t{}",
                    t.token_id,
                    t.user,
                    t.scopes,
                    if t.revoked { "revoked" } else { "active" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke {
            archive,
            tenant,
            token_id,
        } => {
            let cfg = load_config(&archive)?;
            let tenant = TenantId::parse(&tenant)?;
            let done = rt.block_on(async {
                let archive = existing_archive(&cfg).await?;
                radris_auth::Tokens::new(archive.index().pool().clone())
                    .revoke(&tenant, &token_id)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            if done {
                println!("revoked {token_id}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no active token {token_id} in tenant {tenant}");
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// In demo mode: a read/write token for the `default` tenant, written once to
/// `<data dir>/demo-token` (mode 0600) so the demo's DICOMweb can be tried at once.
async fn demo_token(cfg: &Config, archive: &radris_store::Archive) -> anyhow::Result<()> {
    let path = cfg.data_dir.join("demo-token");
    if path.exists() {
        tracing::info!(path = %path.display(), "demo API token (Authorization: Bearer …)");
        return Ok(());
    }
    let (_, secret) = radris_auth::Tokens::new(archive.index().pool().clone())
        .create(
            &TenantId::default_tenant(),
            "demo",
            radris_auth::Scopes::of(&[radris_auth::Scope::Read, radris_auth::Scope::Write]),
            None,
        )
        .await?;
    write_secret_file(&path, &secret)?;
    tracing::info!(path = %path.display(), "demo API token created (Authorization: Bearer …)");
    Ok(())
}

/// Re-wrap every data key under the current master key, audited as `action` on `resource`;
/// returns how many were re-wrapped.
async fn rewrap_data_keys(cfg: &Config, action: &str, resource: &str) -> anyhow::Result<usize> {
    let archive = existing_archive(cfg).await?;
    let n = archive.data_keys().rewrap_all().await?;
    cli_audit(
        cfg,
        &archive,
        &TenantId::default_tenant(),
        action,
        resource.into(),
        format!("{n} data keys re-wrapped"),
    )
    .await?;
    Ok(n)
}

/// A new file readable by its owner only (0600) holding `secret` and a newline, synced.
fn write_secret_file(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{secret}\n").as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The demo account of the web application: user `demo` (role radiologist: reads and
/// annotates every study) in tenant `default`, created once with a random password written
/// to `<data dir>/demo-password` (0600). A restart finds the file and changes nothing.
async fn demo_user(cfg: &Config, archive: &radris_store::Archive) -> anyhow::Result<()> {
    const USER: &str = "demo";
    let path = cfg.data_dir.join("demo-password");
    let tenant = TenantId::default_tenant();
    if path.exists() {
        tracing::info!(path = %path.display(), user = USER, tenant = %tenant, "demo user password");
        return Ok(());
    }
    let keys = radris_auth::keys::MasterKey::load_or_create(&cfg.data_dir)?;
    let users = radris_auth::Users::new(archive.index().pool().clone(), Arc::new(keys))?;
    if users.profile(&tenant, USER).await?.is_some() {
        tracing::warn!(
            path = %path.display(),
            "an account named demo exists but its password file does not: leaving it as it is"
        );
        return Ok(());
    }
    let password = radris_auth::password::generate(USER, 20)?;
    write_secret_file(&path, &password)?;
    if let Err(e) = users
        .create(&tenant, USER, &password, "radiologist,technologist")
        .await
    {
        // no account behind the file: the next start tries again
        let _ = std::fs::remove_file(&path);
        return Err(e).context("creating the demo user");
    }
    tracing::info!(path = %path.display(), user = USER, tenant = %tenant, "demo user created (sign in at /)");
    Ok(())
}

/// The radiologists of the demo department and their subspecialties (`demo` is the web
/// app's demo account).
const DEMO_READERS: &[(&str, &[&str])] = &[
    ("demo", &["chest", "neuro", "body", "emergency"]),
    ("dr.ahmed", &["neuro", "msk"]),
    ("dr.berg", &["body", "msk", "nuclear"]),
    ("dr.chen", &["chest", "emergency"]),
];

/// The RIS side of the demo: a department's day around the demo studies (once per data
/// directory; audited like any other work).
async fn demo_day(cfg: &Config, archive: &radris_store::Archive) -> anyhow::Result<()> {
    let signer = radris_auth::keys::audit_signing_key(&cfg.data_dir)?;
    let log = radris_auth::AuditLog::start(archive.index().pool().clone(), Some(signer)).await?;
    let ris = radris_ris::Ris::new(
        archive.index().clone(),
        archive.events().clone(),
        Arc::new(log.clone()),
    );
    let studies: Vec<radris_ris::demo::DemoStudy> = radris_dicom::synth::demo_studies()
        .iter()
        .map(|s| radris_ris::demo::DemoStudy {
            study_uid: s.study_uid(),
            patient_id: s.patient_id.clone(),
            patient_name: s.patient_name.clone(),
            birth_date: s.birth_date.clone(),
            sex: s.sex.clone(),
            accession: s.accession.clone(),
            description: s.description.clone(),
        })
        .collect();
    let tenant = TenantId::default_tenant();
    let seeded = radris_ris::demo::seed_demo_day(
        &ris,
        &tenant,
        &studies,
        DEMO_READERS,
        radris_ris::model::Time::now(),
    )
    .await
    .context("seeding the demo department's day")?;
    if let Some(cases) = seeded {
        let reports = radris_report::service::Reports::new(
            archive.index().clone(),
            ris.clone(),
            Arc::new(log.clone()),
            Arc::new(radris_auth::keys::report_signing_key(&cfg.data_dir)?),
        );
        let signed = radris_report::demo::seed_reports(&reports, archive, &tenant, &cases)
            .await
            .context("signing the demo reports")?;
        tracing::info!(
            reports = signed,
            "demo RIS day created: CT01 and MR01 scheduled, cases on the reading worklists, reports signed and stored as SR"
        );
    }
    log.flush().await;
    Ok(())
}

/// Store the demo studies (idempotent: already stored instances are kept).
pub async fn load_demo(archive: &radris_store::Archive) -> anyhow::Result<()> {
    let tenant = TenantId::default_tenant();
    // each demo study by its own (fixed) UID: other studies in the archive do not count
    let mut missing = Vec::new();
    for study in radris_dicom::synth::demo_studies() {
        let stored = archive
            .index()
            .study(&tenant, &study.study_uid())
            .await?
            .map_or(0, |s| s.num_instances);
        if stored < study.instance_count() as i64 {
            missing.push(study);
        }
    }
    if missing.is_empty() {
        tracing::info!("demo data already present");
        return Ok(());
    }
    let total: u64 = missing.iter().map(|s| s.instance_count()).sum();
    let archive = archive.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(indicatif::ProgressStyle::with_template(
            "demo {bar:40} {pos}/{len} instances {eta}",
        )?);
        for study in &missing {
            study.generate(|g| -> anyhow::Result<()> {
                match archive.ingest_part10(tenant.clone(), &g.part10) {
                    // a study cut short before: what is stored already stays
                    Ok(_) | Err(radris_store::StoreError::Duplicate(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                bar.inc(1);
                Ok(())
            })?;
        }
        bar.finish();
        Ok(())
    })
    .await??;
    tracing::info!(instances = total, "demo data set stored");
    Ok(())
}

fn parse_keys(keys: &[String]) -> Vec<(String, String)> {
    keys.iter()
        .map(|k| match k.split_once('=') {
            Some((a, b)) => (a.trim().to_owned(), b.to_owned()),
            None => (k.trim().to_owned(), String::new()),
        })
        .collect()
}

fn dicom(cmd: DicomCommand) -> anyhow::Result<ExitCode> {
    let opts = |p: &PeerArgs| ScuOptions {
        timeout: std::time::Duration::from_secs(p.timeout),
        ..ScuOptions::new(&p.calling, &p.called, &format!("{}:{}", p.host, p.port))
    };
    match cmd {
        DicomCommand::Echo(p) => {
            scu::echo(&opts(&p))?;
            println!("C-ECHO to {}@{}:{} succeeded", p.called, p.host, p.port);
            Ok(ExitCode::SUCCESS)
        }
        DicomCommand::Store { peer, files } => {
            let (mut all, mut skipped) = (Vec::new(), Vec::new());
            for f in &files {
                crate::import::collect_files(f, &mut all, &mut skipped)?;
            }
            for (p, why) in &skipped {
                eprintln!("skipped {}: {why}", p.display());
            }
            let outcomes = scu::store_files(&opts(&peer), &all, |o| {
                if let Err(e) = &o.result {
                    eprintln!("refused {}: {e}", o.path.display());
                }
            })?;
            let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
            println!(
                "stored {} of {} files",
                outcomes.len() - failed,
                outcomes.len()
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        DicomCommand::Find(q) => {
            let ident = scu::identifier_from_keys(&q.level.to_uppercase(), &parse_keys(&q.keys))?;
            let matches = scu::find(&opts(&q.peer), !q.patient_root, &ident)?;
            for m in &matches {
                println!("{}", radris_dicom::attrs::header_json(m)?);
            }
            eprintln!("{} matches", matches.len());
            Ok(ExitCode::SUCCESS)
        }
        DicomCommand::Move { query, dest } => {
            let ident =
                scu::identifier_from_keys(&query.level.to_uppercase(), &parse_keys(&query.keys))?;
            let c = scu::move_to(&opts(&query.peer), !query.patient_root, &ident, &dest)?;
            println!(
                "C-MOVE: {} completed, {} failed, {} warnings",
                c.completed, c.failed, c.warning
            );
            Ok(if c.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        DicomCommand::Get { query, out } => {
            let ident =
                scu::identifier_from_keys(&query.level.to_uppercase(), &parse_keys(&query.keys))?;
            if out.exists() && !out.is_dir() {
                bail!("--out {}: exists and is not a folder", out.display());
            }
            std::fs::create_dir_all(&out)
                .with_context(|| format!("--out {}: cannot create the folder", out.display()))?;
            let c = scu::get(&opts(&query.peer), !query.patient_root, &ident, &out)?;
            println!(
                "C-GET: {} completed, {} failed, {} warnings",
                c.completed, c.failed, c.warning
            );
            if c.failed > 0 {
                bail!("{} sub-operations failed", c.failed);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
