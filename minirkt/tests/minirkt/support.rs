//! Test fixtures: a stub stage1 ACI (its entrypoints are the scripts in
//! `tests/stub-stage1/`), a busybox app ACI, and helpers to drive the minirkt binary.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use minirkt::aci::{self, Compression};
use minirkt::harness::{Harness, StatusReport};

/// The minirkt binary under test.
pub const MINIRKT: &str = env!("CARGO_BIN_EXE_minirkt");

/// Mounting overlays and chowning need root; say so instead of failing obscurely.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "minirkt's integration tests mount overlayfs and must run as root"
    );
}

/// How to build the stub stage1.
#[derive(Debug, Clone)]
pub struct Stage1 {
    /// `interface-version` annotation (`None`: absent, i.e. version 1).
    pub version: Option<&'static str>,
    /// Whether the rootfs has `rkt/status` (overlay mode needs it, contract fact 6).
    pub with_status_dir: bool,
}

impl Default for Stage1 {
    fn default() -> Self {
        Stage1 {
            version: Some("6"),
            with_status_dir: true,
        }
    }
}

/// One test's world: a temp dir with the data dir, the stub's output dir, and images.
#[derive(Debug)]
pub struct World {
    _tmp: tempfile::TempDir,
    /// Root of the temp dir.
    pub root: PathBuf,
    /// minirkt `--dir`.
    pub data: PathBuf,
    /// `STUB_OUT`: where the stub entrypoints write what they saw.
    pub out: PathBuf,
}

impl World {
    /// A fresh world (root required).
    pub fn new() -> World {
        require_root();
        let tmp = tempfile::Builder::new()
            .prefix("minirkt-test-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().to_path_buf();
        let data = root.join("data");
        let out = root.join("out");
        fs::create_dir_all(&out).unwrap();
        World {
            _tmp: tmp,
            root,
            data,
            out,
        }
    }

    /// Builds a stub stage1 ACI and returns its path.
    pub fn stage1(&self, cfg: &Stage1) -> PathBuf {
        let name = format!(
            "stage1-v{}-{}",
            cfg.version.unwrap_or("none"),
            if cfg.with_status_dir {
                "status"
            } else {
                "nostatus"
            }
        );
        let dir = self.root.join(&name);
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(rootfs.join("stub")).unwrap();
        for d in ["rkt/env", "opt/stage2"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        if cfg.with_status_dir {
            fs::create_dir_all(rootfs.join("rkt/status")).unwrap();
        }
        let stub_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stub-stage1");
        for ep in ["run", "enter", "stop", "gc"] {
            let dst = rootfs.join("stub").join(ep);
            fs::copy(stub_src.join(ep), &dst).unwrap();
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut annotations = vec![
            ann("coreos.com/rkt/stage1/run", "/stub/run"),
            ann("coreos.com/rkt/stage1/enter", "/stub/enter"),
            ann("coreos.com/rkt/stage1/stop", "/stub/stop"),
            ann("coreos.com/rkt/stage1/gc", "/stub/gc"),
        ];
        if let Some(v) = cfg.version {
            annotations.push(ann("coreos.com/rkt/stage1/interface-version", v));
        }
        let manifest = serde_json::json!({
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": "example.com/stub-stage1",
            "labels": [
                {"name": "version", "value": "0.1"},
                {"name": "os", "value": "linux"},
                {"name": "arch", "value": "amd64"}
            ],
            "annotations": annotations,
        });
        fs::write(dir.join("manifest"), manifest.to_string()).unwrap();
        let out = self.root.join(format!("{name}.aci"));
        aci::build(&dir, &out, Compression::Gzip).unwrap();
        out
    }

    /// Builds a busybox app image named `example.com/<name>` running `sh -c <script>`.
    /// Its rootfs has `/etc` without `mtab`, a setuid file owned by 1234:5678, and a
    /// symlink, to check how rendering keeps them.
    pub fn app(&self, name: &str, script: &str) -> PathBuf {
        let dir = self.root.join(format!("app-{name}"));
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static at /bin/busybox");
        symlink("busybox", rootfs.join("bin/sh")).unwrap();
        let suid = rootfs.join("bin/suid-file");
        fs::write(&suid, "x").unwrap();
        nix::unistd::chown(
            &suid,
            Some(nix::unistd::Uid::from_raw(1234)),
            Some(nix::unistd::Gid::from_raw(5678)),
        )
        .unwrap();
        fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
        let manifest = serde_json::json!({
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": format!("example.com/{name}"),
            "labels": [
                {"name": "version", "value": "1.0"},
                {"name": "os", "value": "linux"},
                {"name": "arch", "value": "amd64"}
            ],
            "app": {"exec": ["/bin/sh", "-c", script], "user": "0", "group": "0"}
        });
        fs::write(dir.join("manifest"), manifest.to_string()).unwrap();
        let out = self.root.join(format!("{name}.aci"));
        aci::build(&dir, &out, Compression::None).unwrap();
        out
    }

    /// A `minirkt --dir <data> ARGS…` command with `STUB_OUT` set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(MINIRKT);
        c.arg("--dir").arg(&self.data).args(args);
        c.env("STUB_OUT", &self.out);
        c.stdin(Stdio::null());
        c
    }

    /// Runs minirkt and returns its output.
    pub fn minirkt(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn minirkt")
    }

    /// Runs minirkt, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.minirkt(args);
        assert!(
            o.status.success(),
            "minirkt {args:?} failed: {}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A file the stub wrote, as lines.
    pub fn stub_lines(&self, name: &str) -> Vec<String> {
        let p = self.out.join(name);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .lines()
            .map(String::from)
            .collect()
    }

    /// The UUID of the last pod the run stub saw (basename of its cwd).
    pub fn last_uuid(&self) -> String {
        let cwd = &self.stub_lines("run.cwd")[0];
        Path::new(cwd)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// `<data>/pods/<dir>/<uuid>`.
    pub fn pod_dir(&self, state_dir: &str, uuid: &str) -> PathBuf {
        self.data.join("pods").join(state_dir).join(uuid)
    }

    /// `minirkt status`, parsed by the library's harness.
    pub fn status(&self, uuid: &str) -> StatusReport {
        Harness::new(MINIRKT, &self.data)
            .status(uuid)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `minirkt run` with the stub waiting for a stop; returns the child and the
    /// pod UUID once the pod is running with its pid file written.
    pub fn start_waiting(&self, args: &[&str]) -> (Child, String) {
        let _ = fs::remove_file(self.out.join("run.cwd"));
        let mut cmd = self.cmd(args);
        cmd.env("STUB_WAIT_FOR_STOP", "1");
        let child = cmd.spawn().expect("spawn minirkt run");
        let uuid = wait_for(Duration::from_secs(20), || {
            let cwd = fs::read_to_string(self.out.join("run.cwd")).ok()?;
            let uuid = Path::new(cwd.trim())
                .file_name()?
                .to_string_lossy()
                .into_owned();
            let pid_file = self.pod_dir("run", &uuid).join("pid");
            pid_file.exists().then_some(uuid)
        })
        .expect("the stub pod never started");
        (child, uuid)
    }

    /// Starts `minirkt run` with extra environment for the stub; returns the child and,
    /// once the pod is running (its lock held), its UUID.
    pub fn start_with(&self, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
        let _ = fs::remove_file(self.out.join("run.cwd"));
        let mut cmd = self.cmd(args);
        cmd.envs(env.iter().copied());
        let child = cmd.spawn().expect("spawn minirkt run");
        let uuid = wait_for(Duration::from_secs(20), || {
            let cwd = fs::read_to_string(self.out.join("run.cwd")).ok()?;
            let uuid = Path::new(cwd.trim())
                .file_name()?
                .to_string_lossy()
                .into_owned();
            let st = Harness::new(MINIRKT, &self.data).status(&uuid).ok()?;
            (st.state == "running").then_some(uuid)
        })
        .expect("the stub pod never started");
        (child, uuid)
    }

    /// Mount points at or below the data directory.
    pub fn mounts(&self) -> Vec<PathBuf> {
        minirkt::mountinfo::mounts_under(&self.data)
            .unwrap()
            .into_iter()
            .map(|m| m.mount_point)
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // A test that failed half-way may leave a stub pod waiting for its stop: ask it to
        // stop (the file the run stub waits for), give it a moment, then SIGKILL the PIDs
        // it wrote, so that no process outlives the test.
        let pods: Vec<PathBuf> = fs::read_dir(self.data.join("pods/run"))
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for p in &pods {
            let _ = fs::write(p.join("stop-requested"), "");
        }
        let running = |p: &PathBuf| {
            minirkt::lock::Lock::open_dir(p)
                .and_then(|l| l.try_shared())
                .map(|free| !free)
                .unwrap_or(false)
        };
        let _ = wait_for(Duration::from_secs(2), || {
            (!pods.iter().any(running)).then_some(())
        });
        for p in pods.iter().filter(|p| running(p)) {
            for f in ["pid", "ppid"] {
                let pid = fs::read_to_string(p.join(f)).ok();
                if let Some(pid) = pid.and_then(|p| p.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        // Never leave overlays behind either.
        let _ = minirkt::mountinfo::unmount_all_under(&self.root);
    }
}

fn ann(name: &str, value: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "value": value})
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        sleep(Duration::from_millis(20));
    }
}

/// Waits for a child with a timeout; kills it and panics on timeout.
pub fn wait_child(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let status = wait_for(timeout, || child.try_wait().unwrap());
    match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            panic!("child did not exit within {timeout:?}");
        }
    }
}
