//! A process the loop started (an app or an exec session's program) and its plumbing: the
//! output pumps, the stdin queue, its exit, and the deadline for killing it.
//!
//! **When output ends.** A pipe ends at EOF, or, once the process has been reaped, at the
//! first read that finds it empty: everything the process wrote went into the pipe before
//! it exited, so an empty pipe then holds nothing of it, and waiting for EOF would let a
//! background descendant that inherited the pipe hold the exit report back forever. A
//! pty master ends at `EIO` (all slave descriptors closed; Linux hands over what is
//! buffered first), which comes as soon as the process exited unless a descendant keeps
//! the terminal open; that case is bounded by the loop's pty linger. The master itself
//! is only closed once the process is reaped (closing it earlier would hang the
//! terminal up under a process that is still exiting).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::unistd::Pid;
use protocol::ExitStatus;

use super::buffer::ByteQueue;
use super::child::{self, Spawned};
use super::poller::{Interest, Poller, Watched};
use super::pty;

/// Stdin bytes queued for a process above which the loop stops reading its client.
pub const STDIN_HIGH_WATER: usize = 64 * 1024;

/// Whose process it is, i.e. where its output and exit go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// An app of the pod; reported on the control connection.
    App(String),
    /// An exec session's process; reported on that connection, while it exists
    /// (`None`: the client went away and the process is being ended).
    Exec(Option<u64>),
}

/// Which output stream; the index into [`Proc::outputs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// File descriptor 1 (and 2, with a tty).
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

/// The stdin side of an exec session.
#[derive(Debug)]
struct Stdin {
    fd: Watched<OwnedFd>,
    queue: ByteQueue,
    /// Close once the queue is written.
    eof: bool,
    /// The last byte queued ever (for a tty's end of input).
    last: Option<u8>,
}

/// A started process.
#[derive(Debug)]
pub struct Proc {
    /// Where its output and exit go.
    pub owner: Owner,
    /// Its pid, session id and process group id.
    pub pid: Pid,
    /// Its stdio is a pseudo-terminal.
    pub tty: bool,
    /// How it ended, once reaped.
    pub status: Option<ExitStatus>,
    /// When to `SIGKILL` its group if it still runs (a graceful stop's timeout, or the
    /// grace after a hang-up); cleared once sent.
    pub kill_at: Option<Instant>,
    /// It is being stopped: when it is gone, what is left of its group is killed too.
    pub stopping: bool,
    /// With a tty, after the exit: since when reads find nothing (a descendant holds the
    /// terminal open).
    pub quiet_since: Option<Instant>,
    /// Stdout and stderr pumps, `None` once ended.
    outputs: [Option<Watched<OwnedFd>>; 2],
    stdin: Option<Stdin>,
    /// A pty master whose output ended before the process was reaped, kept open (not
    /// watched) until then; see [`Proc::read_output`].
    held_master: Option<Watched<OwnedFd>>,
    /// The client sent `stdin_eof` (nothing may follow it).
    stdin_ended: bool,
}

impl Proc {
    /// Takes over a spawned process; `token(stream_index)` gives the epoll token of each
    /// descriptor (0 stdout, 1 stderr, 2 stdin).
    pub fn new(
        owner: Owner,
        spawned: Spawned,
        tty: bool,
        poller: &Poller,
        token: impl Fn(usize) -> u64,
    ) -> Self {
        let Spawned {
            pid,
            stdin,
            stdout,
            stderr,
        } = spawned;
        Self {
            owner,
            pid,
            tty,
            status: None,
            kill_at: None,
            stopping: false,
            quiet_since: None,
            outputs: [
                Some(poller.watch(stdout, token(0))),
                stderr.map(|fd| poller.watch(fd, token(1))),
            ],
            stdin: stdin.map(|fd| Stdin {
                fd: poller.watch(fd, token(2)),
                queue: ByteQueue::new(),
                eof: false,
                last: None,
            }),
            held_master: None,
            stdin_ended: false,
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
            Ok(n) => {
                self.quiet_since = None;
                return Read::Data(n);
            }
            Err(Errno::EAGAIN) if self.tty && self.status.is_some() => {
                self.quiet_since.get_or_insert_with(Instant::now);
                return Read::Pending;
            }
            // See the module documentation: after the exit an empty pipe is the end.
            Err(Errno::EAGAIN) if self.status.is_none() => return Read::Pending,
            Err(Errno::EAGAIN) => {}
            // A pty master whose slave side is closed everywhere: the output ended. But
            // the master stays open until the process is reaped: closing it hangs the
            // terminal up, and a process that closed its stdio but is still running
            // its exit handlers would die of that SIGHUP instead of its own exit code.
            Err(Errno::EIO) if self.tty => {
                if self.status.is_none() {
                    if let Some(mut master) = slot.take() {
                        let _ = master.set(Interest::NONE);
                        self.held_master = Some(master);
                    }
                }
            }
            Err(e) => crate::console::line(&format!(
                "error: reading the output of process {}: {e}",
                self.pid
            )),
        }
        *slot = None;
        Read::Closed
    }

    /// Ends every output stream now (the pty linger expired, or nobody reads anymore).
    pub fn close_outputs(&mut self) {
        self.outputs = [None, None];
    }

    /// Queues bytes for stdin; dropped if stdin is closed already (the process closed
    /// it or exited).
    pub fn queue_stdin(&mut self, data: &[u8]) {
        if let Some(stdin) = &mut self.stdin {
            stdin.queue.push(data);
            stdin.last = data.last().copied().or(stdin.last);
        }
    }

    /// Whether the client already ended stdin.
    pub fn stdin_ended(&self) -> bool {
        self.stdin_ended
    }

    /// The client's end of stdin: close the pipe, or send a tty's end-of-input sequence
    /// and then close the writer (see [`pty`]), once what is queued is written.
    pub fn end_stdin(&mut self) {
        self.stdin_ended = true;
        if let Some(stdin) = &mut self.stdin {
            if self.tty {
                let sequence = pty::eof_sequence(stdin.fd.get(), stdin.last);
                stdin.queue.push(&sequence);
            }
            stdin.eof = true;
        }
        self.write_stdin();
    }

    /// Bytes waiting to be written to stdin.
    pub fn stdin_queued(&self) -> usize {
        self.stdin.as_ref().map_or(0, |s| s.queue.len())
    }

    /// Writes what stdin takes now; closes it when done or broken.
    pub fn write_stdin(&mut self) {
        let Some(stdin) = &mut self.stdin else {
            return;
        };
        while !stdin.queue.is_empty() {
            match nix::unistd::write(stdin.fd.get(), stdin.queue.front()) {
                Ok(n) => stdin.queue.consume(n),
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                // The process closed its stdin or exited: what is left has no reader.
                Err(_) => {
                    self.stdin = None;
                    return;
                }
            }
        }
        if stdin.eof {
            self.stdin = None;
        }
    }

    /// The pty master, for a tty session whose terminal is still open here.
    pub fn pty_master(&self) -> Option<&OwnedFd> {
        if !self.tty {
            return None;
        }
        self.outputs[0]
            .as_ref()
            .or(self.held_master.as_ref())
            .map(Watched::get)
            .or(self.stdin.as_ref().map(|s| s.fd.get()))
    }

    /// Sends a signal to its process group (with a tty: the terminal's foreground group),
    /// unless it was reaped already.
    pub fn signal(&self, signal: i32) {
        if self.status.is_some() {
            return;
        }
        let group = self
            .pty_master()
            .and_then(pty::foreground_group)
            .unwrap_or(self.pid);
        child::signal_group(group, signal);
    }

    /// Sends a signal to its own process group, unless it was reaped already.
    pub fn signal_own_group(&self, signal: i32) {
        if self.status.is_none() {
            child::signal_group(self.pid, signal);
        }
    }

    /// Forgets stdin and output: nobody is there to send to or read from anymore. (With
    /// a tty this hangs the terminal up, which is meant.)
    pub fn disconnect(&mut self) {
        self.stdin = None;
        self.held_master = None;
        self.close_outputs();
    }

    /// Registers what the loop waits for: output while `room` (backpressure), stdin
    /// while bytes are queued for it.
    pub fn watch(&mut self, room: bool) -> io::Result<()> {
        let read = if room { Interest::READ } else { Interest::NONE };
        for fd in self.outputs.iter_mut().flatten() {
            fd.set(read)?;
        }
        if let Some(stdin) = &mut self.stdin {
            let write = if stdin.queue.is_empty() {
                Interest::NONE
            } else {
                Interest::WRITE
            };
            stdin.fd.set(write)?;
        }
        Ok(())
    }
}
