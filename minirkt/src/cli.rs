//! The command line: global flags, subcommands, dispatch and exit codes.
//!
//! Global flags (`--dir`, `--debug`, `--insecure-options`, `--local-config`) come before
//! the command; `run` and `prepare` also accept them among their own flags, as rkt's
//! persistent flags are. `run` and `prepare` arguments are parsed with rkt's own syntax
//! (see [`crate::args`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};

use crate::aci::Compression;
use crate::args::{self, Mode};
use crate::cmd::{self, run::RunPreparedArgs, Globals};
use crate::error::{Error, EXIT_FAILURE};

#[derive(Debug, Parser)]
#[command(
    name = "minirkt",
    version,
    about = "A small rkt-compatible stage0: lays out pods and invokes stage1 entrypoints exactly as rkt v1.30"
)]
struct Cli {
    /// rkt data directory.
    #[arg(long, default_value = cmd::DEFAULT_DIR)]
    dir: PathBuf,
    /// Print out more debug information (passed to stage1 as --debug).
    #[arg(long)]
    debug: bool,
    /// Comma-separated list of security features to disable (rkt's names).
    #[arg(long, default_value = "none")]
    insecure_options: String,
    /// Local configuration directory (passed to stage1 run and gc).
    #[arg(long, default_value = cmd::DEFAULT_LOCAL_CONFIG)]
    local_config: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Operate on image files.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Run image(s) in a new pod (rkt's syntax; stage1 `run` is exec'd).
    ///
    /// minirkt run [--stage1-path=ACI] [--no-overlay] [--interactive] [--net[=n[:args],…]]
    /// [--hostname=H] [--ipc=auto|private|parent] [--volume NAME,kind=host,source=PATH[,readOnly=B]]
    /// [--mount volume=NAME,target=PATH] [--set-env K=V] [--uuid-file-save FILE]
    /// IMAGE.aci [--exec CMD] [--name N] [--environment K=V] [--mount …] [-- ARGS… ---] …
    #[command(disable_help_flag = true)]
    Run {
        /// rkt-style arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Prepare a pod; prints its UUID.
    ///
    /// Same arguments as run, without the run-time ones (--interactive, --net, --hostname,
    /// --ipc).
    #[command(disable_help_flag = true)]
    Prepare {
        /// rkt-style arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Run a prepared pod.
    RunPrepared {
        /// Networks (`--net` alone means `default`).
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "default", action = ArgAction::Append)]
        net: Vec<String>,
        /// Run the pod interactively.
        #[arg(long)]
        interactive: bool,
        /// The pod's host name.
        #[arg(long)]
        hostname: Option<String>,
        /// IPC namespace mode (accepted, not passed on: rkt's run-prepared drops it).
        #[arg(long)]
        ipc: Option<String>,
        /// Pod UUID (or unambiguous prefix).
        uuid: String,
    },
    /// Show the status of a pod.
    Status {
        /// Pod UUID (or unambiguous prefix).
        uuid: String,
    },
    /// List pods.
    List {
        /// Long output (full UUIDs, image IDs, absolute times).
        #[arg(long)]
        full: bool,
        /// No header line.
        #[arg(long)]
        no_legend: bool,
    },
    /// Enter a running pod's app namespace: exec the stage1 enter entrypoint.
    Enter {
        /// App to enter (default: the only app).
        #[arg(long)]
        app: Option<String>,
        /// Pod UUID (or unambiguous prefix).
        uuid: String,
        /// Command and arguments (default /bin/bash).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Stop running pods (runs the stage1 stop entrypoint).
    Stop {
        /// Forced stop.
        #[arg(long)]
        force: bool,
        /// Pod UUIDs.
        #[arg(required = true)]
        uuids: Vec<String>,
    },
    /// Garbage-collect pods: mark exited ones, then delete those past the grace period.
    Gc {
        /// Time exited pods stay in exited-garbage before deletion (Go duration).
        #[arg(long, default_value = "30m0s")]
        grace_period: String,
        /// Time prepared pods are kept (Go duration).
        #[arg(long, default_value = "24h0m0s")]
        expire_prepared: String,
        /// Only move exited/aborted pods to the garbage directories.
        #[arg(long)]
        mark_only: bool,
    },
    /// Remove pods now (like gc without the grace period).
    Rm {
        /// Pod UUIDs.
        #[arg(required = true)]
        uuids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build an ACI from DIR (DIR/manifest + DIR/rootfs), like `actool build`.
    Build {
        /// Directory holding `manifest` and `rootfs/`.
        dir: PathBuf,
        /// Output ACI file.
        #[arg(short, long)]
        output: PathBuf,
        /// Write a plain tar instead of gzip.
        #[arg(long)]
        no_compression: bool,
    },
}

fn fail(cmd: &str, e: &Error) -> ExitCode {
    eprintln!("{cmd}: {e}");
    ExitCode::from(EXIT_FAILURE)
}

fn duration(flag: &str, s: &str) -> Result<Duration, Error> {
    cmd::gc::parse_go_duration(s)
        .ok_or_else(|| Error::Usage(format!("invalid argument {s:?} for --{flag}")))
}

/// Parses the command line, runs the command, and returns the exit code: 0, or rkt's
/// 254 for every failure (including bad flags). `run`, `run-prepared` and `enter` do
/// not return on success: they exec the stage1 entrypoint.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let insecure = match args::parse_insecure(&cli.insecure_options) {
        Ok(i) => i,
        Err(e) => return fail("minirkt", &e),
    };
    let mut g = Globals {
        dir: cli.dir,
        debug: cli.debug,
        insecure,
        local_config: cli.local_config,
    };
    match cli.command {
        Command::Image {
            command:
                ImageCommand::Build {
                    dir,
                    output,
                    no_compression,
                },
        } => {
            let c = if no_compression {
                Compression::None
            } else {
                Compression::Gzip
            };
            match cmd::image::build(&dir, &output, c) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail("image build", &e),
            }
        }
        Command::Run { args: raw } => {
            if wants_help(&raw) {
                return print_subcommand_help("run");
            }
            let parsed = match args::parse(&raw, Mode::Run).and_then(|a| apply_overrides(&mut g, a))
            {
                Ok(a) => a,
                Err(e) => return fail("run", &e),
            };
            fail("run", &cmd::run::run(&g, &parsed))
        }
        Command::Prepare { args: raw } => {
            if wants_help(&raw) {
                return print_subcommand_help("prepare");
            }
            let parsed =
                match args::parse(&raw, Mode::Prepare).and_then(|a| apply_overrides(&mut g, a)) {
                    Ok(a) => a,
                    Err(e) => return fail("prepare", &e),
                };
            match cmd::run::prepare(&g, &parsed) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail("prepare", &e),
            }
        }
        Command::RunPrepared {
            net,
            interactive,
            hostname,
            ipc,
            uuid,
        } => {
            let mut nets = Vec::new();
            for n in &net {
                if let Err(e) = args::add_net(&mut nets, n) {
                    return fail("run-prepared", &e);
                }
            }
            let a = RunPreparedArgs {
                uuid,
                net: nets,
                interactive,
                hostname,
                ipc,
            };
            fail("run-prepared", &cmd::run::run_prepared(&g, &a))
        }
        Command::Status { uuid } => match cmd::status::status(&g, &uuid) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("status", &e),
        },
        Command::List { full, no_legend } => match cmd::status::list(&g, full, no_legend) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("list", &e),
        },
        Command::Enter { app, uuid, cmd: c } => {
            fail("enter", &cmd::enter::enter(&g, app.as_deref(), &uuid, &c))
        }
        Command::Stop { force, uuids } => match cmd::stop::stop(&g, force, &uuids) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail("stop", &e),
        },
        Command::Gc {
            grace_period,
            expire_prepared,
            mark_only,
        } => {
            let durations = duration("grace-period", &grace_period)
                .and_then(|g| Ok((g, duration("expire-prepared", &expire_prepared)?)));
            let (grace, expire) = match durations {
                Ok(d) => d,
                Err(e) => return fail("gc", &e),
            };
            match cmd::gc::gc(&g, grace, &grace_period, expire, mark_only) {
                Ok(code) => ExitCode::from(code),
                Err(e) => fail("gc", &e),
            }
        }
        Command::Rm { uuids } => match cmd::gc::rm(&g, &uuids) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail("rm", &e),
        },
    }
}

/// `run --help`: run and prepare take their arguments raw, so help is handled here.
fn wants_help(raw: &[String]) -> bool {
    matches!(raw.first().map(String::as_str), Some("--help" | "-h"))
}

fn print_subcommand_help(name: &str) -> ExitCode {
    let mut c = <Cli as clap::CommandFactory>::command();
    if let Some(sub) = c.find_subcommand_mut(name) {
        let _ = sub.print_long_help();
    }
    ExitCode::SUCCESS
}

/// Applies global flags given among run/prepare flags.
fn apply_overrides(g: &mut Globals, a: args::RunArgs) -> Result<args::RunArgs, Error> {
    if let Some(d) = a.globals.debug {
        g.debug = d;
    }
    if let Some(dir) = &a.globals.dir {
        g.dir = dir.clone();
    }
    if let Some(i) = &a.globals.insecure_options {
        g.insecure = args::parse_insecure(i)?;
    }
    if let Some(lc) = &a.globals.local_config {
        g.local_config = lc.clone();
    }
    Ok(a)
}
