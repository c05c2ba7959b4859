//! End-to-end: the real kernel and guest agent booted by the `kvm` engine. This needs
//! hardware virtualization (`vmx`/`svm`): PVM, the `/dev/kvm` of our development machines,
//! cannot run a stock Linux guest. `cargo test` leaves this binary out (`test = false`);
//! `make e2e` runs it where the CPU has `vmx`/`svm` and otherwise lists it as NOT RUN in the
//! summary. Run by hand on a host without, it fails rather than pass vacuously.

use stage1_kvm_e2e::{Finished, Sandbox};

const ENGINE: &str = "kvm";

fn has_hardware_virtualization() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines()
            .filter(|l| l.starts_with("flags"))
            .flat_map(str::split_whitespace)
            .any(|f| f == "vmx" || f == "svm")
    })
}

fn boots_cleanly(cpus: &str) {
    assert!(
        has_hardware_virtualization(),
        "the kvm engine's real-kernel boot needs vmx/svm; this host has neither"
    );
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
    assert!(has_hardware_virtualization(), "needs vmx/svm");
    let sandbox = Sandbox::new();
    let run = Finished::run(&mut sandbox.vm_command(ENGINE, &["--debug", "--mem", "256"]));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("Linux version 6.12"),
        "kernel log missing: {}",
        run.stderr
    );
}
