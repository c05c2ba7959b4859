//! `make bench` (exec): the exec round trip into a running VM through the `qemu` engine
//! (connect → first output byte → exit) against `runc exec` into a running container of
//! the same busybox root file system, interleaved in the same run so that machine noise
//! hits both alike.
//!
//! One VM is booted with `stage1-kvm vm --serve` (the agent's own root: the test initramfs,
//! busybox) and one runc container runs `sleep` in a root made of the same busybox binary.
//! If the benchmark aborts, the VM dies with it (`PR_SET_PDEATHSIG`) and the container's
//! `sleep` ends by itself within 10 minutes.
//! Each round runs `/bin/echo x` three ways, timed from the moment the client starts:
//! - **ours, in-process**: this process is the client: it connects to the VM's hybrid vsock
//!   socket (`CONNECT 1024`), does the protocol handshake, sends the exec request, and
//!   timestamps the handshake's end, the first `stdout` frame and the `exited` frame;
//! - **ours, CLI**: `stage1-kvm exec --vsock-socket S -- /bin/echo x` as a child process,
//!   timed to the first byte on its stdout and to its exit (what a user sees);
//! - **peer**: `runc exec ID /bin/echo x`, timed the same way.
//!
//! Prints medians and minimums of each and the ratios ours / runc.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::exec::{AgentToClient, ClientToAgent, ExecRequest};
use protocol::{handshake, read_message, write_message, ConnectionKind, ProcessSpec};
use stage1_kvm_e2e::bench::{self, median, min, ms};
use stage1_kvm_e2e::{send_signal, stage1_bin, Sandbox};

const ARGV: [&str; 2] = ["/bin/echo", "x"];

/// One timed exec: milliseconds from the start to the end of the connection set-up (the
/// in-process client only), to the first output byte, to the exit.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    connected: f64,
    first_byte: f64,
    exit: f64,
}

/// The hybrid vsock handshake: `CONNECT <port>\n` → `OK <port>\n`.
fn hybrid_connect(socket: &Path) -> std::io::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket)?;
    stream.write_all(format!("CONNECT {}\n", protocol::AGENT_VSOCK_PORT).as_bytes())?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while answer.last() != Some(&b'\n') {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        }
        answer.push(byte[0]);
    }
    if !answer.starts_with(b"OK ") {
        return Err(std::io::Error::other(format!(
            "the VMM answered {:?}",
            String::from_utf8_lossy(&answer)
        )));
    }
    Ok(stream)
}

fn request() -> ExecRequest {
    ExecRequest {
        app: None,
        process: ProcessSpec {
            argv: ARGV.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![("PATH".to_owned(), "/bin".to_owned())],
            cwd: "/".to_owned(),
            uid: 0,
            gid: 0,
            supplementary_gids: vec![],
        },
        tty: false,
        window: None,
    }
}

/// One exec through the agent with this process as the client.
fn ours_in_process(socket: &Path) -> Sample {
    let started = Instant::now();
    let mut stream = hybrid_connect(socket).expect("connecting to the agent");
    handshake::connect(&mut stream, ConnectionKind::Exec).expect("handshake");
    let connected = ms(started.elapsed());
    write_message(&mut stream, &ClientToAgent::Exec(request())).expect("sending the request");
    let mut first_byte = None;
    loop {
        let message: AgentToClient = read_message(&mut stream)
            .expect("reading from the agent")
            .expect("the agent closed the session early");
        match message {
            AgentToClient::Started { .. } => {
                // As `stage1-kvm exec` does with no input. A process as quick as echo may
                // be gone and the session closed by now: the rest is still to be read.
                let _ = write_message(&mut stream, &ClientToAgent::StdinEof {});
            }
            AgentToClient::Stdout { data } => {
                if first_byte.is_none() && !data.is_empty() {
                    first_byte = Some(ms(started.elapsed()));
                }
            }
            AgentToClient::Stderr { .. } => {}
            AgentToClient::Exited { status } => {
                assert!(status.success(), "{ARGV:?} in the guest: {status:?}");
                return Sample {
                    connected,
                    first_byte: first_byte.expect("no output before the exit"),
                    exit: ms(started.elapsed()),
                };
            }
            AgentToClient::Error { message } => panic!("the agent: {message}"),
        }
    }
}

/// Runs `command` with its stdout piped; times its first stdout byte and its exit.
fn timed_child(command: &mut Command) -> Sample {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning");
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    let n = stdout.read(&mut byte).expect("reading stdout");
    assert_eq!(n, 1, "no output");
    let first_byte = ms(started.elapsed());
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let exit = ms(started.elapsed());
    assert!(status.success(), "{command:?}: {status}");
    Sample {
        connected: 0.0,
        first_byte,
        exit,
    }
}

/// The served VM, stopped (SIGTERM, then waited for) when dropped.
struct ServedVm {
    child: Child,
    socket: PathBuf,
    _sandbox: Sandbox,
}

impl ServedVm {
    fn boot() -> Self {
        let sandbox = Sandbox::with_busybox();
        let socket = sandbox.path().join("vsock.sock");
        let mut command = sandbox.vm_command(
            "qemu",
            &["--cpus", "1", "--mem", "256", "--serve", "--vsock-socket"],
        );
        command.arg(&socket).stdout(Stdio::null());
        // Release builds abort on panic, skipping Drop: the VM must still not outlive us.
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("starting stage1-kvm vm --serve");
        let vm = Self {
            child,
            socket,
            _sandbox: sandbox,
        };
        // The agent takes its first connection once it is ready.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(mut stream) = hybrid_connect(&vm.socket) {
                if handshake::connect(&mut stream, ConnectionKind::Exec).is_ok() {
                    return vm;
                }
            }
            assert!(Instant::now() < deadline, "the served VM never came up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServedVm {
    fn drop(&mut self) {
        send_signal(&self.child, libc::SIGTERM);
        let _ = self.child.wait();
    }
}

/// A runc container running `sleep`, killed and deleted when dropped.
struct Container {
    state: tempfile::TempDir,
    id: String,
    _bundle: tempfile::TempDir,
}

impl Container {
    fn start() -> Self {
        let bundle = bench::scratch("stage1-kvm-bench-runc.");
        bench::busybox_rootfs(&bundle.path().join("rootfs"));
        // Bounded, so that it ends by itself if we abort (a panic skips Drop).
        bench::runc_bundle(bundle.path(), Path::new("rootfs"), &["/bin/sleep", "600"]);
        let state = bench::scratch("stage1-kvm-bench-runc-state.");
        let id = format!("stage1-kvm-bench-exec-{}", std::process::id());
        let status = bench::runc(state.path())
            .args(["run", "-d", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("running runc run -d");
        assert!(status.success(), "runc run -d failed: {status}");
        Self {
            state,
            id,
            _bundle: bundle,
        }
    }

    fn exec(&self) -> Command {
        let mut command = bench::runc(self.state.path());
        command.arg("exec").arg(&self.id).args(ARGV);
        command
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = bench::runc(self.state.path())
            .args(["delete", "--force", &self.id])
            .status();
    }
}

fn column(samples: &[Sample], f: fn(&Sample) -> f64) -> Vec<f64> {
    samples.iter().map(f).collect()
}

fn main() {
    let runs = bench::runs(60);
    let load_before = bench::load_average();
    let container = Container::start();
    let vm = ServedVm::boot();
    let cli = || {
        let mut command = Command::new(stage1_bin());
        command
            .args(["exec", "--vsock-socket"])
            .arg(&vm.socket)
            .arg("--")
            .args(ARGV);
        command
    };

    // Warm-up (page cache, the agent's first exec, runc's first start-up).
    for _ in 0..3 {
        ours_in_process(&vm.socket);
        timed_child(&mut cli());
        timed_child(&mut container.exec());
    }
    let (mut ours, mut ours_cli, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..runs {
        // Alternate the order so that neither always runs right after the other.
        if round % 2 == 0 {
            ours.push(ours_in_process(&vm.socket));
            ours_cli.push(timed_child(&mut cli()));
            peer.push(timed_child(&mut container.exec()));
        } else {
            peer.push(timed_child(&mut container.exec()));
            ours_cli.push(timed_child(&mut cli()));
            ours.push(ours_in_process(&vm.socket));
        }
    }
    let load_after = bench::load_average();
    drop(vm);
    drop(container);

    println!(
        "exec round trip, {ARGV:?}: qemu engine (TCG, 1 vCPU, 256 MiB) vs runc exec, {runs} runs each, interleaved; load average {load_before} before, {load_after} after"
    );
    let line = |name: &str, samples: &[Sample], f: fn(&Sample) -> f64| {
        let mut values = column(samples, f);
        let lowest = min(&values);
        let mid = median(&mut values);
        println!("  {name:<40} median {mid:8.2} ms   min {lowest:8.2} ms");
        (mid, lowest)
    };
    let connected = line("ours in-process: connected+handshake", &ours, |s| {
        s.connected
    });
    let _ = connected;
    let first = line("ours in-process: first output byte", &ours, |s| {
        s.first_byte
    });
    let exit = line("ours in-process: exit", &ours, |s| s.exit);
    let cli_first = line("ours CLI (stage1-kvm exec): first byte", &ours_cli, |s| {
        s.first_byte
    });
    let cli_exit = line("ours CLI (stage1-kvm exec): exit", &ours_cli, |s| s.exit);
    let peer_first = line("runc exec: first byte", &peer, |s| s.first_byte);
    let peer_exit = line("runc exec: exit", &peer, |s| s.exit);
    let ratio = |name: &str, ours: (f64, f64), peer: (f64, f64)| {
        println!(
            "  ratio {name:<34} median {:6.2}x   min {:6.2}x",
            ours.0 / peer.0,
            ours.1 / peer.1
        );
    };
    ratio("in-process/runc, first byte", first, peer_first);
    ratio("in-process/runc, exit", exit, peer_exit);
    ratio("CLI/runc, first byte", cli_first, peer_first);
    ratio("CLI/runc, exit", cli_exit, peer_exit);
}
