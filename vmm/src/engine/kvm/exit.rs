//! What a vCPU exit means: port and MMIO accesses go to the buses (the exit port ends the
//! VM), a reset or triple fault ends it, and anything KVM could not handle is fatal. Pure
//! with respect to KVM, so every mapping is unit-tested.

use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::VcpuExit;

use crate::devices::bus::Bus;
use crate::devices::pseudo::exit_port;

/// The two address spaces a vCPU exits on.
#[derive(Debug, Default)]
pub struct IoBuses {
    /// Port I/O.
    pub pio: Bus,
    /// Memory-mapped I/O.
    pub mmio: Bus,
}

/// How the guest ended, as a vCPU saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestEnd {
    /// The guest wrote this value to the exit port (0 = success).
    ExitPort(u32),
    /// The guest reset or triple-faulted (`KVM_EXIT_SHUTDOWN`), or asked KVM to shut down.
    Reset,
    /// KVM or the guest failed in a way the VM cannot go on from.
    Failed(String),
}

/// An exit the VM cannot continue after.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// KVM could not handle the exit itself (e.g. an instruction its emulator lacks).
    #[error("KVM_EXIT_INTERNAL_ERROR")]
    InternalError,
    /// The hardware refused to enter the guest.
    #[error("KVM_EXIT_FAIL_ENTRY (hardware reason {reason:#x} on host CPU {cpu})")]
    FailEntry {
        /// The hardware's entry failure reason.
        reason: u64,
        /// The host CPU.
        cpu: u32,
    },
    /// The guest reported a crash (`KVM_SYSTEM_EVENT_CRASH`).
    #[error("the guest crashed (KVM_SYSTEM_EVENT_CRASH)")]
    Crash,
    /// An exit we never ask for.
    #[error("unexpected vCPU exit {0}")]
    Unexpected(String),
}

/// What the vCPU does after an exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run on.
    Continue,
    /// The guest ended.
    End(GuestEnd),
    /// The VM must stop.
    Fatal(Fatal),
}

/// Value of a read nobody answers: an empty bus reads all-ones (absent ISA devices, PCI
/// configuration ports, unclaimed MMIO).
const OPEN_BUS: u8 = 0xff;

fn is_exit_port(port: u16) -> bool {
    (exit_port::PORT..exit_port::PORT + exit_port::PORT_COUNT).contains(&port)
}

/// Handles one exit.
pub fn handle_exit(exit: VcpuExit<'_>, io: &IoBuses) -> Step {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !io.pio.read(u64::from(port), data) {
                data.fill(OPEN_BUS);
            }
            Step::Continue
        }
        VcpuExit::IoOut(port, data) if is_exit_port(port) => {
            Step::End(GuestEnd::ExitPort(exit_port::value(data)))
        }
        VcpuExit::IoOut(port, data) => {
            // Writes to absent ports (0x80 delay, i8042, RTC, PCI config…) are dropped.
            io.pio.write(u64::from(port), data);
            Step::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            if !io.mmio.read(addr, data) {
                data.fill(OPEN_BUS);
            }
            Step::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            io.mmio.write(addr, data);
            Step::Continue
        }
        VcpuExit::Shutdown => Step::End(GuestEnd::Reset),
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN | KVM_SYSTEM_EVENT_RESET, _) => {
            Step::End(GuestEnd::Reset)
        }
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_CRASH, _) => Step::Fatal(Fatal::Crash),
        VcpuExit::InternalError => Step::Fatal(Fatal::InternalError),
        VcpuExit::FailEntry(reason, cpu) => Step::Fatal(Fatal::FailEntry { reason, cpu }),
        // A signal interrupted the run after the exit was set up; nothing to do.
        VcpuExit::Intr => Step::Continue,
        other => Step::Fatal(Fatal::Unexpected(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::devices::bus::tests::Recorder;

    fn buses() -> (IoBuses, Arc<Recorder>, Arc<Recorder>) {
        let (port_dev, mmio_dev) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let mut io = IoBuses::default();
        io.pio.insert("serial", port_dev.clone(), 0x3f8, 8).unwrap();
        io.pio
            .reserve("exit port", u64::from(exit_port::PORT), 4)
            .unwrap();
        io.mmio
            .insert("virtio", mmio_dev.clone(), 0xd000_0000, 0x1000)
            .unwrap();
        (io, port_dev, mmio_dev)
    }

    #[test]
    fn port_io_reaches_devices_and_absent_ports_read_all_ones() {
        let (io, serial, _) = buses();
        let mut data = [0u8];
        assert_eq!(
            handle_exit(VcpuExit::IoIn(0x3fd, &mut data), &io),
            Step::Continue
        );
        assert_eq!(data, [5]);
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0x3f8, b"x"), &io),
            Step::Continue
        );
        assert_eq!(*serial.writes.lock().unwrap(), [(0, b"x".to_vec())]);
        for port in [0x80, 0x60, 0x64, 0x70, 0x71, 0xcfc, 0x2f8] {
            let mut data = [0u8];
            assert_eq!(
                handle_exit(VcpuExit::IoIn(port, &mut data), &io),
                Step::Continue
            );
            assert_eq!(data, [0xff], "port {port:#x}");
            assert_eq!(
                handle_exit(VcpuExit::IoOut(port, &[1]), &io),
                Step::Continue
            );
        }
        let mut dword = [0u8; 4];
        handle_exit(VcpuExit::IoIn(0xcf8, &mut dword), &io);
        assert_eq!(dword, [0xff; 4], "no PCI");
    }

    #[test]
    fn the_exit_port_ends_the_guest_with_its_value() {
        let (io, serial, _) = buses();
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0xf4, &[0]), &io),
            Step::End(GuestEnd::ExitPort(0))
        );
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0xf4, &[1]), &io),
            Step::End(GuestEnd::ExitPort(1))
        );
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0xf4, &[2, 1, 0, 0]), &io),
            Step::End(GuestEnd::ExitPort(0x102))
        );
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0xf7, &[3]), &io),
            Step::End(GuestEnd::ExitPort(3))
        );
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0xf8, &[0]), &io),
            Step::Continue
        );
        assert!(serial.writes.lock().unwrap().is_empty());
        // Reading the exit port is harmless.
        let mut data = [0u8];
        assert_eq!(
            handle_exit(VcpuExit::IoIn(0xf4, &mut data), &io),
            Step::Continue
        );
        assert_eq!(data, [0xff]);
    }

    #[test]
    fn mmio_reaches_devices_and_unclaimed_addresses_read_all_ones() {
        let (io, _, virtio) = buses();
        let mut data = [0u8; 4];
        assert_eq!(
            handle_exit(VcpuExit::MmioRead(0xd000_0008, &mut data), &io),
            Step::Continue
        );
        assert_eq!(data, [8; 4]);
        handle_exit(VcpuExit::MmioWrite(0xd000_0070, &[7, 0, 0, 0]), &io);
        assert_eq!(*virtio.writes.lock().unwrap(), [(0x70, vec![7, 0, 0, 0])]);
        let mut data = [0u8; 4];
        handle_exit(VcpuExit::MmioRead(0xd000_1000, &mut data), &io);
        assert_eq!(data, [0xff; 4]);
        assert_eq!(
            handle_exit(VcpuExit::MmioWrite(0x1234_5678, &[0]), &io),
            Step::Continue
        );
    }

    #[test]
    fn resets_end_the_guest_and_failures_are_fatal() {
        let (io, _, _) = buses();
        assert_eq!(
            handle_exit(VcpuExit::Shutdown, &io),
            Step::End(GuestEnd::Reset)
        );
        assert_eq!(
            handle_exit(VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, &[]), &io),
            Step::End(GuestEnd::Reset)
        );
        assert_eq!(
            handle_exit(VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_CRASH, &[]), &io),
            Step::Fatal(Fatal::Crash)
        );
        assert_eq!(
            handle_exit(VcpuExit::InternalError, &io),
            Step::Fatal(Fatal::InternalError)
        );
        assert_eq!(
            handle_exit(VcpuExit::FailEntry(0x21, 1), &io),
            Step::Fatal(Fatal::FailEntry {
                reason: 0x21,
                cpu: 1
            })
        );
        assert_eq!(
            Fatal::FailEntry {
                reason: 0x21,
                cpu: 1
            }
            .to_string(),
            "KVM_EXIT_FAIL_ENTRY (hardware reason 0x21 on host CPU 1)"
        );
        for exit in [
            VcpuExit::Hlt,
            VcpuExit::Exception,
            VcpuExit::Unknown,
            VcpuExit::Debug(Default::default()),
        ] {
            let step = handle_exit(exit, &io);
            assert!(
                matches!(step, Step::Fatal(Fatal::Unexpected(_))),
                "{step:?}"
            );
        }
        assert_eq!(
            handle_exit(VcpuExit::Hlt, &io),
            Step::Fatal(Fatal::Unexpected("Hlt".into()))
        );
        assert_eq!(handle_exit(VcpuExit::Intr, &io), Step::Continue);
    }
}
