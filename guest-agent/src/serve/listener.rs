//! Where connections come from: the vsock listener in the guest, a Unix listener in tests.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::errno::Errno;
use nix::sys::socket::{
    accept4, bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, VsockAddr,
};

/// A listening stream socket the event loop accepts connections from.
pub trait Listener: AsFd {
    /// Makes accepting non-blocking (called once, before the loop starts).
    fn set_nonblocking(&self) -> io::Result<()>;

    /// The next pending connection as a non-blocking, close-on-exec socket; `None` when
    /// none is pending.
    fn accept_one(&self) -> io::Result<Option<OwnedFd>>;
}

/// The agent's vsock listener: any CID (the guest's own), one port.
#[derive(Debug)]
pub struct VsockListener {
    fd: OwnedFd,
}

impl VsockListener {
    /// Listens on `port` of the guest's CID.
    pub fn bind(port: u32) -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Vsock,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        bind(fd.as_raw_fd(), &VsockAddr::new(libc::VMADDR_CID_ANY, port))?;
        listen(&fd, Backlog::new(64)?)?;
        Ok(Self { fd })
    }
}

impl AsFd for VsockListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Listener for VsockListener {
    fn set_nonblocking(&self) -> io::Result<()> {
        // Created with SOCK_NONBLOCK.
        Ok(())
    }

    fn accept_one(&self) -> io::Result<Option<OwnedFd>> {
        loop {
            match accept4(
                self.fd.as_raw_fd(),
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            ) {
                // SAFETY: accept4 just returned this descriptor; nothing else owns it.
                Ok(raw) => return Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) })),
                Err(Errno::EAGAIN) => return Ok(None),
                // A connection that died in the backlog, or a signal: try the next one.
                Err(Errno::EINTR | Errno::ECONNABORTED) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Listener for UnixListener {
    fn set_nonblocking(&self) -> io::Result<()> {
        UnixListener::set_nonblocking(self, true)
    }

    fn accept_one(&self) -> io::Result<Option<OwnedFd>> {
        match self.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                Ok(Some(stream.into()))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}
