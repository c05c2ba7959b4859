//! One connection from the host: a non-blocking socket, the handshake preamble being
//! collected, a frame decoder for what arrives and a bounded queue for what leaves.
//!
//! Writing never blocks the loop: frames are queued and written as the socket accepts
//! them. The queue's bound is enforced by the producers (see [`Conn::has_room`]): child
//! output is only read while the connection it goes to has room.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{send, MsgFlags};
use protocol::handshake::{Preamble, PreambleBuf};
use protocol::{encode, FrameDecoder, Message};

use super::buffer::ByteQueue;
use super::poller::{Interest, Watched};

/// Output queued on a connection above which no more child output is read for it.
pub const OUT_HIGH_WATER: usize = 128 * 1024;

/// What a read from the socket gave.
#[derive(Debug)]
pub enum Received {
    /// This many bytes, at the start of the read buffer.
    Data(usize),
    /// Nothing more for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
    /// The connection failed.
    Failed(io::Error),
}

/// A connection's socket with its buffers.
#[derive(Debug)]
pub struct Conn {
    sock: Watched<OwnedFd>,
    /// `Some` until the peer's handshake preamble is complete.
    preamble: Option<PreambleBuf>,
    decoder: FrameDecoder,
    out: ByteQueue,
    /// Bytes were queued since the last write attempt.
    dirty: bool,
}

impl Conn {
    /// A freshly accepted connection, waiting for the peer's preamble.
    pub fn new(sock: Watched<OwnedFd>) -> Self {
        Self {
            sock,
            preamble: Some(PreambleBuf::new()),
            decoder: FrameDecoder::new(),
            out: ByteQueue::new(),
            dirty: false,
        }
    }

    /// Reads once from the socket into `buf`.
    pub fn receive(&self, buf: &mut [u8]) -> Received {
        loop {
            return match nix::unistd::read(self.sock.get().as_raw_fd(), buf) {
                Ok(0) => Received::Eof,
                Ok(n) => Received::Data(n),
                Err(Errno::EAGAIN) => Received::WouldBlock,
                Err(Errno::EINTR) => continue,
                Err(e) => Received::Failed(e.into()),
            };
        }
    }

    /// Takes received bytes: first into the preamble, then into the frame decoder.
    /// Returns the peer's preamble when these bytes completed it.
    pub fn take(&mut self, data: &[u8]) -> Option<Preamble> {
        let Some(preamble) = &mut self.preamble else {
            self.decoder.feed(data);
            return None;
        };
        let used = preamble.feed(data);
        let complete = *preamble.get()?;
        self.preamble = None;
        self.decoder.feed(&data[used..]);
        Some(complete)
    }

    /// Whether the handshake preamble has not been received yet, and how much of it came.
    pub fn preamble_progress(&self) -> Option<usize> {
        self.preamble
            .as_ref()
            .map(|p| protocol::PREAMBLE_LEN - p.missing())
    }

    /// The next complete message received, if any (see [`FrameDecoder::next_message`]).
    pub fn next_message<M: Message>(&mut self) -> Result<Option<M>, protocol::Error> {
        self.decoder.next_message()
    }

    /// After the peer closed: an error if it stopped in the middle of a frame.
    pub fn finish_input(&self) -> Result<(), protocol::Error> {
        self.decoder.finish()
    }

    /// Queues raw bytes (the handshake answer).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.out.push(bytes);
        self.dirty = true;
    }

    /// Queues one message. Our own messages always encode; if one did not (a bug), it is
    /// reported and dropped rather than sent half-way.
    pub fn send<M: Message>(&mut self, message: &M) {
        match encode(message) {
            Ok(frame) => self.send_raw(&frame),
            Err(e) => crate::console::line(&format!("error: not sending a message: {e}")),
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Whether child output may still be read for this connection.
    pub fn has_room(&self) -> bool {
        self.out.len() < OUT_HIGH_WATER
    }

    /// Writes what the socket takes now; `Err` when the connection is broken.
    pub fn flush(&mut self) -> io::Result<()> {
        self.dirty = false;
        while !self.out.is_empty() {
            match send(
                self.sock.get().as_raw_fd(),
                self.out.front(),
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => self.out.consume(n),
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    self.out.clear();
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Whether bytes were queued since the last [`flush`](Self::flush).
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Writes everything queued, waiting for the socket as needed but not past
    /// `deadline`. `Ok(false)` if the deadline came first.
    pub fn flush_until(&mut self, deadline: Instant) -> io::Result<bool> {
        loop {
            self.flush()?;
            if self.out.is_empty() {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.sock.get().as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Registers what the loop waits for on this socket: reading when `read`, writing
    /// while output is queued.
    pub fn watch(&mut self, read: bool) -> io::Result<()> {
        self.sock.set(Interest {
            read,
            write: !self.out.is_empty(),
        })
    }
}
