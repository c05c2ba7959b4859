//! The bounded buffer of bytes on their way to a host socket that would block.
//!
//! Its capacity is the receive buffer the connection advertises to the guest (`buf_alloc`),
//! so a guest that respects its credit can never overflow it; one that does not is caught
//! by the connection before anything is pushed here.

use std::io::{ErrorKind, Write};

use super::packet::Slice;

/// Bytes waiting for a host socket, at most `capacity` of them.
#[derive(Debug)]
pub struct TxBuf {
    data: Vec<u8>,
    head: usize,
    capacity: usize,
}

/// The buffer cannot take that many more bytes.
#[derive(Debug, thiserror::Error)]
#[error("{wanted} bytes do not fit in the {free} free bytes of the host-bound buffer")]
pub struct Full {
    /// Bytes offered.
    pub wanted: usize,
    /// Bytes free.
    pub free: usize,
}

impl TxBuf {
    /// An empty buffer that will hold at most `capacity` bytes (allocated as needed).
    pub fn new(capacity: usize) -> Self {
        TxBuf {
            data: Vec::new(),
            head: 0,
            capacity,
        }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.data.len() - self.head
    }

    /// Whether no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes that still fit.
    pub fn free(&self) -> usize {
        self.capacity - self.len()
    }

    /// Appends `bytes`, all or nothing.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), Full> {
        self.reserve(bytes.len())?;
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    /// Appends the bytes of a guest memory slice, all or nothing.
    pub fn push_slice(&mut self, slice: &Slice<'_>) -> Result<(), Full> {
        let n = slice.len();
        self.reserve(n)?;
        let start = self.data.len();
        self.data.resize(start + n, 0);
        let copied = slice.copy_to(&mut self.data[start..]);
        self.data.truncate(start + copied);
        Ok(())
    }

    /// Writes as much as `sink` takes without blocking; returns how many bytes left the
    /// buffer. `WouldBlock` is not an error (0 or a partial count is returned).
    pub fn flush_to<W: Write>(&mut self, sink: &mut W) -> std::io::Result<usize> {
        let mut written = 0;
        while !self.is_empty() {
            match sink.write(&self.data[self.head..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.head += n;
                    written += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.is_empty() {
            self.data.clear();
            self.head = 0;
        }
        Ok(written)
    }

    fn reserve(&mut self, n: usize) -> Result<(), Full> {
        if n > self.free() {
            return Err(Full {
                wanted: n,
                free: self.free(),
            });
        }
        // Move the live bytes to the front rather than grow past the capacity.
        if self.head > 0 && self.data.len() + n > self.capacity {
            self.data.drain(..self.head);
            self.head = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `room` bytes, then would block.
    struct Trickle {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keeps_order_and_bound() {
        let mut buf = TxBuf::new(8);
        buf.push(b"abcde").unwrap();
        let err = buf.push(b"fghi").unwrap_err();
        assert_eq!((err.wanted, err.free), (4, 3));
        assert_eq!(buf.len(), 5, "a refused push adds nothing");

        let mut sink = Trickle {
            taken: Vec::new(),
            room: 3,
        };
        assert_eq!(buf.flush_to(&mut sink).unwrap(), 3);
        assert_eq!(buf.free(), 6);
        buf.push(b"fghij").unwrap();
        assert_eq!(buf.free(), 1);
        assert!(buf.data.len() <= 8, "never grows past its capacity");
        sink.room = 100;
        assert_eq!(buf.flush_to(&mut sink).unwrap(), 7);
        assert!(buf.is_empty());
        assert_eq!(sink.taken, b"abcdefghij");
    }

    #[test]
    fn write_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut buf = TxBuf::new(4);
        buf.push(b"x").unwrap();
        assert_eq!(
            buf.flush_to(&mut Broken).unwrap_err().kind(),
            ErrorKind::BrokenPipe
        );
        let mut empty = TxBuf::new(4);
        assert_eq!(empty.flush_to(&mut Broken).unwrap(), 0);
    }
}
