//! The device as a guest uses it: identity, FUSE_INIT, reading host files, writing them,
//! metadata, directories, links, xattrs, the high-priority queue, back-pressure and reset.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use fuse_backend_rs::abi::fuse_abi::{FsOptions, Opcode, SetattrIn, ROOT_ID};

use super::{Layout, HELLO};
use crate::devices::virtio::backend::{VirtioBackend, VIRTIO_F_VERSION_1};
use crate::devices::virtio::fs::device::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use crate::devices::virtio::fs::testing::{FsDriver, REQUEST_QUEUE};
use crate::devices::virtio::fs::worker::MAX_IN_FLIGHT;
use crate::devices::virtio::fs::{Fs, FsConfig, FsError, NUM_QUEUES, QUEUE_SIZE, TYPE_FS};

const FATTR_MODE: u32 = 1 << 0;
const FATTR_SIZE: u32 = 1 << 3;
const FATTR_MTIME: u32 = 1 << 5;

#[test]
fn device_identity_and_config_space() {
    let layout = Layout::new();
    let dev = Fs::new(FsConfig::new("apps-tree", layout.share())).unwrap();
    assert_eq!(dev.device_type(), TYPE_FS);
    assert_eq!(dev.num_queues(), NUM_QUEUES);
    assert_eq!(NUM_QUEUES, 2);
    assert_eq!(dev.max_queue_size(), QUEUE_SIZE);
    assert_eq!(
        dev.features(),
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_RING_F_EVENT_IDX
    );
    assert!(dev.backend_fd().is_some());
    let config = dev.config();
    assert_eq!(config.len(), 40);
    assert_eq!(&config[..9], b"apps-tree");
    assert!(config[9..36].iter().all(|&b| b == 0));
    assert_eq!(config[36..], 1u32.to_le_bytes());
    assert_eq!(dev.tag(), "apps-tree");
}

#[test]
fn bad_share_directories_are_clear_errors() {
    let layout = Layout::new();
    let missing = layout.path("missing");
    let e = Fs::new(FsConfig::new("t", &missing)).unwrap_err();
    assert!(
        matches!(&e, FsError::Root { source, .. } if source.raw_os_error() == Some(libc::ENOENT))
    );
    let message = e.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("No such file"), "{message}");

    let file = layout.path("share/hello.txt");
    let e = Fs::new(FsConfig::new("t", &file)).unwrap_err();
    assert!(matches!(e, FsError::RootNotDirectory { .. }), "{e}");
    assert!(e.to_string().contains("hello.txt: not a directory"), "{e}");

    let e = Fs::new(FsConfig::new("", layout.share())).unwrap_err();
    assert!(matches!(e, FsError::InvalidTag { .. }), "{e}");
}

#[test]
fn init_negotiates() {
    let layout = Layout::new();
    let mut d = FsDriver::new(layout.config()).unwrap();
    let init = d.init().unwrap();
    assert_eq!(init.major, 7);
    assert!(init.minor >= 31, "minor {}", init.minor);
    let enabled = u64::from(init.flags) | (u64::from(init.flags2) << 32);
    let has = |o: FsOptions| enabled & o.bits() == o.bits();
    // 1 MiB requests.
    assert!(has(FsOptions::MAX_PAGES) && has(FsOptions::BIG_WRITES));
    assert_eq!(init.max_write, 1 << 20);
    assert_eq!(init.max_pages, 256);
    assert!(has(FsOptions::DO_READDIRPLUS) && has(FsOptions::AUTO_INVAL_DATA));
    // Never: `..` lookups (export support), server-side locks, writeback caching, DAX.
    for never in [
        FsOptions::EXPORT_SUPPORT,
        FsOptions::POSIX_LOCKS,
        FsOptions::FLOCK_LOCKS,
        FsOptions::WRITEBACK_CACHE,
        FsOptions::PERFILE_DAX,
    ] {
        assert!(!has(never), "{never:?} enabled");
    }
    assert!(
        d.queues.signals(REQUEST_QUEUE) >= 1,
        "the driver was not signalled"
    );
}

#[test]
fn reads_host_files() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let entry = d.lookup(ROOT_ID, "hello.txt").unwrap();
    let host = std::fs::metadata(layout.path("share/hello.txt")).unwrap();
    assert_eq!(entry.attr.ino, host.ino());
    assert_eq!(entry.attr.size, host.len());
    assert_eq!(entry.attr.mode & libc::S_IFMT, libc::S_IFREG);
    let attr = d.getattr(entry.nodeid).unwrap();
    assert_eq!(attr.attr.ino, host.ino());

    let fh = d.open(entry.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(d.read(entry.nodeid, fh, 0, 4096).unwrap(), HELLO);
    assert_eq!(d.read(entry.nodeid, fh, 7, 5).unwrap(), b"world");
    assert_eq!(d.read(entry.nodeid, fh, 1000, 10).unwrap(), b"");
    d.release(entry.nodeid, fh).unwrap();
    assert_eq!(d.read_file("dir/nested.txt").unwrap(), b"nested\n");
    assert_eq!(d.lookup(ROOT_ID, "missing").unwrap_err(), libc::ENOENT);
}

#[test]
fn large_reads_and_writes_match_the_host() {
    let layout = Layout::new();
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i * 7 + i / 4096).to_le_bytes()[0])
        .collect();
    std::fs::write(layout.path("share/big"), &data).unwrap();
    let mut d = layout.driver();
    assert_eq!(d.read_file("big").unwrap(), data);

    let (entry, fh) = d.create(ROOT_ID, "copy", libc::O_WRONLY, 0o644).unwrap();
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        let offset = (i as u64) << 20;
        assert_eq!(d.write(entry.nodeid, fh, offset, chunk).unwrap(), 1 << 20);
    }
    d.release(entry.nodeid, fh).unwrap();
    assert_eq!(std::fs::read(layout.path("share/copy")).unwrap(), data);
}

#[test]
fn writes_land_on_the_host() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let (entry, fh) = d.create(ROOT_ID, "new.txt", libc::O_RDWR, 0o640).unwrap();
    assert_eq!(entry.attr.mode, libc::S_IFREG | 0o640);
    assert_eq!(d.write(entry.nodeid, fh, 0, b"first ").unwrap(), 6);
    assert_eq!(d.write(entry.nodeid, fh, 6, b"second").unwrap(), 6);
    assert_eq!(d.read(entry.nodeid, fh, 0, 100).unwrap(), b"first second");
    d.release(entry.nodeid, fh).unwrap();
    let host = layout.path("share/new.txt");
    assert_eq!(std::fs::read(&host).unwrap(), b"first second");
    assert_eq!(
        std::fs::metadata(&host).unwrap().permissions().mode() & 0o7777,
        0o640
    );

    // Overwrite in place and append to an existing host file.
    let node = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
    let fh = d.open(node, libc::O_WRONLY | libc::O_APPEND).unwrap();
    d.write(node, fh, 0, b"more\n").unwrap();
    d.release(node, fh).unwrap();
    assert_eq!(
        std::fs::read(layout.path("share/hello.txt")).unwrap(),
        b"hello, world\nmore\n"
    );

    // Host changes are visible to the guest.
    std::fs::write(layout.path("share/dir/nested.txt"), b"changed on the host").unwrap();
    assert_eq!(
        d.read_file("dir/nested.txt").unwrap(),
        b"changed on the host"
    );
}

#[test]
fn metadata_changes() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let node = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
    let host = layout.path("share/hello.txt");

    let attr = d
        .setattr(
            node,
            SetattrIn {
                valid: FATTR_MODE,
                mode: libc::S_IFREG | 0o600,
                ..SetattrIn::default()
            },
        )
        .unwrap();
    assert_eq!(attr.attr.mode, libc::S_IFREG | 0o600);
    assert_eq!(std::fs::metadata(&host).unwrap().mode() & 0o7777, 0o600);

    let attr = d
        .setattr(
            node,
            SetattrIn {
                valid: FATTR_SIZE | FATTR_MTIME,
                size: 5,
                mtime: 1_000_000_000,
                ..SetattrIn::default()
            },
        )
        .unwrap();
    assert_eq!(attr.attr.size, 5);
    assert_eq!(attr.attr.mtime, 1_000_000_000);
    assert_eq!(std::fs::read(&host).unwrap(), b"hello");
    assert_eq!(std::fs::metadata(&host).unwrap().mtime(), 1_000_000_000);

    let statfs = d.statfs(ROOT_ID).unwrap();
    assert_eq!(statfs.namelen, 255);
    d.access(node, libc::R_OK | libc::W_OK).unwrap();
}

#[test]
fn directories() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let sub = d.mkdir(ROOT_ID, "sub", 0o750).unwrap();
    assert_eq!(sub.attr.mode, libc::S_IFDIR | 0o750);
    assert!(layout.path("share/sub").is_dir());
    let (file, fh) = d.create(sub.nodeid, "f", libc::O_WRONLY, 0o644).unwrap();
    d.release(file.nodeid, fh).unwrap();
    assert!(layout.path("share/sub/f").is_file());
    assert_eq!(d.rmdir(ROOT_ID, "sub").unwrap_err(), libc::ENOTEMPTY);
    d.unlink(sub.nodeid, "f").unwrap();
    d.rmdir(ROOT_ID, "sub").unwrap();
    assert!(!layout.path("share/sub").exists());

    let fh = d.opendir(ROOT_ID).unwrap();
    let mut names: Vec<String> = d
        .readdir(ROOT_ID, fh, 0)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["abs_link", "dir", "dir_link", "hello.txt", "rel_link"]
    );
}

#[test]
fn links_and_renames_inside_the_share() {
    let layout = Layout::new();
    let mut d = layout.driver();

    let link = d.symlink(ROOT_ID, "to_hello", "hello.txt").unwrap();
    assert_eq!(link.attr.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(d.readlink(link.nodeid).unwrap(), b"hello.txt");
    assert_eq!(
        std::fs::read_link(layout.path("share/to_hello")).unwrap(),
        std::path::Path::new("hello.txt")
    );

    let hello = d.lookup(ROOT_ID, "hello.txt").unwrap();
    let dir = d.lookup(ROOT_ID, "dir").unwrap();
    let hard = d.link(hello.nodeid, dir.nodeid, "hard").unwrap();
    assert_eq!(hard.attr.ino, hello.attr.ino);
    assert_eq!(hard.attr.nlink, 2);
    assert_eq!(
        std::fs::metadata(layout.path("share/dir/hard"))
            .unwrap()
            .ino(),
        std::fs::metadata(layout.path("share/hello.txt"))
            .unwrap()
            .ino()
    );

    d.rename(ROOT_ID, "hello.txt", dir.nodeid, "renamed.txt")
        .unwrap();
    assert!(!layout.path("share/hello.txt").exists());
    assert_eq!(
        std::fs::read(layout.path("share/dir/renamed.txt")).unwrap(),
        HELLO
    );
    assert_eq!(
        d.rename2(
            dir.nodeid,
            "renamed.txt",
            dir.nodeid,
            "hard",
            libc::RENAME_NOREPLACE
        )
        .unwrap_err(),
        libc::EEXIST
    );
    d.rename2(
        dir.nodeid,
        "renamed.txt",
        ROOT_ID,
        "to_hello",
        libc::RENAME_EXCHANGE,
    )
    .unwrap();
    assert!(layout.path("share/dir/renamed.txt").is_symlink());
    d.unlink(dir.nodeid, "hard").unwrap();
    assert!(!layout.path("share/dir/hard").exists());
}

#[test]
fn extended_attributes() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let node = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
    d.setxattr(node, "user.colour", b"blue").unwrap();
    assert_eq!(d.getxattr(node, "user.colour", 64).unwrap(), b"blue");
    assert_eq!(
        d.getxattr(node, "user.colour", 0).unwrap(),
        4u32.to_le_bytes()
    );
    assert_eq!(
        d.getxattr(node, "user.none", 64).unwrap_err(),
        libc::ENODATA
    );
    d.removexattr(node, "user.colour").unwrap();
    assert_eq!(
        d.getxattr(node, "user.colour", 64).unwrap_err(),
        libc::ENODATA
    );
}

#[test]
fn forget_on_the_high_priority_queue_gets_no_reply() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let node = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
    d.forget(node, 1);
    // The inode is gone from the server's table: its node id is now unknown.
    assert_eq!(d.getattr(node).unwrap_err(), libc::EBADF);
    // A fresh lookup works again.
    d.lookup(ROOT_ID, "hello.txt").unwrap();
}

#[test]
fn more_requests_than_the_worker_takes_at_once() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let count = MAX_IN_FLIGHT + 72;
    let heads: Vec<(u16, u64)> = (0..count)
        .map(|_| {
            d.post_request(
                REQUEST_QUEUE,
                Opcode::Getattr as u32,
                ROOT_ID,
                &[&[0; 16]],
                4096,
            )
        })
        .collect();
    d.kick(REQUEST_QUEUE);
    assert!(d.dev.in_flight() <= MAX_IN_FLIGHT);
    let mut done = Vec::new();
    while done.len() < count {
        assert!(d.wait_event(crate::devices::virtio::fs::testing::TIMEOUT));
        done.extend(d.queues.take_used(REQUEST_QUEUE));
    }
    assert_eq!(d.dev.in_flight(), 0);
    for (head, unique) in heads {
        let (_, len, descs) = done.iter().find(|(h, _, _)| *h == head).unwrap();
        let reply = d.decode(*len, descs, unique);
        assert_eq!(reply.errno, 0);
    }
}

#[test]
fn reset_starts_a_new_session() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let node = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
    d.dev.reset();
    d.queues = crate::devices::virtio::fs::testing::TestQueues::new(
        NUM_QUEUES,
        crate::devices::virtio::fs::testing::DRIVER_QUEUE_SIZE,
    );
    d.dev.activate(d.queues.shared_memory()).unwrap();
    d.init().unwrap();
    // Node ids of the old session mean nothing in the new one.
    assert_eq!(d.getattr(node).unwrap_err(), libc::EBADF);
    assert_eq!(d.read_file("hello.txt").unwrap(), HELLO);
}

#[test]
fn several_shares_at_once() {
    let layout = Layout::new();
    let mut a = layout.driver();
    let mut b = FsDriver::mounted(FsConfig::new("other", layout.path("other"))).unwrap();
    assert_eq!(a.read_file("hello.txt").unwrap(), HELLO);
    assert_eq!(b.read_file("other.txt").unwrap(), b"other share\n");
    assert_eq!(b.lookup(ROOT_ID, "hello.txt").unwrap_err(), libc::ENOENT);
    assert_eq!(a.lookup(ROOT_ID, "other.txt").unwrap_err(), libc::ENOENT);
}

#[test]
fn requests_in_indirect_tables() {
    let layout = Layout::new();
    let mut d = layout.driver();
    d.indirect = true;
    assert_eq!(d.read_file("hello.txt").unwrap(), HELLO);
    let (entry, fh) = d.create(ROOT_ID, "ind", libc::O_RDWR, 0o644).unwrap();
    let data = vec![7u8; 1 << 20];
    assert_eq!(d.write(entry.nodeid, fh, 0, &data).unwrap(), 1 << 20);
    assert_eq!(d.read(entry.nodeid, fh, 0, 1 << 20).unwrap(), data);
    d.release(entry.nodeid, fh).unwrap();
    assert_eq!(std::fs::read(layout.path("share/ind")).unwrap(), data);
}

#[test]
fn kicks_are_suppressed_while_draining_and_reenabled_after() {
    let layout = Layout::new();
    let mut d = layout.driver();
    // Without event indices: the NO_NOTIFY flag is clear once the queue is drained.
    assert_eq!(d.queues.used_flags(REQUEST_QUEUE), 0);

    d.queues.set_event_idx(REQUEST_QUEUE, true);
    let before = d.queues.signals(REQUEST_QUEUE);
    // The driver wants an interrupt only once the used index passes 100.
    d.queues.set_used_event(REQUEST_QUEUE, 100);
    let posted: Vec<(u16, u64)> = (0..3)
        .map(|_| {
            d.post_request(
                REQUEST_QUEUE,
                Opcode::Getattr as u32,
                ROOT_ID,
                &[&[0; 16]],
                4096,
            )
        })
        .collect();
    d.kick(REQUEST_QUEUE);
    let mut used = Vec::new();
    while used.len() < posted.len() {
        assert!(d.wait_event(crate::devices::virtio::fs::testing::TIMEOUT));
        used.extend(d.queues.take_used(REQUEST_QUEUE));
    }
    assert_eq!(
        d.queues.signals(REQUEST_QUEUE),
        before,
        "interrupted before used_event"
    );
    // The device asks to be kicked for the next chain: avail_event = chains consumed so
    // far (INIT and the three above).
    assert_eq!(d.queues.avail_event(REQUEST_QUEUE), 4);
    // Now the driver wants an interrupt for the next used entry.
    d.queues.set_used_event(REQUEST_QUEUE, 4);
    d.getattr(ROOT_ID).unwrap();
    assert_eq!(d.queues.signals(REQUEST_QUEUE), before + 1);
    assert_eq!(d.queues.avail_event(REQUEST_QUEUE), 5);
}

#[test]
fn files_are_created_as_the_guest_user_with_its_permissions() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let open = d.mkdir(ROOT_ID, "open", 0o777).unwrap();
    d.creds = (1000, 1001);
    let (file, fh) = d
        .create(open.nodeid, "mine", libc::O_WRONLY, 0o600)
        .unwrap();
    d.release(file.nodeid, fh).unwrap();
    let meta = std::fs::metadata(layout.path("share/open/mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
    let dir = d.mkdir(open.nodeid, "sub", 0o755).unwrap();
    assert_eq!((dir.attr.uid, dir.attr.gid), (1000, 1001));
    // The share's root is root's, mode 0755: the guest user may not create there.
    assert_eq!(
        d.create(ROOT_ID, "not-mine", libc::O_WRONLY, 0o644)
            .unwrap_err(),
        libc::EACCES
    );
    // A directory writable by its group, which the guest's kernel let the user write to
    // (through a supplementary group FUSE does not send): the host lets it create too,
    // files owned by the user; the group's write bit is what counts.
    d.creds = (0, 0);
    let staff = d.mkdir(ROOT_ID, "staff", 0o775).unwrap();
    let readers = d.mkdir(ROOT_ID, "readers", 0o755).unwrap();
    for dir in ["share/staff", "share/readers"] {
        std::os::unix::fs::chown(layout.path(dir), Some(0), Some(50)).unwrap();
    }
    d.creds = (1000, 1001);
    let (file, fh) = d
        .create(staff.nodeid, "note", libc::O_WRONLY, 0o644)
        .unwrap();
    d.release(file.nodeid, fh).unwrap();
    d.mkdir(staff.nodeid, "sub", 0o755).unwrap();
    d.symlink(staff.nodeid, "link", "note").unwrap();
    let meta = std::fs::metadata(layout.path("share/staff/note")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
    assert_eq!(
        d.create(readers.nodeid, "no", libc::O_WRONLY, 0o644)
            .unwrap_err(),
        libc::EACCES
    );
    // Back to root: the worker's capabilities came back with uid 0.
    d.creds = (0, 0);
    let (file, fh) = d
        .create(ROOT_ID, "root-again", libc::O_WRONLY, 0o644)
        .unwrap();
    d.release(file.nodeid, fh).unwrap();
    assert_eq!(
        std::fs::metadata(layout.path("share/root-again"))
            .unwrap()
            .uid(),
        0
    );
}
