//! An app's root before its first process starts: what rkt's `prepare-app` gives every app
//! inside the directory it is chrooted into (contract §5.5).
//!
//! The root (`/opt/stage2/<app>/rootfs`, on the apps' virtio-fs share) is bind-mounted onto
//! itself so it is a mount point; the directories apps expect are created (`dev`,
//! `dev/net`, `dev/shm`, `dev/pts`, `etc`, `proc`, `sys`, `run`, and `tmp` with mode
//! 01777 — a plain directory, as rkt's, no tmpfs); the guest's device nodes are
//! bind-mounted one by one (`null`, `zero`, `full`, `random`, `urandom`, `tty`,
//! `net/tun`, `console`, those that exist); `/proc` and `/sys` are bind-mounted
//! recursively (the guest has the unified cgroup hierarchy), `/dev/shm` and `/dev/pts`
//! plainly; `/etc/hostname` is the kernel's hostname file; `/dev/ptmx` links to
//! `/dev/pts/ptmx`. As rkt does, `dev/shm` and `dev/ptmx` are first removed when the
//! image has them as links or files.
//!
//! Not done here (yet): the systemd journal paths (`run/systemd/journal`, `/dev/log`, the
//! notify socket: there is no systemd in the guest), `/etc/resolv.conf` and `/etc/hosts`
//! (they come with networking), `/dev/.rkt` volume links and the check for a volume on
//! `/sys` (they come with volumes).
//!
//! The directories and files created land in the app's tree on the host (its overlay
//! upper directory, or its copy), exactly where rkt's `prepare-app` creates them; the
//! mounts exist only in the guest. A path of the image that is a symbolic link where a
//! mount or a directory goes is refused rather than followed out of the app's root.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};

/// Directories created in the root, with their modes (`prepare-app.c`'s `dirs`).
const DIRS: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("dev/net", 0o755),
    ("dev/shm", 0o755),
    ("etc", 0o755),
    ("proc", 0o755),
    ("sys", 0o755),
    ("tmp", 0o1777),
    ("dev/pts", 0o755),
    ("run", 0o755),
];

/// Device nodes of the guest bind-mounted into the root, when the guest has them.
const DEVICES: &[&str] = &[
    "dev/null",
    "dev/zero",
    "dev/full",
    "dev/random",
    "dev/urandom",
    "dev/tty",
    "dev/net/tun",
    "dev/console",
];

/// Directories bind-mounted from the guest: (path, recursive).
const DIR_MOUNTS: &[(&str, bool)] = &[
    ("proc", true),
    ("dev/shm", false),
    ("dev/pts", false),
    // Recursive: the guest mounts cgroup2 under it (prepare-app's unified-hierarchy case).
    ("sys", true),
];

/// Files bind-mounted from the guest: (source, target in the root).
const FILE_MOUNTS: &[(&str, &str)] = &[("/proc/sys/kernel/hostname", "etc/hostname")];

/// Roots already prepared (an app started again gets the same root, prepared once).
#[derive(Debug, Default)]
pub struct Prepared(BTreeSet<PathBuf>);

impl Prepared {
    /// Prepares `root` unless that was done already.
    pub fn ensure(&mut self, root: &Path) -> Result<(), String> {
        if self.0.contains(root) {
            return Ok(());
        }
        prepare(root, Path::new("/"))
            .map_err(|e| format!("cannot prepare the app's root {}: {e}", root.display()))?;
        self.0.insert(root.to_owned());
        Ok(())
    }
}

/// Prepares `root` with the device nodes, `/proc`, `/sys`… of the system rooted at
/// `system` (`/` in the guest; tests use a directory of their own).
fn prepare(root: &Path, system: &Path) -> io::Result<()> {
    bind(root, root, true)?;
    for name in ["dev/shm", "dev/ptmx"] {
        refuse_links_above(root, name)?;
        let path = root.join(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if !meta.is_dir() => {
                fs::remove_file(&path).map_err(|e| annotate(e, &format!("removing {name}")))?
            }
            _ => {}
        }
    }
    for (name, mode) in DIRS {
        refuse_links(root, name)?;
        let path = root.join(name);
        match fs::DirBuilder::new().mode(*mode).create(&path) {
            // The umask applies to mkdir; the mode is set whole, as prepare-app's umask(0).
            Ok(()) => fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
                .map_err(|e| annotate(e, &format!("chmod {name}")))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(annotate(e, &format!("creating {name}"))),
        }
    }
    for name in DEVICES {
        let source = system.join(name);
        if fs::symlink_metadata(&source).is_err() {
            continue;
        }
        bind_file(root, &source, name)?;
    }
    for (name, recursive) in DIR_MOUNTS {
        refuse_links(root, name)?;
        bind(&system.join(name), &root.join(name), *recursive)?;
    }
    for (source, name) in FILE_MOUNTS {
        let source = system.join(source.trim_start_matches('/'));
        if source.exists() {
            bind_file(root, &source, name)?;
        }
    }
    refuse_links_above(root, "dev/ptmx")?;
    match symlink("/dev/pts/ptmx", root.join("dev/ptmx")) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(annotate(e, "linking dev/ptmx")),
        _ => Ok(()),
    }
}

/// Bind-mounts the file `source` on `name` in `root`, creating an empty file to mount on.
fn bind_file(root: &Path, source: &Path, name: &str) -> io::Result<()> {
    refuse_links(root, name)?;
    let target = root.join(name);
    if fs::symlink_metadata(&target).is_err() {
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&target)
            .map_err(|e| annotate(e, &format!("creating {name}")))?;
    }
    bind(source, &target, false)
}

fn bind(source: &Path, target: &Path, recursive: bool) -> io::Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(source), target, None::<&str>, flags, None::<&str>).map_err(|errno| {
        annotate(
            errno.into(),
            &format!("mounting {} on {}", source.display(), target.display()),
        )
    })
}

/// Fails if `name` or a directory above it inside `root` is a symbolic link.
fn refuse_links(root: &Path, name: &str) -> io::Result<()> {
    check_links(root, name, true)
}

/// Fails if a directory above `name` inside `root` is a symbolic link.
fn refuse_links_above(root: &Path, name: &str) -> io::Result<()> {
    check_links(root, name, false)
}

fn check_links(root: &Path, name: &str, last_too: bool) -> io::Result<()> {
    let components: Vec<Component<'_>> = Path::new(name).components().collect();
    let mut path = root.to_owned();
    for (i, component) in components.iter().enumerate() {
        path.push(component);
        if i + 1 == components.len() && !last_too {
            break;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(io::Error::other(format!(
                    "{} is a symbolic link in the image",
                    Path::new(name)
                        .iter()
                        .take(i + 1)
                        .collect::<PathBuf>()
                        .display()
                )))
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_the_image_are_refused_not_followed() {
        let dir = tempfile_dir();
        let root = dir.join("root");
        fs::create_dir_all(root.join("dev")).unwrap();
        symlink("/", root.join("proc")).unwrap();
        symlink("/etc", root.join("dev/net")).unwrap();
        assert!(refuse_links(&root, "dev").is_ok());
        assert!(refuse_links(&root, "tmp").is_ok(), "missing is fine");
        let err = refuse_links(&root, "proc").unwrap_err().to_string();
        assert!(err.contains("proc is a symbolic link"), "{err}");
        let err = refuse_links(&root, "dev/net/tun").unwrap_err().to_string();
        assert!(err.contains("dev/net is a symbolic link"), "{err}");
        assert!(refuse_links_above(&root, "dev/net").is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "agent-app-root-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
