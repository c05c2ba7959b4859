//! `minirkt enter [--app=NAME] UUID [CMD…]` (rkt `rkt/enter.go`, `stage0/enter.go`,
//! contract §2.2).

use super::{warn, Globals};
use crate::error::{Context, Error, Result};
use crate::exec;
use crate::pod::Pod;
use crate::state::State;

/// rkt's default command for enter.
pub const DEFAULT_CMD: &str = "/bin/bash";

/// Resolves the pod, its PID and app, then execs the `enter` entrypoint **from the tree
/// store copy of the stage1** (contract fact 9) with cwd `$pod`. Returns only on failure.
pub fn enter(g: &Globals, app: Option<&str>, uuid: &str, cmd: &[String]) -> Error {
    match enter_inner(g, app, uuid, cmd) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn enter_inner(
    g: &Globals,
    app: Option<&str>,
    uuid: &str,
    cmd: &[String],
) -> Result<std::convert::Infallible> {
    let pods = g.pods()?;
    let mut pod = pods
        .resolve_uuid(uuid)
        .and_then(|u| Pod::load(&pods, &u))
        .map_err(|e| Error::Other(format!("problem retrieving pod: {e}")))?;
    if pod.state() != State::Running {
        return Err(Error::Other(format!(
            "pod {:?} isn't currently running",
            pod.uuid
        )));
    }
    let pid = pod.container_pid1().map_err(|e| {
        Error::Other(format!(
            "unable to determine the pid for pod {:?}: {e}",
            pod.uuid
        ))
    })?;
    let app_name = app_name(&pod, app)
        .map_err(|e| Error::Other(format!("unable to determine app name: {e}")))?;
    let argv: Vec<String> = if cmd.is_empty() {
        warn(
            "enter",
            format!("no command specified, assuming {DEFAULT_CMD:?}"),
        );
        vec![DEFAULT_CMD.to_string()]
    } else {
        cmd.to_vec()
    };
    let store = g.store()?;
    let tree_id = pod
        .stage1_tree_store_id()
        .map_err(|e| Error::Other(format!("error getting stage1 treeStoreID: {e}")))?;
    let stage1_rootfs = store.tree_rootfs(&tree_id);
    let pod_dir = pod.path();
    std::env::set_current_dir(&pod_dir).ctx("error changing to dir", &pod_dir)?;
    let manifest = exec::stage1_manifest(&pod_dir)?;
    let ep = exec::entrypoint(&manifest, exec::ENTER_ENTRYPOINT).map_err(|e| {
        Error::Other(format!(
            "enter failed: error determining 'enter' entrypoint: {e}"
        ))
    })?;
    let full = exec::enter_argv(
        &exec::join_rootfs(&stage1_rootfs, &ep),
        pid,
        &app_name,
        &argv,
    );
    let err = exec::exec_replace(&full, &[]);
    Err(Error::Other(format!(
        "enter failed: error execing enter: {err}"
    )))
}

/// `--app`, else the only app of the pod, else an error listing the apps.
fn app_name(pod: &Pod, app: Option<&str>) -> Result<String> {
    if let Some(a) = app {
        if !crate::manifest::is_ac_name(a) {
            return Err(Error::Usage(format!("invalid app name {a:?}")));
        }
        return Ok(a.to_string());
    }
    let m = pod.manifest()?;
    match m.apps.as_slice() {
        [] => Err(Error::Other("pod contains zero apps".into())),
        [one] => Ok(one.name.clone()),
        many => {
            warn("enter", "pod contains multiple apps:");
            for a in many {
                warn("enter", format!("\t{}", a.name));
            }
            Err(Error::Other(
                "specify app using \"rkt enter --app= ...\"".into(),
            ))
        }
    }
}
