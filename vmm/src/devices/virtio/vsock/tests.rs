//! Device-level tests: the backend driven through mock queues in real guest memory, as a
//! transport would drive it, against real host Unix sockets.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use super::connection::CONN_BUF_SIZE;
use super::packet::{
    Header, Op, HEADER_LEN, HEADER_SIZE, MAX_PAYLOAD, SHUTDOWN_RCV, SHUTDOWN_SEND,
};
use super::report::{count, Event};
use super::testing::{Desc, Poller, RxPacket, TestQueues, MEM_SIZE, SCRATCH};
use super::{Vsock, GUEST_CID, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::backend::{VirtioBackend, VIRTIO_F_VERSION_1};

const AGENT_PORT: u32 = 1024;
/// The receive buffer the test guest advertises.
const GUEST_BUF: u32 = 64 * 1024;
const WAIT: Duration = Duration::from_secs(10);

struct Rig {
    dev: Vsock,
    q: TestQueues,
    poller: Poller,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock.sock");
        let mut dev = Vsock::new(GUEST_CID, &path).unwrap();
        let q = TestQueues::default();
        dev.activate(q.shared_memory()).unwrap();
        let poller = Poller::new(dev.backend_fd().unwrap()).unwrap();
        Rig {
            dev,
            q,
            poller,
            path,
            _dir: dir,
        }
    }

    /// Runs backend events for up to `ms` milliseconds of quiet.
    fn pump(&mut self, ms: i32) {
        while self.poller.wait(ms) {
            self.dev.handle_backend_event(&mut self.q).unwrap();
        }
    }

    /// Runs backend events until RX yields a packet; returns the packets.
    fn recv_some(&mut self) -> Vec<RxPacket> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.q.recv();
            if !got.is_empty() {
                return got;
            }
            assert!(Instant::now() < deadline, "no packet from the device");
            if self.poller.wait(50) {
                self.dev.handle_backend_event(&mut self.q).unwrap();
            }
        }
    }

    fn recv_one(&mut self) -> RxPacket {
        let mut got = self.recv_some();
        assert_eq!(got.len(), 1, "{got:?}");
        got.remove(0)
    }

    /// Sends a packet on TX and lets the device handle it.
    fn tx(&mut self, h: &Header, payload: &[u8]) {
        self.q.send(h, payload).expect("TX descriptors");
        self.dev.handle_queue(TX_QUEUE, &mut self.q).unwrap();
        assert!(!self.q.take_used(TX_QUEUE).is_empty(), "TX chain used");
    }

    fn post_tx(&mut self, descs: &[Desc]) {
        self.q.post(TX_QUEUE, descs).expect("TX descriptors");
        self.dev.handle_queue(TX_QUEUE, &mut self.q).unwrap();
        let used = self.q.take_used(TX_QUEUE);
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].1, 0, "TX chains are used with length 0");
    }

    fn give_rx(&mut self, n: usize) {
        assert_eq!(self.q.give_rx(n), n);
        self.dev.handle_queue(RX_QUEUE, &mut self.q).unwrap();
    }

    /// Opens a connection from the in-process handle and accepts it as the guest.
    fn connect_handle(&mut self, port: u32, guest_buf: u32) -> (UnixStream, u32) {
        let handle = self.dev.handle();
        let waiter = thread::spawn(move || handle.connect(port));
        let req = self.recv_one();
        assert_eq!(req.header.op, Op::Request as u16);
        let local = req.header.src_port;
        let mut resp = guest(port, local, Op::Response);
        resp.buf_alloc = guest_buf;
        self.tx(&resp, &[]);
        let stream = waiter.join().unwrap().expect("connect");
        (stream, local)
    }

    /// The guest connects to host port `port`, whose listener accepts.
    fn connect_guest(&mut self, listener: &UnixListener, port: u32, guest_port: u32) -> UnixStream {
        let mut req = guest(guest_port, port, Op::Request);
        req.buf_alloc = GUEST_BUF;
        self.tx(&req, &[]);
        let resp = self.recv_one();
        assert_eq!(resp.header.op, Op::Response as u16, "{resp:?}");
        let (stream, _) = listener.accept().unwrap();
        stream
    }
}

/// A header from the guest.
fn guest(src_port: u32, dst_port: u32, op: Op) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: 2,
        src_port,
        dst_port,
        type_: 1,
        op: op as u16,
        buf_alloc: GUEST_BUF,
        ..Header::default()
    }
}

fn rw(src_port: u32, dst_port: u32, len: usize, fwd_cnt: u32) -> Header {
    let mut h = guest(src_port, dst_port, Op::Rw);
    h.len = u32::try_from(len).unwrap();
    h.fwd_cnt = fwd_cnt;
    h
}

fn read_exactly(stream: &mut UnixStream, n: usize) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

fn assert_eof(stream: &mut UnixStream) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(stream.read(&mut byte).unwrap(), 0, "expected end of file");
}

/// Closed by the device: end of file, or a reset when it closed with our bytes unread.
fn assert_closed(stream: &mut UnixStream) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the socket closed, got {other:?}"),
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| u8::try_from(i % 251).unwrap() ^ seed)
        .collect()
}

#[test]
fn device_identity_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Vsock::new(GUEST_CID, dir.path().join("v.sock")).unwrap();
    assert_eq!(dev.device_type(), 19);
    assert_eq!(dev.num_queues(), 3);
    assert_eq!(dev.max_queue_size(), 1024);
    assert_eq!(dev.features(), VIRTIO_F_VERSION_1);
    assert_eq!(dev.config(), 3u64.to_le_bytes());
    dev.ack_features(u64::MAX);
    assert_eq!(dev.acked_features, VIRTIO_F_VERSION_1);
    let fd = dev.backend_fd();
    assert!(fd.is_some());
    dev.reset();
    assert_eq!(
        dev.backend_fd(),
        fd,
        "one stable fd for the backend's lifetime"
    );
    let mut q = TestQueues::default();
    assert!(dev.handle_queue(3, &mut q).is_err());
    assert!(
        dev.handle_queue(0, &mut q).is_ok(),
        "inactive: nothing to do"
    );

    for cid in [0, 1, 2, 0xffff_ffff, 1 << 32] {
        assert!(Vsock::new(cid, dir.path().join(format!("c{cid}"))).is_err());
    }
    let err = Vsock::new(GUEST_CID, dir.path().join("v.sock")).unwrap_err();
    assert!(err.to_string().contains("v.sock"), "{err}");
}

#[test]
fn host_connect_handshake_data_and_close() {
    let mut rig = Rig::new();
    rig.give_rx(8);
    let handle = rig.dev.handle();
    let waiter = thread::spawn(move || handle.connect(AGENT_PORT));

    let req = rig.recv_one();
    assert_eq!(req.used_len as usize, HEADER_SIZE);
    let h = req.header;
    assert_eq!((h.src_cid, h.dst_cid), (2, GUEST_CID));
    assert_eq!(h.dst_port, AGENT_PORT);
    assert!(h.src_port >= 1 << 30, "host ports start at 2^30");
    assert_eq!((h.type_, h.op, h.len), (1, Op::Request as u16, 0));
    assert_eq!((h.buf_alloc, h.fwd_cnt), (CONN_BUF_SIZE, 0));
    assert!(rig.q.signals(RX_QUEUE) > 0, "the driver was signalled");
    let local = h.src_port;

    rig.tx(&guest(AGENT_PORT, local, Op::Response), &[]);
    let mut host = waiter.join().unwrap().expect("connect");
    assert!(rig.q.signals(TX_QUEUE) > 0);

    // host → guest
    host.write_all(b"hello guest").unwrap();
    let pkt = rig.recv_one();
    assert_eq!(pkt.header.op, Op::Rw as u16);
    assert_eq!(
        (pkt.header.src_port, pkt.header.dst_port),
        (local, AGENT_PORT)
    );
    assert_eq!(pkt.data, b"hello guest");
    assert_eq!(pkt.used_len as usize, HEADER_SIZE + 11);

    // guest → host, both descriptor layouts
    rig.tx(&rw(AGENT_PORT, local, 10, 11), b"hello host");
    assert_eq!(read_exactly(&mut host, 10), b"hello host");
    rig.q
        .send_single(&rw(AGENT_PORT, local, 3, 11), b"one")
        .unwrap();
    rig.dev.handle_queue(TX_QUEUE, &mut rig.q).unwrap();
    assert_eq!(read_exactly(&mut host, 3), b"one");
    // … and a payload scattered over three descriptors (Linux's large packets).
    rig.q
        .send_scattered(&rw(AGENT_PORT, local, 9, 11), b"scattered", 3)
        .unwrap();
    rig.dev.handle_queue(TX_QUEUE, &mut rig.q).unwrap();
    assert_eq!(read_exactly(&mut host, 9), b"scattered");

    // The host closes its sending side: the guest gets SHUTDOWN(SEND).
    host.shutdown(std::net::Shutdown::Write).unwrap();
    let pkt = rig.recv_one();
    assert_eq!(pkt.header.op, Op::Shutdown as u16);
    assert_eq!(pkt.header.flags, SHUTDOWN_SEND);
    assert_eq!(
        pkt.header.fwd_cnt, 22,
        "every packet carries our forwarded count"
    );

    // The guest closes: the host reads EOF, the guest gets the final RST.
    let mut shut = guest(AGENT_PORT, local, Op::Shutdown);
    shut.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    rig.tx(&shut, &[]);
    assert_eof(&mut host);
    let pkt = rig.recv_one();
    assert_eq!(pkt.header.op, Op::Rst as u16);
    assert_eq!(rig.dev.connection_count(), 0);
}

#[test]
fn host_connect_refused_or_unanswered() {
    let mut rig = Rig::new();
    rig.give_rx(4);
    let handle = rig.dev.handle();
    let waiter = thread::spawn(move || handle.connect(7));
    let req = rig.recv_one();
    rig.tx(&guest(7, req.header.src_port, Op::Rst), &[]);
    let err = waiter.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(rig.dev.connection_count(), 0);

    // No answer at all: the caller times out.
    let handle = rig.dev.handle();
    let waiter = thread::spawn(move || handle.connect_timeout(8, Duration::from_millis(200)));
    let _req = rig.recv_one();
    let err = waiter.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
}

#[test]
fn host_connect_waits_for_rx_buffers() {
    let mut rig = Rig::new();
    let handle = rig.dev.handle();
    let waiter = thread::spawn(move || handle.connect(AGENT_PORT));
    rig.pump(100);
    assert!(rig.q.recv().is_empty(), "no RX buffers, no packet");
    rig.give_rx(1);
    let req = rig.recv_one();
    assert_eq!(req.header.op, Op::Request as u16);
    rig.tx(&guest(AGENT_PORT, req.header.src_port, Op::Response), &[]);
    assert!(waiter.join().unwrap().is_ok());
}

#[test]
fn reset_drops_connections_and_the_device_works_again() {
    let mut rig = Rig::new();
    rig.give_rx(4);
    let (mut host, _) = rig.connect_handle(AGENT_PORT, GUEST_BUF);
    rig.dev.reset();
    assert_eq!(rig.dev.connection_count(), 0);
    assert_eof(&mut host);

    rig.q = TestQueues::default();
    rig.dev.activate(rig.q.shared_memory()).unwrap();
    rig.give_rx(4);
    let (mut host, local) = rig.connect_handle(AGENT_PORT, GUEST_BUF);
    rig.tx(&rw(AGENT_PORT, local, 2, 0), b"ok");
    assert_eq!(read_exactly(&mut host, 2), b"ok");
}

#[test]
fn guest_connects_to_host_listener() {
    let mut rig = Rig::new();
    rig.give_rx(8);
    let listener = UnixListener::bind(format!("{}_52", rig.path.display())).unwrap();
    let mut host = rig.connect_guest(&listener, 52, 40_000);

    rig.tx(&rw(40_000, 52, 4, 0), b"ping");
    assert_eq!(read_exactly(&mut host, 4), b"ping");
    host.write_all(b"pong").unwrap();
    let pkt = rig.recv_one();
    assert_eq!((pkt.header.src_port, pkt.header.dst_port), (52, 40_000));
    assert_eq!(pkt.data, b"pong");

    // The guest resets: the host socket is closed, nothing is owed.
    rig.tx(&guest(40_000, 52, Op::Rst), &[]);
    assert_eof(&mut host);
    assert_eq!(rig.dev.connection_count(), 0);
    rig.pump(20);
    assert!(rig.q.recv().is_empty());
}

#[test]
fn guest_connect_without_listener_is_reset() {
    let mut rig = Rig::new();
    rig.give_rx(2);
    let before = count(Event::HostConnectFailed);
    rig.tx(&guest(40_001, 53, Op::Request), &[]);
    let pkt = rig.recv_one();
    assert_eq!(pkt.header.op, Op::Rst as u16);
    assert_eq!((pkt.header.src_port, pkt.header.dst_port), (53, 40_001));
    assert!(count(Event::HostConnectFailed) > before);
}

#[test]
fn hybrid_connect_ok_and_stream() {
    let mut rig = Rig::new();
    rig.give_rx(8);
    let mut client = UnixStream::connect(&rig.path).unwrap();
    client.write_all(b"CONNECT 1024\n").unwrap();
    let req = rig.recv_one();
    assert_eq!(req.header.op, Op::Request as u16);
    assert_eq!(req.header.dst_port, 1024);
    let local = req.header.src_port;
    rig.tx(&guest(1024, local, Op::Response), &[]);

    let ok = format!("OK {local}\n");
    assert_eq!(read_exactly(&mut client, ok.len()), ok.as_bytes());
    client.write_all(b"raw bytes").unwrap();
    let pkt = rig.recv_one();
    assert_eq!(pkt.data, b"raw bytes");
    rig.tx(&rw(1024, local, 5, 9), b"reply");
    assert_eq!(read_exactly(&mut client, 5), b"reply");
}

#[test]
fn hybrid_bytes_sent_with_the_line_are_kept() {
    let mut rig = Rig::new();
    rig.give_rx(8);
    let mut client = UnixStream::connect(&rig.path).unwrap();
    client.write_all(b"CONNECT 5\nearly").unwrap();
    let req = rig.recv_one();
    let local = req.header.src_port;
    rig.tx(&guest(5, local, Op::Response), &[]);
    let ok = format!("OK {local}\n");
    assert_eq!(read_exactly(&mut client, ok.len()), ok.as_bytes());
    let pkt = rig.recv_one();
    assert_eq!(pkt.data, b"early");
}

#[test]
fn hybrid_malformed_lines_and_refusals_close_the_socket() {
    let mut rig = Rig::new();
    rig.give_rx(8);
    let before = count(Event::BadConnectLine);
    for line in [
        &b"CONNECT\n"[..],
        b"CONNECT x\n",
        b"CONNECT 99999999999\n",
        b"connect 1024\n",
        b"GET / HTTP/1.0\r\n",
        &[b'7'; 200],
    ] {
        let mut client = UnixStream::connect(&rig.path).unwrap();
        client.write_all(line).unwrap();
        rig.pump(20);
        assert_closed(&mut client);
    }
    assert!(count(Event::BadConnectLine) >= before + 6);
    // A client that leaves half-way costs nothing.
    let mut client = UnixStream::connect(&rig.path).unwrap();
    client.write_all(b"CONN").unwrap();
    drop(client);
    rig.pump(20);
    assert!(rig.q.recv().is_empty(), "no request reached the guest");
    assert_eq!(rig.dev.connection_count(), 0);

    // The guest refuses: the socket is closed with no OK line.
    let mut client = UnixStream::connect(&rig.path).unwrap();
    client.write_all(b"CONNECT 9\n").unwrap();
    let req = rig.recv_one();
    rig.tx(&guest(9, req.header.src_port, Op::Rst), &[]);
    assert_eof(&mut client);
}

#[test]
fn host_to_guest_respects_guest_credit() {
    let mut rig = Rig::new();
    rig.give_rx(16);
    let (mut host, local) = rig.connect_handle(AGENT_PORT, 16);
    let data = pattern(40, 7);
    host.write_all(&data).unwrap();

    let mut got = Vec::new();
    let pkts = rig.recv_some();
    let mut pkts = pkts.into_iter();
    let first = pkts.next().unwrap();
    assert_eq!(first.header.op, Op::Rw as u16);
    assert_eq!(
        first.data.len(),
        16,
        "no more than the guest's 16 bytes of credit"
    );
    got.extend(first.data);
    let ask = pkts.next().unwrap_or_else(|| rig.recv_one());
    assert_eq!(ask.header.op, Op::CreditRequest as u16);
    // Out of credit: the host socket is not read, whatever happens.
    rig.pump(50);
    rig.dev.handle_queue(RX_QUEUE, &mut rig.q).unwrap();
    assert!(
        rig.q.recv().is_empty(),
        "nothing while the guest grants no credit"
    );

    // The guest consumed the 16 bytes: 16 more.
    let mut update = guest(AGENT_PORT, local, Op::CreditUpdate);
    update.buf_alloc = 16;
    update.fwd_cnt = 16;
    rig.tx(&update, &[]);
    let pkt = rig.recv_some().remove(0);
    assert_eq!(pkt.data.len(), 16);
    got.extend(pkt.data);
    rig.pump(50);
    let _ = rig.q.recv();
    // A bigger buffer: the rest.
    update.buf_alloc = 1024;
    update.fwd_cnt = 32;
    rig.tx(&update, &[]);
    let pkt = rig.recv_some().remove(0);
    got.extend(pkt.data);
    assert_eq!(got, data, "every byte, in order");
}

#[test]
fn guest_to_host_gets_credit_updates() {
    let mut rig = Rig::new();
    rig.give_rx(16);
    let (mut host, local) = rig.connect_handle(AGENT_PORT, GUEST_BUF);
    let reader = thread::spawn(move || read_exactly(&mut host, CONN_BUF_SIZE as usize));
    let data = pattern(CONN_BUF_SIZE as usize, 3);
    for chunk in data.chunks(MAX_PAYLOAD as usize) {
        rig.tx(&rw(AGENT_PORT, local, chunk.len(), 0), chunk);
    }
    // What the socket did not take waits for it to drain (an event of the muxer's).
    while !reader.is_finished() {
        rig.pump(10);
    }
    assert_eq!(reader.join().unwrap(), data);
    // Once the host has taken the bytes, the guest learns it has room again.
    let deadline = Instant::now() + WAIT;
    let update = loop {
        rig.pump(20);
        let pkts = rig.q.recv();
        if let Some(p) = pkts
            .into_iter()
            .find(|p| p.header.op == Op::CreditUpdate as u16)
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no credit update");
    };
    assert_eq!(update.header.buf_alloc, CONN_BUF_SIZE);
    assert!(update.header.fwd_cnt > CONN_BUF_SIZE - MAX_PAYLOAD);
}

#[test]
fn credit_violation_resets_the_connection() {
    let mut rig = Rig::new();
    // One RX buffer for the REQUEST: no credit update can reach the guest afterwards.
    rig.give_rx(1);
    let (mut host, local) = rig.connect_handle(AGENT_PORT, GUEST_BUF);
    let _ = rig.q.recv();
    // All the advertised credit, then one byte more.
    let chunk = vec![0x5a; MAX_PAYLOAD as usize];
    for _ in 0..CONN_BUF_SIZE / MAX_PAYLOAD {
        rig.tx(&rw(AGENT_PORT, local, chunk.len(), 0), &chunk);
    }
    assert_eq!(rig.dev.connection_count(), 1, "within credit");
    let before = count(Event::CreditViolation);
    rig.tx(&rw(AGENT_PORT, local, 1, 0), b"!");
    assert!(count(Event::CreditViolation) > before);
    rig.give_rx(1);
    let pkt = rig.recv_one();
    assert_eq!(pkt.header.op, Op::Rst as u16);
    assert_eq!(rig.dev.connection_count(), 0);
    // The host side is closed (what got through before may still be read).
    host.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = Vec::new();
    let n = host.read_to_end(&mut sink).unwrap();
    assert!(n <= CONN_BUF_SIZE as usize);
}

#[test]
fn guest_close_flushes_buffered_bytes_first() {
    let mut rig = Rig::new();
    rig.give_rx(4);
    let (mut host, local) = rig.connect_handle(AGENT_PORT, GUEST_BUF);
    let _ = rig.q.recv();
    // More than a Unix socket buffers: the rest waits in the connection's buffer.
    let data = pattern(CONN_BUF_SIZE as usize, 9);
    for chunk in data.chunks(MAX_PAYLOAD as usize) {
        rig.tx(&rw(AGENT_PORT, local, chunk.len(), 0), chunk);
    }
    let mut shut = guest(AGENT_PORT, local, Op::Shutdown);
    shut.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    rig.tx(&shut, &[]);
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        host.set_read_timeout(Some(WAIT)).unwrap();
        host.read_to_end(&mut all).unwrap();
        all
    });
    let deadline = Instant::now() + WAIT;
    let mut rst = None;
    while rst.is_none() {
        rig.pump(20);
        rst = rig
            .q
            .recv()
            .into_iter()
            .find(|p| p.header.op == Op::Rst as u16);
        assert!(Instant::now() < deadline, "no RST after the flush");
    }
    assert_eq!(reader.join().unwrap(), data, "every byte before EOF");
    assert_eq!(rig.dev.connection_count(), 0);
}

#[test]
fn protocol_violations_reset_the_connection() {
    let mut rig = Rig::new();
    rig.give_rx(16);
    let listener = UnixListener::bind(format!("{}_60", rig.path.display())).unwrap();

    // A second REQUEST on an open connection.
    let mut host = rig.connect_guest(&listener, 60, 1);
    let before = count(Event::ProtocolViolation);
    rig.tx(&guest(1, 60, Op::Request), &[]);
    assert_eq!(rig.recv_one().header.op, Op::Rst as u16);
    assert_eof(&mut host);
    assert!(count(Event::ProtocolViolation) > before);

    // Data after the guest's own SHUTDOWN(SEND).
    let mut host = rig.connect_guest(&listener, 60, 2);
    let mut shut = guest(2, 60, Op::Shutdown);
    shut.flags = SHUTDOWN_SEND;
    rig.tx(&shut, &[]);
    assert_eof(&mut host);
    rig.tx(&rw(2, 60, 1, 0), b"x");
    assert_eq!(rig.recv_one().header.op, Op::Rst as u16);

    // Packets for connections that do not exist get an RST (an RST gets nothing).
    for op in [
        Op::Rw,
        Op::Response,
        Op::Shutdown,
        Op::CreditUpdate,
        Op::CreditRequest,
    ] {
        let h = if op == Op::Rw {
            rw(3, 61, 1, 0)
        } else {
            guest(3, 61, op)
        };
        let payload: &[u8] = if op == Op::Rw { b"x" } else { b"" };
        rig.tx(&h, payload);
        let pkt = rig.recv_one();
        assert_eq!(pkt.header.op, Op::Rst as u16, "{op:?}");
        assert_eq!((pkt.header.src_port, pkt.header.dst_port), (61, 3));
    }
    rig.tx(&guest(3, 61, Op::Rst), &[]);
    rig.pump(20);
    assert!(rig.q.recv().is_empty());
}

#[test]
fn resets_for_unknown_connections_are_bounded() {
    let mut rig = Rig::new();
    let before = count(Event::ResetQueueFull);
    // 300 stray packets while the guest gives no RX buffers.
    for round in 0..3u32 {
        for i in 0..100u32 {
            rig.q
                .send(&guest(round * 100 + i, 70, Op::CreditUpdate), &[])
                .unwrap();
        }
        rig.dev.handle_queue(TX_QUEUE, &mut rig.q).unwrap();
        assert_eq!(rig.q.take_used(TX_QUEUE).len(), 100);
    }
    assert!(count(Event::ResetQueueFull) >= before + 44);
    let mut resets = 0;
    for _ in 0..4 {
        rig.q.give_rx(100);
        rig.dev.handle_queue(RX_QUEUE, &mut rig.q).unwrap();
        resets += rig.q.recv().len();
    }
    assert_eq!(resets, super::muxer::MAX_PENDING_RESETS);
}

/// Every malformed TX packet is used (length 0) and dropped, never a panic.
#[test]
fn malformed_tx_chains_are_dropped() {
    let mut rig = Rig::new();
    rig.give_rx(16);
    let hdr_at = SCRATCH;
    let data_at = SCRATCH + 0x1000;
    let write_hdr = |rig: &Rig, h: &Header| {
        use vm_memory::{Bytes, GuestAddress};
        rig.q
            .memory()
            .write_slice(&h.to_bytes(), GuestAddress(hdr_at))
            .unwrap();
    };
    let hdr = |len: u32| Desc {
        addr: hdr_at,
        len,
        writable: false,
    };
    let data = |addr: u64, len: u32, writable: bool| Desc {
        addr,
        len,
        writable,
    };
    let h44 = HEADER_LEN;
    let before = count(Event::MalformedTx);

    write_hdr(&rig, &guest(1, 80, Op::Request));
    // Header descriptor too short.
    rig.post_tx(&[hdr(20)]);
    // Header descriptor device-writable (wrong direction).
    rig.post_tx(&[Desc {
        writable: true,
        ..hdr(h44)
    }]);
    // Header outside guest memory, and straddling its end.
    rig.post_tx(&[data(MEM_SIZE + 0x1000, h44, false)]);
    rig.post_tx(&[data(MEM_SIZE - 10, h44, false)]);
    rig.post_tx(&[data(u64::MAX - 10, h44, false)]);

    write_hdr(&rig, &rw(1, 80, 100, 0));
    // Payload announced, chain ends after the header.
    rig.post_tx(&[hdr(h44)]);
    // Payload descriptor shorter than the announced length.
    rig.post_tx(&[hdr(h44), data(data_at, 10, false)]);
    // Payload descriptor device-writable.
    rig.post_tx(&[hdr(h44), data(data_at, 100, true)]);
    // Payload outside guest memory.
    rig.post_tx(&[hdr(h44), data(MEM_SIZE - 50, 100, false)]);
    rig.post_tx(&[hdr(h44), data(u64::MAX - 50, 100, false)]);
    // Payload over 64 KiB.
    write_hdr(&rig, &rw(1, 80, MAX_PAYLOAD as usize + 1, 0));
    rig.post_tx(&[hdr(h44), data(data_at, MAX_PAYLOAD + 1, false)]);
    write_hdr(&rig, &rw(1, 80, u32::MAX as usize, 0));
    rig.post_tx(&[hdr(h44), data(data_at, u32::MAX, false)]);

    assert!(count(Event::MalformedTx) >= before + 12);
    rig.pump(20);
    assert!(rig.q.recv().is_empty(), "nothing reached a connection");
    assert_eq!(rig.dev.connection_count(), 0);
}

#[test]
fn malformed_packet_on_a_connection_resets_it() {
    let mut rig = Rig::new();
    rig.give_rx(8);
    let (mut host, local) = rig.connect_handle(AGENT_PORT, GUEST_BUF);
    use vm_memory::{Bytes, GuestAddress};
    rig.q
        .memory()
        .write_slice(
            &rw(AGENT_PORT, local, 100, 0).to_bytes(),
            GuestAddress(SCRATCH),
        )
        .unwrap();
    rig.post_tx(&[
        Desc {
            addr: SCRATCH,
            len: HEADER_LEN,
            writable: false,
        },
        Desc {
            addr: SCRATCH + 0x1000,
            len: 10,
            writable: false,
        },
    ]);
    assert_eq!(rig.recv_one().header.op, Op::Rst as u16);
    assert_eof(&mut host);
}

#[test]
fn bad_cid_type_and_op_are_refused() {
    let mut rig = Rig::new();
    rig.give_rx(16);

    // Wrong CIDs: dropped without an answer (the packet is not the guest's to make).
    let before = count(Event::BadCid);
    for (src, dst) in [(4, 2), (2, 2), (3, 3), (3, 1), (u64::MAX, 2)] {
        let mut h = guest(1, 90, Op::Request);
        h.src_cid = src;
        h.dst_cid = dst;
        rig.tx(&h, &[]);
    }
    assert!(count(Event::BadCid) >= before + 5);
    rig.pump(20);
    assert!(rig.q.recv().is_empty());

    // Not a stream (e.g. SEQPACKET), unknown ops, payload on a control op: RST.
    let before = (count(Event::BadType), count(Event::BadOp));
    let mut seqpacket = guest(1, 90, Op::Request);
    seqpacket.type_ = 2;
    rig.tx(&seqpacket, &[]);
    let mut unknown = guest(1, 90, Op::Request);
    unknown.op = 99;
    rig.tx(&unknown, &[]);
    unknown.op = 0;
    rig.tx(&unknown, &[]);
    let mut request_with_payload = guest(1, 90, Op::Request);
    request_with_payload.len = 4;
    rig.tx(&request_with_payload, b"junk");
    let pkts = rig.recv_some();
    let mut all = pkts;
    while all.len() < 4 {
        all.extend(rig.recv_some());
    }
    assert!(all.iter().all(|p| p.header.op == Op::Rst as u16), "{all:?}");
    assert!(count(Event::BadType) > before.0);
    assert!(count(Event::BadOp) >= before.1 + 3);
    assert_eq!(rig.dev.connection_count(), 0);
}

#[test]
fn malformed_rx_buffers_are_returned_unused() {
    let mut rig = Rig::new();
    let listener = UnixListener::bind(format!("{}_95", rig.path.display())).unwrap();
    let before = count(Event::MalformedRx);
    let w = |addr: u64, len: u32| Desc {
        addr,
        len,
        writable: true,
    };
    let h44 = HEADER_LEN;
    // Read-only header; read-only payload; header only; header too short; outside memory;
    // payload over 64 KiB in a descriptor of its own.
    let bad: Vec<Vec<Desc>> = vec![
        vec![Desc {
            writable: false,
            ..w(SCRATCH, h44)
        }],
        vec![
            w(SCRATCH, h44),
            Desc {
                writable: false,
                ..w(SCRATCH + 0x1000, 4096)
            },
        ],
        vec![w(SCRATCH, h44)],
        vec![w(SCRATCH, 10)],
        vec![w(MEM_SIZE - 8, h44), w(SCRATCH, 4096)],
        vec![w(SCRATCH, h44), w(MEM_SIZE - 100, 4096)],
        vec![w(SCRATCH, h44), w(SCRATCH + 0x1000, MAX_PAYLOAD + 1)],
    ];
    for descs in &bad {
        rig.q.post(RX_QUEUE, descs).unwrap();
    }
    rig.q.give_rx(1);
    let mut req = guest(5, 95, Op::Request);
    req.buf_alloc = GUEST_BUF;
    rig.tx(&req, &[]);
    let got = rig.q.recv();
    assert_eq!(got.len(), bad.len() + 1);
    assert!(got[..bad.len()].iter().all(|p| p.used_len == 0), "{got:?}");
    assert_eq!(got[bad.len()].header.op, Op::Response as u16);
    assert!(count(Event::MalformedRx) >= before + 7);
    let _ = listener.accept().unwrap();
}

#[test]
fn single_descriptor_rx_buffers_are_used() {
    let mut rig = Rig::new();
    rig.give_rx(1);
    let handle = rig.dev.handle();
    let waiter = thread::spawn(move || handle.connect(AGENT_PORT));
    let req = rig.recv_one();
    assert_eq!(req.header.op, Op::Request as u16);
    let local = req.header.src_port;
    rig.tx(&guest(AGENT_PORT, local, Op::Response), &[]);
    let mut host = waiter.join().unwrap().unwrap();

    // Header and payload in one 52-byte descriptor: 8 bytes of payload fit.
    rig.q
        .post(
            RX_QUEUE,
            &[Desc {
                addr: SCRATCH,
                len: HEADER_LEN + 8,
                writable: true,
            }],
        )
        .unwrap();
    host.write_all(b"0123456789").unwrap();
    let pkt = rig.recv_one();
    assert_eq!(pkt.data, b"01234567");
    assert_eq!(pkt.used_len as usize, HEADER_SIZE + 8);
    rig.give_rx(1);
    assert_eq!(rig.recv_one().data, b"89");
}

#[test]
fn connection_limit_refuses_every_kind_of_connect() {
    let mut rig = Rig::new();
    rig.dev.set_max_connections(2);
    rig.give_rx(16);
    let listener = UnixListener::bind(format!("{}_99", rig.path.display())).unwrap();
    let _a = rig.connect_handle(AGENT_PORT, GUEST_BUF);
    let _b = rig.connect_guest(&listener, 99, 7);
    let before = count(Event::ConnectionLimit);

    // In-process: an error at once, nothing reaches the guest.
    let handle = rig.dev.handle();
    let waiter = thread::spawn(move || handle.connect(AGENT_PORT));
    while !waiter.is_finished() {
        rig.pump(10);
    }
    let err = waiter.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("2 connections"), "{err}");
    // Hybrid: the socket is closed.
    let mut client = UnixStream::connect(&rig.path).unwrap();
    rig.pump(20);
    assert_closed(&mut client);
    // Guest: RST.
    rig.tx(&guest(8, 99, Op::Request), &[]);
    assert_eq!(rig.recv_one().header.op, Op::Rst as u16);
    assert!(count(Event::ConnectionLimit) >= before + 3);
    assert_eq!(rig.dev.connection_count(), 2);
}

#[test]
fn guest_close_with_host_bytes_unread_is_a_clean_eof() {
    let mut rig = Rig::new();
    rig.give_rx(8);
    // The guest grants no credit: what the host sends is never read.
    let (mut host, local) = rig.connect_handle(AGENT_PORT, 0);
    host.write_all(b"never read").unwrap();
    rig.pump(20);
    let mut shut = guest(AGENT_PORT, local, Op::Shutdown);
    shut.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    shut.buf_alloc = 0;
    rig.tx(&shut, &[]);
    let ops: Vec<u16> = rig.recv_some().iter().map(|p| p.header.op).collect();
    assert!(ops.contains(&(Op::Rst as u16)), "{ops:?}");
    assert_eq!(rig.dev.connection_count(), 0);
    assert_eof(&mut host);
}
