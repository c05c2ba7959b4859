//! Exec sessions: run one process in the guest through the agent, with its stdin, stdout
//! and stderr carried over the connection and its exit status returned exactly.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};

use protocol::exec::{AgentToClient, ClientToAgent, ExecRequest};
use protocol::{handshake, read_message, write_message, ConnectionKind, ExitStatus, MAX_CHUNK_LEN};

use super::HANDSHAKE_TIMEOUT;

/// Where the session's streams come from and go to.
pub struct ExecIo {
    /// Copied to the process's stdin until EOF; `None` closes its stdin at once.
    pub stdin: Option<Box<dyn Read + Send>>,
    /// Receives the process's stdout (and, with a tty, everything it writes).
    pub stdout: Box<dyn Write>,
    /// Receives the process's stderr.
    pub stderr: Box<dyn Write>,
}

impl std::fmt::Debug for ExecIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecIo")
            .field("stdin", &self.stdin.is_some())
            .finish_non_exhaustive()
    }
}

/// The writing half of a session, shared by the stdin pump and resize requests.
#[derive(Clone, Debug)]
pub struct SessionWriter(Arc<Mutex<UnixStream>>);

impl SessionWriter {
    /// Sends one message to the agent.
    pub fn send(&self, message: &ClientToAgent) -> Result<(), String> {
        let mut stream = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        write_message(&mut *stream, message).map_err(|e| format!("exec session: {e}"))
    }
}

/// Runs `request` over `stream` (a fresh connection to the agent's port) and returns how
/// the process ended. `on_started` gets the session's writer once the process runs (to
/// forward resizes or signals).
pub fn run(
    mut stream: UnixStream,
    request: ExecRequest,
    io: ExecIo,
    on_started: impl FnOnce(SessionWriter),
) -> Result<ExitStatus, String> {
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| format!("exec session: setting a timeout: {e}"))?;
    handshake::connect(&mut stream, ConnectionKind::Exec)
        .map_err(|e| format!("exec session: handshake: {e}"))?;
    stream
        .set_read_timeout(None)
        .map_err(|e| format!("exec session: clearing the timeout: {e}"))?;
    let writer = SessionWriter(Arc::new(Mutex::new(
        stream
            .try_clone()
            .map_err(|e| format!("exec session: {e}"))?,
    )));
    writer.send(&ClientToAgent::Exec(request))?;

    let ExecIo {
        mut stdin,
        mut stdout,
        mut stderr,
    } = io;
    let mut on_started = Some(on_started);
    loop {
        let message: Option<AgentToClient> =
            read_message(&mut stream).map_err(|e| format!("exec session: {e}"))?;
        match message {
            None => {
                return Err(
                    "exec session: the agent closed the connection before the process ended"
                        .to_owned(),
                )
            }
            Some(AgentToClient::Started { .. }) => {
                match stdin.take() {
                    Some(input) => pump_stdin(input, writer.clone()),
                    // A failure to write shows as the connection's end on the next read.
                    None => {
                        let _ = writer.send(&ClientToAgent::StdinEof {});
                    }
                }
                if let Some(f) = on_started.take() {
                    f(writer.clone());
                }
            }
            Some(AgentToClient::Stdout { data }) => write_out(&mut stdout, &data, "stdout")?,
            Some(AgentToClient::Stderr { data }) => write_out(&mut stderr, &data, "stderr")?,
            Some(AgentToClient::Exited { status }) => return Ok(status),
            Some(AgentToClient::Error { message }) => return Err(message),
        }
    }
}

fn write_out(out: &mut dyn Write, data: &[u8], name: &str) -> Result<(), String> {
    out.write_all(data)
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the process's {name}: {e}"))
}

/// Copies `input` to the session as `stdin` frames on a thread of its own, then `stdin_eof`.
/// The thread ends with the input or the connection.
fn pump_stdin(mut input: Box<dyn Read + Send>, writer: SessionWriter) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; MAX_CHUNK_LEN];
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if writer
                        .send(&ClientToAgent::Stdin {
                            data: buf[..n].to_vec(),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = writer.send(&ClientToAgent::StdinEof {});
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ProcessSpec;

    fn request() -> ExecRequest {
        ExecRequest {
            app: None,
            process: ProcessSpec {
                argv: vec!["/bin/cat".into()],
                env: vec![],
                cwd: "/".into(),
                uid: 0,
                gid: 0,
                supplementary_gids: vec![],
            },
            tty: false,
            window: None,
        }
    }

    /// A fake agent that echoes stdin to stdout, says "err" on stderr and exits 7.
    fn echo_agent() -> UnixStream {
        let (host, mut agent) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            handshake::accept(&mut agent, &[ConnectionKind::Exec]).unwrap();
            let first: Option<ClientToAgent> = read_message(&mut agent).unwrap();
            assert!(matches!(first, Some(ClientToAgent::Exec(_))));
            write_message(&mut agent, &AgentToClient::Started { pid: 5 }).unwrap();
            write_message(
                &mut agent,
                &AgentToClient::Stderr {
                    data: b"err".to_vec(),
                },
            )
            .unwrap();
            loop {
                match read_message::<_, ClientToAgent>(&mut agent).unwrap() {
                    Some(ClientToAgent::Stdin { data }) => {
                        write_message(&mut agent, &AgentToClient::Stdout { data }).unwrap();
                    }
                    Some(ClientToAgent::StdinEof {}) | None => break,
                    Some(other) => panic!("unexpected {other:?}"),
                }
            }
            let exited = AgentToClient::Exited {
                status: ExitStatus::Code(7),
            };
            write_message(&mut agent, &exited).unwrap();
        });
        host
    }

    /// A writer whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn stdin_reaches_the_process_and_output_and_status_come_back() {
        let input: Vec<u8> = (0..200_000u32)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let (stdout, stderr) = (Sink::default(), Sink::default());
        let io = ExecIo {
            stdin: Some(Box::new(std::io::Cursor::new(input.clone()))),
            stdout: Box::new(stdout.clone()),
            stderr: Box::new(stderr.clone()),
        };
        let mut started = false;
        let status = run(echo_agent(), request(), io, |_| started = true).unwrap();
        assert_eq!(status, ExitStatus::Code(7));
        assert!(started);
        assert_eq!(*stdout.0.lock().unwrap(), input);
        assert_eq!(*stderr.0.lock().unwrap(), b"err");
    }

    #[test]
    fn an_agent_error_is_the_sessions_error() {
        let (host, mut agent) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            handshake::accept(&mut agent, &[ConnectionKind::Exec]).unwrap();
            let _: Option<ClientToAgent> = read_message(&mut agent).unwrap();
            let error = AgentToClient::Error {
                message: "Unable to open \"/nope\": No such file or directory".into(),
            };
            write_message(&mut agent, &error).unwrap();
        });
        let io = ExecIo {
            stdin: None,
            stdout: Box::new(Sink::default()),
            stderr: Box::new(Sink::default()),
        };
        let err = run(host, request(), io, |_| {}).unwrap_err();
        assert_eq!(err, "Unable to open \"/nope\": No such file or directory");
    }

    #[test]
    fn a_connection_lost_mid_session_is_an_error_not_an_exit_code() {
        let (host, mut agent) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            handshake::accept(&mut agent, &[ConnectionKind::Exec]).unwrap();
            let _: Option<ClientToAgent> = read_message(&mut agent).unwrap();
            write_message(&mut agent, &AgentToClient::Started { pid: 9 }).unwrap();
        });
        let io = ExecIo {
            stdin: None,
            stdout: Box::new(Sink::default()),
            stderr: Box::new(Sink::default()),
        };
        let err = run(host, request(), io, |_| {}).unwrap_err();
        assert!(err.contains("closed the connection"), "{err}");
    }
}
