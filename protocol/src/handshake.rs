//! The handshake: the first 8 bytes each way on every connection.
//!
//! The initiator (the host side) sends a preamble naming the protocol version and the kind of
//! connection it wants; the acceptor (the guest agent) reads it, always answers with its own
//! preamble carrying a status byte, and goes on only if the status is
//! [`Status::Accepted`]. Each side thus learns the other's version, and a mismatch is
//! reported on both sides as [`Error::VersionMismatch`] naming both.
//!
//! ```text
//! offset  size  field
//!      0     4  magic     "S1KV" (53 31 4b 56)
//!      4     2  version   u16, big endian: PROTOCOL_VERSION
//!      6     1  kind      1 = control, 2 = exec (the acceptor echoes the kind asked for)
//!      7     1  status    initiator: 0 (ignored); acceptor: a `Status`
//! ```
//!
//! Blocking streams use [`connect`] and [`accept`]; event loops collect the 8 bytes with a
//! [`PreambleBuf`] and use the pure functions [`hello`], [`answer`] and [`check_reply`].

use std::fmt;
use std::io::{Read, Write};

use crate::error::Error;
use crate::frame::read_full;

/// First four bytes of every preamble.
pub const MAGIC: [u8; 4] = *b"S1KV";

/// The protocol version this crate implements. Both sides must speak exactly the same one.
pub const PROTOCOL_VERSION: u16 = 1;

/// Length of a preamble, in bytes.
pub const PREAMBLE_LEN: usize = 8;

/// A preamble as it travels.
pub type Preamble = [u8; PREAMBLE_LEN];

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectionKind {
    /// The pod's control connection (start, output, exit, stop, shutdown).
    Control = 1,
    /// One exec session (`enter`).
    Exec = 2,
}

impl ConnectionKind {
    /// The kind's byte in a preamble.
    pub fn as_byte(self) -> u8 {
        self as u8
    }

    /// The kind a preamble byte stands for, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Control),
            2 => Some(Self::Exec),
            _ => None,
        }
    }
}

impl fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Control => "control",
            Self::Exec => "exec",
        })
    }
}

/// The acceptor's verdict, in byte 7 of its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// The connection goes on with frames.
    Accepted = 0,
    /// The versions differ; the reply's version field is the acceptor's.
    VersionMismatch = 1,
    /// The kind is unknown or not served by this acceptor (now).
    UnsupportedKind = 2,
    /// The initiator's preamble did not start with [`MAGIC`].
    BadMagic = 3,
}

impl Status {
    /// The status's byte in a preamble.
    pub fn as_byte(self) -> u8 {
        self as u8
    }
}

/// Builds a preamble.
fn preamble(kind: u8, status: Status) -> Preamble {
    let [v0, v1] = PROTOCOL_VERSION.to_be_bytes();
    let [m0, m1, m2, m3] = MAGIC;
    [m0, m1, m2, m3, v0, v1, kind, status.as_byte()]
}

/// Splits a preamble into magic, version, kind byte and status byte.
fn fields(p: &Preamble) -> ([u8; 4], u16, u8, u8) {
    let [m0, m1, m2, m3, v0, v1, kind, status] = *p;
    ([m0, m1, m2, m3], u16::from_be_bytes([v0, v1]), kind, status)
}

/// The initiator's preamble asking for a connection of `kind`.
pub fn hello(kind: ConnectionKind) -> Preamble {
    preamble(kind.as_byte(), Status::Accepted)
}

/// What an acceptor does with an initiator's preamble: send `reply` in every case, then go
/// on with frames if `outcome` is `Ok`, or close the connection reporting the error.
#[derive(Debug)]
pub struct Answer {
    /// The preamble to send back (always sent, so the initiator learns why it was refused).
    pub reply: Preamble,
    /// The accepted kind, or why the connection is refused.
    pub outcome: Result<ConnectionKind, Error>,
}

/// The acceptor's side: judges the initiator's preamble; `accepted` lists the kinds served.
pub fn answer(received: &Preamble, accepted: &[ConnectionKind]) -> Answer {
    let (magic, theirs, kind_byte, _status) = fields(received);
    let (status, outcome) = if magic != MAGIC {
        (Status::BadMagic, Err(Error::BadMagic { found: magic }))
    } else if theirs != PROTOCOL_VERSION {
        (
            Status::VersionMismatch,
            Err(Error::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs,
            }),
        )
    } else {
        match ConnectionKind::from_byte(kind_byte).filter(|kind| accepted.contains(kind)) {
            Some(kind) => (Status::Accepted, Ok(kind)),
            None => (
                Status::UnsupportedKind,
                Err(Error::UnsupportedConnectionKind { kind: kind_byte }),
            ),
        }
    };
    Answer {
        reply: preamble(kind_byte, status),
        outcome,
    }
}

/// The initiator's side: checks the acceptor's reply to a request for `requested`.
pub fn check_reply(reply: &Preamble, requested: ConnectionKind) -> Result<(), Error> {
    let (magic, theirs, kind_byte, status) = fields(reply);
    if magic != MAGIC {
        return Err(Error::BadMagic { found: magic });
    }
    if theirs != PROTOCOL_VERSION {
        return Err(Error::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs,
        });
    }
    if status == Status::UnsupportedKind.as_byte() {
        return Err(Error::UnsupportedConnectionKind { kind: kind_byte });
    }
    if status != Status::Accepted.as_byte() {
        return Err(Error::Refused { status });
    }
    if kind_byte != requested.as_byte() {
        return Err(Error::KindMismatch {
            requested,
            answered: kind_byte,
        });
    }
    Ok(())
}

/// Reads a whole preamble from a blocking stream.
fn read_preamble<R: Read + ?Sized>(reader: &mut R) -> Result<Preamble, Error> {
    let mut p = [0u8; PREAMBLE_LEN];
    let got =
        read_full(reader, &mut p).map_err(|e| Error::io("reading the handshake preamble", e))?;
    if got < PREAMBLE_LEN {
        return Err(Error::UnexpectedEof {
            what: "the handshake preamble",
            got,
            expected: PREAMBLE_LEN,
        });
    }
    Ok(p)
}

/// Writes a preamble to a blocking stream.
fn write_preamble<W: Write + ?Sized>(writer: &mut W, p: &Preamble) -> Result<(), Error> {
    writer
        .write_all(p)
        .map_err(|e| Error::io("writing the handshake preamble", e))?;
    writer
        .flush()
        .map_err(|e| Error::io("writing the handshake preamble", e))
}

/// Initiator's handshake on a blocking stream: sends [`hello`], waits for the reply and
/// checks it.
pub fn connect<S: Read + Write + ?Sized>(
    stream: &mut S,
    kind: ConnectionKind,
) -> Result<(), Error> {
    write_preamble(stream, &hello(kind))?;
    let reply = read_preamble(stream)?;
    check_reply(&reply, kind)
}

/// Acceptor's handshake on a blocking stream: reads the initiator's preamble, replies, and
/// returns the accepted kind. On error the reply has been sent; close the stream.
pub fn accept<S: Read + Write + ?Sized>(
    stream: &mut S,
    accepted: &[ConnectionKind],
) -> Result<ConnectionKind, Error> {
    let received = read_preamble(stream)?;
    let Answer { reply, outcome } = answer(&received, accepted);
    write_preamble(stream, &reply)?;
    outcome
}

/// Collects a preamble from bytes as they arrive on a non-blocking socket.
#[derive(Debug, Default)]
pub struct PreambleBuf {
    /// Bytes received so far.
    bytes: Preamble,
    /// How many of `bytes` are filled.
    len: usize,
}

impl PreambleBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes what it still needs from `data` and returns how many bytes it took; the rest
    /// of `data` (frames that followed the preamble) belongs to the frame decoder.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let take = (PREAMBLE_LEN - self.len).min(data.len());
        self.bytes[self.len..self.len + take].copy_from_slice(&data[..take]);
        self.len += take;
        take
    }

    /// How many more bytes are needed (read exactly this many to never over-read).
    pub fn missing(&self) -> usize {
        PREAMBLE_LEN - self.len
    }

    /// The preamble once all of it arrived.
    pub fn get(&self) -> Option<&Preamble> {
        (self.len == PREAMBLE_LEN).then_some(&self.bytes)
    }

    /// To be called when the peer closed its side: [`Error::UnexpectedEof`] unless the
    /// preamble is complete.
    pub fn finish(&self) -> Result<&Preamble, Error> {
        self.get().ok_or(Error::UnexpectedEof {
            what: "the handshake preamble",
            got: self.len,
            expected: PREAMBLE_LEN,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Cursor};

    use super::*;

    /// An in-memory duplex stream: reads from `input`, writes to `output`.
    struct Duplex {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Duplex {
        fn new(input: &[u8]) -> Self {
            Self {
                input: Cursor::new(input.to_vec()),
                output: Vec::new(),
            }
        }
    }

    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const BOTH: &[ConnectionKind] = &[ConnectionKind::Control, ConnectionKind::Exec];

    fn with_version(mut p: Preamble, version: u16) -> Preamble {
        p[4..6].copy_from_slice(&version.to_be_bytes());
        p
    }

    #[test]
    fn preamble_bytes_are_as_specified() {
        assert_eq!(
            hello(ConnectionKind::Control),
            [b'S', b'1', b'K', b'V', 0, 1, 1, 0]
        );
        assert_eq!(
            hello(ConnectionKind::Exec),
            [0x53, 0x31, 0x4b, 0x56, 0, 1, 2, 0]
        );
    }

    #[test]
    fn handshake_ok_both_sides() {
        for kind in [ConnectionKind::Control, ConnectionKind::Exec] {
            let mut agent = Duplex::new(&hello(kind));
            assert_eq!(accept(&mut agent, BOTH).unwrap(), kind);
            assert_eq!(
                agent.output,
                hello(kind),
                "an accepting reply mirrors the hello"
            );

            let mut host = Duplex::new(&agent.output);
            connect(&mut host, kind).unwrap();
            assert_eq!(host.output, hello(kind));
        }
    }

    #[test]
    fn handshake_over_a_real_socket_pair() {
        let (mut host, mut agent) = std::os::unix::net::UnixStream::pair().unwrap();
        let acceptor = std::thread::spawn(move || accept(&mut agent, BOTH).unwrap());
        connect(&mut host, ConnectionKind::Exec).unwrap();
        assert_eq!(acceptor.join().unwrap(), ConnectionKind::Exec);
    }

    #[test]
    fn version_mismatch_is_reported_on_both_sides_with_both_versions() {
        let newer_host = with_version(hello(ConnectionKind::Control), 7);
        let mut agent = Duplex::new(&newer_host);
        let err = accept(&mut agent, BOTH).unwrap_err();
        assert!(
            matches!(err, Error::VersionMismatch { ours: 1, theirs: 7 }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "protocol version mismatch: this side speaks version 1, the peer speaks version 7 \
             (host and guest agent come from different builds)"
        );
        // The agent still answered, with its own version and the refusal.
        assert_eq!(
            agent.output,
            [
                b'S',
                b'1',
                b'K',
                b'V',
                0,
                1,
                1,
                Status::VersionMismatch.as_byte()
            ]
        );

        // A host talking to an agent of another version sees the agent's version.
        let newer_agent = with_version(agent.output.clone().try_into().unwrap(), 2);
        let mut host = Duplex::new(&newer_agent);
        let err = connect(&mut host, ConnectionKind::Control).unwrap_err();
        assert!(
            matches!(err, Error::VersionMismatch { ours: 1, theirs: 2 }),
            "{err:?}"
        );
    }

    #[test]
    fn bad_magic_is_rejected_on_both_sides() {
        let mut agent = Duplex::new(b"GET / HT");
        let err = accept(&mut agent, BOTH).unwrap_err();
        assert!(
            matches!(err, Error::BadMagic { found } if &found == b"GET "),
            "{err:?}"
        );
        assert_eq!(agent.output[7], Status::BadMagic.as_byte());

        let mut host = Duplex::new(b"SSH-2.0-");
        let err = connect(&mut host, ConnectionKind::Control).unwrap_err();
        assert!(
            matches!(err, Error::BadMagic { found } if &found == b"SSH-"),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_preamble_is_unexpected_eof() {
        let mut agent = Duplex::new(&hello(ConnectionKind::Control)[..5]);
        let err = accept(&mut agent, BOTH).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedEof {
                    what: "the handshake preamble",
                    got: 5,
                    expected: 8
                }
            ),
            "{err:?}"
        );
        assert!(
            agent.output.is_empty(),
            "no reply to a preamble that never completed"
        );

        let mut host = Duplex::new(&[]);
        let err = connect(&mut host, ConnectionKind::Exec).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedEof {
                    got: 0,
                    expected: 8,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_or_unserved_kind_is_refused_and_the_initiator_learns_it() {
        let mut unknown = hello(ConnectionKind::Control);
        unknown[6] = 9;
        let Answer { reply, outcome } = answer(&unknown, BOTH);
        assert!(matches!(
            outcome,
            Err(Error::UnsupportedConnectionKind { kind: 9 })
        ));
        assert_eq!(reply[6..], [9, Status::UnsupportedKind.as_byte()]);

        let Answer { reply, outcome } =
            answer(&hello(ConnectionKind::Control), &[ConnectionKind::Exec]);
        assert!(matches!(
            outcome,
            Err(Error::UnsupportedConnectionKind { kind: 1 })
        ));
        let err = check_reply(&reply, ConnectionKind::Control).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedConnectionKind { kind: 1 }),
            "{err:?}"
        );
    }

    #[test]
    fn reply_for_another_kind_or_unknown_status_is_an_error() {
        let err = check_reply(&hello(ConnectionKind::Exec), ConnectionKind::Control).unwrap_err();
        assert!(
            matches!(
                err,
                Error::KindMismatch {
                    requested: ConnectionKind::Control,
                    answered: 2
                }
            ),
            "{err:?}"
        );
        let mut odd = hello(ConnectionKind::Control);
        odd[7] = Status::BadMagic.as_byte();
        let err = check_reply(&odd, ConnectionKind::Control).unwrap_err();
        assert!(matches!(err, Error::Refused { status: 3 }), "{err:?}");
    }

    #[test]
    fn preamble_buf_collects_split_input_and_leaves_the_rest() {
        let mut wire = hello(ConnectionKind::Exec).to_vec();
        wire.extend_from_slice(b"\x00\x00\x00\x02{}");
        let mut buf = PreambleBuf::new();
        assert_eq!(buf.feed(&wire[..3]), 3);
        assert!(buf.get().is_none());
        assert_eq!(buf.missing(), 5);
        assert!(matches!(
            buf.finish(),
            Err(Error::UnexpectedEof {
                got: 3,
                expected: 8,
                ..
            })
        ));
        let taken = buf.feed(&wire[3..]);
        assert_eq!(taken, 5);
        assert_eq!(&wire[3 + taken..], b"\x00\x00\x00\x02{}");
        assert_eq!(buf.get(), Some(&hello(ConnectionKind::Exec)));
        assert_eq!(buf.feed(b"more"), 0);
        assert_eq!(
            answer(buf.finish().unwrap(), BOTH).outcome.unwrap(),
            ConnectionKind::Exec
        );
    }
}
