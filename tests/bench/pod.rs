//! `make bench` (pod): `minirkt run` of a busybox `true` pod with the stage1-kvm image
//! (`qemu` engine) against `runc run` of the same root file system as an OCI bundle,
//! interleaved in the same run, wall clock from spawning each to its exit.
//!
//! The pod's phases come from the `run` entrypoint's `STAGE1_KVM_TIMINGS=1` line
//! (`stage1/src/rkt/timings.rs`: `CLOCK_MONOTONIC` timestamps, the same clock this bench
//! reads): stage0 (minirkt: spawn → the stage1's `run` starts) → stage1 setup (manifests,
//! devices) → engine start to the agent's first marker (QEMU start-up, firmware, kernel —
//! of which the kernel by the guest clock) → agent start-up (mounts, the app share) → app
//! start (control connection, `start_app`) → the app runs → shutdown (power-off, QEMU
//! exit) → stage1 exit.
//!
//! Memory: pods running `sleep 3` instead, sampled every 50 ms: the sum over the pod's
//! host processes (the stage1 process and its QEMU child) of their proportional set
//! (`Pss`, so guest RAM pages both map count once), with its parts: guest RAM the guest
//! touched (QEMU's `RssShmem`: the memfd; untouched guest RAM is never resident), QEMU's
//! anonymous memory (under TCG mostly its translated-code buffer), the stage1 process's
//! anonymous memory (our vsock and virtio-fs backends, the agent protocol). The peak of
//! the sum is printed, with `runc run` of the same `sleep` for scale.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stage1_kvm_e2e::artifact;
use stage1_kvm_e2e::bench::{self, median, memory_kib, min, ms, Memory};

/// The phases of the timings line, in order.
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

/// `CLOCK_MONOTONIC` in microseconds.
fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap() * 1_000_000 + u64::try_from(ts.tv_nsec).unwrap() / 1000
}

struct Setup {
    minirkt: PathBuf,
    aci: PathBuf,
    data: PathBuf,
    true_aci: PathBuf,
    sleep_aci: PathBuf,
    bundle_true: PathBuf,
    bundle_sleep: PathBuf,
    runc_state: PathBuf,
}

/// An app image of a busybox root file system running `exec`; returns the ACI and the
/// image's rootfs directory.
fn build_image(minirkt: &Path, dir: &Path, name: &str, exec: &[&str]) -> (PathBuf, PathBuf) {
    let image = dir.join(format!("{name}-image"));
    let rootfs = image.join("rootfs");
    bench::busybox_rootfs(&rootfs);
    let manifest = serde_json::json!({
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": format!("example.com/bench-{name}"),
        "labels": [
            {"name": "version", "value": "1.0"},
            {"name": "arch", "value": "amd64"},
            {"name": "os", "value": "linux"}
        ],
        "app": {"exec": exec, "user": "0", "group": "0"}
    });
    std::fs::write(image.join("manifest"), manifest.to_string()).unwrap();
    let aci = dir.join(format!("{name}.aci"));
    let status = Command::new(minirkt)
        .args(["image", "build"])
        .arg(&image)
        .arg("-o")
        .arg(&aci)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "minirkt image build failed");
    (aci, rootfs)
}

impl Setup {
    fn new(dir: &Path) -> Self {
        let minirkt = artifact("STAGE1_KVM_MINIRKT");
        let aci = artifact("STAGE1_KVM_ACI");
        // runc runs the very tree the `true` image was built from.
        let (true_aci, rootfs) = build_image(&minirkt, dir, "true", &["/bin/true"]);
        let (sleep_aci, _) = build_image(&minirkt, dir, "sleep", &["/bin/sleep", "3"]);
        let bundle = |name: &str, args: &[&str]| {
            let bundle = dir.join(format!("bundle-{name}"));
            std::fs::create_dir(&bundle).unwrap();
            bench::runc_bundle(&bundle, &rootfs, args);
            bundle
        };
        Self {
            bundle_true: bundle("true", &["/bin/true"]),
            bundle_sleep: bundle("sleep", &["/bin/sleep", "3"]),
            minirkt,
            aci,
            data: dir.join("data"),
            true_aci,
            sleep_aci,
            runc_state: dir.join("runc-state"),
        }
    }

    fn minirkt_run(&self, image: &Path) -> Command {
        let mut command = Command::new(&self.minirkt);
        command
            .arg("--dir")
            .arg(&self.data)
            .args(["run", "--net=none"])
            .arg(format!("--stage1-path={}", self.aci.display()))
            .arg(image)
            .env("STAGE1_KVM_ENGINE", "qemu")
            .env("STAGE1_KVM_TIMINGS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Removes exited pods (untimed, between runs).
    fn gc(&self) {
        for _ in 0..2 {
            let _ = Command::new(&self.minirkt)
                .arg("--dir")
                .arg(&self.data)
                .args(["gc", "--grace-period=0s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    fn runc_run(&self, bundle: &Path, id: &str) -> Command {
        let mut command = bench::runc(&self.runc_state);
        command
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command
    }
}

/// One pod run: wall clock and the phases' durations (ms), from the bench's spawn.
struct PodRun {
    wall: f64,
    /// Spawn → each phase of [`PHASES`], then → exit.
    at: Vec<f64>,
    guest_kernel: Option<f64>,
}

fn run_pod(setup: &Setup) -> PodRun {
    let spawned_us = monotonic_us();
    let started = Instant::now();
    let mut child = setup.minirkt_run(&setup.true_aci).spawn().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    let wall = ms(started.elapsed());
    assert!(status.success(), "minirkt run failed ({status}): {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("stage1-kvm-timings: "))
        .unwrap_or_else(|| panic!("no timings line: {stderr}"));
    let value = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let mut at: Vec<f64> = PHASES
        .iter()
        .map(|phase| {
            let us = value(phase).unwrap_or_else(|| panic!("{phase} missing: {line}"));
            (us.saturating_sub(spawned_us)) as f64 / 1000.0
        })
        .collect();
    at.push(wall);
    setup.gc();
    PodRun {
        wall,
        at,
        guest_kernel: value("guest_kernel_ms").map(|k| k as f64),
    }
}

fn run_runc(setup: &Setup, n: usize) -> f64 {
    let id = format!("stage1-kvm-bench-pod-{}-{n}", std::process::id());
    let started = Instant::now();
    let status = setup.runc_run(&setup.bundle_true, &id).status().unwrap();
    let wall = ms(started.elapsed());
    assert!(status.success(), "runc run failed: {status}");
    wall
}

/// Peak memory of a process tree while it runs: (Σ Pss, and the parts at that moment:
/// root's memory, the descendants' summed memory).
#[derive(Debug, Default, Clone, Copy)]
struct PodMemory {
    pss_total: u64,
    root: Memory,
    children: Memory,
}

fn sample_while_running(mut child: std::process::Child) -> PodMemory {
    let mut peak = PodMemory::default();
    loop {
        let pids = bench::process_tree(child.id());
        let root = memory_kib(child.id()).unwrap_or_default();
        let children = bench::memory_sum(&pids[1..]);
        let total = root.pss + children.pss;
        if total > peak.pss_total {
            peak = PodMemory {
                pss_total: total,
                root,
                children,
            };
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return peak;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let runs = bench::runs(20);
    let load_before = bench::load_average();
    let dir = bench::scratch("stage1-kvm-bench-pod.");
    let setup = Setup::new(dir.path());

    // Warm-up: one of each (page cache, minirkt's tree store of the stage1 image).
    run_pod(&setup);
    run_runc(&setup, 0);
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for round in 0..runs {
        if round % 2 == 0 {
            ours.push(run_pod(&setup));
            peer.push(run_runc(&setup, round + 1));
        } else {
            peer.push(run_runc(&setup, round + 1));
            ours.push(run_pod(&setup));
        }
    }
    let load_mid = bench::load_average();

    // Memory: three `sleep 3` pods and containers.
    let mut pod_memory = Vec::new();
    let mut runc_memory = Vec::new();
    for n in 0..3 {
        let mut command = setup.minirkt_run(&setup.sleep_aci);
        command.stderr(Stdio::null());
        pod_memory.push(sample_while_running(command.spawn().unwrap()));
        setup.gc();
        let id = format!("stage1-kvm-bench-pod-sleep-{}-{n}", std::process::id());
        runc_memory.push(sample_while_running(
            setup.runc_run(&setup.bundle_sleep, &id).spawn().unwrap(),
        ));
    }
    let load_after = bench::load_average();

    let mut walls: Vec<f64> = ours.iter().map(|r| r.wall).collect();
    let mut peer_walls = peer.clone();
    let (omin, pmin) = (min(&walls), min(&peer_walls));
    let (omed, pmed) = (median(&mut walls), median(&mut peer_walls));
    println!("pod start to exit: `minirkt run` of a busybox `true` pod (stage1-kvm.aci, qemu engine under TCG, 2 vCPUs / 512 MiB by rkt's sizing rule) vs `runc run` of the same rootfs, {runs} runs each, interleaved; load average {load_before} before, {load_mid} after the timed runs, {load_after} at the end");
    println!("  minirkt run (stage1-kvm, qemu/TCG)   median {omed:8.1} ms   min {omin:8.1} ms");
    println!("  runc run                             median {pmed:8.1} ms   min {pmin:8.1} ms");
    println!(
        "  ratio ours/runc                      median {:8.1}x    min {:8.1}x   (the ≤ 4x goal is for the kvm engine on hardware virtualization)",
        omed / pmed,
        omin / pmin
    );
    let names = [
        "stage0 (minirkt: spawn → stage1 run starts)",
        "stage1 setup (manifests, vsock, virtio-fs)",
        "engine start → agent's first marker",
        "agent start-up (mounts, the app share)",
        "app start (control connection, start_app)",
        "app runs (/bin/true)",
        "shutdown (power-off, QEMU exit)",
        "stage1 cleanup",
        "stage1 end → process exit",
    ];
    println!("  phase split (median of each phase's duration):");
    let mut previous: Vec<f64> = vec![0.0; ours.len()];
    for (i, name) in names.iter().enumerate() {
        let mut d: Vec<f64> = ours
            .iter()
            .zip(&previous)
            .map(|(r, p)| r.at[i] - p)
            .collect();
        previous = ours.iter().map(|r| r.at[i]).collect();
        println!("    {name:<46} {:8.1} ms", median(&mut d));
        if i == 2 {
            let mut kernel: Vec<f64> = ours.iter().filter_map(|r| r.guest_kernel).collect();
            if !kernel.is_empty() {
                println!(
                    "      of which the kernel, by the guest clock  {:8.1} ms",
                    median(&mut kernel)
                );
            }
        }
    }
    let pick = pod_memory
        .iter()
        .max_by_key(|m| m.pss_total)
        .copied()
        .unwrap_or_default();
    let mut totals: Vec<f64> = pod_memory.iter().map(|m| m.pss_total as f64).collect();
    println!(
        "  pod memory on the host (sleep 3 pod, peak of Σ Pss over stage1 + QEMU, 3 runs): median {:.0} KiB, largest {} KiB",
        median(&mut totals),
        pick.pss_total
    );
    println!(
        "    in the largest: guest RAM touched (QEMU RssShmem) {} KiB; QEMU anon {} KiB, file {} KiB; stage1 process anon {} KiB, file {} KiB",
        pick.children.shmem, pick.children.anon, pick.children.file, pick.root.anon, pick.root.file
    );
    println!(
        "    without guest RAM: {} KiB",
        pick.pss_total.saturating_sub(pick.children.shmem)
    );
    let mut runc_totals: Vec<f64> = runc_memory.iter().map(|m| m.pss_total as f64).collect();
    println!(
        "  runc run of the same sleep (Σ Pss over runc and the container): median {:.0} KiB",
        median(&mut runc_totals)
    );
}
