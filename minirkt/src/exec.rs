//! Finding stage1 entrypoints and building their exact argv per interface version
//! (contract §1.1, §1.3 and §2), plus the two ways stage0 starts them: `exec` (run,
//! enter) and fork+wait (stop, gc).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::error::{Context, Error, Result};
use crate::manifest::ImageManifest;

/// Annotation naming the `run` entrypoint.
pub const RUN_ENTRYPOINT: &str = "coreos.com/rkt/stage1/run";
/// Annotation naming the `enter` entrypoint.
pub const ENTER_ENTRYPOINT: &str = "coreos.com/rkt/stage1/enter";
/// Annotation naming the `gc` entrypoint.
pub const GC_ENTRYPOINT: &str = "coreos.com/rkt/stage1/gc";
/// Annotation naming the `stop` entrypoint.
pub const STOP_ENTRYPOINT: &str = "coreos.com/rkt/stage1/stop";
/// Annotation with the interface version (default 1).
pub const INTERFACE_VERSION: &str = "coreos.com/rkt/stage1/interface-version";

/// Reads `$pod/stage1/manifest` (contract §1.1: every entrypoint is looked up there).
pub fn stage1_manifest(pod_dir: &Path) -> Result<ImageManifest> {
    let path = pod_dir.join("stage1/manifest");
    let bytes = std::fs::read(&path).ctx("error reading pod manifest", &path)?;
    ImageManifest::parse(&bytes).map_err(|reason| Error::Manifest {
        kind: "stage1 manifest",
        path,
        reason,
    })
}

/// The value of an entrypoint annotation (`stage0/manifest.go` `getStage1Entrypoint`).
pub fn entrypoint(manifest: &ImageManifest, name: &str) -> Result<String> {
    manifest
        .annotation(name)
        .map(str::to_string)
        .ok_or_else(|| Error::Other(format!("entrypoint {name:?} not found")))
}

/// The interface version (`getStage1InterfaceVersion`): the annotation parsed as an
/// integer, 1 when absent (contract §1.3).
pub fn interface_version(manifest: &ImageManifest) -> Result<i64> {
    match manifest.annotation(INTERFACE_VERSION) {
        None => Ok(1),
        Some(v) => v
            .parse()
            .map_err(|e| Error::Other(format!("error parsing interface version {v:?}: {e}"))),
    }
}

/// Go's `filepath.Join(rootfs, ep)`: `ep` (absolute in the manifest) is joined onto the
/// rootfs and the result cleaned lexically (contract fact 1).
pub fn join_rootfs(rootfs: &Path, ep: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in rootfs.components().chain(Path::new(ep).components()) {
        match c {
            Component::RootDir if out.as_os_str().is_empty() => out.push("/"),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::Normal(p) => out.push(p),
            Component::Prefix(p) => out.push(p.as_os_str()),
        }
    }
    out
}

/// Everything that decides the `run` argv (contract §2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFlags {
    /// Global `--debug`.
    pub debug: bool,
    /// `--net` items (`name[:args]`); empty means `default`.
    pub net: Vec<String>,
    /// `--interactive`.
    pub interactive: bool,
    /// `--private-users` value prepared in the pod (`<shift>:<count>`).
    pub private_users: Option<String>,
    /// `--mds-token` (metadata service registration).
    pub mds_token: Option<String>,
    /// `--local-config` (rkt run: always; run-prepared: never).
    pub local_config: Option<String>,
    /// `--hostname` (passed when non-empty and the version is ≥ 2).
    pub hostname: Option<String>,
    /// `--dns-conf-mode` (resolv, hosts), passed when either is not `default` (v ≥ 4).
    pub dns_conf_mode: Option<(String, String)>,
    /// `--insecure-options=capabilities` (v ≥ 3).
    pub insecure_capabilities: bool,
    /// `--insecure-options=paths` (v ≥ 3).
    pub insecure_paths: bool,
    /// `--insecure-options=seccomp` (v ≥ 3).
    pub insecure_seccomp: bool,
    /// `--ipc` (v ≥ 6; rkt run only).
    pub ipc: Option<String>,
}

/// An argv and the warnings stage0 prints while building it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    /// The argv, argv[0] absolute.
    pub argv: Vec<String>,
    /// Warnings for flags the declared interface version does not support.
    pub warnings: Vec<String>,
}

/// The `run` argv in rkt v1.30's exact order (`stage0/run.go:596-677`, contract §2.1).
pub fn run_argv(ep: &Path, version: i64, flags: &RunFlags, uuid: &str) -> Argv {
    let mut argv = vec![ep.to_string_lossy().into_owned()];
    let mut warnings = Vec::new();
    if flags.debug {
        argv.push("--debug".into());
    }
    // Always present; `default` when no network was asked for (`NetList.Strings`).
    let net = if flags.net.is_empty() {
        "default".to_string()
    } else {
        flags.net.join(",")
    };
    argv.push(format!("--net={net}"));
    if flags.interactive {
        argv.push("--interactive".into());
    }
    if let Some(p) = flags.private_users.as_deref().filter(|p| !p.is_empty()) {
        argv.push(format!("--private-users={p}"));
    }
    if let Some(t) = &flags.mds_token {
        argv.push(format!("--mds-token={t}"));
    }
    if let Some(lc) = flags.local_config.as_deref().filter(|s| !s.is_empty()) {
        argv.push(format!("--local-config={lc}"));
    }
    if let Some(h) = flags.hostname.as_deref().filter(|h| !h.is_empty()) {
        if version > 1 {
            argv.push(format!("--hostname={h}"));
        } else {
            warnings.push("warning: --hostname option is not supported by stage1".into());
        }
    }
    if let Some((resolv, hosts)) = &flags.dns_conf_mode {
        if resolv != "default" || hosts != "default" {
            if version > 3 {
                argv.push(format!("--dns-conf-mode=resolv={resolv},hosts={hosts}"));
            } else {
                warnings.push("warning: --dns-conf-mode option not supported by stage1".into());
            }
        }
    }
    // Silently dropped below version 3.
    if version > 2 {
        if flags.insecure_capabilities {
            argv.push("--disable-capabilities-restriction".into());
        }
        if flags.insecure_paths {
            argv.push("--disable-paths".into());
        }
        if flags.insecure_seccomp {
            argv.push("--disable-seccomp".into());
        }
    }
    if let Some(ipc) = flags.ipc.as_deref().filter(|s| !s.is_empty()) {
        if version >= 6 {
            argv.push(format!("--ipc={ipc}"));
        } else {
            warnings.push("warning: --ipc option is not supported by stage1".into());
        }
    }
    argv.push(uuid.to_string());
    Argv { argv, warnings }
}

/// The `enter` argv (`stage0/enter.go`, contract §2.2): `--pid=N --appname=NAME -- cmd…`.
pub fn enter_argv(ep: &Path, pid: i64, app: &str, cmd: &[String]) -> Vec<String> {
    let mut argv = vec![
        ep.to_string_lossy().into_owned(),
        format!("--pid={pid}"),
        format!("--appname={app}"),
        "--".to_string(),
    ];
    argv.extend(cmd.iter().cloned());
    argv
}

/// The `stop` argv (`stage0/stop.go`, contract §2.4): `[--force] <uuid>`.
pub fn stop_argv(ep: &Path, force: bool, uuid: &str) -> Vec<String> {
    let mut argv = vec![ep.to_string_lossy().into_owned()];
    if force {
        argv.push("--force".into());
    }
    argv.push(uuid.to_string());
    argv
}

/// The `gc` argv (`stage0/gc.go`, contract §2.3): `[--debug] [--local-config <dir>]
/// <uuid>`, the local config as two words and only for version ≥ 5.
pub fn gc_argv(
    ep: &Path,
    version: i64,
    debug: bool,
    local_config: Option<&str>,
    uuid: &str,
) -> Vec<String> {
    let mut argv = vec![ep.to_string_lossy().into_owned()];
    if debug {
        argv.push("--debug".into());
    }
    if let Some(lc) = local_config.filter(|s| !s.is_empty()) {
        if version >= 5 {
            argv.push("--local-config".into());
            argv.push(lc.to_string());
        }
    }
    argv.push(uuid.to_string());
    argv
}

fn command(argv: &[String]) -> Result<Command> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| Error::Other("empty argv".into()))?;
    let mut cmd = Command::new(prog);
    cmd.args(args);
    Ok(cmd)
}

/// Replaces this process with `argv` (same PID, same fds minus close-on-exec ones), with
/// this process's environment plus `extra_env`. Returns only on failure.
pub fn exec_replace(argv: &[String], extra_env: &[(&str, OsString)]) -> Error {
    let mut cmd = match command(argv) {
        Ok(c) => c,
        Err(e) => return e,
    };
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let err = cmd.exec();
    Error::io("executing", &argv[0], err)
}

/// Where a child's stdout goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStdout {
    /// minirkt's stdout (stop).
    Inherit,
    /// `/dev/null` (gc: Go's `exec.Cmd` with a nil Stdout).
    Null,
}

/// Runs `argv` in `cwd` as a child with the inherited environment and stderr, and waits.
pub fn run_child(argv: &[String], cwd: &Path, stdout: ChildStdout) -> Result<ExitStatus> {
    let mut cmd = command(argv)?;
    cmd.current_dir(cwd).stdin(Stdio::null());
    if stdout == ChildStdout::Null {
        cmd.stdout(Stdio::null());
    }
    cmd.status().ctx("running", &argv[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_is_go_filepath_join() {
        assert_eq!(
            join_rootfs(Path::new("/p/stage1/rootfs"), "/init"),
            PathBuf::from("/p/stage1/rootfs/init")
        );
        assert_eq!(
            join_rootfs(Path::new("/p/rootfs/"), "ex/./run"),
            PathBuf::from("/p/rootfs/ex/run")
        );
    }

    #[test]
    fn run_argv_order_and_versions() {
        let flags = RunFlags {
            debug: true,
            net: vec!["none".into()],
            interactive: true,
            local_config: Some("/etc/rkt".into()),
            hostname: Some("h".into()),
            dns_conf_mode: Some(("host".into(), "default".into())),
            insecure_capabilities: true,
            insecure_paths: true,
            insecure_seccomp: true,
            ipc: Some("private".into()),
            ..RunFlags::default()
        };
        let ep = Path::new("/s1/init");
        let v6 = run_argv(ep, 6, &flags, "U");
        assert_eq!(
            v6.argv,
            [
                "/s1/init",
                "--debug",
                "--net=none",
                "--interactive",
                "--local-config=/etc/rkt",
                "--hostname=h",
                "--dns-conf-mode=resolv=host,hosts=default",
                "--disable-capabilities-restriction",
                "--disable-paths",
                "--disable-seccomp",
                "--ipc=private",
                "U"
            ]
        );
        assert!(v6.warnings.is_empty());
        let v1 = run_argv(ep, 1, &flags, "U");
        assert_eq!(
            v1.argv,
            [
                "/s1/init",
                "--debug",
                "--net=none",
                "--interactive",
                "--local-config=/etc/rkt",
                "U"
            ]
        );
        assert_eq!(v1.warnings.len(), 3);
        let bare = run_argv(ep, 6, &RunFlags::default(), "U");
        assert_eq!(bare.argv, ["/s1/init", "--net=default", "U"]);
    }

    #[test]
    fn gc_local_config_from_version_5() {
        let ep = Path::new("/s1/gc");
        assert_eq!(
            gc_argv(ep, 4, false, Some("/etc/rkt"), "U"),
            ["/s1/gc", "U"]
        );
        assert_eq!(
            gc_argv(ep, 5, true, Some("/etc/rkt"), "U"),
            ["/s1/gc", "--debug", "--local-config", "/etc/rkt", "U"]
        );
    }
}
