//! The `enter` entrypoint (contract §2.2, §9.8): run a command in an app of the running
//! pod through the guest agent — over the VM's vsock socket in the pod directory, no SSH,
//! no network — with stdin/stdout/stderr, a tty when stdin is one, and its exit status.

use std::time::Duration;

use protocol::ExitStatus;

use super::layout::PodLayout;
use crate::agent::hybrid;
use crate::run_command;

/// `enter`'s arguments: `--pid=N --appname=NAME -- cmd…`.
#[derive(Debug, PartialEq, Eq)]
pub struct EnterArgs {
    /// The pod's PID (from `$pod/pid`).
    pub pid: u32,
    /// The app to enter.
    pub app: String,
    /// The command.
    pub command: Vec<String>,
}

impl EnterArgs {
    /// Parses `enter`'s arguments (without argv[0]).
    pub fn parse(argv: &[String]) -> Result<Self, String> {
        let split = argv
            .iter()
            .position(|a| a == "--")
            .ok_or("expected -- before the command")?;
        let (flags, command) = (&argv[..split], &argv[split + 1..]);
        let (mut pid, mut app) = (None, None);
        for flag in flags {
            let body = flag.trim_start_matches('-');
            match body.split_once('=') {
                Some(("pid", v)) => {
                    pid = Some(v.parse().map_err(|_| format!("--pid={v}: not a PID"))?)
                }
                Some(("appname", v)) => app = Some(v.to_owned()),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        if command.is_empty() {
            return Err("no command to run".to_owned());
        }
        Ok(Self {
            pid: pid.ok_or("--pid is required")?,
            app: app.ok_or("--appname is required")?,
            command: command.to_vec(),
        })
    }
}

/// Runs the command; returns its exit status.
pub fn enter(args: &EnterArgs) -> Result<ExitStatus, String> {
    let layout = PodLayout::current()?;
    let stream = hybrid::connect(
        &layout.vsock_socket(),
        protocol::AGENT_VSOCK_PORT,
        Duration::from_secs(10),
    )?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let env = vec![
        ("PATH".to_owned(), run_command::PATH.to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
        ("AC_APP_NAME".to_owned(), args.app.clone()),
        // rkt's enterexec keeps the caller's TERM (contract §2.2).
        run_command::caller_term(),
    ];
    run_command::run_with_stdio(
        stream,
        Some(args.app.clone()),
        args.command.clone(),
        env,
        tty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn parses_what_stage0_sends() {
        let args = EnterArgs::parse(&argv(&[
            "--pid=42",
            "--appname=web",
            "--",
            "/bin/sh",
            "-c",
            "id",
        ]))
        .unwrap();
        assert_eq!(
            args,
            EnterArgs {
                pid: 42,
                app: "web".into(),
                command: argv(&["/bin/sh", "-c", "id"])
            }
        );
        assert!(EnterArgs::parse(&argv(&["--pid=42", "--appname=web"])).is_err());
        assert!(EnterArgs::parse(&argv(&["--pid=x", "--appname=web", "--", "sh"])).is_err());
        assert!(EnterArgs::parse(&argv(&["--appname=web", "--", "sh"]))
            .unwrap_err()
            .contains("--pid"));
        assert!(EnterArgs::parse(&argv(&[
            "--pid=1",
            "--appname=web",
            "--bogus=1",
            "--",
            "sh"
        ]))
        .is_err());
    }
}
