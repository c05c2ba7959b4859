//! `stage1-kvm`: one static binary for every stage1 entrypoint (selected by the name it is
//! called by, as the ACI's entrypoint links are) and for the developer CLI.

mod agent;
mod exec_command;
mod guest_session;
mod rkt;
mod run_command;
mod signals;
mod terminal;
mod vm_command;
mod vm_thread;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// rkt's exit code for any failure of its own (contract §2, "internal failure").
pub const EXIT_FAILURE: u8 = 254;

#[derive(Debug, Parser)]
#[command(name = "stage1-kvm", version, about = "KVM micro-VM stage1 for rkt")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot a VM with the bundled kernel and guest agent (developer tool).
    Vm(vm_command::VmArgs),
    /// Run a command in a VM started with `vm --serve` (developer tool).
    Exec(exec_command::ExecArgs),
}

/// Prints a one-line error and returns rkt's failure code.
pub fn fail(message: &str) -> ExitCode {
    eprintln!("stage1-kvm: error: {message}");
    ExitCode::from(EXIT_FAILURE)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let program = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if let Some(entrypoint) = rkt::entrypoint_for(program) {
        return rkt::main(entrypoint, &argv[1..]);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            return fail(first.trim_start_matches("error: "));
        }
    };
    match cli.command {
        Command::Vm(args) => vm_command::run(&args),
        Command::Exec(args) => exec_command::run(args),
    }
}
