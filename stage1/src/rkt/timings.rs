//! `STAGE1_KVM_TIMINGS=1`: the `run` entrypoint prints one machine-readable line of phase
//! timestamps to stderr as it exits, for benchmarks (`tests/bench/pod.rs`). Off by
//! default; it changes nothing else.
//!
//! ```text
//! stage1-kvm-timings: clock=monotonic_us start=… engine=… agent_started=… agent_ready=… app_started=… app_exited=… vm_gone=… end=… guest_kernel_ms=…
//! ```
//!
//! Each phase is `CLOCK_MONOTONIC` in microseconds (the clock a benchmark on the same host
//! reads), `-` if the run never got there: `start` the entrypoint began, `engine` the
//! engine was asked to boot, `agent_started` / `agent_ready` the agent's boot markers (as
//! the engine timestamped them), `app_started` the first app's `app_started`, `app_exited`
//! the last app's `app_exited`, `vm_gone` the engine returned (guest powered off, VMM
//! gone), `end` the entrypoint is about to exit. `guest_kernel_ms` is the kernel's part of
//! boot by the guest's clock (the agent's `ready` line: `boot_ms - agent_ms`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The environment variable that turns the line on (`1`).
pub const ENV: &str = "STAGE1_KVM_TIMINGS";

/// The phases, in the order printed.
const PHASES: [&str; 8] = [
    "start",
    "engine",
    "agent_started",
    "agent_ready",
    "app_started",
    "app_exited",
    "vm_gone",
    "end",
];

/// Phase timestamps; a no-op unless enabled.
#[derive(Clone, Debug, Default)]
pub struct Timings(Option<Arc<Mutex<Record>>>);

#[derive(Debug)]
struct Record {
    /// An `Instant` and the monotonic clock at the same moment, to convert the engine's
    /// `Instant`s.
    base: Instant,
    base_us: u64,
    marks: Vec<(&'static str, u64)>,
    guest_kernel_ms: Option<u64>,
}

/// `CLOCK_MONOTONIC` in microseconds.
fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000
        + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1000
}

impl Timings {
    /// Enabled when `STAGE1_KVM_TIMINGS=1`; records `start`.
    pub fn from_env() -> Self {
        if std::env::var(ENV).as_deref() != Ok("1") {
            return Self(None);
        }
        let timings = Self(Some(Arc::new(Mutex::new(Record {
            base: Instant::now(),
            base_us: monotonic_us(),
            marks: Vec::new(),
            guest_kernel_ms: None,
        }))));
        timings.mark("start");
        timings
    }

    fn with(&self, f: impl FnOnce(&mut Record)) {
        if let Some(record) = &self.0 {
            f(&mut record.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }

    /// Phase `name` happened now (the first time counts).
    pub fn mark(&self, name: &'static str) {
        self.mark_at(name, Instant::now());
    }

    /// Phase `name` happened at `at` (the first time counts).
    pub fn mark_at(&self, name: &'static str, at: Instant) {
        self.with(|r| {
            if !r.marks.iter().any(|(n, _)| *n == name) {
                let us = r.base_us
                    + u64::try_from(at.saturating_duration_since(r.base).as_micros()).unwrap_or(0);
                r.marks.push((name, us));
            }
        });
    }

    /// Phase `name` happened now (the last time counts).
    pub fn mark_latest(&self, name: &'static str) {
        self.with(|r| {
            r.marks.retain(|(n, _)| *n != name);
            r.marks.push((name, monotonic_us()));
        });
    }

    /// A console line of the guest: takes the kernel's boot time from the agent's
    /// `ready boot_ms=… agent_ms=…` line.
    pub fn console(&self, line: &str) {
        let Some(ready) = line.strip_prefix("stage1-kvm-agent: ready ") else {
            return;
        };
        let field = |key: &str| {
            ready
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
        };
        if let (Some(boot), Some(agent)) = (field("boot_ms"), field("agent_ms")) {
            self.with(|r| r.guest_kernel_ms = Some(boot.saturating_sub(agent)));
        }
    }

    /// The line, if enabled.
    pub fn line(&self) -> Option<String> {
        let record = self.0.as_ref()?;
        let r = record.lock().unwrap_or_else(PoisonError::into_inner);
        let mut line = "stage1-kvm-timings: clock=monotonic_us".to_owned();
        for phase in PHASES {
            let value = r
                .marks
                .iter()
                .find(|(n, _)| *n == phase)
                .map_or("-".to_owned(), |(_, us)| us.to_string());
            line.push_str(&format!(" {phase}={value}"));
        }
        let kernel = r.guest_kernel_ms.map_or("-".to_owned(), |k| k.to_string());
        line.push_str(&format!(" guest_kernel_ms={kernel}"));
        Some(line)
    }

    /// Records `end` and prints the line to stderr, if enabled.
    pub fn finish(&self) {
        self.mark("end");
        if let Some(line) = self.line() {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_records_nothing() {
        let t = Timings::default();
        t.mark("engine");
        assert_eq!(t.line(), None);
    }

    #[test]
    fn phases_print_in_order_with_gaps_and_the_guest_kernel_time() {
        let base = Instant::now();
        let t = Timings(Some(Arc::new(Mutex::new(Record {
            base,
            base_us: 1000,
            marks: Vec::new(),
            guest_kernel_ms: None,
        }))));
        let later = base + std::time::Duration::from_millis(2);
        t.mark_at("agent_ready", later);
        t.mark_at("agent_ready", later + std::time::Duration::from_secs(1));
        t.mark("engine");
        t.console("stage1-kvm-agent: ready boot_ms=500 agent_ms=20 cpus=1 rss_kib=900");
        t.console("something else");
        let line = t.line().unwrap();
        assert!(
            line.starts_with("stage1-kvm-timings: clock=monotonic_us start=- engine="),
            "{line}"
        );
        let ready: u64 = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("agent_ready="))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ready, 3000, "{line}");
        assert!(
            line.ends_with(" app_started=- app_exited=- vm_gone=- end=- guest_kernel_ms=480"),
            "{line}"
        );
    }
}
