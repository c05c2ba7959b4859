//! `make bench` (boot): boot-to-power-off through the `qemu` engine against plain QEMU
//! booting the same kernel with a minimal C `/init` that resets at once, interleaved in
//! the same run so that machine noise hits both alike.
//!
//! Prints medians and minimums, the ratio, our boot-marker split (engine start → agent
//! start, of which the kernel by the guest clock → agent ready → VM gone), the agent's
//! RSS inside the guest and the initramfs size.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use initramfs::Archive;
use stage1_kvm_e2e::{initramfs, kernel, stage1_bin};

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len().is_multiple_of(2) {
        (samples[mid - 1] + samples[mid]) / 2.0
    } else {
        samples[mid]
    }
}

fn min(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A `key=value` number from a line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// The number right after `label` (e.g. "start→agent 812.3 ms").
fn after(line: &str, label: &str) -> Option<f64> {
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

fn build_peer_initramfs(dir: &Path) -> std::path::PathBuf {
    let binary = dir.join("poweroff-init");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/poweroff-init.c");
    let status = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("running gcc");
    assert!(status.success(), "building the peer /init failed");
    let mut archive = Archive::new();
    archive.char_device("dev/console", 0o600, 5, 1).unwrap();
    archive
        .file("init", 0o755, std::fs::read(&binary).unwrap())
        .unwrap();
    let path = dir.join("peer-initramfs.cpio");
    std::fs::write(&path, archive.to_bytes().unwrap()).unwrap();
    path
}

struct OursRun {
    wall: f64,
    to_agent: f64,
    kernel: f64,
    to_ready: f64,
    rss_kib: f64,
}

fn run_ours(cpus: &str, mem: &str) -> OursRun {
    let started = Instant::now();
    let output = Command::new(stage1_bin())
        .args(["vm", "--engine", "qemu", "--kernel"])
        .arg(kernel())
        .arg("--initramfs")
        .arg(initramfs())
        .args(["--cpus", cpus, "--mem", mem])
        .stdin(Stdio::null())
        .output()
        .expect("running stage1-kvm");
    let wall = ms(started.elapsed());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stage1-kvm failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ready = stdout
        .lines()
        .find(|l| l.contains("agent: ready "))
        .expect("ready line");
    let timings = stdout
        .lines()
        .find(|l| l.starts_with("boot: "))
        .expect("timings line");
    OursRun {
        wall,
        to_agent: after(timings, "start→agent").expect("start→agent"),
        kernel: after(timings, "(kernel").expect("kernel"),
        to_ready: after(timings, "→ready").expect("→ready"),
        rss_kib: field(ready, "rss_kib").expect("rss_kib"),
    }
}

fn run_peer(peer_initramfs: &Path, cpus: &str, mem: &str, serial: &Path) -> f64 {
    let started = Instant::now();
    let status = Command::new("qemu-system-x86_64")
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args([
            "-M",
            "microvm,acpi=off,rtc=off",
            "-accel",
            "tcg",
            "-cpu",
            "max",
        ])
        .args(["-smp", cpus, "-m", &format!("{mem}M")])
        .arg("-chardev")
        .arg(format!("file,id=console,path={}", serial.display()))
        .args(["-serial", "chardev:console"])
        .arg("-kernel")
        .arg(kernel())
        .arg("-initrd")
        .arg(peer_initramfs)
        .args(["-append", "console=ttyS0 reboot=t panic=-1 quiet"])
        .stdin(Stdio::null())
        .status()
        .expect("running qemu");
    assert!(status.success(), "peer QEMU failed: {status}");
    ms(started.elapsed())
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (cpus, mem) = ("1", "512");
    let dir = tempfile::tempdir().unwrap();
    let peer_initramfs = build_peer_initramfs(dir.path());
    let serial = dir.path().join("peer-serial.log");

    // One warm-up of each (page cache, QEMU's own first-run costs).
    run_ours(cpus, mem);
    run_peer(&peer_initramfs, cpus, mem, &serial);

    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(run_ours(cpus, mem));
        peer.push(run_peer(&peer_initramfs, cpus, mem, &serial));
    }
    let col = |f: fn(&OursRun) -> f64| ours.iter().map(f).collect::<Vec<f64>>();
    let mut wall = col(|r| r.wall);
    let mut to_agent = col(|r| r.to_agent);
    let mut kernel_ms = col(|r| r.kernel);
    let mut to_ready = col(|r| r.to_ready);
    let mut rss = col(|r| r.rss_kib);
    let min_wall = min(&wall);
    let min_peer = min(&peer);
    let med_wall = median(&mut wall);
    let med_peer = median(&mut peer);

    let initramfs_size = std::fs::metadata(initramfs()).unwrap().len();
    println!("boot-to-power-off, qemu engine (TCG), {cpus} vCPU, {mem} MiB, {runs} runs each, interleaved");
    println!("  stage1-kvm vm (agent)      median {med_wall:8.1} ms   min {min_wall:8.1} ms");
    println!("  plain QEMU + C /init       median {med_peer:8.1} ms   min {min_peer:8.1} ms");
    println!(
        "  ratio ours/peer            median {:8.2}x     min {:8.2}x",
        med_wall / med_peer,
        min_wall / min_peer
    );
    println!("  marker split (medians): engine start→agent start {:.1} ms (kernel {:.1} ms by the guest clock), →agent ready {:.1} ms",
        median(&mut to_agent), median(&mut kernel_ms), median(&mut to_ready));
    println!(
        "  guest agent RSS in the guest: median {:.0} KiB (goal ≤ 1536 KiB)",
        median(&mut rss)
    );
    println!("  initramfs size: {initramfs_size} bytes");
}
