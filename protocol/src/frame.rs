//! Framing: a frame is a 4-byte big-endian body length followed by that many bytes of body.
//!
//! The length is checked against [`MAX_FRAME_LEN`] as soon as the 4 header bytes are in,
//! before a byte of the body is read or a byte of memory is reserved for it: a peer that
//! lies about a size costs nothing. Blocking streams use [`read_frame`] / [`write_frame`];
//! event loops over non-blocking sockets feed whatever arrived into a [`FrameDecoder`] and
//! write what [`encode_frame`] (or [`message::encode`](crate::message::encode)) returns.

use std::io::{self, Read, Write};

use crate::error::Error;

/// Bytes in a frame header (the big-endian `u32` body length).
pub const HEADER_LEN: usize = 4;

/// Largest frame body, in bytes, either side sends or accepts (1 MiB).
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Reading a body grows the buffer as bytes arrive, starting at most this large.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Parses a header and checks the announced length against [`MAX_FRAME_LEN`].
fn body_len(header: [u8; HEADER_LEN]) -> Result<usize, Error> {
    let announced = u32::from_be_bytes(header);
    match usize::try_from(announced) {
        Ok(len) if len <= MAX_FRAME_LEN => Ok(len),
        _ => Err(Error::FrameTooLarge {
            len: usize::try_from(announced).unwrap_or(usize::MAX),
            max: MAX_FRAME_LEN,
        }),
    }
}

/// The header announcing a body of `len` bytes, or [`Error::FrameTooLarge`].
pub(crate) fn header_for(len: usize) -> Result<[u8; HEADER_LEN], Error> {
    let too_large = || Error::FrameTooLarge {
        len,
        max: MAX_FRAME_LEN,
    };
    if len > MAX_FRAME_LEN {
        return Err(too_large());
    }
    let len = u32::try_from(len).map_err(|_| too_large())?;
    Ok(len.to_be_bytes())
}

/// Header and body of one frame, ready to be written; [`Error::FrameTooLarge`] if the body
/// exceeds [`MAX_FRAME_LEN`].
pub fn encode_frame(body: &[u8]) -> Result<Vec<u8>, Error> {
    let header = header_for(body.len())?;
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    Ok(frame)
}

/// Writes one frame to a blocking stream (one `write_all` of header and body) and flushes.
/// A body over [`MAX_FRAME_LEN`] is refused with [`Error::FrameTooLarge`] and nothing is
/// written.
pub fn write_frame<W: Write + ?Sized>(writer: &mut W, body: &[u8]) -> Result<(), Error> {
    write_encoded(writer, &encode_frame(body)?)
}

/// Writes an encoded frame (header included) to a blocking stream and flushes.
pub(crate) fn write_encoded<W: Write + ?Sized>(writer: &mut W, frame: &[u8]) -> Result<(), Error> {
    writer
        .write_all(frame)
        .map_err(|e| Error::io("writing a frame", e))?;
    writer.flush().map_err(|e| Error::io("flushing a frame", e))
}

/// Reads into `buf` until it is full or the stream ends; returns how much was read.
pub(crate) fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads one frame body from a blocking stream.
///
/// `Ok(None)` when the stream ends cleanly between frames; [`Error::UnexpectedEof`] when
/// it ends inside one; [`Error::FrameTooLarge`] when the header announces more than
/// [`MAX_FRAME_LEN`] (nothing beyond the header is read then). The body buffer grows as
/// bytes arrive, so a peer that announces 1 MiB and sends nothing holds no memory.
pub fn read_frame<R: Read + ?Sized>(reader: &mut R) -> Result<Option<Vec<u8>>, Error> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header).map_err(|e| Error::io("reading a frame header", e))?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(Error::UnexpectedEof {
            what: "a frame header",
            got,
            expected: HEADER_LEN,
        });
    }
    let len = body_len(header)?;
    let mut body = Vec::with_capacity(len.min(INITIAL_BODY_CAPACITY));
    let limit = u64::from(u32::from_be_bytes(header));
    reader
        .take(limit)
        .read_to_end(&mut body)
        .map_err(|e| Error::io("reading a frame body", e))?;
    if body.len() < len {
        return Err(Error::UnexpectedEof {
            what: "a frame body",
            got: body.len(),
            expected: len,
        });
    }
    Ok(Some(body))
}

/// Incremental frame decoder for event loops: [`feed`](Self::feed) it the bytes as they
/// arrive (any split: partial headers, partial bodies, several frames at once), then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`.
///
/// Memory stays bounded by one maximal frame plus one read chunk as long as every `feed`
/// is followed by draining `next_frame`: an oversized length is rejected as soon as its
/// header is buffered, without waiting for (or reserving room for) the body. After an
/// error the decoder keeps returning it; the connection is to be closed.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Received bytes; those before `start` are already consumed.
    buf: Vec<u8>,
    /// Offset of the first unconsumed byte in `buf`.
    start: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the peer.
    pub fn feed(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame body, `Ok(None)` if more bytes are needed, or
    /// [`Error::FrameTooLarge`] as soon as a buffered header announces too much.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let pending = &self.buf[self.start..];
        let Some((header, rest)) = pending.split_first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = body_len(*header)?;
        let Some(body) = rest.get(..len) else {
            return Ok(None);
        };
        let body = body.to_vec();
        self.start += HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(body))
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// To be called when the peer closed its side: `Ok(())` if the stream ended on a frame
    /// boundary, else [`Error::UnexpectedEof`] for the partial frame left.
    pub fn finish(&self) -> Result<(), Error> {
        let pending = &self.buf[self.start..];
        match pending.split_first_chunk::<HEADER_LEN>() {
            None if pending.is_empty() => Ok(()),
            None => Err(Error::UnexpectedEof {
                what: "a frame header",
                got: pending.len(),
                expected: HEADER_LEN,
            }),
            Some((header, rest)) => {
                let len = body_len(*header)?;
                Err(Error::UnexpectedEof {
                    what: "a frame body",
                    got: rest.len(),
                    expected: len,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A reader that hands out its data in fixed pieces and counts what was taken.
    struct Trickle<'a> {
        data: &'a [u8],
        piece: usize,
        taken: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.piece).min(self.data.len() - self.taken);
            buf[..n].copy_from_slice(&self.data[self.taken..self.taken + n]);
            self.taken += n;
            Ok(n)
        }
    }

    /// A reader that yields a header announcing `len`, then fails the test if read again.
    struct LyingHeader {
        header: [u8; HEADER_LEN],
        sent: bool,
    }

    impl Read for LyingHeader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            assert!(
                !self.sent,
                "the body of an oversized frame must not be read"
            );
            self.sent = true;
            buf[..HEADER_LEN].copy_from_slice(&self.header);
            Ok(HEADER_LEN)
        }
    }

    #[test]
    fn header_is_big_endian_length() {
        let frame = encode_frame(b"hello").unwrap();
        assert_eq!(frame, b"\x00\x00\x00\x05hello");
        let empty = encode_frame(b"").unwrap();
        assert_eq!(empty, [0, 0, 0, 0]);
    }

    #[test]
    fn blocking_round_trip_of_several_frames() {
        let mut wire = Vec::new();
        for body in [&b"one"[..], b"", b"three"] {
            write_frame(&mut wire, body).unwrap();
        }
        let mut reader = Trickle {
            data: &wire,
            piece: 1,
            taken: 0,
        };
        assert_eq!(read_frame(&mut reader).unwrap().unwrap(), b"one");
        assert_eq!(read_frame(&mut reader).unwrap().unwrap(), b"");
        assert_eq!(read_frame(&mut reader).unwrap().unwrap(), b"three");
        assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn largest_frame_passes_and_one_more_byte_does_not() {
        let body = vec![0xa5; MAX_FRAME_LEN];
        let mut wire = Vec::new();
        write_frame(&mut wire, &body).unwrap();
        assert_eq!(read_frame(&mut Cursor::new(&wire)).unwrap().unwrap(), body);

        let mut untouched = Vec::new();
        let err = write_frame(&mut untouched, &vec![0; MAX_FRAME_LEN + 1]).unwrap_err();
        assert!(
            matches!(err, Error::FrameTooLarge { len, max } if len == MAX_FRAME_LEN + 1 && max == MAX_FRAME_LEN),
            "{err:?}"
        );
        assert!(
            untouched.is_empty(),
            "nothing may be written for an oversized frame"
        );
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        let over = u32::try_from(MAX_FRAME_LEN + 1).unwrap();
        for announced in [over, u32::MAX] {
            let mut reader = LyingHeader {
                header: announced.to_be_bytes(),
                sent: false,
            };
            let err = read_frame(&mut reader).unwrap_err();
            let expected = usize::try_from(announced).unwrap();
            assert!(
                matches!(err, Error::FrameTooLarge { len, max } if len == expected && max == MAX_FRAME_LEN),
                "{err:?}"
            );

            let mut decoder = FrameDecoder::new();
            decoder.feed(&announced.to_be_bytes());
            let err = decoder.next_frame().unwrap_err();
            assert!(
                matches!(err, Error::FrameTooLarge { len, .. } if len == expected),
                "{err:?}"
            );
            // The decoder holds nothing but the header and keeps failing.
            assert_eq!(decoder.buffered_len(), HEADER_LEN);
            assert!(decoder.buf.capacity() < 1024);
            decoder.feed(&[0; 100]);
            assert!(matches!(
                decoder.next_frame(),
                Err(Error::FrameTooLarge { .. })
            ));
        }
    }

    #[test]
    fn truncated_header_and_body_are_unexpected_eof() {
        let err = read_frame(&mut Cursor::new(&[0u8, 0][..])).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedEof {
                    what: "a frame header",
                    got: 2,
                    expected: 4
                }
            ),
            "{err:?}"
        );

        let err = read_frame(&mut Cursor::new(&b"\x00\x00\x00\x0ahello"[..])).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedEof {
                    what: "a frame body",
                    got: 5,
                    expected: 10
                }
            ),
            "{err:?}"
        );

        let mut decoder = FrameDecoder::new();
        decoder.feed(&[0, 0]);
        assert!(decoder.next_frame().unwrap().is_none());
        let err = decoder.finish().unwrap_err();
        assert!(matches!(
            err,
            Error::UnexpectedEof {
                what: "a frame header",
                got: 2,
                ..
            }
        ));

        decoder.feed(b"\x00\x0ahello");
        assert!(decoder.next_frame().unwrap().is_none());
        let err = decoder.finish().unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedEof {
                    what: "a frame body",
                    got: 5,
                    expected: 10
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn decoder_splits_several_frames_in_one_chunk_and_ends_clean() {
        let mut wire = encode_frame(b"a").unwrap();
        wire.extend(encode_frame(b"bb").unwrap());
        wire.extend(encode_frame(b"").unwrap());
        wire.extend(&encode_frame(b"dddd").unwrap()[..3]);

        let mut decoder = FrameDecoder::new();
        decoder.feed(&wire);
        assert_eq!(decoder.next_frame().unwrap().unwrap(), b"a");
        assert_eq!(decoder.next_frame().unwrap().unwrap(), b"bb");
        assert_eq!(decoder.next_frame().unwrap().unwrap(), b"");
        assert!(decoder.next_frame().unwrap().is_none());
        assert_eq!(decoder.buffered_len(), 3);
        decoder.feed(b"\x04dddd");
        assert_eq!(decoder.next_frame().unwrap().unwrap(), b"dddd");
        assert!(decoder.next_frame().unwrap().is_none());
        assert_eq!(decoder.buffered_len(), 0);
        decoder.finish().unwrap();
    }

    #[test]
    fn interrupted_reads_are_retried() {
        struct Flaky(Cursor<Vec<u8>>, bool);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.1 = !self.1;
                if self.1 {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                let one = buf.len().min(1);
                self.0.read(&mut buf[..one])
            }
        }
        let mut reader = Flaky(Cursor::new(encode_frame(b"xyz").unwrap()), false);
        assert_eq!(read_frame(&mut reader).unwrap().unwrap(), b"xyz");
    }

    #[test]
    fn io_errors_carry_context() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let err = read_frame(&mut Broken).unwrap_err();
        assert!(
            matches!(&err, Error::Io { context: "reading a frame header", source }
                if source.kind() == io::ErrorKind::ConnectionReset),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "reading a frame header: reset");
    }
}
