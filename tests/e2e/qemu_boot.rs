//! End-to-end: the real kernel and guest agent booted by the `qemu` engine (TCG on hosts
//! without hardware virtualization), and every bad input of the boot path.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use initramfs::Archive;
use stage1_kvm_e2e::{agent, send_signal, Finished, Sandbox};

const ENGINE: &str = "qemu";

fn boots_cleanly(cpus: &str) {
    let sandbox = Sandbox::new();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &["--cpus", cpus, "--mem", "256"]));
    run.assert_agent_booted(ENGINE, cpus);
    sandbox.assert_nothing_left();
}

#[test]
fn boots_to_the_agent_and_powers_off_with_one_vcpu() {
    boots_cleanly("1");
}

#[test]
fn boots_to_the_agent_and_powers_off_with_two_vcpus() {
    boots_cleanly("2");
}

#[test]
fn debug_shows_the_kernel_console() {
    let sandbox = Sandbox::new();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &["--debug", "--mem", "256"]));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("Linux version 6.12"),
        "kernel log missing: {}",
        run.stderr
    );
}

#[test]
fn missing_kernel_is_one_clear_error() {
    let sandbox = Sandbox::new();
    std::fs::remove_file(sandbox.kernel()).unwrap();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &[]));
    run.assert_one_line_failure("vmlinux: No such file or directory");
}

#[test]
fn unreadable_kernel_is_one_clear_error() {
    let sandbox = Sandbox::new();
    std::fs::remove_file(sandbox.kernel()).unwrap();
    std::fs::create_dir(sandbox.kernel()).unwrap();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &[]));
    run.assert_one_line_failure("is not an x86_64 ELF (a vmlinux): it is a directory");
}

#[test]
fn kernel_without_a_pvh_entry_is_refused() {
    let sandbox = Sandbox::new();
    std::fs::remove_file(sandbox.kernel()).unwrap();
    // A real x86_64 ELF, but not a PVH kernel.
    std::fs::copy(agent(), sandbox.kernel()).unwrap();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &[]));
    run.assert_one_line_failure("has no PVH entry point");

    std::fs::write(sandbox.kernel(), b"MZ this is a bzImage or anything else").unwrap();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &[]));
    run.assert_one_line_failure("is not an x86_64 ELF");
    sandbox.assert_nothing_left();
}

#[test]
fn missing_initramfs_is_one_clear_error() {
    let sandbox = Sandbox::new();
    std::fs::remove_file(sandbox.initramfs()).unwrap();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &[]));
    run.assert_one_line_failure("cannot read initramfs");
}

#[test]
fn missing_qemu_is_one_clear_error() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.vm_command(ENGINE, &[]);
    command.env("STAGE1_KVM_QEMU", "/nonexistent/qemu-system-x86_64");
    let run = Finished::run(&mut command);
    run.assert_one_line_failure("engine qemu: /nonexistent/qemu-system-x86_64 not found");
}

#[test]
fn sizes_out_of_range_are_refused() {
    let sandbox = Sandbox::new();
    for (flags, needle) in [
        (["--cpus", "0"], "0 vCPUs requested"),
        (["--cpus", "33"], "33 vCPUs requested"),
        (["--mem", "16"], "16 MiB of guest memory requested"),
        (
            ["--mem", "100000000"],
            "100000000 MiB of guest memory requested",
        ),
    ] {
        let run = Finished::run(&mut sandbox.vm_command(ENGINE, &flags));
        run.assert_one_line_failure(needle);
    }
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &["--cpus", "300"]));
    run.assert_one_line_failure("300");
}

#[test]
fn unknown_flags_and_engines_are_refused() {
    let sandbox = Sandbox::new();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &["--frobnicate"]));
    run.assert_one_line_failure("--frobnicate");
    let run = Finished::run(&mut sandbox.vm_command("firecracker", &[]));
    run.assert_one_line_failure("unknown engine \"firecracker\"");
}

/// An initramfs whose /init never writes a boot marker: the guest hangs before the agent.
fn hanging_initramfs(sandbox: &Sandbox) {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox (busybox-static) is needed: run `make e2e`, which installs it");
    let mut archive = Archive::new();
    archive.char_device("dev/console", 0o600, 5, 1).unwrap();
    archive.file("bin/busybox", 0o755, busybox).unwrap();
    archive
        .file(
            "init",
            0o755,
            b"#!/bin/busybox sh\n/bin/busybox sleep 600\n".to_vec(),
        )
        .unwrap();
    std::fs::remove_file(sandbox.initramfs()).unwrap();
    std::fs::write(sandbox.initramfs(), archive.to_bytes().unwrap()).unwrap();
}

#[test]
fn a_guest_that_never_reaches_the_agent_times_out_and_leaves_nothing() {
    let sandbox = Sandbox::new();
    hanging_initramfs(&sandbox);
    let started = Instant::now();
    let run =
        Finished::run(&mut sandbox.vm_command(ENGINE, &["--boot-timeout", "3", "--mem", "256"]));
    run.assert_one_line_failure("did not reach the agent within 3 s");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    sandbox.assert_nothing_left();
}

#[test]
fn a_kernel_that_finds_no_init_is_a_failure_not_a_success() {
    let sandbox = Sandbox::new();
    let mut archive = Archive::new();
    archive.char_device("dev/console", 0o600, 5, 1).unwrap();
    std::fs::remove_file(sandbox.initramfs()).unwrap();
    std::fs::write(sandbox.initramfs(), archive.to_bytes().unwrap()).unwrap();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &["--mem", "256"]));
    run.assert_one_line_failure("the guest ended before the agent started");
    sandbox.assert_nothing_left();
}

#[test]
fn an_agent_that_fails_makes_the_run_fail_with_its_reason() {
    // /sys is a file, so the agent cannot mount sysfs: it must report the failure.
    let sandbox = Sandbox::new();
    let mut archive = Archive::new();
    archive.char_device("dev/console", 0o600, 5, 1).unwrap();
    archive.directory("proc", 0o755).unwrap();
    archive.file("sys", 0o644, Vec::new()).unwrap();
    archive
        .file("init", 0o755, std::fs::read(agent()).unwrap())
        .unwrap();
    std::fs::remove_file(sandbox.initramfs()).unwrap();
    std::fs::write(sandbox.initramfs(), archive.to_bytes().unwrap()).unwrap();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &["--mem", "256"]));
    assert!(
        run.stdout
            .contains("stage1-kvm-agent: error: mounting sysfs (sysfs) on /sys"),
        "{}",
        run.stdout
    );
    run.assert_one_line_failure("the guest agent failed");
    sandbox.assert_nothing_left();
}

fn wait_for_qemu(sandbox: &Sandbox) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sandbox
        .processes()
        .iter()
        .any(|(_, cmd)| cmd.contains("qemu-system"))
    {
        assert!(Instant::now() < deadline, "QEMU never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_of_stage1_takes_qemu_with_it() {
    let sandbox = Sandbox::new();
    hanging_initramfs(&sandbox);
    let mut child = sandbox
        .vm_command(ENGINE, &["--boot-timeout", "60", "--mem", "256"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_qemu(&sandbox);
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    sandbox.assert_nothing_left();
}

#[test]
fn sigterm_stops_the_vm_with_a_clear_error() {
    let sandbox = Sandbox::new();
    hanging_initramfs(&sandbox);
    let child = sandbox
        .vm_command(ENGINE, &["--boot-timeout", "60", "--mem", "256"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_qemu(&sandbox);
    send_signal(&child, libc::SIGTERM);
    let run = Finished::from(child.wait_with_output().unwrap());
    run.assert_one_line_failure("the VM was stopped: received SIGTERM");
    sandbox.assert_nothing_left();
}
