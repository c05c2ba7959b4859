//! `make bench` (vsock): the vsock backend alone — packets per second and MiB/s through the
//! device and its muxer, driven with mock queues in real guest memory against a host Unix
//! socket, next to a plain Unix socketpair moving the same bytes in the same chunks, in
//! the same run (interleaved, so machine noise hits both alike). Prints the medians and
//! the ratio vsock / socketpair (goal >= 0.5).
//!
//! Both directions, two packet sizes. The "guest" here is this thread: it writes payloads
//! into guest memory and posts them (guest → host), or takes them out of RX buffers
//! (host → guest), honours the device's credit and grants its own, as the Linux driver
//! does. A first, untimed round checks that every byte arrives intact.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Instant;

use vmm::devices::virtio::vsock::packet::{Header, Op, MAX_PAYLOAD};
use vmm::devices::virtio::vsock::testing::Harness;
use vmm::devices::virtio::vsock::{GUEST_CID, RX_QUEUE, TX_QUEUE};

const PORT: u32 = 1024;
/// The guest's advertised receive buffer (Linux's default is 256 KiB).
const GUEST_BUF: u32 = 256 * 1024;
const ROUNDS: usize = 5;

#[derive(Clone, Copy)]
enum Direction {
    GuestToHost,
    HostToGuest,
}

/// One measured transfer.
struct Run {
    secs: f64,
    packets: u64,
    bytes: u64,
}

/// The stream's byte at `pos`: a pattern that does not repeat at chunk boundaries.
fn byte_at(pos: u64) -> u8 {
    u8::try_from(pos % 251).unwrap_or(0)
}

/// The pattern, precomputed: any `len <= chunk` bytes from any position are a slice of
/// it, so producing payload costs no more than a real sender's copy.
struct Pattern(Vec<u8>);

impl Pattern {
    fn new(chunk: usize) -> Self {
        Pattern((0..chunk as u64 + 251).map(byte_at).collect())
    }

    fn at(&self, pos: u64, len: usize) -> &[u8] {
        let start = usize::try_from(pos % 251).unwrap_or(0);
        &self.0[start..start + len]
    }
}

fn check(bytes: &[u8], pos: u64) {
    for (i, b) in bytes.iter().enumerate() {
        assert_eq!(
            *b,
            byte_at(pos + i as u64),
            "byte {} corrupted",
            pos + i as u64
        );
    }
}

/// Reads `total` bytes from `stream` in `chunk`-sized reads (checking them if `verify`).
fn drain(mut stream: UnixStream, total: u64, chunk: usize, verify: bool) -> u64 {
    let mut buf = vec![0u8; chunk];
    let mut got = 0u64;
    while got < total {
        let n = stream.read(&mut buf).expect("reading");
        assert!(n > 0, "early end of stream at {got}");
        if verify {
            check(&buf[..n], got);
        }
        got += n as u64;
    }
    got
}

/// Writes `total` pattern bytes to `stream` in `chunk`-sized writes.
fn fill(mut stream: UnixStream, total: u64, chunk: usize) -> UnixStream {
    let pattern = Pattern::new(chunk);
    let mut sent = 0u64;
    while sent < total {
        let n = usize::try_from(total - sent).unwrap_or(chunk).min(chunk);
        stream.write_all(pattern.at(sent, n)).expect("writing");
        sent += n as u64;
    }
    stream
}

/// The peer: the same bytes in the same chunks through a socketpair (symmetric, so one
/// direction serves both).
fn plain(chunk: usize, total: u64) -> Run {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let start = Instant::now();
    let writer = thread::spawn(move || fill(a, total, chunk));
    let bytes = drain(b, total, chunk, false);
    drop(writer.join().expect("writer"));
    Run {
        secs: start.elapsed().as_secs_f64(),
        packets: total.div_ceil(chunk as u64),
        bytes,
    }
}

fn guest_header(local: u32, op: Op) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: 2,
        src_port: PORT,
        dst_port: local,
        type_: 1,
        op: op as u16,
        buf_alloc: GUEST_BUF,
        ..Header::default()
    }
}

fn vsock_guest_to_host(chunk: usize, total: u64, verify: bool) -> Run {
    let mut h = Harness::new().expect("harness");
    let (host, request) = h.connect_from_host(PORT, GUEST_BUF).expect("connect");
    let local = request.src_port;
    let mut peer_buf = request.buf_alloc;
    let mut peer_fwd = request.fwd_cnt;
    let reader = thread::spawn(move || drain(host, total, chunk, verify));
    h.queues.give_rx(usize::MAX);
    let pattern = Pattern::new(chunk);
    let (mut sent, mut packets) = (0u64, 0u64);
    let start = Instant::now();
    while sent < total {
        let mut posted = false;
        loop {
            // sent and peer_fwd are both u32 counters on the wire.
            let in_flight = u32::try_from(sent & 0xffff_ffff)
                .unwrap_or(0)
                .wrapping_sub(peer_fwd);
            let credit = u64::from(peer_buf.saturating_sub(in_flight));
            let n = (chunk as u64).min(total - sent).min(credit);
            if n == 0 || h.queues.free_descriptors(TX_QUEUE) < 2 {
                break;
            }
            let n = usize::try_from(n).unwrap_or(chunk);
            let mut hdr = guest_header(local, Op::Rw);
            hdr.len = u32::try_from(n).unwrap_or(0);
            h.queues
                .send(&hdr, pattern.at(sent, n))
                .expect("TX descriptors");
            sent += n as u64;
            packets += 1;
            posted = true;
        }
        if posted {
            h.kick(TX_QUEUE).expect("TX");
            h.queues.take_used(TX_QUEUE);
        }
        let mut heard = false;
        for p in h.queues.recv() {
            peer_buf = p.header.buf_alloc;
            peer_fwd = p.header.fwd_cnt;
            heard = true;
        }
        if heard {
            h.queues.give_rx(usize::MAX);
            h.kick(RX_QUEUE).expect("RX");
        }
        if !posted && !heard {
            // Out of credit: wait for the host to drain and the device to say so.
            h.pump(100).expect("events");
        }
    }
    // The device's event loop keeps running until the host has everything.
    while !reader.is_finished() {
        h.pump(10).expect("events");
    }
    let bytes = reader.join().expect("reader");
    Run {
        secs: start.elapsed().as_secs_f64(),
        packets,
        bytes,
    }
}

fn vsock_host_to_guest(chunk: usize, total: u64, verify: bool) -> Run {
    let mut h = Harness::new().expect("harness");
    let (host, request) = h.connect_from_host(PORT, GUEST_BUF).expect("connect");
    let local = request.src_port;
    h.queues.give_rx(usize::MAX);
    h.kick(RX_QUEUE).expect("RX");
    let start = Instant::now();
    let writer = thread::spawn(move || fill(host, total, chunk));
    let (mut got, mut packets, mut granted) = (0u64, 0u64, 0u64);
    let mut idle = false;
    while got < total {
        h.pump(if idle { 100 } else { 0 }).expect("events");
        let mut asked = false;
        let pkts = h.queues.recv();
        idle = pkts.is_empty();
        for p in pkts {
            match Op::from_u16(p.header.op) {
                Some(Op::Rw) => {
                    if verify {
                        check(&p.data, got);
                    }
                    got += p.data.len() as u64;
                    packets += 1;
                }
                Some(Op::CreditRequest) => asked = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        // Consumed at once: grant the room back every half buffer, or when asked.
        if asked || got - granted >= u64::from(GUEST_BUF / 2) {
            let mut update = guest_header(local, Op::CreditUpdate);
            update.fwd_cnt = u32::try_from(got & 0xffff_ffff).unwrap_or(0);
            h.queues.send(&update, &[]).expect("TX descriptors");
            h.kick(TX_QUEUE).expect("TX");
            h.queues.take_used(TX_QUEUE);
            granted = got;
        }
        if !idle {
            h.queues.give_rx(usize::MAX);
            h.kick(RX_QUEUE).expect("RX");
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(writer.join().expect("writer"));
    Run {
        secs: elapsed,
        packets,
        bytes: got,
    }
}

fn vsock(direction: Direction, chunk: usize, total: u64, verify: bool) -> Run {
    match direction {
        Direction::GuestToHost => vsock_guest_to_host(chunk, total, verify),
        Direction::HostToGuest => vsock_host_to_guest(chunk, total, verify),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

fn main() {
    println!("vsock backend throughput (mock queues, host Unix socket) vs a plain socketpair");
    println!("median of {ROUNDS} interleaved rounds; the first, untimed round checks every byte");
    let big = MAX_PAYLOAD as usize;
    let cases = [
        (Direction::GuestToHost, "guest->host", big, 256u64 << 20),
        (Direction::HostToGuest, "host->guest", big, 256u64 << 20),
        (Direction::GuestToHost, "guest->host", 4096, 32u64 << 20),
        (Direction::HostToGuest, "host->guest", 4096, 32u64 << 20),
    ];
    let mut worst = f64::INFINITY;
    for (direction, name, chunk, total) in cases {
        let check = vsock(direction, chunk, 8 << 20, true);
        assert_eq!(check.bytes, 8 << 20);
        let (mut v_rate, mut v_pps, mut p_rate, mut p_pps) = (vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            let v = vsock(direction, chunk, total, false);
            let p = plain(chunk, total);
            assert_eq!((v.bytes, p.bytes), (total, total));
            let mib = |r: &Run| r.bytes as f64 / 1_048_576.0 / r.secs;
            v_rate.push(mib(&v));
            v_pps.push(v.packets as f64 / v.secs);
            p_rate.push(mib(&p));
            p_pps.push(p.packets as f64 / p.secs);
        }
        let (v, p) = (median(v_rate), median(p_rate));
        let ratio = v / p;
        worst = worst.min(ratio);
        println!(
            "{name:<11} {:>5} KiB packets: vsock {v:>8.1} MiB/s {:>9.0} pkt/s | socketpair \
             {p:>8.1} MiB/s {:>9.0} writes/s | ratio {ratio:.2}",
            chunk / 1024,
            median(v_pps),
            median(p_pps),
        );
    }
    println!(
        "vsock/socketpair worst ratio {worst:.2} (goal >= 0.5): {}",
        if worst >= 0.5 { "met" } else { "NOT met" }
    );
}
