//! The transport on the VMM's event loop: queue notifications arriving through the
//! ioeventfds, and the backend's own fd while the device is activated.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::{drain, Complaint, MmioTransport, Work};

/// Event data of the internal wake-up eventfd. Queue eventfds carry their queue index,
/// which is below [`super::MAX_QUEUES`].
const WAKE_UP: u32 = u32::MAX;
/// Event data of the backend's fd.
const BACKEND: u32 = u32::MAX - 1;

impl MutEventSubscriber for MmioTransport {
    fn init(&mut self, ops: &mut EventOps) {
        for (index, event) in self.queue_events.iter().enumerate() {
            let Ok(data) = u32::try_from(index) else {
                break;
            };
            if let Err(e) = ops.add(Events::with_data(event, data, EventSet::IN)) {
                self.complaints.report(
                    Complaint::EventLoop,
                    format_args!("cannot watch the notifications of queue {index}: {e}"),
                );
            }
        }
        if let Err(e) = ops.add(Events::with_data(
            &self.registration_event,
            WAKE_UP,
            EventSet::IN,
        )) {
            self.complaints.report(
                Complaint::EventLoop,
                format_args!("cannot watch the wake-up eventfd: {e}"),
            );
        }
        self.update_backend_registration(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            WAKE_UP => drain(&self.registration_event),
            BACKEND => {
                // Not running: the registration below drops the fd.
                if self.is_running() {
                    self.run_backend(Work::BackendEvent);
                }
            }
            data => {
                let queue = usize::try_from(data)
                    .ok()
                    .filter(|&index| index < self.queue_events.len());
                match queue {
                    Some(index) => {
                        if let Some(event) = self.queue_events.get(index) {
                            drain(event);
                        }
                        self.queue_notified(index);
                    }
                    None => self.complaints.report(
                        Complaint::EventLoop,
                        format_args!("event with unknown data {data} ignored"),
                    ),
                }
            }
        }
        self.update_backend_registration(ops);
    }
}

impl MmioTransport {
    /// Watches the backend's fd exactly while the device runs: a readable fd of a backend
    /// that is not activated would otherwise wake the loop forever.
    fn update_backend_registration(&mut self, ops: &mut EventOps) {
        let Some(fd) = self.backend.backend_fd() else {
            return;
        };
        let wanted = self.is_running();
        if wanted == self.backend_fd_registered {
            return;
        }
        let events = Events::with_data_raw(fd, BACKEND, EventSet::IN);
        if wanted {
            match ops.add(events) {
                Ok(()) => self.backend_fd_registered = true,
                Err(e) => self.fail(
                    Complaint::EventLoop,
                    format_args!("cannot watch the backend's fd {fd}: {e}"),
                ),
            }
        } else {
            self.backend_fd_registered = false;
            if let Err(e) = ops.remove(events) {
                self.complaints.report(
                    Complaint::EventLoop,
                    format_args!("cannot stop watching the backend's fd {fd}: {e}"),
                );
            }
        }
    }
}
