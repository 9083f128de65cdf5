//! `radris import`: recursive, parallel, resumable (already stored instances are kept and
//! counted as such), with a progress bar and a summary of rejected files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use radris_core::TenantId;
use radris_store::{Archive, StoreError};

pub struct Summary {
    pub stored: usize,
    pub already_present: usize,
    pub rejected: Vec<(PathBuf, String)>,
}

/// Every regular file under `path` (or `path` itself). A path given on the command line that
/// cannot be read is an error; inside the tree, an entry that cannot be imported (a broken
/// link, a FIFO or socket, an unreadable folder) goes to `skipped` with the reason, and a
/// folder reached again through a symbolic link (a loop) is walked once.
pub fn collect_files(
    path: &Path,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<(PathBuf, String)>,
) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    walk(path, &meta, out, skipped, &mut seen);
    Ok(())
}

fn walk(
    path: &Path,
    meta: &std::fs::Metadata,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<(PathBuf, String)>,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) {
    use std::os::unix::fs::MetadataExt;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return;
    }
    if !meta.is_dir() {
        skipped.push((path.to_path_buf(), "not a regular file or folder".into()));
        return;
    }
    if !seen.insert((meta.dev(), meta.ino())) {
        return; // already walked: a symbolic link back up the tree
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(e) => {
            skipped.push((path.to_path_buf(), format!("cannot list the folder: {e}")));
            return;
        }
    };
    entries.sort();
    for p in entries {
        match std::fs::metadata(&p) {
            Ok(m) => walk(&p, &m, out, skipped, seen),
            Err(e) => skipped.push((p, format!("cannot read it: {e}"))),
        }
    }
}

pub fn import(
    archive: &Archive,
    rt: &tokio::runtime::Runtime,
    tenant: TenantId,
    paths: &[PathBuf],
    jobs: Option<usize>,
) -> anyhow::Result<Summary> {
    let _guard = rt.enter();
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        collect_files(p, &mut files, &mut skipped)?;
    }
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template(
        "import {bar:40} {pos}/{len} files {per_sec} {eta}",
    )?);
    let next = AtomicUsize::new(0);
    let stored = AtomicUsize::new(0);
    let present = AtomicUsize::new(0);
    let rejected = Mutex::new(Vec::new());
    let workers = jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        })
        .max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(path) = files.get(i) else { break };
                    let outcome =
                        std::fs::read(path)
                            .map_err(|e| e.to_string())
                            .and_then(|bytes| {
                                match archive.ingest_part10(tenant.clone(), &bytes) {
                                    Ok(s) => Ok(s.newly_stored),
                                    // under the `reject` policy, a file stored byte for byte already is
                                    // what resuming an interrupted import meets: not a conflict
                                    Err(StoreError::Duplicate(sop))
                                        if stored_identically(
                                            archive, rt, &tenant, &sop, &bytes,
                                        ) =>
                                    {
                                        Ok(false)
                                    }
                                    Err(e) => Err(e.to_string()),
                                }
                            });
                    match outcome {
                        Ok(true) => {
                            stored.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {
                            present.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(why) => {
                            if let Ok(mut r) = rejected.lock() {
                                r.push((path.clone(), why));
                            }
                        }
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish();
    if !bar.is_hidden() {
        eprintln!(); // the summary goes below the bar, not after it
    }
    let mut rejected = rejected.into_inner().unwrap_or_default();
    rejected.extend(skipped);
    rejected.sort();
    let summary = Summary {
        stored: stored.into_inner(),
        already_present: present.into_inner(),
        rejected,
    };
    // a reader that went away (`radris import … | head`) ends the listing, not the process
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "import: {} stored, {} already present, {} rejected",
        summary.stored,
        summary.already_present,
        summary.rejected.len()
    )
    .and_then(|()| {
        summary
            .rejected
            .iter()
            .try_for_each(|(p, why)| writeln!(out, "  rejected {}: {why}", p.display()))
    });
    Ok(summary)
}

/// Whether the archive holds `sop` as exactly these bytes (the index keeps the stored file's
/// SHA-256 and length; an import stores the file as it is).
fn stored_identically(
    archive: &Archive,
    rt: &tokio::runtime::Runtime,
    tenant: &TenantId,
    sop: &str,
    bytes: &[u8],
) -> bool {
    match rt.block_on(archive.index().instance(tenant, sop)) {
        Ok(Some(inst)) => {
            inst.size_bytes == bytes.len() as i64
                && inst.sha256 == radris_store::blob::sha256_hex(&[bytes])
        }
        _ => false,
    }
}
