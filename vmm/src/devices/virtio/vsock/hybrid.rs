//! Firecracker's hybrid vsock protocol, host side: a host process connects to the device's
//! Unix socket and sends `CONNECT <port>\n`; once the guest accepts, it reads
//! `OK <host port>\n` and then has a raw stream to guest port `<port>`. On any failure the
//! socket is closed.
//!
//! [`Client`] reads the `CONNECT` line one byte at a time, so that nothing the client sends
//! after the newline is consumed before the connection exists.

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;

/// The longest `CONNECT` line accepted, newline included (`CONNECT 4294967295\n` is 19).
pub const MAX_LINE: usize = 32;

/// A host client that has not finished its `CONNECT` line.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    line: Vec<u8>,
}

/// What reading from a [`Client`] gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// The line is not complete yet.
    Pending,
    /// A well-formed request for guest port `.0`.
    Connect(u32),
    /// The client closed or failed before finishing the line.
    Closed,
    /// A malformed line (the reason).
    Malformed(String),
}

impl Client {
    /// A freshly accepted, non-blocking client.
    pub fn new(stream: UnixStream) -> Self {
        Client {
            stream,
            line: Vec::with_capacity(MAX_LINE),
        }
    }

    /// The client's socket.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Gives the socket back once the line is complete.
    pub fn into_stream(self) -> UnixStream {
        self.stream
    }

    /// Reads what is available of the line.
    pub fn read(&mut self) -> Progress {
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => return Progress::Closed,
                Ok(_) if byte[0] == b'\n' => return parse_connect(&self.line),
                Ok(_) if self.line.len() + 1 >= MAX_LINE => {
                    return Progress::Malformed(format!("line longer than {MAX_LINE} bytes"))
                }
                Ok(_) => self.line.push(byte[0]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Progress::Closed,
            }
        }
    }
}

/// Parses `CONNECT <port>` (without the newline): one space, a decimal u32.
pub fn parse_connect(line: &[u8]) -> Progress {
    let shown = || String::from_utf8_lossy(line).escape_debug().to_string();
    let Some(port) = line.strip_prefix(b"CONNECT ") else {
        return Progress::Malformed(format!("expected `CONNECT <port>`, got \"{}\"", shown()));
    };
    let digits_only = !port.is_empty() && port.iter().all(u8::is_ascii_digit);
    match std::str::from_utf8(port).ok().filter(|_| digits_only) {
        Some(port) => match port.parse::<u32>() {
            Ok(port) => Progress::Connect(port),
            Err(_) => Progress::Malformed(format!("port out of range in \"{}\"", shown())),
        },
        None => Progress::Malformed(format!("bad port in \"{}\"", shown())),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn parses_connect_lines() {
        assert_eq!(parse_connect(b"CONNECT 1024"), Progress::Connect(1024));
        assert_eq!(parse_connect(b"CONNECT 0"), Progress::Connect(0));
        assert_eq!(
            parse_connect(b"CONNECT 4294967295"),
            Progress::Connect(u32::MAX)
        );
        for bad in [
            &b""[..],
            b"CONNECT",
            b"CONNECT ",
            b"connect 1024",
            b"CONNECT  1024",
            b"CONNECT 1024 ",
            b"CONNECT -1",
            b"CONNECT +1",
            b"CONNECT 0x10",
            b"CONNECT 4294967296",
            b"CONNECT 1024\r",
            b"LISTEN 1024",
            b"CONNECT \xff",
        ] {
            assert!(
                matches!(parse_connect(bad), Progress::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn reads_line_in_pieces_and_leaves_the_rest() {
        let (mut peer, ours) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut client = Client::new(ours);
        assert_eq!(client.read(), Progress::Pending);
        peer.write_all(b"CONN").unwrap();
        assert_eq!(client.read(), Progress::Pending);
        peer.write_all(b"ECT 52\nhello").unwrap();
        assert_eq!(client.read(), Progress::Connect(52));
        let mut rest = [0u8; 5];
        client.into_stream().read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"hello");
    }

    #[test]
    fn rejects_endless_lines_and_early_close() {
        let (mut peer, ours) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut client = Client::new(ours);
        peer.write_all(&[b'9'; 100]).unwrap();
        assert!(matches!(client.read(), Progress::Malformed(_)));

        let (peer, ours) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut client = Client::new(ours);
        drop(peer);
        assert_eq!(client.read(), Progress::Closed);
    }
}
