//! Tests of the device over mock queues: real FUSE requests in real guest memory, served
//! by the worker in its sandbox, checked against the host directory.

mod escape;
mod malformed;
mod protocol;
mod read_only;
mod rss;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::testing::FsDriver;
use super::FsConfig;

/// A host layout for a test:
///
/// ```text
/// <tmp>/share/            the share
///          hello.txt      "hello, world\n"
///          dir/nested.txt "nested\n"
///          abs_link    -> <tmp>/outside/secret   (absolute, pointing outside)
///          rel_link    -> ../outside/secret      (relative, pointing outside)
///          dir_link    -> <tmp>/outside          (a directory outside)
/// <tmp>/outside/secret    "top secret\n"
/// <tmp>/other/            a second share
///          other.txt      "other share\n"
/// ```
pub(super) struct Layout {
    pub tmp: tempfile::TempDir,
}

pub(super) const HELLO: &[u8] = b"hello, world\n";
pub(super) const SECRET: &[u8] = b"top secret\n";

impl Layout {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        for dir in ["share/dir", "outside", "other"] {
            std::fs::create_dir_all(root.join(dir)).expect("mkdir");
        }
        std::fs::write(root.join("share/hello.txt"), HELLO).expect("write");
        std::fs::write(root.join("share/dir/nested.txt"), b"nested\n").expect("write");
        std::fs::write(root.join("outside/secret"), SECRET).expect("write");
        std::fs::write(root.join("other/other.txt"), b"other share\n").expect("write");
        let secret = root.join("outside/secret");
        std::os::unix::fs::symlink(&secret, root.join("share/abs_link")).expect("symlink");
        std::os::unix::fs::symlink("../outside/secret", root.join("share/rel_link"))
            .expect("symlink");
        std::os::unix::fs::symlink(root.join("outside"), root.join("share/dir_link"))
            .expect("symlink");
        Self { tmp }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn share(&self) -> PathBuf {
        self.path("share")
    }

    pub fn config(&self) -> FsConfig {
        FsConfig::new("test", self.share())
    }

    /// A mounted driver on the share.
    pub fn driver(&self) -> FsDriver {
        FsDriver::mounted(self.config()).expect("device")
    }

    /// A mounted driver on the share, read-only.
    pub fn ro_driver(&self) -> FsDriver {
        FsDriver::mounted(FsConfig {
            read_only: true,
            ..self.config()
        })
        .expect("device")
    }

    /// Everything outside the share, as (relative path, kind, content or target), to
    /// compare before and after an attack.
    pub fn outside_snapshot(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        snapshot(self.tmp.path(), self.tmp.path(), &self.share(), &mut out);
        out.sort();
        out
    }
}

fn snapshot(base: &Path, dir: &Path, skip: &Path, out: &mut Vec<(PathBuf, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path == skip {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).expect("lstat");
        let rel = path.strip_prefix(base).expect("under base").to_owned();
        let mode = meta.permissions().mode();
        let desc = if meta.file_type().is_symlink() {
            format!("link {:?}", std::fs::read_link(&path).expect("readlink"))
        } else if meta.is_dir() {
            snapshot(base, &path, skip, out);
            format!("dir {mode:o}")
        } else {
            let content = std::fs::read(&path).expect("read");
            format!("file {mode:o} {content:?}")
        };
        out.push((rel, desc));
    }
}
