//! Rate-limited log lines.
//!
//! A guest (or a host peer) can send the same malformed thing millions of times a second, so
//! each kind of event is logged the first time and then only at its 10th, 100th, 1000th…
//! occurrence, with the count. The counters are process-wide: one line per kind, whichever
//! device instance saw it.

use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of events that are worth a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Event {
    /// A TX descriptor chain that cannot hold a packet (too short, wrong direction, outside
    /// guest memory, payload over the limit).
    MalformedTx,
    /// An RX descriptor chain that cannot hold a packet.
    MalformedRx,
    /// A packet whose source or destination CID is not the guest's or the host's.
    BadCid,
    /// A packet of a socket type other than stream.
    BadType,
    /// A packet with an operation this device does not know, or a payload where the
    /// operation carries none.
    BadOp,
    /// The guest sent more than the credit we advertised.
    CreditViolation,
    /// A packet that breaks the connection protocol (e.g. RESPONSE to nothing).
    ProtocolViolation,
    /// The queue of resets for unknown connections was full; one was dropped.
    ResetQueueFull,
    /// The connection limit was reached.
    ConnectionLimit,
    /// The guest connected to a host port with no listener.
    HostConnectFailed,
    /// A host client sent a malformed `CONNECT` line.
    BadConnectLine,
    /// A host socket failed.
    HostIo,
}

const KINDS: usize = Event::HostIo as usize + 1;

static COUNTS: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];

/// Counts `event` and logs `detail` if this occurrence is the 1st, 10th, 100th… of its kind.
pub fn note(event: Event, detail: std::fmt::Arguments<'_>) {
    let n = COUNTS[event as usize].fetch_add(1, Ordering::Relaxed) + 1;
    if is_power_of_ten(n) {
        if n == 1 {
            eprintln!("stage1-kvm: vsock: {detail}");
        } else {
            eprintln!("stage1-kvm: vsock: {detail} (seen {n} times)");
        }
    }
}

/// How many times `event` happened in this process.
pub fn count(event: Event) -> u64 {
    COUNTS[event as usize].load(Ordering::Relaxed)
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// `report!(Event::X, "format {}", args)`.
macro_rules! report {
    ($event:expr, $($arg:tt)*) => {
        $crate::devices::virtio::vsock::report::note($event, format_args!($($arg)*))
    };
}
pub(crate) use report;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_at_powers_of_ten() {
        let logged: Vec<u64> = (1..=10_000).filter(|&n| is_power_of_ten(n)).collect();
        assert_eq!(logged, [1, 10, 100, 1000, 10_000]);
        assert!(!is_power_of_ten(0));
    }

    #[test]
    fn counts_every_occurrence() {
        let before = count(Event::HostIo);
        note(Event::HostIo, format_args!("test"));
        note(Event::HostIo, format_args!("test"));
        assert!(count(Event::HostIo) >= before + 2);
    }
}
