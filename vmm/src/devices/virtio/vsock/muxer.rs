//! The muxer: every vsock connection and host socket of one device behind one epoll fd.
//!
//! Host sockets it polls: the hybrid listener (`<path>`), clients still sending their
//! `CONNECT` line, the host end of every connection, and the eventfd of the in-process
//! [`VsockHandle`]s. The device reaches it through four calls: [`Muxer::process_events`]
//! when the epoll fd is readable, [`Muxer::send_pkt`] / [`Muxer::reject`] for each TX packet,
//! and [`Muxer::fill_rx`] while [`Muxer::has_pending_rx`] and RX buffers last.
//!
//! Nothing here grows with what the guest sends: connections are capped at
//! [`MAX_CONNECTIONS`], the queue of connections owing packets holds each connection at most
//! once, and resets for unknown connections are capped at [`MAX_PENDING_RESETS`].
//!
//! Polling is level-triggered, and a socket is only polled for what its connection can act
//! on now ([`Connection::interest`]); one that can act on nothing is taken out of epoll, so
//! a readable socket whose guest has no credit or RX buffers never spins the event loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::connection::{ConnKey, Connection, Waiter};
use super::handle::{self, Inbox, Request, VsockHandle};
use super::hybrid::{Client, Progress};
use super::packet::{Header, Op, PacketError, Rejected, RxBuffer, TxPacket, HOST_CID};
use super::report::{report, Event};
use super::MAX_CONNECTIONS;

/// Resets owed to the guest for packets on unknown connections, at most.
pub const MAX_PENDING_RESETS: usize = 256;

/// Host ports for host-initiated connections start here (as in Firecracker), above any
/// port a host listener is likely to use.
const FIRST_LOCAL_PORT: u32 = 1 << 30;

/// Events taken from epoll per [`Muxer::process_events`] call (the rest stay ready).
const EVENT_BATCH: usize = 64;

/// What a polled fd is.
#[derive(Clone, Copy, Debug)]
enum Source {
    Listener,
    Wakeup,
    Client,
    Conn(ConnKey),
}

/// Errors setting the muxer up.
#[derive(Debug, thiserror::Error)]
pub enum MuxerError {
    /// The hybrid listener could not be bound.
    #[error("binding the vsock socket {path}: {source}")]
    Bind {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// epoll or eventfd setup failed.
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}

/// The vsock muxer of one device.
#[derive(Debug)]
pub struct Muxer {
    guest_cid: u64,
    epoll: Epoll,
    path: PathBuf,
    listener: UnixListener,
    inbox: Inbox,
    handle: VsockHandle,
    sources: HashMap<RawFd, Source>,
    conns: HashMap<ConnKey, Connection>,
    /// What each connection's socket is polled for (absent: not in epoll).
    polled: HashMap<ConnKey, EventSet>,
    clients: HashMap<RawFd, Client>,
    rxq: VecDeque<ConnKey>,
    queued: HashSet<ConnKey>,
    resets: VecDeque<Header>,
    next_local_port: u32,
    max_connections: usize,
}

impl Muxer {
    /// A muxer for a guest with CID `guest_cid`, listening for hybrid clients at `path`.
    pub fn new(guest_cid: u64, path: &Path) -> Result<Self, MuxerError> {
        let setup = |what| move |source| MuxerError::Setup { what, source };
        let epoll = Epoll::new().map_err(setup("creating the vsock epoll fd"))?;
        let (handle, inbox) = handle::channel().map_err(setup("creating the vsock eventfd"))?;
        // Bound last: from here on, dropping the muxer removes the socket file.
        let listener = UnixListener::bind(path).map_err(|source| MuxerError::Bind {
            path: path.to_owned(),
            source,
        })?;
        let mut muxer = Muxer {
            guest_cid,
            epoll,
            path: path.to_owned(),
            listener,
            inbox,
            handle,
            sources: HashMap::new(),
            conns: HashMap::new(),
            polled: HashMap::new(),
            clients: HashMap::new(),
            rxq: VecDeque::new(),
            queued: HashSet::new(),
            resets: VecDeque::new(),
            next_local_port: FIRST_LOCAL_PORT,
            max_connections: MAX_CONNECTIONS,
        };
        muxer
            .listener
            .set_nonblocking(true)
            .map_err(setup("making the vsock listener non-blocking"))?;
        let listener_fd = muxer.listener.as_raw_fd();
        muxer
            .add(listener_fd, EventSet::IN, Source::Listener)
            .map_err(setup("polling the vsock listener"))?;
        let wakeup_fd = muxer.inbox.wakeup.as_raw_fd();
        muxer
            .add(wakeup_fd, EventSet::IN, Source::Wakeup)
            .map_err(setup("polling the vsock eventfd"))?;
        Ok(muxer)
    }

    /// A handle for in-process connections to guest ports.
    pub fn handle(&self) -> VsockHandle {
        self.handle.clone()
    }

    /// The epoll fd: readable when host sockets need attention.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// The hybrid listener's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lowers the connection limit (tests).
    #[cfg(test)]
    pub(super) fn set_max_connections(&mut self, max: usize) {
        self.max_connections = max;
    }

    /// Open connections (including those being set up or torn down).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Whether packets are owed to the guest.
    pub fn has_pending_rx(&self) -> bool {
        !self.resets.is_empty() || !self.rxq.is_empty()
    }

    /// Drops every connection and half-connected client (device reset). The listener and
    /// the handles keep working.
    pub fn reset(&mut self) {
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for key in keys {
            self.remove(key);
        }
        let clients: Vec<RawFd> = self.clients.keys().copied().collect();
        for fd in clients {
            self.drop_client(fd);
        }
        self.rxq.clear();
        self.queued.clear();
        self.resets.clear();
    }

    /// Handles one batch of ready host sockets.
    pub fn process_events(&mut self) {
        let mut events = [EpollEvent::default(); EVENT_BATCH];
        let n = match self.epoll.wait(0, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => return,
            Err(e) => {
                report!(Event::HostIo, "waiting on the vsock epoll fd: {e}");
                return;
            }
        };
        for event in &events[..n] {
            let Ok(fd) = RawFd::try_from(event.data()) else {
                continue;
            };
            let Some(&source) = self.sources.get(&fd) else {
                continue;
            };
            match source {
                Source::Listener => self.accept_clients(),
                Source::Wakeup => self.take_requests(),
                Source::Client => self.read_client(fd),
                Source::Conn(key) => {
                    if let Some(conn) = self.conns.get_mut(&key) {
                        conn.host_ready(event.event_set());
                        self.sync(key);
                    }
                }
            }
        }
    }

    /// Handles a valid packet from the guest.
    pub fn send_pkt(&mut self, pkt: &TxPacket<'_>) {
        let h = &pkt.header;
        let key = (h.dst_port, h.src_port);
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.from_guest(pkt);
            self.sync(key);
            return;
        }
        match pkt.op {
            Op::Request => self.guest_connect(h),
            Op::Rst => {}
            _ => self.queue_reset(h),
        }
    }

    /// Handles a packet the device refused: logs it, and resets the connection it claims to
    /// belong to when the fault is in the packet rather than in who sent it.
    pub fn reject(&mut self, rejected: &Rejected) {
        let err = &rejected.error;
        let event = match err {
            PacketError::Chain(_) => Event::MalformedTx,
            PacketError::BadCid { .. } => Event::BadCid,
            PacketError::BadType(_) => Event::BadType,
            PacketError::UnknownOp(_) | PacketError::UnexpectedPayload { .. } => Event::BadOp,
        };
        report!(event, "dropped a guest packet: {err}");
        let Some(h) = rejected.header else { return };
        if matches!(err, PacketError::BadCid { .. })
            || h.src_cid != self.guest_cid
            || h.dst_cid != HOST_CID
        {
            return;
        }
        let key = (h.dst_port, h.src_port);
        if let Some(conn) = self.conns.get_mut(&key) {
            conn.kill();
            self.sync(key);
        } else if !matches!(err, PacketError::Chain(_)) && h.op != Op::Rst as u16 {
            self.queue_reset(&h);
        }
    }

    /// Writes the next packet owed to the guest into `buf`; returns the buffer's used
    /// length, or `None` when nothing can be sent now.
    pub fn fill_rx(&mut self, buf: &mut RxBuffer<'_>) -> Option<u32> {
        if let Some(h) = self.resets.pop_front() {
            return Self::finish(buf, &h);
        }
        for _ in 0..self.rxq.len() {
            let key = self.rxq.pop_front()?;
            self.queued.remove(&key);
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            let header = conn.to_guest(buf);
            self.sync(key);
            if let Some(h) = header {
                return Self::finish(buf, &h);
            }
        }
        None
    }

    fn finish(buf: &mut RxBuffer<'_>, h: &Header) -> Option<u32> {
        match buf.finish(h) {
            Ok(len) => Some(len),
            Err(e) => {
                report!(Event::MalformedRx, "writing a packet header: {e}");
                None
            }
        }
    }

    /// After anything touched connection `key`: drop it if dead, queue it for RX if it owes
    /// packets, and poll its socket for what it can act on.
    fn sync(&mut self, key: ConnKey) {
        let Some(conn) = self.conns.get(&key) else {
            return;
        };
        if conn.is_dead() {
            self.remove(key);
            return;
        }
        if conn.has_pending_rx() && self.queued.insert(key) {
            self.rxq.push_back(key);
        }
        let fd = conn.stream().as_raw_fd();
        let want = conn.interest();
        let had = self.polled.get(&key).copied();
        let result = match had {
            Some(had) if had == want => Ok(()),
            Some(_) if want.is_empty() => {
                self.polled.remove(&key);
                self.del(fd)
            }
            Some(_) => {
                self.polled.insert(key, want);
                self.epoll
                    .ctl(ControlOperation::Modify, fd, event(fd, want))
            }
            None if want.is_empty() => Ok(()),
            None => {
                self.polled.insert(key, want);
                self.add(fd, want, Source::Conn(key))
            }
        };
        if let Err(e) = result {
            report!(Event::HostIo, "polling the host socket of {key:?}: {e}");
            if let Some(conn) = self.conns.get_mut(&key) {
                conn.kill();
            }
            self.polled.remove(&key);
            let _ = self.del(fd);
            if self.queued.insert(key) {
                self.rxq.push_back(key);
            }
        }
    }

    fn remove(&mut self, key: ConnKey) {
        if let Some(conn) = self.conns.remove(&key) {
            if self.polled.remove(&key).is_some() {
                let _ = self.del(conn.stream().as_raw_fd());
            }
        }
        if self.queued.remove(&key) {
            self.rxq.retain(|k| *k != key);
        }
    }

    fn add(&mut self, fd: RawFd, set: EventSet, source: Source) -> io::Result<()> {
        self.epoll.ctl(ControlOperation::Add, fd, event(fd, set))?;
        self.sources.insert(fd, source);
        Ok(())
    }

    fn del(&mut self, fd: RawFd) -> io::Result<()> {
        self.sources.remove(&fd);
        self.epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default())
    }

    fn at_limit(&self) -> bool {
        self.conns.len() + self.clients.len() >= self.max_connections
    }

    fn insert(&mut self, conn: Connection) {
        let key = conn.key();
        self.conns.insert(key, conn);
        self.sync(key);
    }

    fn queue_reset(&mut self, to: &Header) {
        if self.resets.len() >= MAX_PENDING_RESETS {
            report!(
                Event::ResetQueueFull,
                "too many resets owed to the guest; dropped one for {}:{}",
                to.src_cid,
                to.src_port
            );
            return;
        }
        let mut rst = Header::host_to_guest(self.guest_cid, to.dst_port, to.src_port, Op::Rst);
        rst.buf_alloc = 0;
        self.resets.push_back(rst);
    }

    /// The guest connects to host port `h.dst_port`: reach the listener at `<path>_<port>`.
    fn guest_connect(&mut self, h: &Header) {
        if self.at_limit() {
            report!(
                Event::ConnectionLimit,
                "{} connections open; refused the guest's connect to port {}",
                self.max_connections,
                h.dst_port
            );
            self.queue_reset(h);
            return;
        }
        let path = self.port_path(h.dst_port);
        match connect_nonblocking(&path) {
            Ok(stream) => self.insert(Connection::new_peer(stream, h, self.guest_cid)),
            Err(e) => {
                report!(
                    Event::HostConnectFailed,
                    "guest connect to host port {}: {}: {e}",
                    h.dst_port,
                    path.display()
                );
                self.queue_reset(h);
            }
        }
    }

    /// `<path>_<port>`.
    fn port_path(&self, port: u32) -> PathBuf {
        let mut name = OsString::from(self.path.as_os_str());
        name.push(format!("_{port}"));
        PathBuf::from(name)
    }

    fn local_port(&mut self, peer_port: u32) -> u32 {
        loop {
            let port = self.next_local_port;
            self.next_local_port = port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            if !self.conns.contains_key(&(port, peer_port)) {
                return port;
            }
        }
    }

    fn host_connect(&mut self, stream: UnixStream, peer_port: u32, waiter: Waiter) {
        let local_port = self.local_port(peer_port);
        let conn = Connection::new_local(stream, local_port, peer_port, self.guest_cid, waiter);
        self.insert(conn);
    }

    fn accept_clients(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    report!(Event::HostIo, "accepting on {}: {e}", self.path.display());
                    return;
                }
            };
            if self.at_limit() {
                report!(
                    Event::ConnectionLimit,
                    "{} connections open; closed a new client of {}",
                    self.max_connections,
                    self.path.display()
                );
                continue;
            }
            if let Err(e) = stream.set_nonblocking(true) {
                report!(Event::HostIo, "setting up a client socket: {e}");
                continue;
            }
            let fd = stream.as_raw_fd();
            if let Err(e) = self.add(fd, EventSet::IN, Source::Client) {
                report!(Event::HostIo, "polling a client socket: {e}");
                continue;
            }
            self.clients.insert(fd, Client::new(stream));
        }
    }

    fn read_client(&mut self, fd: RawFd) {
        let Some(client) = self.clients.get_mut(&fd) else {
            return;
        };
        match client.read() {
            Progress::Pending => {}
            Progress::Closed => self.drop_client(fd),
            Progress::Malformed(why) => {
                report!(Event::BadConnectLine, "closed a client: {why}");
                self.drop_client(fd);
            }
            Progress::Connect(port) => {
                let _ = self.del(fd);
                if let Some(client) = self.clients.remove(&fd) {
                    self.host_connect(client.into_stream(), port, Waiter::Hybrid);
                }
            }
        }
    }

    fn drop_client(&mut self, fd: RawFd) {
        let _ = self.del(fd);
        self.clients.remove(&fd);
    }

    fn take_requests(&mut self) {
        // The counter only says "look"; the channel holds the requests.
        let _ = self.inbox.wakeup.read();
        while let Ok(Request {
            port,
            stream,
            reply,
        }) = self.inbox.requests.try_recv()
        {
            if self.at_limit() {
                report!(
                    Event::ConnectionLimit,
                    "{} connections open; refused an in-process connect to guest port {port}",
                    self.max_connections
                );
                let _ = reply.send(Err(io::Error::other(format!(
                    "vsock: {} connections open",
                    self.max_connections
                ))));
                continue;
            }
            self.host_connect(stream, port, Waiter::Handle(reply));
        }
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn event(fd: RawFd, set: EventSet) -> EpollEvent {
    EpollEvent::new(set, u64::try_from(fd).unwrap_or(u64::MAX))
}

/// Connects to a Unix listener without ever blocking: a full backlog is a refusal, not a
/// wait that would stall the device.
fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    socket::connect(fd.as_raw_fd(), &addr)?;
    Ok(UnixStream::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_paths_append_the_port() {
        let dir = tempfile::tempdir().unwrap();
        let muxer = Muxer::new(3, &dir.path().join("vsock.sock")).unwrap();
        assert_eq!(
            muxer.port_path(52),
            dir.path().join("vsock.sock_52"),
            "Firecracker's convention"
        );
    }

    #[test]
    fn bind_failure_names_the_path() {
        let err = Muxer::new(3, Path::new("/nonexistent/dir/v.sock")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dir/v.sock"), "{err}");
    }

    #[test]
    fn connect_without_listener_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let err = connect_nonblocking(&dir.path().join("none")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn local_ports_skip_ports_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let mut muxer = Muxer::new(3, &dir.path().join("v.sock")).unwrap();
        muxer.next_local_port = u32::MAX;
        assert_eq!(muxer.local_port(1024), u32::MAX);
        assert_eq!(
            muxer.local_port(1024),
            FIRST_LOCAL_PORT,
            "wraps to the first"
        );
    }

    #[test]
    fn removing_the_muxer_removes_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let muxer = Muxer::new(3, &path).unwrap();
        assert!(path.exists());
        drop(muxer);
        assert!(!path.exists());
    }
}
