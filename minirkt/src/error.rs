//! Errors of minirkt: every failure names the operation and the path it concerns.

use std::io;
use std::path::{Path, PathBuf};

/// rkt's exit code for a failure of stage0 itself (contract §2, "rkt's convention for
/// internal failure is exit code 254").
pub const EXIT_FAILURE: u8 = 254;

/// Every error minirkt reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on a path failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("creating directory", "renaming", …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A manifest (image or pod) is not valid appc.
    #[error("invalid {kind} {}: {reason}", path.display())]
    Manifest {
        /// "image manifest" or "pod manifest".
        kind: &'static str,
        /// Where it was read from (the ACI, the store, the pod).
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// An ACI file is malformed (bad tar, bad entry names, missing parts).
    #[error("invalid ACI {}: {reason}", path.display())]
    Aci {
        /// The ACI file or directory.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// Any other failure, already worded as rkt words it.
    #[error("{0}")]
    Other(String),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// An [`Error::Io`] from a nix errno.
    pub fn sys(op: &'static str, path: impl AsRef<Path>, errno: nix::errno::Errno) -> Self {
        Self::io(op, path, io::Error::from_raw_os_error(errno as i32))
    }

    /// Whether this is an I/O error meaning "does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Attaches an operation and a path to an I/O result.
pub trait Context<T> {
    /// Maps the error to [`Error::Io`] with `op` and `path`.
    fn ctx(self, op: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, op: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::sys(op, path, e))
    }
}
