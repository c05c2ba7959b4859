//! A byte queue for data waiting for a non-blocking descriptor to become writable: a
//! connection's outgoing frames, an exec session's stdin.
//!
//! Its bound is the caller's: producers check [`ByteQueue::len`] against a high-water mark
//! before producing more (backpressure), so the queue holds at most the mark plus one
//! chunk.

/// Capacity kept after the queue empties; larger allocations are given back.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Bytes appended at the back, written from the front.
#[derive(Debug, Default)]
pub struct ByteQueue {
    buf: Vec<u8>,
    /// Offset of the first byte not yet written.
    start: usize,
}

impl ByteQueue {
    /// An empty queue (allocates nothing until used).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The bytes waiting, oldest first.
    pub fn front(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Drops `n` written bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.clear();
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf.shrink_to(KEEP_CAPACITY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keeps_order_across_partial_writes() {
        let mut q = ByteQueue::new();
        assert!(q.is_empty());
        q.push(b"hello ");
        q.push(b"world");
        assert_eq!(q.len(), 11);
        q.consume(4);
        assert_eq!(q.front(), b"o world");
        q.push(b"!");
        assert_eq!(q.front(), b"o world!");
        q.consume(100);
        assert!(q.is_empty());
    }

    #[test]
    fn emptied_queue_gives_large_allocations_back() {
        let mut q = ByteQueue::new();
        q.push(&vec![0; 1 << 20]);
        q.consume(1 << 20);
        assert!(q.buf.capacity() <= KEEP_CAPACITY);
    }
}
