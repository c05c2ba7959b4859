//! Requests no well-behaved driver sends: each gets an error reply (or, when none can be
//! written or none is expected, a used length of 0), never a panic, and the device keeps
//! serving afterwards.

use std::mem::size_of;

use fuse_backend_rs::abi::fuse_abi::{InHeader, Opcode, OutHeader, ReadIn, WriteIn, ROOT_ID};
use vm_memory::ByteValued;

use super::{Layout, HELLO};
use crate::devices::virtio::fs::device::HIPRIO_QUEUE as HIPRIO_QUEUE_INDEX;
use crate::devices::virtio::fs::testing::{Desc, FsDriver, REPLY_LEN, REQUEST_QUEUE};

fn header(len: u32, opcode: u32, unique: u64, nodeid: u64) -> Vec<u8> {
    InHeader {
        len,
        opcode,
        unique,
        nodeid,
        ..InHeader::default()
    }
    .as_slice()
    .to_vec()
}

/// The errno of a raw reply, checking its header.
fn errno_of(used: u32, reply: &[u8], unique: u64) -> i32 {
    assert_eq!(
        used as usize,
        size_of::<OutHeader>(),
        "not a bare error reply"
    );
    let out = OutHeader::from_slice(&reply[..size_of::<OutHeader>()]).unwrap();
    assert_eq!(out.len, used);
    assert_eq!(out.unique, unique);
    -out.error
}

fn still_serves(d: &mut FsDriver) {
    assert_eq!(d.read_file("hello.txt").unwrap(), HELLO);
}

#[test]
fn bad_lengths() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let getattr_args = [0u8; 16];

    // Header length below the header size, above what was sent, and beyond any request.
    for len in [0, 39, 41 + 16, 1 << 20, u32::MAX] {
        let mut request = header(len, Opcode::Getattr as u32, 77, ROOT_ID);
        request.extend_from_slice(&getattr_args);
        let (used, reply) = d.call_raw(&request, REPLY_LEN);
        assert_eq!(errno_of(used, &reply, 77), libc::EINVAL, "len {len}");
    }
    // Shorter than a header: answered with unique 0.
    let (used, reply) = d.call_raw(&[1, 2, 3, 4, 5], REPLY_LEN);
    assert_eq!(errno_of(used, &reply, 0), libc::EINVAL);
    // A readable part larger than the largest request.
    let mut huge = header(56, Opcode::Getattr as u32, 78, ROOT_ID);
    huge.resize(2 << 20, 0);
    let (used, reply) = d.call_raw(&huge, REPLY_LEN);
    assert_eq!(errno_of(used, &reply, 78), libc::EINVAL);
    // Argument struct missing (the server fails to decode it): EINVAL from the device.
    let (used, reply) = d.call_raw(&header(40, Opcode::Open as u32, 79, ROOT_ID), REPLY_LEN);
    assert_eq!(errno_of(used, &reply, 79), libc::EINVAL);
    // A MKNOD whose struct is cut short before the name.
    let mut short = header(40 + 4, Opcode::Mknod as u32, 80, ROOT_ID);
    short.extend_from_slice(b"ab\0\0");
    let (used, reply) = d.call_raw(&short, REPLY_LEN);
    assert_eq!(errno_of(used, &reply, 80), libc::EINVAL);
    still_serves(&mut d);
}

#[test]
fn unknown_and_unserved_opcodes() {
    let layout = Layout::new();
    let mut d = layout.driver();
    for opcode in [
        0,
        7,
        19,
        47,
        48,
        49,
        50,
        51,
        52,
        999,
        4096,
        26 << 24,
        u32::MAX,
    ] {
        let reply = d.call_op(opcode, ROOT_ID, &[&[0u8; 64]], REPLY_LEN);
        assert_eq!(reply.errno, libc::ENOSYS, "opcode {opcode}");
    }
    // Served by the server but not by a passthrough: locks, ioctl, bmap, poll.
    for (opcode, expected) in [
        (Opcode::Getlk, libc::ENOSYS),
        (Opcode::Setlk, libc::ENOSYS),
        (Opcode::Bmap, libc::ENOSYS),
        (Opcode::Poll, libc::ENOSYS),
        (Opcode::Ioctl, libc::ENOTTY),
    ] {
        let reply = d.call(opcode, ROOT_ID, &[&[0u8; 64]], REPLY_LEN);
        assert_eq!(reply.errno, expected, "{opcode:?}");
    }
    still_serves(&mut d);
}

#[test]
fn bad_names() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let long = vec![b'x'; 256];
    for (name, expected) in [
        (&b"a/b"[..], libc::EINVAL),
        (b"/", libc::EINVAL),
        (b"..", libc::EINVAL),
        (b".", libc::EINVAL),
        (b"", libc::EINVAL),
        (&long, libc::ENAMETOOLONG),
    ] {
        assert_eq!(d.lookup(ROOT_ID, name).unwrap_err(), expected, "{name:?}");
        assert_eq!(
            d.mkdir(ROOT_ID, name, 0o755).unwrap_err(),
            expected,
            "{name:?}"
        );
        assert_eq!(
            d.create(ROOT_ID, name, libc::O_WRONLY, 0o644).unwrap_err(),
            expected
        );
    }
    // Embedded NUL: not silently shortened to "hello.txt".
    assert_eq!(
        d.lookup(ROOT_ID, b"hello.txt\0.evil").unwrap_err(),
        libc::EINVAL
    );
    assert_eq!(
        d.unlink(ROOT_ID, b"hello.txt\0x").unwrap_err(),
        libc::EINVAL
    );
    assert!(layout.path("share/hello.txt").exists());
    // No terminating NUL at all.
    let reply = d.call(Opcode::Lookup, ROOT_ID, &[b"hello.txt"], REPLY_LEN);
    assert_eq!(reply.errno, libc::EINVAL);
    // RENAME with one name only.
    let reply = d.call(
        Opcode::Rename,
        ROOT_ID,
        &[&ROOT_ID.to_le_bytes(), b"hello.txt\0"],
        REPLY_LEN,
    );
    assert_eq!(reply.errno, libc::EINVAL);
    // Symlink targets: empty, too long, or with a NUL inside.
    assert_eq!(d.symlink(ROOT_ID, "l", "").unwrap_err(), libc::ENOENT);
    assert_eq!(
        d.symlink(ROOT_ID, "l", vec![b'a'; 5000]).unwrap_err(),
        libc::ENAMETOOLONG
    );
    assert_eq!(d.symlink(ROOT_ID, "l", b"a\0b").unwrap_err(), libc::EINVAL);
    // xattr names: empty or too long.
    let hello = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
    assert_eq!(d.setxattr(hello, "", b"v").unwrap_err(), libc::ERANGE);
    let long_xattr = format!("user.{}", "x".repeat(300));
    assert_eq!(
        d.getxattr(hello, &long_xattr, 64).unwrap_err(),
        libc::ERANGE
    );
    still_serves(&mut d);
}

#[test]
fn huge_reads_and_writes() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let node = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
    let fh = d.open(node, libc::O_RDWR).unwrap();
    // Larger than the largest READ, and larger than the reply buffer.
    for size in [u32::MAX, 16 << 20, (1 << 20) + 1] {
        let arg = ReadIn {
            fh,
            size,
            ..ReadIn::default()
        };
        let reply = d.call(Opcode::Read, node, &[arg.as_slice()], REPLY_LEN);
        assert_eq!(reply.errno, libc::EINVAL, "size {size}");
    }
    let arg = ReadIn {
        fh,
        size: REPLY_LEN,
        ..ReadIn::default()
    };
    let reply = d.call(Opcode::Read, node, &[arg.as_slice()], REPLY_LEN);
    assert_eq!(
        reply.errno,
        libc::EINVAL,
        "a READ must fit its reply buffer"
    );
    // A WRITE claiming more than the largest WRITE.
    let arg = WriteIn {
        fh,
        size: u32::MAX,
        ..WriteIn::default()
    };
    let reply = d.call(Opcode::Write, node, &[arg.as_slice(), b"tiny"], REPLY_LEN);
    assert_eq!(reply.errno, libc::EINVAL);
    // Directory listing and xattr sizes the host will not allocate.
    let dh = d.opendir(ROOT_ID).unwrap();
    let arg = ReadIn {
        fh: dh,
        size: u32::MAX,
        ..ReadIn::default()
    };
    let reply = d.call(Opcode::Readdir, ROOT_ID, &[arg.as_slice()], REPLY_LEN);
    assert_eq!(reply.errno, libc::ENOMEM);
    assert_eq!(
        d.getxattr(node, "user.none", u32::MAX).unwrap_err(),
        libc::ENODATA
    );
    assert_eq!(
        std::fs::read(layout.path("share/hello.txt")).unwrap(),
        HELLO
    );
    still_serves(&mut d);
}

#[test]
fn chains_the_device_cannot_answer() {
    let layout = Layout::new();
    let mut d = layout.driver();
    // No writable descriptor: served or not, nothing can be written back.
    let request = header(56, Opcode::Getattr as u32, 5, ROOT_ID);
    let mut request = request;
    request.extend_from_slice(&[0; 16]);
    let (used, _) = d.call_raw(&request, 0);
    assert_eq!(used, 0);
    // A reply buffer too small for the reply.
    let (used, _) = d.call_raw(&request, 8);
    assert_eq!(used, 0);
    // Descriptors outside guest memory.
    let outside = crate::devices::virtio::fs::testing::MEM_SIZE + 4096;
    for descs in [
        vec![Desc {
            addr: outside,
            len: 64,
            writable: false,
        }],
        vec![
            Desc {
                addr: 1 << 20,
                len: 64,
                writable: false,
            },
            Desc {
                addr: outside,
                len: 4096,
                writable: true,
            },
        ],
    ] {
        let head = d.queues.post(REQUEST_QUEUE, &descs).unwrap();
        d.kick(REQUEST_QUEUE);
        let (used, _) = d.wait_used(REQUEST_QUEUE, head);
        assert_eq!(used, 0);
    }
    // FORGET and BATCH_FORGET with nonsense, on either queue: no reply.
    for queue in [HIPRIO_QUEUE_INDEX, REQUEST_QUEUE] {
        let mut batch = header(40 + 8 + 16, Opcode::BatchForget as u32, 9, 0);
        batch.extend_from_slice(&u32::MAX.to_le_bytes());
        batch.extend_from_slice(&[0; 4]);
        batch.extend_from_slice(&[0xff; 16]);
        let head = d.post_raw(queue, &batch, 0);
        d.kick(queue);
        assert_eq!(d.wait_used(queue, head).0, 0);
        let forget = header(40 + 8, Opcode::Forget as u32, 10, 0xdead_beef);
        let mut forget = forget;
        forget.extend_from_slice(&u64::MAX.to_le_bytes());
        let head = d.post_raw(queue, &forget, 0);
        d.kick(queue);
        assert_eq!(d.wait_used(queue, head).0, 0);
    }
    still_serves(&mut d);
}

#[test]
fn protocol_misuse() {
    let layout = Layout::new();
    let mut d = FsDriver::new(layout.config()).unwrap();
    // Before FUSE_INIT there is no root.
    assert_eq!(d.getattr(ROOT_ID).unwrap_err(), libc::EBADF);
    // A protocol major we do not speak.
    let init = [6u32, 0, 0, 0];
    let bytes: Vec<u8> = init.iter().flat_map(|v| v.to_le_bytes()).collect();
    let reply = d.call(Opcode::Init, 0, &[&bytes], REPLY_LEN);
    assert_eq!(reply.errno, libc::EPROTO);
    d.init().unwrap();
    // INIT twice, DESTROY, INIT again: still one working root.
    d.init().unwrap();
    let reply = d.call(Opcode::Destroy, 0, &[], REPLY_LEN);
    assert_eq!(reply.errno, 0);
    d.init().unwrap();
    still_serves(&mut d);
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_requests_never_break_the_device() {
    let layout = Layout::new();
    let mut d = layout.driver();
    let hello = d.lookup(ROOT_ID, "hello.txt").unwrap().nodeid;
    let dir = d.lookup(ROOT_ID, "dir").unwrap().nodeid;
    let fh = d.open(hello, libc::O_RDONLY).unwrap();
    let nodes = [0, ROOT_ID, hello, dir, 2, u64::MAX];
    let mut rng = Rng(0x5eed_f00d_cafe_babe);
    for round in 0..1500 {
        let opcode = u32::try_from(rng.below(56)).unwrap();
        // Destroying the session or deleting the fixtures would end the test early.
        if opcode == Opcode::Destroy as u32 || opcode == Opcode::Init as u32 {
            continue;
        }
        let nodeid = nodes[usize::try_from(rng.below(6)).unwrap()];
        let body_len = usize::try_from(rng.below(160)).unwrap();
        let mut body: Vec<u8> = (0..body_len).map(|_| rng.next().to_le_bytes()[0]).collect();
        // Often a real handle, often names that exist.
        if body.len() >= 8 && rng.below(2) == 0 {
            body[..8].copy_from_slice(&fh.to_le_bytes());
        }
        if rng.below(3) == 0 {
            body.extend_from_slice(b"hello.txt\0");
        }
        let declared = match rng.below(4) {
            0 => u32::try_from(rng.below(300)).unwrap(),
            _ => u32::try_from(40 + body.len()).unwrap(),
        };
        let mut request = header(declared, opcode, round, nodeid);
        request.extend_from_slice(&body);
        let reply_len = [0, 8, 16, 64, 4096][usize::try_from(rng.below(5)).unwrap()];
        let queue = if rng.below(8) == 0 {
            HIPRIO_QUEUE_INDEX
        } else {
            REQUEST_QUEUE
        };
        let head = d.post_raw(queue, &request, reply_len);
        d.kick(queue);
        let (used, _) = d.wait_used(queue, head);
        assert!(
            used <= reply_len,
            "round {round}: used {used} > {reply_len}"
        );
    }
    // The fixtures may have been renamed or removed by chance; the device still serves.
    assert_eq!(d.getattr(ROOT_ID).map(|_| ()), Ok(()));
    let (entry, fh) = d
        .create(ROOT_ID, "after-fuzz", libc::O_RDWR, 0o644)
        .unwrap();
    d.write(entry.nodeid, fh, 0, b"ok").unwrap();
    assert_eq!(d.read(entry.nodeid, fh, 0, 10).unwrap(), b"ok");
    assert_eq!(layout.outside_snapshot().len(), 4);
}
