//! The `run` entrypoint (contract §2.1): boot the pod's VM, start its apps through the
//! guest agent, forward their output as `<app>[<pid>]: <line>`, write `rkt/status/<app>`,
//! and exit with the pod's exit code (§5.11) — exactly, unlike rkt's own KVM flavor.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use protocol::control::{AgentToHost, HostToAgent, OutputStream, StopMode};
use protocol::ProcessSpec;
use vmm::devices::pseudo::boot_marker::Marker;
use vmm::devices::virtio::fs::{Fs, FsConfig};
use vmm::devices::virtio::vsock::{Vsock, GUEST_CID};
use vmm::engine::{self, EngineChoice, HostFacts, Outcome, VirtioDevice, VmEvent, VmSpec};

use super::args::RunArgs;
use super::layout::PodLayout;
use super::manifest::{quantity, App, ImageManifest, PodManifest};
use super::timings::Timings;
use crate::agent::control::Control;
use crate::guest_session::AGENT_SERVE_ARG;

/// rkt's default `PATH` and the other defaults of contract §5.2.
const DEFAULT_ENV: [(&str, &str); 5] = [
    ("PATH", crate::run_command::PATH),
    ("SHELL", "/bin/sh"),
    ("USER", "root"),
    ("LOGNAME", "root"),
    ("HOME", "/root"),
];
/// How long apps get between SIGTERM and SIGKILL on a graceful stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Boot to the agent's first marker (TCG is slow; KVM takes well under a second).
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent may take to accept the control connection after its ready marker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One app to start.
#[derive(Debug)]
struct PodApp {
    name: String,
    process: ProcessSpec,
}

/// Runs the pod; returns its exit code. With `STAGE1_KVM_TIMINGS=1`, prints the phase
/// timestamps as it ends (see [`Timings`]).
pub fn run(args: &RunArgs) -> Result<u8, String> {
    let timings = Timings::from_env();
    let result = run_pod(args, &timings);
    timings.finish();
    result
}

fn run_pod(args: &RunArgs, timings: &Timings) -> Result<u8, String> {
    refuse_unsupported(args)?;
    // Contract §2.1: the lock fd keeps the pod "running"; no child may inherit it.
    keep_lock_fd_from_children()?;
    let layout = PodLayout::current()?;
    // SIGTERM/SIGINT mean a graceful stop from the moment the pid file names us: the
    // handlers come first, or an early `stop` would kill this process outright.
    let (events_tx, events) = mpsc::channel();
    let signal_events = events_tx.clone();
    let signals = crate::signals::on_terminate(move |name| {
        let _ = signal_events.send(PodEvent::Signal(name));
    })?;
    // Contract §3.3 / §9.2: the pid file, early, before anything slow.
    layout.write_pid(std::process::id())?;

    let pod = PodManifest::read(&layout.pod_manifest())?;
    let apps = pod
        .apps
        .iter()
        .map(|app| {
            let image = ImageManifest::read(&layout.app_manifest(&app.name))?;
            let spec = app
                .app
                .clone()
                .or(image.app)
                .ok_or_else(|| format!("app {} has no app section", app.name))?;
            if !layout.app_rootfs(&app.name).is_dir() {
                return Err(format!(
                    "app {}: its rootfs {} is missing",
                    app.name,
                    layout.app_rootfs(&app.name).display()
                ));
            }
            Ok((app.name.clone(), spec))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let (vcpus, mem_mib) = vm_size(apps.iter().map(|(_, app)| app));
    let apps: Vec<PodApp> = apps
        .into_iter()
        .map(|(name, app)| {
            Ok(PodApp {
                process: process_for(&name, &app, &layout)?,
                name,
            })
        })
        .collect::<Result<_, String>>()?;

    // Our image's own files (`make aci`): a stage1 image without them is broken; say so
    // before any engine tries to boot nothing.
    for (what, path) in [
        ("kernel", layout.kernel()),
        ("initramfs", layout.initramfs()),
    ] {
        if !path.is_file() {
            return Err(format!(
                "the stage1 image has no guest {what}: {} is missing",
                path.display()
            ));
        }
    }

    let choice: EngineChoice = std::env::var("STAGE1_KVM_ENGINE")
        .unwrap_or_else(|_| "auto".to_owned())
        .parse()
        .map_err(|e| format!("STAGE1_KVM_ENGINE: {e}"))?;
    let kvm_path = PathBuf::from(vmm::host::DEFAULT_KVM_PATH);
    let facts = HostFacts::probe(&kvm_path);
    // The vmm lets `kvm` run without vmx/svm (PVM's /dev/kvm runs the test guest), but a
    // pod's guest is Linux, which only boots there with hardware virtualization
    // (DESIGN.md, "Two engines"): refuse up front rather than fail inside the guest.
    if choice == EngineChoice::Kvm && !facts.hardware_virtualization {
        return Err(
            "STAGE1_KVM_ENGINE=kvm: the kvm engine needs hardware virtualization (vmx/svm), \
             which this host does not have; use STAGE1_KVM_ENGINE=qemu (or auto)"
                .to_owned(),
        );
    }
    let selection = engine::select(choice, &facts, kvm_path).map_err(|e| e.to_string())?;
    if let Some(notice) = &selection.notice {
        eprintln!("stage1-kvm: {notice}");
    }

    let hostname = args
        .hostname
        .clone()
        .unwrap_or_else(|| format!("rkt-{}", args.uuid));
    // The engine's sockets go into the pod directory; however this returns, nothing
    // listens on them afterwards, so they go with it (gc removes them after a run that
    // was killed).
    let _run_files = RunFiles(&layout);
    let spec = VmSpec {
        kernel: layout.kernel(),
        initramfs: Some(layout.initramfs()),
        extra_cmdline: vec![
            AGENT_SERVE_ARG.to_owned(),
            format!("stage1_kvm.share=stage2:/opt/stage2"),
            format!("stage1_kvm.hostname={hostname}"),
        ],
        vcpus,
        mem_mib,
        debug: args.debug,
        boot_timeout: BOOT_TIMEOUT,
        run_dir: layout.run_dir()?,
    };
    let vsock = Vsock::new(GUEST_CID, layout.vsock_socket())
        .map_err(|e| format!("setting up vsock: {e}"))?;
    let handle = vsock.handle();
    let stage2 = Fs::new(FsConfig {
        tag: "stage2".to_owned(),
        root: layout.stage2(),
        read_only: false,
        allow_devices: false,
    })
    .map_err(|e| format!("sharing the apps: {e}"))?;
    let devices = vec![
        VirtioDevice {
            name: "vsock".to_owned(),
            backend: Box::new(vsock),
        },
        VirtioDevice {
            name: "stage2".to_owned(),
            backend: Box::new(stage2),
        },
    ];

    // Stopped already (only signals can have arrived so far): nothing to boot.
    if let Ok(PodEvent::Signal(_)) = events.try_recv() {
        signals.close();
        return Ok(0);
    }
    let (stop, mailbox) = engine::mailbox();
    let vm_events = events_tx.clone();
    let engine = selection.engine;
    let vm_timings = timings.clone();
    let observe = move |event: &VmEvent| match event {
        VmEvent::Console(line) => vm_timings.console(line),
        VmEvent::Marker(Marker::AgentStarted, at) => vm_timings.mark_at("agent_started", *at),
        VmEvent::Marker(Marker::AgentReady, at) => vm_timings.mark_at("agent_ready", *at),
        VmEvent::Marker(..) => {}
    };
    timings.mark("engine");
    let vm = crate::vm_thread::spawn(
        engine, spec, devices, mailbox, vm_events, args.debug, observe,
    )?;

    let result = supervise(&handle, &events, events_tx, &apps, &layout, timings);
    match &result {
        Err(_) => {
            stop.stop("the pod failed");
        }
        Ok(Supervised::StoppedBeforeStart(signal)) => {
            stop.stop(&format!("{signal} before the apps started"));
        }
        Ok(Supervised::Exited(_)) => {}
    }
    let end = vm
        .join()
        .map_err(|_| "the VM thread panicked".to_owned())
        .and_then(|end| end.map_err(|e| e.to_string()));
    timings.mark("vm_gone");
    signals.close();
    let code = match (result, end) {
        (Ok(Supervised::Exited(code)), Ok(end)) => match end.failure() {
            Some(failure) => return Err(failure),
            None => code,
        },
        // Stopped before any app ran: nothing failed and no app has a status.
        (Ok(Supervised::StoppedBeforeStart(_)), Ok(end)) => match (&end.outcome, end.failure()) {
            (Outcome::Stopped(_), _) | (_, None) => 0,
            (_, Some(failure)) => return Err(failure),
        },
        (Ok(_), Err(engine)) => return Err(engine),
        // What the engine says of a VM that failed under the supervisor is more precise
        // than "the VM ended"; a VM the supervisor stopped itself says nothing new.
        (Err(_), Err(engine)) => return Err(engine),
        (Err(pod), Ok(end)) => match (&end.outcome, end.failure()) {
            (Outcome::Stopped(_), _) | (_, None) => return Err(pod),
            (_, Some(failure)) => return Err(failure),
        },
    };
    Ok(code)
}

/// Removes the engine's sockets from the pod directory when dropped.
struct RunFiles<'a>(&'a PodLayout);

impl Drop for RunFiles<'_> {
    fn drop(&mut self) {
        let _ = self.0.remove_run_files();
    }
}

/// How the supervisor saw the pod end.
#[derive(Debug)]
enum Supervised {
    /// Every app ended; the pod's exit code (contract §5.11).
    Exited(u8),
    /// SIGTERM or SIGINT (named) came while the VM booted: a graceful stop before any app
    /// started, so the VM is simply powered off (contract §2.4: `stop` works whenever the
    /// pod runs).
    StoppedBeforeStart(&'static str),
}

/// What the supervisor waits for.
#[derive(Debug)]
enum PodEvent {
    Marker(Marker),
    Signal(&'static str),
    VmEnded,
    Agent(Result<Option<AgentToHost>, String>),
}

impl crate::vm_thread::VmEvents for PodEvent {
    fn marker(marker: Marker) -> Self {
        Self::Marker(marker)
    }

    fn ended() -> Self {
        Self::VmEnded
    }
}

/// Starts the apps and follows them to the end of the pod.
fn supervise(
    handle: &vmm::devices::virtio::vsock::VsockHandle,
    events: &mpsc::Receiver<PodEvent>,
    events_tx: mpsc::Sender<PodEvent>,
    apps: &[PodApp],
    layout: &PodLayout,
    timings: &Timings,
) -> Result<Supervised, String> {
    loop {
        match events.recv() {
            Ok(PodEvent::Marker(Marker::AgentReady)) => break,
            Ok(PodEvent::Signal(name)) => return Ok(Supervised::StoppedBeforeStart(name)),
            Ok(PodEvent::VmEnded) | Err(_) => {
                return Err("the VM ended before the guest agent was ready".to_owned())
            }
            Ok(PodEvent::Marker(_) | PodEvent::Agent(_)) => {}
        }
    }
    let stream = crate::agent::connect(handle, CONNECT_TIMEOUT)?;
    let mut control = Control::open(stream)?;
    control.wait_ready(CONNECT_TIMEOUT)?;
    let mut sender = control.try_clone()?;
    // The control connection's messages join the other events.
    std::thread::spawn(move || loop {
        let next = control.next();
        let end = !matches!(next, Ok(Some(_)));
        if events_tx.send(PodEvent::Agent(next)).is_err() || end {
            return;
        }
    });
    for app in apps {
        sender.send(&HostToAgent::StartApp {
            name: app.name.clone(),
            process: app.process.clone(),
        })?;
    }

    let mut pod = PodState::new(apps.iter().map(|a| a.name.clone()));
    while !pod.all_done() {
        match events.recv() {
            Ok(PodEvent::Agent(Ok(Some(message)))) => {
                match message {
                    AgentToHost::AppStarted { .. } => timings.mark("app_started"),
                    AgentToHost::AppExited { .. } => timings.mark_latest("app_exited"),
                    _ => {}
                }
                if let Some(request) = pod.handle(message, layout)? {
                    sender.send(&request)?;
                }
            }
            Ok(PodEvent::Agent(Ok(None))) => {
                return Err("the guest agent closed the control connection".to_owned())
            }
            Ok(PodEvent::Agent(Err(e))) => return Err(e),
            Ok(PodEvent::Signal(_)) if !pod.stopping => {
                pod.stopping = true;
                sender.send(&graceful_stop())?;
            }
            Ok(PodEvent::Signal(_) | PodEvent::Marker(_)) => {}
            Ok(PodEvent::VmEnded) | Err(_) => {
                return Err("the VM ended while apps were running".to_owned())
            }
        }
    }
    sender.send(&HostToAgent::Shutdown {})?;
    if let Some(failure) = pod.start_failure {
        return Err(failure);
    }
    Ok(Supervised::Exited(pod.exit_code))
}

fn graceful_stop() -> HostToAgent {
    let timeout_ms = u32::try_from(STOP_TIMEOUT.as_millis()).unwrap_or(u32::MAX);
    HostToAgent::Stop {
        app: None,
        mode: StopMode::Graceful { timeout_ms },
    }
}

/// Apps' progress and the pod's exit code (contract §5.11).
struct PodState {
    /// Apps not yet ended (exited or failed to start).
    running: BTreeMap<String, Option<u32>>,
    /// Partial output lines per app and stream.
    partial: BTreeMap<(String, bool), Vec<u8>>,
    exit_code: u8,
    stopping: bool,
    start_failure: Option<String>,
}

impl PodState {
    fn new(names: impl Iterator<Item = String>) -> Self {
        Self {
            running: names.map(|n| (n, None)).collect(),
            partial: BTreeMap::new(),
            exit_code: 0,
            stopping: false,
            start_failure: None,
        }
    }

    fn all_done(&self) -> bool {
        self.running.is_empty()
    }

    /// Handles one agent message; returns a request to send, if any.
    fn handle(
        &mut self,
        message: AgentToHost,
        layout: &PodLayout,
    ) -> Result<Option<HostToAgent>, String> {
        match message {
            AgentToHost::AppStarted { name, pid } => {
                self.running.insert(name, Some(pid));
                Ok(None)
            }
            AgentToHost::AppOutput { name, stream, data } => {
                self.output(&name, matches!(stream, OutputStream::Stderr), &data);
                Ok(None)
            }
            AgentToHost::AppExited { name, status } => {
                self.flush(&name);
                let code = u8::try_from(status.to_exit_code()).unwrap_or(u8::MAX);
                layout.write_status(&name, code)?;
                self.running.remove(&name);
                // The first app to fail on its own decides the pod's code and stops the rest.
                if code != 0 && !self.stopping {
                    self.exit_code = code;
                    self.stopping = true;
                    return Ok(Some(graceful_stop()));
                }
                Ok(None)
            }
            AgentToHost::Error {
                app: Some(name),
                message,
            } => {
                self.running.remove(&name);
                if self.start_failure.is_none() {
                    self.start_failure = Some(format!("app {name}: {message}"));
                }
                if !self.stopping {
                    self.stopping = true;
                    return Ok(Some(graceful_stop()));
                }
                Ok(None)
            }
            AgentToHost::Error { app: None, message } => {
                Err(format!("the guest agent failed: {message}"))
            }
            AgentToHost::Hello { .. } | AgentToHost::Ready {} => Ok(None),
        }
    }

    /// Prints complete lines as `<app>[<pid>]: <text>` (contract §5.12), all the lines of
    /// one message in one write.
    fn output(&mut self, app: &str, stderr: bool, data: &[u8]) {
        let pid = self.running.get(app).copied().flatten().unwrap_or(0);
        let buffer = self.partial.entry((app.to_owned(), stderr)).or_default();
        buffer.extend_from_slice(data);
        let mut text = Vec::new();
        take_lines(buffer, app, pid, &mut text);
        write_stdout(&text);
    }

    fn flush(&mut self, app: &str) {
        let pid = self.running.get(app).copied().flatten().unwrap_or(0);
        let mut text = Vec::new();
        for stderr in [false, true] {
            if let Some(rest) = self.partial.remove(&(app.to_owned(), stderr)) {
                if !rest.is_empty() {
                    push_line(&mut text, app, pid, &rest);
                }
            }
        }
        write_stdout(&text);
    }
}

/// Longest line printed whole: longer ones are split, as journald (whose console
/// forwarding rkt's apps' output goes through, contract §5.12) splits at its default
/// `LineMax`. It also bounds what an app can make us buffer.
const LINE_MAX: usize = 48 * 1024;

/// Moves the complete lines at the start of `buffer` (and pieces of [`LINE_MAX`] bytes of
/// overlong ones) to `out` as `<app>[<pid>]: <text>\n`; the partial line stays.
fn take_lines(buffer: &mut Vec<u8>, app: &str, pid: u32, out: &mut Vec<u8>) {
    let mut start = 0;
    loop {
        let rest = &buffer[start..];
        match rest.iter().take(LINE_MAX + 1).position(|&b| b == b'\n') {
            Some(end) => {
                push_line(out, app, pid, &rest[..end]);
                start += end + 1;
            }
            None if rest.len() > LINE_MAX => {
                push_line(out, app, pid, &rest[..LINE_MAX]);
                start += LINE_MAX;
            }
            None => break,
        }
    }
    buffer.drain(..start);
}

fn push_line(out: &mut Vec<u8>, app: &str, pid: u32, text: &[u8]) {
    out.extend_from_slice(format!("{app}[{pid}]: ").as_bytes());
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// Writes to stdout; a reader that went away is not the pod's failure.
fn write_stdout(text: &[u8]) {
    if text.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, text);
    let _ = std::io::Write::flush(&mut out);
}

/// Refuses, with a reason, every flag whose meaning is not implemented yet (never
/// silently ignored).
fn refuse_unsupported(args: &RunArgs) -> Result<(), String> {
    if args.net.iter().any(|n| n != "none") {
        let nets = args.net.join(",");
        return Err(format!(
            "--net={nets}: networking is not implemented yet; only --net=none is supported"
        ));
    }
    let refused = [
        (
            args.private_users.is_some(),
            "--private-users: user namespaces are not supported by this stage1",
        ),
        (
            args.mutable,
            "--mutable: mutable pods (rkt app …) are not implemented",
        ),
        (
            args.interactive,
            "--interactive: interactive apps are not implemented yet",
        ),
        (
            args.mds_token.is_some(),
            "--mds-token: the metadata service is not implemented",
        ),
        (
            args.dns_conf_mode.is_some(),
            "--dns-conf-mode: DNS configuration is not implemented yet",
        ),
        (
            args.ipc.as_deref() == Some("parent"),
            "--ipc=parent: a VM cannot share the host's IPC namespace",
        ),
    ];
    match refused.iter().find(|(hit, _)| *hit) {
        Some((_, reason)) => Err((*reason).to_owned()),
        None => Ok(()),
    }
}

/// Marks `RKT_LOCK_FD` close-on-exec: the pod is running exactly as long as this process
/// lives (contract §2.1, "RKT_LOCK_FD semantics").
fn keep_lock_fd_from_children() -> Result<(), String> {
    let Ok(value) = std::env::var("RKT_LOCK_FD") else {
        return Ok(());
    };
    let fd: RawFd = value
        .parse()
        .map_err(|_| format!("RKT_LOCK_FD={value:?} is not a file descriptor"))?;
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map(drop)
    .map_err(|e| format!("RKT_LOCK_FD={value}: {e}"))
}

/// VM size by rkt's rule (contract §6.3): vCPUs = the apps' cpu limits rounded up, summed
/// (host CPUs if none or too many); memory = their memory limits in MiB + 128, ≥ 512.
fn vm_size<'a>(apps: impl Iterator<Item = &'a App>) -> (u8, u32) {
    let host_cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let (mut cpus, mut mem_mib, mut any_cpu) = (0u64, 0u64, false);
    for app in apps {
        let last = |name: &str| {
            app.isolators
                .iter()
                .rev()
                .find(|i| i.name == name)
                .and_then(|i| i.value.get("limit")?.as_str().and_then(quantity))
        };
        if let Some(c) = last("resource/cpu") {
            cpus += c;
            any_cpu = true;
        }
        mem_mib += last("resource/memory").unwrap_or(0) / (1024 * 1024);
    }
    let cpus = if any_cpu && cpus >= 1 && cpus <= host_cpus as u64 {
        cpus
    } else {
        host_cpus as u64
    };
    let cpus = u8::try_from(cpus.min(u64::from(*engine::VCPU_RANGE.end()))).unwrap_or(1);
    let mem = u32::try_from((mem_mib + 128).max(512)).unwrap_or(u32::MAX);
    (cpus, mem)
}

/// The process of an app: exec, environment (§5.2), working directory (§5.3), user and
/// group (§5.4).
fn process_for(name: &str, app: &App, layout: &PodLayout) -> Result<ProcessSpec, String> {
    if app.exec.is_empty() || app.exec[0].is_empty() {
        return Err(format!(
            "app {name}: its image has an empty \"exec\" (try --exec=BINARY)"
        ));
    }
    let mut env: Vec<(String, String)> = app
        .environment
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    env.retain(|(k, _)| k != "AC_APP_NAME");
    env.push(("AC_APP_NAME".to_owned(), name.to_owned()));
    for (key, value) in DEFAULT_ENV {
        if !env.iter().any(|(k, _)| k == key) {
            env.push((key.to_owned(), value.to_owned()));
        }
    }
    let rootfs = layout.app_rootfs(name);
    let uid = super::users::resolve(&app.user, &rootfs, super::users::Db::Passwd)
        .map_err(|e| format!("app {name}: user: {e}"))?;
    let gid = super::users::resolve(&app.group, &rootfs, super::users::Db::Group)
        .map_err(|e| format!("app {name}: group: {e}"))?;
    let cwd = if app.working_directory.is_empty() {
        "/".to_owned()
    } else {
        app.working_directory.clone()
    };
    Ok(ProcessSpec {
        argv: app.exec.clone(),
        env,
        cwd,
        uid,
        gid,
        supplementary_gids: app.supplementary_gids.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_prefixed_and_partial_lines_kept() {
        let mut buffer = b"one\ntwo\nthr".to_vec();
        let mut out = Vec::new();
        take_lines(&mut buffer, "web", 42, &mut out);
        assert_eq!(out, b"web[42]: one\nweb[42]: two\n");
        assert_eq!(buffer, b"thr");
        buffer.extend_from_slice(b"ee\n\n");
        out.clear();
        take_lines(&mut buffer, "web", 42, &mut out);
        assert_eq!(out, b"web[42]: three\nweb[42]: \n");
        assert!(buffer.is_empty());
    }

    #[test]
    fn overlong_lines_are_split_and_never_buffered_whole() {
        let mut buffer = vec![b'x'; 2 * LINE_MAX + 10];
        let mut out = Vec::new();
        take_lines(&mut buffer, "a", 1, &mut out);
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 3, "two pieces and the end");
        assert!(lines[..2]
            .iter()
            .all(|l| l.len() == "a[1]: ".len() + LINE_MAX));
        assert_eq!(buffer.len(), 10);
        // Exactly LINE_MAX bytes, then the newline: one whole line.
        let mut buffer = vec![b'y'; LINE_MAX];
        let mut out = Vec::new();
        take_lines(&mut buffer, "a", 1, &mut out);
        assert!(out.is_empty());
        buffer.push(b'\n');
        take_lines(&mut buffer, "a", 1, &mut out);
        assert_eq!(out.len(), "a[1]: ".len() + LINE_MAX + 1);
    }
}
