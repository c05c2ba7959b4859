//! Shared helpers of the end-to-end tests: where the built artifacts are, running the
//! `stage1-kvm` binary, and checking that nothing was left running.
//!
//! The artifacts come from `make e2e` through environment variables. A missing one is a
//! test failure naming the variable — the tests never skip.

pub mod bench;
pub mod pod;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// rkt's failure exit code.
pub const EXIT_FAILURE: i32 = 254;

/// The path in environment variable `var`, which must exist.
pub fn artifact(var: &str) -> PathBuf {
    let value = std::env::var_os(var)
        .unwrap_or_else(|| panic!("{var} is not set: run the end-to-end tests with `make e2e`"));
    let path = PathBuf::from(value);
    assert!(
        path.exists(),
        "{var}={} does not exist: run `make e2e`",
        path.display()
    );
    path
}

/// The built `stage1-kvm` binary.
pub fn stage1_bin() -> PathBuf {
    artifact("STAGE1_KVM_BIN")
}

/// The stripped guest kernel.
pub fn kernel() -> PathBuf {
    artifact("STAGE1_KVM_KERNEL")
}

/// The initramfs with the guest agent as `/init`.
pub fn initramfs() -> PathBuf {
    artifact("STAGE1_KVM_INITRAMFS")
}

/// The initramfs with the agent and busybox (a shell and tools for commands).
pub fn test_initramfs() -> PathBuf {
    artifact("STAGE1_KVM_TEST_INITRAMFS")
}

/// The static guest agent binary.
pub fn agent() -> PathBuf {
    artifact("STAGE1_KVM_AGENT")
}

/// The stage1 image, `target/stage1-kvm.aci` (`make aci`).
pub fn stage1_aci() -> PathBuf {
    artifact("STAGE1_KVM_ACI")
}

/// The minirkt binary, the rkt-compatible stage0 that drives pods (`make minirkt`).
pub fn minirkt_bin() -> PathBuf {
    artifact("STAGE1_KVM_MINIRKT")
}

/// A per-test directory whose path appears in the engine's command line (the boot files
/// are linked into it), so processes started for this test can be found and counted.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A new sandbox with the kernel and initramfs linked in.
    pub fn new() -> Self {
        Self::with_initramfs(&initramfs())
    }

    /// A new sandbox with the kernel and the agent + busybox initramfs.
    pub fn with_busybox() -> Self {
        Self::with_initramfs(&test_initramfs())
    }

    fn with_initramfs(initramfs: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("stage1-kvm-e2e.")
            .tempdir()
            .unwrap();
        std::os::unix::fs::symlink(kernel(), dir.path().join("vmlinux")).unwrap();
        std::os::unix::fs::symlink(initramfs, dir.path().join("initramfs")).unwrap();
        Self { dir }
    }

    /// The sandbox directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The kernel's path inside the sandbox.
    pub fn kernel(&self) -> PathBuf {
        self.path().join("vmlinux")
    }

    /// The initramfs's path inside the sandbox.
    pub fn initramfs(&self) -> PathBuf {
        self.path().join("initramfs")
    }

    /// `stage1-kvm vm --engine ENGINE --kernel … --initramfs …` plus `extra`.
    pub fn vm_command(&self, engine: &str, extra: &[&str]) -> Command {
        let mut command = Command::new(stage1_bin());
        command
            .args(["vm", "--engine", engine, "--kernel"])
            .arg(self.kernel())
            .arg("--initramfs")
            .arg(self.initramfs())
            .args(extra)
            .stdin(std::process::Stdio::null());
        command
    }

    /// Processes whose command line mentions this sandbox (e.g. a QEMU booting its
    /// kernel), other than the caller.
    pub fn processes(&self) -> Vec<(u32, String)> {
        processes_mentioning(&self.path().to_string_lossy())
    }

    /// Fails unless every process of this sandbox is gone within a short grace period.
    pub fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = self.processes();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "processes left behind: {left:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Sandbox {
    /// A sandbox with just the given files linked in, as `(name, target)`: for guests
    /// other than the real kernel and initramfs (the test guest).
    pub fn with_links(links: &[(&str, &Path)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("stage1-kvm-e2e.")
            .tempdir()
            .unwrap();
        for (name, target) in links {
            std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
        }
        Self { dir }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

/// Every process whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The output of a finished command as text, for assertions.
#[derive(Debug)]
pub struct Finished {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Finished {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Finished {
    /// Runs `command` to its end.
    pub fn run(command: &mut Command) -> Self {
        command.output().expect("running stage1-kvm").into()
    }

    /// Asserts a failure with exit 254 and exactly one stderr line containing `needle`.
    pub fn assert_one_line_failure(&self, needle: &str) {
        assert_eq!(
            self.code,
            Some(EXIT_FAILURE),
            "exit code; stderr: {}",
            self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one error line, got: {:?}",
            self.stderr
        );
        assert!(
            lines[0].starts_with("stage1-kvm: error: "),
            "{:?}",
            lines[0]
        );
        assert!(
            lines[0].contains(needle),
            "{:?} should mention {needle:?}",
            lines[0]
        );
    }
}

/// Sends `signal` to a child process of the test.
pub fn send_signal(child: &std::process::Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) takes a pid and a signal number and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// A PVH ELF image that the engines boot like a kernel: one segment loaded at 1 MiB whose
/// entry (32-bit protected mode, paging off) runs `code`. For guests that must misbehave in
/// ways the test guest does not (never write a marker, hang).
pub fn pvh_image(code: &[u8]) -> Vec<u8> {
    const LOAD: u64 = 0x10_0000;
    const CODE_OFFSET: usize = 0x1000;
    let mut elf = vec![0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little endian
    elf[6] = 1; // ELF version
    elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[24..32].copy_from_slice(&LOAD.to_le_bytes()); // e_entry
    elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    elf[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
                                                      // The Xen PVH note: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY (18), the entry address.
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&8u32.to_le_bytes());
    note.extend_from_slice(&18u32.to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&LOAD.to_le_bytes());
    let phdr = |kind: u32, offset: u64, addr: u64, size: u64| {
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&kind.to_le_bytes());
        ph[4..8].copy_from_slice(&7u32.to_le_bytes()); // RWX
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[16..24].copy_from_slice(&addr.to_le_bytes());
        ph[24..32].copy_from_slice(&addr.to_le_bytes());
        ph[32..40].copy_from_slice(&size.to_le_bytes());
        ph[40..48].copy_from_slice(&size.to_le_bytes());
        ph[48..56].copy_from_slice(&4u64.to_le_bytes());
        ph
    };
    let len = |n: usize| u64::try_from(n).unwrap();
    elf.extend(phdr(1, len(CODE_OFFSET), LOAD, len(code.len())));
    elf.extend(phdr(4, len(64 + 2 * 56), 0, len(note.len())));
    elf.extend(&note);
    elf.resize(CODE_OFFSET, 0);
    elf.extend_from_slice(code);
    elf
}

impl Finished {
    /// Asserts a clean boot of the guest agent with `engine`: exit 0, the agent's ready
    /// line seeing `cpus` vCPUs, its power-off, the boot timings line, nothing on stderr.
    pub fn assert_agent_booted(&self, engine: &str, cpus: &str) {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        let ready = self
            .stdout
            .lines()
            .find(|l| l.starts_with("stage1-kvm-agent: ready "))
            .unwrap_or_else(|| panic!("no ready line in {:?}", self.stdout));
        assert!(
            ready.contains(&format!(" cpus={cpus} ")),
            "guest saw another CPU count: {ready}"
        );
        assert!(
            self.stdout.contains("stage1-kvm-agent: powering off"),
            "{}",
            self.stdout
        );
        let timings = self
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("boot: engine {engine}")))
            .unwrap_or_else(|| panic!("no timings line in {:?}", self.stdout));
        assert!(
            timings.contains("start→agent") && !timings.contains("? ms"),
            "{timings}"
        );
        assert!(self.stderr.is_empty(), "unexpected stderr: {}", self.stderr);
    }
}
