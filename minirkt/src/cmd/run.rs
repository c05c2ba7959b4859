//! `run`, `prepare` and `run-prepared` (rkt `rkt/run.go`, `rkt/prepare.go`,
//! `rkt/run_prepared.go`).

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::statfs::statfs;

use super::{warn, Globals};
use crate::args::RunArgs;
use crate::error::{Context, Error, Result};
use crate::exec::RunFlags;
use crate::pod::Pod;
use crate::prepare::{self, PrepareConfig};
use crate::run::{self, RunConfig};
use crate::state::State;
use crate::store::{Image, Store};

/// The stage1 image used without `--stage1-path`: `stage1-kvm.aci` next to the minirkt
/// binary (rkt's last fallback is `stage1-<flavor>.aci` next to the rkt binary, contract
/// fact 19).
pub fn default_stage1_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().ctx("locating", "/proc/self/exe")?;
    Ok(exe.with_file_name("stage1-kvm.aci"))
}

/// rkt `common.PathSupportsOverlay`: overlay listed in /proc/filesystems and a data
/// directory not on aufs or zfs. `Err` carries the reason overlay is unusable.
fn overlay_supported(dir: &Path) -> std::result::Result<(), String> {
    let fss = fs::read_to_string("/proc/filesystems")
        .map_err(|e| format!("cannot open /proc/filesystems: {e}"))?;
    if !fss.lines().any(|l| l == "nodev\toverlay") {
        return Err("overlay entry not present in /proc/filesystems".into());
    }
    const AUFS: i64 = 0x6175_6673;
    const ZFS: i64 = 0x2fc1_2fc1;
    match statfs(dir) {
        Ok(st) => match st.filesystem_type().0 {
            AUFS => Err("unsupported filesystem: aufs".into()),
            ZFS => Err("unsupported filesystem: zfs".into()),
            _ => Ok(()),
        },
        Err(e) => Err(format!("cannot statfs {:?}: {e}", dir.display())),
    }
}

struct Loaded {
    store: Store,
    stage1: Image,
    apps: Vec<(crate::args::AppSpec, Image)>,
}

/// Imports the stage1 and app images (rkt: `getStage1Hash`, then `FindImages`).
fn load_images(g: &Globals, args: &RunArgs) -> Result<Loaded> {
    let store = g.store()?;
    let s1_path = match &args.stage1_path {
        Some(p) => p.clone(),
        None => default_stage1_path()?,
    };
    let stage1 = store
        .import(&s1_path)
        .map_err(|e| Error::Other(format!("error loading stage1 image: {e}")))?;
    let mut apps = Vec::new();
    for spec in &args.apps {
        let img = store
            .import(Path::new(&spec.image))
            .map_err(|e| Error::Other(format!("error finding images: {e}")))?;
        apps.push((spec.clone(), img));
    }
    Ok(Loaded {
        store,
        stage1,
        apps,
    })
}

/// Creates and prepares a pod; returns it locked in `prepare/` plus the overlay choice.
fn create_and_prepare(
    cmd: &str,
    g: &Globals,
    args: &RunArgs,
    loaded: Loaded,
) -> Result<(Pod, Store, bool)> {
    let pods = g.pods()?;
    let pod =
        Pod::create(&pods).map_err(|e| Error::Other(format!("error creating new pod: {e}")))?;
    if let Some(path) = &args.uuid_file_save {
        fs::write(path, &pod.uuid).ctx("error saving pod UUID to file", path)?;
    }
    let ovl_ok = match overlay_supported(&g.dir) {
        Ok(()) => true,
        Err(reason) => {
            warn(cmd, format!("disabling overlay support: {reason:?}"));
            false
        }
    };
    let use_overlay = !args.no_overlay && ovl_ok;
    let cfg = PrepareConfig {
        store: &loaded.store,
        stage1: &loaded.stage1,
        apps: loaded.apps,
        pod_mounts: &args.mounts,
        volumes: &args.volumes,
        explicit_env: &args.set_env,
        use_overlay,
    };
    prepare::prepare(cfg, &pod.path())
        .map_err(|e| Error::Other(format!("error setting up stage0: {e}")))?;
    Ok((pod, loaded.store, use_overlay))
}

/// `minirkt run`: prepare a new pod, move it to `run/` with the lock held, and exec the
/// stage1 `run` entrypoint. Returns only on failure.
pub fn run(g: &Globals, args: &RunArgs) -> Error {
    match run_inner(g, args) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn run_inner(g: &Globals, args: &RunArgs) -> Result<std::convert::Infallible> {
    let loaded = load_images(g, args)?;
    let (mut pod, store, use_overlay) = create_and_prepare("run", g, args, loaded)?;
    pod.to_run()
        .map_err(|e| Error::Other(format!("unable to transition to run: {e}")))?;
    let manifest = pod
        .manifest()
        .map_err(|e| Error::Other(format!("cannot get the pod manifest: {e}")))?;
    if manifest.apps.is_empty() {
        return Err(Error::Other(
            "pod must contain at least one application".into(),
        ));
    }
    let flags = RunFlags {
        debug: g.debug,
        net: args.net.clone(),
        interactive: args.interactive,
        // rkt run always passes --local-config (contract §2.1 argv table).
        local_config: Some(g.local_config.clone()),
        hostname: args.hostname.clone(),
        insecure_capabilities: g.insecure.capabilities,
        insecure_paths: g.insecure.paths,
        insecure_seccomp: g.insecure.seccomp,
        ipc: args.ipc.clone(),
        ..RunFlags::default()
    };
    let cfg = RunConfig {
        store: &store,
        flags,
        use_overlay,
        apps: manifest.apps,
    };
    Err(run::run(&cfg, &pod))
}

/// `minirkt prepare`: prepare a new pod, leave it unlocked in `prepared/`, print its UUID.
pub fn prepare(g: &Globals, args: &RunArgs) -> Result<()> {
    let loaded = load_images(g, args)?;
    let (mut pod, _store, _) = create_and_prepare("prepare", g, args, loaded)?;
    let dir = fs::File::open(pod.path()).ctx("opening", pod.path())?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir))
        .map_err(|e| Error::Other(format!("error syncing pod data: {e}")))?;
    pod.to_prepared()
        .map_err(|e| Error::Other(format!("error transitioning to prepared: {e}")))?;
    println!("{}", pod.uuid);
    Ok(())
}

/// Flags of `run-prepared`.
#[derive(Debug, Clone, Default)]
pub struct RunPreparedArgs {
    /// The pod (UUID or unambiguous prefix).
    pub uuid: String,
    /// `--net` items.
    pub net: Vec<String>,
    /// `--interactive`.
    pub interactive: bool,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--ipc` (accepted; rkt's run-prepared never passes it on, contract §2.1).
    pub ipc: Option<String>,
}

/// `minirkt run-prepared UUID`. Returns only on failure.
pub fn run_prepared(g: &Globals, args: &RunPreparedArgs) -> Error {
    match run_prepared_inner(g, args) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn run_prepared_inner(g: &Globals, args: &RunPreparedArgs) -> Result<std::convert::Infallible> {
    let pods = g.pods()?;
    let uuid = pods.resolve_uuid(&args.uuid).map_err(|e| {
        Error::Other(format!(
            "problem retrieving pod: unable to resolve UUID: {e}"
        ))
    })?;
    let mut pod = Pod::load(&pods, &uuid)
        .map_err(|e| Error::Other(format!("problem retrieving pod: {e}")))?;
    let store = g.store()?;
    if pod.state() != State::Prepared {
        return Err(Error::Other(format!("pod {:?} is not prepared", pod.uuid)));
    }
    let manifest = pod
        .manifest()
        .map_err(|e| Error::Other(format!("cannot read pod manifest: {e}")))?;
    if args.interactive && manifest.apps.len() > 1 {
        return Err(Error::Other(
            "interactive option only supports pods with one app".into(),
        ));
    }
    pod.to_run()
        .map_err(|e| Error::Other(format!("cannot transition to run: {e}")))?;
    let ovl_prep = pod.uses_overlay();
    if ovl_prep {
        if let Err(reason) = overlay_supported(&g.dir) {
            warn(
                "run-prepared",
                format!("disabling overlay support: {reason:?}"),
            );
            return Err(Error::Other(
                "unable to run prepared overlay-enabled pod: overlay not supported".into(),
            ));
        }
    }
    let flags = RunFlags {
        debug: g.debug,
        net: args.net.clone(),
        interactive: args.interactive,
        // rkt's run-prepared sets neither LocalConfig nor IPCMode (contract §2.1).
        local_config: None,
        ipc: None,
        hostname: args.hostname.clone(),
        insecure_capabilities: g.insecure.capabilities,
        insecure_paths: g.insecure.paths,
        insecure_seccomp: g.insecure.seccomp,
        ..RunFlags::default()
    };
    let cfg = RunConfig {
        store: &store,
        flags,
        use_overlay: ovl_prep,
        apps: manifest.apps,
    };
    Err(run::run(&cfg, &pod))
}
