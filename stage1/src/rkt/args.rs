//! The argv stage0 sends each entrypoint, parsed the way rkt's own stage1 parses it (Go's
//! `flag` package: `-x`/`--x`, `--x=v`/`--x v`, bools as `--x` or `--x=true`), for the
//! interface version our manifest declares (6). Contract §1.3 and §2.1–§2.4.

use std::collections::VecDeque;

/// `run`'s flags (contract §2.1, interface version 6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunArgs {
    /// `--debug`.
    pub debug: bool,
    /// `--net=<list>`, always sent; items are `name[:args]`.
    pub net: Vec<String>,
    /// `--interactive`.
    pub interactive: bool,
    /// `--private-users=<shift>:<count>`.
    pub private_users: Option<String>,
    /// `--mds-token=<hex>`.
    pub mds_token: Option<String>,
    /// `--local-config=<dir>`.
    pub local_config: Option<String>,
    /// `--hostname=<name>`.
    pub hostname: Option<String>,
    /// `--dns-conf-mode=resolv=<r>,hosts=<h>`.
    pub dns_conf_mode: Option<String>,
    /// `--disable-capabilities-restriction`.
    pub disable_capabilities_restriction: bool,
    /// `--disable-paths`.
    pub disable_paths: bool,
    /// `--disable-seccomp`.
    pub disable_seccomp: bool,
    /// `--mutable` (rkt app sandbox).
    pub mutable: bool,
    /// `--ipc=auto|private|parent`.
    pub ipc: Option<String>,
    /// The pod's UUID (last argument).
    pub uuid: String,
}

/// `stop`'s arguments (contract §2.4): `[--force] <uuid>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopArgs {
    /// `--force`.
    pub force: bool,
    /// The pod's UUID.
    pub uuid: String,
}

/// `gc`'s arguments (contract §2.3): `[--debug] [--local-config <dir>] <uuid>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcArgs {
    /// `--debug`.
    pub debug: bool,
    /// `--local-config <dir>` (two argv words, interface version ≥ 5).
    pub local_config: Option<String>,
    /// The pod's UUID.
    pub uuid: String,
}

/// What a flag takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Value,
}

/// Flags as (name, value) pairs, and the positional arguments after them.
type Parsed = (Vec<(String, String)>, Vec<String>);

/// Go-`flag`-style tokenizer: returns (name, value) pairs and the positional arguments.
fn parse_flags(argv: &[String], known: &[(&str, Kind)]) -> Result<Parsed, String> {
    let mut words: VecDeque<&String> = argv.iter().collect();
    let mut flags = Vec::new();
    while let Some(word) = words.front() {
        if *word == "--" {
            words.pop_front();
            break;
        }
        let Some(body) = word.strip_prefix("--").or_else(|| word.strip_prefix('-')) else {
            break;
        };
        if body.is_empty() {
            break;
        }
        words.pop_front();
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        let kind = known
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| format!("unknown flag --{name}"))?;
        let value = match (kind, inline) {
            (Kind::Bool, None) => "true".to_owned(),
            (Kind::Bool, Some(v))
                if matches!(
                    v.as_str(),
                    "true"
                        | "false"
                        | "1"
                        | "0"
                        | "t"
                        | "f"
                        | "TRUE"
                        | "FALSE"
                        | "True"
                        | "False"
                        | "T"
                        | "F"
                ) =>
            {
                v
            }
            (Kind::Bool, Some(v)) => {
                return Err(format!("invalid boolean value {v:?} for --{name}"))
            }
            (Kind::Value, Some(v)) => v,
            (Kind::Value, None) => words
                .pop_front()
                .cloned()
                .ok_or_else(|| format!("flag --{name} needs a value"))?,
        };
        flags.push((name.to_owned(), value));
    }
    Ok((flags, words.into_iter().cloned().collect()))
}

fn truthy(value: &str) -> bool {
    matches!(value, "true" | "1" | "t" | "TRUE" | "True" | "T")
}

/// The single positional argument, the pod UUID.
fn uuid(positional: Vec<String>) -> Result<String, String> {
    match <[String; 1]>::try_from(positional) {
        Ok([uuid]) if !uuid.is_empty() => Ok(uuid),
        Ok(_) | Err(_) => Err("expected exactly one argument, the pod UUID".to_owned()),
    }
}

impl RunArgs {
    /// Parses `run`'s arguments (without argv[0]).
    pub fn parse(argv: &[String]) -> Result<Self, String> {
        use Kind::{Bool, Value};
        let known = [
            ("debug", Bool),
            ("net", Value),
            ("interactive", Bool),
            ("private-users", Value),
            ("mds-token", Value),
            ("local-config", Value),
            ("hostname", Value),
            ("dns-conf-mode", Value),
            ("disable-capabilities-restriction", Bool),
            ("disable-paths", Bool),
            ("disable-seccomp", Bool),
            ("mutable", Bool),
            ("ipc", Value),
        ];
        let (flags, positional) = parse_flags(argv, &known)?;
        let mut args = Self {
            net: vec!["default".to_owned()],
            ..Self::default()
        };
        for (name, value) in flags {
            match name.as_str() {
                "debug" => args.debug = truthy(&value),
                "net" => {
                    args.net = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "interactive" => args.interactive = truthy(&value),
                "private-users" => args.private_users = Some(value),
                "mds-token" => args.mds_token = Some(value),
                "local-config" => args.local_config = Some(value),
                "hostname" => args.hostname = Some(value),
                "dns-conf-mode" => args.dns_conf_mode = Some(value),
                "disable-capabilities-restriction" => {
                    args.disable_capabilities_restriction = truthy(&value)
                }
                "disable-paths" => args.disable_paths = truthy(&value),
                "disable-seccomp" => args.disable_seccomp = truthy(&value),
                "mutable" => args.mutable = truthy(&value),
                _ => args.ipc = Some(value),
            }
        }
        args.uuid = uuid(positional)?;
        Ok(args)
    }
}

impl StopArgs {
    /// Parses `stop`'s arguments (without argv[0]).
    pub fn parse(argv: &[String]) -> Result<Self, String> {
        let (flags, positional) = parse_flags(argv, &[("force", Kind::Bool)])?;
        Ok(Self {
            force: flags.iter().any(|(_, v)| truthy(v)),
            uuid: uuid(positional)?,
        })
    }
}

impl GcArgs {
    /// Parses `gc`'s arguments (without argv[0]).
    pub fn parse(argv: &[String]) -> Result<Self, String> {
        let (flags, positional) = parse_flags(
            argv,
            &[("debug", Kind::Bool), ("local-config", Kind::Value)],
        )?;
        let mut args = Self::default();
        for (name, value) in flags {
            if name == "debug" {
                args.debug = truthy(&value);
            } else {
                args.local_config = Some(value);
            }
        }
        args.uuid = uuid(positional)?;
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn run_takes_exactly_what_stage0_sends_for_version_6() {
        // The full argv of contract §2.1, in stage0's order.
        let args = RunArgs::parse(&argv(&[
            "--debug",
            "--net=default,mynet:IP=10.1.2.3",
            "--interactive",
            "--private-users=65536:65536",
            "--mds-token=0123456789abcdef0123456789abcdef",
            "--local-config=/etc/rkt",
            "--hostname=web",
            "--dns-conf-mode=resolv=host,hosts=default",
            "--disable-capabilities-restriction",
            "--disable-paths",
            "--disable-seccomp",
            "--mutable",
            "--ipc=private",
            "8a6b6a4c-0000-4000-8000-000000000001",
        ]))
        .unwrap();
        assert!(args.debug && args.interactive && args.mutable);
        assert!(
            args.disable_capabilities_restriction && args.disable_paths && args.disable_seccomp
        );
        assert_eq!(args.net, ["default", "mynet:IP=10.1.2.3"]);
        assert_eq!(args.private_users.as_deref(), Some("65536:65536"));
        assert_eq!(
            args.mds_token.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(args.local_config.as_deref(), Some("/etc/rkt"));
        assert_eq!(args.hostname.as_deref(), Some("web"));
        assert_eq!(
            args.dns_conf_mode.as_deref(),
            Some("resolv=host,hosts=default")
        );
        assert_eq!(args.ipc.as_deref(), Some("private"));
        assert_eq!(args.uuid, "8a6b6a4c-0000-4000-8000-000000000001");
    }

    #[test]
    fn go_flag_spellings_are_accepted() {
        let args = RunArgs::parse(&argv(&[
            "-net",
            "none",
            "-debug=false",
            "--hostname",
            "h",
            "u",
        ]))
        .unwrap();
        assert_eq!(args.net, ["none"]);
        assert!(!args.debug);
        assert_eq!(args.hostname.as_deref(), Some("h"));
        let minimal = RunArgs::parse(&argv(&["--net=default", "u"])).unwrap();
        assert_eq!(
            minimal,
            RunArgs {
                net: vec!["default".into()],
                uuid: "u".into(),
                ..RunArgs::default()
            }
        );
    }

    #[test]
    fn unknown_flags_missing_or_extra_uuids_are_refused() {
        let err = RunArgs::parse(&argv(&["--net=default", "--frobnicate", "u"])).unwrap_err();
        assert_eq!(err, "unknown flag --frobnicate");
        assert!(RunArgs::parse(&argv(&["--net=default"]))
            .unwrap_err()
            .contains("pod UUID"));
        assert!(RunArgs::parse(&argv(&["u1", "u2"]))
            .unwrap_err()
            .contains("pod UUID"));
        assert!(RunArgs::parse(&argv(&["--hostname"]))
            .unwrap_err()
            .contains("needs a value"));
        assert!(RunArgs::parse(&argv(&["--debug=yes", "u"]))
            .unwrap_err()
            .contains("invalid boolean"));
    }

    #[test]
    fn stop_and_gc_take_their_own_flags() {
        assert_eq!(
            StopArgs::parse(&argv(&["--force", "u"])).unwrap(),
            StopArgs {
                force: true,
                uuid: "u".into()
            }
        );
        assert_eq!(
            StopArgs::parse(&argv(&["u"])).unwrap(),
            StopArgs {
                force: false,
                uuid: "u".into()
            }
        );
        assert!(StopArgs::parse(&argv(&["--debug", "u"])).is_err());
        // gc's --local-config comes as two words (contract §2.3).
        let gc = GcArgs::parse(&argv(&["--debug", "--local-config", "/etc/rkt", "u"])).unwrap();
        assert_eq!(
            gc,
            GcArgs {
                debug: true,
                local_config: Some("/etc/rkt".into()),
                uuid: "u".into()
            }
        );
    }
}
