//! `stage1-kvm exec`: runs a command in a running VM through its vsock socket (as
//! `stage1-kvm vm --serve` exposes it), stdin/stdout/stderr and exit code passed through.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::{agent, fail, run_command};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The VM's vsock Unix socket.
    #[arg(long)]
    vsock_socket: PathBuf,
    /// Give the command a pseudo-terminal.
    #[arg(long)]
    tty: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn run(args: ExecArgs) -> ExitCode {
    let stream = match agent::hybrid::connect(
        &args.vsock_socket,
        protocol::AGENT_VSOCK_PORT,
        Duration::from_secs(10),
    ) {
        Ok(stream) => stream,
        Err(e) => return fail(&e),
    };
    match run_command::run(stream, args.command, args.tty) {
        Ok(status) => exit_code(status),
        Err(e) => fail(&e),
    }
}

/// The process's exit code as ours: the code, or 128 + the signal.
pub fn exit_code(status: protocol::ExitStatus) -> ExitCode {
    ExitCode::from(u8::try_from(status.to_exit_code()).unwrap_or(u8::MAX))
}
