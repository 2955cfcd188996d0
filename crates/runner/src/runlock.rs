//! One writer per artifacts directory.

use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Held while a run or gc modifies the store; released on drop (and by the
/// kernel if the process dies, so a killed run never leaves a stale lock).
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock, waiting for a concurrent run after saying so.
    pub fn acquire(artifacts: &Path, wait: bool) -> Result<RunLock> {
        fs::create_dir_all(artifacts)
            .with_context(|| format!("cannot create {}", artifacts.display()))?;
        let path = artifacts.join(".lock");
        // Opened for writing (the holder's pid): through a planted link that
        // would truncate a file outside the artifacts folder.
        crate::store::refuse_link(&path)?;
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                if !wait {
                    anyhow::bail!(
                        "another pipeline run (pid {holder}) is using {}; wait for it to finish or use --artifacts DIR",
                        artifacts.display()
                    );
                }
                eprintln!(
                    "waiting: another pipeline run (pid {holder}) holds {}; this run continues when it finishes",
                    path.display()
                );
                file.lock()
                    .with_context(|| format!("cannot lock {}", path.display()))?;
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(RunLock { _file: file })
    }
}
