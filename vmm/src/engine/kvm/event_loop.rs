//! The VMM's event loop: one thread (`vmm-events`) running an `event-manager` over the
//! device subscribers (virtio-mmio transports: queue notifications, backend events). It
//! ends when told to through its own eventfd.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::eventfd::EventFd;

use super::exit::GuestEnd;
use crate::engine::mailbox::Message;

/// What the loop drives.
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Why the loop could not be set up or started.
#[derive(Debug, thiserror::Error)]
pub enum EventLoopError {
    /// The epoll set could not be created.
    #[error("creating the event loop: {0}")]
    Create(event_manager::Error),
    /// Its stop eventfd could not be created.
    #[error("creating the event loop's stop eventfd: {0}")]
    Eventfd(std::io::Error),
    /// The thread could not be spawned.
    #[error("spawning the event loop thread: {0}")]
    Spawn(std::io::Error),
}

/// The stop eventfd as a subscriber.
struct StopEvent {
    fd: EventFd,
    stopped: Arc<AtomicBool>,
}

impl MutEventSubscriber for StopEvent {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.fd.read();
        self.stopped.store(true, Ordering::SeqCst);
    }

    fn init(&mut self, ops: &mut EventOps) {
        // Only fails for an fd registered twice, which a fresh eventfd is not.
        let _ = ops.add(Events::new(&self.fd, EventSet::IN));
    }
}

/// An event loop being set up.
pub struct EventLoop {
    manager: EventManager<Subscriber>,
    stop: EventFd,
    stopped: Arc<AtomicBool>,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").finish_non_exhaustive()
    }
}

impl EventLoop {
    /// An empty loop.
    pub fn new() -> Result<Self, EventLoopError> {
        let mut manager: EventManager<Subscriber> =
            EventManager::new().map_err(EventLoopError::Create)?;
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(EventLoopError::Eventfd)?;
        let stopped = Arc::new(AtomicBool::new(false));
        let subscriber = StopEvent {
            fd: stop.try_clone().map_err(EventLoopError::Eventfd)?,
            stopped: Arc::clone(&stopped),
        };
        manager.add_subscriber(Arc::new(Mutex::new(subscriber)));
        Ok(Self {
            manager,
            stop,
            stopped,
        })
    }

    /// Adds a subscriber; its `init` registers its fds.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "the virtio-mmio transports subscribe here once they land"
        )
    )]
    pub fn add(&mut self, subscriber: Subscriber) {
        self.manager.add_subscriber(subscriber);
    }

    /// Runs the loop on its own thread. A failure of the loop is reported to `report` as
    /// the end of the guest.
    pub fn start(self, report: Sender<Message>) -> Result<EventLoopThread, EventLoopError> {
        let Self {
            mut manager,
            stop,
            stopped,
        } = self;
        let thread = std::thread::Builder::new()
            .name("vmm-events".to_owned())
            .spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    if let Err(e) = manager.run() {
                        let reason = format!("the VMM event loop failed: {e}");
                        let _ = report.send(Message::GuestEnded(GuestEnd::Failed(reason)));
                        return;
                    }
                }
            })
            .map_err(EventLoopError::Spawn)?;
        Ok(EventLoopThread {
            stop,
            thread: Some(thread),
        })
    }
}

/// The running loop. Dropping it stops and joins it.
#[derive(Debug)]
pub struct EventLoopThread {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl EventLoopThread {
    /// Ends the loop and waits for its thread. Idempotent.
    pub fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            // An eventfd write fails only when its counter would overflow, i.e. when it
            // is already readable: the loop wakes up either way.
            let _ = self.stop.write(1);
            let _ = thread.join();
        }
    }
}

impl Drop for EventLoopThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the events of one eventfd.
    struct Counter {
        fd: EventFd,
        seen: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl MutEventSubscriber for Counter {
        fn process(&mut self, _events: Events, _ops: &mut EventOps) {
            let _ = self.fd.read();
            self.seen.fetch_add(1, Ordering::SeqCst);
        }

        fn init(&mut self, ops: &mut EventOps) {
            ops.add(Events::new(&self.fd, EventSet::IN)).unwrap();
        }
    }

    #[test]
    fn subscribers_get_their_events_and_stopping_joins_the_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut event_loop = EventLoop::new().unwrap();
        let fd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        event_loop.add(Arc::new(Mutex::new(Counter {
            fd: fd.try_clone().unwrap(),
            seen: Arc::clone(&seen),
        })));
        let mut running = event_loop.start(tx).unwrap();
        fd.write(1).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while seen.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "event never processed"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        running.stop_and_join();
        running.stop_and_join();
        assert!(rx.try_recv().is_err(), "a clean stop reports nothing");
    }
}
