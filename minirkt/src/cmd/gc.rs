//! `gc` and `rm` (rkt `rkt/gc.go`, `rkt/rm.go`, `stage0/gc.go`; contract §2.3, §3.1).

use std::fs;
use std::time::{Duration, SystemTime};

use super::{warn, Globals};
use crate::error::{Error, Result, EXIT_FAILURE};
use crate::exec::{self, ChildStdout};
use crate::mountinfo;
use crate::pod::{Pod, Pods};
use crate::prepare::stage1_rootfs;
use crate::render::OverlayMount;
use crate::state::{Dir, State};
use crate::store::Store;

/// Parses a Go duration (`30m0s`, `0s`, `1.5h`, `100ms`, `0`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += num * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// rkt `WalkPods`: loads every pod in `dir` (sorted), skipping unreadable ones and pods
/// that moved to another directory meanwhile.
fn walk(pods: &Pods, dir: Dir, mut f: impl FnMut(Pod)) -> Result<()> {
    for uuid in pods.list(&[dir])? {
        match Pod::load(pods, &uuid) {
            Ok(p) if p.dir() == dir => f(p),
            Ok(_) => {}
            Err(e) => eprintln!("skipping {uuid:?}: {e}"),
        }
    }
    Ok(())
}

fn older_than(pod: &Pod, period: Duration) -> bool {
    match pod.ctime() {
        Ok(ctime) => SystemTime::now() > ctime + period,
        Err(e) => {
            warn(
                "gc",
                format!("unable to stat {:?}, ignoring: {e}", pod.path()),
            );
            false
        }
    }
}

/// `minirkt gc [--grace-period=D] [--expire-prepared=D] [--mark-only]`.
pub fn gc(
    g: &Globals,
    grace: Duration,
    grace_text: &str,
    expire: Duration,
    mark_only: bool,
) -> Result<u8> {
    let pods = g.pods()?;
    let store = g.store()?;
    // Pass 1, mark: exited pods → exited-garbage, aborted prepares → garbage.
    walk(&pods, Dir::Run, |mut p| {
        if p.state() == State::Exited {
            warn("gc", format!("moving pod {:?} to garbage", p.uuid));
            if let Err(e) = p.to_exited_garbage() {
                warn("gc", format!("rename error: {e}"));
            }
        }
    })?;
    walk(&pods, Dir::Prepare, |mut p| {
        if p.state() == State::AbortedPrepare {
            warn(
                "gc",
                format!("moving failed prepare {:?} to garbage", p.uuid),
            );
            if let Err(e) = p.to_garbage() {
                warn("gc", format!("rename error: {e}"));
            }
        }
    })?;
    if mark_only {
        return Ok(0);
    }
    walk(&pods, Dir::Prepared, |mut p| {
        if older_than(&p, expire) {
            warn(
                "gc",
                format!("moving expired prepared pod {:?} to garbage", p.uuid),
            );
            if let Err(e) = p.to_garbage() {
                warn("gc", format!("rename error: {e}"));
            }
        }
    })?;
    // Pass 2, sweep: exited garbage past the grace period (with stage1 gc), all garbage.
    walk(&pods, Dir::ExitedGarbage, |mut p| {
        if older_than(&p, grace) {
            if p.lock_for_delete().is_err() {
                return;
            }
            println!("Garbage collecting pod {:?}", p.uuid);
            delete_pod(g, &store, &p);
        } else {
            warn(
                "gc",
                format!(
                    "pod {:?} not removed: still within grace period ({grace_text})",
                    p.uuid
                ),
            );
        }
    })?;
    walk(&pods, Dir::Garbage, |mut p| {
        if p.lock_for_delete().is_err() {
            return;
        }
        println!("Garbage collecting pod {:?}", p.uuid);
        delete_pod(g, &store, &p);
    })?;
    Ok(0)
}

/// rkt `mountPodStage1`: for an overlay pod whose stage1 overlay is gone (e.g. after a
/// reboot), mounts it again so the gc entrypoint finds `$s1`. Returns whether it mounted.
fn remount_stage1(store: &Store, pod: &Pod) -> Result<bool> {
    if !pod.uses_overlay() {
        return Ok(false);
    }
    let dest = stage1_rootfs(&pod.path());
    if mountinfo::is_mount_point(&dest)? {
        return Ok(false);
    }
    let id = pod.stage1_tree_store_id()?;
    let img_dir = pod.path().join("overlay").join(&id);
    let m = OverlayMount {
        lower: store.tree_rootfs(&id),
        upper: img_dir.join("upper"),
        work: img_dir.join("work"),
        dest,
    };
    m.mount()
        .map_err(|e| Error::Other(format!("error mounting stage1: {e}")))?;
    Ok(true)
}

/// Runs the stage1 `gc` entrypoint (fork+wait, cwd the pod in exited-garbage, stdout
/// discarded, stderr inherited; contract §2.3).
fn stage1_gc(g: &Globals, pod: &Pod) -> Result<()> {
    let dir = pod.path();
    let manifest = exec::stage1_manifest(&dir)?;
    let version = exec::interface_version(&manifest)
        .map_err(|e| Error::Other(format!("Could not determine stage1 version: {e}")))?;
    let ep = exec::entrypoint(&manifest, exec::GC_ENTRYPOINT)
        .map_err(|e| Error::Other(format!("error determining 'gc' entrypoint: {e}")))?;
    let argv = exec::gc_argv(
        &exec::join_rootfs(&stage1_rootfs(&dir), &ep),
        version,
        g.debug,
        Some(&g.local_config),
        &pod.uuid,
    );
    let status = exec::run_child(&argv, &dir, ChildStdout::Null)?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Other(status.to_string()))
    }
}

/// rkt `deletePod`: for an exited pod, re-mount stage1 if needed, run the stage1 gc
/// (its failure is logged and ignored), unmount everything under the pod; then remove
/// the stage1 rootfs (overlay: the upper dir) and the pod directory. The pod must be
/// locked exclusively. Returns whether the pod is gone.
pub fn delete_pod(g: &Globals, store: &Store, pod: &Pod) -> bool {
    let state = pod.state();
    if !matches!(
        state,
        State::ExitedGarbage | State::Garbage | State::ExitedDeleting
    ) {
        warn(
            "gc",
            format!(
                "non-garbage pod {:?} (status {:?}), skipped",
                pod.uuid,
                state.to_string()
            ),
        );
        return false;
    }
    let path = pod.path();
    if state == State::ExitedGarbage {
        match remount_stage1(store, pod) {
            Ok(new_mount) => {
                if let Err(e) = stage1_gc(g, pod) {
                    warn(
                        "gc",
                        format!("problem performing stage1 GC on {:?}: {e}", pod.uuid),
                    );
                }
                if new_mount {
                    let s1 = stage1_rootfs(&path);
                    if let Err(e) = nix::mount::umount(&s1) {
                        if e != nix::errno::Errno::EBUSY {
                            warn("gc", format!("error unmounting stage1: {e}"));
                        }
                    }
                }
            }
            Err(e) => warn("gc", format!("skipping stage1 GC: {e}")),
        }
        if let Err(e) = mountinfo::unmount_all_under(&path) {
            warn(
                "gc",
                format!("GC of leftover mounts for pod {:?} failed: {e}", pod.uuid),
            );
            return false;
        }
    }
    // Never recurse into a mount (a leftover bind mount could be a host directory).
    match mountinfo::mounts_under(&path) {
        Ok(m) if m.is_empty() => {}
        Ok(m) => {
            warn(
                "gc",
                format!(
                    "unable to remove pod {:?}: still mounted: {}",
                    pod.uuid,
                    m[0].mount_point.display()
                ),
            );
            return false;
        }
        Err(e) => {
            warn("gc", format!("unable to remove pod {:?}: {e}", pod.uuid));
            return false;
        }
    }
    if let Ok(rootfs) = pod.stage1_rootfs_for_reading() {
        if let Err(e) = remove_all(&rootfs) {
            warn(
                "gc",
                format!("unable to remove pod rootfs {:?}: {e}", pod.uuid),
            );
            return false;
        }
    }
    if let Err(e) = remove_all(&path) {
        warn("gc", format!("unable to remove pod {:?}: {e}", pod.uuid));
        return false;
    }
    true
}

/// Go's `os.RemoveAll`: a missing path is not an error.
fn remove_all(path: &std::path::Path) -> std::io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// `minirkt rm UUID…` (rkt `runRm`/`removePod`): like gc for one pod, at once.
pub fn rm(g: &Globals, uuids: &[String]) -> Result<u8> {
    let pods = g.pods()?;
    let store = g.store()?;
    let mut ret = 0;
    for u in uuids {
        let mut pod = match pods.resolve_uuid(u).and_then(|u| Pod::load(&pods, &u)) {
            Ok(p) => p,
            Err(e) => {
                warn("rm", format!("cannot get pod: {e}"));
                ret = EXIT_FAILURE;
                continue;
            }
        };
        let moved = match pod.state() {
            State::Running => Err(format!("pod {:?} is currently running", pod.uuid)),
            State::Embryo | State::Preparing => {
                Err(format!("pod {:?} is currently being prepared", pod.uuid))
            }
            State::Deleting => Err(format!("pod {:?} is currently being deleted", pod.uuid)),
            State::AbortedPrepare => {
                warn(
                    "rm",
                    format!("moving failed prepare {:?} to garbage", pod.uuid),
                );
                pod.to_garbage().map_err(|e| format!("rename error: {e}"))
            }
            State::Prepared => {
                warn(
                    "rm",
                    format!("moving expired prepared pod {:?} to garbage", pod.uuid),
                );
                pod.to_garbage().map_err(|e| format!("rename error: {e}"))
            }
            State::Exited => pod
                .to_exited_garbage()
                .map_err(|e| format!("rename error: {e}")),
            State::ExitedGarbage | State::Garbage | State::ExitedDeleting => Ok(()),
        };
        if let Err(msg) = moved {
            warn("rm", msg);
            ret = EXIT_FAILURE;
            continue;
        }
        if let Err(e) = pod.lock_for_delete() {
            warn("rm", format!("unable to acquire exclusive lock: {e}"));
            ret = EXIT_FAILURE;
            continue;
        }
        if delete_pod(g, &store, &pod) {
            println!("{:?}", pod.uuid);
        } else {
            ret = EXIT_FAILURE;
        }
    }
    if ret != 0 {
        warn("rm", "failed to remove one or more pods");
    }
    Ok(ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("30m0s"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration("5x"), None);
    }
}
