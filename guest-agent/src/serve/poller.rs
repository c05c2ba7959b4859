//! The epoll instance and the file descriptors registered in it.
//!
//! Every descriptor the event loop watches is a [`Watched`]: it owns the descriptor, knows
//! its token and the interest currently registered, and removes its registration when it
//! is dropped. That last point matters: epoll keys registrations by open file
//! description, so a registration outlives `close` while a duplicate of the descriptor
//! exists (the pty master and its stdin duplicate), and would then report events for a
//! token that no longer means anything.
//!
//! Registrations are level-triggered. "No interest" removes the descriptor from the set,
//! because epoll always reports `EPOLLHUP`/`EPOLLERR`, which would spin the loop while a
//! paused pipe's writer is gone.

use std::io;
use std::os::fd::AsFd;
use std::rc::Rc;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// What a ready descriptor wants: read, write, or both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Wake up when it is readable (or hung up).
    pub read: bool,
    /// Wake up when it is writable.
    pub write: bool,
}

impl Interest {
    /// Neither read nor write: the descriptor is not in the epoll set.
    pub const NONE: Self = Self {
        read: false,
        write: false,
    };
    /// Readable only.
    pub const READ: Self = Self {
        read: true,
        write: false,
    };
    /// Writable only.
    pub const WRITE: Self = Self {
        read: false,
        write: true,
    };

    fn flags(self) -> EpollFlags {
        let mut flags = EpollFlags::empty();
        if self.read {
            flags |= EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        }
        if self.write {
            flags |= EpollFlags::EPOLLOUT;
        }
        flags
    }
}

/// The loop's epoll instance, shared by every [`Watched`] so that dropping one can remove
/// its registration.
#[derive(Debug, Clone)]
pub struct Poller(Rc<Epoll>);

impl Poller {
    /// A new epoll instance (close-on-exec, so children never inherit it).
    pub fn new() -> io::Result<Self> {
        Ok(Self(Rc::new(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?)))
    }

    /// Waits for events; an interrupted wait returns no events.
    pub fn wait(&self, events: &mut [EpollEvent], timeout: EpollTimeout) -> io::Result<usize> {
        match self.0.wait(events, timeout) {
            Ok(n) => Ok(n),
            Err(nix::errno::Errno::EINTR) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts watching `inner` under `token`, with no interest yet.
    pub fn watch<F: AsFd>(&self, inner: F, token: u64) -> Watched<F> {
        Watched {
            inner,
            token,
            interest: Interest::NONE,
            poller: self.clone(),
        }
    }
}

/// A descriptor owned by the event loop, registered under a token.
#[derive(Debug)]
pub struct Watched<F: AsFd> {
    inner: F,
    token: u64,
    interest: Interest,
    poller: Poller,
}

impl<F: AsFd> Watched<F> {
    /// The owned descriptor (socket, pipe end, listener, signalfd).
    pub fn get(&self) -> &F {
        &self.inner
    }

    /// Registers the interest wanted now; a no-op when it did not change.
    pub fn set(&mut self, wanted: Interest) -> io::Result<()> {
        if wanted == self.interest {
            return Ok(());
        }
        let epoll = &self.poller.0;
        let result = if wanted == Interest::NONE {
            epoll.delete(self.inner.as_fd())
        } else if self.interest == Interest::NONE {
            epoll.add(
                self.inner.as_fd(),
                EpollEvent::new(wanted.flags(), self.token),
            )
        } else {
            epoll.modify(
                self.inner.as_fd(),
                &mut EpollEvent::new(wanted.flags(), self.token),
            )
        };
        result?;
        self.interest = wanted;
        Ok(())
    }
}

impl<F: AsFd> Drop for Watched<F> {
    fn drop(&mut self) {
        if self.interest != Interest::NONE {
            // The descriptor is still open here (it is dropped after this), so the
            // registration can be found and removed.
            let _ = self.poller.0.delete(self.inner.as_fd());
        }
    }
}
