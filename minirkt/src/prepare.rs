//! Preparing a pod directory: the stage1 image, every app image, and the pod manifest
//! (rkt `stage0.Prepare`, contract §3.2 "Created at prepare").

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::args::AppSpec;
use crate::error::{Context, Error, Result};
use crate::manifest::{self, App, Mount, NameValue, PodManifest, RuntimeApp, RuntimeImage, Volume};
use crate::pod::files;
use crate::render::{copy_tree, DIR_PERM};
use crate::store::{Image, Store};

/// rkt's `common.DefaultRegularFilePerm`.
pub const FILE_PERM: u32 = 0o640;

/// What `prepare` needs (rkt `stage0.PrepareConfig`, the parts minirkt supports).
#[derive(Debug)]
pub struct PrepareConfig<'a> {
    /// The image store.
    pub store: &'a Store,
    /// The stage1 image (already imported).
    pub stage1: &'a Image,
    /// Apps with their imported images, in command-line order.
    pub apps: Vec<(AppSpec, Image)>,
    /// `--mount`s given before any image.
    pub pod_mounts: &'a [Mount],
    /// `--volume`s.
    pub volumes: &'a [Volume],
    /// `--set-env`s.
    pub explicit_env: &'a [(String, String)],
    /// Overlay (default) or full copies (`--no-overlay`).
    pub use_overlay: bool,
}

/// `$pod/stage1/rootfs`.
pub fn stage1_rootfs(pod_dir: &Path) -> PathBuf {
    pod_dir.join("stage1/rootfs")
}

/// `$s1/opt/stage2/<app>` (contract fact 7).
pub fn app_dir(pod_dir: &Path, app: &str) -> PathBuf {
    stage1_rootfs(pod_dir).join("opt/stage2").join(app)
}

/// `$pod/appsinfo/<app>`.
pub fn app_info_dir(pod_dir: &Path, app: &str) -> PathBuf {
    pod_dir.join("appsinfo").join(app)
}

fn mkdir_all(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .ctx("creating directory", path)
}

/// Writes a file with `mode` (subject to the umask, like Go's `ioutil.WriteFile`).
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .ctx("writing", path)?;
    f.write_all(data).ctx("writing", path)
}

/// rkt `stage0.Prepare`: `appsinfo/`, the stage1 image, each app, the pod manifest,
/// `pod.lck`, `pod`, `pod-created` and (overlay) `overlay-prepared`.
pub fn prepare(cfg: PrepareConfig<'_>, pod_dir: &Path) -> Result<()> {
    mkdir_all(&pod_dir.join("appsinfo"), DIR_PERM)?;
    prepare_stage1(&cfg, pod_dir)
        .map_err(|e| Error::Other(format!("error preparing stage1: {e}")))?;
    let manifest = generate_pod_manifest(&cfg, pod_dir)?;
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::Other(format!("error marshalling pod manifest: {e}")))?;
    write_file(&pod_dir.join(files::POD_LOCK), b"", 0o600)?;
    write_file(&pod_dir.join(files::POD_MANIFEST), &bytes, FILE_PERM)?;
    write_file(&pod_dir.join(files::POD_CREATED), b"", FILE_PERM)?;
    if cfg.use_overlay {
        write_file(&pod_dir.join(files::OVERLAY_PREPARED), b"", 0o666)?;
    }
    Ok(())
}

/// rkt `prepareStage1Image`: renders the stage1 into the tree store, writes
/// `stage1/manifest`, copies the tree to `stage1/rootfs` without overlay, and records
/// `stage1TreeStoreID`.
fn prepare_stage1(cfg: &PrepareConfig<'_>, pod_dir: &Path) -> Result<()> {
    let s1 = pod_dir.join("stage1");
    mkdir_all(&s1, DIR_PERM)?;
    let tree_id = cfg.store.render_tree(&cfg.stage1.id)?;
    let manifest = cfg.store.manifest_json(&cfg.stage1.id)?;
    write_file(&s1.join("manifest"), &manifest, FILE_PERM)?;
    if !cfg.use_overlay {
        copy_tree(&cfg.store.tree_rootfs(&tree_id), &s1.join("rootfs"))
            .map_err(|e| Error::Other(format!("error rendering ACI: {e}")))?;
    }
    write_file(
        &pod_dir.join(files::STAGE1_TREE_STORE_ID),
        tree_id.as_bytes(),
        FILE_PERM,
    )
}

/// rkt `prepareAppImage`: os/arch label checks, `appsinfo/<app>/`, the tree store render
/// (overlay; `appsinfo/<app>/treeStoreID`) or a full render into `$s1/opt/stage2/<app>`,
/// and `appsinfo/<app>/manifest`.
fn prepare_app_image(
    cfg: &PrepareConfig<'_>,
    app: &str,
    image: &Image,
    pod_dir: &Path,
) -> Result<()> {
    image.manifest.check_app_os_arch().map_err(Error::Other)?;
    let info = app_info_dir(pod_dir, app);
    mkdir_all(&info, DIR_PERM)?;
    if cfg.use_overlay {
        let tree_id = cfg.store.render_tree(&image.id)?;
        write_file(
            &info.join(files::APP_TREE_STORE_ID),
            tree_id.as_bytes(),
            FILE_PERM,
        )?;
    } else {
        let ad = app_dir(pod_dir, app);
        mkdir_all(&ad, DIR_PERM)?;
        nix::unistd::chown(
            &ad,
            Some(nix::unistd::getuid()),
            Some(nix::unistd::getgid()),
        )
        .ctx("error shifting app's stage2 dir", &ad)?;
        cfg.store
            .render_into(&image.id, &ad)
            .map_err(|e| Error::Other(format!("error rendering ACI: {e}")))?;
    }
    let manifest = cfg.store.manifest_json(&image.id)?;
    write_file(&info.join("manifest"), &manifest, FILE_PERM)
}

/// rkt `MergeMounts`: per-app mounts first, then pod mounts; the first mount of each
/// cleaned path wins.
fn merge_mounts(pod: &[Mount], app: &[Mount]) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for m in app.iter().chain(pod) {
        let clean = crate::exec::join_rootfs(Path::new(""), &m.path);
        if !seen.contains(&clean) {
            seen.push(clean);
            out.push(m.clone());
        }
    }
    out
}

/// rkt `generateRuntimeApp`: the image's app section with `--exec`, arguments and
/// `--environment` applied.
fn runtime_app(spec: &AppSpec, name: &str, image: &Image, pod_mounts: &[Mount]) -> RuntimeApp {
    let mut app = image.manifest.app.clone();
    if let Some(exec) = &spec.exec {
        let a = app.get_or_insert_with(|| App {
            exec: None,
            event_handlers: Vec::new(),
            user: nix::unistd::getuid().to_string(),
            group: nix::unistd::getgid().to_string(),
            supplementary_gids: Vec::new(),
            working_directory: String::new(),
            environment: Vec::new(),
            mount_points: Vec::new(),
            ports: Vec::new(),
            isolators: Vec::new(),
            user_annotations: Default::default(),
            user_labels: Default::default(),
        });
        a.exec = Some(vec![exec.clone()]);
    }
    if let (Some(args), Some(a)) = (&spec.args, app.as_mut()) {
        a.exec
            .get_or_insert_with(Vec::new)
            .extend(args.iter().cloned());
    }
    if let Some(a) = app.as_mut() {
        for (k, v) in &spec.environment {
            manifest::set(&mut a.environment, k, v);
        }
    }
    RuntimeApp {
        name: name.to_string(),
        image: RuntimeImage {
            name: Some(image.manifest.name.clone()),
            id: image.id.clone(),
            labels: image.manifest.labels.clone(),
        },
        app,
        read_only_root_fs: false,
        mounts: merge_mounts(pod_mounts, &spec.mounts),
        annotations: Vec::new(),
    }
}

/// rkt `generatePodManifest`.
fn generate_pod_manifest(cfg: &PrepareConfig<'_>, pod_dir: &Path) -> Result<PodManifest> {
    let mut apps: Vec<RuntimeApp> = Vec::new();
    for (spec, image) in &cfg.apps {
        let name = match &spec.name {
            Some(n) => n.clone(),
            None => manifest::image_name_to_app_name(&image.manifest.name).ok_or_else(|| {
                Error::Other(format!(
                    "error converting image name to app name: {:?} must contain at least one valid character",
                    image.manifest.name
                ))
            })?,
        };
        if !manifest::is_ac_name(&name) {
            return Err(Error::Other(format!("invalid app name format: {name:?}")));
        }
        prepare_app_image(cfg, &name, image, pod_dir)
            .map_err(|e| Error::Other(format!("error preparing image {}: {e}", image.id)))?;
        if apps.iter().any(|a| a.name == name) {
            return Err(Error::Other(format!(
                "error: multiple apps with name {name}"
            )));
        }
        if image.manifest.app.is_none() && spec.exec.is_none() {
            return Err(Error::Other(format!(
                "error: image {} has no app section and --exec argument is not provided",
                image.id
            )));
        }
        let mut ra = runtime_app(spec, &name, image, cfg.pod_mounts);
        if let Some(a) = ra.app.as_mut() {
            for (k, v) in cfg.explicit_env {
                manifest::set(&mut a.environment, k, v);
            }
        }
        apps.push(ra);
    }
    Ok(PodManifest {
        ac_version: manifest::RKT_VERSION.to_string(),
        ac_kind: manifest::POD_MANIFEST_KIND.to_string(),
        apps,
        volumes: (!cfg.volumes.is_empty()).then(|| cfg.volumes.to_vec()),
        isolators: None,
        annotations: Some(vec![NameValue {
            name: "coreos.com/rkt/stage1/mutable".into(),
            value: "false".into(),
        }]),
        ports: None,
        user_annotations: Default::default(),
        user_labels: Default::default(),
    })
}
