//! The thread that serves one share: it lives in the share's sandbox and does all the file
//! I/O, so a slow disk never stalls a vCPU or the event loop.
//!
//! The device (on the event-loop thread) pops descriptor chains and [`Worker::submit`]s
//! them; the worker serves each one, writing the reply into the guest's buffers, and sends
//! back a [`Completion`] (the head index and used length), then writes to the notify
//! eventfd — the device's `backend_fd`. The device then puts the completions in the used
//! rings and interrupts the driver. So the queues themselves are touched only by the
//! device, only during a transport call, which is the only time a `QueueSet` exists; the
//! worker touches only the guest buffers of the chains it was given.
//!
//! Descriptor ownership (the worker has its own descriptor table, see `sandbox.rs`):
//! - everything the worker opens (the passthrough's files) is created and closed by the
//!   worker;
//! - the notify eventfd is duplicated by the device before the worker starts; the worker
//!   adopts the duplicate in its own table once it has unshared it, and the device closes
//!   its copy of the duplicate once told the worker is set up;
//! - guest memory may own descriptors (a memfd under vhost-user). Each request carries an
//!   `Arc` of the memory map, which the worker sends back with the completion, so the last
//!   reference to a map the transport has replaced is always dropped by the device's
//!   thread. For that the device keeps receiving completions until the worker has exited
//!   ([`Worker`]'s `Drop` joins it before dropping the receiver).
//!
//! For a seccomp filter on the worker (installed after `sandbox::enter`, which sets
//! `no_new_privs`): once confined it was seen (strace over this module's tests) making
//! close, exit, fchmodat, fcntl, fstatfs, ftruncate, futex, getdents64, getrandom,
//! getxattr, linkat, listxattr, lseek, madvise, mkdirat, mknodat, mprotect, munmap,
//! newfstatat, openat, preadv, pwritev, readlinkat, removexattr, renameat2,
//! rt_sigprocmask, setxattr, sigaltstack, statx, symlinkat, umask, unlinkat, utimensat
//! and write; the passthrough also uses setresuid/setresgid (requests from a non-root
//! guest user), fchownat, fchmod, futimens, fallocate, fsync/fdatasync and dup, and the
//! allocator mmap/brk; the share's policy uses setfsgid (setgid on directories) and
//! getgroups/setgroups (creations by guest users). Never needed: mount, umount2, pivot_root, unshare, setns,
//! open_by_handle_at, name_to_handle_at, ptrace, process_vm_*, execve.

use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use fuse_backend_rs::api::filesystem::FileSystem;
use vmm_sys_util::eventfd::EventFd;

use super::error::FsError;
use super::filter::{ConfinedFs, Policy};
use super::request::{self, Chain, FuseServer};
use super::sandbox;
use crate::devices::virtio::backend::GuestMemory;

/// Requests in flight at most (sent to the worker and not yet completed).
pub(super) const MAX_IN_FLIGHT: usize = 128;

/// A chain for the worker to serve.
pub(super) struct Request {
    /// The queue it came from.
    pub queue: u16,
    /// The device activation it belongs to.
    pub generation: u64,
    /// The chain.
    pub chain: Chain,
    /// The memory the chain lives in, sent back with the completion.
    pub memory: Arc<GuestMemory>,
}

/// A served (or skipped) request.
pub(super) struct Completion {
    /// The queue it came from.
    pub queue: u16,
    /// The chain's head index.
    pub head: u16,
    /// Bytes written to the chain.
    pub len: u32,
    /// The activation it belongs to; the device drops stale ones.
    pub generation: u64,
    /// The memory, to be dropped by the device's thread.
    pub memory: Arc<GuestMemory>,
}

/// What the worker needs to set itself up.
#[derive(Clone, Debug)]
pub(super) struct WorkerConfig {
    /// The share's directory (absolute, canonical).
    pub root: PathBuf,
    /// The share's policy.
    pub policy: Policy,
    /// The thread's name (`fs-<tag>`).
    pub name: String,
}

/// The device's end of a worker thread.
pub(super) struct Worker {
    requests: Option<SyncSender<Request>>,
    completions: Receiver<Completion>,
    generation: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts the worker, which confines itself and creates its file server before this
    /// returns; `notify` is written each time completions are ready.
    pub(super) fn spawn(config: &WorkerConfig, notify: &EventFd) -> Result<Self, FsError> {
        let (requests, request_rx) = mpsc::sync_channel(MAX_IN_FLIGHT);
        let (completion_tx, completions) = mpsc::channel();
        let (setup_tx, setup_rx) = mpsc::sync_channel(1);
        let generation = Arc::new(AtomicU64::new(0));
        let worker_notify = notify.try_clone().map_err(|source| FsError::EventFd {
            what: "duplicating the notify eventfd for the worker",
            source,
        })?;
        let raw_notify = worker_notify.as_raw_fd();
        let thread_config = config.clone();
        let thread_generation = Arc::clone(&generation);
        let thread = std::thread::Builder::new()
            .name(config.name.clone())
            .spawn(move || {
                let channels = Channels {
                    requests: request_rx,
                    completions: completion_tx,
                    generation: thread_generation,
                };
                run(&thread_config, raw_notify, &setup_tx, channels);
            })
            .map_err(|source| FsError::Spawn {
                root: config.root.clone(),
                source,
            })?;
        let setup = setup_rx.recv();
        // The worker has its own table now (or has given up): close our copy of its
        // duplicate.
        drop(worker_notify);
        let result = match setup {
            Ok(result) => result,
            Err(mpsc::RecvError) => Err(FsError::WorkerDied {
                root: config.root.clone(),
            }),
        };
        if let Err(e) = result {
            // The thread exits by itself after a failed setup.
            let _ = thread.join();
            return Err(e);
        }
        Ok(Self {
            requests: Some(requests),
            completions,
            generation,
            thread: Some(thread),
        })
    }

    /// Hands a chain to the worker. Never blocks: the device keeps at most
    /// [`MAX_IN_FLIGHT`] requests in flight, and the channel holds that many.
    pub(super) fn submit(&self, request: Request) -> Result<(), FsError> {
        let Some(requests) = &self.requests else {
            return Err(FsError::WorkerGone);
        };
        match requests.try_send(request) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(FsError::WorkerBusy),
            Err(TrySendError::Disconnected(_)) => Err(FsError::WorkerGone),
        }
    }

    /// The next completion, if one is ready.
    pub(super) fn try_complete(&self) -> Option<Completion> {
        self.completions.try_recv().ok()
    }

    /// The activation requests are tagged with now.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Starts a new activation: requests of the previous one still queued are skipped, and
    /// the worker starts a fresh FUSE session with the first request of the new one.
    pub(super) fn new_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Skip what is still queued, and close the channel: the worker's loop ends once it
        // has finished the request it may be serving (this waits for that one). Its
        // completions, and the memory they carry, are dropped here after.
        self.new_generation();
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        while self.completions.try_recv().is_ok() {}
    }
}

/// The worker's ends of the channels.
struct Channels {
    requests: Receiver<Request>,
    completions: Sender<Completion>,
    generation: Arc<AtomicU64>,
}

/// The worker thread.
fn run(
    config: &WorkerConfig,
    raw_notify: std::os::fd::RawFd,
    setup: &SyncSender<Result<(), FsError>>,
    channels: Channels,
) {
    let spec = sandbox::Spec {
        root: &config.root,
        read_only: config.policy.read_only,
        allow_devices: config.policy.allow_devices,
        keep: &[raw_notify],
    };
    if let Err(source) = sandbox::enter(&spec) {
        let _ = setup.send(Err(FsError::Sandbox {
            root: config.root.clone(),
            source,
        }));
        return;
    }
    // SAFETY: `raw_notify` is the device's duplicate of the notify eventfd; sandbox::enter
    // unshared the descriptor table with it open and closed nothing we keep, so in this
    // thread's table it is open and owned by nothing else.
    let notify = unsafe { EventFd::from_raw_fd(raw_notify) };
    let mut session = match Session::new(config.policy) {
        Ok(session) => session,
        Err(source) => {
            let _ = setup.send(Err(FsError::Server {
                root: config.root.clone(),
                source,
            }));
            return;
        }
    };
    if setup.send(Ok(())).is_err() {
        return;
    }
    serve_loop(&mut session, &channels, &notify, config.policy);
}

/// One FUSE session: the server and its file system.
struct Session {
    server: FuseServer,
    fs: Arc<ConfinedFs>,
    generation: u64,
}

impl Session {
    fn new(policy: Policy) -> std::io::Result<Self> {
        let fs = Arc::new(ConfinedFs::new(policy)?);
        Ok(Self {
            server: FuseServer::new(Arc::clone(&fs)),
            fs,
            generation: 0,
        })
    }
}

fn serve_loop(session: &mut Session, channels: &Channels, notify: &EventFd, policy: Policy) {
    while let Ok(Request {
        queue,
        generation,
        chain,
        memory,
    }) = channels.requests.recv()
    {
        let head = chain.head_index();
        let len = if generation == channels.generation.load(Ordering::Acquire) {
            if generation != session.generation {
                // The device was reset: the guest starts over with FUSE_INIT, and nothing
                // of the old session may survive.
                match Session::new(policy) {
                    Ok(fresh) => {
                        *session = Session {
                            generation,
                            ..fresh
                        }
                    }
                    Err(_) => {
                        session.fs.destroy();
                        session.generation = generation;
                    }
                }
            }
            request::serve(&session.server, &chain)
        } else {
            0
        };
        drop(chain);
        let completion = Completion {
            queue,
            head,
            len,
            generation,
            memory,
        };
        if channels.completions.send(completion).is_err() {
            return;
        }
        // A full eventfd counter (2^64 - 2) cannot happen: the device reads it each time.
        let _ = notify.write(1);
    }
}
