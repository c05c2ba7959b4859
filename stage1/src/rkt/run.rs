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
use vmm::engine::{self, EngineChoice, HostFacts, VirtioDevice, VmEvent, VmSpec};

use super::args::RunArgs;
use super::layout::PodLayout;
use super::manifest::{quantity, App, ImageManifest, PodManifest};
use super::timings::Timings;
use crate::agent::control::Control;
use crate::guest_session::AGENT_SERVE_ARG;

/// rkt's default `PATH` and the other defaults of contract §5.2.
const DEFAULT_ENV: [(&str, &str); 5] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
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

    let choice: EngineChoice = std::env::var("STAGE1_KVM_ENGINE")
        .unwrap_or_else(|_| "auto".to_owned())
        .parse()
        .map_err(|e| format!("STAGE1_KVM_ENGINE: {e}"))?;
    let kvm_path = PathBuf::from(vmm::host::DEFAULT_KVM_PATH);
    let selection = engine::select(choice, &HostFacts::probe(&kvm_path), kvm_path)
        .map_err(|e| e.to_string())?;
    if let Some(notice) = &selection.notice {
        eprintln!("stage1-kvm: {notice}");
    }

    let hostname = args
        .hostname
        .clone()
        .unwrap_or_else(|| format!("rkt-{}", args.uuid));
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

    let (stop, mailbox) = engine::mailbox();
    let (events_tx, events) = mpsc::channel();
    let vm_events = events_tx.clone();
    let debug = args.debug;
    let engine = selection.engine;
    let vm_timings = timings.clone();
    let vm = std::thread::Builder::new()
        .name("vm".to_owned())
        .spawn(move || {
            let mut on_event = |event: &VmEvent| match event {
                VmEvent::Console(line) => {
                    vm_timings.console(line);
                    if debug {
                        eprintln!("{line}");
                    }
                }
                VmEvent::Marker(marker, at) => {
                    match marker {
                        Marker::AgentStarted => vm_timings.mark_at("agent_started", *at),
                        Marker::AgentReady => vm_timings.mark_at("agent_ready", *at),
                        _ => {}
                    }
                    let _ = vm_events.send(PodEvent::Marker(*marker));
                }
            };
            vm_timings.mark("engine");
            let end = engine.run(&spec, devices, mailbox, &mut on_event);
            let _ = vm_events.send(PodEvent::VmEnded);
            end
        })
        .map_err(|e| format!("starting the VM thread: {e}"))?;
    let signal_events = events_tx.clone();
    let signals = crate::signals::on_terminate(move |name| {
        let _ = signal_events.send(PodEvent::Signal(name));
    })?;

    let result = supervise(&handle, &events, events_tx, &apps, &layout, timings);
    if result.is_err() {
        stop.stop("the pod failed");
    }
    let end = vm
        .join()
        .map_err(|_| "the VM thread panicked".to_owned())?
        .map_err(|e| e.to_string());
    timings.mark("vm_gone");
    signals.close();
    let code = result?;
    if let Some(failure) = end?.failure() {
        return Err(failure);
    }
    Ok(code)
}

/// What the supervisor waits for.
#[derive(Debug)]
enum PodEvent {
    Marker(Marker),
    Signal(&'static str),
    VmEnded,
    Agent(Result<Option<AgentToHost>, String>),
}

/// Starts the apps and follows them to the end of the pod; returns the pod's exit code.
fn supervise(
    handle: &vmm::devices::virtio::vsock::VsockHandle,
    events: &mpsc::Receiver<PodEvent>,
    events_tx: mpsc::Sender<PodEvent>,
    apps: &[PodApp],
    layout: &PodLayout,
    timings: &Timings,
) -> Result<u8, String> {
    loop {
        match events.recv() {
            Ok(PodEvent::Marker(Marker::AgentReady)) => break,
            Ok(PodEvent::Signal(name)) => {
                return Err(format!("received {name} while the VM booted"))
            }
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
    Ok(pod.exit_code)
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

    /// Prints complete lines as `<app>[<pid>]: <text>` (contract §5.12).
    fn output(&mut self, app: &str, stderr: bool, data: &[u8]) {
        let pid = self.running.get(app).copied().flatten().unwrap_or(0);
        let buffer = self.partial.entry((app.to_owned(), stderr)).or_default();
        buffer.extend_from_slice(data);
        let mut out = std::io::stdout().lock();
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            print_line(&mut out, app, pid, &line[..line.len() - 1]);
        }
    }

    fn flush(&mut self, app: &str) {
        let pid = self.running.get(app).copied().flatten().unwrap_or(0);
        let mut out = std::io::stdout().lock();
        for stderr in [false, true] {
            if let Some(rest) = self.partial.remove(&(app.to_owned(), stderr)) {
                if !rest.is_empty() {
                    print_line(&mut out, app, pid, &rest);
                }
            }
        }
    }
}

fn print_line(out: &mut impl std::io::Write, app: &str, pid: u32, text: &[u8]) {
    let _ = out.write_all(format!("{app}[{pid}]: ").as_bytes());
    let _ = out.write_all(text);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
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
