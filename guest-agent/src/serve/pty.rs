//! Pseudo-terminals for exec sessions that ask for a tty.
//!
//! The master stays with the agent (non-blocking; read for the session's output, written
//! for its stdin through a duplicate descriptor so both directions have their own epoll
//! registration); the slave becomes the child's stdin, stdout, stderr and controlling
//! terminal.
//!
//! **End of input.** A terminal has no "close the write side": the agent keeps the master
//! open to read the output. `stdin_eof` is therefore translated into what a user typing
//! `^D` does: the terminal's `VEOF` character. In canonical mode `VEOF` at the start of a
//! line makes the reader's `read` return 0 (end of file); after a partial line it only
//! hands that line over, so then a second `VEOF` follows ([`eof_sequence`]). In
//! non-canonical ("raw") mode `VEOF` is an ordinary byte and is sent once, for the
//! program to interpret (shells end on `^D` on an empty line). After the sequence is
//! written the agent closes its stdin duplicate of the master.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::{grantpt, posix_openpt, unlockpt};
use nix::sys::termios::{tcgetattr, LocalFlags, SpecialCharacterIndices};
use nix::unistd::{tcgetpgrp, Pid};
use protocol::WindowSize;

/// The `VEOF` character when the terminal's settings cannot be read (`^D`).
const DEFAULT_VEOF: u8 = 0x04;

/// A new pseudo-terminal pair.
#[derive(Debug)]
pub struct Pty {
    /// The agent's side, non-blocking, close-on-exec.
    pub master: OwnedFd,
    /// The child's side, close-on-exec (the child duplicates it onto 0, 1 and 2).
    pub slave: OwnedFd,
}

/// Opens a pseudo-terminal of the given size (the kernel's default, 0×0, if `None`).
pub fn open(window: Option<WindowSize>) -> io::Result<Pty> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    // SAFETY: the descriptor comes from posix_openpt above and is owned by `master`, which
    // gives it up here; nothing else owns or closes it.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    // TIOCGPTPEER opens the slave through the master, so it is the right one whatever
    // devpts instance or mount namespace we are in, and atomically close-on-exec.
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes an int of open flags by value and returns a new
    // descriptor; it reads or writes no memory of ours.
    let raw = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the ioctl just returned this descriptor; nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(raw) };
    fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    if let Some(window) = window {
        set_window(&master, window)?;
    }
    Ok(Pty { master, slave })
}

/// Sets the terminal's size (the kernel sends `SIGWINCH` to its foreground group).
pub fn set_window(master: &OwnedFd, window: WindowSize) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: window.rows,
        ws_col: window.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `struct winsize`, which `size` is, for the duration of
    // the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The terminal's foreground process group, the one a user's `^C` would reach.
pub fn foreground_group(master: &OwnedFd) -> Option<Pid> {
    tcgetpgrp(master).ok().filter(|pgid| pgid.as_raw() > 1)
}

/// The bytes that end the terminal's input (see the module documentation); `last` is the
/// last byte written to it so far, if any.
pub fn eof_sequence(master: &OwnedFd, last: Option<u8>) -> Vec<u8> {
    let (veof, canonical) = match tcgetattr(master) {
        Ok(t) => (
            t.control_chars[SpecialCharacterIndices::VEOF as usize],
            t.local_flags.contains(LocalFlags::ICANON),
        ),
        Err(_) => (DEFAULT_VEOF, true),
    };
    let at_line_start = matches!(last, None | Some(b'\n'));
    if canonical && !at_line_start {
        vec![veof, veof]
    } else {
        vec![veof]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_pair_with_the_size_asked_for() {
        let pty = open(Some(WindowSize {
            rows: 33,
            cols: 101,
        }))
        .unwrap();
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `struct winsize` into `size`.
        let rc = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
        assert_eq!(rc, 0);
        assert_eq!((size.ws_row, size.ws_col), (33, 101));
        let flags = fcntl(pty.master.as_raw_fd(), FcntlArg::F_GETFL).unwrap();
        assert_ne!(flags & libc::O_NONBLOCK, 0, "master is non-blocking");
        let fd_flags = fcntl(pty.slave.as_raw_fd(), FcntlArg::F_GETFD).unwrap();
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0, "slave is close-on-exec");
    }

    #[test]
    fn eof_is_one_veof_at_a_line_start_and_two_after_a_partial_line() {
        let pty = open(None).unwrap();
        assert_eq!(eof_sequence(&pty.master, None), vec![DEFAULT_VEOF]);
        assert_eq!(eof_sequence(&pty.master, Some(b'\n')), vec![DEFAULT_VEOF]);
        assert_eq!(
            eof_sequence(&pty.master, Some(b'x')),
            vec![DEFAULT_VEOF, DEFAULT_VEOF]
        );
    }
}
