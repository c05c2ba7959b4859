//! The one channel through which an engine's helper threads (console, markers, exit
//! watcher) and outside stop requests reach the engine's run loop.

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Instant;

/// A message to an engine's run loop.
#[derive(Debug)]
pub(crate) enum Message {
    /// A console line from the guest.
    Console(String),
    /// A marker byte and when it arrived.
    Marker(u8, Instant),
    /// A stream (console or markers) ended.
    StreamClosed(Stream),
    /// The VM process or threads ended.
    Exited,
    /// A vCPU (or the event loop) of the `kvm` engine saw the guest end.
    GuestEnded(super::kvm::GuestEnd),
    /// Stop the VM now, for this reason.
    Stop(String),
}

/// The guest's output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Console,
    Markers,
}

/// Asks a running VM to stop. Cloneable; usable from any thread (e.g. a signal handler
/// thread) before or while the engine runs.
#[derive(Clone, Debug)]
pub struct StopHandle(Sender<Message>);

impl StopHandle {
    /// Requests a stop; the VM is killed and its end reported as stopped for `reason`.
    /// Returns false if the VM already ended.
    pub fn stop(&self, reason: &str) -> bool {
        self.0.send(Message::Stop(reason.to_owned())).is_ok()
    }
}

/// The receiving end, handed to [`super::Engine::run`].
#[derive(Debug)]
pub struct Mailbox {
    rx: Receiver<Message>,
    tx: Sender<Message>,
}

/// A new mailbox and a stop handle for it.
pub fn mailbox() -> (StopHandle, Mailbox) {
    let (tx, rx) = mpsc::channel();
    (StopHandle(tx.clone()), Mailbox { rx, tx })
}

impl Mailbox {
    /// A sender for the engine's helper threads.
    pub(crate) fn sender(&self) -> Sender<Message> {
        self.tx.clone()
    }

    /// The next message, or `None` at the deadline.
    pub(crate) fn next_until(&self, deadline: Option<Instant>) -> Option<Message> {
        match deadline {
            None => self.rx.recv().ok(),
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                self.rx.recv_timeout(wait).ok()
            }
        }
    }
}
