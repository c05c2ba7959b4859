//! The 8250/16550A UART on COM1 (`vm-superio`), whose output becomes the engine's console
//! lines. Its interrupt is an eventfd that the `kvm` engine registers as an irqfd for
//! IRQ 4 of the in-kernel irqchip. There is no input: the console is for reading.

use std::io::Write;
use std::sync::Mutex;

use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::BusDevice;

/// I/O port of COM1.
pub const COM1_PORT: u16 = 0x3f8;
/// Number of ports the UART decodes.
pub const PORT_COUNT: u16 = 8;
/// Its ISA interrupt line.
pub const COM1_IRQ: u32 = 4;

/// Longest line passed on; a guest printing without newlines is cut into lines this long.
pub const MAX_LINE: usize = 4096;

/// An interrupt raised by writing to an eventfd (an irqfd on the KVM side).
#[derive(Debug)]
pub struct EventFdTrigger(EventFd);

impl EventFdTrigger {
    /// Wraps `fd`.
    pub fn new(fd: EventFd) -> Self {
        Self(fd)
    }
}

impl Trigger for EventFdTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Where finished console lines go.
pub type LineSink = Box<dyn FnMut(String) + Send>;

/// Splits the UART's byte stream into lines (`\n`, with a trailing `\r` dropped; invalid
/// UTF-8 replaced) and hands each to a sink.
pub struct LineWriter {
    pending: Vec<u8>,
    sink: LineSink,
}

impl std::fmt::Debug for LineWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineWriter")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl LineWriter {
    /// A writer that calls `sink` with every line.
    pub fn new(sink: LineSink) -> Self {
        Self {
            pending: Vec::new(),
            sink,
        }
    }

    fn emit(&mut self) {
        let mut line = std::mem::take(&mut self.pending);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        (self.sink)(String::from_utf8_lossy(&line).into_owned());
    }

    /// Passes on a last line that has no newline yet (at the end of the VM).
    pub fn finish(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &byte in buf {
            if byte == b'\n' {
                self.emit();
            } else {
                self.pending.push(byte);
                if self.pending.len() >= MAX_LINE {
                    self.emit();
                }
            }
        }
        Ok(buf.len())
    }

    /// A no-op: the UART flushes after every byte, and a partial line is not a line.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// COM1 as a port-I/O bus device.
#[derive(Debug)]
pub struct SerialDevice {
    uart: Mutex<Serial<EventFdTrigger, NoEvents, LineWriter>>,
}

impl SerialDevice {
    /// A UART that interrupts through `interrupt` and writes lines to `sink`.
    pub fn new(interrupt: EventFd, sink: LineSink) -> Self {
        Self {
            uart: Mutex::new(Serial::new(
                EventFdTrigger::new(interrupt),
                LineWriter::new(sink),
            )),
        }
    }

    /// Passes on the last, unterminated line if there is one.
    pub fn finish(&self) {
        self.lock().writer_mut().finish();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Serial<EventFdTrigger, NoEvents, LineWriter>> {
        self.uart
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl BusDevice for SerialDevice {
    fn read(&self, offset: u64, data: &mut [u8]) {
        let mut uart = self.lock();
        // Registers are bytes; a wider access reads consecutive ones.
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = register(offset, i).map_or(0xff, |reg| uart.read(reg));
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let mut uart = self.lock();
        for (i, byte) in data.iter().enumerate() {
            if let Some(reg) = register(offset, i) {
                // A failed interrupt trigger (eventfd full) loses nothing the guest needs:
                // the UART's state still says what is pending.
                let _ = uart.write(reg, *byte);
            }
        }
    }
}

/// The register number of byte `i` of an access at `offset`, if within the UART.
fn register(offset: u64, i: usize) -> Option<u8> {
    let reg = offset.checked_add(u64::try_from(i).ok()?)?;
    u8::try_from(reg)
        .ok()
        .filter(|r| u16::from(*r) < PORT_COUNT)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const THR: u64 = 0;
    const IER: u64 = 1;
    const IIR: u64 = 2;
    const LCR: u64 = 3;
    const LSR: u64 = 5;

    fn serial() -> (SerialDevice, Arc<Mutex<Vec<String>>>, EventFd) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let device = SerialDevice::new(
            irq.try_clone().unwrap(),
            Box::new(move |l| sink.lock().unwrap().push(l)),
        );
        (device, lines, irq)
    }

    fn put(device: &SerialDevice, text: &str) {
        for b in text.bytes() {
            device.write(THR, &[b]);
        }
    }

    #[test]
    fn output_becomes_lines_without_carriage_returns() {
        let (device, lines, _irq) = serial();
        put(&device, "test-guest: hello\r\nsecond\nthird, unterminated");
        assert_eq!(*lines.lock().unwrap(), ["test-guest: hello", "second"]);
        device.finish();
        device.finish();
        assert_eq!(
            lines.lock().unwrap().last().map(String::as_str),
            Some("third, unterminated")
        );
        assert_eq!(lines.lock().unwrap().len(), 3);
    }

    #[test]
    fn endless_lines_are_cut_and_bad_utf8_replaced() {
        let (device, lines, _irq) = serial();
        for _ in 0..MAX_LINE + 10 {
            device.write(THR, b"x");
        }
        device.write(THR, &[0xff]);
        device.write(THR, b"\n");
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(lines[1], "xxxxxxxxxx\u{fffd}");
    }

    #[test]
    fn the_transmitter_is_always_ready_and_the_uart_has_fifos() {
        let (device, _lines, _irq) = serial();
        let mut byte = [0];
        device.read(LSR, &mut byte);
        assert_eq!(byte[0] & 0x20, 0x20, "THRE");
        device.read(IIR, &mut byte);
        assert_eq!(byte[0] & 0xc0, 0xc0, "16550A FIFO bits");
        device.write(LCR, &[0x03]);
        device.read(LCR, &mut byte);
        assert_eq!(byte, [0x03]);
        // Past the UART's eight registers (cannot happen through the bus, which routes
        // only its 8 ports here, but the device stays safe).
        device.read(8, &mut byte);
        assert_eq!(byte, [0xff]);
    }

    #[test]
    fn transmit_interrupts_reach_the_eventfd_once_enabled() {
        let (device, _lines, irq) = serial();
        put(&device, "a");
        assert!(irq.read().is_err(), "no interrupt while IER is clear");
        device.write(IER, &[0x02]); // THR empty interrupt
        put(&device, "b");
        assert!(irq.read().unwrap() >= 1);
    }
}
