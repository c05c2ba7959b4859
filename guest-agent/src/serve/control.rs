//! The control connection's requests: start an app, stop apps, shut down.
//!
//! What the host can rely on, beyond the protocol's order of messages:
//!
//! * `app_started` (or the app's `error`) is sent before anything else about the app,
//!   and every byte it wrote before `app_exited`.
//! * `stop` with no app running under that name gets an `error` naming it; otherwise the
//!   answer is the `app_exited` of each app it stopped. A stopped app's whole process
//!   group is signalled: `graceful` is `SIGTERM` (and `SIGCONT`, for stopped processes),
//!   then `SIGKILL` after the timeout; `force` is `SIGKILL`.
//! * `shutdown`: no new connections; every app and exec session gets a graceful stop
//!   with [`Config::shutdown_grace`](super::Config::shutdown_grace); their remaining
//!   output and exits are sent; then the loop ends and the agent powers off. Messages
//!   after `shutdown` are ignored.

use std::time::{Duration, Instant};

use protocol::control::{AgentToHost, HostToAgent, StopMode};
use protocol::ProcessSpec;

use super::child::{self, Argv0, Request, Stdio};
use super::proc::Owner;
use super::{Listener, Loop, Role, Shutdown};

impl<L: Listener> Loop<L> {
    /// Sends a message on the control connection, if there is one.
    fn tell_host(&mut self, message: &AgentToHost) {
        if let Some(peer) = self.control.and_then(|id| self.peers.get_mut(&id)) {
            peer.conn.send(message);
        }
    }

    pub(super) fn on_control(&mut self, message: HostToAgent) {
        if self.shutdown.is_some() {
            crate::console::line("error: ignoring a control message received after shutdown");
            return;
        }
        match message {
            HostToAgent::StartApp { name, process } => self.start_app(name, &process),
            HostToAgent::Stop { app, mode } => self.stop_apps(app, mode),
            HostToAgent::Shutdown {} => self.begin_shutdown(),
        }
    }

    fn start_app(&mut self, name: String, process: &ProcessSpec) {
        let running = self
            .procs
            .values()
            .any(|p| matches!(&p.owner, Owner::App(n) if *n == name));
        if running {
            let message = format!("app {name:?} is already running");
            return self.tell_host(&AgentToHost::Error {
                app: Some(name),
                message,
            });
        }
        let root = self
            .config
            .apps_dir
            .as_ref()
            .map(|dir| dir.join(&name).join("rootfs"));
        if let Some(root) = &root {
            // Contract §5.5: /proc, /dev, /sys, /tmp… inside the app's root, once.
            if let Err(message) = self.app_roots.ensure(root) {
                return self.tell_host(&AgentToHost::Error {
                    app: Some(name),
                    message,
                });
            }
        }
        let request = Request {
            process,
            root: root.as_deref(),
            stdio: Stdio::App,
            argv0: Argv0::Resolved,
        };
        match child::spawn(&request) {
            Ok(spawned) => {
                let pid = u32::try_from(spawned.pid.as_raw()).unwrap_or(0);
                self.add_proc(Owner::App(name.clone()), spawned, false);
                self.tell_host(&AgentToHost::AppStarted { name, pid });
            }
            Err(message) => self.tell_host(&AgentToHost::Error {
                app: Some(name),
                message,
            }),
        }
    }

    fn stop_apps(&mut self, app: Option<String>, mode: StopMode) {
        let targets: Vec<u64> = self
            .procs
            .iter()
            .filter(|(_, p)| match (&p.owner, &app) {
                (Owner::App(name), Some(wanted)) => name == wanted,
                (Owner::App(_), None) => true,
                (Owner::Exec(_), _) => false,
            })
            .map(|(id, _)| *id)
            .collect();
        if let (Some(name), true) = (&app, targets.is_empty()) {
            let message = format!("app {name:?} is not running");
            return self.tell_host(&AgentToHost::Error { app, message });
        }
        for id in targets {
            self.stop_proc(id, mode);
        }
    }

    /// Stops one process (app or exec session) as `mode` says.
    pub(super) fn stop_proc(&mut self, id: u64, mode: StopMode) {
        let Some(proc) = self.procs.get_mut(&id) else {
            return;
        };
        match mode {
            StopMode::Graceful { timeout_ms } => {
                proc.signal_own_group(libc::SIGTERM);
                proc.signal_own_group(libc::SIGCONT);
                let at = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
                proc.kill_at = Some(proc.kill_at.map_or(at, |earlier| earlier.min(at)));
            }
            StopMode::Force => {
                proc.signal_own_group(libc::SIGKILL);
                proc.kill_at = None;
            }
        }
        proc.stopping = true;
    }

    fn begin_shutdown(&mut self) {
        crate::console::line("shutting down: stopping apps and sessions");
        let grace = self.config.shutdown_grace;
        self.shutdown = Some(Shutdown {
            deadline: Instant::now() + grace + self.config.flush_timeout,
        });
        self.listener = None;
        let closing = Instant::now() + self.config.flush_timeout;
        self.peers.retain(|_, peer| peer.role != Role::Handshake);
        for peer in self.peers.values_mut() {
            if peer.role == Role::Exec(None) {
                peer.closing.get_or_insert(closing);
            }
        }
        let timeout_ms = u32::try_from(grace.as_millis()).unwrap_or(u32::MAX);
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            self.stop_proc(id, StopMode::Graceful { timeout_ms });
        }
    }
}
