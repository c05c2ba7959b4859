//! Pods driven the way rkt drives a stage1: through `minirkt` (the rkt-compatible stage0)
//! and the `stage1-kvm.aci` image. One data directory per test, busybox app images built in
//! the test, pods run in the foreground or the background, and checks that nothing — no
//! process, mount or socket — is left behind.
//!
//! Every pod names its engine explicitly ([`ENGINE`]): the machines of this project have
//! no hardware virtualization, so the tests boot the guest through QEMU.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use minirkt::aci::{self, Compression};
use minirkt::harness::{Harness, StatusReport};

use crate::{minirkt_bin, processes_mentioning, stage1_aci, EXIT_FAILURE};

/// The engine every pod of these tests runs with (`STAGE1_KVM_ENGINE`).
pub const ENGINE: &str = "qemu";

/// How long a pod may take to boot and reach its apps, or to stop (TCG, shared machine).
pub const POD_TIMEOUT: Duration = Duration::from_secs(120);

/// How stage0 renders the pod (contract §3.2): an overlay over the tree store (rkt's
/// default) or full copies (`--no-overlay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Render {
    /// overlayfs mounts made by stage0.
    Overlay,
    /// `--no-overlay`: copies, no mounts at all.
    Copy,
}

impl Render {
    /// Both ways, for tests that run under each.
    pub const BOTH: [Render; 2] = [Render::Overlay, Render::Copy];

    fn flags(self) -> &'static [&'static str] {
        match self {
            Render::Overlay => &[],
            Render::Copy => &["--no-overlay"],
        }
    }
}

/// A data directory of minirkt (in a short temporary path: the pod's Unix sockets must fit
/// `sun_path`) and the stage1 image its pods use.
#[derive(Debug)]
pub struct PodHost {
    dir: tempfile::TempDir,
    harness: Harness,
    stage1: PathBuf,
    runs: std::cell::Cell<u32>,
}

impl Default for PodHost {
    fn default() -> Self {
        Self::new()
    }
}

impl PodHost {
    /// A fresh data directory whose pods use the built `stage1-kvm.aci`.
    pub fn new() -> Self {
        Self::with_stage1(stage1_aci())
    }

    /// A fresh data directory whose pods use `stage1` as their stage1 image.
    pub fn with_stage1(stage1: PathBuf) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("s1p.")
            .tempdir_in("/tmp")
            .expect("creating the test directory");
        let harness = Harness::new(minirkt_bin(), dir.path().join("d"));
        Self {
            dir,
            harness,
            stage1,
            runs: std::cell::Cell::new(0),
        }
    }

    /// The test's directory (images live here, next to the data directory).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// minirkt's `--dir`.
    pub fn data(&self) -> &Path {
        &self.harness.dir
    }

    /// The stage1 image the pods use.
    pub fn stage1(&self) -> &Path {
        &self.stage1
    }

    /// A busybox app image `example.com/<name>` (app name `<name>`) running `exec`; its
    /// rootfs has `/bin/busybox`, a link in `/bin` for every applet, and `/etc`.
    pub fn image(&self, name: &str, exec: &[&str]) -> PathBuf {
        self.image_with(name, exec, |_| {})
    }

    /// Like [`PodHost::image`], with `customize` called on the rootfs before it is packed.
    pub fn image_with(&self, name: &str, exec: &[&str], customize: impl FnOnce(&Path)) -> PathBuf {
        let dir = self.path().join("images").join(name);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("a static busybox at /bin/busybox");
        for applet in busybox_applets() {
            if applet != "busybox" {
                symlink("busybox", rootfs.join("bin").join(&applet)).unwrap();
            }
        }
        customize(&rootfs);
        let manifest = serde_json::json!({
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": format!("example.com/{name}"),
            "labels": [
                {"name": "version", "value": "1.0"},
                {"name": "arch", "value": "amd64"},
                {"name": "os", "value": "linux"}
            ],
            "app": {"exec": exec, "user": "0", "group": "0"}
        });
        std::fs::write(dir.join("manifest"), manifest.to_string()).unwrap();
        let out = self.path().join("images").join(format!("{name}.aci"));
        aci::build(&dir, &out, Compression::None).expect("building the app image");
        out
    }

    /// `minirkt --dir <data> ARGS…` with the engine named and stdin from `/dev/null`.
    pub fn minirkt<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = self.harness.command(args);
        command
            .env("STAGE1_KVM_ENGINE", ENGINE)
            .stdin(Stdio::null());
        command
    }

    /// `minirkt run --stage1-path=… [--no-overlay] --net=none --uuid-file-save=… FLAGS…
    /// IMAGES…` (`--net=none` unless `flags` name a network), and the file that will hold
    /// the pod's UUID.
    pub fn run_command(
        &self,
        render: Render,
        flags: &[&str],
        images: &[&Path],
    ) -> (Command, PathBuf) {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let uuid_file = self.path().join(format!("uuid-{n}"));
        let mut args: Vec<std::ffi::OsString> = vec![
            "run".into(),
            format!("--stage1-path={}", self.stage1.display()).into(),
            format!("--uuid-file-save={}", uuid_file.display()).into(),
        ];
        args.extend(render.flags().iter().map(Into::into));
        if !flags.iter().any(|f| f.starts_with("--net")) {
            args.push("--net=none".into());
        }
        args.extend(flags.iter().map(Into::into));
        args.extend(images.iter().map(|i| i.as_os_str().to_owned()));
        (self.minirkt(&args), uuid_file)
    }

    /// Runs a pod to its end; returns how it ended and its UUID.
    pub fn run(&self, render: Render, flags: &[&str], images: &[&Path]) -> (Ended, String) {
        let (mut command, uuid_file) = self.run_command(render, flags, images);
        let ended = Ended::from(command.output().expect("running minirkt"));
        let uuid = std::fs::read_to_string(&uuid_file).unwrap_or_else(|e| {
            panic!(
                "no UUID in {} ({e}); the run ended with {ended:?}",
                uuid_file.display()
            )
        });
        (ended, uuid)
    }

    /// Starts a pod in the background.
    pub fn spawn(&self, render: Render, flags: &[&str], images: &[&Path]) -> PodRun {
        let (mut command, uuid_file) = self.run_command(render, flags, images);
        PodRun::spawn(&mut command, uuid_file)
    }

    /// `minirkt status UUID`, parsed.
    pub fn status(&self, uuid: &str) -> StatusReport {
        self.harness
            .status(uuid)
            .unwrap_or_else(|e| panic!("status of {uuid}: {e}"))
    }

    /// Polls `status` until the pod is in `state`.
    pub fn wait_for_state(&self, uuid: &str, state: &str, timeout: Duration) -> StatusReport {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(uuid);
            if status.state == state {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "pod {uuid} still {status:?}, expected {state}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `minirkt list --full --no-legend`: the line of pod `uuid`, if listed.
    pub fn list_line(&self, uuid: &str) -> Option<String> {
        let out = self
            .minirkt(&["list", "--full", "--no-legend"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with(uuid))
            .map(str::to_owned)
    }

    /// `minirkt gc --grace-period=0s`, which must succeed.
    pub fn gc(&self) {
        let out = self.minirkt(&["gc", "--grace-period=0s"]).output().unwrap();
        assert!(
            out.status.success(),
            "gc: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("problem performing stage1 GC"),
            "the stage1 gc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The directory of pod `uuid`, whatever its state.
    pub fn pod_dir(&self, uuid: &str) -> Option<PathBuf> {
        [
            "embryo",
            "prepare",
            "prepared",
            "run",
            "exited-garbage",
            "garbage",
        ]
        .iter()
        .map(|state| self.harness.pod_dir(state, uuid))
        .find(|dir| dir.exists())
    }

    /// Processes whose command line mentions the data directory (a pod's `run` process,
    /// its QEMU: their arguments hold paths in the pod directory).
    pub fn processes(&self) -> Vec<(u32, String)> {
        processes_mentioning(&self.data().to_string_lossy())
    }

    /// Unix sockets anywhere under the data directory.
    pub fn sockets(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.data().to_owned()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_socket() {
                    found.push(entry.path());
                }
            }
        }
        found
    }

    /// Mount points under the data directory.
    pub fn mounts(&self) -> Vec<PathBuf> {
        self.harness.mounts().expect("reading mountinfo")
    }

    /// Fails unless no process of this data directory runs (after a short grace period).
    pub fn assert_no_processes(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.processes();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "processes left behind: {left:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails unless no process of this data directory runs (after a short grace period)
    /// and no socket is left in it.
    pub fn assert_nothing_running(&self) {
        self.assert_no_processes();
        let sockets = self.sockets();
        assert!(sockets.is_empty(), "sockets left behind: {sockets:?}");
    }

    /// Fails if the directory of pod `uuid` holds anything but what stage0 creates there
    /// (contract §3.2) and the stage1's `pid` file (§3.3), or if the stage1's
    /// `rkt/status` holds anything but the statuses of `apps`: no socket, no temporary
    /// file, nothing else of the stage1's is left in them.
    pub fn assert_no_stray_files(&self, uuid: &str, apps: &[&str]) {
        const STAGE0: &[&str] = &[
            "appsinfo",
            "overlay",
            "overlay-prepared",
            "pod",
            "pod-created",
            "pod.lck",
            "stage1",
            "stage1TreeStoreID",
        ];
        let pod = self.pod_dir(uuid).expect("the pod exists");
        let names = |dir: &Path| -> Vec<String> {
            std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };
        let stray: Vec<String> = names(&pod)
            .into_iter()
            .filter(|n| n != "pid" && !STAGE0.contains(&n.as_str()))
            .collect();
        assert!(
            stray.is_empty(),
            "stray files in the pod directory: {stray:?}"
        );
        let status = pod.join("stage1/rootfs/rkt/status");
        let stray: Vec<String> = names(&status)
            .into_iter()
            .filter(|n| !apps.contains(&n.as_str()))
            .collect();
        assert!(stray.is_empty(), "stray files in rkt/status: {stray:?}");
    }

    /// Fails unless the only mounts under the data directory are the ones stage0 made for
    /// a pod and leaves to gc (contract §3.2: the stage1 overlay and each app's).
    pub fn assert_only_stage0_mounts(&self) {
        for mount in self.mounts() {
            let text = mount.to_string_lossy().into_owned();
            let stage0 = text.ends_with("/stage1/rootfs")
                || (text.contains("/stage1/rootfs/opt/stage2/") && text.ends_with("/rootfs"));
            assert!(stage0, "a mount stage0 did not make: {text}");
        }
    }

    /// Fails unless nothing is left at all: no process, socket or mount, and no pod in
    /// `run`, `exited-garbage` or `garbage`.
    pub fn assert_clean(&self) {
        self.assert_nothing_running();
        let mounts = self.mounts();
        assert!(mounts.is_empty(), "mounts left behind: {mounts:?}");
        for state in ["run", "exited-garbage", "garbage"] {
            let dir = self.data().join("pods").join(state);
            let left: Vec<_> = std::fs::read_dir(&dir)
                .map(|r| r.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "pods left in {state}/: {left:?}");
        }
    }

    /// gc, then [`PodHost::assert_clean`].
    pub fn gc_and_assert_clean(&self) {
        self.gc();
        self.assert_clean();
    }
}

impl Drop for PodHost {
    /// Leaves nothing behind even when a test failed: kills this data directory's
    /// processes (by pid; they are this test's) and unmounts what is mounted under it.
    fn drop(&mut self) {
        for (pid, _) in self.processes() {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill(2) takes a pid and a signal number; no memory of ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = minirkt::mountinfo::unmount_all_under(self.data());
    }
}

/// The applets of the host's busybox.
fn busybox_applets() -> Vec<String> {
    static APPLETS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    APPLETS
        .get_or_init(|| {
            let out = Command::new("/bin/busybox")
                .arg("--list")
                .output()
                .expect("running /bin/busybox --list");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .clone()
}

/// How a `minirkt run` ended.
#[derive(Clone)]
pub struct Ended {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything on its stdout.
    pub stdout: Vec<u8>,
    /// Everything on its stderr.
    pub stderr: String,
}

impl std::fmt::Debug for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stdout = String::from_utf8_lossy(&self.stdout);
        let cut: String = stdout.chars().take(2000).collect();
        f.debug_struct("Ended")
            .field("status", &self.status)
            .field("stdout", &cut)
            .field("stderr", &self.stderr)
            .finish()
    }
}

impl From<std::process::Output> for Ended {
    fn from(output: std::process::Output) -> Self {
        Self {
            status: output.status,
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Ended {
    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The lines app `app` printed, prefix (`<app>[<pid>]: `, contract §5.12) checked and
    /// stripped.
    pub fn app_lines(&self, app: &str) -> Vec<String> {
        self.stdout_text()
            .lines()
            .filter_map(|line| strip_app_prefix(line, app))
            .map(str::to_owned)
            .collect()
    }

    /// Like [`Ended::app_lines`], without the `Terminated` notices busybox's shell prints
    /// when a SIGTERM (a graceful stop signals the app's whole process group) ends the
    /// command it waits for.
    pub fn app_lines_but_terminated(&self, app: &str) -> Vec<String> {
        let mut lines = self.app_lines(app);
        lines.retain(|l| l != "Terminated");
        lines
    }

    /// Asserts the run exited with `code`.
    pub fn assert_code(&self, code: i32) {
        assert_eq!(self.code(), Some(code), "{self:?}");
    }

    /// Asserts a failure of the stage1: exit 254 and, apart from stage0's own warnings
    /// (`run: …`), exactly one line on stderr, `stage1-kvm: error: …` containing `needle`.
    pub fn assert_stage1_failure(&self, needle: &str) {
        assert_eq!(self.code(), Some(EXIT_FAILURE), "{self:?}");
        assert_one_stage1_error(&self.stderr, needle);
        assert!(
            self.stdout.is_empty() || !self.stdout_text().contains("error"),
            "{self:?}"
        );
    }
}

/// The text of `line` if it is `<app>[<pid>]: <text>`.
pub fn strip_app_prefix<'a>(line: &'a str, app: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(app)?.strip_prefix('[')?;
    let (pid, text) = rest.split_once("]: ")?;
    (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// Asserts that `stderr`, minus stage0's warnings (lines `<command>: …` that minirkt prints
/// before it execs the stage1, as rkt does), is one line `stage1-kvm: error: …` containing
/// `needle`.
pub fn assert_one_stage1_error(stderr: &str, needle: &str) {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.starts_with("run: ") || l.starts_with("run-prepared: ")))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr:?}");
    assert!(
        lines[0].starts_with("stage1-kvm: error: "),
        "{:?} is not a stage1-kvm error",
        lines[0]
    );
    assert!(
        lines[0].contains(needle),
        "{:?} should mention {needle:?}",
        lines[0]
    );
}

/// A pod running in the background: its `minirkt run` (then stage1 `run`) process, whose
/// stdout lines and stderr are collected as they come.
#[derive(Debug)]
pub struct PodRun {
    child: Child,
    /// Set once the process was seen to end.
    status: Option<ExitStatus>,
    uuid_file: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl PodRun {
    fn spawn(command: &mut Command, uuid_file: PathBuf) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting minirkt run");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout_pipe = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&lines);
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout_pipe).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        let sink = Arc::clone(&stderr);
        let err_reader = std::thread::spawn(move || {
            let mut pipe = stderr_pipe;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            status: None,
            uuid_file,
            lines,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// The PID of the run process (minirkt's, which execs the stage1's `run`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The pod's UUID (stage0 saves it before it execs the stage1).
    pub fn uuid(&mut self) -> String {
        let deadline = Instant::now() + POD_TIMEOUT;
        loop {
            if let Ok(uuid) = std::fs::read_to_string(&self.uuid_file) {
                if !uuid.is_empty() {
                    return uuid;
                }
            }
            assert!(
                !self.ended() && Instant::now() < deadline,
                "no UUID saved; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the run process ended.
    pub fn ended(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("waiting for minirkt run");
        }
        self.status.is_some()
    }

    /// The stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stdout has the line `<app>[<pid>]: <text>`.
    pub fn wait_for_line(&mut self, app: &str, text: &str) {
        let deadline = Instant::now() + POD_TIMEOUT;
        loop {
            let seen =
                |lines: &[String]| lines.iter().any(|l| strip_app_prefix(l, app) == Some(text));
            if seen(&self.lines()) {
                return;
            }
            // Its last lines may have come with its end.
            let ended = self.ended();
            std::thread::sleep(Duration::from_millis(50));
            if ended && seen(&self.lines()) {
                return;
            }
            assert!(
                !ended && Instant::now() < deadline,
                "no line {app}[…]: {text}; ended {:?}, stdout {:?}, stderr {:?}",
                self.status,
                self.lines(),
                self.stderr()
            );
        }
    }

    /// Sends `signal` to the run process.
    pub fn signal(&self, signal: libc::c_int) {
        crate::send_signal(&self.child, signal);
    }

    /// Waits for the run to end (at most [`POD_TIMEOUT`]).
    pub fn wait(mut self) -> Ended {
        let deadline = Instant::now() + POD_TIMEOUT;
        while !self.ended() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the pod did not end within {POD_TIMEOUT:?}; stdout {:?}, stderr {:?}",
                    self.lines(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let mut stdout = self.lines().join("\n").into_bytes();
        if !stdout.is_empty() {
            stdout.push(b'\n');
        }
        Ended {
            status: self.status.expect("ended"),
            stdout,
            stderr: self.stderr(),
        }
    }
}

impl Drop for PodRun {
    fn drop(&mut self) {
        if !self.ended() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A copy of the stage1 image at `aci` without the entries for which `drop_entry` (given
/// the path inside `rootfs/`) is true, written into `dir`.
pub fn stage1_without(aci: &Path, dir: &Path, drop_entry: impl Fn(&Path) -> bool) -> PathBuf {
    let tree = dir.join("broken-stage1");
    std::fs::create_dir_all(&tree).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(aci)
        .arg("-C")
        .arg(&tree)
        .status()
        .expect("running tar");
    assert!(status.success(), "extracting {}", aci.display());
    let rootfs = tree.join("rootfs");
    let mut stack = vec![rootfs.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let inside = path.strip_prefix(&rootfs).unwrap().to_owned();
            let kind = entry.file_type().unwrap();
            if drop_entry(&inside) {
                if kind.is_dir() {
                    std::fs::remove_dir_all(&path).unwrap();
                } else {
                    std::fs::remove_file(&path).unwrap();
                }
            } else if kind.is_dir() {
                stack.push(path);
            }
        }
    }
    let out = dir.join("broken-stage1.aci");
    aci::build(&tree, &out, Compression::None).expect("building the broken stage1 image");
    out
}

/// Makes `path` a regular file without any execute permission.
pub fn not_executable(path: &Path) {
    std::fs::write(path, "#!/bin/sh\necho never\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}
