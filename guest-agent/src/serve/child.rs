//! Starting a process as the host asked: program, arguments and environment exactly as
//! given, working directory, root, user, groups, and its own session; and how it ended.
//!
//! Spawning is `fork` + `execve` rather than `std::process::Command`, because the order
//! matters and `Command` fixes another one: the child must `chroot` and `setgroups` while
//! still root, then drop to the requested group and user, then change to the working
//! directory (as that user, so permissions apply), then exec; and a failure must say
//! which step failed. Everything the child needs is allocated before `fork`; between
//! `fork` and `execve` the child makes only async-signal-safe system calls (this process
//! may have other threads under `cargo test`) and reports a failure as a 9-byte record on
//! a close-on-exec pipe: the step, the errno and which candidate program it concerned.
//!
//! **Program lookup**, as rkt resolves an app's `exec[0]`: an absolute path is used as is;
//! a path with a `/` is taken relative to the working directory; a bare name is searched
//! in the `PATH` of the process's own environment, or in the working directory, `/bin`
//! and `/usr/bin` when it has none. The search happens in the child, after `chroot`, so
//! it sees the app's root exactly as the program will (symlinks included): each candidate
//! is tried with `execve` in order, like `execvp`. For apps the program found becomes
//! `argv[0]` (rkt does so); exec sessions keep `argv[0]` as given (rkt's `enterexec`
//! uses `execvp`).
//!
//! A program that cannot be executed is reported like rkt's diagnostic does:
//! `Unable to open "<path>": <errno text>`.

use std::ffi::{CString, NulError};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::raw::c_char;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{
    chdir, chroot, dup2, fork, geteuid, pipe2, setgid, setsid, setuid, ForkResult, Gid, Pid, Uid,
};
use protocol::{ExitStatus, ProcessSpec, WindowSize};

use super::pty;

/// The child's standard descriptors.
#[derive(Clone, Copy, Debug)]
pub enum Stdio {
    /// An app: stdin is `/dev/null`, stdout and stderr are pipes to the agent.
    App,
    /// An exec session without a tty: stdin, stdout and stderr are pipes.
    Piped,
    /// An exec session with a tty of this size: all three are the slave of a new
    /// pseudo-terminal, which is also the child's controlling terminal.
    Tty(Option<WindowSize>),
}

/// What `argv[0]` the program gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Argv0 {
    /// The one in the request.
    AsGiven,
    /// The path of the program found (rkt's rule for apps).
    Resolved,
}

/// A process to start.
#[derive(Debug)]
pub struct Request<'a> {
    /// Program, arguments, environment, working directory, identity.
    pub process: &'a ProcessSpec,
    /// Directory to `chroot` into first, if any.
    pub root: Option<&'a Path>,
    /// Its standard descriptors.
    pub stdio: Stdio,
    /// Its `argv[0]`.
    pub argv0: Argv0,
}

/// A started process and the agent's ends of its standard descriptors, all non-blocking
/// and close-on-exec.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid, which is also its session and process group id.
    pub pid: Pid,
    /// Where its stdin is written: a pipe, or a duplicate of the pty master. `None` for
    /// apps.
    pub stdin: Option<OwnedFd>,
    /// Its stdout: a pipe, or the pty master (which carries stderr too).
    pub stdout: OwnedFd,
    /// Its stderr, unless it shares the tty with stdout.
    pub stderr: Option<OwnedFd>,
}

/// The steps of the child between `fork` and `execve`, as reported on failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    Signals = 1,
    Session,
    Terminal,
    Stdio,
    Root,
    Groups,
    Group,
    User,
    Cwd,
    Exec,
}

impl Step {
    fn from_byte(byte: u8) -> Option<Self> {
        [
            Self::Signals,
            Self::Session,
            Self::Terminal,
            Self::Stdio,
            Self::Root,
            Self::Groups,
            Self::Group,
            Self::User,
            Self::Cwd,
            Self::Exec,
        ]
        .into_iter()
        .find(|s| *s as u8 == byte)
    }
}

/// A failure of the child before `execve` succeeded.
#[derive(Clone, Copy, Debug)]
struct Failure {
    step: Step,
    errno: i32,
    /// For [`Step::Exec`]: the candidate program concerned.
    candidate: u32,
}

const FAILURE_LEN: usize = 9;

impl Failure {
    fn new(step: Step, errno: Errno) -> Self {
        Self {
            step,
            errno: errno as i32,
            candidate: 0,
        }
    }

    fn to_bytes(self) -> [u8; FAILURE_LEN] {
        let mut b = [0u8; FAILURE_LEN];
        b[0] = self.step as u8;
        b[1..5].copy_from_slice(&self.errno.to_ne_bytes());
        b[5..9].copy_from_slice(&self.candidate.to_ne_bytes());
        b
    }

    fn from_bytes(b: [u8; FAILURE_LEN]) -> Option<Self> {
        let [step, e0, e1, e2, e3, c0, c1, c2, c3] = b;
        Some(Self {
            step: Step::from_byte(step)?,
            errno: i32::from_ne_bytes([e0, e1, e2, e3]),
            candidate: u32::from_ne_bytes([c0, c1, c2, c3]),
        })
    }
}

/// Everything the child uses, built before `fork` so the child allocates nothing.
struct Prepared {
    /// Programs to try, in order.
    candidates: Vec<CString>,
    replace_argv0: bool,
    /// Owns the strings `argv_ptrs` points to.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    /// Owns the strings `envp_ptrs` points to.
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const c_char>,
    root: Option<CString>,
    cwd: CString,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    /// Whether to call `setgroups` (only root may; the agent is root in the guest).
    set_groups: bool,
}

/// The child's ends, as the child sees them before `dup2`.
struct ChildFds<'a> {
    stdin: BorrowedFd<'a>,
    stdout: BorrowedFd<'a>,
    stderr: BorrowedFd<'a>,
    tty: bool,
    report: BorrowedFd<'a>,
}

/// The programs tried for `argv0` (see the module documentation).
fn candidates(process: &ProcessSpec) -> Vec<String> {
    let join = |dir: &str, name: &str| {
        if dir.ends_with('/') {
            format!("{dir}{name}")
        } else {
            format!("{dir}/{name}")
        }
    };
    let cwd = process.cwd.as_str();
    let argv0 = process.argv.first().map_or("", String::as_str);
    if argv0.starts_with('/') {
        return vec![argv0.to_owned()];
    }
    if argv0.contains('/') {
        return vec![join(cwd, argv0)];
    }
    let path = process
        .env
        .iter()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value.as_str());
    let dirs: Vec<&str> = match path {
        Some(path) => path.split(':').collect(),
        None => vec![cwd, "/bin", "/usr/bin"],
    };
    dirs.into_iter()
        .map(|dir| match dir {
            "" => join(cwd, argv0),
            dir if dir.starts_with('/') => join(dir, argv0),
            dir => join(&join(cwd, dir), argv0),
        })
        .collect()
}

fn c_string(s: &str) -> Result<CString, NulError> {
    CString::new(s)
}

fn prepare(req: &Request<'_>) -> Result<Prepared, NulError> {
    let process = req.process;
    let argv: Vec<CString> = process
        .argv
        .iter()
        .map(|a| c_string(a))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = process
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let argv_ptrs = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp_ptrs = envp
        .iter()
        .map(|e| e.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    Ok(Prepared {
        candidates: candidates(process)
            .iter()
            .map(|c| c_string(c))
            .collect::<Result<_, _>>()?,
        replace_argv0: req.argv0 == Argv0::Resolved,
        _argv: argv,
        argv_ptrs,
        _envp: envp,
        envp_ptrs,
        root: req
            .root
            .map(|r| CString::new(r.as_os_str().as_encoded_bytes()))
            .transpose()?,
        cwd: c_string(&process.cwd)?,
        uid: Uid::from_raw(process.uid),
        gid: Gid::from_raw(process.gid),
        groups: process
            .supplementary_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect(),
        set_groups: geteuid().is_root(),
    })
}

/// The child's side: returns only on failure, with what failed.
fn child_steps(p: &mut Prepared, fds: &ChildFds<'_>) -> Failure {
    let step = |step: Step| move |e: Errno| Failure::new(step, e);
    let run = |p: &mut Prepared| -> Result<(), Failure> {
        // The agent blocks SIGCHLD (for its signalfd) and Rust ignores SIGPIPE; neither
        // may leak into the program.
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
            .map_err(step(Step::Signals))?;
        for signal in Signal::iterator() {
            if signal != Signal::SIGKILL && signal != Signal::SIGSTOP {
                // SAFETY: installing the default disposition sets no handler, so no code
                // of ours can run in a signal context afterwards.
                unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }
                    .map_err(step(Step::Signals))?;
            }
        }
        setsid().map_err(step(Step::Session))?;
        if fds.tty {
            // SAFETY: TIOCSCTTY takes an int by value (0: do not steal the terminal from
            // another session) and touches no memory of ours.
            let rc = unsafe { libc::ioctl(fds.stdin.as_raw_fd(), libc::TIOCSCTTY, 0) };
            if rc < 0 {
                return Err(Failure::new(Step::Terminal, Errno::last()));
            }
        }
        // The agent keeps descriptors 0-2 open (see `serve::ensure_standard_fds`), so
        // every source here is above 2 and each dup2 makes a new, inheritable descriptor.
        for (fd, target) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
            dup2(fd.as_raw_fd(), target).map_err(step(Step::Stdio))?;
        }
        if let Some(root) = &p.root {
            chroot(root.as_c_str()).map_err(step(Step::Root))?;
        }
        if p.set_groups {
            // SAFETY: setgroups reads `groups.len()` gids from the vector's buffer, which
            // holds that many (Gid is a transparent gid_t).
            let rc = unsafe { libc::setgroups(p.groups.len(), p.groups.as_ptr().cast()) };
            if rc < 0 {
                return Err(Failure::new(Step::Groups, Errno::last()));
            }
        }
        setgid(p.gid).map_err(step(Step::Group))?;
        setuid(p.uid).map_err(step(Step::User))?;
        chdir(p.cwd.as_c_str()).map_err(step(Step::Cwd))?;
        Err(exec(p))
    };
    match run(p) {
        Ok(()) => Failure::new(Step::Exec, Errno::UnknownErrno),
        Err(failure) => failure,
    }
}

/// Tries each candidate like `execvp`: a missing one moves on, a permission problem is
/// remembered, anything else stops the search. Returns only on failure.
fn exec(p: &mut Prepared) -> Failure {
    let mut missing: Option<Failure> = None;
    let mut denied: Option<Failure> = None;
    for (index, program) in p.candidates.iter().enumerate() {
        if p.replace_argv0 {
            if let Some(first) = p.argv_ptrs.first_mut() {
                *first = program.as_ptr();
            }
        }
        // SAFETY: `program` is a C string, and both arrays are null-terminated arrays of
        // pointers to C strings owned by `p`, alive for the call.
        unsafe { libc::execve(program.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr()) };
        let errno = Errno::last();
        let failure = Failure {
            step: Step::Exec,
            errno: errno as i32,
            candidate: u32::try_from(index).unwrap_or(u32::MAX),
        };
        match errno {
            Errno::ENOENT | Errno::ENOTDIR => {
                missing.get_or_insert(failure);
            }
            Errno::EACCES => {
                denied.get_or_insert(failure);
            }
            _ => return failure,
        }
    }
    denied
        .or(missing)
        .unwrap_or_else(|| Failure::new(Step::Exec, Errno::ENOENT))
}

/// Turns the child's failure record into the message the host gets.
fn describe(failure: Failure, req: &Request<'_>, candidates: &[String]) -> String {
    let desc = Errno::from_raw(failure.errno).desc();
    let process = req.process;
    match failure.step {
        Step::Exec => {
            let argv0 = process.argv.first().map_or("", String::as_str);
            let path = match candidates {
                [only] => only.as_str(),
                // A name searched in PATH and found nowhere is reported by its name.
                _ if failure.errno == Errno::ENOENT as i32 => argv0,
                _ => usize::try_from(failure.candidate)
                    .ok()
                    .and_then(|i| candidates.get(i))
                    .map_or(argv0, String::as_str),
            };
            // As rkt's diagnostic prints it (C's "%s", no escaping).
            format!("Unable to open \"{path}\": {desc}")
        }
        Step::Root => format!(
            "cannot use {:?} as the root directory: {desc}",
            req.root.unwrap_or(Path::new("/"))
        ),
        Step::Groups => format!(
            "cannot set supplementary groups {:?}: {desc}",
            process.supplementary_gids
        ),
        Step::Group => format!("cannot set group id {}: {desc}", process.gid),
        Step::User => format!("cannot set user id {}: {desc}", process.uid),
        Step::Cwd => format!(
            "cannot change to working directory {:?}: {desc}",
            process.cwd
        ),
        Step::Signals | Step::Session | Step::Terminal | Step::Stdio => {
            format!("cannot set up the process ({:?}): {desc}", failure.step)
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The descriptors of a child: its ends and ours.
struct Plumbing {
    child_stdin: OwnedFd,
    child_stdout: OwnedFd,
    /// `None` with a tty: stderr is the slave too.
    child_stderr: Option<OwnedFd>,
    tty: bool,
    ours: (Option<OwnedFd>, OwnedFd, Option<OwnedFd>),
}

fn plumbing(stdio: Stdio) -> io::Result<Plumbing> {
    let pipe = || -> io::Result<(OwnedFd, OwnedFd)> { Ok(pipe2(OFlag::O_CLOEXEC)?) };
    match stdio {
        Stdio::App | Stdio::Piped => {
            let (stdin_child, stdin_ours) = match stdio {
                Stdio::App => (OwnedFd::from(File::open("/dev/null")?), None),
                _ => {
                    let (r, w) = pipe()?;
                    (r, Some(w))
                }
            };
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            for fd in [Some(&out_r), Some(&err_r), stdin_ours.as_ref()]
                .into_iter()
                .flatten()
            {
                set_nonblocking(fd)?;
            }
            Ok(Plumbing {
                child_stdin: stdin_child,
                child_stdout: out_w,
                child_stderr: Some(err_w),
                tty: false,
                ours: (stdin_ours, out_r, Some(err_r)),
            })
        }
        Stdio::Tty(window) => {
            let pty = pty::open(window)?;
            let writer = pty.master.try_clone()?;
            Ok(Plumbing {
                child_stdout: pty.slave.try_clone()?,
                child_stdin: pty.slave,
                child_stderr: None,
                tty: true,
                ours: (Some(writer), pty.master, None),
            })
        }
    }
}

/// Starts a process; on failure, the message for the host.
pub fn spawn(req: &Request<'_>) -> Result<Spawned, String> {
    let mut prepared =
        prepare(req).map_err(|e| format!("cannot start the process: {e} (NUL byte)"))?;
    let plumbing =
        plumbing(req.stdio).map_err(|e| format!("cannot set up the process's stdio: {e}"))?;
    let (report_r, report_w) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot start the process: {e}"))?;

    // SAFETY: the child only runs `child_steps`, which makes async-signal-safe system
    // calls on memory prepared before the fork (no allocation, no locks, no panics), then
    // execs or `_exit`s, so it is sound even if other threads held locks at fork time.
    match unsafe { fork() } {
        Err(e) => Err(format!("cannot start the process: fork: {e}")),
        Ok(ForkResult::Child) => {
            let fds = ChildFds {
                stdin: std::os::fd::AsFd::as_fd(&plumbing.child_stdin),
                stdout: std::os::fd::AsFd::as_fd(&plumbing.child_stdout),
                stderr: std::os::fd::AsFd::as_fd(
                    plumbing
                        .child_stderr
                        .as_ref()
                        .unwrap_or(&plumbing.child_stdout),
                ),
                tty: plumbing.tty,
                report: std::os::fd::AsFd::as_fd(&report_w),
            };
            let failure = child_steps(&mut prepared, &fds);
            let _ = nix::unistd::write(fds.report, &failure.to_bytes());
            // SAFETY: _exit ends this forked child at once, without running the parent's
            // atexit handlers or flushing its stdio buffers (which belong to the agent).
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            let Plumbing {
                child_stdin,
                child_stdout,
                child_stderr,
                ours,
                ..
            } = plumbing;
            drop((child_stdin, child_stdout, child_stderr, report_w));
            match read_failure(&report_r) {
                None => Ok(Spawned {
                    pid: child,
                    stdin: ours.0,
                    stdout: ours.1,
                    stderr: ours.2,
                }),
                Some(failure) => {
                    // The child _exits right after reporting; collect it here so the loop
                    // never sees a pid it does not know.
                    let _ = waitpid(child, None);
                    let candidates = candidates(req.process);
                    Err(describe(failure, req, &candidates))
                }
            }
        }
    }
}

/// Reads the child's failure record; `None` when the pipe closed empty (exec succeeded).
fn read_failure(report: &OwnedFd) -> Option<Failure> {
    let mut record = [0u8; FAILURE_LEN];
    let mut got = 0;
    while got < FAILURE_LEN {
        match nix::unistd::read(report.as_raw_fd(), &mut record[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    if got == FAILURE_LEN {
        Failure::from_bytes(record)
    } else {
        None
    }
}

/// How a waited-for process ended, if it did (stops and continues are not ends).
pub fn exit_status(status: WaitStatus) -> Option<(Pid, ExitStatus)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid, ExitStatus::Code(code))),
        WaitStatus::Signaled(pid, signal, _core) => Some((pid, ExitStatus::Signal(signal as i32))),
        _ => None,
    }
}

/// Sends signal number `signal` (1..=64, real-time signals included) to a process group.
/// Never to groups 0 or 1 (ours, init's), whatever a bug might ask; a group that is gone
/// already is fine.
pub fn signal_group(pgid: Pid, signal: i32) {
    if pgid.as_raw() > 1 {
        // SAFETY: kill takes two integers and touches no memory of ours.
        unsafe { libc::kill(-pgid.as_raw(), signal) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv0: &str, cwd: &str, env: &[(&str, &str)]) -> ProcessSpec {
        ProcessSpec {
            argv: vec![argv0.into()],
            env: env
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            cwd: cwd.into(),
            uid: 0,
            gid: 0,
            supplementary_gids: vec![],
        }
    }

    #[test]
    fn program_lookup_follows_rkt() {
        assert_eq!(candidates(&spec("/bin/sh", "/x", &[])), ["/bin/sh"]);
        assert_eq!(candidates(&spec("./run", "/app", &[])), ["/app/./run"]);
        assert_eq!(candidates(&spec("bin/run", "/", &[])), ["/bin/run"]);
        assert_eq!(
            candidates(&spec("ls", "/w", &[])),
            ["/w/ls", "/bin/ls", "/usr/bin/ls"]
        );
        assert_eq!(
            candidates(&spec("ls", "/w", &[("PATH", "/usr/local/bin::rel")])),
            ["/usr/local/bin/ls", "/w/ls", "/w/rel/ls"]
        );
    }

    #[test]
    fn failure_records_round_trip() {
        let f = Failure {
            step: Step::Cwd,
            errno: libc::ENOENT,
            candidate: 7,
        };
        let back = Failure::from_bytes(f.to_bytes()).unwrap();
        assert_eq!(
            (back.step, back.errno, back.candidate),
            (Step::Cwd, libc::ENOENT, 7)
        );
        assert!(Failure::from_bytes([0; FAILURE_LEN]).is_none());
    }

    #[test]
    fn exit_statuses_are_exact() {
        let pid = Pid::from_raw(42);
        assert_eq!(
            exit_status(WaitStatus::Exited(pid, 255)),
            Some((pid, ExitStatus::Code(255)))
        );
        assert_eq!(
            exit_status(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some((pid, ExitStatus::Signal(9)))
        );
        assert_eq!(exit_status(WaitStatus::StillAlive), None);
    }
}
