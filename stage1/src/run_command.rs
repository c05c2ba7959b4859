//! Running one command in the guest with this process's stdin, stdout and stderr — what
//! `stage1-kvm vm -- CMD` and `stage1-kvm exec -- CMD` do.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use protocol::exec::ExecRequest;
use protocol::{ExitStatus, ProcessSpec};

use crate::agent::exec::{self, ExecIo};
use crate::terminal;

/// rkt's default `PATH` (contract §5.2).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The caller's `TERM`, which rkt's enterexec keeps (contract §2.2), or `vt100`.
pub fn caller_term() -> (String, String) {
    let term = std::env::var("TERM").unwrap_or_else(|_| "vt100".to_owned());
    ("TERM".to_owned(), term)
}

/// Runs `argv` as root in the guest's own root over `stream` (a connection to the agent),
/// with a pseudo-terminal if `tty`. Returns the process's exit status.
pub fn run(stream: UnixStream, argv: Vec<String>, tty: bool) -> Result<ExitStatus, String> {
    let mut env = vec![
        ("PATH".to_owned(), PATH.to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
    ];
    if tty {
        env.push(caller_term());
    }
    run_with_stdio(stream, None, argv, env, tty)
}

/// Runs `argv` with `env` as root in `app`'s root (the guest's own root for `None`) over
/// `stream`, with this process's stdin, stdout and stderr, and a pseudo-terminal (our
/// terminal in raw mode meanwhile) if `tty`.
pub fn run_with_stdio(
    stream: UnixStream,
    app: Option<String>,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    tty: bool,
) -> Result<ExitStatus, String> {
    let request = ExecRequest {
        app,
        process: ProcessSpec {
            argv,
            env,
            cwd: "/".to_owned(),
            uid: 0,
            gid: 0,
            supplementary_gids: vec![],
        },
        tty,
        window: if tty { terminal::window_size() } else { None },
    };
    let stdin = std::io::stdin();
    // Raw mode only when we are given a terminal and asked for one in the guest.
    let _raw = if tty {
        terminal::RawMode::enter(stdin.as_fd())
    } else {
        None
    };
    let io = ExecIo {
        stdin: Some(Box::new(std::io::stdin())),
        stdout: Box::new(std::io::stdout()),
        stderr: Box::new(std::io::stderr()),
    };
    exec::run(stream, request, io, |_| {})
}
