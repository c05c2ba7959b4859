//! Reaching a guest vsock port from another host process through the VMM's Unix socket,
//! with the hybrid handshake Firecracker documents: `CONNECT <port>\n` → `OK <port>\n`,
//! then the socket is the raw stream.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest answer line we accept (`OK 4294967295\n` is 14 bytes).
const MAX_ANSWER: usize = 32;

/// Connects to guest `port` through the hybrid socket at `socket`.
pub fn connect(socket: &Path, port: u32, timeout: Duration) -> Result<UnixStream, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "connecting to the VM's vsock socket {}: {e}",
            socket.display()
        )
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("vsock socket: setting a timeout: {e}"))?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(|e| format!("vsock socket {}: {e}", socket.display()))?;
    // Byte by byte: nothing after the newline belongs to us.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while answer.last() != Some(&b'\n') {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "guest port {port}: connection refused (nothing listens there?)"
                ))
            }
            Ok(_) => answer.push(byte[0]),
            Err(e) => {
                return Err(format!(
                    "guest port {port}: waiting for the VMM's answer: {e}"
                ))
            }
        }
        if answer.len() > MAX_ANSWER {
            return Err(format!("guest port {port}: malformed answer from the VMM"));
        }
    }
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("OK ") {
        return Err(format!(
            "guest port {port}: the VMM answered {:?}",
            text.trim_end()
        ));
    }
    stream
        .set_read_timeout(None)
        .map_err(|e| format!("vsock socket: clearing the timeout: {e}"))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;

    fn vmm(answer: &'static [u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(s.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line, "CONNECT 1024\n");
            s.write_all(answer).unwrap();
        });
        (dir, path)
    }

    #[test]
    fn ok_answer_gives_the_stream_with_following_bytes_intact() {
        let (_dir, path) = vmm(b"OK 1073741824\nhello");
        let mut stream = connect(&path, 1024, Duration::from_secs(5)).unwrap();
        let mut rest = String::new();
        stream.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "hello");
    }

    #[test]
    fn a_closed_socket_is_a_refusal_and_garbage_is_malformed() {
        let (_dir, path) = vmm(b"");
        assert!(connect(&path, 1024, Duration::from_secs(5))
            .unwrap_err()
            .contains("refused"));
        let (_dir, path) = vmm(b"NO\n");
        assert!(connect(&path, 1024, Duration::from_secs(5))
            .unwrap_err()
            .contains("answered \"NO\""));
        let (_dir, path) = vmm(&[b'x'; 64]);
        assert!(connect(&path, 1024, Duration::from_secs(5))
            .unwrap_err()
            .contains("malformed"));
    }

    #[test]
    fn a_missing_socket_names_its_path() {
        let err = connect(
            Path::new("/nonexistent/v.sock"),
            1024,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.contains("/nonexistent/v.sock"), "{err}");
    }
}
