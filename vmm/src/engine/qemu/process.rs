//! The QEMU child process: spawned so that it dies with us, watched through a pidfd so
//! that killing it can never hit a recycled PID.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::engine::mailbox::Message;

/// Most of QEMU's stderr we keep for error messages.
const STDERR_LIMIT: usize = 16 * 1024;

/// A running QEMU.
#[derive(Debug)]
pub struct QemuProcess {
    child: Child,
    pidfd: Arc<OwnedFd>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    reaped: Option<ExitStatus>,
}

impl QemuProcess {
    /// Spawns `binary argv…` with no stdin/stdout, stderr captured, and
    /// `PR_SET_PDEATHSIG(SIGKILL)` so that it never outlives this process. Must be called
    /// from a thread that lives as long as the child: the death signal follows the
    /// spawning thread. `exited` gets [`Message::Exited`] when the process ends.
    pub fn spawn(
        binary: &Path,
        argv: Vec<OsString>,
        exited: Sender<Message>,
    ) -> std::io::Result<Self> {
        let mut command = Command::new(binary);
        command
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (prctl, getppid); it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // We may have died between fork and prctl: then nobody would kill QEMU.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(std::io::Error::other("stage1 process exited during spawn"));
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let pidfd = match pidfd_open(child.id()) {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = child.stderr.take().map(|mut pipe| {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    let mut sink = sink
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let room = STDERR_LIMIT.saturating_sub(sink.len());
                    sink.extend_from_slice(&buf[..n.min(room)]);
                }
            })
        });
        let watched = Arc::clone(&pidfd);
        std::thread::spawn(move || {
            wait_readable(&watched);
            let _ = exited.send(Message::Exited);
        });
        Ok(Self {
            child,
            pidfd,
            stderr,
            stderr_reader,
            reaped: None,
        })
    }

    /// Kills QEMU (SIGKILL through the pidfd; a no-op once it exited).
    pub fn kill(&self) {
        // SAFETY: pidfd_send_signal takes a valid pidfd we own, a signal number and a
        // null siginfo; it touches no memory of ours.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }

    /// Waits for QEMU to exit and collects its status and stderr.
    pub fn reap(&mut self) -> (ExitStatus, String) {
        let status = match self.reaped {
            Some(status) => status,
            None => {
                let status = loop {
                    match self.child.wait() {
                        Ok(status) => break status,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            // Not our child any more: impossible short of a bug; report it
                            // as a failure rather than success.
                            break std::os::unix::process::ExitStatusExt::from_raw(1 << 8);
                        }
                    }
                };
                self.reaped = Some(status);
                status
            }
        };
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (status, String::from_utf8_lossy(&stderr).trim().to_owned())
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::other("pid out of range"))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Blocks until the pidfd is readable, i.e. the process exited.
fn wait_readable(pidfd: &OwnedFd) {
    let mut pollfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd on our stack, count 1, no timeout.
        let rc = unsafe { libc::poll(&mut pollfd, 1, -1) };
        if rc >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reports_exit_and_captures_stderr() {
        let (tx, rx) = std::sync::mpsc::channel();
        let argv = vec!["-c".into(), "echo boom >&2; exit 3".into()];
        let mut process = QemuProcess::spawn(Path::new("/bin/sh"), argv, tx).unwrap();
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(Message::Exited)
        ));
        let (status, stderr) = process.reap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(stderr, "boom");
    }

    #[test]
    fn kill_ends_the_process_and_drop_never_leaves_it_running() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut process =
            QemuProcess::spawn(Path::new("/bin/sleep"), vec!["30".into()], tx.clone()).unwrap();
        process.kill();
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(Message::Exited)
        ));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&process.reap().0),
            Some(9)
        );

        let process = QemuProcess::spawn(Path::new("/bin/sleep"), vec!["30".into()], tx).unwrap();
        let pid = process.child.id();
        drop(process);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} left running"
        );
    }
}
