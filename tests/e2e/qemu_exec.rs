//! End-to-end: commands run in the guest through the agent over vsock, with the `qemu`
//! engine (our vsock backend served to QEMU over vhost-user): exit codes, output integrity,
//! stdin, ttys, concurrent sessions, vanishing clients, and a graceful shutdown.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stage1_kvm_e2e::{send_signal, stage1_bin, Finished, Sandbox};

const ENGINE: &str = "qemu";
const MEM: &str = "256";

/// `stage1-kvm vm … -- argv…` in a sandbox with busybox.
fn vm_run(sandbox: &Sandbox, flags: &[&str], argv: &[&str]) -> Command {
    let mut extra = vec!["--mem", MEM];
    extra.extend_from_slice(flags);
    extra.push("--");
    extra.extend_from_slice(argv);
    sandbox.vm_command(ENGINE, &extra)
}

fn sh(sandbox: &Sandbox, script: &str) -> Finished {
    Finished::run(&mut vm_run(sandbox, &[], &["/bin/sh", "-c", script]))
}

#[test]
fn exit_codes_pass_through_exactly() {
    let sandbox = Sandbox::with_busybox();
    let run = sh(&sandbox, "echo hi; exit 3");
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(3), "hi\n"),
        "stderr: {}",
        run.stderr
    );
    for (script, code) in [
        ("exit 0", 0),
        ("exit 1", 1),
        ("exit 255", 255),
        ("kill -9 $$", 137),
        ("kill -15 $$", 143),
    ] {
        let run = sh(&sandbox, script);
        assert_eq!(run.code, Some(code), "{script}: stderr {}", run.stderr);
        assert!(
            run.stderr.is_empty(),
            "{script}: unexpected stderr {}",
            run.stderr
        );
    }
    sandbox.assert_nothing_left();
}

/// The bytes `seq 1 N` prints.
fn seq_output(n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        writeln!(out, "{i}").unwrap();
    }
    out
}

#[test]
fn sixteen_mib_on_stdout_and_stderr_arrive_intact_from_a_process_that_exits_at_once() {
    // seq 1 1900000 prints 15.1 MB; twice (stdout and stderr) is over 16 MiB in all, and
    // the shell exits the moment the last write returns.
    let sandbox = Sandbox::with_busybox();
    let output = vm_run(
        &sandbox,
        &[],
        &["/bin/sh", "-c", "seq 1 1900000 | tee /dev/stderr"],
    )
    .output()
    .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr[..200.min(output.stderr.len())])
    );
    let expected = seq_output(1_900_000);
    assert!(
        output.stdout == expected,
        "stdout differs: {} bytes, expected {}",
        output.stdout.len(),
        expected.len()
    );
    assert!(
        output.stderr == expected,
        "stderr differs: {} bytes, expected {}",
        output.stderr.len(),
        expected.len()
    );
}

#[test]
fn stdin_is_piped_in() {
    let sandbox = Sandbox::with_busybox();
    let mut child = vm_run(
        &sandbox,
        &[],
        &["/bin/sh", "-c", "wc -c; cat /proc/self/cmdline >/dev/null"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&vec![b'x'; 3_000_000]).unwrap();
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3000000");
}

#[test]
fn a_tty_session_gets_a_pseudo_terminal() {
    let sandbox = Sandbox::with_busybox();
    let run = Finished::run(&mut vm_run(
        &sandbox,
        &["--tty"],
        &["/bin/sh", "-c", "tty; stty size"],
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.starts_with("/dev/pts/"), "{:?}", run.stdout);
    let plain = sh(&sandbox, "tty");
    assert_eq!(
        plain.code,
        Some(1),
        "without --tty there is no terminal: {:?}",
        plain.stdout
    );
}

#[test]
fn a_missing_program_is_one_clear_error() {
    let sandbox = Sandbox::with_busybox();
    let run = Finished::run(&mut vm_run(&sandbox, &[], &["/foo-not-there"]));
    run.assert_one_line_failure("Unable to open \"/foo-not-there\": No such file or directory");
    sandbox.assert_nothing_left();
}

/// A VM serving exec sessions on its vsock socket, shut down gracefully on drop.
struct Served {
    child: Option<Child>,
    socket: PathBuf,
    sandbox: Sandbox,
}

impl Served {
    fn start() -> Self {
        let sandbox = Sandbox::with_busybox();
        let socket = sandbox.path().join("vsock.sock");
        let child = sandbox
            .vm_command(
                ENGINE,
                &[
                    "--mem",
                    MEM,
                    "--cpus",
                    "2",
                    "--serve",
                    "--vsock-socket",
                    socket.to_str().unwrap(),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let served = Self {
            child: Some(child),
            socket,
            sandbox,
        };
        // Ready when an exec goes through.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = served.exec(&["true"]).output().unwrap();
            if run.status.code() == Some(0) {
                return served;
            }
            assert!(
                Instant::now() < deadline,
                "the VM never served: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn exec(&self, argv: &[&str]) -> Command {
        let mut command = Command::new(stage1_bin());
        command
            .args(["exec", "--vsock-socket"])
            .arg(&self.socket)
            .arg("--")
            .args(argv);
        command.stdin(Stdio::null());
        command
    }

    /// SIGTERM: graceful shutdown; returns the run's result.
    fn shutdown(mut self) -> Finished {
        let child = self.child.take().unwrap();
        send_signal(&child, libc::SIGTERM);
        let finished = Finished::from(child.wait_with_output().unwrap());
        self.sandbox.assert_nothing_left();
        assert!(
            !self.socket.exists(),
            "the vsock socket {} was left behind",
            self.socket.display()
        );
        finished
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn twenty_concurrent_exec_sessions_each_get_their_own_output_and_code() {
    let served = Served::start();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let script = format!("seq 1 {}; exit {}", 1000 * (i + 1), i);
            served
                .exec(&["/bin/sh", "-c", &script])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        let n = u32::try_from(1000 * (i + 1)).unwrap();
        assert_eq!(
            output.status.code(),
            Some(i32::try_from(i).unwrap()),
            "session {i}"
        );
        assert!(
            output.stdout == seq_output(n),
            "session {i}: {} bytes",
            output.stdout.len()
        );
    }
    let end = served.shutdown();
    assert_eq!(end.code, Some(0), "{}", end.stderr);
}

#[test]
fn a_client_that_vanishes_mid_stream_does_not_wedge_the_agent() {
    let served = Served::start();
    let mut endless = served
        .exec(&["/bin/sh", "-c", "yes"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    endless
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    endless.kill().unwrap();
    endless.wait().unwrap();
    // The agent killed `yes` and serves on.
    let after = served
        .exec(&["/bin/sh", "-c", "sleep 0.5; pgrep -x yes; echo alive"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&after.stdout),
        "alive\n",
        "`yes` still runs or the agent is stuck"
    );
    let end = served.shutdown();
    assert_eq!(end.code, Some(0), "{}", end.stderr);
}

#[test]
fn exec_without_a_running_vm_is_one_clear_error() {
    let sandbox = Sandbox::with_busybox();
    let mut command = Command::new(stage1_bin());
    command
        .args(["exec", "--vsock-socket"])
        .arg(sandbox.path().join("none.sock"))
        .args(["--", "true"]);
    Finished::run(&mut command).assert_one_line_failure("none.sock");
}
