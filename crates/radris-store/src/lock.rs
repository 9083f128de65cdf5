//! Who may use a data directory at once (advisory `flock` locks in the directory itself).
//!
//! - `serve.lock`: held exclusively by the one process that serves the archive
//!   ([`crate::Archive::open`]). A second server on the same directory is refused: its crash
//!   recovery would take the first one's stores in flight for a crash's leftovers.
//! - `writers.lock`: held shared by every process using the archive (the server, `radris
//!   import`, `demo`, the admin commands: [`crate::Archive::attach`]), and exclusively by
//!   the server during its crash recovery only. Recovery therefore never runs beside another
//!   process's stores, and a tool started during recovery waits for it to finish.
//! - `recovery.lock`: the server's turn. It holds it exclusively from before it waits for
//!   `writers.lock` until its recovery is done; a tool takes it shared only on its way to
//!   `writers.lock`. A server waiting for the tools already running is therefore not kept
//!   out by tools started after it (`flock` alone gives a waiting exclusive lock no
//!   priority).
//!
//! The kernel drops the locks when the process ends, however it ends.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::StoreError;

/// The locks a process holds on its data directory, for as long as it uses the archive.
#[derive(Debug)]
pub(crate) struct DataDirLocks {
    _serve: Option<File>,
    /// Held by a server until its crash recovery is done.
    _recovery: Option<File>,
    _writers: File,
}

fn lock_file(data_dir: &Path, name: &str) -> Result<File, StoreError> {
    let path = data_dir.join(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })
}

fn lock_error(data_dir: &Path, name: &str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: data_dir.join(name).display().to_string(),
        source,
    }
}

/// Exclusive (`Ex`) or shared (`Sh`), and what to log when the lock has to be waited for.
enum Mode {
    Ex(&'static str),
    Sh(&'static str),
}

/// Take `name` in `mode`: at once if it is free, otherwise log why and wait for it (a
/// blocking wait, off the async runtime's threads).
async fn take(data_dir: &Path, name: &'static str, mode: Mode) -> Result<File, StoreError> {
    let file = lock_file(data_dir, name)?;
    let (exclusive, why) = match mode {
        Mode::Ex(why) => (true, why),
        Mode::Sh(why) => (false, why),
    };
    let tried = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match tried {
        Ok(()) => return Ok(file),
        Err(TryLockError::WouldBlock) => {
            if !why.is_empty() {
                tracing::warn!(dir = %data_dir.display(), "{why}");
            }
        }
        Err(TryLockError::Error(e)) => return Err(lock_error(data_dir, name, e)),
    }
    let dir = data_dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map(|()| file).map_err(|e| lock_error(&dir, name, e))
    })
    .await
    .map_err(|e| lock_error(data_dir, name, std::io::Error::other(e)))?
}

impl DataDirLocks {
    /// The server's locks: `serve.lock` at once or [`StoreError::InUse`], then its turn
    /// (`recovery.lock`) and `writers.lock` exclusively, waiting for the other processes
    /// using the archive to finish. Call [`DataDirLocks::recovered`] after crash recovery.
    pub(crate) async fn serve(data_dir: &Path) -> Result<Self, StoreError> {
        let serve = lock_file(data_dir, "serve.lock")?;
        match serve.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::InUse(data_dir.display().to_string()));
            }
            Err(TryLockError::Error(e)) => return Err(lock_error(data_dir, "serve.lock", e)),
        }
        // tools hold it shared for a moment only, on their way to writers.lock
        let recovery = take(data_dir, "recovery.lock", Mode::Ex("")).await?;
        let writers = take(
            data_dir,
            "writers.lock",
            Mode::Ex(
                "another radris process (import, demo, an admin command) is using the archive: the server starts once it has finished (crash recovery cannot run beside it); tools started from now on wait for the server",
            ),
        )
        .await?;
        Ok(DataDirLocks {
            _serve: Some(serve),
            _recovery: Some(recovery),
            _writers: writers,
        })
    }

    /// Crash recovery is done: let the other processes in (`writers.lock` goes from
    /// exclusive to shared; only a `serve.lock` holder ever takes it exclusively, so nobody
    /// can take it in between; dropping `recovery.lock` lets the tools queued behind the
    /// server in).
    pub(crate) async fn recovered(self, data_dir: &Path) -> Result<Self, StoreError> {
        self._writers
            .unlock()
            .map_err(|e| lock_error(data_dir, "writers.lock", e))?;
        drop(self._writers);
        let writers = take(data_dir, "writers.lock", Mode::Sh("")).await?;
        Ok(DataDirLocks {
            _serve: self._serve,
            _recovery: None,
            _writers: writers,
        })
    }

    /// A tool's lock: `writers.lock` shared, after passing through the server's turn (so it
    /// waits while a server waits for its recovery or recovers).
    pub(crate) async fn attach(data_dir: &Path) -> Result<Self, StoreError> {
        let turn = take(
            data_dir,
            "recovery.lock",
            Mode::Sh("waiting for the server's crash recovery to finish"),
        )
        .await?;
        // no server recovers now, and none can start to until `turn` goes
        let writers = take(data_dir, "writers.lock", Mode::Sh("")).await?;
        drop(turn);
        Ok(DataDirLocks {
            _serve: None,
            _recovery: None,
            _writers: writers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn one_server_per_directory_and_tools_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLocks::serve(dir.path()).await.unwrap();
        assert!(matches!(
            DataDirLocks::serve(dir.path()).await,
            Err(StoreError::InUse(_))
        ));
        // during recovery a tool waits; after it, it gets in
        let tool = tokio::spawn({
            let d = dir.path().to_owned();
            async move { DataDirLocks::attach(&d).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!tool.is_finished(), "a tool got in during crash recovery");
        let first = first.recovered(dir.path()).await.unwrap();
        let tool = tool.await.unwrap().unwrap();
        assert!(matches!(
            DataDirLocks::serve(dir.path()).await,
            Err(StoreError::InUse(_))
        ));
        drop(first);
        // the server is gone: the next one waits for the tool before recovering
        let next = tokio::spawn({
            let d = dir.path().to_owned();
            async move { DataDirLocks::serve(&d).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!next.is_finished(), "recovery began beside a tool");
        // a tool started while the server waits queues behind it
        let later = tokio::spawn({
            let d = dir.path().to_owned();
            async move { DataDirLocks::attach(&d).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            !later.is_finished(),
            "a later tool went ahead of the waiting server"
        );
        drop(tool);
        let server = next.await.unwrap().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!later.is_finished(), "a tool got in during crash recovery");
        let _server = server.recovered(dir.path()).await.unwrap();
        later.await.unwrap().unwrap();
    }
}
