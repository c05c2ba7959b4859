//! The image store under `<datadir>/cas`, laid out like rkt's:
//!
//! ```text
//! cas/blob/sha512/<xx>/<image id>     the image as an uncompressed tar
//! cas/imageManifest/<image id>        the image manifest, re-marshalled as rkt stores it
//! cas/tree/<treeStoreID>/manifest     rendered image (rkt's tree store)
//! cas/tree/<treeStoreID>/rootfs/
//! cas/tree/<treeStoreID>/{rendered,image}
//! cas/treestorelocks/<treeStoreID>    key lock held while rendering
//! ```
//!
//! The tree store copy of the stage1 image is where `enter` is exec'd from (contract
//! fact 9) and the lower layer of every overlay mount (contract §3.2).

use std::fmt::Write as _;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha512};

use crate::aci::Aci;
use crate::error::{Context, Error, Result};
use crate::lock::Lock;
use crate::manifest::ImageManifest;

/// rkt keys its store with the first half of a sha512 in hex (`store/treestore/tree.go`
/// `hashToKey`: `lenHashKey = (sha512.Size / 2) * 2` hex characters).
const KEY_HEX_LEN: usize = 64;

/// An image found in (or just imported into) the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha512-<64 hex>`: the store key and the pod manifest's `image.id`.
    pub id: String,
    /// Its parsed manifest.
    pub manifest: ImageManifest,
}

/// The store of a data directory.
#[derive(Debug, Clone)]
pub struct Store {
    cas: PathBuf,
}

fn sha512_key(data: &[u8]) -> String {
    let digest = Sha512::digest(data);
    let mut hex = String::with_capacity(128);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    format!("sha512-{}", &hex[..KEY_HEX_LEN])
}

fn mkdir_p(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .ctx("creating directory", path)
}

impl Store {
    /// Opens the store of `data_dir`, creating its directories.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let cas = data_dir.join("cas");
        for sub in ["blob/sha512", "imageManifest", "tree", "treestorelocks"] {
            mkdir_p(&cas.join(sub), 0o755)?;
        }
        Ok(Store { cas })
    }

    fn blob_path(&self, id: &str) -> PathBuf {
        let shard = id.strip_prefix("sha512-").unwrap_or(id);
        self.cas
            .join("blob/sha512")
            .join(&shard[..2.min(shard.len())])
            .join(id)
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.cas.join("imageManifest").join(id)
    }

    /// Imports an ACI file: checks it, validates its manifest (appc schema), refuses
    /// dependencies (minirkt has no discovery to fetch them), and stores it under its
    /// image ID (sha512 of the uncompressed tar, as rkt's store).
    pub fn import(&self, aci_path: &Path) -> Result<Image> {
        let aci = Aci::open(aci_path)?;
        let manifest_bytes = aci.manifest_bytes()?;
        let manifest = ImageManifest::parse(&manifest_bytes).map_err(|reason| Error::Manifest {
            kind: "image manifest",
            path: aci_path.to_path_buf(),
            reason,
        })?;
        if !manifest.dependencies.is_empty() {
            return Err(Error::Aci {
                path: aci_path.to_path_buf(),
                reason: "image dependencies are not supported by minirkt".into(),
            });
        }
        let id = sha512_key(aci.tar_bytes());
        let blob = self.blob_path(&id);
        if !blob.exists() {
            if let Some(parent) = blob.parent() {
                mkdir_p(parent, 0o755)?;
            }
            write_atomic(&blob, aci.tar_bytes())?;
        }
        // rkt stores `json.Marshal` of the parsed manifest, not the bytes of the ACI
        // (store/imagestore/store.go `WriteACI`): appc field order, unknown fields dropped.
        let normalized = serde_json::to_vec(&manifest).map_err(|e| Error::Manifest {
            kind: "image manifest",
            path: aci_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.manifest_path(&id), &normalized)?;
        Ok(Image { id, manifest })
    }

    /// The manifest bytes stored for `id` (what rkt writes to `stage1/manifest` and
    /// `appsinfo/<app>/manifest`, `stage0/run.go` `writeManifest`).
    pub fn manifest_json(&self, id: &str) -> Result<Vec<u8>> {
        let path = self.manifest_path(id);
        fs::read(&path).ctx("reading image manifest", &path)
    }

    fn aci(&self, id: &str) -> Result<Aci> {
        let blob = self.blob_path(id);
        let tar = fs::read(&blob).ctx("reading image", &blob)?;
        Aci::from_checked_tar(&blob, tar)
    }

    /// Renders the image (manifest + rootfs) into `dest` (non-overlay app rendering,
    /// `aci.RenderACIWithImageID`).
    pub fn render_into(&self, id: &str, dest: &Path) -> Result<()> {
        self.aci(id)?.extract(dest)
    }

    /// The tree store ID of an image without dependencies: `deps-` + the store key of
    /// the sha512 of the image key (`store/treestore/tree.go` `GetID`).
    pub fn tree_store_id(id: &str) -> String {
        format!("deps-{}", sha512_key(id.as_bytes()))
    }

    /// `cas/tree/<treeStoreID>`.
    pub fn tree_path(&self, tree_id: &str) -> PathBuf {
        self.cas.join("tree").join(tree_id)
    }

    /// `cas/tree/<treeStoreID>/rootfs` (rkt `treestore.GetRootFS`).
    pub fn tree_rootfs(&self, tree_id: &str) -> PathBuf {
        self.tree_path(tree_id).join("rootfs")
    }

    /// Renders the image into the tree store unless already rendered, under the tree
    /// store key lock (`treestore.Render`). Returns the tree store ID.
    pub fn render_tree(&self, id: &str) -> Result<String> {
        let tree_id = Self::tree_store_id(id);
        let lock = Lock::open_file(&self.cas.join("treestorelocks").join(&tree_id))?;
        lock.exclusive()?;
        let tree = self.tree_path(&tree_id);
        if tree.join("rendered").exists() {
            return Ok(tree_id);
        }
        // A partial render (interrupted earlier) is removed first, as rkt does.
        if tree.exists() {
            fs::remove_dir_all(&tree).ctx("removing partial tree", &tree)?;
        }
        mkdir_p(&tree, 0o755)?;
        self.aci(id)?.extract(&tree)?;
        let dir = fs::File::open(&tree).ctx("opening", &tree)?;
        nix::unistd::syncfs(dir.as_raw_fd()).ctx("syncing filesystem of", &tree)?;
        let rendered = tree.join("rendered");
        fs::File::create(&rendered).ctx("creating", &rendered)?;
        let image = tree.join("image");
        fs::write(&image, id).ctx("writing", &image)?;
        Ok(tree_id)
    }
}

/// Writes `data` to a temporary sibling of `path` and renames it into place.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, data).ctx("writing", &tmp)?;
    fs::rename(&tmp, path).ctx("renaming into place", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_rkt_length() {
        let k = sha512_key(b"");
        assert_eq!(k.len(), "sha512-".len() + 64);
        assert!(k.starts_with("sha512-cf83e1357eefb8bd"));
        assert!(Store::tree_store_id(&k).starts_with("deps-sha512-"));
    }
}
