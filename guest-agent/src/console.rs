//! Lines the agent prints on the guest console (the serial port the host reads), and the
//! guest-clock figures it reports there.

use nix::time::{clock_gettime, ClockId};

/// Prefix of every agent line, so the host can tell agent lines from kernel messages.
pub const PREFIX: &str = "stage1-kvm-agent: ";

/// Prints one agent line on the console (stdout, which the kernel opened on
/// `/dev/console`).
pub fn line(text: &str) {
    println!("{PREFIX}{text}");
}

/// Milliseconds since the guest kernel started (CLOCK_BOOTTIME), i.e. kernel boot time
/// when read at the agent's start.
pub fn boot_clock_ms() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(0, |t| {
        let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
        secs * 1000 + nanos / 1_000_000
    })
}

/// The agent's own resident set size, from `/proc/self/status`.
pub fn own_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss_kib(&status)
}

fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss_from_proc_status() {
        let status = "Name:\tinit\nVmPeak:\t  1000 kB\nVmRSS:\t     812 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss_kib(status), Some(812));
        assert_eq!(parse_vm_rss_kib("Name:\tinit\n"), None);
    }

    #[test]
    fn own_rss_is_readable_on_linux() {
        assert!(own_rss_kib().is_some_and(|kib| kib > 0));
    }
}
