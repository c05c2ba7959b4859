//! Exec sessions: one connection, one process.
//!
//! What a client can rely on, beyond the protocol's order of messages:
//!
//! * The process runs in its own session and process group (with a tty: as the session
//!   leader with the pty as its controlling terminal), in the app's root (or the guest's
//!   for `app: null`), with exactly the environment given.
//! * `stdin` is written in order; while more than
//!   [`STDIN_HIGH_WATER`](super::proc::STDIN_HIGH_WATER) bytes wait for the process, the
//!   agent stops reading the connection (so `resize` and `signal` wait behind stdin too).
//!   Stdin the process no longer reads (it closed it or exited) is dropped.
//! * `stdin_eof` closes the stdin pipe; with a tty it sends the terminal's end of input
//!   (see [`pty`](super::pty)).
//! * `signal` goes to the process group (with a tty: the terminal's foreground group);
//!   `resize` is ignored without a tty.
//! * `exited` comes after every byte of output, then the agent closes.
//! * The client must keep its side open until `exited`: end of input from the client
//!   means it is gone; the process group then gets `SIGHUP` (and `SIGCONT`), and
//!   `SIGKILL` after [`Config::hangup_grace`](super::Config::hangup_grace).
//! * Anything out of order (no `exec` first, a second `exec`, `stdin` after
//!   `stdin_eof`, a second `stdin_eof`) is a protocol error: `error`, then the
//!   connection is closed and the process ended as if the client had gone.

use std::time::Instant;

use protocol::exec::{AgentToClient, ClientToAgent, ExecRequest};

use super::child::{self, Argv0, Request, Stdio};
use super::proc::Owner;
use super::{pty, Listener, Loop, Role};

impl<L: Listener> Loop<L> {
    pub(super) fn on_exec(&mut self, id: u64, message: ClientToAgent) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Role::Exec(proc_id) = peer.role else {
            return;
        };
        let (proc_id, message) = match (proc_id, message) {
            (None, ClientToAgent::Exec(request)) => return self.start_session(id, &request),
            (None, other) => {
                let error = format!("expected an exec request first, got {}", kind(&other));
                return self.protocol_error(id, &error);
            }
            (Some(_), ClientToAgent::Exec(_)) => {
                return self.protocol_error(id, &"a second exec request in one session");
            }
            (Some(proc_id), message) => (proc_id, message),
        };
        let Some(proc) = self.procs.get_mut(&proc_id) else {
            return;
        };
        match message {
            ClientToAgent::Stdin { .. } | ClientToAgent::StdinEof {} if proc.stdin_ended() => {
                self.protocol_error(id, &format!("{} after stdin_eof", kind(&message)));
            }
            ClientToAgent::Stdin { data } => {
                proc.queue_stdin(&data);
                proc.write_stdin();
            }
            ClientToAgent::StdinEof {} => proc.end_stdin(),
            ClientToAgent::Resize(window) => {
                if let Some(master) = proc.pty_master() {
                    if let Err(e) = pty::set_window(master, window) {
                        crate::console::line(&format!("error: resizing a terminal: {e}"));
                    }
                }
            }
            ClientToAgent::Signal { signal } => proc.signal(signal),
            ClientToAgent::Exec(_) => {}
        }
    }

    fn start_session(&mut self, id: u64, request: &ExecRequest) {
        let root = match (&request.app, &self.config.apps_dir) {
            (Some(app), Some(dir)) => Some(dir.join(app).join("rootfs")),
            _ => None,
        };
        let stdio = if request.tty {
            Stdio::Tty(request.window)
        } else {
            Stdio::Piped
        };
        let spawned = child::spawn(&Request {
            process: &request.process,
            root: root.as_deref(),
            stdio,
            argv0: Argv0::AsGiven,
        });
        let reply = match spawned {
            Ok(spawned) => {
                let pid = u32::try_from(spawned.pid.as_raw()).unwrap_or(0);
                let proc_id = self.add_proc(Owner::Exec(Some(id)), spawned, request.tty);
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.role = Role::Exec(Some(proc_id));
                }
                AgentToClient::Started { pid }
            }
            Err(message) => {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.closing = Some(Instant::now() + self.config.flush_timeout);
                }
                AgentToClient::Error { message }
            }
        };
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.conn.send(&reply);
        }
    }
}

/// A message's type as it is named on the wire, for error messages.
fn kind(message: &ClientToAgent) -> &'static str {
    match message {
        ClientToAgent::Exec(_) => "exec",
        ClientToAgent::Stdin { .. } => "stdin",
        ClientToAgent::StdinEof {} => "stdin_eof",
        ClientToAgent::Resize(_) => "resize",
        ClientToAgent::Signal { .. } => "signal",
    }
}
