//! Every way a connection can fail: [`Error`] for the connection as a whole, and
//! [`ValidationError`] for a message that parsed but breaks a rule of the protocol.
//!
//! All of them are fatal for the connection that produced them (see "Errors" in the crate
//! documentation): the caller logs the error, may send a last `error` message, and closes.

use std::io;

use crate::handshake::ConnectionKind;

/// A connection-level failure: I/O, framing, handshake or a bad message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on the connection failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "reading a frame header".
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The connection ended in the middle of a preamble or a frame.
    #[error("connection closed in the middle of {what} ({got} of {expected} bytes received)")]
    UnexpectedEof {
        /// What was being read: "the handshake preamble", "a frame header", "a frame body".
        what: &'static str,
        /// Bytes of it that arrived.
        got: usize,
        /// Bytes it should have had.
        expected: usize,
    },

    /// A frame's length exceeds [`MAX_FRAME_LEN`](crate::frame::MAX_FRAME_LEN). On the
    /// receiving side this is detected from the header alone, before anything is allocated.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced (or, when sending, the actual) body length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A frame's body is not a message of the expected kind: bad JSON, an unknown `type`,
    /// an unknown or missing field, a value of the wrong type, bad base64.
    #[error("malformed message: {0}")]
    Malformed(#[source] serde_json::Error),

    /// A message parsed but breaks a rule of the protocol (empty argv, NUL byte, …).
    #[error("invalid message: {0}")]
    Invalid(#[from] ValidationError),

    /// A message could not be serialized (cannot happen with this crate's types; kept so
    /// that encoding never panics).
    #[error("cannot encode message: {0}")]
    Encode(#[source] serde_json::Error),

    /// The peer's preamble does not start with [`MAGIC`](crate::handshake::MAGIC): it does
    /// not speak this protocol at all.
    #[error("bad handshake magic {found:02x?}: the peer does not speak the stage1-kvm protocol")]
    BadMagic {
        /// The four bytes received instead of the magic.
        found: [u8; 4],
    },

    /// The peer speaks another version of the protocol.
    #[error(
        "protocol version mismatch: this side speaks version {ours}, the peer speaks version \
         {theirs} (host and guest agent come from different builds)"
    )]
    VersionMismatch {
        /// [`PROTOCOL_VERSION`](crate::handshake::PROTOCOL_VERSION) of this side.
        ours: u16,
        /// The version in the peer's preamble.
        theirs: u16,
    },

    /// The acceptor does not serve the requested kind of connection (unknown kind byte, or
    /// a kind it does not accept here or now). Seen by both sides.
    #[error("connection kind {kind} is not accepted by the agent")]
    UnsupportedConnectionKind {
        /// The kind byte that was asked for.
        kind: u8,
    },

    /// The acceptor accepted, but a different connection kind than the one asked for.
    #[error("asked for a {requested} connection, the peer accepted a {answered} connection")]
    KindMismatch {
        /// The kind this side asked for.
        requested: ConnectionKind,
        /// The kind byte in the peer's reply.
        answered: u8,
    },

    /// The acceptor's reply carries a refusal status this side cannot explain otherwise.
    #[error("the peer refused the connection (handshake status {status})")]
    Refused {
        /// The status byte of the reply.
        status: u8,
    },
}

impl Error {
    /// An [`Error::Io`] with its context.
    pub(crate) fn io(context: &'static str, source: io::Error) -> Self {
        Self::Io { context, source }
    }
}

/// A rule of the protocol that a well-formed message breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `argv` has no elements.
    #[error("argv is empty")]
    EmptyArgv,

    /// `argv[0]`, the program, is the empty string.
    #[error("argv[0] (the program) is empty")]
    EmptyProgram,

    /// A string that becomes a C string (argument, environment, path, name) contains NUL.
    #[error("{field} contains a NUL byte")]
    NulByte {
        /// Where, e.g. `process.argv[1]`.
        field: String,
    },

    /// An environment variable name is empty or contains `=`.
    #[error("environment variable name {name:?} is invalid (empty or contains '=')")]
    InvalidEnvName {
        /// The name as received.
        name: String,
    },

    /// The working directory is not an absolute path.
    #[error("working directory {cwd:?} is not an absolute path")]
    RelativeCwd {
        /// The directory as received.
        cwd: String,
    },

    /// An app name is not an appc AC name (`^[a-z0-9]+(-[a-z0-9]+)*$`).
    #[error(
        "app name {name:?} is not a valid app name (lowercase letters, digits, single dashes)"
    )]
    InvalidAppName {
        /// The name as received.
        name: String,
    },

    /// A window size with zero rows or zero columns.
    #[error("window size {rows}x{cols} is invalid: rows and columns must be at least 1")]
    InvalidWindowSize {
        /// Rows as received.
        rows: u16,
        /// Columns as received.
        cols: u16,
    },

    /// An exec request carries a window size but asks for no tty.
    #[error("a window size was given for a session without a tty")]
    WindowWithoutTty,

    /// An exit code outside `0..=255`.
    #[error("exit code {code} is outside 0..=255")]
    ExitCodeOutOfRange {
        /// The code as received.
        code: i32,
    },

    /// A signal number outside `1..=64`.
    #[error("signal {signal} is outside 1..=64")]
    SignalOutOfRange {
        /// The signal as received.
        signal: i32,
    },

    /// A pid of 0.
    #[error("pid 0 is not a process")]
    ZeroPid,

    /// A data chunk larger than [`MAX_CHUNK_LEN`](crate::message::MAX_CHUNK_LEN).
    #[error("data chunk of {len} bytes exceeds the limit of {max} bytes")]
    ChunkTooLarge {
        /// Length of the chunk.
        len: usize,
        /// The limit.
        max: usize,
    },
}
