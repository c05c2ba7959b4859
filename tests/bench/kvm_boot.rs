//! `make bench` (kvm boot): our `kvm` engine against QEMU microvm with KVM acceleration,
//! both booting the freestanding test guest on this host's `/dev/kvm` with the same memory
//! and vCPUs, interleaved in the same run so that machine noise hits both alike.
//!
//! For each run, measured from the moment the bench spawns the process:
//! - **first marker**: the guest's first boot marker (0x20, the first thing its PVH entry
//!   does) reaching us — for ours the `marker 0x20` line `stage1-kvm vm` prints as the
//!   marker arrives, for QEMU the byte its `isa-debugcon` writes to our socket;
//! - **boot to exit**: the process gone (the guest wrote its exit port: ours exits 0, QEMU's
//!   `isa-debug-exit` makes it exit 1);
//! - **peak RSS**: the process's `ru_maxrss` from `wait4`. The test guest cannot idle (it
//!   runs to its exit in milliseconds), so the peak over the whole run stands in for "RSS
//!   while the guest idles"; it includes the guest memory the run touched, the same for
//!   both.
//!
//! Prints medians and minimums, the ratios ours/QEMU and the goals (issue 4).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use stage1_kvm_e2e::stage1_bin;

const FIRST_MARKER: u8 = test_guest::MARKER_ENTERED;

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

fn min(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One run's figures.
#[derive(Debug, Default)]
struct Sample {
    first_marker_ms: f64,
    exit_ms: f64,
    rss_kib: f64,
}

/// Waits for `pid` (a child of ours) and returns its exit code and peak RSS in KiB.
fn wait_with_rusage(pid: u32) -> (i32, f64) {
    let pid = libc::pid_t::try_from(pid).expect("pid");
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child, writing into two locals that outlive the call.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::Interrupted,
            "wait4({pid}): {err}"
        );
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    #[allow(clippy::cast_precision_loss)] // KiB counts far below 2^52
    let rss = usage.ru_maxrss as f64;
    (code, rss)
}

/// `stage1-kvm vm --engine kvm` booting the test guest.
fn run_ours(guest: &Path, cpus: &str, mem: &str) -> Sample {
    let started = Instant::now();
    // Reaped by `wait_with_rusage` (wait4, for the peak RSS), not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(stage1_bin())
        .args(["vm", "--engine", "kvm", "--kernel"])
        .arg(guest)
        .args(["--cpus", cpus, "--mem", mem])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running stage1-kvm");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut first_marker = None;
        let mut output = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("reading stage1-kvm's output");
            if first_marker.is_none() && line.starts_with("marker 0x20 ") {
                first_marker = Some(Instant::now());
            }
            output.push_str(&line);
            output.push('\n');
        }
        (first_marker, output)
    });
    let (code, rss_kib) = wait_with_rusage(child.id());
    let exited = Instant::now();
    let (first_marker, output) = reader.join().expect("reader");
    assert_eq!(code, 0, "stage1-kvm failed:\n{output}");
    let first_marker = first_marker.unwrap_or_else(|| panic!("no first marker in:\n{output}"));
    Sample {
        first_marker_ms: ms(first_marker - started),
        exit_ms: ms(exited - started),
        rss_kib,
    }
}

/// QEMU microvm with KVM acceleration booting the test guest: serial to a file, markers
/// to our socket, the exit port as `isa-debug-exit`.
fn run_qemu(guest: &Path, cpus: &str, mem: &str, dir: &Path) -> Sample {
    let socket = dir.join("markers.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).expect("marker socket");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut byte = [0u8];
        while let Ok(1) = stream.read(&mut byte) {
            if byte[0] == FIRST_MARKER {
                let _ = tx.send(Instant::now());
            }
        }
    });
    let started = Instant::now();
    // Reaped by `wait_with_rusage` (wait4, for the peak RSS), not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let child = Command::new("qemu-system-x86_64")
        .args(["-M", "microvm,acpi=off", "-accel", "kvm"])
        .args(["-cpu", "host,-arch-capabilities"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .arg("-no-reboot")
        .args(["-smp", cpus, "-m", &format!("{mem}M")])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        .arg("-chardev")
        .arg(format!("socket,id=markers,path={}", socket.display()))
        .args(["-device", "isa-debugcon,iobase=0xe9,chardev=markers"])
        .arg("-serial")
        .arg(format!("file:{}", dir.join("qemu-serial.log").display()))
        .arg("-kernel")
        .arg(guest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running qemu-system-x86_64");
    let (code, rss_kib) = wait_with_rusage(child.id());
    let exited = Instant::now();
    reader.join().expect("reader");
    assert_eq!(
        code,
        test_guest::qemu_exit_code(test_guest::EXIT_SUCCESS),
        "QEMU did not end through the exit port with success"
    );
    let first_marker = rx.try_recv().expect("QEMU: no first marker");
    Sample {
        first_marker_ms: ms(first_marker - started),
        exit_ms: ms(exited - started),
        rss_kib,
    }
}

fn column(samples: &[Sample], f: fn(&Sample) -> f64) -> Vec<f64> {
    samples.iter().map(f).collect()
}

fn report(what: &str, unit: &str, ours: &[f64], qemu: &[f64], goal: f64) {
    let (om, qm) = (median(ours), median(qemu));
    let (on, qn) = (min(ours), min(qemu));
    let ratio = om / qm;
    let verdict = if ratio <= goal { "met" } else { "NOT met" };
    println!("  {what}");
    println!("    stage1-kvm (kvm engine)  median {om:8.1} {unit}   min {on:8.1} {unit}");
    println!("    QEMU microvm, KVM        median {qm:8.1} {unit}   min {qn:8.1} {unit}");
    println!(
        "    ratio ours/QEMU          median {ratio:8.3}x    min {:8.3}x   (goal ≤ {goal}x: {verdict})",
        on / qn
    );
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (cpus, mem) = ("1", "64");
    let guest = Path::new(test_guest::ELF_PATH);
    let dir = tempfile::tempdir().expect("temporary directory");

    // One warm-up of each (page cache, first-run costs).
    run_ours(guest, cpus, mem);
    run_qemu(guest, cpus, mem, dir.path());

    let (mut ours, mut qemu) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // Alternate which goes first, so neither always runs right after the other.
        if i % 2 == 0 {
            ours.push(run_ours(guest, cpus, mem));
            qemu.push(run_qemu(guest, cpus, mem, dir.path()));
        } else {
            qemu.push(run_qemu(guest, cpus, mem, dir.path()));
            ours.push(run_ours(guest, cpus, mem));
        }
    }

    println!(
        "test guest on /dev/kvm, {cpus} vCPU, {mem} MiB, {runs} runs each, interleaved; times from process spawn"
    );
    report(
        "process start → first boot marker",
        "ms",
        &column(&ours, |s| s.first_marker_ms),
        &column(&qemu, |s| s.first_marker_ms),
        0.1,
    );
    report(
        "process start → process exit (guest wrote its exit port)",
        "ms",
        &column(&ours, |s| s.exit_ms),
        &column(&qemu, |s| s.exit_ms),
        0.5,
    );
    let our_rss = column(&ours, |s| s.rss_kib);
    report(
        "peak RSS of the VMM process (ru_maxrss; includes guest pages touched)",
        "KiB",
        &our_rss,
        &column(&qemu, |s| s.rss_kib),
        0.2,
    );
    let max_rss = our_rss.iter().copied().fold(0.0, f64::max);
    println!(
        "    ours, largest of all runs: {max_rss:.0} KiB (goal ≤ 5120 KiB: {})",
        if max_rss <= 5120.0 { "met" } else { "NOT met" }
    );
}
