//! rkt's command-line syntax for `run` and `prepare`: pod flags anywhere, images, per-app
//! flags after the image they apply to, and per-app arguments between `--` and `---`
//! (rkt `rkt/cli_apps.go` `parseApps`, `rkt/run.go` flag set). Flags follow pflag's
//! rules: `--flag=value` or `--flag value`; `--net` alone means `--net=default` (its value
//! must be attached with `=`); booleans accept `--flag` and `--flag=true|false`.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::manifest::{is_ac_name, parse_go_bool, Mount, Volume};

/// Which command the arguments are for (prepare lacks the run-time flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `minirkt run`.
    Run,
    /// `minirkt prepare`.
    Prepare,
}

/// One image on the command line and its per-app flags (rkt `apps.App`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSpec {
    /// The image: a path to an ACI file.
    pub image: String,
    /// `--name`.
    pub name: Option<String>,
    /// `--exec`.
    pub exec: Option<String>,
    /// Arguments between `--` and `---`.
    pub args: Option<Vec<String>>,
    /// `--environment=K=V`, in the order given.
    pub environment: Vec<(String, String)>,
    /// `--mount` after this image.
    pub mounts: Vec<Mount>,
}

/// Global flags that may also appear among run/prepare flags (persistent flags in rkt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalOverrides {
    /// `--debug`.
    pub debug: Option<bool>,
    /// `--dir`.
    pub dir: Option<PathBuf>,
    /// `--insecure-options`.
    pub insecure_options: Option<String>,
    /// `--local-config`.
    pub local_config: Option<String>,
}

/// Parsed `run`/`prepare` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunArgs {
    /// Global flags given after the command.
    pub globals: GlobalOverrides,
    /// `--stage1-path`.
    pub stage1_path: Option<PathBuf>,
    /// `--no-overlay`.
    pub no_overlay: bool,
    /// `--interactive` (run).
    pub interactive: bool,
    /// `--net` items in the order given (run).
    pub net: Vec<String>,
    /// `--hostname` (run).
    pub hostname: Option<String>,
    /// `--ipc` (run).
    pub ipc: Option<String>,
    /// `--volume`.
    pub volumes: Vec<Volume>,
    /// `--set-env=K=V`.
    pub set_env: Vec<(String, String)>,
    /// `--mount` given before any image (applies to every app).
    pub mounts: Vec<Mount>,
    /// `--uuid-file-save`.
    pub uuid_file_save: Option<PathBuf>,
    /// The apps, in order.
    pub apps: Vec<AppSpec>,
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

/// Adds `--net` items with rkt's `NetList.Set` checks.
pub fn add_net(list: &mut Vec<String>, value: &str) -> Result<()> {
    for item in value.split(',') {
        let parts: Vec<&str> = item.split(':').collect();
        let name = parts[0];
        if name.is_empty() {
            return Err(usage("netname must not be empty"));
        }
        if list
            .iter()
            .any(|existing| existing.split(':').next() == Some(name))
        {
            return Err(usage(format!("found duplicate netname {name:?}")));
        }
        match parts.len() {
            1 => {}
            2 if name == "all" || name == "host" => {
                return Err(usage(format!(
                    "arguments are not supported by special netname {name:?}"
                )))
            }
            2 => {}
            _ => {
                return Err(usage(format!(
                    "network {name:?} provided with invalid arguments: {:?}",
                    &parts[1..]
                )))
            }
        }
        list.push(item.to_string());
    }
    Ok(())
}

fn parse_kv(flag: &str, value: &str) -> Result<(String, String)> {
    match value.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(usage(format!(
            "invalid value {value:?} for --{flag}: expected key=value"
        ))),
    }
}

/// rkt `appMount.Set`: `volume=NAME,target=PATH`.
fn parse_mount(value: &str) -> Result<Mount> {
    let mut m = Mount {
        volume: String::new(),
        path: String::new(),
        app_volume: None,
    };
    for part in value.split(',') {
        match part.split_once('=') {
            Some(("volume", v)) => {
                if !is_ac_name(v) {
                    return Err(usage(format!(
                        "invalid volume name {v:?} in --mount flag {value:?}"
                    )));
                }
                m.volume = v.to_string();
            }
            Some(("target", t)) => m.path = t.to_string(),
            _ => return Err(usage(format!("unknown mount parameter {part:?}"))),
        }
    }
    if m.volume.is_empty() || m.path.is_empty() {
        return Err(usage(format!(
            "--mount {value:?} needs volume= and target="
        )));
    }
    Ok(m)
}

const BOOL_FLAGS: &[&str] = &["debug", "no-overlay", "interactive"];
const RUN_ONLY: &[&str] = &["interactive", "net", "hostname", "ipc"];
const VALUE_FLAGS: &[&str] = &[
    "dir",
    "insecure-options",
    "local-config",
    "stage1-path",
    "hostname",
    "ipc",
    "volume",
    "set-env",
    "mount",
    "exec",
    "name",
    "environment",
    "uuid-file-save",
];

/// Parses `run`/`prepare` arguments.
pub fn parse(args: &[String], mode: Mode) -> Result<RunArgs> {
    let mut out = RunArgs::default();
    let mut in_app_args = false;
    let mut apps_at_last_args = 0usize;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a.is_empty() {
            continue;
        }
        if in_app_args {
            if a == "---" {
                in_app_args = false;
            } else if let Some(app) = out.apps.last_mut() {
                app.args.get_or_insert_with(Vec::new).push(a.clone());
            }
            continue;
        }
        if a == "--" {
            if apps_at_last_args == out.apps.len() {
                return Err(usage(if out.apps.is_empty() {
                    "an image is required before any app arguments"
                } else {
                    "only one set of app arguments allowed per image"
                }));
            }
            apps_at_last_args = out.apps.len();
            in_app_args = true;
            // `--` with nothing after still means an (empty) argument list.
            if let Some(app) = out.apps.last_mut() {
                app.args.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if a == "---" {
            continue;
        }
        let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            out.apps.push(AppSpec {
                image: a.clone(),
                ..AppSpec::default()
            });
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        if mode == Mode::Prepare && RUN_ONLY.contains(&name) {
            return Err(usage(format!("unknown flag: --{name}")));
        }
        if BOOL_FLAGS.contains(&name) {
            let v = match inline.as_deref() {
                None => true,
                Some(s) => parse_go_bool(s)
                    .ok_or_else(|| usage(format!("invalid argument {s:?} for --{name}")))?,
            };
            match name {
                "debug" => out.globals.debug = Some(v),
                "no-overlay" => out.no_overlay = v,
                _ => out.interactive = v,
            }
            continue;
        }
        if name == "net" {
            add_net(&mut out.net, inline.as_deref().unwrap_or("default"))?;
            continue;
        }
        if !VALUE_FLAGS.contains(&name) {
            return Err(usage(format!("unknown flag: {a}")));
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .ok_or_else(|| usage(format!("flag needs an argument: --{name}")))?;
                i += 1;
                v.clone()
            }
        };
        apply_value_flag(&mut out, name, value)?;
    }
    if out.apps.is_empty() {
        return Err(usage(
            "must provide at least one image or specify the pod manifest",
        ));
    }
    if out.interactive && out.apps.len() > 1 {
        return Err(usage("interactive option only supports one image"));
    }
    Ok(out)
}

fn apply_value_flag(out: &mut RunArgs, name: &str, value: String) -> Result<()> {
    let last = out.apps.last_mut();
    match name {
        "dir" => out.globals.dir = Some(PathBuf::from(value)),
        "insecure-options" => out.globals.insecure_options = Some(value),
        "local-config" => out.globals.local_config = Some(value),
        "stage1-path" => out.stage1_path = Some(PathBuf::from(value)),
        "hostname" => out.hostname = Some(value),
        "ipc" => {
            if !matches!(value.as_str(), "auto" | "private" | "parent") {
                return Err(usage(format!(
                    "invalid --ipc value {value:?} (auto, private or parent)"
                )));
            }
            out.ipc = Some(value);
        }
        "uuid-file-save" => out.uuid_file_save = Some(PathBuf::from(value)),
        "volume" => out.volumes.push(
            Volume::parse_cli(&value)
                .map_err(|e| usage(format!("invalid value in --volume flag {value:?}: {e}")))?,
        ),
        "set-env" => out.set_env.push(parse_kv(name, &value)?),
        "mount" => {
            let m = parse_mount(&value)?;
            match last {
                Some(app) => app.mounts.push(m),
                None => out.mounts.push(m),
            }
        }
        "exec" => {
            let app = last.ok_or_else(|| usage("--exec must follow an image"))?;
            if app.exec.is_some() {
                return Err(usage("--exec specified multiple times for the same image"));
            }
            app.exec = Some(value);
        }
        "name" => {
            let app = last.ok_or_else(|| usage("--name must follow an image"))?;
            app.name = Some(value);
        }
        "environment" => {
            let kv = parse_kv(name, &value)?;
            let app = last.ok_or_else(|| usage("--environment must follow an image"))?;
            app.environment.push(kv);
        }
        _ => return Err(usage(format!("unknown flag: --{name}"))),
    }
    Ok(())
}

/// The run-time effect of `--insecure-options` (rkt `rkt/flag/secflags.go`): whether
/// capabilities, paths and seccomp restrictions are skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Insecure {
    /// `capabilities` (or `all-run`, `all`).
    pub capabilities: bool,
    /// `paths`.
    pub paths: bool,
    /// `seccomp`.
    pub seccomp: bool,
}

/// Parses `--insecure-options` (a comma-separated list of rkt's option names).
pub fn parse_insecure(value: &str) -> Result<Insecure> {
    let mut out = Insecure::default();
    for opt in value.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "none" | "image" | "tls" | "ondisk" | "http" | "pubkey" | "all-fetch" => {}
            "capabilities" => out.capabilities = true,
            "paths" => out.paths = true,
            "seccomp" => out.seccomp = true,
            "all-run" | "all" => {
                out = Insecure {
                    capabilities: true,
                    paths: true,
                    seccomp: true,
                }
            }
            _ => {
                return Err(usage(format!(
                    "unknown insecure option {opt:?} (none, image, tls, ondisk, http, pubkey, capabilities, paths, seccomp, all-fetch, all-run, all)"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn per_app_flags_and_args() {
        let a = parse(
            &v(&[
                "--net=none",
                "--volume",
                "data,kind=host,source=/srv",
                "--mount=volume=data,target=/d",
                "a.aci",
                "--exec",
                "/bin/echo",
                "--",
                "hello",
                "--not-a-flag",
                "---",
                "b.aci",
                "--name=second",
                "--set-env=K=V",
                "--debug",
            ]),
            Mode::Run,
        )
        .unwrap();
        assert_eq!(a.net, ["none"]);
        assert_eq!(a.apps.len(), 2);
        assert_eq!(a.apps[0].exec.as_deref(), Some("/bin/echo"));
        assert_eq!(
            a.apps[0].args.as_deref(),
            Some(&v(&["hello", "--not-a-flag"])[..])
        );
        assert_eq!(a.apps[1].name.as_deref(), Some("second"));
        assert_eq!(a.mounts.len(), 1);
        assert_eq!(a.set_env, [("K".to_string(), "V".to_string())]);
        assert_eq!(a.globals.debug, Some(true));
    }

    #[test]
    fn errors_like_rkt() {
        assert!(parse(&v(&["--exec=/x", "a.aci"]), Mode::Run).is_err());
        assert!(parse(&v(&["--", "x"]), Mode::Run).is_err());
        assert!(parse(&v(&[]), Mode::Run).is_err());
        assert!(parse(&v(&["--bogus", "a.aci"]), Mode::Run).is_err());
        assert!(parse(&v(&["--net=none", "a.aci"]), Mode::Prepare).is_err());
        assert!(parse(&v(&["--interactive", "a.aci", "b.aci"]), Mode::Run).is_err());
        let mut nets = Vec::new();
        add_net(&mut nets, "default,n1:IP=1.2.3.4").unwrap();
        assert!(add_net(&mut nets, "n1").is_err());
        assert!(add_net(&mut Vec::new(), "host:x=y").is_err());
    }

    #[test]
    fn insecure_options() {
        let i = parse_insecure("image,paths").unwrap();
        assert!(i.paths && !i.capabilities && !i.seccomp);
        assert_eq!(
            parse_insecure("all-run").unwrap(),
            Insecure {
                capabilities: true,
                paths: true,
                seccomp: true
            }
        );
        assert!(parse_insecure("bogus").is_err());
    }
}
