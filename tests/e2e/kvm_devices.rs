//! End-to-end: the `kvm` engine moves real data through its virtio devices on this host's
//! `/dev/kvm`. `stage1-kvm vm --engine kvm` boots the freestanding test guest with
//! `--vsock-socket` and `--share`; the guest opens a vsock stream to a host listener and
//! reads a file of a share over FUSE, by polling (see the test-guest crate for what it does
//! and prints). For comparison, the same run goes through the `qemu` engine too (QEMU
//! microvm with the same backends over vhost-user).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stage1_kvm_e2e::{stage1_bin, Finished, Sandbox, EXIT_FAILURE};

const GUEST: &str = "test-guest.elf";
/// The host port the guest connects to.
const PORT: u32 = 5000;
/// The host's reply line.
const REPLY: &str = "pong from the host";
/// Longest a whole run may take (the guest's own waits give up after ~15 s each).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

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

fn vsock_socket(sandbox: &Sandbox) -> PathBuf {
    sandbox.path().join("vsock.sock")
}

/// Boots the test guest with the kvm engine, 64 MiB and `extra`.
fn run_guest(sandbox: &Sandbox, extra: &[&str]) -> Finished {
    run_guest_with("kvm", sandbox, extra)
}

/// Boots the test guest with `engine`, 64 MiB and `extra`, killing it after [`RUN_TIMEOUT`].
fn run_guest_with(engine: &str, sandbox: &Sandbox, extra: &[&str]) -> Finished {
    let _one = one_vm();
    let mut child = Command::new(stage1_bin())
        .args(["vm", "--engine", engine, "--mem", "64", "--kernel"])
        .arg(sandbox.path().join(GUEST))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting stage1-kvm");
    let deadline = Instant::now() + RUN_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the run took more than {RUN_TIMEOUT:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Finished::from(child.wait_with_output().unwrap())
}

/// What the host listener saw.
#[derive(Debug)]
struct HostSide {
    /// The guest's line, newline included.
    line: Vec<u8>,
    /// Anything after the line, until the guest closed the stream.
    after: Vec<u8>,
}

/// A listener at `<socket>_<PORT>` that accepts one connection, reads a line, answers
/// `reply` and reads until the guest closes.
fn host_listener(socket: &Path, reply: Vec<u8>) -> JoinHandle<Result<HostSide, String>> {
    listen(socket, reply, false)
}

/// [`host_listener`], closing its sending side after `reply` when `close_write`.
fn listen(
    socket: &Path,
    reply: Vec<u8>,
    close_write: bool,
) -> JoinHandle<Result<HostSide, String>> {
    let mut path = socket.as_os_str().to_owned();
    path.push(format!("_{PORT}"));
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + RUN_TIMEOUT;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err("the guest never connected".to_owned());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading the guest's line: {e}"))?;
        reader
            .get_mut()
            .write_all(&reply)
            .map_err(|e| format!("replying: {e}"))?;
        if close_write {
            reader
                .get_mut()
                .shutdown(std::net::Shutdown::Write)
                .map_err(|e| format!("shutting down: {e}"))?;
        }
        let mut after = Vec::new();
        reader
            .read_to_end(&mut after)
            .map_err(|e| format!("reading until the guest closed: {e}"))?;
        Ok(HostSide { line, after })
    })
}

fn console(run: &Finished) -> Vec<&str> {
    run.stdout.lines().collect()
}

fn markers(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("marker "))
        .map(|m| m[..4].to_owned())
        .collect()
}

/// A clean run: exit 0, the three markers, the summary line, nothing on stderr.
fn assert_success(run: &Finished, devices: usize) {
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    let lines = console(run);
    assert_eq!(markers(&lines), ["0x20", "0x21", "0x2f"], "{lines:?}");
    let summary = format!("test-guest: {devices} virtio-mmio device(s), 0 failure(s)");
    assert!(lines.contains(&summary.as_str()), "{lines:?}");
    assert!(lines.contains(&"test-guest: exit success"), "{lines:?}");
    assert!(run.stderr.is_empty(), "unexpected stderr: {}", run.stderr);
}

/// A run the guest failed: exit 254, no success marker, the exit-port failure as the last
/// stderr line.
fn assert_guest_failure(run: &Finished) {
    assert_eq!(run.code, Some(EXIT_FAILURE), "stderr: {}", run.stderr);
    let lines = console(run);
    assert_eq!(markers(&lines), ["0x20", "0x21"], "{lines:?}");
    assert!(lines.contains(&"test-guest: exit failure"), "{lines:?}");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "stage1-kvm: error: the guest reported failure on the exit port (value 0x1) (last console line: \"test-guest: exit failure\")"
    );
}

#[test]
fn the_test_guest_exchanges_a_line_with_a_host_listener_over_vsock() {
    let sandbox = sandbox();
    let socket = vsock_socket(&sandbox);
    let host = host_listener(&socket, format!("{REPLY}\n").into_bytes());
    let run = run_guest(
        &sandbox,
        &[
            "--vsock-socket",
            socket.to_str().unwrap(),
            "--append",
            &format!("test_guest.vsock_port={PORT}"),
        ],
    );
    let host = host.join().unwrap().unwrap();
    assert_success(&run, 1);
    let lines = console(&run);
    for expected in [
        "test-guest: virtio-mmio@0xd0000000 id 19 features ok queue0 size 16, 3 queues ready",
        "test-guest: vsock: guest cid 3",
        "test-guest: vsock: connecting from port 1234 to host port 5000",
        "test-guest: vsock: connected, host buf_alloc 262144 fwd_cnt 0",
        "test-guest: vsock: sent \"ping from the test guest\\n\"",
        "test-guest: vsock: got \"pong from the host\"",
        "test-guest: vsock: closed: sent 25 bytes, received 19 bytes, forwarded 19, 0 credit update(s)",
    ] {
        assert!(lines.contains(&expected), "{expected:?} in {lines:?}");
    }
    // The host got exactly the guest's line, then a clean end of stream.
    assert_eq!(host.line, test_guest::VSOCK_PAYLOAD.as_bytes());
    assert_eq!(host.after, b"");
    // The device's socket goes with the VM.
    assert!(!socket.exists(), "{} left behind", socket.display());
    sandbox.assert_nothing_left();
}

#[test]
fn a_reply_longer_than_the_guests_buffer_flows_within_its_credit() {
    let sandbox = sandbox();
    let socket = vsock_socket(&sandbox);
    // Three times the guest's buf_alloc: the device must stop at the guest's credit and go
    // on after each CREDIT_UPDATE (more would be a credit violation, which fails the guest).
    let long: String = (0..3 * test_guest::VSOCK_BUF_ALLOC)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap()))
        .collect();
    let host = host_listener(&socket, format!("{long}\n").into_bytes());
    let run = run_guest(
        &sandbox,
        &[
            "--vsock-socket",
            socket.to_str().unwrap(),
            "--append",
            &format!("test_guest.vsock_port={PORT}"),
        ],
    );
    let host = host.join().unwrap().unwrap();
    assert_success(&run, 1);
    let lines = console(&run);
    let got = format!("test-guest: vsock: got \"{long}\"");
    assert!(lines.contains(&got.as_str()), "{lines:?}");
    let closed = lines
        .iter()
        .find_map(|l| l.strip_prefix("test-guest: vsock: closed: "))
        .unwrap_or_else(|| panic!("no close line in {lines:?}"));
    let received = long.len() + 1;
    assert!(
        closed.starts_with(&format!(
            "sent 25 bytes, received {received} bytes, forwarded {received}, "
        )),
        "{closed}"
    );
    let updates: usize = closed
        .split_whitespace()
        .rev()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no update count in {closed:?}"));
    assert!(updates >= 2, "{closed}");
    assert_eq!(host.line, test_guest::VSOCK_PAYLOAD.as_bytes());
    assert_eq!(host.after, b"");
    sandbox.assert_nothing_left();
}

#[test]
fn a_guest_connection_to_a_port_nobody_listens_on_is_refused_and_fails_the_run() {
    let sandbox = sandbox();
    let socket = vsock_socket(&sandbox);
    let run = run_guest(
        &sandbox,
        &[
            "--vsock-socket",
            socket.to_str().unwrap(),
            "--append",
            "test_guest.vsock_port=5001",
        ],
    );
    assert_guest_failure(&run);
    assert!(
        console(&run).contains(&"test-guest: vsock: connection refused (RST)"),
        "{}",
        run.stdout
    );
    // The device says why it refused.
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("stage1-kvm: vsock: guest connect to host port 5001: ")
            && first.ends_with("No such file or directory (os error 2)"),
        "{}",
        run.stderr
    );
    sandbox.assert_nothing_left();
}

#[test]
fn a_host_that_closes_without_replying_fails_the_guest() {
    let sandbox = sandbox();
    let socket = vsock_socket(&sandbox);
    let host = listen(&socket, Vec::new(), true);
    let run = run_guest(
        &sandbox,
        &[
            "--vsock-socket",
            socket.to_str().unwrap(),
            "--append",
            &format!("test_guest.vsock_port={PORT}"),
        ],
    );
    let host = host.join().unwrap().unwrap();
    assert_guest_failure(&run);
    assert!(
        console(&run).contains(&"test-guest: vsock: the host closed without replying"),
        "{}",
        run.stdout
    );
    assert_eq!(host.line, test_guest::VSOCK_PAYLOAD.as_bytes());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    sandbox.assert_nothing_left();
}

#[test]
fn a_reply_without_a_newline_ends_at_the_hosts_shutdown() {
    let sandbox = sandbox();
    let socket = vsock_socket(&sandbox);
    let host = listen(&socket, REPLY.as_bytes().to_vec(), true);
    let run = run_guest(
        &sandbox,
        &[
            "--vsock-socket",
            socket.to_str().unwrap(),
            "--append",
            &format!("test_guest.vsock_port={PORT}"),
        ],
    );
    let host = host.join().unwrap().unwrap();
    assert_success(&run, 1);
    let lines = console(&run);
    assert!(
        lines.contains(&"test-guest: vsock: got \"pong from the host\""),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"test-guest: vsock: closed: sent 25 bytes, received 18 bytes, forwarded 18, 0 credit update(s)"),
        "{lines:?}"
    );
    assert_eq!(host.after, b"");
    sandbox.assert_nothing_left();
}

/// A share directory in the sandbox holding `hello.txt`.
fn share_with_file(sandbox: &Sandbox, content: &str) -> PathBuf {
    let dir = sandbox.path().join("share");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), content).unwrap();
    dir
}

#[test]
fn the_test_guest_reads_a_file_of_a_share_over_virtio_fs() {
    let sandbox = sandbox();
    let content = "hello from the host share\n\"quoted\"\tand tabbed";
    let dir = share_with_file(&sandbox, content);
    let run = run_guest(
        &sandbox,
        &[
            "--share",
            &format!("data={}:ro", dir.display()),
            "--append",
            "test_guest.fs_file=hello.txt",
        ],
    );
    assert_success(&run, 1);
    let lines = console(&run);
    for expected in [
        "test-guest: virtio-mmio@0xd0000000 id 26 features ok queue0 size 16, 2 queues ready",
        "test-guest: fs: tag \"data\", 1 request queue(s)",
        "test-guest: fs: lookup \"hello.txt\"",
        "test-guest: fs: read \"hello from the host share\\n\\\"quoted\\\"\\tand tabbed\"",
    ] {
        assert!(lines.contains(&expected), "{expected:?} in {lines:?}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("test-guest: fs: FUSE_INIT: server speaks 7.")),
        "{lines:?}"
    );
    let node = lines
        .iter()
        .find(|l| l.starts_with("test-guest: fs: node "))
        .unwrap_or_else(|| panic!("no node line in {lines:?}"));
    assert!(
        node.ends_with(&format!(", mode 0100644, size {}", content.len())),
        "{node}"
    );
    // Read-only, and read only: the share is as it was.
    assert_eq!(
        std::fs::read_to_string(dir.join("hello.txt")).unwrap(),
        content
    );
    sandbox.assert_nothing_left();
}

#[test]
fn a_missing_file_in_the_share_fails_the_guest_and_the_run() {
    let sandbox = sandbox();
    let dir = share_with_file(&sandbox, "unused\n");
    let run = run_guest(
        &sandbox,
        &[
            "--share",
            &format!("data={}", dir.display()),
            "--append",
            "test_guest.fs_file=missing.txt",
        ],
    );
    assert_guest_failure(&run);
    let lines = console(&run);
    assert!(
        lines.contains(&"test-guest: fs: FUSE_LOOKUP failed: error 2 (ENOENT)"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"test-guest: 1 virtio-mmio device(s), 1 failure(s)"),
        "{lines:?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    sandbox.assert_nothing_left();
}

#[test]
fn vsock_and_two_shares_together_with_two_vcpus() {
    let sandbox = sandbox();
    let socket = vsock_socket(&sandbox);
    let dir = share_with_file(&sandbox, "first share\n");
    let other = sandbox.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("hello.txt"), "second share\n").unwrap();
    let host = host_listener(&socket, format!("{REPLY}\n").into_bytes());
    let run = run_guest(
        &sandbox,
        &[
            "--cpus",
            "2",
            "--vsock-socket",
            socket.to_str().unwrap(),
            "--share",
            &format!("one={}", dir.display()),
            "--share",
            &format!("two={}:ro", other.display()),
            "--append",
            &format!("test_guest.vsock_port={PORT}"),
            "--append",
            "test_guest.fs_file=hello.txt",
        ],
    );
    let host = host.join().unwrap().unwrap();
    assert_success(&run, 3);
    let lines = console(&run);
    for expected in [
        "test-guest: virtio-mmio@0xd0000000 id 19 features ok queue0 size 16, 3 queues ready",
        "test-guest: virtio-mmio@0xd0001000 id 26 features ok queue0 size 16, 2 queues ready",
        "test-guest: virtio-mmio@0xd0002000 id 26 features ok queue0 size 16, 2 queues ready",
        "test-guest: vsock: got \"pong from the host\"",
        "test-guest: fs: tag \"one\", 1 request queue(s)",
        "test-guest: fs: read \"first share\\n\"",
        "test-guest: fs: tag \"two\", 1 request queue(s)",
        "test-guest: fs: read \"second share\\n\"",
    ] {
        assert!(lines.contains(&expected), "{expected:?} in {lines:?}");
    }
    assert_eq!(host.line, test_guest::VSOCK_PAYLOAD.as_bytes());
    let timings = lines
        .iter()
        .find(|l| l.starts_with("boot: engine kvm, 2 vCPU, 64 MiB: start→guest "))
        .unwrap_or_else(|| panic!("no timings in {lines:?}"));
    assert!(
        timings.contains("→done") && !timings.contains("? ms"),
        "{timings}"
    );
    sandbox.assert_nothing_left();
}

#[test]
fn the_same_guest_moves_the_same_data_through_the_qemu_engine() {
    let sandbox = sandbox();
    let socket = vsock_socket(&sandbox);
    let dir = share_with_file(&sandbox, "read through QEMU\n");
    let host = host_listener(&socket, format!("{REPLY}\n").into_bytes());
    let run = run_guest_with(
        "qemu",
        &sandbox,
        &[
            "--vsock-socket",
            socket.to_str().unwrap(),
            "--share",
            &format!("data={}:ro", dir.display()),
            "--append",
            &format!("test_guest.vsock_port={PORT}"),
            "--append",
            "test_guest.fs_file=hello.txt",
        ],
    );
    let host = host.join().unwrap().unwrap();
    assert_success(&run, 2);
    let lines = console(&run);
    for expected in [
        "test-guest: vsock: got \"pong from the host\"",
        "test-guest: vsock: closed: sent 25 bytes, received 19 bytes, forwarded 19, 0 credit update(s)",
        "test-guest: fs: read \"read through QEMU\\n\"",
    ] {
        assert!(lines.contains(&expected), "{expected:?} in {lines:?}");
    }
    assert_eq!(host.line, test_guest::VSOCK_PAYLOAD.as_bytes());
    assert_eq!(host.after, b"");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("boot: engine qemu, 1 vCPU, 64 MiB: start→guest ")),
        "{lines:?}"
    );
    // The backends went with QEMU: the vsock socket is gone (it used to be left behind).
    assert!(!socket.exists(), "{} left behind", socket.display());
    sandbox.assert_nothing_left();
}
