//! virtio-fs: a host directory shared with the guest, served from this process by
//! fuse-backend-rs's passthrough file system — one device (and one worker thread) per
//! share, each with its own tag, directory and read-only flag.
//!
//! ```text
//! transport (virtio-mmio / vhost-user)          worker thread "fs-<tag>" (sandboxed)
//!   handle_queue ── Fs::dispatch ── chains ──►  request::serve  (framing checks)
//!                                                  Server (fuse-backend-rs)
//!                                                  filter::ConfinedFs  (policy)
//!                                                  PassthroughFs  ── /share = the share
//!   handle_backend_event ◄── notify eventfd ◄── completions (head, len)
//!     add_used + signal
//! ```
//!
//! Confinement has two independent layers, so a bug in one does not open the share:
//! - in the request path: framing checks (`request.rs`) and the share's policy
//!   (`filter.rs`): names, read-only, device nodes, setuid/setgid, sizes, id spaces;
//! - in the kernel: the worker thread's sandbox (`sandbox.rs`, `caps.rs`): its own mount
//!   namespace whose root is a tmpfs holding only the share (nosymfollow, nodev, nosuid,
//!   read-only when the share is) and its own `/proc/self/fd`, its own descriptor table,
//!   and no capability beyond serving files.
//!
//! Module map: [`config`] (what a share is, config space), [`device`] (the
//! `VirtioBackend`), `worker` (the thread and its channels), `request` (one chain),
//! `filter` (policy), `ids` (per-share id spaces), `sandbox` and `caps` (the kernel layer),
//! `testing` (a guest driver over mock queues, for tests and benchmarks).

pub mod config;
pub mod device;
mod error;

mod caps;
mod filter;
mod ids;
mod request;
mod sandbox;
mod worker;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use config::FsConfig;
pub use device::{Fs, NUM_QUEUES, QUEUE_SIZE, TYPE_FS};
pub use error::FsError;
pub use sandbox::SandboxError;
