//! The serving loop end to end, in-process: the real loop over a Unix listener (an
//! abstract socket), real processes (`/bin/sh`, `cat`, `tty`, …), and the protocol crate
//! as the client, the way the host drives it.

mod control;
mod exec;

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::MutexGuard;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::control::{AgentToHost, HostToAgent, OutputStream};
use protocol::exec::{AgentToClient, ClientToAgent, ExecRequest};
use protocol::handshake::{self, ConnectionKind};
use protocol::{read_message, write_message, ExitStatus, ProcessSpec, WindowSize};

use super::{run, Config, Ending};

/// No test waits longer than this for anything.
const PATIENCE: Duration = Duration::from_secs(60);

/// Short timeouts, so that the tests of deadlines are quick.
fn config() -> Config {
    Config {
        apps_dir: None,
        init: false,
        shutdown_grace: Duration::from_millis(500),
        flush_timeout: Duration::from_secs(5),
        hangup_grace: Duration::from_millis(300),
        pty_linger: Duration::from_millis(300),
    }
}

/// A process spec running as the test's own user, in `/`, with a plain `PATH`.
fn spec(argv: &[&str]) -> ProcessSpec {
    ProcessSpec {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        cwd: "/".into(),
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        supplementary_gids: vec![],
    }
}

fn sh(script: &str) -> ProcessSpec {
    spec(&["/bin/sh", "-c", script])
}

fn exec_request(process: ProcessSpec) -> ExecRequest {
    ExecRequest {
        app: None,
        process,
        tty: false,
        window: None,
    }
}

fn tty_request(process: ProcessSpec, window: Option<WindowSize>) -> ExecRequest {
    ExecRequest {
        app: None,
        process,
        tty: true,
        window,
    }
}

/// `len` pseudo-random bytes (xorshift), in a file removed on drop.
struct DataFile {
    path: PathBuf,
    data: Vec<u8>,
}

impl DataFile {
    fn new(len: usize) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        data.truncate(len);
        let path = std::env::temp_dir().join(format!(
            "stage1-kvm-agent-test.{}.{}.bin",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, &data).unwrap();
        Self { path, data }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a process is gone (or a zombie no one collected yet: dead all the same).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Waits until `pid` is dead.
fn wait_dead(pid: u32) {
    let start = Instant::now();
    while !dead(pid) {
        assert!(start.elapsed() < PATIENCE, "process {pid} still alive");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The loop running on its own thread, listening on an abstract Unix socket.
struct Agent {
    addr: SocketAddr,
    thread: Option<JoinHandle<io::Result<Ending>>>,
    _turn: MutexGuard<'static, ()>,
}

impl Agent {
    fn start() -> Self {
        Self::with(config())
    }

    fn with(config: Config) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let turn = crate::test_support::children();
        let name = format!(
            "stage1-kvm-agent-test.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        let thread = std::thread::spawn(move || run(listener, config));
        Self {
            addr,
            thread: Some(thread),
            _turn: turn,
        }
    }

    /// A connection with nothing sent yet.
    fn connect(&self) -> UnixStream {
        let stream = UnixStream::connect_addr(&self.addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        stream
    }

    /// The control connection, after `hello` and `ready`.
    fn control(&self) -> Control {
        let mut stream = self.connect();
        handshake::connect(&mut stream, ConnectionKind::Control).unwrap();
        let mut control = Control { stream };
        assert_eq!(
            control.recv(),
            Some(AgentToHost::Hello {
                agent_version: env!("CARGO_PKG_VERSION").into()
            })
        );
        assert_eq!(control.recv(), Some(AgentToHost::Ready {}));
        control
    }

    /// An exec session: `Ok` once `started`, `Err` with the agent's `error`.
    fn exec(&self, request: ExecRequest) -> Result<Session, String> {
        let mut session = self.exec_unstarted(request);
        match session.recv() {
            Some(AgentToClient::Started { pid }) => {
                session.pid = pid;
                Ok(session)
            }
            Some(AgentToClient::Error { message }) => {
                assert_eq!(session.recv(), None, "the agent closes after an error");
                Err(message)
            }
            other => panic!("expected started or error, got {other:?}"),
        }
    }

    /// An exec session whose request is sent but whose answer is not read yet.
    fn exec_unstarted(&self, request: ExecRequest) -> Session {
        let mut stream = self.connect();
        handshake::connect(&mut stream, ConnectionKind::Exec).unwrap();
        let mut session = Session { stream, pid: 0 };
        session.send(&ClientToAgent::Exec(request));
        session
    }

    /// Waits for the loop to end.
    fn join(mut self) -> Ending {
        let thread = self.thread.take().unwrap();
        let start = Instant::now();
        while !thread.is_finished() {
            assert!(start.elapsed() < PATIENCE, "the loop did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        thread.join().unwrap().unwrap()
    }
}

impl Drop for Agent {
    /// A test that failed half-way leaves no loop behind for the next one: shut it down.
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if !thread.is_finished() {
            if let Ok(mut stream) = UnixStream::connect_addr(&self.addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                if handshake::connect(&mut stream, ConnectionKind::Control).is_ok() {
                    let _ = write_message(&mut stream, &HostToAgent::Shutdown {});
                }
            }
        }
        let start = Instant::now();
        while !thread.is_finished() && start.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// How an app ran, as the control connection told it.
#[derive(Debug)]
struct AppRun {
    pid: u32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: ExitStatus,
}

/// The host's side of the control connection.
struct Control {
    stream: UnixStream,
}

impl Control {
    fn send(&mut self, message: &HostToAgent) {
        write_message(&mut self.stream, message).unwrap();
    }

    /// The next message; `None` at the end of the connection.
    fn recv(&mut self) -> Option<AgentToHost> {
        read_message(&mut self.stream).unwrap()
    }

    fn start(&mut self, name: &str, process: ProcessSpec) {
        self.send(&HostToAgent::StartApp {
            name: name.into(),
            process,
        });
    }

    /// Starts an app; its pid, or the agent's error.
    fn start_app(&mut self, name: &str, process: ProcessSpec) -> Result<u32, String> {
        self.start(name, process);
        match self.recv() {
            Some(AgentToHost::AppStarted { name: n, pid }) if n == name => Ok(pid),
            Some(AgentToHost::Error {
                app: Some(n),
                message,
            }) if n == name => Err(message),
            other => panic!("expected app_started or error for {name}, got {other:?}"),
        }
    }

    /// Starts an app and collects everything about it up to its exit (no other app may
    /// be running).
    fn run_app(&mut self, name: &str, process: ProcessSpec) -> AppRun {
        let pid = self.start_app(name, process).unwrap();
        let (stdout, stderr, status) = self.collect(name);
        AppRun {
            pid,
            stdout,
            stderr,
            status,
        }
    }

    /// Output and exit of a started app (no other app may be running).
    fn collect(&mut self, name: &str) -> (Vec<u8>, Vec<u8>, ExitStatus) {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            match self.recv() {
                Some(AgentToHost::AppOutput {
                    name: n,
                    stream,
                    data,
                }) if n == name => match stream {
                    OutputStream::Stdout => stdout.extend(data),
                    OutputStream::Stderr => stderr.extend(data),
                },
                Some(AgentToHost::AppExited { name: n, status }) if n == name => {
                    return (stdout, stderr, status)
                }
                other => panic!("expected output or exit of {name}, got {other:?}"),
            }
        }
    }

    /// Reads until an app's output contains `text`.
    fn wait_output(&mut self, name: &str, text: &str) {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(text) {
            match self.recv() {
                Some(AgentToHost::AppOutput { name: n, data, .. }) if n == name => {
                    seen.extend(data);
                }
                other => panic!("expected output of {name}, got {other:?}"),
            }
        }
    }
}

/// What an exec session produced.
#[derive(Debug)]
struct Outcome {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: ExitStatus,
}

impl Outcome {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// The client's side of an exec session.
struct Session {
    stream: UnixStream,
    pid: u32,
}

impl Session {
    fn send(&mut self, message: &ClientToAgent) {
        write_message(&mut self.stream, message).unwrap();
    }

    fn recv(&mut self) -> Option<AgentToClient> {
        read_message(&mut self.stream).unwrap()
    }

    fn stdin(&mut self, data: &[u8]) {
        self.send(&ClientToAgent::Stdin {
            data: data.to_vec(),
        });
    }

    /// Everything up to `exited`, then checks the agent closes.
    fn collect(&mut self) -> Outcome {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            match self.recv() {
                Some(AgentToClient::Stdout { data }) => stdout.extend(data),
                Some(AgentToClient::Stderr { data }) => stderr.extend(data),
                Some(AgentToClient::Exited { status }) => {
                    assert_eq!(self.recv(), None, "exited is the last message");
                    return Outcome {
                        stdout,
                        stderr,
                        status,
                    };
                }
                other => panic!("expected output or exited, got {other:?}"),
            }
        }
    }

    /// Reads stdout until it contains `text`; returns what was read.
    fn wait_stdout(&mut self, text: &str) -> String {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(text) {
            match self.recv() {
                Some(AgentToClient::Stdout { data }) => seen.extend(data),
                other => panic!("expected stdout containing {text:?}, got {other:?}"),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }
}
