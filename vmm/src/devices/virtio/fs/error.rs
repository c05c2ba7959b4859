//! Errors of the virtio-fs device: each says which share and what was being done.

use std::io;
use std::path::PathBuf;

use super::sandbox::SandboxError;

/// Why a share cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The tag cannot be a virtio-fs tag.
    #[error("virtio-fs tag {tag:?}: {reason}")]
    InvalidTag {
        /// The tag as given.
        tag: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `TAG=HOSTDIR[:ro]` share specification is malformed.
    #[error("share {spec:?}: {reason} (expected TAG=HOSTDIR[:ro|:rw])")]
    InvalidSpec {
        /// The specification as given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The share's directory cannot be used.
    #[error("share directory {}: {source}", root.display())]
    Root {
        /// The directory as given.
        root: PathBuf,
        /// Why (does not exist, permission denied, ...).
        source: io::Error,
    },
    /// The share's directory is not a directory.
    #[error("share directory {}: not a directory", root.display())]
    RootNotDirectory {
        /// The path as given.
        root: PathBuf,
    },
    /// The share's directory is the host's root, which is never shared.
    #[error("share directory {}: refusing to share the host's root directory", root.display())]
    RootIsHostRoot {
        /// The path as given.
        root: PathBuf,
    },
    /// The worker thread could not confine itself to the share.
    #[error("confining the server of {} to it: {source}", root.display())]
    Sandbox {
        /// The share's directory.
        root: PathBuf,
        /// The step that failed.
        source: SandboxError,
    },
    /// The passthrough file system could not be created inside the sandbox.
    #[error("creating the file server for {}: {source}", root.display())]
    Server {
        /// The share's directory.
        root: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The worker thread could not be started.
    #[error("starting the server thread for {}: {source}", root.display())]
    Spawn {
        /// The share's directory.
        root: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The worker thread ended during its setup without saying why (it panicked).
    #[error("the server thread for {} died while setting up", root.display())]
    WorkerDied {
        /// The share's directory.
        root: PathBuf,
    },
    /// An eventfd operation failed.
    #[error("{what}: {source}")]
    EventFd {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The worker thread is gone (it panicked).
    #[error("the virtio-fs server thread is gone")]
    WorkerGone,
    /// More requests than the worker's channel holds (a bug: the device counts them).
    #[error("the virtio-fs server thread has too many requests in flight")]
    WorkerBusy,
}
