//! Running a prepared pod: overlay mounts, the environment, chdir, the exact argv, and
//! exec of the stage1 `run` entrypoint (rkt `stage0.Run`, contract §2.1).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::cmd::warn;
use crate::error::{Context, Error, Result};
use crate::exec::{self, RunFlags};
use crate::manifest::RuntimeApp;
use crate::mountinfo;
use crate::pod::{files, Pod};
use crate::prepare::{app_dir, app_info_dir, stage1_rootfs};
use crate::render::{self, DIR_PERM};
use crate::store::Store;

/// What `run` needs (rkt `stage0.RunConfig`, the parts minirkt supports).
#[derive(Debug)]
pub struct RunConfig<'a> {
    /// The image store (tree store rootfs are the overlay lower layers).
    pub store: &'a Store,
    /// Flags that decide the argv.
    pub flags: RunFlags,
    /// Overlay mode.
    pub use_overlay: bool,
    /// The apps of the pod manifest.
    pub apps: Vec<RuntimeApp>,
}

/// Sets up the pod and execs the stage1 `run` entrypoint; the pod must be in `run/`
/// with its lock held. Returns only on failure — then every mount made here has been
/// removed again (rkt leaves them for gc; minirkt cleans up so a failed start leaves
/// nothing mounted) and the pod is left in `run/` unlocked, i.e. `exited`.
pub fn run(cfg: &RunConfig<'_>, pod: &Pod) -> Error {
    let pod_dir = pod.path();
    let err = match setup_and_exec(cfg, pod, &pod_dir) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if let Err(cleanup) = mountinfo::unmount_all_under(&pod_dir.join("stage1")) {
        eprintln!("minirkt: cleaning up mounts after a failed start: {cleanup}");
    }
    err
}

fn setup_and_exec(
    cfg: &RunConfig<'_>,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<std::convert::Infallible> {
    let rkt_gid = render::rkt_gid();
    if cfg.use_overlay && rkt_gid.is_none() {
        warn(
            "run",
            "group \"rkt\" not found, will use default gid when rendering images",
        );
    }
    setup_stage1(cfg, pod_dir, rkt_gid)
        .map_err(|e| Error::Other(format!("error setting up stage1: {e}")))?;
    for app in &cfg.apps {
        setup_app(cfg, pod_dir, &app.name, rkt_gid)
            .map_err(|e| Error::Other(format!("error setting up app image: {e}")))?;
    }
    // Contract §2.1 step 6: chdir($pod); the entrypoint finds the pod as ".".
    std::env::set_current_dir(pod_dir).ctx("failed changing to dir", pod_dir)?;
    let manifest = exec::stage1_manifest(pod_dir)?;
    let ep = exec::entrypoint(&manifest, exec::RUN_ENTRYPOINT)
        .map_err(|e| Error::Other(format!("error determining 'run' entrypoint: {e}")))?;
    let version = exec::interface_version(&manifest)
        .map_err(|e| Error::Other(format!("error determining stage1 interface version: {e}")))?;
    let ep_path = exec::join_rootfs(&stage1_rootfs(pod_dir), &ep);
    let argv = exec::run_argv(&ep_path, version, &cfg.flags, &pod.uuid);
    for w in &argv.warnings {
        warn("run", w);
    }
    // Contract §2.1 step 7: the lock fd must survive exec (fact 3).
    pod.lock().keep_across_exec()?;
    // Contract §2.1 step 5: the complete environment plus these three.
    let env: [(&str, OsString); 3] = [
        ("RKT_LOCK_FD", pod.lock().raw_fd().to_string().into()),
        ("RKT_SELINUX_CONTEXT", OsString::new()),
        ("RKT_SELINUX_MOUNT_CONTEXT", OsString::new()),
    ];
    if cfg.flags.debug {
        warn("run", format!("Execing {:?}", argv.argv));
    }
    let err = exec::exec_replace(&argv.argv, &env);
    Err(Error::Other(format!("error execing init: {err}")))
}

/// rkt `setupStage1Image`: overlay-mounts the tree store rootfs at `$s1` and touches
/// `$s1/rkt/status`, failing if it is missing (contract fact 6). Nothing to do without
/// overlay (the copy was made at prepare).
fn setup_stage1(cfg: &RunConfig<'_>, pod_dir: &Path, rkt_gid: Option<u32>) -> Result<()> {
    if !cfg.use_overlay {
        return Ok(());
    }
    let id_path = pod_dir.join(files::STAGE1_TREE_STORE_ID);
    let tree_id = fs::read_to_string(&id_path).ctx("reading", &id_path)?;
    let lower = cfg.store.tree_rootfs(&tree_id);
    render::prepare_overlay(
        &lower,
        &tree_id,
        pod_dir,
        &pod_dir.join("stage1"),
        "",
        rkt_gid,
    )
    .map_err(|e| Error::Other(format!("problem preparing overlay directories: {e}")))?
    .mount()?;
    // "we will later read the status from the upper layer of the overlay fs; force the
    // status directory to be there by touching it" (stage0/run.go).
    let status = stage1_rootfs(pod_dir).join("rkt/status");
    utimensat(
        None,
        &status,
        &TimeSpec::UTIME_NOW,
        &TimeSpec::UTIME_NOW,
        UtimensatFlags::FollowSymlink,
    )
    .ctx("error touching status dir", &status)
}

/// rkt `setupAppImage`: overlay mode mounts the app's tree store rootfs at
/// `$s1/opt/stage2/<app>/rootfs` and copies its manifest; both modes add the mtab link.
fn setup_app(cfg: &RunConfig<'_>, pod_dir: &Path, app: &str, rkt_gid: Option<u32>) -> Result<()> {
    let ad = app_dir(pod_dir, app);
    if cfg.use_overlay {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_PERM)
            .create(&ad)
            .ctx("error creating image directory", &ad)?;
        let info = app_info_dir(pod_dir, app);
        let id_path = info.join(files::APP_TREE_STORE_ID);
        let tree_id = fs::read_to_string(&id_path).ctx("reading", &id_path)?;
        let src = info.join("manifest");
        fs::copy(&src, ad.join("manifest")).ctx("error copying image manifest", &src)?;
        render::prepare_overlay(
            &cfg.store.tree_rootfs(&tree_id),
            &tree_id,
            pod_dir,
            &ad,
            app,
            rkt_gid,
        )
        .map_err(|e| Error::Other(format!("problem preparing overlay directories: {e}")))?
        .mount()?;
    }
    render::ensure_mtab(&ad.join("rootfs"))
}
