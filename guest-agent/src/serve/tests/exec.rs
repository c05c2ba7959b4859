//! Exec sessions.

use std::time::Duration;

use protocol::exec::{AgentToClient, ClientToAgent};
use protocol::{ExitStatus, WindowSize, MAX_CHUNK_LEN};

use super::*;

#[test]
fn stdin_is_piped_and_stdin_eof_ends_it() {
    let agent = Agent::start();
    let mut session = agent.exec(exec_request(spec(&["cat"]))).unwrap();
    assert!(session.pid > 1);
    session.stdin(b"hello\n");
    assert_eq!(session.wait_stdout("hello\n"), "hello\n");
    session.stdin(b"world");
    session.send(&ClientToAgent::StdinEof {});
    let outcome = session.collect();
    assert_eq!(outcome.stdout, b"world");
    assert_eq!(outcome.status, ExitStatus::Code(0));
}

#[test]
fn megabytes_of_stdin_round_trip_through_cat_with_backpressure_both_ways() {
    let file = DataFile::new(8 << 20);
    let agent = Agent::start();
    let session = agent.exec(exec_request(spec(&["cat"]))).unwrap();
    let mut writer = session.stream.try_clone().unwrap();
    let data = file.data.clone();
    let feeder = std::thread::spawn(move || {
        for chunk in data.chunks(MAX_CHUNK_LEN) {
            let message = ClientToAgent::Stdin {
                data: chunk.to_vec(),
            };
            protocol::write_message(&mut writer, &message).unwrap();
        }
        protocol::write_message(&mut writer, &ClientToAgent::StdinEof {}).unwrap();
    });
    let mut session = session;
    let outcome = session.collect();
    feeder.join().unwrap();
    assert_eq!(outcome.status, ExitStatus::Code(0));
    assert!(
        outcome.stdout == file.data,
        "{} bytes back",
        outcome.stdout.len()
    );
}

#[test]
fn sixteen_mib_on_stdout_and_stderr_arrive_intact() {
    let file = DataFile::new(16 << 20);
    let agent = Agent::start();
    let script = format!("exec tee /dev/stderr < {}", file.path());
    let outcome = agent.exec(exec_request(sh(&script))).unwrap().collect();
    assert_eq!(outcome.status, ExitStatus::Code(0));
    assert!(outcome.stdout == file.data, "stdout differs");
    assert!(outcome.stderr == file.data, "stderr differs");
}

#[test]
fn a_client_that_does_not_read_holds_back_its_process_not_the_agent() {
    let agent = Agent::start();
    let mut flood = agent
        .exec(exec_request(sh("head -c 8388608 /dev/zero; echo done >&2")))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !dead(flood.pid),
        "the process must be blocked on a full pipe, not buffered in the agent"
    );

    // Meanwhile the agent serves others.
    let other = agent
        .exec(exec_request(sh("echo other")))
        .unwrap()
        .collect();
    assert_eq!(other.stdout, b"other\n");

    let outcome = flood.collect();
    assert_eq!(outcome.stdout.len(), 8 << 20);
    assert_eq!(outcome.stderr, b"done\n");
    assert_eq!(outcome.status, ExitStatus::Code(0));
}

#[test]
fn exec_keeps_argv0_as_given_and_reports_a_missing_program() {
    let agent = Agent::start();
    let outcome = agent
        .exec(exec_request(spec(&["cat", "/proc/self/cmdline"])))
        .unwrap()
        .collect();
    assert_eq!(outcome.stdout, b"cat\0/proc/self/cmdline\0");

    let err = agent
        .exec(exec_request(spec(&["/nope", "arg"])))
        .err()
        .unwrap();
    assert_eq!(err, r#"Unable to open "/nope": No such file or directory"#);
}

#[test]
fn a_tty_session_gets_a_pty_as_controlling_terminal() {
    let agent = Agent::start();
    let outcome = agent
        .exec(tty_request(spec(&["tty"]), None))
        .unwrap()
        .collect();
    assert_eq!(outcome.status, ExitStatus::Code(0));
    assert!(
        outcome.stdout_text().starts_with("/dev/pts/"),
        "{:?}",
        outcome.stdout_text()
    );

    let window = WindowSize { rows: 24, cols: 80 };
    let script = "test -t 0 && test -t 1 && test -t 2 && stty size && echo oops >&2";
    let outcome = agent
        .exec(tty_request(sh(script), Some(window)))
        .unwrap()
        .collect();
    assert_eq!(outcome.status, ExitStatus::Code(0));
    // The terminal turns "\n" into "\r\n", and stderr is the terminal too.
    assert_eq!(outcome.stdout_text(), "24 80\r\noops\r\n");
    assert!(outcome.stderr.is_empty());

    // A controlling terminal: /dev/tty opens.
    let outcome = agent
        .exec(tty_request(sh("echo x > /dev/tty"), None))
        .unwrap()
        .collect();
    assert_eq!(outcome.status, ExitStatus::Code(0));
    assert_eq!(outcome.stdout_text(), "x\r\n");
}

#[test]
fn resize_reaches_the_terminal() {
    let agent = Agent::start();
    let window = WindowSize { rows: 24, cols: 80 };
    let mut session = agent
        .exec(tty_request(
            sh("stty size; read line; stty size"),
            Some(window),
        ))
        .unwrap();
    session.wait_stdout("24 80");
    session.send(&ClientToAgent::Resize(WindowSize {
        rows: 50,
        cols: 132,
    }));
    session.stdin(b"\n");
    let outcome = session.collect();
    assert_eq!(outcome.status, ExitStatus::Code(0));
    assert!(
        outcome.stdout_text().contains("50 132"),
        "{:?}",
        outcome.stdout_text()
    );
}

#[test]
fn stdin_eof_on_a_tty_ends_input_even_after_a_partial_line() {
    let agent = Agent::start();
    for input in [&b"line\n"[..], b"partial"] {
        let mut session = agent.exec(tty_request(spec(&["cat"]), None)).unwrap();
        session.stdin(input);
        session.send(&ClientToAgent::StdinEof {});
        let outcome = session.collect();
        assert_eq!(outcome.status, ExitStatus::Code(0), "{input:?}");
        let text = String::from_utf8_lossy(input).trim().to_owned();
        assert!(
            outcome.stdout_text().contains(&text),
            "{:?}",
            outcome.stdout_text()
        );
    }
}

#[test]
fn a_tty_process_that_closes_its_terminal_keeps_its_own_exit_status() {
    // The master reads EIO as soon as the terminal is closed everywhere, here long before
    // the exit. Closing the master then would hang the terminal up and kill the process
    // with SIGHUP; the agent keeps it open until the process is reaped.
    let agent = Agent::start();
    let script = "read line; echo bye; exec 0<&- 1>&- 2>&-; sleep 0.3; exit 5";
    let mut session = agent.exec(tty_request(sh(script), None)).unwrap();
    // The end of stdin closes the agent's writer on the master, so only the reader is
    // left holding it.
    session.stdin(b"\n");
    session.send(&ClientToAgent::StdinEof {});
    let outcome = session.collect();
    assert_eq!(outcome.stdout_text(), "\r\nbye\r\n");
    assert_eq!(outcome.status, ExitStatus::Code(5));
}

#[test]
fn signals_reach_the_process_group() {
    let agent = Agent::start();
    let mut session = agent.exec(exec_request(sh("echo up; sleep 100"))).unwrap();
    session.wait_stdout("up");
    session.send(&ClientToAgent::Signal { signal: 15 });
    assert_eq!(session.collect().status, ExitStatus::Signal(15));

    // With a tty: ^C's signal to the foreground group. (`cat` itself, not a shell: dash
    // defers a SIGINT that arrives before it started its foreground command.)
    let mut session = agent.exec(tty_request(spec(&["cat"]), None)).unwrap();
    session.send(&ClientToAgent::Signal { signal: 2 });
    assert_eq!(session.collect().status, ExitStatus::Signal(2));
}

#[test]
fn twenty_sessions_run_concurrently() {
    let agent = Agent::start();
    let mut sessions: Vec<Session> = (0..20)
        .map(|i| {
            let script = format!("read x; echo \"session $x\"; exit {i}");
            agent.exec(exec_request(sh(&script))).unwrap()
        })
        .collect();
    // All run at once: each waits for its stdin, given in reverse order.
    for (i, session) in sessions.iter_mut().enumerate().rev() {
        session.stdin(format!("{i}\n").as_bytes());
    }
    for (i, session) in sessions.iter_mut().enumerate() {
        let outcome = session.collect();
        assert_eq!(outcome.stdout_text(), format!("session {i}\n"));
        assert_eq!(outcome.status, ExitStatus::Code(i32::try_from(i).unwrap()));
    }
}

#[test]
fn a_client_that_vanishes_mid_stream_gets_its_process_group_killed() {
    let agent = Agent::start();

    // Streaming, with a background child in the same group.
    let mut session = agent
        .exec(exec_request(sh(
            "sleep 1000 & echo \"bg $!\"; while :; do echo spam; done",
        )))
        .unwrap();
    let seen = session.wait_stdout("spam");
    let background: u32 = seen
        .lines()
        .find_map(|l| l.strip_prefix("bg "))
        .unwrap()
        .parse()
        .unwrap();
    let leader = session.pid;
    drop(session);
    wait_dead(leader);
    wait_dead(background);

    // Ignoring SIGHUP does not help: SIGKILL follows.
    let mut session = agent
        .exec(exec_request(sh(
            "trap '' HUP; echo up; while :; do sleep 0.05; done",
        )))
        .unwrap();
    session.wait_stdout("up");
    let stubborn = session.pid;
    drop(session);
    wait_dead(stubborn);

    // A tty session.
    let mut session = agent
        .exec(tty_request(sh("echo up; sleep 1000"), None))
        .unwrap();
    session.wait_stdout("up");
    let tty_leader = session.pid;
    drop(session);
    wait_dead(tty_leader);

    // The agent serves on.
    let outcome = agent.exec(exec_request(sh("echo fine"))).unwrap().collect();
    assert_eq!(outcome.stdout, b"fine\n");
}

#[test]
fn malformed_or_out_of_order_frames_close_only_their_connection() {
    let agent = Agent::start();
    let mut control = agent.control();
    let mut good = agent.exec(exec_request(spec(&["cat"]))).unwrap();

    let frame = |body: &[u8]| protocol::frame::encode_frame(body).unwrap();
    let bad_frames = [
        (frame(b"not json"), "malformed message"),
        (b"\xff\xff\xff\xff".to_vec(), "exceeds the limit"),
        (frame(br#"{"type":"launch_missiles"}"#), "malformed message"),
        (
            frame(br#"{"type":"stdin","data":"eA=="}"#),
            "expected an exec request first, got stdin",
        ),
    ];
    for (frame, expected) in bad_frames {
        let mut stream = agent.connect();
        handshake::connect(&mut stream, ConnectionKind::Exec).unwrap();
        std::io::Write::write_all(&mut stream, &frame).unwrap();
        let mut session = Session { stream, pid: 0 };
        match session.recv() {
            Some(AgentToClient::Error { message }) => {
                assert!(message.contains(expected), "{message} lacks {expected}");
            }
            other => panic!("expected an error for {frame:?}, got {other:?}"),
        }
        assert_eq!(session.recv(), None);
    }

    // A second exec request in a running session ends that session, and its process.
    let mut twice = agent.exec(exec_request(spec(&["cat"]))).unwrap();
    twice.send(&ClientToAgent::Exec(exec_request(spec(&["cat"]))));
    assert!(matches!(twice.recv(), Some(AgentToClient::Error { .. })));
    assert_eq!(twice.recv(), None);
    wait_dead(twice.pid);

    // The others are untouched.
    good.stdin(b"still here\n");
    good.send(&ClientToAgent::StdinEof {});
    let outcome = good.collect();
    assert_eq!(outcome.stdout, b"still here\n");
    assert_eq!(outcome.status, ExitStatus::Code(0));
    let run = control.run_app("alive", sh("echo yes"));
    assert_eq!(run.stdout, b"yes\n");
}
