//! The guest's console and boot-marker streams, which QEMU connects to Unix sockets we
//! listen on. Each stream is read by its own thread and forwarded to the run loop.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use crate::engine::mailbox::{Message, Stream};

/// How often a waiting accept checks whether it should give up.
const ACCEPT_POLL_MS: i32 = 50;

/// A listening socket for one stream; removed from the file system on drop.
#[derive(Debug)]
pub struct StreamSocket {
    path: PathBuf,
    listener: Option<UnixListener>,
}

impl StreamSocket {
    /// Listens at `path` (replacing a stale socket file).
    pub fn bind(path: PathBuf) -> std::io::Result<Self> {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&path)?;
        Ok(Self {
            path,
            listener: Some(listener),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the thread that accepts QEMU's connection and forwards what it reads.
    /// It gives up waiting for a connection once `abandon` is set.
    pub fn forward(&mut self, stream: Stream, to: Sender<Message>, abandon: Arc<AtomicBool>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(connection) = accept_unless(&listener, &abandon) {
                match stream {
                    Stream::Console => forward_lines(connection, &to),
                    Stream::Markers => forward_markers(connection, &to),
                }
            }
            let _ = to.send(Message::StreamClosed(stream));
        });
    }
}

impl Drop for StreamSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_unless(listener: &UnixListener, abandon: &AtomicBool) -> Option<UnixStream> {
    let mut pollfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    while !abandon.load(Ordering::Relaxed) {
        // SAFETY: one valid pollfd on our stack, count 1, bounded timeout.
        let ready = unsafe { libc::poll(&mut pollfd, 1, ACCEPT_POLL_MS) };
        if ready > 0 {
            return listener.accept().ok().map(|(stream, _)| stream);
        }
    }
    None
}

fn forward_lines(connection: UnixStream, to: &Sender<Message>) {
    let mut reader = BufReader::new(connection);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                if to.send(Message::Console(text.to_owned())).is_err() {
                    return;
                }
            }
        }
    }
}

fn forward_markers(mut connection: UnixStream, to: &Sender<Message>) {
    let mut buf = [0u8; 64];
    loop {
        match connection.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let at = Instant::now();
                for byte in &buf[..n] {
                    if to.send(Message::Marker(*byte, at)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn console_lines_and_marker_bytes_are_forwarded_then_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let abandon = Arc::new(AtomicBool::new(false));
        let mut console = StreamSocket::bind(dir.path().join("c.sock")).unwrap();
        let mut markers = StreamSocket::bind(dir.path().join("m.sock")).unwrap();
        console.forward(Stream::Console, tx.clone(), Arc::clone(&abandon));
        markers.forward(Stream::Markers, tx, abandon);

        let mut c = UnixStream::connect(console.path()).unwrap();
        c.write_all(b"hello\r\nwor").unwrap();
        c.write_all(b"ld\npartial").unwrap();
        drop(c);
        let mut m = UnixStream::connect(markers.path()).unwrap();
        m.write_all(&[0x10, 0x11]).unwrap();
        drop(m);

        let mut got = Vec::new();
        while got.len() < 6 {
            got.push(rx.recv_timeout(Duration::from_secs(5)).unwrap());
        }
        let lines: Vec<_> = got
            .iter()
            .filter_map(|m| match m {
                Message::Console(l) => Some(l.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(lines, ["hello", "world", "partial"]);
        let bytes: Vec<_> = got
            .iter()
            .filter_map(|m| match m {
                Message::Marker(b, _) => Some(*b),
                _ => None,
            })
            .collect();
        assert_eq!(bytes, [0x10, 0x11]);
        let closed = got
            .iter()
            .filter(|m| matches!(m, Message::StreamClosed(_)))
            .count()
            + usize::from(matches!(
                rx.recv_timeout(Duration::from_secs(5)),
                Ok(Message::StreamClosed(_))
            ));
        assert_eq!(closed, 2);
    }

    #[test]
    fn an_unused_socket_is_abandoned_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let abandon = Arc::new(AtomicBool::new(false));
        let path = dir.path().join("c.sock");
        let mut socket = StreamSocket::bind(path.clone()).unwrap();
        socket.forward(Stream::Console, tx, Arc::clone(&abandon));
        abandon.store(true, Ordering::Relaxed);
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(Message::StreamClosed(Stream::Console))
        ));
        drop(socket);
        assert!(!path.exists());
    }
}
