//! The rkt-facing entrypoints (contract §2): `run` (exec'd by stage0 as `/init`), `enter`,
//! `stop`, `gc`. One binary serves them all, chosen by the name it is called by — the
//! image's entrypoints are links to it (see `stage1-manifest.json` and `make aci`).

pub mod args;
pub mod enter;
pub mod gc;
pub mod layout;
pub mod manifest;
pub mod run;
pub mod stop;
pub mod timings;
pub mod users;

use std::process::ExitCode;

use crate::fail;

/// The entrypoint a program name stands for, if any.
pub fn entrypoint_for(program: &str) -> Option<&'static str> {
    match program {
        "init" | "run" => Some("run"),
        "enter" => Some("enter"),
        "stop" => Some("stop"),
        "gc" => Some("gc"),
        _ => None,
    }
}

/// Runs entrypoint `name` with `argv` (without argv[0]); rkt's failure code 254 with one
/// line on any error (contract §2).
pub fn main(name: &str, argv: &[String]) -> ExitCode {
    let result = match name {
        "run" => args::RunArgs::parse(argv)
            .and_then(|a| run::run(&a))
            .map(ExitCode::from),
        "stop" => args::StopArgs::parse(argv)
            .and_then(|a| stop::stop(&a))
            .map(|()| ExitCode::SUCCESS),
        "gc" => args::GcArgs::parse(argv)
            .and_then(|a| gc::gc(&a))
            .map(|()| ExitCode::SUCCESS),
        _ => enter::EnterArgs::parse(argv)
            .and_then(|a| enter::enter(&a))
            .map(crate::exec_command::exit_code),
    };
    result.unwrap_or_else(|e| fail(&format!("{name}: {}", one_line(&e))))
}

/// `message` on one line: a reason quoted from elsewhere (an engine's stderr, say) may
/// hold line breaks, and stage0's callers expect one line per error.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line() {
        assert_eq!(one_line("plain"), "plain");
        assert_eq!(
            one_line("QEMU failed: first\n  second\n\nthird\n"),
            "QEMU failed: first; second; third"
        );
    }
}
