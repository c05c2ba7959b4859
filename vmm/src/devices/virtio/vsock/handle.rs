//! The in-process endpoint: how the stage1 process itself opens vsock streams to guest
//! ports (the agent's control connection) without a Unix socket on the file system.
//!
//! [`VsockHandle::connect`] makes a socketpair, passes one end to the muxer through a
//! bounded channel and wakes the muxer's epoll with an eventfd; the muxer treats it as a
//! host-initiated connection and answers once the guest accepted (RESPONSE) or refused
//! (RST). The caller gets the other end: a plain blocking [`UnixStream`].

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

/// How long [`VsockHandle::connect`] waits for the guest.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect requests that may wait for the muxer at once.
const MAX_PENDING_REQUESTS: usize = 64;

/// A request to connect to a guest port.
#[derive(Debug)]
pub struct Request {
    /// The guest port.
    pub port: u32,
    /// The muxer's end of the socketpair (non-blocking).
    pub stream: UnixStream,
    /// Where the outcome goes.
    pub reply: SyncSender<io::Result<()>>,
}

/// Opens vsock streams to guest ports from inside this process. Cheap to clone; `Send` and
/// `Sync`.
#[derive(Clone, Debug)]
pub struct VsockHandle {
    requests: SyncSender<Request>,
    wakeup: Arc<EventFd>,
}

/// The muxer's side of the handles: the receiving end and the eventfd it polls.
#[derive(Debug)]
pub struct Inbox {
    /// Requests from every handle.
    pub requests: Receiver<Request>,
    /// Written by handles after queueing a request.
    pub wakeup: EventFd,
}

/// A handle and the inbox it feeds.
pub fn channel() -> io::Result<(VsockHandle, Inbox)> {
    let wakeup = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?;
    let (tx, rx) = sync_channel(MAX_PENDING_REQUESTS);
    let handle = VsockHandle {
        requests: tx,
        wakeup: Arc::new(wakeup.try_clone()?),
    };
    Ok((
        handle,
        Inbox {
            requests: rx,
            wakeup,
        },
    ))
}

impl VsockHandle {
    /// Connects to guest port `port`, waiting up to [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect(&self, port: u32) -> io::Result<UnixStream> {
        self.connect_timeout(port, DEFAULT_CONNECT_TIMEOUT)
    }

    /// Connects to guest port `port`, waiting up to `timeout` for the guest to accept.
    ///
    /// Errors: `ConnectionRefused` (nothing listens on the port), `TimedOut`,
    /// `ConnectionReset` (the device was reset or the connection torn down),
    /// `WouldBlock` (too many connects in flight), `NotConnected` (the device is gone),
    /// or the muxer's own error (e.g. its connection limit).
    pub fn connect_timeout(&self, port: u32, timeout: Duration) -> io::Result<UnixStream> {
        let (ours, theirs) = UnixStream::pair()?;
        theirs.set_nonblocking(true)?;
        let (reply, outcome) = sync_channel(1);
        let request = Request {
            port,
            stream: theirs,
            reply,
        };
        match self.requests.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "vsock: too many connects in flight",
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "vsock: the device is gone",
                ))
            }
        }
        self.wakeup.write(1)?;
        match outcome.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(ours),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("vsock: guest port {port} did not answer within {timeout:?}"),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("vsock: connection to guest port {port} was reset"),
            )),
        }
    }
}
