//! `make bench` (fs): our virtio-fs backend against QEMU's C `virtiofsd`
//! (`/usr/lib/qemu/virtiofsd`, Debian's qemu-system-common 7.2), each serving the same
//! host directory to the same guest under the `qemu` engine, interleaved in the same run.
//!
//! Both guests are booted by `stage1-kvm vm --share b=DIR -- /bin/sh -c SCRIPT` — the same
//! kernel, agent, mount (`/mnt/b`), QEMU command line and workload. For the peer, this
//! binary stands in for QEMU (`STAGE1_KVM_QEMU`): it rewrites the path of the share's
//! vhost-user chardev (`-chardev socket,id=fs0,path=…`) to the socket of a `virtiofsd`
//! started for that run, and execs the real QEMU. Ours goes through the same wrapper with
//! nothing rewritten, so the only difference is the process serving the file system.
//!
//! The workload (busybox in the guest, timed with the guest's `/proc/uptime`, 10 ms steps):
//! sequential write of 512 MiB (`dd bs=1M conv=fsync`), guest caches dropped, sequential
//! read of it; extract a tarball of 18,000 small files (0–2 KiB, 180 directories) from the
//! guest's tmpfs into the share; guest caches dropped, `find` + `stat` over the tree;
//! delete the tree. Five rounds by default (`BENCH_RUNS`). Guest: 1 vCPU, 1024 MiB. The
//! host's page cache is left alone (it is a shared machine); both read the same warm file.
//!
//! Memory: the stage1 process's resident memory is sampled every 50 ms while it serves
//! the workload, and once more in a run without a share (the same VM running `sleep`); the
//! difference of the peaks is the backend's cost. The anonymous part (`RssAnon`) is the
//! backend's own memory; `RssShmem` counts guest RAM pages the backend mapped while
//! copying data (the vhost-user backend maps the guest's memfd), reported apart. The same
//! figures are given for `virtiofsd`.
//!
//! Both servers hold one file descriptor per inode the guest knows, and this machine's
//! hard `RLIMIT_NOFILE` is 20,000 (no `CAP_SYS_RESOURCE` to raise it, so `virtiofsd` cannot
//! raise its own either): the tree has 18,000 files in 180 directories, not 20,000, so that
//! both stay under it (BENCHMARKS.md says what happens at 20,000).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use stage1_kvm_e2e::bench::{self, median, memory_kib, min, Memory};
use stage1_kvm_e2e::{stage1_bin, Sandbox};

/// Set in the environment of the stage1 process: this binary then acts as QEMU.
const WRAPPER_ENV: &str = "STAGE1_KVM_BENCH_FS_WRAPPER";
/// The peer's vhost-user socket, for the wrapper; empty for ours.
const PEER_SOCKET_ENV: &str = "STAGE1_KVM_BENCH_FS_PEER_SOCKET";
const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";
const DIRS: usize = 180;
const FILES_PER_DIR: usize = 100;
const STEPS: [&str; 5] = ["write", "read", "untar", "find", "rm"];

const SCRIPT: &str = r#"set -e
t() { cut -d' ' -f1 /proc/uptime; }
cd /mnt/b
a=$(t); dd if=/dev/zero of=big bs=1M count=512 conv=fsync 2>/dev/null; echo "step write $a $(t)"
echo 3 >/proc/sys/vm/drop_caches
a=$(t); dd if=big of=/dev/null bs=1M 2>/dev/null; echo "step read $a $(t)"
echo "size $(stat -c %s big)"
rm big
cp files.tar /tmp/files.tar
mkdir x
echo 3 >/proc/sys/vm/drop_caches
a=$(t); tar xf /tmp/files.tar -C x; sync; echo "step untar $a $(t)"
echo 3 >/proc/sys/vm/drop_caches
a=$(t); n=$(find x -exec stat -t {} + | wc -l); echo "step find $a $(t)"
echo "found $n"
a=$(t); rm -rf x; sync; echo "step rm $a $(t)"
echo "left $(ls | wc -l)"
"#;

/// The wrapper: exec the real QEMU with the share's chardev pointed at the peer's socket.
fn act_as_qemu() -> ExitCode {
    let peer = std::env::var(PEER_SOCKET_ENV).unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<String> = args
        .into_iter()
        .map(|arg| match arg.strip_prefix("socket,id=fs0,path=") {
            Some(_) if !peer.is_empty() => format!("socket,id=fs0,path={peer}"),
            _ => arg,
        })
        .collect();
    let err = Command::new("qemu-system-x86_64").args(args).exec();
    eprintln!("bench-fs wrapper: exec qemu-system-x86_64: {err}");
    ExitCode::FAILURE
}

/// The tarball of the metadata workload: DIRS × FILES_PER_DIR files of 0–2 KiB.
fn make_tarball(path: &Path) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let data: Vec<u8> = (0..2049u32).map(|i| (i % 251) as u8).collect();
    for d in 0..DIRS {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(1_700_000_000);
        builder
            .append_data(&mut header, format!("tree/d{d:03}/"), std::io::empty())
            .unwrap();
        for f in 0..FILES_PER_DIR {
            let size = usize::try_from(next() % 2049).unwrap();
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(size as u64);
            header.set_mtime(1_700_000_000);
            builder
                .append_data(&mut header, format!("tree/d{d:03}/f{f:03}"), &data[..size])
                .unwrap();
        }
    }
    builder.finish().unwrap();
}

/// Peak memory of a process, sampled.
#[derive(Debug, Default, Clone, Copy)]
struct Peak {
    rss: u64,
    anon: u64,
    shmem: u64,
}

impl Peak {
    fn update(&mut self, m: Memory) {
        self.rss = self.rss.max(m.rss);
        self.anon = self.anon.max(m.anon);
        self.shmem = self.shmem.max(m.shmem);
    }
}

/// One VM run: the steps' durations (ms, guest clock), the host wall clock, the stage1
/// process's and (peer) virtiofsd's peak memory.
#[derive(Debug)]
struct Run {
    steps: Vec<f64>,
    wall: f64,
    stage1: Peak,
    virtiofsd: Peak,
}

fn stage1_vm(sandbox: &Sandbox, share: Option<&Path>, script: &str, peer: Option<&Path>) -> Child {
    let mut extra: Vec<String> = ["--cpus", "1", "--mem", "1024"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if let Some(dir) = share {
        extra.push("--share".to_owned());
        extra.push(format!("b={}", dir.display()));
    }
    extra.extend(["--", "/bin/sh", "-c", script].map(str::to_owned));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut command = sandbox.vm_command("qemu", &extra);
    command
        .env("STAGE1_KVM_QEMU", std::env::current_exe().unwrap())
        .env(WRAPPER_ENV, "1")
        .env(
            PEER_SOCKET_ENV,
            peer.map(Path::as_os_str).unwrap_or_default(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().expect("starting stage1-kvm vm")
}

/// Follows `child` to its end, sampling its memory (and `other`'s) every 50 ms; returns
/// its stdout and stderr.
fn follow(
    mut child: Child,
    other: Option<u32>,
    stage1: &mut Peak,
    peer: &mut Peak,
) -> (String, String) {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let status = loop {
        if let Some(m) = memory_kib(child.id()) {
            stage1.update(m);
        }
        if let Some(pid) = other {
            // virtiofsd forks: the parent waits, the child serves.
            peer.update(bench::memory_sum(&bench::process_tree(pid)));
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "stage1-kvm vm failed ({status}): {err}\n{out}"
    );
    (out, err)
}

fn parse_steps(out: &str) -> Vec<f64> {
    let mut steps = Vec::new();
    for name in STEPS {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("step {name} ")))
            .unwrap_or_else(|| panic!("no {name} step in {out}"));
        let f: Vec<f64> = line
            .split_whitespace()
            .skip(2)
            .map(|v| v.parse().unwrap())
            .collect();
        steps.push((f[1] - f[0]) * 1000.0);
    }
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .to_owned()
    };
    // The work was done: every file found, the big file whole, nothing left over.
    assert_eq!(value("size "), (512u64 << 20).to_string());
    assert_eq!(
        value("found "),
        (1 + 1 + DIRS + DIRS * FILES_PER_DIR).to_string()
    );
    assert_eq!(value("left "), "1", "only files.tar is left: {out}");
    steps
}

fn run_ours(sandbox: &Sandbox, share: &Path) -> Run {
    let started = Instant::now();
    let child = stage1_vm(sandbox, Some(share), SCRIPT, None);
    let (mut stage1, mut none) = (Peak::default(), Peak::default());
    let (out, _) = follow(child, None, &mut stage1, &mut none);
    Run {
        steps: parse_steps(&out),
        wall: bench::ms(started.elapsed()),
        stage1,
        virtiofsd: none,
    }
}

fn run_peer(sandbox: &Sandbox, share: &Path, scratch: &Path) -> Run {
    let socket = scratch.join("virtiofsd.sock");
    let _ = std::fs::remove_file(&socket);
    let log = std::fs::File::create(scratch.join("virtiofsd.log")).unwrap();
    let mut virtiofsd = Command::new(VIRTIOFSD)
        .arg(format!("--socket-path={}", socket.display()))
        .args(["-o", &format!("source={}", share.display())])
        .args(["-o", "cache=auto", "-o", "xattr"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting virtiofsd (ci/install-bench-deps.sh installs qemu-system-common)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "virtiofsd never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let child = stage1_vm(sandbox, Some(share), SCRIPT, Some(&socket));
    let (mut stage1, mut peer) = (Peak::default(), Peak::default());
    let (out, _) = follow(child, Some(virtiofsd.id()), &mut stage1, &mut peer);
    let wall = bench::ms(started.elapsed());
    // virtiofsd exits when QEMU disconnects.
    let status = virtiofsd.wait().unwrap();
    assert!(status.success(), "virtiofsd: {status}");
    Run {
        steps: parse_steps(&out),
        wall,
        stage1,
        virtiofsd: peer,
    }
}

/// The stage1 process's peak memory in a run with no share.
fn run_baseline(sandbox: &Sandbox) -> Peak {
    let child = stage1_vm(sandbox, None, "sleep 3", None);
    let (mut stage1, mut none) = (Peak::default(), Peak::default());
    follow(child, None, &mut stage1, &mut none);
    stage1
}

fn main() -> ExitCode {
    if std::env::var_os(WRAPPER_ENV).is_some() {
        return act_as_qemu();
    }
    let _ = stage1_bin();
    let runs = bench::runs(5);
    let load_before = bench::load_average();
    let scratch = bench::scratch("stage1-kvm-bench-fs.");
    let share: PathBuf = scratch.path().join("share");
    std::fs::create_dir(&share).unwrap();
    make_tarball(&share.join("files.tar"));
    let tar_size = std::fs::metadata(share.join("files.tar")).unwrap().len();
    let sandbox = Sandbox::with_busybox();

    let baseline = run_baseline(&sandbox);
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for round in 0..runs {
        if round % 2 == 0 {
            ours.push(run_ours(&sandbox, &share));
            peer.push(run_peer(&sandbox, &share, scratch.path()));
        } else {
            peer.push(run_peer(&sandbox, &share, scratch.path()));
            ours.push(run_ours(&sandbox, &share));
        }
        eprintln!(
            "  round {}: ours {:?} ms, virtiofsd {:?} ms",
            round + 1,
            ours.last().unwrap().steps,
            peer.last().unwrap().steps
        );
    }
    let load_after = bench::load_average();

    println!("virtio-fs: our backend vs QEMU 7.2's C virtiofsd ({VIRTIOFSD} -o cache=auto -o xattr), qemu engine (TCG), 1 vCPU, 1024 MiB, {runs} runs each, interleaved; load average {load_before} before, {load_after} after");
    println!(
        "  tarball: {} files in {DIRS} directories, {tar_size} bytes",
        DIRS * FILES_PER_DIR
    );
    let labels = [
        "sequential write 512 MiB (dd, fsync)",
        "sequential read 512 MiB (dd, cold guest cache)",
        "untar 18,000 files (+ sync)",
        "find + stat over the tree (cold guest cache)",
        "delete the tree (rm -rf + sync)",
    ];
    println!(
        "  {:<48} {:>18} {:>18} {:>10}",
        "median (min), ms", "ours", "virtiofsd", "speed ×"
    );
    for (i, label) in labels.iter().enumerate() {
        let mut o: Vec<f64> = ours.iter().map(|r| r.steps[i]).collect();
        let mut p: Vec<f64> = peer.iter().map(|r| r.steps[i]).collect();
        let (omin, pmin) = (min(&o), min(&p));
        let (omed, pmed) = (median(&mut o), median(&mut p));
        let mib_s = |ms: f64| 512.0 / (ms / 1000.0);
        let extra = if i < 2 {
            format!("   ({:.0} vs {:.0} MiB/s)", mib_s(omed), mib_s(pmed))
        } else {
            String::new()
        };
        // Throughput ratio: ours / peer = peer's time / ours.
        println!(
            "  {label:<48} {omed:>9.0} ({omin:>6.0}) {pmed:>9.0} ({pmin:>6.0}) {:>9.2}x{extra}",
            pmed / omed
        );
    }
    let mut wo: Vec<f64> = ours.iter().map(|r| r.wall).collect();
    let mut wp: Vec<f64> = peer.iter().map(|r| r.wall).collect();
    println!(
        "  whole VM run, host wall clock: ours {:.0} ms, virtiofsd {:.0} ms (medians)",
        median(&mut wo),
        median(&mut wp)
    );
    let peak = |runs: &[Run], f: fn(&Run) -> u64| runs.iter().map(f).max().unwrap_or(0);
    let s_rss = peak(&ours, |r| r.stage1.rss);
    let s_anon = peak(&ours, |r| r.stage1.anon);
    let s_shmem = peak(&ours, |r| r.stage1.shmem);
    println!(
        "  stage1 process peak, KiB: no share Rss {} (anon {}, shmem {}); serving the workload Rss {s_rss} (anon {s_anon}, shmem {s_shmem})",
        baseline.rss, baseline.anon, baseline.shmem
    );
    println!(
        "  our backend's cost while serving: anon +{} KiB (goal ≤ 2048), guest RAM mapped +{} KiB",
        s_anon.saturating_sub(baseline.anon),
        s_shmem.saturating_sub(baseline.shmem)
    );
    println!(
        "  virtiofsd peak (its processes summed), KiB: Rss {} (anon {}, shmem {})",
        peak(&peer, |r| r.virtiofsd.rss),
        peak(&peer, |r| r.virtiofsd.anon),
        peak(&peer, |r| r.virtiofsd.shmem)
    );
    ExitCode::SUCCESS
}
