//! Where things are in a pod directory (contract §3.2) and in our stage1 image, and the
//! files `run` writes there (§3.3). Every entrypoint runs with the pod directory as its
//! working directory (§2), so paths derive from it.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where our image keeps the guest kernel and initramfs (see `make aci`).
const KERNEL: &str = "kvm/vmlinux";
const INITRAMFS: &str = "kvm/initramfs.cpio";
/// Our own directory in the pod (sockets of the engine); removed by gc.
const RUN_DIR: &str = "stage1-kvm";
/// The VM's vsock socket in the pod directory (`enter` reaches the agent through it).
pub const VSOCK_SOCKET: &str = "stage1-kvm.vsock";
/// Longest Unix socket path (sun_path minus the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A pod directory.
#[derive(Clone, Debug)]
pub struct PodLayout {
    pod: PathBuf,
}

impl PodLayout {
    /// The pod in the working directory.
    pub fn current() -> Result<Self, String> {
        let pod =
            std::env::current_dir().map_err(|e| format!("reading the working directory: {e}"))?;
        Ok(Self::at(pod))
    }

    /// The pod at `pod`.
    pub fn at(pod: PathBuf) -> Self {
        Self { pod }
    }

    /// `$pod/pod`.
    pub fn pod_manifest(&self) -> PathBuf {
        self.pod.join("pod")
    }

    /// `$s1`.
    pub fn stage1_rootfs(&self) -> PathBuf {
        self.pod.join("stage1/rootfs")
    }

    /// `$s1/opt/stage2`: every app's tree, shared with the guest.
    pub fn stage2(&self) -> PathBuf {
        self.stage1_rootfs().join("opt/stage2")
    }

    /// `$s1/opt/stage2/<app>/manifest`.
    pub fn app_manifest(&self, app: &str) -> PathBuf {
        self.stage2().join(app).join("manifest")
    }

    /// `$s1/opt/stage2/<app>/rootfs`.
    pub fn app_rootfs(&self, app: &str) -> PathBuf {
        self.stage2().join(app).join("rootfs")
    }

    /// The guest kernel in our image.
    pub fn kernel(&self) -> PathBuf {
        self.stage1_rootfs().join(KERNEL)
    }

    /// The guest initramfs in our image.
    pub fn initramfs(&self) -> PathBuf {
        self.stage1_rootfs().join(INITRAMFS)
    }

    /// The vsock socket.
    pub fn vsock_socket(&self) -> PathBuf {
        self.pod.join(VSOCK_SOCKET)
    }

    /// Our run directory, created if needed; its socket paths must fit `sun_path`.
    pub fn run_dir(&self) -> Result<PathBuf, String> {
        let dir = self.pod.join(RUN_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let longest = dir.join("stage2.vhost");
        if longest.as_os_str().len() > MAX_SOCKET_PATH
            || self.vsock_socket().as_os_str().len() > MAX_SOCKET_PATH
        {
            return Err(format!(
                "the pod directory {} is too long for Unix sockets",
                self.pod.display()
            ));
        }
        Ok(dir)
    }

    /// Removes what `run` created in the pod directory; idempotent.
    pub fn remove_run_files(&self) -> Result<(), String> {
        for (path, dir) in [(self.pod.join(RUN_DIR), true), (self.vsock_socket(), false)] {
            let result = if dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("removing {}: {e}", path.display())),
            }
        }
        Ok(())
    }

    /// `$pod/pid` (contract §3.3): the PID `enter` and `stop` use.
    pub fn pid_file(&self) -> PathBuf {
        self.pod.join("pid")
    }

    /// Writes `$pod/pid`.
    pub fn write_pid(&self, pid: u32) -> Result<(), String> {
        write_atomically(&self.pid_file(), format!("{pid}\n").as_bytes())
    }

    /// Reads `$pod/pid`.
    pub fn read_pid(&self) -> Result<u32, String> {
        let path = self.pid_file();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        text.trim()
            .parse()
            .map_err(|_| format!("{} does not hold a PID", path.display()))
    }

    /// Writes `$s1/rkt/status/<app>` (contract §3.3; through `$s1`, so with overlay it
    /// lands in the upper directory stage0 reads).
    pub fn write_status(&self, app: &str, code: u8) -> Result<(), String> {
        let path = self.stage1_rootfs().join("rkt/status").join(app);
        write_atomically(&path, format!("{code}").as_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so readers never see a partial file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("creating a file in {}: {e}", dir.display()))?;
    tmp.write_all(bytes)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    tmp.persist(path)
        .map(drop)
        .map_err(|e| format!("writing {}: {}", path.display(), e.error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_and_status_files_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("stage1/rootfs/rkt/status")).unwrap();
        let layout = PodLayout::at(dir.path().to_owned());
        layout.write_pid(4242).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pid")).unwrap(),
            "4242\n"
        );
        assert_eq!(layout.read_pid().unwrap(), 4242);
        layout.write_status("hello", 5).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("stage1/rootfs/rkt/status/hello")).unwrap(),
            "5"
        );
        assert!(layout.write_status("nodir/x", 1).is_err());
    }

    #[test]
    fn run_files_are_removed_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PodLayout::at(dir.path().to_owned());
        layout.run_dir().unwrap();
        std::fs::write(layout.vsock_socket(), b"").unwrap();
        layout.remove_run_files().unwrap();
        layout.remove_run_files().unwrap();
        assert!(!dir.path().join(RUN_DIR).exists() && !layout.vsock_socket().exists());
    }

    #[test]
    fn overlong_pod_paths_are_refused() {
        let layout = PodLayout::at(PathBuf::from(format!("/tmp/{}", "x".repeat(120))));
        assert!(layout.run_dir().is_err());
    }
}
