//! Helpers shared by the benchmarks (`tests/bench/`): statistics, the machine's load, the
//! busybox root file system and the `runc` peer that several benchmarks measure us against.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The median of `samples` (sorts them).
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len().is_multiple_of(2) {
        (samples[mid - 1] + samples[mid]) / 2.0
    } else {
        samples[mid]
    }
}

/// The smallest of `samples`.
pub fn min(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The 1-minute load average (`/proc/loadavg`), as text.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// `BENCH_RUNS` from the environment, or `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A busybox root file system in `dir`: the host's static `/bin/busybox` (the one the test
/// initramfs carries) with a link for every applet, as the test initramfs has them.
pub fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("running busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
}

/// An OCI bundle in `dir` whose root is `rootfs` (a path relative to `dir` or absolute):
/// `runc spec`'s default configuration (namespaces, cgroups, read-only root, the default
/// capabilities and seccomp-less profile) with `args` as the process and no terminal.
pub fn runc_bundle(dir: &Path, rootfs: &Path, args: &[&str]) {
    let status = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(dir)
        .status()
        .expect("running runc spec (ci/install-bench-deps.sh installs runc)");
    assert!(status.success(), "runc spec failed");
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = serde_json::Value::Bool(false);
    config["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
    config["root"]["path"] = rootfs.to_string_lossy().into_owned().into();
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

/// `runc --root STATE_DIR` (a state directory of our own, so that nothing else's
/// containers are touched).
pub fn runc(state: &Path) -> Command {
    let mut command = Command::new("runc");
    command.arg("--root").arg(state).stdin(Stdio::null());
    command
}

/// The resident memory of a process from `/proc/PID/smaps_rollup`, in KiB: `(Rss, Pss,
/// Anonymous, Shmem-backed Rss)`; `None` once the process is gone.
pub fn memory_kib(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0u64)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let status_field = |name: &str| {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0u64)
    };
    Some(Memory {
        rss: field("Rss:"),
        pss: field("Pss:"),
        anon: status_field("RssAnon:"),
        file: status_field("RssFile:"),
        shmem: status_field("RssShmem:"),
    })
}

/// A process's resident memory, KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set.
    pub rss: u64,
    /// Proportional set (shared pages divided among the processes mapping them).
    pub pss: u64,
    /// Resident anonymous memory (heap, stacks, TCG's code buffer).
    pub anon: u64,
    /// Resident file-backed memory (the binary and libraries).
    pub file: u64,
    /// Resident shared memory (for a VM: the memfd of guest RAM pages touched).
    pub shmem: u64,
}

/// The children of `pid` (from `/proc/PID/task/*/children`).
pub fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    found
}

/// A path in the temporary directory for a benchmark's files.
pub fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// `root` and all its descendants.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        all.extend(children(all[i]));
        i += 1;
    }
    all
}

/// The summed memory of `pids` (those still there).
pub fn memory_sum(pids: &[u32]) -> Memory {
    let mut sum = Memory::default();
    for m in pids.iter().filter_map(|pid| memory_kib(*pid)) {
        sum.rss += m.rss;
        sum.pss += m.pss;
        sum.anon += m.anon;
        sum.file += m.file;
        sum.shmem += m.shmem;
    }
    sum
}
