//! A reproducible writer for the Linux initramfs format (cpio "newc", see the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! The guest's initramfs only needs a handful of entries (the agent as `/init`, a few
//! directories, `/dev/console`), so instead of shelling out to `cpio` — whose output
//! depends on the build machine's inode numbers, owners and timestamps — we write the
//! archive ourselves: every entry is owned by root, has mtime 0 and a sequential inode
//! number, so the same inputs always give the same bytes.

use std::collections::BTreeSet;
use std::io::{self, Write};

/// The newc magic (no checksum variant).
const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Name of the entry that ends every archive.
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Errors building an archive.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path that cannot live in an initramfs.
    #[error("invalid archive path {0:?}: must be relative, without '..', '.', empty parts or NUL")]
    InvalidPath(String),
    /// The same path was added twice.
    #[error("duplicate archive path {0:?}")]
    Duplicate(String),
    /// A file does not fit the format's 32-bit size field.
    #[error("file {path:?} is {len} bytes, larger than the 4 GiB newc limit")]
    TooLarge {
        /// Archive path of the file.
        path: String,
        /// Its length.
        len: usize,
    },
    /// Writing the archive failed.
    #[error("writing the archive: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug)]
enum Kind {
    Directory,
    File(Vec<u8>),
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

#[derive(Debug)]
struct Entry {
    path: String,
    mode: u32,
    kind: Kind,
}

/// An initramfs archive under construction. Entries are written in the order they are
/// added; missing parent directories are added (mode 0755) before their first child.
#[derive(Debug, Default)]
pub struct Archive {
    entries: Vec<Entry>,
    paths: BTreeSet<String>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory with the given permission bits.
    pub fn directory(&mut self, path: &str, mode: u32) -> Result<&mut Self, Error> {
        self.push(path, mode, Kind::Directory)
    }

    /// Adds a regular file with the given permission bits and contents.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<&mut Self, Error> {
        if u32::try_from(data.len()).is_err() {
            return Err(Error::TooLarge {
                path: path.to_owned(),
                len: data.len(),
            });
        }
        self.push(path, mode, Kind::File(data))
    }

    /// Adds a symbolic link pointing at `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, Error> {
        self.push(path, 0o777, Kind::Symlink(target.to_owned()))
    }

    /// Adds a character device node (e.g. `dev/console`, 5:1), which the kernel needs
    /// before `/init` runs so that init gets a console on fds 0-2.
    pub fn char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, Error> {
        self.push(path, mode, Kind::CharDevice { major, minor })
    }

    fn push(&mut self, path: &str, mode: u32, kind: Kind) -> Result<&mut Self, Error> {
        validate(path)?;
        // Parents first, so the kernel can create the entry when it unpacks it.
        let mut parent = String::new();
        let components: Vec<&str> = path.split('/').collect();
        for component in &components[..components.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            if !self.paths.contains(&parent) {
                self.paths.insert(parent.clone());
                self.entries.push(Entry {
                    path: parent.clone(),
                    mode: 0o755,
                    kind: Kind::Directory,
                });
            }
        }
        if !self.paths.insert(path.to_owned()) {
            return Err(Error::Duplicate(path.to_owned()));
        }
        self.entries.push(Entry {
            path: path.to_owned(),
            mode: mode & 0o7777,
            kind,
        });
        Ok(self)
    }

    /// Writes the archive, ending with the trailer entry.
    pub fn write_to(&self, out: &mut impl Write) -> Result<(), Error> {
        let mut writer = NewcWriter { out, offset: 0 };
        for (index, entry) in self.entries.iter().enumerate() {
            // Inode 0 is avoided: some tools treat it as "no inode".
            let ino = u32::try_from(index + 1).map_err(|_| io::Error::other("too many entries"))?;
            writer.entry(ino, entry)?;
        }
        writer.header(0, 0, 1, 0, (0, 0), TRAILER)?;
        writer.pad()?;
        writer.out.flush()?;
        Ok(())
    }

    /// The archive as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut bytes = Vec::new();
        self.write_to(&mut bytes)?;
        Ok(bytes)
    }
}

fn validate(path: &str) -> Result<(), Error> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(Error::InvalidPath(path.to_owned()))
    } else {
        Ok(())
    }
}

struct NewcWriter<'a, W: Write> {
    out: &'a mut W,
    offset: usize,
}

impl<W: Write> NewcWriter<'_, W> {
    fn entry(&mut self, ino: u32, entry: &Entry) -> Result<(), Error> {
        let (type_bits, data, rdev): (u32, &[u8], (u32, u32)) = match &entry.kind {
            Kind::Directory => (S_IFDIR, &[], (0, 0)),
            Kind::File(data) => (S_IFREG, data, (0, 0)),
            Kind::Symlink(target) => (S_IFLNK, target.as_bytes(), (0, 0)),
            Kind::CharDevice { major, minor } => (S_IFCHR, &[], (*major, *minor)),
        };
        let nlink = if matches!(entry.kind, Kind::Directory) {
            2
        } else {
            1
        };
        // Sizes were bounded by `Archive::file`; symlink targets are short strings.
        let size = u32::try_from(data.len()).map_err(|_| io::Error::other("entry too large"))?;
        self.header(ino, type_bits | entry.mode, nlink, size, rdev, &entry.path)?;
        self.write(data)?;
        self.pad()
    }

    fn header(
        &mut self,
        ino: u32,
        mode: u32,
        nlink: u32,
        size: u32,
        rdev: (u32, u32),
        name: &str,
    ) -> Result<(), Error> {
        let name_size =
            u32::try_from(name.len() + 1).map_err(|_| io::Error::other("name too long"))?;
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0,
        ];
        let mut header = Vec::with_capacity(110 + name.len() + 1);
        header.extend_from_slice(NEWC_MAGIC);
        for field in fields {
            header.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        self.write(&header)?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len();
        Ok(())
    }

    /// Pads to the next 4-byte boundary, as newc requires after headers and data.
    fn pad(&mut self) -> Result<(), Error> {
        let padding = (4 - self.offset % 4) % 4;
        self.write(&[0u8; 3][..padding])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back from an archive.
    struct Parsed {
        name: String,
        mode: u32,
        rdev: (u32, u32),
        data: Vec<u8>,
    }

    /// Reads entries back the way the kernel parses newc.
    fn parse(bytes: &[u8]) -> Vec<Parsed> {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(&bytes[at..at + 6], NEWC_MAGIC, "magic at offset {at}");
            let field = |i: usize| {
                let start = at + 6 + i * 8;
                u32::from_str_radix(std::str::from_utf8(&bytes[start..start + 8]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, rdev, name_size) =
                (field(1), field(6), (field(9), field(10)), field(11));
            let name_start = at + 110;
            let name_end = name_start + name_size as usize - 1;
            let name = std::str::from_utf8(&bytes[name_start..name_end])
                .unwrap()
                .to_owned();
            assert_eq!(bytes[name_end], 0, "name is NUL-terminated");
            let data_start = (name_end + 1).div_ceil(4) * 4;
            let data_end = data_start + size as usize;
            at = data_end.div_ceil(4) * 4;
            if name == TRAILER {
                assert_eq!(at, bytes.len(), "nothing after the trailer");
                return entries;
            }
            let data = bytes[data_start..data_end].to_vec();
            entries.push(Parsed {
                name,
                mode,
                rdev,
                data,
            });
        }
    }

    fn sample() -> Archive {
        let mut archive = Archive::new();
        archive.directory("dev", 0o755).unwrap();
        archive.char_device("dev/console", 0o600, 5, 1).unwrap();
        archive.file("init", 0o755, b"#!agent".to_vec()).unwrap();
        archive
            .file("usr/lib/deep/file", 0o644, vec![7; 5])
            .unwrap();
        archive.symlink("bin", "usr/bin").unwrap();
        archive
    }

    #[test]
    fn same_inputs_give_same_bytes() {
        assert_eq!(sample().to_bytes().unwrap(), sample().to_bytes().unwrap());
    }

    #[test]
    fn entries_round_trip_with_types_and_parents_first() {
        let entries = parse(&sample().to_bytes().unwrap());
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "usr",
                "usr/lib",
                "usr/lib/deep",
                "usr/lib/deep/file",
                "bin"
            ]
        );
        let console = &entries[1];
        assert_eq!(console.mode, S_IFCHR | 0o600);
        assert_eq!(console.rdev, (5, 1));
        let init = &entries[2];
        assert_eq!(
            (init.mode, init.data.as_slice()),
            (S_IFREG | 0o755, &b"#!agent"[..])
        );
        assert_eq!(entries[3].mode, S_IFDIR | 0o755);
        assert_eq!(entries[6].data, vec![7; 5]);
        let link = &entries[7];
        assert_eq!(
            (link.mode, link.data.as_slice()),
            (S_IFLNK | 0o777, &b"usr/bin"[..])
        );
    }

    #[test]
    fn archive_is_padded_to_four_bytes() {
        assert_eq!(sample().to_bytes().unwrap().len() % 4, 0);
    }

    #[test]
    fn rejects_paths_that_escape_or_are_malformed() {
        for bad in ["", "/init", "a/../b", "./a", "a//b", "a/", "a\0b", ".."] {
            let err = Archive::new().file(bad, 0o644, vec![]).unwrap_err();
            assert!(
                matches!(err, Error::InvalidPath(ref p) if p == bad),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn rejects_duplicates_but_not_implicit_parents_added_later() {
        let mut archive = Archive::new();
        archive.file("etc/passwd", 0o644, vec![]).unwrap();
        let err = archive.directory("etc", 0o755).unwrap_err();
        assert!(matches!(err, Error::Duplicate(ref p) if p == "etc"));
        let err = archive.file("etc/passwd", 0o644, vec![]).unwrap_err();
        assert!(matches!(err, Error::Duplicate(ref p) if p == "etc/passwd"));
    }

    #[test]
    fn mode_keeps_only_permission_bits() {
        let mut archive = Archive::new();
        archive.file("x", 0o100_4755, vec![]).unwrap();
        let entries = parse(&archive.to_bytes().unwrap());
        assert_eq!(entries[0].mode, S_IFREG | 0o4755);
    }
}
