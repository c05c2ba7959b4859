//! End-to-end: the `kvm` engine (our in-process VMM) on this host's `/dev/kvm`, booting the
//! freestanding test guest through `stage1-kvm vm`, and every bad input of that path. On
//! our PVM hosts the test guest is what KVM can run; the real kernel through this engine is
//! `kvm_linux_boot.rs`, run only with hardware virtualization.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use stage1_kvm_e2e::{pvh_image, stage1_bin, Finished, Sandbox};

const GUEST: &str = "test-guest.elf";

/// One VM at a time: the machine is shared.
static ONE_VM: Mutex<()> = Mutex::new(());

fn one_vm() -> MutexGuard<'static, ()> {
    ONE_VM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn sandbox() -> Sandbox {
    Sandbox::with_links(&[(GUEST, Path::new(test_guest::ELF_PATH))])
}

/// `stage1-kvm vm --engine kvm --kernel <kernel>` plus `extra`.
fn vm(kernel: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(stage1_bin());
    command
        .args(["vm", "--engine", "kvm", "--kernel"])
        .arg(kernel)
        .args(extra)
        .stdin(Stdio::null());
    command
}

/// Boots the test guest with 64 MiB.
fn run_guest(sandbox: &Sandbox, extra: &[&str]) -> Finished {
    let _one = one_vm();
    let mut command = vm(&sandbox.path().join(GUEST), &["--mem", "64"]);
    Finished::run(command.args(extra))
}

fn boots_cleanly(cpus: &str) {
    let sandbox = sandbox();
    let run = run_guest(&sandbox, &["--cpus", cpus]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines.contains(&"test-guest: hvm_start_info at 0x6000 version 1"),
        "{lines:?}"
    );
    assert!(lines.contains(&"test-guest: 0 virtio-mmio device(s), 0 failure(s)"));
    assert!(lines.contains(&"test-guest: exit success"));
    // The three markers as VmEvents, in order, as they arrived.
    let markers: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("marker "))
        .map(|m| &m[..4])
        .collect();
    assert_eq!(markers, ["0x20", "0x21", "0x2f"], "{lines:?}");
    let timings = lines
        .iter()
        .find(|l| l.starts_with("boot: engine kvm, "))
        .unwrap_or_else(|| panic!("no timings in {lines:?}"));
    assert!(
        timings.starts_with(&format!(
            "boot: engine kvm, {cpus} vCPU, 64 MiB: start→guest "
        )) && timings.contains("→probed")
            && timings.contains("→done")
            && !timings.contains("? ms"),
        "{timings}"
    );
    assert!(run.stderr.is_empty(), "unexpected stderr: {}", run.stderr);
    sandbox.assert_nothing_left();
}

#[test]
fn the_test_guest_boots_prints_marks_and_exits_with_one_vcpu() {
    boots_cleanly("1");
}

#[test]
fn the_test_guest_boots_prints_marks_and_exits_with_two_vcpus() {
    boots_cleanly("2");
}

#[test]
fn a_fault_in_the_guest_fails_the_run_with_its_fault_line() {
    let sandbox = sandbox();
    let run = run_guest(&sandbox, &["--append", "test_guest.fault"]);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("test-guest: fault vector 0 rip 0x")),
        "{}",
        run.stdout
    );
    run.assert_one_line_failure(
        "the guest reported failure on the exit port (value 0x1) (last console line: \"test-guest: exit failure\")",
    );
    sandbox.assert_nothing_left();
}

#[test]
fn a_guest_that_resets_instead_of_using_the_exit_port_fails() {
    let sandbox = sandbox();
    let run = run_guest(&sandbox, &["--append", "test_guest.no_exit_port"]);
    assert!(run.stdout.contains("marker 0x2f"), "{}", run.stdout);
    run.assert_one_line_failure(
        "the test guest reset instead of writing its result to the exit port",
    );
    sandbox.assert_nothing_left();
}

#[test]
fn a_missing_or_inaccessible_kvm_device_is_one_clear_error() {
    let sandbox = sandbox();
    let guest = sandbox.path().join(GUEST);
    let run = Finished::run(&mut vm(&guest, &["--kvm-device", "/nonexistent"]));
    run.assert_one_line_failure(
        "engine kvm: cannot open /nonexistent read-write: No such file or directory",
    );
    let dir = sandbox.path().to_string_lossy().into_owned();
    let run = Finished::run(&mut vm(&guest, &["--kvm-device", &dir]));
    run.assert_one_line_failure(&format!(
        "engine kvm: cannot open {dir} read-write: Is a directory"
    ));
    // Opens, but is not KVM.
    let run = Finished::run(&mut vm(&guest, &["--kvm-device", "/dev/null"]));
    run.assert_one_line_failure("/dev/null: KVM lacks API version 12");
    sandbox.assert_nothing_left();
}

#[test]
fn kernels_that_are_not_pvh_elf_images_are_refused() {
    let sandbox = sandbox();
    let kernel = sandbox.path().join("vmlinux");
    // A real x86_64 ELF, but not a PVH kernel: this test program.
    std::fs::copy(std::env::current_exe().unwrap(), &kernel).unwrap();
    let run = Finished::run(&mut vm(&kernel, &[]));
    run.assert_one_line_failure("has no PVH entry point");
    std::fs::write(&kernel, b"MZ this is a bzImage or anything else").unwrap();
    let run = Finished::run(&mut vm(&kernel, &[]));
    run.assert_one_line_failure("is not an x86_64 ELF");
    std::fs::remove_file(&kernel).unwrap();
    std::fs::create_dir(&kernel).unwrap();
    let run = Finished::run(&mut vm(&kernel, &[]));
    run.assert_one_line_failure("is not an x86_64 ELF (a vmlinux): it is a directory");
    let run = Finished::run(&mut vm(&sandbox.path().join("nope"), &[]));
    run.assert_one_line_failure("nope: No such file or directory");
    sandbox.assert_nothing_left();
}

#[test]
fn guest_memory_too_small_for_kernel_and_initramfs_is_refused_before_loading() {
    let sandbox = sandbox();
    let initramfs = sandbox.path().join("initramfs");
    // 100 MiB, sparse: the check must come before anything is read.
    std::fs::File::create(&initramfs)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let guest = sandbox.path().join(GUEST);
    let initramfs = initramfs.to_string_lossy().into_owned();
    let run = Finished::run(&mut vm(&guest, &["--initramfs", &initramfs, "--mem", "64"]));
    run.assert_one_line_failure("guest memory too small: the kernel (loaded up to ");
    run.assert_one_line_failure(
        "the initramfs (100 MiB) need 101.1 MiB of RAM below the MMIO hole but the VM has 64 MiB",
    );
    sandbox.assert_nothing_left();
}

#[test]
fn a_missing_or_empty_initramfs_is_refused() {
    let sandbox = sandbox();
    let guest = sandbox.path().join(GUEST);
    let missing = sandbox.path().join("initramfs");
    let missing = missing.to_string_lossy().into_owned();
    let run = Finished::run(&mut vm(&guest, &["--initramfs", &missing]));
    run.assert_one_line_failure("cannot read initramfs");
    std::fs::write(&missing, b"").unwrap();
    let run = Finished::run(&mut vm(&guest, &["--initramfs", &missing]));
    run.assert_one_line_failure("is empty");
}

#[test]
fn sizes_out_of_range_and_unknown_flags_are_refused() {
    let sandbox = sandbox();
    let guest = sandbox.path().join(GUEST);
    for (flags, needle) in [
        (["--cpus", "0"], "0 vCPUs requested"),
        (["--cpus", "33"], "33 vCPUs requested"),
        (["--mem", "16"], "16 MiB of guest memory requested"),
        (["--cpus", "300"], "300"),
    ] {
        let run = Finished::run(&mut vm(&guest, &flags));
        run.assert_one_line_failure(needle);
    }
    let run = Finished::run(&mut vm(&guest, &["--frobnicate"]));
    run.assert_one_line_failure("--frobnicate");
    sandbox.assert_nothing_left();
}

/// `jmp .`: a guest that never writes a marker.
const SPIN: &[u8] = &[0xeb, 0xfe];

fn spinning_guest(sandbox: &Sandbox) -> PathBuf {
    let path = sandbox.path().join("spin.elf");
    std::fs::write(&path, pvh_image(SPIN)).unwrap();
    path
}

#[test]
fn a_guest_that_writes_no_marker_times_out_and_leaves_nothing() {
    let sandbox = sandbox();
    let guest = spinning_guest(&sandbox);
    let _one = one_vm();
    let started = Instant::now();
    let run = Finished::run(&mut vm(&guest, &["--boot-timeout", "1", "--cpus", "2"]));
    run.assert_one_line_failure("did not reach the agent within 1 s");
    assert!(started.elapsed() < Duration::from_secs(10));
    sandbox.assert_nothing_left();
}

/// Starts a spinning guest and waits until its process is up.
fn spawn_spinning(sandbox: &Sandbox) -> std::process::Child {
    let guest = spinning_guest(sandbox);
    let child = vm(&guest, &["--boot-timeout", "60", "--cpus", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sandbox.processes().is_empty() {
        assert!(Instant::now() < deadline, "stage1-kvm never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let it get into KVM_RUN.
    std::thread::sleep(Duration::from_millis(300));
    child
}

#[test]
fn sigterm_stops_the_vm_with_a_clear_error() {
    let sandbox = sandbox();
    let _one = one_vm();
    let child = spawn_spinning(&sandbox);
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: sends SIGTERM to our own child; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let run = Finished::from(child.wait_with_output().unwrap());
    run.assert_one_line_failure("the VM was stopped: received SIGTERM");
    sandbox.assert_nothing_left();
}

#[test]
fn sigkill_leaves_nothing_running() {
    let sandbox = sandbox();
    let _one = one_vm();
    let mut child = spawn_spinning(&sandbox);
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    sandbox.assert_nothing_left();
}
