//! Helpers for tests and benchmarks that drive the minirkt binary: a command builder
//! bound to one data directory, and the parsed `status` report.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Result;
use crate::mountinfo;

/// The minirkt binary and one data directory.
#[derive(Debug, Clone)]
pub struct Harness {
    /// Path of the minirkt binary.
    pub bin: PathBuf,
    /// Its `--dir`.
    pub dir: PathBuf,
}

/// `minirkt status` output, parsed (contract §4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusReport {
    /// `state=`.
    pub state: String,
    /// `pid=` (absent until stage1 wrote `pid`/`ppid`).
    pub pid: Option<i64>,
    /// `exited=` (absent for states before run).
    pub exited: Option<bool>,
    /// `networks=` (running and exited pods).
    pub networks: Option<String>,
    /// `created=`.
    pub created: Option<String>,
    /// `started=`.
    pub started: Option<String>,
    /// `app-<name>=<code>` lines (only once the pod is not running).
    pub apps: BTreeMap<String, i64>,
}

impl StatusReport {
    /// Parses the `key=value` lines of `minirkt status`.
    pub fn parse(text: &str) -> StatusReport {
        let mut r = StatusReport::default();
        for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
            match k {
                "state" => r.state = v.to_string(),
                "pid" => r.pid = v.parse().ok(),
                "exited" => r.exited = v.parse().ok(),
                "networks" => r.networks = Some(v.to_string()),
                "created" => r.created = Some(v.to_string()),
                "started" => r.started = Some(v.to_string()),
                _ => {
                    if let (Some(app), Ok(code)) = (k.strip_prefix("app-"), v.parse()) {
                        r.apps.insert(app.to_string(), code);
                    }
                }
            }
        }
        r
    }
}

impl Harness {
    /// A harness for `bin` with data directory `dir`.
    pub fn new(bin: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Harness {
        Harness {
            bin: bin.into(),
            dir: dir.into(),
        }
    }

    /// `minirkt --dir <dir> ARGS…` (not started).
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--dir").arg(&self.dir).args(args);
        c
    }

    /// Runs `status UUID` and parses it.
    pub fn status(&self, uuid: &str) -> io::Result<StatusReport> {
        let out = self.command(&["status", uuid]).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "minirkt status {uuid}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(StatusReport::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// `<dir>/pods/<state_dir>/<uuid>`.
    pub fn pod_dir(&self, state_dir: &str, uuid: &str) -> PathBuf {
        self.dir.join("pods").join(state_dir).join(uuid)
    }

    /// Mount points at or below the data directory (to check nothing is left behind).
    pub fn mounts(&self) -> Result<Vec<PathBuf>> {
        Ok(mountinfo::mounts_under(Path::new(&self.dir))?
            .into_iter()
            .map(|m| m.mount_point)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let r = StatusReport::parse(
            "state=exited\ncreated=2026-01-01 00:00:00 +0000 UTC\npid=42\nexited=true\napp-a=0\napp-b=5\n",
        );
        assert_eq!(r.state, "exited");
        assert_eq!(r.pid, Some(42));
        assert_eq!(r.exited, Some(true));
        assert_eq!(r.apps.get("b"), Some(&5));
        assert_eq!(r.networks, None);
    }
}
