//! The commands, one module each; they print what rkt prints and return the exit code.

pub mod enter;
pub mod gc;
pub mod image;
pub mod run;
pub mod status;
pub mod stop;

use std::path::PathBuf;

use crate::args::Insecure;
use crate::error::Result;
use crate::pod::Pods;
use crate::store::Store;

/// Default data directory.
pub const DEFAULT_DIR: &str = "/var/lib/minirkt";
/// rkt's default `--local-config` (`common.DefaultLocalConfigDir`).
pub const DEFAULT_LOCAL_CONFIG: &str = "/etc/rkt";

/// Global flags (rkt's persistent flags).
#[derive(Debug, Clone)]
pub struct Globals {
    /// `--dir`: the data directory.
    pub dir: PathBuf,
    /// `--debug`.
    pub debug: bool,
    /// `--insecure-options`.
    pub insecure: Insecure,
    /// `--local-config`.
    pub local_config: String,
}

impl Globals {
    /// `<dir>/pods`, created if needed.
    pub fn pods(&self) -> Result<Pods> {
        Pods::open(&self.dir)
    }

    /// `<dir>/cas`, created if needed.
    pub fn store(&self) -> Result<Store> {
        Store::open(&self.dir)
    }
}

/// Prints a diagnostic the way rkt's per-command logger does (`<command>: <message>`).
pub fn warn(cmd: &str, msg: impl std::fmt::Display) {
    eprintln!("{cmd}: {msg}");
}
