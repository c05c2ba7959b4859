//! One FUSE request: a descriptor chain in, a reply written to its device-writable part,
//! the used length out.
//!
//! Before fuse-backend-rs's [`Server`] parses anything, [`serve`] checks the framing a
//! well-behaved driver always gets right and answers the rest itself:
//! - the header must fit, and its `len` must lie between the header size and what the
//!   driver actually made readable (`EINVAL`); a request larger than the largest one we
//!   accept (1 MiB of data plus headers) is refused before anything is allocated for it
//!   (`EINVAL`);
//! - opcodes we do not serve get `ENOSYS` without reaching the server: unknown ones (the
//!   server turns an opcode into its enum by `transmute`, undefined behaviour for the gaps
//!   in the numbering whenever trace logging is on), COPY_FILE_RANGE, and the DAX mapping
//!   requests (no DAX window);
//! - strings (names, symlink targets, xattr names) must be NUL-terminated with no NUL
//!   inside, so `a\0b` is refused (`EINVAL`) rather than silently served as `a`;
//! - RENAME2 flags we do not know are refused (`EINVAL`); the server would drop them.
//!
//! Whatever the server fails on without replying (it returns an error for messages it
//! cannot decode) gets an error reply here, so the driver always gets an answer for every
//! request that expects one.

use std::mem::size_of;
use std::sync::Arc;

use fuse_backend_rs::abi::fuse_abi::{InHeader, Opcode, OutHeader};
use fuse_backend_rs::api::server::{Server, MAX_BUFFER_SIZE};
use fuse_backend_rs::transport::{Reader, VirtioFsWriter, Writer};
use virtio_queue::DescriptorChain;
use vm_memory::ByteValued;

use super::filter::ConfinedFs;
use crate::devices::virtio::backend::GuestMemory;

/// The server a worker serves requests with.
pub(super) type FuseServer = Server<Arc<ConfinedFs>>;

/// A descriptor chain as the worker receives it.
pub(super) type Chain = DescriptorChain<Arc<GuestMemory>>;

/// Room for the request headers on top of the largest data payload (the server's own
/// allowance).
const HEADER_ROOM: u32 = 0x1000;
/// The largest request we accept.
const MAX_REQUEST: u32 = MAX_BUFFER_SIZE + HEADER_ROOM;
const IN_HEADER_SIZE: usize = size_of::<InHeader>();

/// How the arguments of an opcode end in strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strings {
    /// No string.
    None,
    /// One NUL-terminated string, the last byte.
    One,
    /// Two NUL-terminated strings, the second ending at the last byte.
    Two,
    /// A NUL-terminated string followed by binary data (SETXATTR).
    Leading,
}

/// What the framing check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Hand it to the server.
    Serve,
    /// Reply with this errno ourselves.
    Refuse(i32),
}

fn op(opcode: Opcode) -> u32 {
    opcode as u32
}

/// Whether the server may see `opcode`, and the size of its fixed argument struct and the
/// strings after it.
fn classify(opcode: u32) -> Option<(usize, Strings)> {
    const NONE: Strings = Strings::None;
    let spec = match opcode {
        x if x == op(Opcode::Lookup) => (0, Strings::One),
        x if x == op(Opcode::Symlink) => (0, Strings::Two),
        x if x == op(Opcode::Mknod) => (16, Strings::One),
        x if x == op(Opcode::Mkdir) => (8, Strings::One),
        x if x == op(Opcode::Unlink) || x == op(Opcode::Rmdir) => (0, Strings::One),
        x if x == op(Opcode::Rename) => (8, Strings::Two),
        x if x == op(Opcode::Link) => (8, Strings::One),
        x if x == op(Opcode::Setxattr) => (8, Strings::Leading),
        x if x == op(Opcode::Getxattr) => (8, Strings::One),
        x if x == op(Opcode::Removexattr) => (0, Strings::One),
        x if x == op(Opcode::Create) => (16, Strings::One),
        x if x == op(Opcode::Rename2) => (16, Strings::Two),
        // Every other opcode the server dispatches (1..=46 but the gaps 7 and 19).
        x if (op(Opcode::Lookup)..=op(Opcode::Lseek)).contains(&x) && x != 7 && x != 19 => {
            (0, NONE)
        }
        _ => return None,
    };
    Some(spec)
}

/// Whether a request with this opcode expects no reply.
fn no_reply(opcode: u32) -> bool {
    opcode == op(Opcode::Forget)
        || opcode == op(Opcode::BatchForget)
        || opcode == op(Opcode::Interrupt)
}

fn check_strings(body: &[u8], strings: Strings) -> bool {
    let nuls = body.iter().filter(|&&b| b == 0).count();
    let ends_in_nul = body.last() == Some(&0);
    match strings {
        Strings::None => true,
        Strings::One => nuls == 1 && ends_in_nul,
        Strings::Two => nuls == 2 && ends_in_nul,
        Strings::Leading => nuls >= 1,
    }
}

/// The framing check. `reader` is positioned after the header.
fn check(header: &InHeader, readable: usize, mut reader: Reader<'_>) -> Verdict {
    let len = header.len;
    let fits = usize::try_from(len).is_ok_and(|len| len >= IN_HEADER_SIZE && len <= readable);
    if !fits {
        return Verdict::Refuse(libc::EINVAL);
    }
    if len > MAX_REQUEST || readable > MAX_REQUEST as usize {
        return Verdict::Refuse(libc::EINVAL);
    }
    let Some((fixed, strings)) = classify(header.opcode) else {
        return Verdict::Refuse(libc::ENOSYS);
    };
    if strings == Strings::None {
        return Verdict::Serve;
    }
    // `len` fits in the readable part, so this reads what the server will read.
    let body_len = usize::try_from(len).map_or(0, |len| len - IN_HEADER_SIZE);
    if body_len < fixed {
        return Verdict::Refuse(libc::EINVAL);
    }
    let mut body = vec![0u8; body_len];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return Verdict::Refuse(libc::EINVAL);
    }
    let (fixed_bytes, strings_bytes) = body.split_at(fixed);
    if !check_strings(strings_bytes, strings) || !check_fixed(header.opcode, fixed_bytes) {
        return Verdict::Refuse(libc::EINVAL);
    }
    Verdict::Serve
}

/// Checks of argument structs the server does not make itself.
fn check_fixed(opcode: u32, fixed: &[u8]) -> bool {
    if opcode == op(Opcode::Rename2) {
        // The server masks unknown RENAME2 flags away; a flag we do not know must fail
        // rather than be ignored (renameat2 says EINVAL).
        let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT;
        let flags = fixed
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        return flags & !known == 0;
    }
    true
}

/// Writes an error reply for `unique`; the used length (0 if it does not fit).
fn reply_error(mem: &GuestMemory, chain: &Chain, unique: u64, errno: i32) -> u32 {
    let header = OutHeader {
        len: u32::try_from(size_of::<OutHeader>()).unwrap_or(u32::MAX),
        error: -errno,
        unique,
    };
    let Ok(mut writer) = VirtioFsWriter::new(mem, chain.clone()) else {
        return 0;
    };
    match std::io::Write::write_all(&mut writer, header.as_slice()) {
        Ok(()) => header.len,
        Err(_) => 0,
    }
}

/// Serves one request; returns the used length to put in the used ring.
pub(super) fn serve(server: &FuseServer, chain: &Chain) -> u32 {
    let mem: &GuestMemory = chain.memory();
    let Ok(reader) = Reader::from_descriptor_chain(mem, chain.clone()) else {
        // Descriptors outside guest memory: nothing can be read or answered.
        return 0;
    };
    let readable = reader.available_bytes();
    let mut rest = reader.clone();
    let Ok(header) = rest.read_obj::<InHeader>() else {
        return reply_error(mem, chain, 0, libc::EINVAL);
    };
    if let Verdict::Refuse(errno) = check(&header, readable, rest) {
        return if no_reply(header.opcode) {
            0
        } else {
            reply_error(mem, chain, header.unique, errno)
        };
    }
    let writer = match VirtioFsWriter::new(mem, chain.clone()) {
        Ok(writer) => Writer::from(writer),
        Err(_) => return 0,
    };
    let writable = writer.available_bytes();
    match server.handle_message(reader, writer, None, None) {
        // The server answers DESTROY but reports 0 bytes written.
        Ok(0) if header.opcode == op(Opcode::Destroy) && writable >= size_of::<OutHeader>() => {
            u32::try_from(size_of::<OutHeader>()).unwrap_or(0)
        }
        Ok(written) => u32::try_from(written).unwrap_or(0),
        Err(_) if no_reply(header.opcode) => 0,
        Err(e) => {
            let errno = match e {
                fuse_backend_rs::Error::EncodeMessage(_) => libc::EIO,
                _ => libc::EINVAL,
            };
            reply_error(mem, chain, header.unique, errno)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_the_server_may_see() {
        for opcode in [1, 2, 3, 6, 8, 18, 20, 26, 35, 36, 42, 44, 45, 46] {
            assert!(classify(opcode).is_some(), "{opcode}");
        }
        // Gaps, COPY_FILE_RANGE, DAX, unknown, CUSE_INIT, byte-swapped INIT.
        for opcode in [0, 7, 19, 47, 48, 49, 50, 51, 4096, 26 << 24, u32::MAX] {
            assert!(classify(opcode).is_none(), "{opcode}");
        }
    }

    #[test]
    fn strings_must_be_exactly_terminated() {
        assert!(check_strings(b"name\0", Strings::One));
        assert!(!check_strings(b"na\0me\0", Strings::One));
        assert!(!check_strings(b"name", Strings::One));
        assert!(!check_strings(b"", Strings::One));
        assert!(check_strings(b"a\0b\0", Strings::Two));
        assert!(!check_strings(b"a\0b", Strings::Two));
        assert!(!check_strings(b"a\0b\0c\0", Strings::Two));
        assert!(check_strings(b"user.x\0\0\x01\0", Strings::Leading));
        assert!(!check_strings(b"user.x", Strings::Leading));
    }
}
