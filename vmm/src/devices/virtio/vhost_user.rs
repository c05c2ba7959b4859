//! Serving a [`VirtioBackend`] over vhost-user, for the `qemu` engine: QEMU runs the
//! virtio-mmio transport (`-device vhost-user-*-device`) and hands us guest memory (its
//! memfd), the queue addresses and the kick/call eventfds over a Unix socket; the
//! `vhost-user-backend` crate speaks the protocol and runs an epoll loop that calls us.
//!
//! The adapter maps that loop onto the backend interface: a queue's kick is
//! [`VirtioBackend::handle_queue`], the backend's own fd is registered as an extra
//! listener and becomes [`VirtioBackend::handle_backend_event`], and the vrings are the
//! [`QueueSet`]. vhost-user has no DRIVER_OK message, so the backend is activated on the
//! first event after the guest memory is known.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackendMut, VhostUserDaemon, VringRwLock, VringT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::backend::{BackendError, GuestMemory, QueueSet, SharedMemory, VirtioBackend};

type Vring = VringRwLock<SharedMemory>;

/// A backend as the vhost-user daemon drives it.
struct Adapter {
    backend: Mutex<Box<dyn VirtioBackend>>,
    memory: Option<SharedMemory>,
    activated: bool,
    name: String,
    /// The exit event of the daemon's one vring worker thread: written when the daemon
    /// is dropped, it ends the thread (without one the thread never ends, and keeps the
    /// backend alive until the process exits).
    exit: (EventConsumer, EventNotifier),
}

impl Adapter {
    /// The epoll token of the backend's own fd: tokens up to `num_queues` are the
    /// crate's (queues and its exit event).
    fn backend_token(num_queues: usize) -> u16 {
        u16::try_from(num_queues + 1).unwrap_or(u16::MAX)
    }

    fn backend(&self) -> std::sync::MutexGuard<'_, Box<dyn VirtioBackend>> {
        self.backend.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ensure_activated(&mut self) -> Result<bool, BackendError> {
        if self.activated {
            return Ok(true);
        }
        let Some(memory) = self.memory.clone() else {
            return Ok(false);
        };
        self.backend().activate(memory)?;
        self.activated = true;
        Ok(true)
    }
}

/// The vrings and the guest memory, as the backend's [`QueueSet`].
struct VringQueues<'a> {
    vrings: &'a [Vring],
    memory: &'a SharedMemory,
}

impl QueueSet for VringQueues<'_> {
    fn len(&self) -> usize {
        self.vrings.len()
    }

    fn with_queue(
        &mut self,
        index: usize,
        f: &mut dyn FnMut(&mut virtio_queue::Queue, &GuestMemory) -> Result<(), BackendError>,
    ) -> Result<(), BackendError> {
        let vring = self
            .vrings
            .get(index)
            .ok_or(BackendError::NoSuchQueue(index))?;
        let memory = self.memory.memory();
        let mut state = vring.get_mut();
        f(state.get_queue_mut(), &memory)
    }

    fn signal(&mut self, index: usize) -> Result<(), BackendError> {
        let vring = self
            .vrings
            .get(index)
            .ok_or(BackendError::NoSuchQueue(index))?;
        vring
            .signal_used_queue()
            .map_err(|source| BackendError::Io {
                what: format!("signalling queue {index}"),
                source,
            })
    }
}

impl VhostUserBackendMut for Adapter {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        self.backend().num_queues()
    }

    fn max_queue_size(&self) -> usize {
        usize::from(self.backend().max_queue_size())
    }

    fn features(&self) -> u64 {
        self.backend().features() | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&mut self, features: u64) {
        let features = features & !VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        self.backend().ack_features(features);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        // CONFIG: QEMU reads the device config (e.g. vsock's guest CID) from us.
        VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn reset_device(&mut self) {
        self.backend().reset();
        self.activated = false;
    }

    fn exit_event(&self, thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // One worker thread (the default queues_per_thread); its epoll gets the consumer.
        if thread_index != 0 {
            return None;
        }
        let (consumer, notifier) = &self.exit;
        Some((consumer.try_clone().ok()?, notifier.try_clone().ok()?))
    }

    fn set_event_idx(&mut self, _enabled: bool) {
        // The backend offers EVENT_IDX only if it handles it through `Queue`, which reads
        // the negotiated state from the queue itself.
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let config = self.backend().config();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(config.len());
        let end = start
            .saturating_add(usize::try_from(size).unwrap_or(0))
            .min(config.len());
        config[start..end].to_vec()
    }

    fn update_memory(
        &mut self,
        memory: GuestMemoryAtomic<GuestMemoryMmap<()>>,
    ) -> std::io::Result<()> {
        self.memory = Some(memory);
        Ok(())
    }

    fn handle_event(
        &mut self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> std::io::Result<()> {
        let result = (|| {
            if !self.ensure_activated()? {
                return Ok(());
            }
            let Some(memory) = self.memory.clone() else {
                return Ok(());
            };
            let mut queues = VringQueues {
                vrings,
                memory: &memory,
            };
            let num_queues = vrings.len();
            let mut backend = self.backend();
            if usize::from(device_event) < num_queues {
                backend.handle_queue(usize::from(device_event), &mut queues)
            } else if device_event == Self::backend_token(num_queues) {
                backend.handle_backend_event(&mut queues)
            } else {
                Ok(())
            }
        })();
        // A guest's bad request must not stop the device for good: log and go on.
        if let Err(e) = result {
            eprintln!("stage1-kvm: {}: {e}", self.name);
        }
        Ok(())
    }
}

/// A backend served over vhost-user on a Unix socket: listening from [`Self::listen`],
/// serving one frontend (QEMU) from [`Self::start`] until it disconnects.
pub struct VhostUserServer {
    name: String,
    socket: PathBuf,
    listener: Option<Listener>,
    adapter: Arc<RwLock<Adapter>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for VhostUserServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUserServer")
            .field("name", &self.name)
            .field("socket", &self.socket)
            .finish()
    }
}

/// Errors setting up a vhost-user server.
#[derive(Debug, thiserror::Error)]
pub enum VhostUserError {
    /// Listening on the socket failed.
    #[error("listening for vhost-user on {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: vhost::vhost_user::Error,
    },
    /// The daemon could not be set up.
    #[error("vhost-user device {name}: {reason}")]
    Daemon {
        /// The device's name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl VhostUserServer {
    /// Listens on `socket` for the frontend of `backend`; `name` appears in logs.
    pub fn listen(
        name: &str,
        socket: &Path,
        backend: Box<dyn VirtioBackend>,
    ) -> Result<Self, VhostUserError> {
        let listener = Listener::new(socket, true).map_err(|source| VhostUserError::Listen {
            path: socket.to_owned(),
            source,
        })?;
        let exit = new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC)
            .map_err(|e| VhostUserError::Daemon {
                name: name.to_owned(),
                reason: format!("creating its exit event: {e}"),
            })?;
        let adapter = Adapter {
            backend: Mutex::new(backend),
            memory: None,
            activated: false,
            name: name.to_owned(),
            exit,
        };
        Ok(Self {
            name: name.to_owned(),
            socket: socket.to_owned(),
            listener: Some(listener),
            adapter: Arc::new(RwLock::new(adapter)),
            thread: None,
        })
    }

    /// The socket the frontend connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Serves the frontend on a thread of its own: accepts its connection, then handles
    /// its requests and the queues until it disconnects (QEMU exits).
    pub fn start(&mut self) -> Result<(), VhostUserError> {
        let Some(mut listener) = self.listener.take() else {
            return Ok(());
        };
        let daemon_error = |reason: String| VhostUserError::Daemon {
            name: self.name.clone(),
            reason,
        };
        let mut daemon = VhostUserDaemon::new(
            self.name.clone(),
            Arc::clone(&self.adapter),
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        )
        .map_err(|e| daemon_error(e.to_string()))?;
        let backend_fd = {
            let adapter = self.adapter.read().unwrap_or_else(PoisonError::into_inner);
            let backend = adapter.backend();
            backend
                .backend_fd()
                .map(|fd| (fd, Adapter::backend_token(backend.num_queues())))
        };
        if let Some((fd, token)) = backend_fd {
            for handler in daemon.get_epoll_handlers() {
                handler
                    .register_listener(fd, EventSet::IN, u64::from(token))
                    .map_err(|e| daemon_error(format!("watching the backend's fd: {e}")))?;
            }
        }
        let name = self.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("vhost-user-{name}"))
            .spawn(move || {
                // start() blocks until QEMU connects; wait() until it disconnects. QEMU
                // going away is the normal end; anything else is logged.
                let result = daemon.start(&mut listener).and_then(|()| daemon.wait());
                if let Err(e) = result {
                    if !matches!(
                        e,
                        vhost_user_backend::Error::HandleRequest(
                            vhost::vhost_user::Error::Disconnected
                                | vhost::vhost_user::Error::PartialMessage
                        )
                    ) {
                        eprintln!("stage1-kvm: vhost-user {name}: {e}");
                    }
                }
            })
            .map_err(|e| daemon_error(format!("starting its thread: {e}")))?;
        self.thread = Some(thread);
        Ok(())
    }
}

/// How long dropping a server waits for its thread before giving up on it. The frontend
/// is gone by then (QEMU was reaped), so the thread normally ends within milliseconds.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait before assuming the thread still waits for a frontend to connect.
const ACCEPT_GRACE: Duration = Duration::from_millis(50);

/// Waits up to `timeout` for `thread` to finish; whether it did.
fn finished_within(thread: &JoinHandle<()>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

impl Drop for VhostUserServer {
    /// Ends the serving thread and drops the backend with it, so that whatever the backend
    /// cleans up on drop (the vsock socket file, the virtio-fs worker thread) is cleaned up
    /// before the process goes on (or exits, which runs no destructors of other threads).
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // The thread ends once the frontend has hung up; one that never connected still
            // waits in accept(): a connection that hangs up at once releases it.
            if !finished_within(&thread, ACCEPT_GRACE) {
                let _ = std::os::unix::net::UnixStream::connect(&self.socket);
            }
            if finished_within(&thread, STOP_TIMEOUT) {
                let _ = thread.join();
            } else {
                eprintln!(
                    "stage1-kvm: vhost-user {}: the device thread did not stop within {STOP_TIMEOUT:?}",
                    self.name
                );
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A backend that records being dropped.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl VirtioBackend for Dropped {
        fn device_type(&self) -> u32 {
            19
        }

        fn num_queues(&self) -> usize {
            1
        }

        fn max_queue_size(&self) -> u16 {
            16
        }

        fn features(&self) -> u64 {
            super::super::backend::VIRTIO_F_VERSION_1
        }

        fn ack_features(&mut self, _features: u64) {}

        fn config(&self) -> Vec<u8> {
            Vec::new()
        }

        fn activate(&mut self, _memory: SharedMemory) -> Result<(), BackendError> {
            Ok(())
        }

        fn reset(&mut self) {}

        fn handle_queue(
            &mut self,
            _index: usize,
            _queues: &mut dyn QueueSet,
        ) -> Result<(), BackendError> {
            Ok(())
        }
    }

    fn started(dir: &Path) -> (VhostUserServer, Arc<AtomicBool>, PathBuf) {
        let dropped = Arc::new(AtomicBool::new(false));
        let socket = dir.join("dev.vhost");
        let mut server =
            VhostUserServer::listen("test", &socket, Box::new(Dropped(Arc::clone(&dropped))))
                .unwrap();
        server.start().unwrap();
        (server, dropped, socket)
    }

    #[test]
    fn dropping_a_server_whose_frontend_left_drops_the_backend() {
        let dir = tempfile::tempdir().unwrap();
        let (server, dropped, socket) = started(dir.path());
        // A frontend that connects and hangs up, as QEMU does when it exits.
        drop(std::os::unix::net::UnixStream::connect(&socket).unwrap());
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < STOP_TIMEOUT);
        assert!(
            dropped.load(Ordering::SeqCst),
            "the backend outlived its server"
        );
        assert!(!socket.exists());
    }

    #[test]
    fn dropping_a_server_nobody_connected_to_does_not_hang_and_drops_the_backend() {
        let dir = tempfile::tempdir().unwrap();
        let (server, dropped, socket) = started(dir.path());
        let started = Instant::now();
        drop(server);
        assert!(started.elapsed() < STOP_TIMEOUT);
        assert!(dropped.load(Ordering::SeqCst));
        assert!(!socket.exists());
    }
}
