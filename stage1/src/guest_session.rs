//! `stage1-kvm vm -- CMD` and `vm --serve`: boot the VM with the vsock device and the agent
//! in serving mode, open the control connection, then run one command (its exit code
//! becomes ours) or serve exec sessions on the vsock socket until SIGINT/SIGTERM; finally
//! shut the guest down through the agent, so everything is flushed before power-off.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use protocol::control::HostToAgent;
use vmm::devices::pseudo::boot_marker::Marker;
use vmm::devices::virtio::fs::{Fs, FsConfig};
use vmm::devices::virtio::vsock::{Vsock, VsockHandle};
use vmm::engine::{self, Engine, VirtioDevice, VmSpec};

use crate::agent::control::Control;
use crate::run_command;

/// Kernel command line switch that makes the agent serve the host over vsock.
pub const AGENT_SERVE_ARG: &str = "stage1_kvm.agent=serve";
/// The guest's vsock CID.
const GUEST_CID: u64 = 3;
/// How long the agent may take between its ready marker and accepting connections.
const CONNECT_GRACE: Duration = Duration::from_secs(10);
/// How long the guest may take to power off after `shutdown`.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do once the agent is up.
#[derive(Debug)]
pub enum Work {
    /// Run this command (argv) with our stdio, with a tty or not.
    Command { argv: Vec<String>, tty: bool },
    /// Serve exec sessions on the vsock socket until SIGINT/SIGTERM.
    Serve,
}

/// A host directory shared with the guest (`--share TAG=HOSTDIR[:ro]`), mounted at
/// `/mnt/TAG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The virtio-fs tag.
    pub tag: String,
    /// The host directory.
    pub dir: PathBuf,
    /// Read-only.
    pub read_only: bool,
}

impl Share {
    /// Parses `TAG=HOSTDIR[:ro]`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (tag, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("--share {spec:?}: expected TAG=HOSTDIR[:ro]"))?;
        let (dir, read_only) = match rest.strip_suffix(":ro") {
            Some(dir) => (dir, true),
            None => (rest, false),
        };
        if tag.is_empty() || dir.is_empty() || tag.contains([':', '/', ' ']) {
            return Err(format!("--share {spec:?}: expected TAG=HOSTDIR[:ro]"));
        }
        if tag == "." || tag == ".." {
            // The tag is also the mount point's name: /mnt/.. would cover the guest's root.
            return Err(format!(
                "--share {spec:?}: the tag names the mount point /mnt/TAG and cannot be \".\" or \"..\""
            ));
        }
        Ok(Self {
            tag: tag.to_owned(),
            dir: PathBuf::from(dir),
            read_only,
        })
    }
}

/// Checks that no two shares have the same tag (the guest mounts them by tag, at
/// `/mnt/TAG`).
pub fn check_tags(shares: &[Share]) -> Result<(), String> {
    for (i, share) in shares.iter().enumerate() {
        if shares[..i].iter().any(|s| s.tag == share.tag) {
            return Err(format!(
                "--share {}={}: the tag {} is already used by another --share",
                share.tag,
                share.dir.display(),
                share.tag
            ));
        }
    }
    Ok(())
}

/// The vsock device of a VM, with its hybrid socket at `socket` (guest connections to host
/// port P reach a listener at `<socket>_P`).
pub fn vsock_device(socket: &Path) -> Result<Vsock, String> {
    Vsock::new(GUEST_CID, socket)
        .map_err(|e| format!("setting up vsock on {}: {e}", socket.display()))
}

/// One virtio-fs device per share, named `fs0`, `fs1`…, and the kernel command line
/// arguments that tell the agent where to mount them (`stage1_kvm.share=TAG:/mnt/TAG[:ro]`).
pub fn share_devices(shares: &[Share], spec: &mut VmSpec) -> Result<Vec<VirtioDevice>, String> {
    let mut devices = Vec::with_capacity(shares.len());
    for (i, share) in shares.iter().enumerate() {
        let fs = Fs::new(FsConfig {
            tag: share.tag.clone(),
            root: share.dir.clone(),
            read_only: share.read_only,
            allow_devices: false,
        })
        .map_err(|e| format!("--share {}={}: {e}", share.tag, share.dir.display()))?;
        let ro = if share.read_only { ":ro" } else { "" };
        spec.extra_cmdline.push(format!(
            "stage1_kvm.share={}:/mnt/{}{ro}",
            share.tag, share.tag
        ));
        devices.push(VirtioDevice {
            name: format!("fs{i}"),
            backend: Box::new(fs),
        });
    }
    Ok(devices)
}

/// Boots `spec` with `engine` and does `work`; returns the exit code to exit with.
pub fn run(
    engine: Box<dyn Engine>,
    mut spec: VmSpec,
    vsock_socket: PathBuf,
    shares: Vec<Share>,
    work: Work,
    debug: bool,
) -> Result<u8, String> {
    spec.extra_cmdline.push(AGENT_SERVE_ARG.to_owned());
    let vsock = vsock_device(&vsock_socket)?;
    let handle = vsock.handle();
    let mut devices = vec![VirtioDevice {
        name: "vsock".to_owned(),
        backend: Box::new(vsock),
    }];
    devices.extend(share_devices(&shares, &mut spec)?);

    let (stop, mailbox) = engine::mailbox();
    let (events_tx, events) = mpsc::channel();
    let vm_events = events_tx.clone();
    let vm = crate::vm_thread::spawn(engine, spec, devices, mailbox, vm_events, debug, |_| {})?;
    // Serving ends gracefully on a signal; a command run is stopped outright.
    let serving = matches!(work, Work::Serve);
    let stop_on_signal = stop.clone();
    let signals = crate::signals::on_terminate(move |name| {
        if serving {
            let _ = events_tx.send(SessionEvent::Signal);
        } else {
            stop_on_signal.stop(&format!("received {name}"));
        }
    })?;

    // Outer error: the session broke, kill the VM. Inner error: the command could not
    // run, but the guest was shut down cleanly.
    let result = drive(&handle, &events, work, debug);
    if result.is_err() {
        stop.stop("the session with the guest agent failed");
    }
    let end = vm
        .join()
        .map_err(|_| "the VM thread panicked".to_owned())?
        .map_err(|e| e.to_string());
    signals.close();
    // The VM's own failure explains more than the session's broken connection.
    let end = end?;
    match result {
        Err(session) => Err(match end.outcome {
            vmm::engine::Outcome::Stopped(_) => session,
            _ => end.failure().unwrap_or(session),
        }),
        Ok(outcome) => match end.failure() {
            Some(failure) => Err(failure),
            None => outcome,
        },
    }
}

/// What the session waits for.
#[derive(Debug)]
enum SessionEvent {
    Marker(Marker),
    Signal,
    VmEnded,
}

impl crate::vm_thread::VmEvents for SessionEvent {
    fn marker(marker: Marker) -> Self {
        Self::Marker(marker)
    }

    fn ended() -> Self {
        Self::VmEnded
    }
}

/// Waits for the agent, opens the control connection, does the work and shuts down.
fn drive(
    handle: &VsockHandle,
    events: &mpsc::Receiver<SessionEvent>,
    work: Work,
    debug: bool,
) -> Result<Result<u8, String>, String> {
    // The agent listens right after its ready marker.
    loop {
        match events.recv() {
            Ok(SessionEvent::Marker(Marker::AgentReady)) => break,
            Ok(SessionEvent::Signal | SessionEvent::Marker(_)) => {}
            Ok(SessionEvent::VmEnded) | Err(_) => {
                return Err("the guest ended before the agent was ready".to_owned())
            }
        }
    }
    let mut control = Control::open(crate::agent::connect(handle, CONNECT_GRACE)?)?;
    if debug {
        eprintln!(
            "stage1-kvm: guest agent {} connected",
            control.agent_version()
        );
    }
    control.wait_ready(CONNECT_GRACE)?;
    // A command that cannot run is the session's result, not a reason to kill the VM:
    // the guest still shuts down cleanly.
    let outcome = match work {
        Work::Command { argv, tty } => {
            run_command::run(crate::agent::connect(handle, CONNECT_GRACE)?, argv, tty)
                .map(|status| u8::try_from(status.to_exit_code()).unwrap_or(u8::MAX))
        }
        Work::Serve => loop {
            match events.recv() {
                Ok(SessionEvent::Signal) => break Ok(0),
                Ok(SessionEvent::Marker(_)) => {}
                Ok(SessionEvent::VmEnded) | Err(_) => {
                    return Err("the guest ended while serving".to_owned())
                }
            }
        },
    };
    control.send(&HostToAgent::Shutdown {})?;
    // The agent reports the apps it stopped and closes; drain until then.
    let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
    while Instant::now() < deadline {
        match control.next() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shares() {
        assert_eq!(
            Share::parse("data=/srv/data:ro").unwrap(),
            Share {
                tag: "data".into(),
                dir: "/srv/data".into(),
                read_only: true
            }
        );
        assert!(!Share::parse("t=rel").unwrap().read_only);
        for bad in [
            "t", "=/x", "t=", "a:b=/x", "a/b=/x", "a b=/x", ".=/x", "..=/x",
        ] {
            assert!(Share::parse(bad).is_err(), "{bad}");
        }
        assert!(Share::parse("...=/x").is_ok());
    }

    #[test]
    fn tags_are_unique() {
        let shares: Vec<Share> = ["a=/x", "b=/x", "c=/y:ro"]
            .iter()
            .map(|s| Share::parse(s).unwrap())
            .collect();
        check_tags(&shares).unwrap();
        let twice: Vec<Share> = ["a=/x", "b=/y", "a=/z"]
            .iter()
            .map(|s| Share::parse(s).unwrap())
            .collect();
        assert_eq!(
            check_tags(&twice).unwrap_err(),
            "--share a=/z: the tag a is already used by another --share"
        );
    }
}
