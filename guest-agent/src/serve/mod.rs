//! Serving the host: one single-threaded epoll loop over the vsock listener, the
//! connections it accepts, the `SIGCHLD` signalfd and every child's stdio.
//!
//! Connections start with the protocol's handshake, whose preamble names their kind:
//!
//! * **control** ([`control`]): at most one at a time. The agent says `hello` and `ready`;
//!   the host starts apps, stops them and finally shuts the VM down. Losing it ends the
//!   loop with [`Ending::ControlLost`].
//! * **exec** ([`exec`]): any number, each one process with its stdin, output, terminal
//!   size, signals and exit status.
//!
//! Nothing blocks the loop but `fork`'s report pipe and the final flush of the control
//! connection (bounded by a deadline). Memory is bounded: one shared 64 KiB read buffer;
//! per connection a frame decoder (the protocol bounds frames) and an output queue that
//! child output is only read into while it holds less than [`conn::OUT_HIGH_WATER`]; per
//! exec session a stdin queue that the client's socket is only read into while it holds
//! less than [`proc::STDIN_HIGH_WATER`].
//!
//! The loop is generic over its [`Listener`] and ends by returning an [`Ending`] rather
//! than powering off, so the unit tests run it over a Unix socket inside the test process.

mod app_root;
mod buffer;
mod child;
mod conn;
mod control;
mod exec;
pub mod listener;
mod poller;
mod proc;
mod pty;
mod reap;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::epoll::{EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use protocol::control::AgentToHost;
use protocol::exec::AgentToClient;
use protocol::handshake::{self, ConnectionKind, Preamble};
use protocol::{ExitStatus, MAX_CHUNK_LEN};

use self::conn::{Conn, Received};
pub use self::listener::{Listener, VsockListener};
use self::poller::{Interest, Poller, Watched};
use self::proc::{Owner, Proc, Read, Stream};
use self::reap::{ChildEvents, Scope};

/// How the loop behaves; [`Config::guest`] is the agent's.
#[derive(Debug, Clone)]
pub struct Config {
    /// Apps live in `<apps_dir>/<name>/rootfs` and are chrooted there; `None` runs
    /// everything in the agent's own root (tests).
    pub apps_dir: Option<PathBuf>,
    /// The loop runs as PID 1 and reaps every orphan; otherwise only its own children.
    pub init: bool,
    /// On `shutdown`: time between `SIGTERM` and `SIGKILL`.
    pub shutdown_grace: Duration,
    /// Longest wait for a peer to take what is queued for it before its connection is
    /// dropped anyway (and, at the end, for the control connection's last bytes).
    pub flush_timeout: Duration,
    /// After an exec client went away: time between `SIGHUP` and `SIGKILL`.
    pub hangup_grace: Duration,
    /// After a tty session's process exited: how long a descendant holding the terminal
    /// open may delay its `exited`.
    pub pty_linger: Duration,
}

impl Config {
    /// The agent's settings in the guest.
    pub fn guest() -> Self {
        Self {
            apps_dir: Some(PathBuf::from("/opt/stage2")),
            init: true,
            shutdown_grace: Duration::from_secs(2),
            flush_timeout: Duration::from_secs(5),
            hangup_grace: Duration::from_millis(500),
            pty_linger: Duration::from_secs(1),
        }
    }
}

/// Why the loop ended: what the agent does next is to power off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The host asked for it; everything was stopped and reported.
    Shutdown,
    /// The control connection ended without a shutdown (or broke the protocol): the pod
    /// failed. Everything was killed.
    ControlLost(String),
}

/// Epoll token of the listener.
const LISTENER: u64 = 1;
/// Epoll token of the `SIGCHLD` signalfd.
const CHILD_EVENTS: u64 = 2;
/// Token bits naming what of an entity a descriptor is; the rest is the entity's id.
const ROLE_BITS: u32 = 2;
const ROLE_SOCKET: u64 = 0;
const ROLE_STDOUT: u64 = 1;
const ROLE_STDERR: u64 = 2;
const ROLE_STDIN: u64 = 3;

/// Events taken from epoll per wait.
const EVENTS_PER_WAIT: usize = 32;
/// Connections accepted per listener wake-up, so a flood cannot starve the rest.
const ACCEPTS_PER_WAKE: usize = 16;
/// How long accepting pauses after `accept` failed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

fn token(id: u64, role: u64) -> u64 {
    (id << ROLE_BITS) | role
}

/// What a connection is for, as far as the loop knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Waiting for the peer's preamble.
    Handshake,
    /// The control connection.
    Control,
    /// An exec session; its process once started.
    Exec(Option<u64>),
}

/// A connection and what it is for.
#[derive(Debug)]
struct Peer {
    conn: Conn,
    role: Role,
    /// Set once nothing more is to be sent but what is queued: the connection is dropped
    /// when that is written, or at this deadline.
    closing: Option<Instant>,
}

/// A shutdown in progress.
#[derive(Debug, Clone, Copy)]
struct Shutdown {
    /// Past this, the loop ends whatever still runs or waits to be sent.
    deadline: Instant,
}

/// Serves `listener` until shutdown or the loss of the control connection.
pub fn run<L: Listener>(listener: L, config: Config) -> io::Result<Ending> {
    ensure_standard_fds()?;
    listener.set_nonblocking()?;
    let poller = Poller::new()?;
    let mut listener = poller.watch(listener, LISTENER);
    listener.set(Interest::READ)?;
    let scope = if config.init { Scope::All } else { Scope::Own };
    let mut children = poller.watch(ChildEvents::new(scope)?, CHILD_EVENTS);
    children.set(Interest::READ)?;
    Loop {
        config,
        poller,
        listener: Some(listener),
        accept_paused_until: None,
        children,
        buf: vec![0; MAX_CHUNK_LEN],
        next_id: 1,
        peers: BTreeMap::new(),
        procs: BTreeMap::new(),
        control: None,
        shutdown: None,
        lost: None,
        app_roots: app_root::Prepared::default(),
    }
    .run()
}

/// Makes sure descriptors 0, 1 and 2 are open (on `/dev/null` if not), so that no pipe
/// or socket of the loop can get one of those numbers and be clobbered when a child
/// sets up its stdio.
fn ensure_standard_fds() -> io::Result<()> {
    for fd in 0..=2 {
        if let Err(Errno::EBADF) = fcntl(fd, FcntlArg::F_GETFD) {
            // The lowest free number is `fd` itself; it stays open for the agent's life.
            let _ = open("/dev/null", OFlag::O_RDWR, Mode::empty())?;
        }
    }
    Ok(())
}

/// The event loop's state.
struct Loop<L: Listener> {
    config: Config,
    poller: Poller,
    /// `None` once shutting down: no new connections.
    listener: Option<Watched<L>>,
    /// Accepting failed; try again at this time.
    accept_paused_until: Option<Instant>,
    children: Watched<ChildEvents>,
    /// The one read buffer, for sockets and child output alike.
    buf: Vec<u8>,
    /// Ids of connections and processes, never reused (they are in epoll tokens).
    next_id: u64,
    peers: BTreeMap<u64, Peer>,
    procs: BTreeMap<u64, Proc>,
    /// The control connection's id.
    control: Option<u64>,
    shutdown: Option<Shutdown>,
    /// Set when the control connection is lost: the loop ends with this reason.
    lost: Option<String>,
    /// Apps' roots prepared so far (contract §5.5).
    app_roots: app_root::Prepared,
}

impl<L: Listener> Loop<L> {
    fn run(&mut self) -> io::Result<Ending> {
        let mut events = [EpollEvent::empty(); EVENTS_PER_WAIT];
        loop {
            if let Some(ending) = self.ending() {
                return Ok(ending);
            }
            let timeout = self.timeout();
            let n = self.poller.wait(&mut events, timeout)?;
            for event in &events[..n] {
                self.dispatch(event.data(), event.events());
            }
            self.on_timers(Instant::now());
            self.settle()?;
        }
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn dispatch(&mut self, token: u64, flags: EpollFlags) {
        match token {
            LISTENER => self.accept(),
            CHILD_EVENTS => {
                self.children.get().drain();
                self.reap();
            }
            _ => {
                let id = token >> ROLE_BITS;
                match token & ((1 << ROLE_BITS) - 1) {
                    ROLE_SOCKET => {
                        let readable = EpollFlags::EPOLLIN
                            | EpollFlags::EPOLLHUP
                            | EpollFlags::EPOLLRDHUP
                            | EpollFlags::EPOLLERR;
                        if flags.intersects(readable) {
                            self.on_readable(id);
                        }
                        if flags.contains(EpollFlags::EPOLLOUT) {
                            self.flush_peer(id);
                        }
                    }
                    ROLE_STDOUT => self.pump(id, Stream::Stdout, false),
                    ROLE_STDERR => self.pump(id, Stream::Stderr, false),
                    _ => {
                        if let Some(proc) = self.procs.get_mut(&id) {
                            proc.write_stdin();
                        }
                    }
                }
            }
        }
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_WAKE {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.get().accept_one() {
                Ok(Some(fd)) => {
                    let id = self.new_id();
                    let conn = Conn::new(self.poller.watch(fd, token(id, ROLE_SOCKET)));
                    self.peers.insert(
                        id,
                        Peer {
                            conn,
                            role: Role::Handshake,
                            closing: None,
                        },
                    );
                }
                Ok(None) => return,
                Err(e) => {
                    // Out of descriptors or memory, typically: retry a bit later rather
                    // than spin on a listener that stays readable.
                    crate::console::line(&format!("error: accepting a connection: {e}"));
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Collects ended children and records their status.
    fn reap(&mut self) {
        let running: Vec<_> = self
            .procs
            .values()
            .filter(|p| p.status.is_none())
            .map(|p| p.pid)
            .collect();
        for (pid, status) in self.children.get().reap(running) {
            // Orphans of the guest (PID 1 only) are not ours: collected, nothing to do.
            if let Some(proc) = self
                .procs
                .values_mut()
                .find(|p| p.pid == pid && p.status.is_none())
            {
                proc.status = Some(status);
            }
        }
    }

    fn on_readable(&mut self, id: u64) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        match peer.conn.receive(&mut self.buf) {
            Received::WouldBlock => {}
            Received::Eof => self.peer_gone(id, None),
            Received::Failed(e) => self.peer_gone(id, Some(e.to_string())),
            // Input after the end of a session is read only to be discarded.
            Received::Data(_) if peer.closing.is_some() => {}
            Received::Data(n) => {
                if let Some(preamble) = peer.conn.take(&self.buf[..n]) {
                    self.answer_handshake(id, &preamble);
                }
                self.take_messages(id);
            }
        }
    }

    fn answer_handshake(&mut self, id: u64, preamble: &Preamble) {
        let control_free = self.control.is_none() && self.shutdown.is_none();
        let accepted: &[ConnectionKind] = if control_free {
            &[ConnectionKind::Control, ConnectionKind::Exec]
        } else {
            &[ConnectionKind::Exec]
        };
        let answer = handshake::answer(preamble, accepted);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.conn.send_raw(&answer.reply);
        match answer.outcome {
            Ok(ConnectionKind::Control) => {
                peer.role = Role::Control;
                self.control = Some(id);
                peer.conn.send(&AgentToHost::Hello {
                    agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                });
                peer.conn.send(&AgentToHost::Ready {});
            }
            Ok(ConnectionKind::Exec) => peer.role = Role::Exec(None),
            Err(e) => {
                let asked_control = preamble[6] == ConnectionKind::Control.as_byte();
                if asked_control
                    && !control_free
                    && matches!(e, protocol::Error::UnsupportedConnectionKind { .. })
                {
                    crate::console::line(
                        "error: refusing a control connection: one is already open",
                    );
                } else {
                    crate::console::line(&format!("error: refusing a connection: {e}"));
                }
                peer.closing = Some(Instant::now() + self.config.flush_timeout);
            }
        }
    }

    /// Handles every complete message received on a connection.
    fn take_messages(&mut self, id: u64) {
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            if peer.closing.is_some() {
                return;
            }
            match peer.role {
                Role::Handshake => return,
                Role::Control => match peer.conn.next_message() {
                    Ok(Some(message)) => self.on_control(message),
                    Ok(None) => return,
                    Err(e) => return self.protocol_error(id, &e),
                },
                Role::Exec(_) => match peer.conn.next_message() {
                    Ok(Some(message)) => self.on_exec(id, message),
                    Ok(None) => return,
                    Err(e) => return self.protocol_error(id, &e),
                },
            }
        }
    }

    /// A connection broke the protocol: say why on the console and to the peer, and
    /// close it.
    fn protocol_error(&mut self, id: u64, error: &dyn std::fmt::Display) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let message = error.to_string();
        peer.closing = Some(Instant::now() + self.config.flush_timeout);
        match peer.role {
            Role::Handshake => {}
            Role::Control => {
                crate::console::line(&format!("error: closing the control connection: {message}"));
                peer.conn.send(&AgentToHost::Error {
                    app: None,
                    message: message.clone(),
                });
                let _ = peer.conn.flush();
                self.lost = Some(format!(
                    "the control connection broke the protocol: {message}"
                ));
            }
            Role::Exec(proc) => {
                crate::console::line(&format!("error: closing an exec connection: {message}"));
                peer.conn.send(&AgentToClient::Error { message });
                if let Some(proc) = proc {
                    self.hang_up(proc);
                }
            }
        }
    }

    /// The peer closed its side or the connection failed.
    fn peer_gone(&mut self, id: u64, error: Option<String>) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        let cut = peer.conn.finish_input().err().map(|e| e.to_string());
        let why = error.or(cut);
        match peer.role {
            Role::Handshake => {
                if let Some(got) = peer.conn.preamble_progress().filter(|got| *got > 0) {
                    crate::console::line(&format!(
                        "error: a connection closed during the handshake ({got} of {} bytes)",
                        protocol::PREAMBLE_LEN
                    ));
                }
            }
            Role::Control => {
                self.control = None;
                if self.shutdown.is_none() {
                    let reason = match why {
                        Some(why) => format!("the control connection failed: {why}"),
                        None => "the control connection was closed".to_owned(),
                    };
                    self.lost = Some(reason);
                }
            }
            Role::Exec(proc) => {
                if peer.closing.is_none() {
                    if let Some(why) = why {
                        crate::console::line(&format!("error: an exec connection failed: {why}"));
                    }
                }
                if let Some(proc) = proc {
                    self.hang_up(proc);
                }
            }
        }
    }

    /// An exec session lost its client: its process group gets `SIGHUP` now and `SIGKILL`
    /// after the grace, its stdio is closed, and nothing is reported.
    fn hang_up(&mut self, proc_id: u64) {
        let Some(proc) = self.procs.get_mut(&proc_id) else {
            return;
        };
        proc.owner = Owner::Exec(None);
        proc.disconnect();
        if proc.status.is_none() {
            proc.signal_own_group(libc::SIGHUP);
            proc.signal_own_group(libc::SIGCONT);
            proc.stopping = true;
            proc.kill_at = Some(Instant::now() + self.config.hangup_grace);
        }
    }

    fn flush_peer(&mut self, id: u64) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if let Err(e) = peer.conn.flush() {
            self.peer_gone(id, Some(e.to_string()));
        }
    }

    /// Whether output of `owner` may be read now: its connection has room (output with
    /// no one to go to is read and dropped).
    fn has_room(peers: &BTreeMap<u64, Peer>, control: Option<u64>, owner: &Owner) -> bool {
        let conn = match owner {
            Owner::App(_) => control,
            Owner::Exec(conn) => *conn,
        };
        conn.and_then(|id| peers.get(&id))
            .is_none_or(|peer| peer.conn.has_room())
    }

    /// Reads a process's output and sends it on: once, or until nothing more can be read
    /// now (`drain`).
    fn pump(&mut self, id: u64, stream: Stream, drain: bool) {
        loop {
            let Some(proc) = self.procs.get_mut(&id) else {
                return;
            };
            if !Self::has_room(&self.peers, self.control, &proc.owner) {
                return;
            }
            match proc.read_output(stream, &mut self.buf) {
                Read::Data(n) => {
                    let data = self.buf[..n].to_vec();
                    self.deliver(id, stream, data);
                    if !drain {
                        return;
                    }
                }
                Read::Pending | Read::Closed => return,
            }
        }
    }

    /// Sends output of a process to whoever it goes to.
    fn deliver(&mut self, id: u64, stream: Stream, data: Vec<u8>) {
        let Some(proc) = self.procs.get(&id) else {
            return;
        };
        match &proc.owner {
            Owner::App(name) => {
                if let Some(peer) = self.control.and_then(|c| self.peers.get_mut(&c)) {
                    peer.conn.send(&AgentToHost::AppOutput {
                        name: name.clone(),
                        stream: match stream {
                            Stream::Stdout => protocol::control::OutputStream::Stdout,
                            Stream::Stderr => protocol::control::OutputStream::Stderr,
                        },
                        data,
                    });
                }
            }
            Owner::Exec(Some(conn)) => {
                if let Some(peer) = self.peers.get_mut(conn) {
                    peer.conn.send(&match stream {
                        Stream::Stdout => AgentToClient::Stdout { data },
                        Stream::Stderr => AgentToClient::Stderr { data },
                    });
                }
            }
            Owner::Exec(None) => {}
        }
    }

    /// Takes over a spawned process; returns its id.
    fn add_proc(&mut self, owner: Owner, spawned: child::Spawned, tty: bool) -> u64 {
        let id = self.new_id();
        let roles = [ROLE_STDOUT, ROLE_STDERR, ROLE_STDIN];
        let proc = Proc::new(owner, spawned, tty, &self.poller, |i| token(id, roles[i]));
        self.procs.insert(id, proc);
        id
    }

    /// Reports a process whose exit and output are complete, and forgets it.
    fn finish(&mut self, id: u64) {
        let Some(proc) = self.procs.remove(&id) else {
            return;
        };
        let status = proc.status.unwrap_or(ExitStatus::Code(0));
        if proc.stopping {
            // It was being stopped: whatever is left of its group goes too.
            child::signal_group(proc.pid, libc::SIGKILL);
        }
        match proc.owner {
            Owner::App(name) => {
                if let Some(peer) = self.control.and_then(|c| self.peers.get_mut(&c)) {
                    peer.conn.send(&AgentToHost::AppExited { name, status });
                }
            }
            Owner::Exec(Some(conn)) => {
                if let Some(peer) = self.peers.get_mut(&conn) {
                    peer.conn.send(&AgentToClient::Exited { status });
                    peer.closing = Some(Instant::now() + self.config.flush_timeout);
                }
            }
            Owner::Exec(None) => {}
        }
    }

    /// The nearest deadline, as an epoll timeout.
    fn timeout(&self) -> EpollTimeout {
        let mut next: Option<Instant> = self.shutdown.map(|s| s.deadline);
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(t) = self.accept_paused_until {
            consider(t);
        }
        for proc in self.procs.values() {
            if let (Some(kill_at), None) = (proc.kill_at, proc.status) {
                consider(kill_at);
            }
            if let Some(quiet) = proc.quiet_since {
                consider(quiet + self.config.pty_linger);
            }
        }
        for peer in self.peers.values() {
            if let Some(deadline) = peer.closing {
                consider(deadline);
            }
        }
        match next {
            None => EpollTimeout::NONE,
            Some(t) => {
                // Rounded up, so the loop does not wake just before a deadline.
                let wait = t.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
                EpollTimeout::try_from(wait).unwrap_or(EpollTimeout::MAX)
            }
        }
    }

    fn on_timers(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
        }
        for proc in self.procs.values_mut() {
            if proc.kill_at.is_some_and(|at| at <= now) {
                proc.kill_at = None;
                proc.signal_own_group(libc::SIGKILL);
            }
            if proc
                .quiet_since
                .is_some_and(|quiet| quiet + self.config.pty_linger <= now)
            {
                proc.close_outputs();
            }
        }
        self.peers
            .retain(|_, peer| peer.closing.is_none_or(|deadline| deadline > now));
    }

    /// After each round of events: finish what can be finished, write what was queued,
    /// and register what to wait for next.
    fn settle(&mut self) -> io::Result<()> {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            if self.procs.get(&id).is_some_and(|p| p.status.is_some()) {
                self.pump(id, Stream::Stdout, true);
                self.pump(id, Stream::Stderr, true);
            }
            if self.procs.get(&id).is_some_and(Proc::finished) {
                self.finish(id);
            }
        }

        let dirty: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| p.conn.dirty())
            .map(|(id, _)| *id)
            .collect();
        for id in dirty {
            self.flush_peer(id);
        }
        // A finished connection closes once its last bytes are out, after taking what the
        // client still sent (closing with unread input could reset the connection before
        // the client read everything).
        let done: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| p.closing.is_some() && p.conn.queued() == 0)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(peer) = self.peers.remove(&id) {
                while let Received::Data(_) = peer.conn.receive(&mut self.buf) {}
            }
        }

        if let Some(listener) = &mut self.listener {
            listener.set(if self.accept_paused_until.is_some() {
                Interest::NONE
            } else {
                Interest::READ
            })?;
        }
        for proc in self.procs.values_mut() {
            let room = Self::has_room(&self.peers, self.control, &proc.owner);
            proc.watch(room)?;
        }
        for peer in self.peers.values_mut() {
            let read = peer.closing.is_none()
                && match peer.role {
                    Role::Exec(Some(proc)) => self
                        .procs
                        .get(&proc)
                        .is_none_or(|p| p.stdin_queued() < proc::STDIN_HIGH_WATER),
                    _ => true,
                };
            peer.conn.watch(read)?;
        }
        Ok(())
    }

    /// Whether the loop is over, after doing what its end requires.
    fn ending(&mut self) -> Option<Ending> {
        if let Some(reason) = self.lost.take() {
            self.kill_all();
            return Some(Ending::ControlLost(reason));
        }
        let shutdown = self.shutdown?;
        let idle = self.procs.is_empty()
            && self
                .peers
                .iter()
                .all(|(id, p)| Some(*id) == self.control || p.conn.queued() == 0);
        let now = Instant::now();
        if !idle && now < shutdown.deadline {
            return None;
        }
        if !idle {
            crate::console::line(&format!(
                "error: shutdown deadline passed with {} processes left; killing them",
                self.procs.len()
            ));
        }
        self.kill_all();
        if let Some(peer) = self.control.and_then(|c| self.peers.get_mut(&c)) {
            match peer.conn.flush_until(now + self.config.flush_timeout) {
                Ok(true) => {}
                Ok(false) => crate::console::line(&format!(
                    "error: the host did not take the last {} bytes of the control connection",
                    peer.conn.queued()
                )),
                Err(e) => crate::console::line(&format!(
                    "error: writing the last bytes of the control connection: {e}"
                )),
            }
        }
        Some(Ending::Shutdown)
    }

    /// `SIGKILL` to every process group still running, and waits for them.
    fn kill_all(&mut self) {
        for proc in self.procs.values() {
            proc.signal_own_group(libc::SIGKILL);
        }
        for proc in self.procs.values().filter(|p| p.status.is_none()) {
            let _ = waitpid(proc.pid, None);
        }
        self.procs.clear();
    }
}
