//! The handshake and the control connection.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use protocol::control::{AgentToHost, HostToAgent, StopMode};
use protocol::handshake::{self, ConnectionKind, Status};
use protocol::ExitStatus;

use super::*;

/// Sends a raw preamble and returns the agent's 8-byte answer, checking it then closes.
fn raw_handshake(agent: &Agent, preamble: &[u8; 8]) -> [u8; 8] {
    let mut stream = agent.connect();
    stream.write_all(preamble).unwrap();
    let mut answer = [0u8; 8];
    stream.read_exact(&mut answer).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after a refusal");
    answer
}

#[test]
fn handshake_accepts_control_and_exec_and_says_hello_then_ready() {
    let agent = Agent::start();
    let mut control = agent.control();

    let mut exec = agent.connect();
    handshake::connect(&mut exec, ConnectionKind::Exec).unwrap();
    drop(exec);

    control.send(&HostToAgent::Shutdown {});
    assert_eq!(control.recv(), None);
    assert_eq!(agent.join(), Ending::Shutdown);
}

#[test]
fn version_mismatch_and_bad_magic_are_refused_and_closed() {
    let agent = Agent::start();

    let mut newer = handshake::hello(ConnectionKind::Control);
    newer[4..6].copy_from_slice(&7u16.to_be_bytes());
    let answer = raw_handshake(&agent, &newer);
    assert_eq!(&answer[..4], b"S1KV");
    assert_eq!(
        u16::from_be_bytes([answer[4], answer[5]]),
        protocol::PROTOCOL_VERSION,
        "the answer carries the agent's own version"
    );
    assert_eq!(answer[7], Status::VersionMismatch.as_byte());

    let answer = raw_handshake(&agent, b"GET / HT");
    assert_eq!(answer[7], Status::BadMagic.as_byte());

    // The agent still serves, the refused control connection did not take the slot.
    let mut control = agent.control();
    let run = control.run_app("after", sh("echo ok"));
    assert_eq!(run.stdout, b"ok\n");
    control.send(&HostToAgent::Shutdown {});
    assert_eq!(control.recv(), None);
    assert_eq!(agent.join(), Ending::Shutdown);
}

#[test]
fn a_second_control_connection_is_refused() {
    let agent = Agent::start();
    let mut control = agent.control();

    let mut second = agent.connect();
    let err = handshake::connect(&mut second, ConnectionKind::Control).unwrap_err();
    assert!(
        matches!(err, protocol::Error::UnsupportedConnectionKind { kind: 1 }),
        "{err:?}"
    );

    let run = control.run_app("still-works", sh("exit 0"));
    assert_eq!(run.status, ExitStatus::Code(0));
}

#[test]
fn an_app_streams_its_output_and_reports_its_exit_code() {
    let agent = Agent::start();
    let mut control = agent.control();
    let run = control.run_app("hello", sh("echo hi; exit 3"));
    assert!(run.pid > 1);
    assert_eq!(run.stdout, b"hi\n");
    assert_eq!(run.stderr, b"");
    assert_eq!(run.status, ExitStatus::Code(3));
}

#[test]
fn exit_codes_and_signal_deaths_are_exact() {
    let agent = Agent::start();
    let mut control = agent.control();
    for (i, (script, expected)) in [
        ("exit 0", ExitStatus::Code(0)),
        ("exit 1", ExitStatus::Code(1)),
        ("exit 255", ExitStatus::Code(255)),
        ("kill -9 $$", ExitStatus::Signal(9)),
        ("kill -TERM $$", ExitStatus::Signal(15)),
    ]
    .into_iter()
    .enumerate()
    {
        let run = control.run_app(&format!("app{i}"), sh(script));
        assert_eq!(run.status, expected, "{script}");
    }
}

#[test]
fn unexecutable_programs_get_rkt_style_diagnostics() {
    let agent = Agent::start();
    let mut control = agent.control();

    let err = control
        .start_app("missing", spec(&["/nonexistent/prog", "x"]))
        .unwrap_err();
    assert_eq!(
        err,
        r#"Unable to open "/nonexistent/prog": No such file or directory"#
    );

    let err = control
        .start_app("unknown", spec(&["no-such-program-here"]))
        .unwrap_err();
    assert_eq!(
        err,
        r#"Unable to open "no-such-program-here": No such file or directory"#
    );

    let not_executable = DataFile::new(16);
    let err = control
        .start_app("noexec", spec(&[not_executable.path()]))
        .unwrap_err();
    assert_eq!(
        err,
        format!(
            r#"Unable to open "{}": Permission denied"#,
            not_executable.path()
        )
    );

    let mut in_nowhere = spec(&["/bin/true"]);
    in_nowhere.cwd = "/nonexistent-dir".into();
    let err = control.start_app("nowhere", in_nowhere).unwrap_err();
    assert_eq!(
        err,
        r#"cannot change to working directory "/nonexistent-dir": No such file or directory"#
    );

    // Failed apps leave nothing behind; the same names can be used again.
    let run = control.run_app("missing", sh("exit 7"));
    assert_eq!(run.status, ExitStatus::Code(7));
}

#[test]
fn apps_get_exactly_the_environment_argv0_cwd_and_session_asked_for() {
    let agent = Agent::start();
    let mut control = agent.control();

    let mut env = spec(&["/usr/bin/env"]);
    env.env = vec![
        ("B".into(), "two words".into()),
        ("A".into(), "1".into()),
        ("EMPTY".into(), String::new()),
    ];
    let run = control.run_app("env", env);
    assert_eq!(
        String::from_utf8(run.stdout).unwrap(),
        "B=two words\nA=1\nEMPTY=\n"
    );

    // As rkt does for apps, argv[0] becomes the program found in PATH.
    let run = control.run_app("argv0", spec(&["cat", "/proc/self/cmdline"]));
    let cmdline = String::from_utf8(run.stdout).unwrap();
    assert!(
        cmdline.ends_with("/cat\0/proc/self/cmdline\0") && cmdline.starts_with('/'),
        "{cmdline:?}"
    );

    let mut pwd = spec(&["pwd"]);
    pwd.cwd = "/tmp".into();
    assert_eq!(control.run_app("pwd", pwd).stdout, b"/tmp\n");

    // Its own session and process group.
    let run = control.run_app("stat", spec(&["cat", "/proc/self/stat"]));
    let stat = String::from_utf8(run.stdout).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (pgrp, session) = (fields[2], fields[3]);
    assert_eq!(pgrp, run.pid.to_string());
    assert_eq!(session, run.pid.to_string());
}

#[test]
fn apps_run_as_the_user_and_groups_asked_for() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: identity changes cannot be tested here");
        return;
    }
    let agent = Agent::start();
    let mut control = agent.control();
    let mut id = sh("id -u; id -g; id -G");
    id.uid = 1234;
    id.gid = 2345;
    id.supplementary_gids = vec![3456, 4567];
    let run = control.run_app("id", id);
    assert_eq!(
        String::from_utf8(run.stdout).unwrap(),
        "1234\n2345\n2345 3456 4567\n"
    );
    assert_eq!(run.status, ExitStatus::Code(0));
}

#[test]
fn sixteen_mib_on_stdout_and_stderr_arrive_intact_from_a_process_that_exits_at_once() {
    let file = DataFile::new(16 << 20);
    let agent = Agent::start();
    let mut control = agent.control();
    let run = control.run_app(
        "flood",
        sh(&format!("exec tee /dev/stderr < {}", file.path())),
    );
    assert_eq!(run.status, ExitStatus::Code(0));
    assert!(
        run.stdout == file.data,
        "stdout differs ({} bytes)",
        run.stdout.len()
    );
    assert!(
        run.stderr == file.data,
        "stderr differs ({} bytes)",
        run.stderr.len()
    );
}

#[test]
fn stop_graceful_then_force_and_stop_of_an_unknown_app() {
    let agent = Agent::start();
    let mut control = agent.control();

    // Graceful: SIGTERM is enough.
    control
        .start_app("sleeper", sh("echo up; exec sleep 100"))
        .unwrap();
    control.wait_output("sleeper", "up");
    control.send(&HostToAgent::Stop {
        app: Some("sleeper".into()),
        mode: StopMode::Graceful { timeout_ms: 10_000 },
    });
    let (_, _, status) = control.collect("sleeper");
    assert_eq!(status, ExitStatus::Signal(15));

    // Graceful on a process that ignores SIGTERM: SIGKILL after the timeout.
    control
        .start_app(
            "stubborn",
            sh("trap '' TERM; echo up; while :; do sleep 0.05; done"),
        )
        .unwrap();
    control.wait_output("stubborn", "up");
    let asked = Instant::now();
    control.send(&HostToAgent::Stop {
        app: Some("stubborn".into()),
        mode: StopMode::Graceful { timeout_ms: 300 },
    });
    let (_, _, status) = control.collect("stubborn");
    assert_eq!(status, ExitStatus::Signal(9));
    assert!(asked.elapsed() >= Duration::from_millis(300));

    // Force: SIGKILL at once.
    control
        .start_app("doomed", sh("trap '' TERM; echo up; exec sleep 100"))
        .unwrap();
    control.wait_output("doomed", "up");
    control.send(&HostToAgent::Stop {
        app: Some("doomed".into()),
        mode: StopMode::Force,
    });
    assert_eq!(control.collect("doomed").2, ExitStatus::Signal(9));

    control.send(&HostToAgent::Stop {
        app: Some("ghost".into()),
        mode: StopMode::Force,
    });
    assert_eq!(
        control.recv(),
        Some(AgentToHost::Error {
            app: Some("ghost".into()),
            message: r#"app "ghost" is not running"#.into()
        })
    );

    // Every app at once.
    let a = control.start_app("a", spec(&["sleep", "100"])).unwrap();
    let b = control.start_app("b", spec(&["sleep", "100"])).unwrap();
    control.send(&HostToAgent::Stop {
        app: None,
        mode: StopMode::Force,
    });
    let mut exited = Vec::new();
    while exited.len() < 2 {
        match control.recv() {
            Some(AgentToHost::AppExited { name, status }) => exited.push((name, status)),
            other => panic!("expected app_exited, got {other:?}"),
        }
    }
    exited.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        exited,
        [
            ("a".to_owned(), ExitStatus::Signal(9)),
            ("b".to_owned(), ExitStatus::Signal(9))
        ]
    );
    assert!(dead(a) && dead(b));
}

#[test]
fn shutdown_sends_all_output_and_exits_before_the_loop_ends() {
    let file = DataFile::new(50_000);
    let agent = Agent::start();
    let mut control = agent.control();

    let script = format!(
        // (`wait` for a background sleep: a foreground one killed by the SIGTERM to the
        // group would make the shell print "Terminated".)
        "trap 'cat {}; echo bye; exit 0' TERM; echo hi; sleep 100 & wait",
        file.path()
    );
    control.start_app("talker", sh(&script)).unwrap();
    control.wait_output("talker", "hi");
    control.start_app("quiet", spec(&["sleep", "100"])).unwrap();
    let mut session = agent.exec(exec_request(spec(&["cat"]))).unwrap();

    control.send(&HostToAgent::Shutdown {});
    // The loop ends (where the agent powers off) before the test reads anything: what
    // follows must all have been written by then.
    assert_eq!(agent.join(), Ending::Shutdown);

    let mut talker_out = Vec::new();
    let mut exits = Vec::new();
    while let Some(message) = control.recv() {
        match message {
            AgentToHost::AppOutput { name, data, .. } if name == "talker" => {
                talker_out.extend(data);
            }
            AgentToHost::AppExited { name, status } => exits.push((name, status)),
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut expected = file.data.clone();
    expected.extend(b"bye\n");
    assert!(
        talker_out == expected,
        "talker's output differs: {} bytes, {} expected",
        talker_out.len(),
        expected.len()
    );
    exits.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        exits,
        [
            ("quiet".to_owned(), ExitStatus::Signal(15)),
            ("talker".to_owned(), ExitStatus::Code(0)),
        ]
    );
    assert_eq!(session.collect().status, ExitStatus::Signal(15));
}

#[test]
fn losing_the_control_connection_kills_the_apps_and_fails_the_pod() {
    let agent = Agent::start();
    let mut control = agent.control();
    let pid = control
        .start_app("victim", spec(&["sleep", "100"]))
        .unwrap();
    drop(control);
    match agent.join() {
        Ending::ControlLost(reason) => {
            assert_eq!(reason, "the control connection was closed");
        }
        other => panic!("expected a lost control connection, got {other:?}"),
    }
    assert!(dead(pid));
}

#[test]
fn a_malformed_control_frame_closes_the_connection_and_fails_the_pod() {
    let agent = Agent::start();
    let mut control = agent.control();
    protocol::frame::write_frame(&mut control.stream, br#"{"type":"start_app"}"#).unwrap();
    match control.recv() {
        Some(AgentToHost::Error { app: None, message }) => {
            assert!(message.starts_with("malformed message"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(control.recv(), None);
    match agent.join() {
        Ending::ControlLost(reason) => assert!(reason.contains("malformed"), "{reason}"),
        other => panic!("expected a lost control connection, got {other:?}"),
    }
}
