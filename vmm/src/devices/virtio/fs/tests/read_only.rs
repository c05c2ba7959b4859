//! A read-only share: every request that would change the host fails with `EROFS`, reads
//! still work, and the share is unchanged afterwards.

use fuse_backend_rs::abi::fuse_abi::{FallocateIn, Opcode, SetattrIn, WriteIn, ROOT_ID};
use vm_memory::ByteValued;

use super::{Layout, HELLO};
use crate::devices::virtio::fs::testing::REPLY_LEN;

#[test]
fn every_write_opcode_is_refused() {
    let layout = Layout::new();
    let share_before = {
        let mut v = Vec::new();
        super::snapshot(
            layout.tmp.path(),
            &layout.share(),
            &layout.path("none"),
            &mut v,
        );
        v
    };
    let mut d = layout.ro_driver();
    let hello = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
    let dir = d.lookup(ROOT_ID, "dir").unwrap().nodeid;
    let fh = d.open(hello, libc::O_RDONLY).unwrap();
    let erofs = Err(libc::EROFS);

    assert_eq!(
        d.setattr(
            hello,
            SetattrIn {
                valid: 1,
                mode: 0o777,
                ..SetattrIn::default()
            }
        )
        .map(drop),
        erofs
    );
    assert_eq!(d.symlink(ROOT_ID, "l", "hello.txt").map(drop), erofs);
    assert_eq!(
        d.mknod(ROOT_ID, "fifo", libc::S_IFIFO | 0o644, 0).map(drop),
        erofs
    );
    assert_eq!(d.mkdir(ROOT_ID, "d", 0o755).map(drop), erofs);
    assert_eq!(d.unlink(ROOT_ID, "hello.txt"), erofs);
    assert_eq!(d.rmdir(ROOT_ID, "dir"), erofs);
    assert_eq!(d.rename(ROOT_ID, "hello.txt", dir, "moved"), erofs);
    assert_eq!(d.rename2(ROOT_ID, "hello.txt", dir, "moved", 0), erofs);
    assert_eq!(d.link(hello, dir, "hard").map(drop), erofs);
    assert_eq!(
        d.create(ROOT_ID, "new", libc::O_WRONLY, 0o644).map(drop),
        erofs
    );
    assert_eq!(
        d.create(ROOT_ID, "hello.txt", libc::O_RDONLY, 0o644)
            .map(drop),
        erofs
    );
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_WRONLY | libc::O_APPEND,
    ] {
        assert_eq!(d.open(hello, flags).map(drop), erofs, "flags {flags:#o}");
    }
    // WRITE and FALLOCATE on a read-only handle.
    assert_eq!(d.write(hello, fh, 0, b"x").map(drop), erofs);
    let write = WriteIn {
        fh,
        size: 1,
        ..WriteIn::default()
    };
    assert_eq!(
        d.call(Opcode::Write, hello, &[write.as_slice(), b"x"], REPLY_LEN)
            .errno,
        libc::EROFS
    );
    assert_eq!(d.fallocate(hello, fh, 0, 4096), erofs);
    let fallocate = FallocateIn {
        fh,
        length: 1 << 20,
        ..FallocateIn::default()
    };
    assert_eq!(
        d.call(Opcode::Fallocate, hello, &[fallocate.as_slice()], REPLY_LEN)
            .errno,
        libc::EROFS
    );
    assert_eq!(d.setxattr(hello, "user.x", b"1"), erofs);
    assert_eq!(d.removexattr(hello, "user.x"), erofs);
    assert_eq!(d.access(hello, libc::W_OK), erofs);

    // Reading is fine.
    assert_eq!(d.read(hello, fh, 0, 100).unwrap(), HELLO);
    d.access(hello, libc::R_OK).unwrap();
    assert_eq!(d.getxattr(hello, "user.x", 64).unwrap_err(), libc::ENODATA);
    let dh = d.opendir(ROOT_ID).unwrap();
    assert_eq!(d.readdir(ROOT_ID, dh, 0).unwrap().len(), 5);
    d.release(hello, fh).unwrap();
    drop(d);

    let mut share_after = Vec::new();
    super::snapshot(
        layout.tmp.path(),
        &layout.share(),
        &layout.path("none"),
        &mut share_after,
    );
    assert_eq!(share_after, share_before);
}
