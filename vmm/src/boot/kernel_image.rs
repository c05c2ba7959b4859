//! Checks that a kernel is an x86_64 ELF with a PVH entry point (the Xen ELF note
//! `XEN_ELFNOTE_PHYS32_ENTRY`), the only way our engines boot it: no bzImage, no
//! decompressor. Only the headers and note segments are read, not the whole image.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// `XEN_ELFNOTE_PHYS32_ENTRY` from Xen's `elfnote.h`: the 32-bit PVH entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Notes larger than this are not kernel notes; refuse rather than allocate.
const MAX_NOTE_SEGMENT: u64 = 1 << 20;

/// Why a kernel cannot be booted.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Reading the file failed.
    #[error("cannot read kernel {path}: {source}")]
    Io {
        /// The kernel's path.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The file is not a 64-bit little-endian x86_64 ELF.
    #[error("kernel {path} is not an x86_64 ELF (a vmlinux): {reason}")]
    NotElf {
        /// The kernel's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The ELF has no PVH entry note.
    #[error("kernel {path} has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY); build it with CONFIG_PVH=y")]
    NoPvhNote {
        /// The kernel's path.
        path: PathBuf,
    },
}

/// A kernel that passed the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvhKernel {
    /// Where it is.
    pub path: PathBuf,
    /// The guest-physical address of its 32-bit PVH entry point.
    pub pvh_entry: u32,
    /// The guest-physical address just past its highest loadable segment (where the
    /// image ends in guest memory once loaded, `.bss` included).
    pub load_end: u64,
}

impl PvhKernel {
    /// Opens `path` and checks that it can be booted through its PVH entry point.
    pub fn check(path: &Path) -> Result<Self, KernelError> {
        let io_err = |source| KernelError::Io {
            path: path.to_owned(),
            source,
        };
        let not_elf = |reason| KernelError::NotElf {
            path: path.to_owned(),
            reason,
        };
        let mut file = File::open(path).map_err(io_err)?;
        if file.metadata().map_err(io_err)?.is_dir() {
            return Err(not_elf("it is a directory"));
        }
        let mut header = [0u8; 64];
        if let Err(e) = file.read_exact(&mut header) {
            return Err(match e.kind() {
                io::ErrorKind::UnexpectedEof => not_elf("file too short"),
                _ => io_err(e),
            });
        }
        if &header[..4] != ELF_MAGIC {
            return Err(not_elf("no ELF magic"));
        }
        if header[4] != ELFCLASS64 || header[5] != ELFDATA2LSB {
            return Err(not_elf("not a 64-bit little-endian ELF"));
        }
        if u16_at(&header, 18) != EM_X86_64 {
            return Err(not_elf("machine is not x86_64"));
        }
        let phoff = u64_at(&header, 32);
        let phentsize = u64::from(u16_at(&header, 54));
        let phnum = u64::from(u16_at(&header, 56));
        if phentsize < 56 {
            return Err(not_elf("program header entries too small"));
        }
        let mut pvh_entry = None;
        let mut load_end: u64 = 0;
        for index in 0..phnum {
            let mut phdr = [0u8; 56];
            file.seek(SeekFrom::Start(phoff + index * phentsize))
                .map_err(io_err)?;
            file.read_exact(&mut phdr).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => not_elf("program headers past the end of the file"),
                _ => io_err(e),
            })?;
            match u32_at(&phdr, 0) {
                PT_LOAD => {
                    let (paddr, memsz) = (u64_at(&phdr, 24), u64_at(&phdr, 40));
                    let end = paddr
                        .checked_add(memsz)
                        .ok_or_else(|| not_elf("a segment ends past the address space"))?;
                    load_end = load_end.max(end);
                }
                PT_NOTE if pvh_entry.is_none() => {
                    let (offset, size) = (u64_at(&phdr, 8), u64_at(&phdr, 32));
                    if size > MAX_NOTE_SEGMENT {
                        return Err(not_elf("note segment too large"));
                    }
                    let mut notes = vec![0u8; usize::try_from(size).unwrap_or(0)];
                    file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
                    file.read_exact(&mut notes).map_err(|e| match e.kind() {
                        io::ErrorKind::UnexpectedEof => {
                            not_elf("note segment past the end of the file")
                        }
                        _ => io_err(e),
                    })?;
                    pvh_entry = find_pvh_entry(&notes);
                }
                _ => {}
            }
        }
        if let Some(pvh_entry) = pvh_entry {
            return Ok(Self {
                path: path.to_owned(),
                pvh_entry,
                load_end,
            });
        }
        Err(KernelError::NoPvhNote {
            path: path.to_owned(),
        })
    }
}

/// Walks a note segment (`namesz`, `descsz`, `type`, name and desc each padded to 4
/// bytes) for Xen's PHYS32_ENTRY note.
fn find_pvh_entry(mut notes: &[u8]) -> Option<u32> {
    let align4 = |n: usize| n.checked_add(3).map(|v| v & !3);
    while notes.len() >= 12 {
        let namesz = usize::try_from(u32_at(notes, 0)).ok()?;
        let descsz = usize::try_from(u32_at(notes, 4)).ok()?;
        let kind = u32_at(notes, 8);
        let name_end = 12usize.checked_add(align4(namesz)?)?;
        let desc_end = name_end.checked_add(align4(descsz)?)?;
        if desc_end > notes.len() {
            return None;
        }
        let name = &notes[12..12 + namesz];
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name == b"Xen\0" && descsz >= 4 {
            return Some(u32_at(&notes[name_end..], 0));
        }
        notes = &notes[desc_end..];
    }
    None
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Checks that the initramfs exists, is a readable regular file and is not empty.
pub fn check_initramfs(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read initramfs {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "initramfs {} is not a regular file",
            path.display()
        ));
    }
    if meta.len() == 0 {
        return Err(format!("initramfs {} is empty", path.display()));
    }
    File::open(path)
        .map(drop)
        .map_err(|e| format!("cannot read initramfs {}: {e}", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
        n.extend_from_slice(&u32::try_from(desc.len()).unwrap().to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().div_ceil(4) * 4, 0);
        n.extend_from_slice(desc);
        n.resize(n.len().div_ceil(4) * 4, 0);
        n
    }

    /// A minimal ELF64 x86_64 image with one PT_NOTE segment holding `notes`.
    pub(crate) fn elf_with_notes(machine: u16, notes: &[u8]) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(ELF_MAGIC);
        elf[4] = ELFCLASS64;
        elf[5] = ELFDATA2LSB;
        elf[18..20].copy_from_slice(&machine.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = &mut elf[64..120];
        ph[..4].copy_from_slice(&PT_NOTE.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        ph[32..40].copy_from_slice(&u64::try_from(notes.len()).unwrap().to_le_bytes());
        elf.extend_from_slice(notes);
        elf
    }

    pub(crate) fn pvh_elf(entry: u32) -> Vec<u8> {
        let mut notes = note(b"GNU\0", 3, &[1, 2, 3, 4]);
        notes.extend(note(
            b"Xen\0",
            XEN_ELFNOTE_PHYS32_ENTRY,
            &entry.to_le_bytes(),
        ));
        elf_with_notes(EM_X86_64, &notes)
    }

    fn check_bytes(bytes: &[u8]) -> Result<PvhKernel, KernelError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinux");
        std::fs::write(&path, bytes).unwrap();
        PvhKernel::check(&path)
    }

    #[test]
    fn the_load_end_is_the_end_of_the_highest_segment() {
        let mut elf = pvh_elf(0x10_0000);
        // PT_LOAD segments at 16 MiB and 1 MiB, listed after the note.
        let load = |paddr: u64, memsz: u64| {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            ph
        };
        // A new program header table at the end: the note's header, then the two loads.
        let table = elf.len();
        let note_header = elf[64..120].to_vec();
        elf.extend(note_header);
        elf.extend(load(0x100_0000, 0x2000));
        elf.extend(load(0x10_0000, 0x5000));
        elf[32..40].copy_from_slice(&u64::try_from(table).unwrap().to_le_bytes());
        elf[56..58].copy_from_slice(&3u16.to_le_bytes());
        let kernel = check_bytes(&elf).unwrap();
        assert_eq!(kernel.pvh_entry, 0x10_0000);
        assert_eq!(kernel.load_end, 0x100_2000);
        assert_eq!(check_bytes(&pvh_elf(1)).unwrap().load_end, 0, "no PT_LOAD");
    }

    #[test]
    fn finds_the_pvh_entry_after_other_notes() {
        assert_eq!(
            check_bytes(&pvh_elf(0x0100_0abc)).unwrap().pvh_entry,
            0x0100_0abc
        );
    }

    #[test]
    fn rejects_an_elf_without_the_pvh_note() {
        let elf = elf_with_notes(EM_X86_64, &note(b"Xen\0", 17, &[0; 8]));
        assert!(matches!(
            check_bytes(&elf),
            Err(KernelError::NoPvhNote { .. })
        ));
    }

    #[test]
    fn rejects_files_that_are_not_x86_64_elf() {
        let cases: [(&[u8], &str); 3] = [
            (
                b"MZ\x90\0 this is a bzImage, not an ELF .........................................",
                "no ELF magic",
            ),
            (b"\x7fELF", "file too short"),
            (&elf_with_notes(183, &[]), "machine is not x86_64"),
        ];
        for (bytes, reason) in cases {
            match check_bytes(bytes) {
                Err(KernelError::NotElf { reason: r, .. }) => assert_eq!(r, reason),
                other => panic!("{reason}: got {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_or_lying_notes_are_not_trusted() {
        // A note claiming a huge descriptor must not be read past the segment.
        let mut bad = note(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY, &[0; 4]);
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(find_pvh_entry(&bad).is_none());
        assert!(find_pvh_entry(&[1, 2, 3]).is_none());
    }

    #[test]
    fn missing_kernel_names_the_path() {
        let err = PvhKernel::check(Path::new("/nonexistent/vmlinux")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/vmlinux") && text.contains("No such file"),
            "{text}"
        );
    }

    #[test]
    fn initramfs_must_be_a_non_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(check_initramfs(&empty).unwrap_err().contains("is empty"));
        assert!(check_initramfs(dir.path())
            .unwrap_err()
            .contains("not a regular file"));
        assert!(check_initramfs(&dir.path().join("nope"))
            .unwrap_err()
            .contains("No such file"));
        let good = dir.path().join("good");
        std::fs::write(&good, b"070701").unwrap();
        assert!(check_initramfs(&good).is_ok());
    }
}
