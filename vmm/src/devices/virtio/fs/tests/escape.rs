//! Every way out of a share we know of, tried through the protocol: each must fail with
//! the expected errno, and nothing outside the share may change on the host.
//!
//! The layout (see `Layout`) has symlinks in the share pointing out of it: `abs_link`
//! (absolute, to `<tmp>/outside/secret`), `rel_link` (`../outside/secret`) and `dir_link`
//! (to the `outside` directory). The guest resolves symlinks itself; the host must only
//! ever store and read them.

use fuse_backend_rs::abi::fuse_abi::{EntryOut, SetattrIn, ROOT_ID};

use super::{Layout, HELLO, SECRET};
use crate::devices::virtio::fs::testing::FsDriver;
use crate::devices::virtio::fs::FsConfig;

const FATTR_MODE: u32 = 1 << 0;
const FATTR_SIZE: u32 = 1 << 3;

fn is_symlink(entry: &EntryOut) -> bool {
    entry.attr.mode & libc::S_IFMT == libc::S_IFLNK
}

/// Runs `attack` against a fresh share and checks that the outside did not change.
fn attempt(attack: impl FnOnce(&Layout, &mut FsDriver)) {
    let layout = Layout::new();
    let before = layout.outside_snapshot();
    let mut d = layout.driver();
    attack(&layout, &mut d);
    drop(d);
    assert_eq!(
        layout.outside_snapshot(),
        before,
        "the host outside the share changed"
    );
    assert_eq!(
        std::fs::read(layout.path("outside/secret")).unwrap(),
        SECRET
    );
}

#[test]
fn dot_dot_and_dot_are_not_names() {
    attempt(|_, d| {
        let dir = d.lookup(ROOT_ID, "dir").unwrap().nodeid;
        assert_eq!(d.lookup(ROOT_ID, "..").unwrap_err(), libc::EINVAL);
        assert_eq!(d.lookup(ROOT_ID, ".").unwrap_err(), libc::EINVAL);
        assert_eq!(d.lookup(dir, "..").unwrap_err(), libc::EINVAL);
        assert_eq!(d.lookup(ROOT_ID, "../outside").unwrap_err(), libc::EINVAL);
        assert_eq!(
            d.lookup(ROOT_ID, "dir/nested.txt").unwrap_err(),
            libc::EINVAL
        );
        assert_eq!(
            d.lookup(dir, "../../outside/secret").unwrap_err(),
            libc::EINVAL
        );
        assert_eq!(d.mkdir(ROOT_ID, "..", 0o755).unwrap_err(), libc::EINVAL);
        assert_eq!(
            d.create(ROOT_ID, "../outside/new", libc::O_WRONLY, 0o644)
                .unwrap_err(),
            libc::EINVAL
        );
        assert_eq!(
            d.symlink(ROOT_ID, "../outside/link", "x").unwrap_err(),
            libc::EINVAL
        );
        assert_eq!(
            d.mknod(ROOT_ID, "../outside/fifo", libc::S_IFIFO | 0o644, 0)
                .unwrap_err(),
            libc::EINVAL
        );
        let hello = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
        assert_eq!(
            d.link(hello, ROOT_ID, "../outside/hard").unwrap_err(),
            libc::EINVAL
        );
        assert_eq!(
            d.rename(ROOT_ID, "hello.txt", ROOT_ID, "../outside/moved")
                .unwrap_err(),
            libc::EINVAL
        );
        assert_eq!(
            d.rename(ROOT_ID, "../outside/secret", ROOT_ID, "stolen")
                .unwrap_err(),
            libc::EINVAL
        );
        assert_eq!(
            d.unlink(ROOT_ID, "../outside/secret").unwrap_err(),
            libc::EINVAL
        );
        assert_eq!(d.rmdir(ROOT_ID, "..").unwrap_err(), libc::EINVAL);
        assert_eq!(d.unlink(dir, "..").unwrap_err(), libc::EINVAL);
    });
}

#[test]
fn symlinks_pointing_outside_are_stored_never_followed() {
    attempt(|layout, d| {
        for name in ["abs_link", "rel_link", "dir_link"] {
            let entry = d.lookup(ROOT_ID, name).unwrap();
            assert!(is_symlink(&entry), "{name} resolved on the host");
            // The passthrough only opens regular files and directories.
            assert_eq!(
                d.open(entry.nodeid, libc::O_RDONLY).unwrap_err(),
                libc::EBADF
            );
            assert_eq!(d.open(entry.nodeid, libc::O_RDWR).unwrap_err(), libc::EBADF);
        }
        let abs = d.lookup(ROOT_ID, "abs_link").unwrap();
        let target = layout.path("outside/secret");
        assert_eq!(
            d.readlink(abs.nodeid).unwrap(),
            target.as_os_str().as_encoded_bytes()
        );
        assert_eq!(abs.attr.size, target.as_os_str().len() as u64);
        let rel = d.lookup(ROOT_ID, "rel_link").unwrap();
        assert_eq!(d.readlink(rel.nodeid).unwrap(), b"../outside/secret");

        // Through a symlink to a directory: it is not a directory here.
        let dir_link = d.lookup(ROOT_ID, "dir_link").unwrap().nodeid;
        assert_eq!(d.lookup(dir_link, "secret").unwrap_err(), libc::ENOTDIR);
        assert_eq!(d.mkdir(dir_link, "x", 0o755).unwrap_err(), libc::ENOTDIR);
        assert_eq!(
            d.create(dir_link, "x", libc::O_WRONLY, 0o644).unwrap_err(),
            libc::ENOTDIR
        );
        assert_eq!(d.symlink(dir_link, "x", "y").unwrap_err(), libc::ENOTDIR);
        assert_eq!(
            d.rename(ROOT_ID, "hello.txt", dir_link, "moved")
                .unwrap_err(),
            libc::ENOTDIR
        );
        assert_eq!(d.unlink(dir_link, "secret").unwrap_err(), libc::ENOTDIR);
        assert_eq!(d.opendir(dir_link).unwrap_err(), libc::EBADF);

        // Operations on the link itself never reach its target.
        assert_eq!(
            d.setattr(
                abs.nodeid,
                SetattrIn {
                    valid: FATTR_SIZE,
                    size: 0,
                    ..SetattrIn::default()
                }
            )
            .unwrap_err(),
            libc::EBADF
        );
        assert_eq!(
            d.setattr(
                abs.nodeid,
                SetattrIn {
                    valid: FATTR_MODE,
                    mode: 0o777,
                    ..SetattrIn::default()
                }
            )
            .unwrap_err(),
            libc::EOPNOTSUPP
        );
        assert_eq!(
            d.setxattr(abs.nodeid, "user.x", b"1").unwrap_err(),
            libc::EPERM
        );
        assert_eq!(
            d.getxattr(abs.nodeid, "user.x", 64).unwrap_err(),
            libc::ENODATA
        );
        // Creating over the link's name: O_EXCL semantics never follow it, and without
        // O_EXCL the existing link is not a file the server opens.
        assert_eq!(
            d.create(ROOT_ID, "abs_link", libc::O_WRONLY | libc::O_EXCL, 0o644)
                .unwrap_err(),
            libc::EEXIST
        );
        assert_eq!(
            d.create(ROOT_ID, "abs_link", libc::O_WRONLY | libc::O_TRUNC, 0o644)
                .unwrap_err(),
            libc::EBADF
        );
        // A hard link to the link is a second name for the link, not for its target.
        let hard = d.link(abs.nodeid, ROOT_ID, "hard_to_link").unwrap();
        assert!(is_symlink(&hard));
        assert!(layout.path("share/hard_to_link").is_symlink());
        // Renaming the link moves the link.
        d.rename(ROOT_ID, "abs_link", ROOT_ID, "moved_link")
            .unwrap();
        assert!(layout.path("share/moved_link").is_symlink());
        // Removing it removes the link.
        d.unlink(ROOT_ID, "moved_link").unwrap();
    });
}

#[test]
fn symlinks_the_guest_makes_are_not_followed_either() {
    attempt(|layout, d| {
        let secret = layout.path("outside/secret");
        for (name, target) in [
            ("evil_abs", secret.to_str().unwrap()),
            ("evil_rel", "../outside/secret"),
            ("evil_root", "/"),
            ("evil_proc", "/proc/self/fd/0"),
        ] {
            let link = d.symlink(ROOT_ID, name, target).unwrap();
            assert!(is_symlink(&link));
            assert_eq!(d.readlink(link.nodeid).unwrap(), target.as_bytes());
            assert_eq!(d.open(link.nodeid, libc::O_RDWR).unwrap_err(), libc::EBADF);
            assert_eq!(d.lookup(link.nodeid, "etc").unwrap_err(), libc::ENOTDIR);
            assert_eq!(
                d.create(ROOT_ID, name, libc::O_WRONLY | libc::O_TRUNC, 0o644)
                    .unwrap_err(),
                libc::EBADF
            );
            assert_eq!(
                d.setattr(
                    link.nodeid,
                    SetattrIn {
                        valid: FATTR_SIZE,
                        ..SetattrIn::default()
                    }
                )
                .unwrap_err(),
                libc::EBADF
            );
        }
    });
}

#[test]
fn ids_of_one_share_mean_nothing_on_another() {
    let layout = Layout::new();
    let before = std::fs::read_dir(layout.path("other")).unwrap().count();
    let mut a = layout.driver();
    let mut b = FsDriver::mounted(FsConfig::new("other", layout.path("other"))).unwrap();
    let hello = a.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
    let dir = a.lookup(ROOT_ID, "dir").unwrap().nodeid;
    let fh = a.open(hello, libc::O_RDONLY).unwrap();
    let other = b.lookup(ROOT_ID, "other.txt").unwrap().nodeid;
    let other_fh = b.open(other, libc::O_RDONLY).unwrap();
    // Inode 2 exists in both passthroughs; the salts keep the node ids apart.
    assert_ne!(hello, other);

    assert_eq!(b.getattr(hello).unwrap_err(), libc::EBADF);
    assert_eq!(b.lookup(dir, "nested.txt").unwrap_err(), libc::EBADF);
    assert_eq!(b.open(hello, libc::O_RDONLY).unwrap_err(), libc::EBADF);
    assert_eq!(b.read(hello, fh, 0, 100).unwrap_err(), libc::EBADF);
    // B's own inode with A's handle.
    assert_eq!(b.read(other, fh, 0, 100).unwrap_err(), libc::EBADF);
    assert_eq!(a.read(hello, other_fh, 0, 100).unwrap_err(), libc::EBADF);
    // A hard link in B to A's file, a rename from B into A's directory.
    assert_eq!(b.link(hello, ROOT_ID, "stolen").unwrap_err(), libc::EBADF);
    assert_eq!(
        b.rename(ROOT_ID, "other.txt", dir, "moved").unwrap_err(),
        libc::EBADF
    );
    assert_eq!(b.mkdir(dir, "x", 0o755).unwrap_err(), libc::EBADF);
    // Raw passthrough numbers (unsalted) are refused too.
    assert_eq!(a.getattr(2).unwrap_err(), libc::EBADF);
    assert_eq!(a.read(hello, 1, 0, 10).unwrap_err(), libc::EBADF);

    assert_eq!(a.read(hello, fh, 0, 100).unwrap(), HELLO);
    assert_eq!(b.read(other, other_fh, 0, 100).unwrap(), b"other share\n");
    assert_eq!(
        std::fs::read_dir(layout.path("other")).unwrap().count(),
        before
    );
    assert!(!layout.path("share/dir/moved").exists());
}

#[test]
fn no_device_nodes_unless_the_share_allows_them() {
    attempt(|layout, d| {
        let null = libc::makedev(1, 3);
        let rdev = u32::try_from(null).unwrap();
        assert_eq!(
            d.mknod(ROOT_ID, "null", libc::S_IFCHR | 0o666, rdev)
                .unwrap_err(),
            libc::EPERM
        );
        assert_eq!(
            d.mknod(ROOT_ID, "disk", libc::S_IFBLK | 0o666, rdev)
                .unwrap_err(),
            libc::EPERM
        );
        assert_eq!(
            d.mknod(ROOT_ID, "dir", libc::S_IFDIR | 0o755, 0)
                .unwrap_err(),
            libc::EINVAL
        );
        assert!(!layout.path("share/null").exists());
        assert!(!layout.path("share/disk").exists());
        // A whiteout is a (0, 0) character device.
        assert_eq!(
            d.rename2(ROOT_ID, "hello.txt", ROOT_ID, "gone", libc::RENAME_WHITEOUT)
                .unwrap_err(),
            libc::EPERM
        );
        assert_eq!(
            d.rename2(ROOT_ID, "hello.txt", ROOT_ID, "gone", 1 << 7)
                .unwrap_err(),
            libc::EINVAL
        );
        // FIFOs, sockets and plain files are fine.
        let fifo = d.mknod(ROOT_ID, "fifo", libc::S_IFIFO | 0o644, 0).unwrap();
        assert_eq!(fifo.attr.mode & libc::S_IFMT, libc::S_IFIFO);
        let sock = d.mknod(ROOT_ID, "sock", libc::S_IFSOCK | 0o644, 0).unwrap();
        assert_eq!(sock.attr.mode & libc::S_IFMT, libc::S_IFSOCK);
        // Opening a FIFO is refused by the passthrough (it would block the worker).
        assert_eq!(
            d.open(fifo.nodeid, libc::O_RDONLY).unwrap_err(),
            libc::EBADF
        );
    });

    let layout = Layout::new();
    let mut d = FsDriver::mounted(FsConfig {
        allow_devices: true,
        ..layout.config()
    })
    .unwrap();
    let null = u32::try_from(libc::makedev(1, 3)).unwrap();
    let node = d
        .mknod(ROOT_ID, "null", libc::S_IFCHR | 0o666, null)
        .unwrap();
    assert_eq!(node.attr.mode & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(node.attr.rdev, null);
    // The host never opens device nodes of a share.
    assert_eq!(d.open(node.nodeid, libc::O_RDWR).unwrap_err(), libc::EBADF);
}

fn host_mode(layout: &Layout, rel: &str) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(layout.path(rel)).unwrap().mode() & 0o7777
}

#[test]
fn setuid_and_setgid_bits_are_stripped() {
    attempt(|layout, d| {
        let (file, fh) = d.create(ROOT_ID, "suid", libc::O_WRONLY, 0o6755).unwrap();
        d.release(file.nodeid, fh).unwrap();
        assert_eq!(host_mode(layout, "share/suid"), 0o755);
        assert_eq!(file.attr.mode, libc::S_IFREG | 0o755);

        let node = d
            .mknod(ROOT_ID, "suid_node", libc::S_IFREG | 0o4755, 0)
            .unwrap();
        assert_eq!(node.attr.mode, libc::S_IFREG | 0o755);
        assert_eq!(host_mode(layout, "share/suid_node"), 0o755);

        // mkdir ignores both bits (setgid on a directory comes from its parent).
        d.mkdir(ROOT_ID, "sgid_dir", 0o6775).unwrap();
        assert_eq!(host_mode(layout, "share/sgid_dir"), 0o775);

        // chmod: the bits are stripped whatever type the guest claims.
        let hello = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
        let attr = d
            .setattr(
                hello,
                SetattrIn {
                    valid: FATTR_MODE,
                    mode: libc::S_IFDIR | 0o6755,
                    ..SetattrIn::default()
                },
            )
            .unwrap();
        assert_eq!(attr.attr.mode, libc::S_IFREG | 0o755);
        assert_eq!(host_mode(layout, "share/hello.txt"), 0o755);
        // Directories keep setgid (group inheritance, no privilege) and lose setuid.
        let dir = d.lookup(ROOT_ID, "dir").unwrap().nodeid;
        d.setattr(
            dir,
            SetattrIn {
                valid: FATTR_MODE,
                mode: 0o7777,
                ..SetattrIn::default()
            },
        )
        .unwrap();
        assert_eq!(host_mode(layout, "share/dir"), 0o3777);
        // Also when the directory's group is not the guest's (as /var/mail, root:mail
        // 2775): without CAP_FSETID the host's kernel would drop setgid.
        std::fs::create_dir(layout.path("share/mail")).unwrap();
        std::os::unix::fs::chown(layout.path("share/mail"), Some(0), Some(4242)).unwrap();
        let mail = d.lookup(ROOT_ID, "mail").unwrap().nodeid;
        let attr = d
            .setattr(
                mail,
                SetattrIn {
                    valid: FATTR_MODE,
                    mode: 0o2775,
                    ..SetattrIn::default()
                },
            )
            .unwrap();
        assert_eq!(attr.attr.mode, libc::S_IFDIR | 0o2775);
        assert_eq!(host_mode(layout, "share/mail"), 0o2775);
        // ... and the worker's own group is back: a file it creates is root's.
        let (file, fh) = d.create(ROOT_ID, "after", libc::O_WRONLY, 0o644).unwrap();
        d.release(file.nodeid, fh).unwrap();
        assert_eq!(file.attr.gid, 0);

        // A setuid program the host put in the share loses the bit when the guest writes
        // to it (the worker has no CAP_FSETID).
        let host_suid = layout.path("share/host_suid");
        std::fs::write(&host_suid, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            &host_suid,
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        let node = d.lookup(ROOT_ID, "host_suid").unwrap().nodeid;
        let fh = d.open(node, libc::O_WRONLY).unwrap();
        d.write(node, fh, 0, b"#!/bin/false\n").unwrap();
        d.release(node, fh).unwrap();
        assert_eq!(host_mode(layout, "share/host_suid"), 0o755);

        // File capabilities are privileges too.
        assert_eq!(
            d.setxattr(hello, "security.capability", &[1, 0, 0, 2])
                .unwrap_err(),
            libc::EPERM
        );
    });
}

#[test]
fn inodes_and_handles_that_were_never_handed_out() {
    attempt(|_, d| {
        let hello = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
        for bogus in [0, 2, 3, 0xdead_beef, hello + 1000, u64::MAX] {
            assert_eq!(d.getattr(bogus).unwrap_err(), libc::EBADF, "{bogus:#x}");
            assert_eq!(d.lookup(bogus, "x").unwrap_err(), libc::EBADF, "{bogus:#x}");
            assert_eq!(
                d.link(bogus, ROOT_ID, "hard").unwrap_err(),
                libc::EBADF,
                "{bogus:#x}"
            );
        }
        for bogus_fh in [0, 1, 2, 0x7777, u64::MAX] {
            assert_eq!(d.read(hello, bogus_fh, 0, 10).unwrap_err(), libc::EBADF);
            assert_eq!(d.release(hello, bogus_fh).unwrap_err(), libc::EBADF);
        }
    });
}
