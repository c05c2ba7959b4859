//! A process the loop started (an app) and its plumbing: the output pumps, its exit, and
//! the deadline for killing it.
//!
//! **When output ends.** A pipe ends at EOF, or, once the process has been reaped, at the
//! first read that finds it empty: everything the process wrote went into the pipe before
//! it exited, so an empty pipe then holds nothing of it, and waiting for EOF would let a
//! background descendant that inherited the pipe hold the exit report back forever.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::unistd::Pid;
use protocol::ExitStatus;

use super::child::{self, Spawned};
use super::poller::{Interest, Poller, Watched};

/// Whose process it is, i.e. where its output and exit go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// An app of the pod; reported on the control connection.
    App(String),
}

/// Which output stream; the index into [`Proc::outputs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// File descriptor 1.
    Stdout = 0,
    /// File descriptor 2.
    Stderr = 1,
}

/// What reading an output pump gave.
#[derive(Debug)]
pub enum Read {
    /// This many bytes at the start of the buffer.
    Data(usize),
    /// Nothing now, more may come.
    Pending,
    /// The stream ended; its pump is closed.
    Closed,
}

/// A started process.
#[derive(Debug)]
pub struct Proc {
    /// Where its output and exit go.
    pub owner: Owner,
    /// Its pid, session id and process group id.
    pub pid: Pid,
    /// How it ended, once reaped.
    pub status: Option<ExitStatus>,
    /// When to `SIGKILL` its group if it still runs (a graceful stop's timeout); cleared
    /// once sent.
    pub kill_at: Option<Instant>,
    /// It is being stopped: when it is gone, what is left of its group is killed too.
    pub stopping: bool,
    /// Stdout and stderr pumps, `None` once ended.
    outputs: [Option<Watched<OwnedFd>>; 2],
}

impl Proc {
    /// Takes over a spawned process; `token(stream_index)` gives the epoll token of each
    /// descriptor (0 stdout, 1 stderr).
    pub fn new(
        owner: Owner,
        spawned: Spawned,
        poller: &Poller,
        token: impl Fn(usize) -> u64,
    ) -> Self {
        let Spawned {
            pid,
            stdout,
            stderr,
        } = spawned;
        Self {
            owner,
            pid,
            status: None,
            kill_at: None,
            stopping: false,
            outputs: [
                Some(poller.watch(stdout, token(0))),
                Some(poller.watch(stderr, token(1))),
            ],
        }
    }

    /// Whether it was reaped and all its output was read: its exit can be reported.
    pub fn finished(&self) -> bool {
        self.status.is_some() && self.outputs.iter().all(Option::is_none)
    }

    /// Reads once from an output stream into `buf`.
    pub fn read_output(&mut self, stream: Stream, buf: &mut [u8]) -> Read {
        let slot = &mut self.outputs[stream as usize];
        let Some(fd) = slot else {
            return Read::Closed;
        };
        let result = loop {
            match nix::unistd::read(fd.get().as_raw_fd(), buf) {
                Err(Errno::EINTR) => {}
                other => break other,
            }
        };
        match result {
            Ok(0) => {}
            Ok(n) => return Read::Data(n),
            // See the module documentation: after the exit an empty pipe is the end.
            Err(Errno::EAGAIN) if self.status.is_none() => return Read::Pending,
            Err(Errno::EAGAIN) => {}
            Err(e) => crate::console::line(&format!(
                "error: reading the output of process {}: {e}",
                self.pid
            )),
        }
        *slot = None;
        Read::Closed
    }

    /// Sends a signal to its own process group, unless it was reaped already.
    pub fn signal_own_group(&self, signal: i32) {
        if self.status.is_none() {
            child::signal_group(self.pid, signal);
        }
    }

    /// Registers what the loop waits for: output while `room` (backpressure).
    pub fn watch(&mut self, room: bool) -> io::Result<()> {
        let read = if room { Interest::READ } else { Interest::NONE };
        for fd in self.outputs.iter_mut().flatten() {
            fd.set(read)?;
        }
        Ok(())
    }
}
