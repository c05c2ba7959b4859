//! Tests of the kvm engine. Those that boot a VM use this host's `/dev/kvm` for real (every
//! machine of this project has one; without it they fail with the reason, never skip) and
//! run one VM at a time. The guests are the freestanding test guest and tiny PVH images
//! built here.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::Bytes;

use super::arch::x86_64::cpuid::{vcpu_cpuid, VcpuTopology};
use super::vstate::kvm::KvmContext;
use super::vstate::vm::Vm;
use super::*;
use crate::devices::virtio::backend::{
    BackendError, GuestMemory, QueueSet, SharedMemory, VirtioBackend, VIRTIO_F_VERSION_1,
};
use crate::engine::{mailbox, StopHandle};
use crate::host::DEFAULT_KVM_PATH;

/// One VM at a time in this process (the machine is shared, and thread checks need it).
static ONE_VM: Mutex<()> = Mutex::new(());

fn one_vm() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn spec(kernel: &Path, vcpus: u8, extra: &[&str]) -> VmSpec {
    VmSpec {
        kernel: kernel.to_owned(),
        initramfs: None,
        extra_cmdline: extra.iter().map(|s| (*s).to_owned()).collect(),
        vcpus,
        mem_mib: 64,
        debug: false,
        boot_timeout: Duration::from_secs(10),
        run_dir: std::env::temp_dir(),
    }
}

/// Threads of this process that belong to a VM.
fn vm_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("vcpu") || name == "vmm-events")
        .collect()
}

struct Run {
    end: VmEnd,
    events: Vec<VmEvent>,
}

impl Run {
    fn console(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                VmEvent::Console(line) => Some(line.as_str()),
                VmEvent::Marker(..) => None,
            })
            .collect()
    }

    fn markers(&self) -> Vec<Marker> {
        self.end
            .timeline
            .markers
            .entries()
            .iter()
            .map(|(m, _)| *m)
            .collect()
    }
}

/// Boots `spec` on this host's KVM, optionally handing the stop handle to `with_stop`
/// (run on another thread), and checks that no VM thread is left afterwards.
fn boot(spec: &VmSpec, with_stop: Option<Box<dyn FnOnce(StopHandle) + Send>>) -> Run {
    boot_with(spec, Vec::new(), with_stop)
}

fn boot_with(
    spec: &VmSpec,
    devices: Vec<VirtioDevice>,
    with_stop: Option<Box<dyn FnOnce(StopHandle) + Send>>,
) -> Run {
    let _one = one_vm();
    let (stop, mailbox) = mailbox();
    let stopper = with_stop.map(|f| std::thread::spawn(move || f(stop)));
    let mut events = Vec::new();
    let engine = KvmEngine::new(PathBuf::from(DEFAULT_KVM_PATH));
    let end = engine
        .run(spec, devices, mailbox, &mut |event| {
            events.push(event.clone())
        })
        .unwrap();
    if let Some(stopper) = stopper {
        stopper.join().unwrap();
    }
    assert_eq!(
        vm_threads(),
        Vec::<String>::new(),
        "VM threads left running"
    );
    Run { end, events }
}

fn test_guest() -> &'static Path {
    Path::new(test_guest::ELF_PATH)
}

#[test]
fn the_test_guest_boots_prints_marks_and_exits_cleanly() {
    for vcpus in [1, 2] {
        let run = boot(&spec(test_guest(), vcpus, &["foo=bar"]), None);
        assert_eq!(run.end.outcome, Outcome::Clean, "{:?}", run.end);
        let console = run.console();
        assert!(
            console[0].starts_with("test-guest: hvm_start_info at 0x6000 version 1"),
            "{console:?}"
        );
        assert_eq!(
            console[1],
            "test-guest: cmdline: console=ttyS0 reboot=t panic=-1 quiet foo=bar"
        );
        assert!(console.contains(&"test-guest: 0 virtio-mmio device(s), 0 failure(s)"));
        assert_eq!(console.last(), Some(&"test-guest: exit success"));
        assert_eq!(
            run.markers(),
            [
                Marker::TestGuestStarted,
                Marker::TestGuestProbed,
                Marker::TestGuestDone
            ]
        );
        let t = &run.end.timeline;
        let first = t.markers.entries()[0].1;
        assert!(t.started < first && first < t.ended);
    }
}

#[test]
fn a_faulting_test_guest_fails_with_its_fault_line() {
    let run = boot(&spec(test_guest(), 1, &["test_guest.fault"]), None);
    assert_eq!(
        run.end.outcome,
        Outcome::GuestFailed("the guest reported failure on the exit port (value 0x1)".into())
    );
    assert!(
        run.console()
            .iter()
            .any(|l| l.starts_with("test-guest: fault vector 0 rip 0x")),
        "{:?}",
        run.console()
    );
    let failure = run.end.failure().unwrap();
    assert!(failure.contains("test-guest: exit failure"), "{failure}");
}

#[test]
fn a_test_guest_ending_by_triple_fault_is_not_a_success() {
    let run = boot(&spec(test_guest(), 1, &["test_guest.no_exit_port"]), None);
    assert_eq!(
        run.end.outcome,
        Outcome::GuestFailed(
            "the test guest reset instead of writing its result to the exit port".into()
        )
    );
    assert_eq!(run.markers().last(), Some(&Marker::TestGuestDone));
}

/// A virtio-rng device (ID 4) whose bytes count up: enough for the test guest's data-path
/// self test, which only checks that buffers come back filled.
#[derive(Default)]
struct CountingRng {
    next: u8,
}

impl VirtioBackend for CountingRng {
    fn device_type(&self) -> u32 {
        4
    }

    fn num_queues(&self) -> usize {
        1
    }

    fn max_queue_size(&self) -> u16 {
        16
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, _features: u64) {}

    fn config(&self) -> Vec<u8> {
        Vec::new()
    }

    fn activate(&mut self, _memory: SharedMemory) -> Result<(), BackendError> {
        Ok(())
    }

    fn reset(&mut self) {}

    fn handle_queue(
        &mut self,
        index: usize,
        queues: &mut dyn QueueSet,
    ) -> Result<(), BackendError> {
        let next = &mut self.next;
        queues.with_queue(index, &mut |queue: &mut Queue, memory: &GuestMemory| {
            let guest = |e: &dyn std::fmt::Display| BackendError::Guest(e.to_string());
            while let Some(chain) = queue.pop_descriptor_chain(memory) {
                let head = chain.head_index();
                let mut written = 0u32;
                for descriptor in chain.filter(Descriptor::is_write_only) {
                    let bytes: Vec<u8> = (0..descriptor.len())
                        .map(|_| {
                            *next = next.wrapping_add(1);
                            *next
                        })
                        .collect();
                    memory
                        .write_slice(&bytes, descriptor.addr())
                        .map_err(|e| guest(&e))?;
                    written += descriptor.len();
                }
                queue
                    .add_used(memory, head, written)
                    .map_err(|e| guest(&e))?;
            }
            Ok(())
        })?;
        queues.signal(index)
    }
}

fn rng(name: &str) -> VirtioDevice {
    VirtioDevice {
        name: name.to_owned(),
        backend: Box::<CountingRng>::default(),
    }
}

#[test]
fn the_test_guest_finds_and_drives_virtio_mmio_devices() {
    let run = boot_with(
        &spec(test_guest(), 1, &[]),
        vec![rng("rng0"), rng("rng1")],
        None,
    );
    assert_eq!(run.end.outcome, Outcome::Clean, "{:?}", run.console());
    let console = run.console();
    assert!(
        console[1].ends_with(
            "quiet virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"
        ),
        "{console:?}"
    );
    for base in ["0xd0000000", "0xd0001000"] {
        let ready = format!("test-guest: virtio-mmio@{base} id 4 features ok queue0 size 16 ready");
        assert!(console.contains(&ready.as_str()), "{ready} in {console:?}");
    }
    let requests: Vec<_> = console
        .iter()
        .filter(|l| l.starts_with("test-guest: virtio-rng: request "))
        .collect();
    assert_eq!(requests.len(), 4, "{console:?}");
    assert!(
        requests[0].starts_with("test-guest: virtio-rng: request 0: 32 random bytes in 2 descriptor(s): 0102030405060708"),
        "{requests:?}"
    );
    assert!(console.contains(&"test-guest: 2 virtio-mmio device(s), 0 failure(s)"));
}

/// Threads of this process that serve the virtio-fs share tagged `tag` (`fs-<tag>`; other
/// tests run fs devices of their own in parallel).
fn fs_threads(tag: &str) -> Vec<String> {
    let name = format!("fs-{tag}");
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|n| *n == name)
        .collect()
}

#[test]
fn the_test_guest_moves_data_through_the_real_vsock_and_fs_backends() {
    use std::io::{BufRead, Read, Write};

    use crate::devices::virtio::fs::{Fs, FsConfig};
    use crate::devices::virtio::vsock::{Vsock, GUEST_CID};

    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("hello.txt"), "served by the fs backend\n").unwrap();
    let socket = dir.path().join("vsock.sock");
    let listener =
        std::os::unix::net::UnixListener::bind(dir.path().join("vsock.sock_5000")).unwrap();
    let host = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        reader.get_mut().write_all(b"hello, guest\n").unwrap();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        (line, rest)
    });
    let devices = vec![
        VirtioDevice {
            name: "vsock".to_owned(),
            backend: Box::new(Vsock::new(GUEST_CID, &socket).unwrap()),
        },
        VirtioDevice {
            name: "fs0".to_owned(),
            backend: Box::new(
                Fs::new(FsConfig {
                    tag: "kvm-guest".to_owned(),
                    root: share,
                    read_only: true,
                    allow_devices: false,
                })
                .unwrap(),
            ),
        },
    ];
    assert_eq!(fs_threads("kvm-guest").len(), 1, "the share's worker runs");
    let run = boot_with(
        &spec(
            test_guest(),
            1,
            &["test_guest.vsock_port=5000", "test_guest.fs_file=hello.txt"],
        ),
        devices,
        None,
    );
    let console = run.console();
    assert_eq!(run.end.outcome, Outcome::Clean, "{console:?}");
    for line in [
        "test-guest: vsock: got \"hello, guest\"",
        "test-guest: vsock: closed: sent 25 bytes, received 13 bytes, forwarded 13, 0 credit update(s)",
        "test-guest: fs: read \"served by the fs backend\\n\"",
        "test-guest: 2 virtio-mmio device(s), 0 failure(s)",
    ] {
        assert!(console.contains(&line), "{line} in {console:?}");
    }
    let (line, rest) = host.join().unwrap();
    assert_eq!(line, test_guest::VSOCK_PAYLOAD);
    assert!(rest.is_empty(), "{rest:?}");
    // The devices went with the VM: the share's worker thread and the vsock socket.
    assert_eq!(fs_threads("kvm-guest"), Vec::<String>::new());
    assert!(!socket.exists());
}

/// A PVH ELF image loaded at 1 MiB whose entry runs `code` (32-bit protected mode).
fn pvh_image(dir: &Path, name: &str, code: &[u8]) -> PathBuf {
    const LOAD: u64 = 0x10_0000;
    const CODE_OFFSET: u64 = 0x1000;
    let mut elf = vec![0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little endian
    elf[6] = 1; // version
    elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[24..32].copy_from_slice(&LOAD.to_le_bytes()); // e_entry
    elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    elf[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&8u32.to_le_bytes());
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&LOAD.to_le_bytes());
    let note_offset = 64 + 2 * 56;
    let phdr = |kind: u32, offset: u64, addr: u64, size: u64| {
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&kind.to_le_bytes());
        ph[4..8].copy_from_slice(&7u32.to_le_bytes()); // RWX
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[16..24].copy_from_slice(&addr.to_le_bytes());
        ph[24..32].copy_from_slice(&addr.to_le_bytes());
        ph[32..40].copy_from_slice(&size.to_le_bytes());
        ph[40..48].copy_from_slice(&size.to_le_bytes());
        ph[48..56].copy_from_slice(&4u64.to_le_bytes());
        ph
    };
    let code_len = u64::try_from(code.len()).unwrap();
    elf.extend(phdr(1, CODE_OFFSET, LOAD, code_len));
    elf.extend(phdr(4, note_offset, 0, u64::try_from(note.len()).unwrap()));
    elf.extend(&note);
    elf.resize(usize::try_from(CODE_OFFSET).unwrap(), 0);
    elf.extend_from_slice(code);
    let path = dir.join(name);
    std::fs::write(&path, elf).unwrap();
    path
}

/// `jmp .`
const SPIN: &[u8] = &[0xeb, 0xfe];
/// `mov al, 0x20; out 0xe9, al; jmp .`
const MARK_THEN_SPIN: &[u8] = &[0xb0, 0x20, 0xe6, 0xe9, 0xeb, 0xfe];
/// `hlt` with interrupts off: the vCPU sleeps in the kernel for good.
const HALT: &[u8] = &[0xf4, 0xeb, 0xfd];
/// `mov al, 0x10; out 0xe9, al; ud2` with an empty IDT: an agent that started, then a
/// triple fault.
const AGENT_START_THEN_RESET: &[u8] = &[0xb0, 0x10, 0xe6, 0xe9, 0x0f, 0x0b];
/// Markers "agent started", then "shutdown clean", then `ud2`: the agent's clean power-off.
const AGENT_CLEAN_RESET: &[u8] = &[0xb0, 0x10, 0xe6, 0xe9, 0xb0, 0x1e, 0xe6, 0xe9, 0x0f, 0x0b];

#[test]
fn a_guest_that_writes_no_marker_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = pvh_image(dir.path(), "spin", SPIN);
    let mut spec = spec(&kernel, 2, &[]);
    spec.boot_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let run = boot(&spec, None);
    assert_eq!(run.end.outcome, Outcome::BootTimeout(spec.boot_timeout));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_stop_request_ends_running_and_halted_vcpus() {
    let dir = tempfile::tempdir().unwrap();
    for (name, code) in [("spin", MARK_THEN_SPIN), ("halt", HALT)] {
        let kernel = pvh_image(dir.path(), name, code);
        let started = Instant::now();
        let stop = Box::new(|stop: StopHandle| {
            std::thread::sleep(Duration::from_millis(200));
            assert!(stop.stop("test"));
        });
        let run = boot(&spec(&kernel, 2, &[]), Some(stop));
        assert_eq!(run.end.outcome, Outcome::Stopped("test".into()), "{name}");
        assert!(started.elapsed() < Duration::from_secs(5), "{name}");
    }
}

#[test]
fn resets_are_judged_by_the_agents_markers() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = pvh_image(dir.path(), "crash", AGENT_START_THEN_RESET);
    let run = boot(&spec(&crashed, 1, &[]), None);
    assert_eq!(
        run.end.outcome,
        Outcome::NoVerdict {
            agent_started: true
        }
    );
    let clean = pvh_image(dir.path(), "clean", AGENT_CLEAN_RESET);
    let run = boot(&spec(&clean, 1, &[]), None);
    assert_eq!(run.end.outcome, Outcome::Clean);
}

#[test]
fn memory_too_small_for_the_boot_files_is_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let initramfs = dir.path().join("initramfs");
    let file = std::fs::File::create(&initramfs).unwrap();
    file.set_len(100 << 20).unwrap(); // sparse
    let mut spec = spec(test_guest(), 1, &[]);
    spec.initramfs = Some(initramfs);
    let _one = one_vm();
    let err = KvmEngine::new(PathBuf::from(DEFAULT_KVM_PATH))
        .run(&spec, Vec::new(), mailbox().1, &mut |_| {})
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("guest memory too small: the kernel (loaded up to ")
            && text.contains("the initramfs (100 MiB)")
            && text.ends_with("but the VM has 64 MiB"),
        "{text}"
    );
}

#[test]
fn a_missing_kvm_device_is_a_clear_error() {
    let err = KvmEngine::new(PathBuf::from("/nonexistent/kvm"))
        .run(
            &spec(test_guest(), 1, &[]),
            Vec::new(),
            mailbox().1,
            &mut |_| {},
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot open /nonexistent/kvm read-write: No such file or directory (os error 2)"
    );
}

#[test]
fn aps_wait_for_sipi_while_the_boot_vcpu_runs_and_cpuid_and_msrs_are_accepted() {
    let _one = one_vm();
    let kvm = KvmContext::open(Path::new(DEFAULT_KVM_PATH)).unwrap();
    let supported = kvm.supported_cpuid().unwrap();
    let vm = Vm::create(&kvm).unwrap();
    vm.create_irqchip_and_pit().unwrap();
    for index in 0..2 {
        let vcpu = vm.create_vcpu(index).unwrap();
        let topology = VcpuTopology { index, count: 2 };
        // KVM_SET_CPUID2 and KVM_SET_MSRS (without 0x10a) succeed on this host.
        vcpu.configure(&vcpu_cpuid(&supported, topology).unwrap())
            .unwrap();
        let expected = if index == 0 {
            KVM_MP_STATE_RUNNABLE
        } else {
            KVM_MP_STATE_UNINITIALIZED
        };
        assert_eq!(vcpu.mp_state().unwrap(), expected, "vCPU {index}");
    }
}

#[test]
fn auto_needs_hardware_virtualization_but_kvm_by_name_only_the_device() {
    let pvm = HostFacts {
        hardware_virtualization: false,
        kvm_device: Ok(()),
    };
    assert_eq!(unusable_reason(&pvm), None);
    assert!(auto_declines(&pvm).unwrap().contains("vmx/svm"));
    let no_device = HostFacts {
        hardware_virtualization: true,
        kvm_device: Err("cannot open /dev/kvm read-write: No such file".into()),
    };
    assert!(unusable_reason(&no_device).unwrap().contains("/dev/kvm"));
    assert!(auto_declines(&no_device).unwrap().contains("/dev/kvm"));
    let good = HostFacts {
        hardware_virtualization: true,
        kvm_device: Ok(()),
    };
    assert_eq!((unusable_reason(&good), auto_declines(&good)), (None, None));
}

#[test]
fn outcomes_follow_the_exit_port_and_the_markers() {
    let now = Instant::now();
    let with = |markers: &[u8]| {
        let mut state = RunState::default();
        for m in markers {
            state.handle(Message::Marker(*m, now), &mut |_| {});
        }
        state
    };
    assert_eq!(with(&[0x20]).outcome(GuestEnd::ExitPort(0)), Outcome::Clean);
    assert!(matches!(
        with(&[0x20, 0x2f]).outcome(GuestEnd::ExitPort(3)),
        Outcome::GuestFailed(r) if r.contains("value 0x3")
    ));
    assert_eq!(with(&[0x10, 0x1e]).outcome(GuestEnd::Reset), Outcome::Clean);
    assert_eq!(
        with(&[0x10, 0x1f]).outcome(GuestEnd::Reset),
        Outcome::AgentFailed
    );
    assert_eq!(
        with(&[0x10]).outcome(GuestEnd::Reset),
        Outcome::NoVerdict {
            agent_started: true
        }
    );
    assert_eq!(
        with(&[]).outcome(GuestEnd::Reset),
        Outcome::NoVerdict {
            agent_started: false
        }
    );
    assert!(matches!(
        with(&[0x20, 0x2f]).outcome(GuestEnd::Reset),
        Outcome::GuestFailed(_)
    ));
    assert_eq!(
        with(&[0x20]).outcome(GuestEnd::Failed("vCPU 0: KVM_EXIT_INTERNAL_ERROR".into())),
        Outcome::EngineFailed("vCPU 0: KVM_EXIT_INTERNAL_ERROR".into())
    );
}
