//! One vsock stream between a guest port and a host Unix socket: its state machine and
//! credit-based flow control (virtio spec 5.10.6.3).
//!
//! Direction names are the device's: **guest → host** bytes arrive in TX packets and are
//! written to the host socket (through [`TxBuf`] when the socket would block); **host →
//! guest** bytes are read from the host socket straight into RX buffers.
//!
//! Flow control, both ways:
//! - guest → host: we advertise `buf_alloc` = [`CONN_BUF_SIZE`] and `fwd_cnt` (bytes written
//!   to the host socket). The guest may have at most `buf_alloc` bytes in flight as of the
//!   last `fwd_cnt` we told it; more is a credit violation and resets the connection. We send
//!   a CREDIT_UPDATE when the guest's view of our free space runs low (or it asks).
//! - host → guest: the guest advertises its own `buf_alloc`/`fwd_cnt` in every packet; we
//!   never read more from the host socket than it has room for. Out of credit, we stop
//!   polling the socket for input and send one CREDIT_REQUEST.
//!
//! The connection knows nothing about epoll or queues: the muxer asks it what it wants
//! polled ([`Connection::interest`]), tells it what is ready ([`Connection::host_ready`]),
//! hands it guest packets ([`Connection::from_guest`]) and RX buffers
//! ([`Connection::to_guest`]), and removes it once [`Connection::is_dead`].

use std::io::{ErrorKind, Write};
use std::net::Shutdown;
use std::num::Wrapping;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::SyncSender;

use vm_memory::{ReadVolatile, WriteVolatile};
use vmm_sys_util::epoll::EventSet;

use super::packet::{
    Header, Op, Payload, RxBuffer, TxPacket, MAX_PAYLOAD, SHUTDOWN_RCV, SHUTDOWN_SEND,
};
use super::report::{report, Event};
use super::txbuf::TxBuf;

/// The receive buffer each connection advertises to the guest (and the bound of its
/// host-bound buffer).
pub const CONN_BUF_SIZE: u32 = 256 * 1024;

/// Send a CREDIT_UPDATE once the guest believes it has less room than this.
const CREDIT_UPDATE_THRESHOLD: u32 = MAX_PAYLOAD;

/// A connection's identity in the muxer: (host port, guest port).
pub type ConnKey = (u32, u32);

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: REQUEST owed or sent, waiting for the guest's RESPONSE.
    LocalInit,
    /// Connected (possibly half-closed one way or the other).
    Established,
    /// Torn down; an RST may still be owed to the guest.
    Killed,
}

/// Who waits for a host-initiated connection to be accepted.
#[derive(Debug)]
pub enum Waiter {
    /// An in-process [`super::VsockHandle::connect`] call.
    Handle(SyncSender<std::io::Result<()>>),
    /// A hybrid-protocol client that gets `OK <host port>\n`.
    Hybrid,
}

// Packets owed to the guest.
const PENDING_REQUEST: u8 = 1 << 0;
const PENDING_RESPONSE: u8 = 1 << 1;
const PENDING_RW: u8 = 1 << 2;
const PENDING_CREDIT_UPDATE: u8 = 1 << 3;
const PENDING_RST: u8 = 1 << 4;

/// One vsock stream connection.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    local_port: u32,
    peer_port: u32,
    guest_cid: u64,
    state: State,
    pending: u8,
    waiter: Option<Waiter>,
    dead: bool,

    // guest → host
    to_host: TxBuf,
    recv_cnt: Wrapping<u32>,
    fwd_cnt: Wrapping<u32>,
    last_fwd_cnt_sent: Wrapping<u32>,

    // host → guest
    sent_cnt: Wrapping<u32>,
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    credit_requested: bool,

    /// The host socket reached end of file (SHUTDOWN/SEND owed or sent to the guest).
    host_eof: bool,
    /// Shutdown flags the guest sent.
    peer_shutdown: u32,
}

impl Connection {
    /// A host-initiated connection to guest port `peer_port`, from host port `local_port`.
    /// `stream` must be non-blocking.
    pub fn new_local(
        stream: UnixStream,
        local_port: u32,
        peer_port: u32,
        guest_cid: u64,
        waiter: Waiter,
    ) -> Self {
        let mut conn = Self::new(stream, local_port, peer_port, guest_cid, State::LocalInit);
        conn.pending = PENDING_REQUEST;
        conn.waiter = Some(waiter);
        conn
    }

    /// A guest-initiated connection, accepted: `request` is the guest's REQUEST and `stream`
    /// (non-blocking) is connected to the host listener.
    pub fn new_peer(stream: UnixStream, request: &Header, guest_cid: u64) -> Self {
        let mut conn = Self::new(
            stream,
            request.dst_port,
            request.src_port,
            guest_cid,
            State::Established,
        );
        conn.update_peer_credit(request);
        conn.pending = PENDING_RESPONSE;
        conn
    }

    fn new(
        stream: UnixStream,
        local_port: u32,
        peer_port: u32,
        guest_cid: u64,
        state: State,
    ) -> Self {
        Connection {
            stream,
            local_port,
            peer_port,
            guest_cid,
            state,
            pending: 0,
            waiter: None,
            dead: false,
            to_host: TxBuf::new(CONN_BUF_SIZE as usize),
            recv_cnt: Wrapping(0),
            fwd_cnt: Wrapping(0),
            last_fwd_cnt_sent: Wrapping(0),
            sent_cnt: Wrapping(0),
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            credit_requested: false,
            host_eof: false,
            peer_shutdown: 0,
        }
    }

    /// (host port, guest port).
    pub fn key(&self) -> ConnKey {
        (self.local_port, self.peer_port)
    }

    /// The host socket.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Nothing is left to do: the muxer drops it (closing the host socket).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// A packet is owed to the guest (or host bytes may be waiting for it).
    pub fn has_pending_rx(&self) -> bool {
        self.pending != 0
    }

    /// What the muxer should poll the host socket for. Empty means "not at all": the
    /// muxer then removes it from epoll, which also silences hang-up events.
    pub fn interest(&self) -> EventSet {
        let mut set = EventSet::empty();
        if self.state != State::Established {
            return set;
        }
        if !self.to_host.is_empty() {
            set |= EventSet::OUT;
        }
        if self.can_read_host() && self.pending & PENDING_RW == 0 && self.peer_credit() > 0 {
            set |= EventSet::IN;
        }
        set
    }

    /// Tears the connection down: the host socket is shut, an RST is owed to the guest.
    pub fn kill(&mut self) {
        if self.state == State::Killed {
            return;
        }
        self.state = State::Killed;
        self.pending = PENDING_RST;
        // Dropping a handle's sender tells it the connection failed.
        self.waiter = None;
        let _ = self.stream.shutdown(Shutdown::Both);
        self.discard_input();
    }

    /// Reads and drops what the host sent that will never reach the guest: a Unix socket
    /// closed with unread input makes its peer's next read fail with ECONNRESET instead
    /// of a clean end of file after the last byte. Bounded, as the socket's buffer is.
    fn discard_input(&mut self) {
        let mut sink = [0u8; 16 * 1024];
        for _ in 0..64 {
            match std::io::Read::read(&mut self.stream, &mut sink) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// The host socket is ready for what [`Self::interest`] asked (or hung up / failed).
    pub fn host_ready(&mut self, events: EventSet) {
        if self.state != State::Established {
            return;
        }
        if !self.to_host.is_empty() {
            self.flush_to_host();
        }
        if events.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR)
            && self.can_read_host()
        {
            self.pending |= PENDING_RW;
        }
    }

    /// Handles a packet the guest sent on this connection.
    pub fn from_guest(&mut self, pkt: &TxPacket<'_>) {
        let h = &pkt.header;
        match (self.state, pkt.op) {
            (_, Op::Rst) => {
                if let Some(Waiter::Handle(reply)) = self.waiter.take() {
                    let _ = reply.send(Err(ErrorKind::ConnectionRefused.into()));
                }
                self.dead = true;
            }
            (State::Killed, _) => {}
            (State::LocalInit, Op::Response) => {
                self.update_peer_credit(h);
                self.state = State::Established;
                self.established();
            }
            (State::Established, Op::Rw) => {
                self.update_peer_credit(h);
                self.guest_data(pkt);
            }
            (State::Established, Op::CreditUpdate) => self.update_peer_credit(h),
            (State::Established, Op::CreditRequest) => {
                self.update_peer_credit(h);
                self.pending |= PENDING_CREDIT_UPDATE;
            }
            (State::Established, Op::Shutdown) => {
                self.update_peer_credit(h);
                self.guest_shutdown(h.flags);
            }
            (state, op) => {
                report!(
                    Event::ProtocolViolation,
                    "guest sent {op:?} on connection {:?} in state {state:?}; resetting it",
                    self.key()
                );
                self.kill();
            }
        }
    }

    /// Fills `buf` with the next packet owed to the guest, if any; returns its header (the
    /// payload, if any, is already in `buf`).
    pub fn to_guest(&mut self, buf: &mut RxBuffer<'_>) -> Option<Header> {
        let op = self.next_to_guest(buf)?;
        let mut h = Header::host_to_guest(self.guest_cid, self.local_port, self.peer_port, op.0);
        h.len = op.1;
        h.flags = op.2;
        h.buf_alloc = CONN_BUF_SIZE;
        h.fwd_cnt = self.fwd_cnt.0;
        if op.0 != Op::Rst {
            self.last_fwd_cnt_sent = self.fwd_cnt;
            self.pending &= !PENDING_CREDIT_UPDATE;
        }
        Some(h)
    }

    /// (operation, payload length, flags) of the next packet owed.
    fn next_to_guest(&mut self, buf: &mut RxBuffer<'_>) -> Option<(Op, u32, u32)> {
        if self.take(PENDING_RST) {
            self.dead = true;
            return Some((Op::Rst, 0, 0));
        }
        if self.take(PENDING_REQUEST) {
            return Some((Op::Request, 0, 0));
        }
        if self.take(PENDING_RESPONSE) {
            return Some((Op::Response, 0, 0));
        }
        if self.pending & PENDING_RW != 0 {
            if let Some(packet) = self.read_host(buf) {
                return Some(packet);
            }
        }
        if self.take(PENDING_CREDIT_UPDATE) {
            return Some((Op::CreditUpdate, 0, 0));
        }
        None
    }

    /// Reads host bytes into `buf` as far as the guest's credit goes.
    fn read_host(&mut self, buf: &mut RxBuffer<'_>) -> Option<(Op, u32, u32)> {
        if !self.can_read_host() {
            self.pending &= !PENDING_RW;
            return None;
        }
        let credit = self.peer_credit();
        if credit == 0 {
            self.pending &= !PENDING_RW;
            if self.credit_requested {
                return None;
            }
            self.credit_requested = true;
            return Some((Op::CreditRequest, 0, 0));
        }
        let data = buf.data()?;
        let room = data
            .len()
            .min(usize::try_from(credit).unwrap_or(usize::MAX));
        let mut window = data.subslice(0, room).ok()?;
        match self.stream.read_volatile(&mut window) {
            Ok(0) => {
                self.pending &= !PENDING_RW;
                self.host_eof = true;
                Some((Op::Shutdown, 0, SHUTDOWN_SEND))
            }
            Ok(n) => {
                // n <= room <= MAX_PAYLOAD.
                let n = u32::try_from(n).unwrap_or(0);
                self.sent_cnt += n;
                Some((Op::Rw, n, 0))
            }
            Err(vm_memory::VolatileMemoryError::IOError(e))
                if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted =>
            {
                self.pending &= !PENDING_RW;
                None
            }
            Err(e) => {
                report!(
                    Event::HostIo,
                    "reading host socket of {:?}: {e}; resetting it",
                    self.key()
                );
                self.kill();
                self.take(PENDING_RST);
                self.dead = true;
                Some((Op::Rst, 0, 0))
            }
        }
    }

    fn take(&mut self, flag: u8) -> bool {
        let had = self.pending & flag != 0;
        self.pending &= !flag;
        had
    }

    fn can_read_host(&self) -> bool {
        self.state == State::Established && !self.host_eof && self.peer_shutdown & SHUTDOWN_RCV == 0
    }

    /// Bytes the guest has room for.
    fn peer_credit(&self) -> u32 {
        let in_flight = (self.sent_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn update_peer_credit(&mut self, h: &Header) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = Wrapping(h.fwd_cnt);
        if self.peer_credit() > 0 {
            self.credit_requested = false;
        }
    }

    /// The guest accepted a host-initiated connection.
    fn established(&mut self) {
        let ok = match self.waiter.take() {
            Some(Waiter::Handle(reply)) => reply.send(Ok(())).is_ok(),
            Some(Waiter::Hybrid) => {
                let line = format!("OK {}\n", self.local_port);
                matches!(self.stream.write(line.as_bytes()), Ok(n) if n == line.len())
            }
            None => true,
        };
        if !ok {
            // The host side gave up waiting (or went away).
            self.kill();
        }
    }

    fn guest_data(&mut self, pkt: &TxPacket<'_>) {
        let len = pkt.header.len;
        if self.peer_shutdown & SHUTDOWN_SEND != 0 {
            report!(
                Event::ProtocolViolation,
                "guest sent data on {:?} after shutting down sending; resetting it",
                self.key()
            );
            self.kill();
            return;
        }
        let advertised = CONN_BUF_SIZE.saturating_sub((self.recv_cnt - self.last_fwd_cnt_sent).0);
        if len > advertised {
            report!(
                Event::CreditViolation,
                "guest sent {len} bytes on {:?} with {advertised} bytes of credit; resetting it",
                self.key()
            );
            self.kill();
            return;
        }
        let Some(data) = &pkt.data else { return };
        self.recv_cnt += len;
        let mut written = 0;
        if self.to_host.is_empty() {
            let result = match data {
                Payload::Guest(slice) => self.stream.write_volatile(slice),
                Payload::Gathered(bytes) => std::io::Write::write(&mut self.stream, bytes)
                    .map_err(vm_memory::VolatileMemoryError::IOError),
            };
            match result {
                Ok(n) => written = n,
                Err(vm_memory::VolatileMemoryError::IOError(e))
                    if e.kind() == ErrorKind::WouldBlock =>
                {
                    written = 0
                }
                Err(e) => {
                    report!(
                        Event::HostIo,
                        "writing host socket of {:?}: {e}; resetting it",
                        self.key()
                    );
                    self.kill();
                    return;
                }
            }
        }
        self.forwarded(written);
        if written < data.len() {
            let pushed = match data {
                Payload::Guest(slice) => slice
                    .offset(written)
                    .ok()
                    .map(|rest| self.to_host.push_slice(&rest)),
                Payload::Gathered(bytes) => Some(self.to_host.push(&bytes[written..])),
            };
            if !matches!(pushed, Some(Ok(()))) {
                // Unreachable with the credit check above; reset rather than lose bytes.
                report!(
                    Event::CreditViolation,
                    "host-bound buffer of {:?} overflowed; resetting it",
                    self.key()
                );
                self.kill();
                return;
            }
        }
        self.check_credit_update();
    }

    fn forwarded(&mut self, n: usize) {
        // n <= CONN_BUF_SIZE.
        self.fwd_cnt += u32::try_from(n).unwrap_or(0);
    }

    fn flush_to_host(&mut self) {
        match self.to_host.flush_to(&mut self.stream) {
            Ok(n) => self.forwarded(n),
            Err(e) => {
                report!(
                    Event::HostIo,
                    "writing host socket of {:?}: {e}; resetting it",
                    self.key()
                );
                self.kill();
                return;
            }
        }
        if self.to_host.is_empty() {
            self.guest_shutdown(0);
        }
        self.check_credit_update();
    }

    /// Applies shutdown `flags` from the guest (0 re-checks after a flush).
    fn guest_shutdown(&mut self, flags: u32) {
        self.peer_shutdown |= flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
        if self.peer_shutdown & SHUTDOWN_RCV != 0 {
            self.pending &= !PENDING_RW;
        }
        if self.peer_shutdown & SHUTDOWN_SEND != 0 && self.to_host.is_empty() {
            let _ = self.stream.shutdown(Shutdown::Write);
            if self.peer_shutdown & SHUTDOWN_RCV != 0 {
                // The guest closed its socket and every byte reached the host: done. The
                // guest waits for our RST to finish its close.
                self.kill();
            }
        }
    }

    /// Schedules a CREDIT_UPDATE when the guest's view of our free space runs low.
    fn check_credit_update(&mut self) {
        if self.state != State::Established || self.fwd_cnt == self.last_fwd_cnt_sent {
            return;
        }
        let believed_free =
            CONN_BUF_SIZE.saturating_sub((self.recv_cnt - self.last_fwd_cnt_sent).0);
        if believed_free < CREDIT_UPDATE_THRESHOLD {
            self.pending |= PENDING_CREDIT_UPDATE;
        }
    }
}
