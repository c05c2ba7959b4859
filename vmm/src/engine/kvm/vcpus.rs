//! The vCPU threads: one per vCPU, named `vcpu<N>`. The first vCPU to see the guest end
//! reports it to the engine's mailbox; stopping sets a shared flag, kicks every thread out
//! of `KVM_RUN` and joins them all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use vmm_sys_util::signal::Killable;

use super::exit::IoBuses;
use super::vstate::vcpu::{install_kick_handler, kick_signal, Vcpu};
use super::vstate::VstateError;
use crate::engine::mailbox::Message;

/// Running vCPU threads. Dropping them stops and joins them.
#[derive(Debug)]
pub struct VcpuThreads {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// Why the vCPU threads could not be started.
#[derive(Debug, thiserror::Error)]
pub enum VcpuThreadError {
    /// The kick signal handler could not be installed.
    #[error(transparent)]
    Kick(#[from] VstateError),
    /// A thread could not be spawned.
    #[error("spawning the thread of vCPU {index}: {source}")]
    Spawn {
        /// The vCPU.
        index: u8,
        /// Why.
        source: std::io::Error,
    },
}

impl VcpuThreads {
    /// Starts a thread per vCPU; each reports the guest's end to `report`.
    pub fn start(
        vcpus: Vec<Vcpu>,
        io: Arc<IoBuses>,
        report: &Sender<Message>,
    ) -> Result<Self, VcpuThreadError> {
        install_kick_handler()?;
        let mut started = Self {
            threads: Vec::with_capacity(vcpus.len()),
            stop: Arc::new(AtomicBool::new(false)),
        };
        for mut vcpu in vcpus {
            let index = vcpu.index();
            let (io, stop, report) = (Arc::clone(&io), Arc::clone(&started.stop), report.clone());
            let thread = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || {
                    if let Some(end) = vcpu.run(&io, &stop) {
                        stop.store(true, Ordering::SeqCst);
                        let _ = report.send(Message::GuestEnded(end));
                    }
                })
                // Dropping `started` stops the threads already running.
                .map_err(|source| VcpuThreadError::Spawn { index, source })?;
            started.threads.push(thread);
        }
        Ok(started)
    }

    /// Stops every vCPU and waits for its thread to end. Idempotent.
    pub fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in &self.threads {
            // A thread that already returned cannot be signalled; nothing to do then.
            let _ = thread.kill(kick_signal());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for VcpuThreads {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
