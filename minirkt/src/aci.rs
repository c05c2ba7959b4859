//! ACI files: building one from a directory (like `actool build`) and reading one
//! (validating its entry names, extracting it with modes, ownership and links kept).
//!
//! An ACI is a tar archive, optionally gzip-compressed, holding exactly a `manifest`
//! file and a `rootfs/` tree (appc spec, "Image Archives").

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::error::{Context, Error, Result};
use crate::manifest::ImageManifest;

/// Name of the manifest entry.
pub const MANIFEST: &str = "manifest";
/// Name of the root filesystem directory entry.
pub const ROOTFS: &str = "rootfs";

/// Whether `build` compresses its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip, `actool build`'s default.
    Gzip,
}

/// Builds `out` from `dir` (`dir/manifest` + `dir/rootfs/`), like `actool build`.
///
/// The manifest is validated against the appc schema; an image with an `app` section must
/// carry `os` and `arch` labels (rkt refuses app images without them, contract §1.1).
/// Entries keep their modes, ownership, timestamps and symlinks. The archive is written
/// to a temporary file next to `out` and renamed into place.
pub fn build(dir: &Path, out: &Path, compression: Compression) -> Result<()> {
    let manifest_path = dir.join(MANIFEST);
    let bytes = fs::read(&manifest_path).ctx("reading", &manifest_path)?;
    let manifest = ImageManifest::parse(&bytes).map_err(|reason| Error::Manifest {
        kind: "image manifest",
        path: manifest_path.clone(),
        reason,
    })?;
    if manifest.app.is_some() {
        manifest
            .check_app_os_arch()
            .map_err(|reason| Error::Manifest {
                kind: "image manifest",
                path: manifest_path.clone(),
                reason,
            })?;
    }
    let rootfs = dir.join(ROOTFS);
    let meta = fs::symlink_metadata(&rootfs).ctx("inspecting", &rootfs)?;
    if !meta.is_dir() {
        return Err(Error::Aci {
            path: dir.to_path_buf(),
            reason: "rootfs is not a directory".into(),
        });
    }

    let tmp = temp_sibling(out);
    let result = write_archive(&manifest_path, &rootfs, &tmp, compression)
        .and_then(|()| fs::rename(&tmp, out).ctx("renaming into place", out));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn temp_sibling(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_archive(
    manifest: &Path,
    rootfs: &Path,
    tmp: &Path,
    compression: Compression,
) -> Result<()> {
    let file = File::create(tmp).ctx("creating", tmp)?;
    let writer: Box<dyn Write> = match compression {
        Compression::None => Box::new(BufWriter::new(file)),
        Compression::Gzip => Box::new(GzEncoder::new(
            BufWriter::new(file),
            flate2::Compression::default(),
        )),
    };
    let mut builder = tar::Builder::new(writer);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    builder
        .append_path_with_name(manifest, MANIFEST)
        .ctx("archiving", manifest)?;
    append_tree(&mut builder, rootfs, Path::new(ROOTFS))?;
    let mut writer = builder.into_inner().ctx("finishing archive", tmp)?;
    writer.flush().ctx("writing", tmp)?;
    drop(writer);
    Ok(())
}

/// Appends `path` as `name`, then (for a directory) its children in sorted order so the
/// archive is reproducible.
fn append_tree<W: Write>(builder: &mut tar::Builder<W>, path: &Path, name: &Path) -> Result<()> {
    builder
        .append_path_with_name(path, name)
        .ctx("archiving", path)?;
    let meta = fs::symlink_metadata(path).ctx("inspecting", path)?;
    if meta.is_dir() {
        let mut children: Vec<_> = fs::read_dir(path)
            .ctx("reading directory", path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .ctx("reading directory", path)?;
        children.sort();
        for child in children {
            append_tree(builder, &path.join(&child), &name.join(&child))?;
        }
    }
    Ok(())
}

/// An ACI read into memory (uncompressed) whose entry names have been checked.
#[derive(Debug)]
pub struct Aci {
    path: PathBuf,
    tar: Vec<u8>,
}

impl Aci {
    /// Reads `path`, decompressing gzip, and checks every entry: no absolute path, no
    /// `..`, only `manifest` and `rootfs/…` at the top, a hard link target inside the
    /// image, and both a manifest and a rootfs present.
    pub fn open(path: &Path) -> Result<Self> {
        let raw = fs::read(path).ctx("reading image", path)?;
        let tar = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| Error::Aci {
                    path: path.to_path_buf(),
                    reason: format!("bad gzip stream: {e}"),
                })?;
            out
        } else if raw.starts_with(b"BZh") || raw.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
            return Err(Error::Aci {
                path: path.to_path_buf(),
                reason: "only plain and gzip-compressed ACIs are supported".into(),
            });
        } else {
            raw
        };
        let aci = Aci {
            path: path.to_path_buf(),
            tar,
        };
        aci.check_entries()?;
        Ok(aci)
    }

    /// The uncompressed tar (what rkt's image ID is computed over).
    pub fn tar_bytes(&self) -> &[u8] {
        &self.tar
    }

    /// Wraps already-checked uncompressed tar bytes (from the store).
    pub fn from_checked_tar(path: &Path, tar: Vec<u8>) -> Result<Self> {
        let aci = Aci {
            path: path.to_path_buf(),
            tar,
        };
        aci.check_entries()?;
        Ok(aci)
    }

    fn bad(&self, reason: String) -> Error {
        Error::Aci {
            path: self.path.clone(),
            reason,
        }
    }

    fn check_entries(&self) -> Result<()> {
        let mut archive = tar::Archive::new(&self.tar[..]);
        let entries = archive
            .entries()
            .map_err(|e| self.bad(format!("not a tar archive: {e}")))?;
        let (mut has_manifest, mut has_rootfs) = (false, false);
        for entry in entries {
            let entry = entry.map_err(|e| self.bad(format!("corrupt tar: {e}")))?;
            let name = entry
                .path()
                .map_err(|e| self.bad(format!("bad entry name: {e}")))?
                .into_owned();
            let top = check_entry_name(&name).map_err(|r| self.bad(r))?;
            match top.as_str() {
                MANIFEST if name.components().count() == 1 => {
                    if !entry.header().entry_type().is_file() {
                        return Err(self.bad("manifest is not a regular file".into()));
                    }
                    has_manifest = true;
                }
                ROOTFS => has_rootfs = true,
                _ => {
                    return Err(self.bad(format!(
                        "entry {:?} is outside manifest and rootfs/",
                        name.display()
                    )))
                }
            }
            if entry.header().entry_type().is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(|e| self.bad(format!("bad link name: {e}")))?
                    .ok_or_else(|| self.bad(format!("hard link {name:?} without target")))?;
                check_entry_name(&target).map_err(|r| self.bad(r))?;
            }
        }
        if !has_manifest {
            return Err(self.bad("no manifest".into()));
        }
        if !has_rootfs {
            return Err(self.bad("no rootfs".into()));
        }
        Ok(())
    }

    /// The raw bytes of the `manifest` entry.
    pub fn manifest_bytes(&self) -> Result<Vec<u8>> {
        let mut archive = tar::Archive::new(&self.tar[..]);
        for entry in archive.entries().ctx("reading", &self.path)? {
            let mut entry = entry.ctx("reading", &self.path)?;
            let path = entry.path().ctx("reading", &self.path)?.into_owned();
            let mut comps = path.components().filter(|c| *c != Component::CurDir);
            if comps.next() == Some(Component::Normal(MANIFEST.as_ref())) && comps.next().is_none()
            {
                let mut out = Vec::new();
                entry
                    .read_to_end(&mut out)
                    .ctx("reading manifest of", &self.path)?;
                return Ok(out);
            }
        }
        Err(self.bad("no manifest".into()))
    }

    /// Extracts the whole image (`manifest` and `rootfs/`) into `dest`, keeping modes
    /// (including setuid bits), numeric ownership, timestamps, symlinks and hard links, as
    /// rkt's `RenderACI` does.
    pub fn extract(&self, dest: &Path) -> Result<()> {
        let mut archive = tar::Archive::new(&self.tar[..]);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        archive.unpack(dest).map_err(|e| Error::Io {
            op: "extracting image into",
            path: dest.to_path_buf(),
            source: std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())),
        })
    }
}

/// Checks one entry name; returns its first component.
fn check_entry_name(name: &Path) -> std::result::Result<String, String> {
    let mut top = None;
    for c in name.components() {
        match c {
            Component::Normal(part) => {
                if top.is_none() {
                    top = Some(part.to_string_lossy().into_owned());
                }
            }
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("entry {:?} contains '..'", name.display()));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("entry {:?} is an absolute path", name.display()));
            }
        }
    }
    top.ok_or_else(|| format!("empty entry name {:?}", name.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(
            check_entry_name(Path::new("rootfs/bin/sh")).unwrap(),
            "rootfs"
        );
        assert_eq!(
            check_entry_name(Path::new("./manifest")).unwrap(),
            "manifest"
        );
        assert!(check_entry_name(Path::new("/etc/passwd")).is_err());
        assert!(check_entry_name(Path::new("rootfs/../../x")).is_err());
    }
}
