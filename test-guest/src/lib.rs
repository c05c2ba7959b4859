//! The freestanding x86_64 **test guest** for the `kvm` engine (and QEMU microvm), built by
//! this crate's `build.rs` from C and assembly in `guest/` into [`ELF_PATH`].
//!
//! # Boot
//!
//! An ELF64 loaded at 1 MiB physical (one `PT_LOAD`, vaddr == paddr, `p_align` 2 MiB) with a
//! PVH note (`Xen`, type 18 = `XEN_ELFNOTE_PHYS32_ENTRY`, desc = 8-byte little-endian entry
//! address < 4 GiB, like Linux's x86_64 vmlinux; the low 32 bits are what loaders use). The
//! entry runs in 32-bit protected mode with paging off and `%ebx` = physical address of
//! `struct hvm_start_info` (magic `0x336ec578`); `e_entry` is the same address. The guest
//! loads its own GDT and static identity page tables for the first 4 GiB (2 MiB pages,
//! uncached from 3 GiB up), enters long mode, installs an IDT for vectors 0–31 and runs.
//! One vCPU is used; others may stay halted. The VMM must call `KVM_SET_CPUID2` (EFER.LME).
//!
//! # Command line (`hvm_start_info.cmdline_paddr`, NUL-terminated)
//!
//! * `virtio_mmio.device=<size>@<base>:<irq>[:<id>]`, any number, in Linux's syntax
//!   (`drivers/virtio/virtio_mmio.c`): every one is probed.
//! * `test_guest.fault`: raise a divide error after start-up (tests fault reporting).
//! * `test_guest.no_exit_port`: skip the exit port, end with the triple fault.
//! * `test_guest.vsock_port=P`: on a virtio-vsock device, connect to host (CID 2) port `P`
//!   and exchange a line (below). Without it the vsock device is only set up.
//! * `test_guest.fs_file=NAME`: on each virtio-fs device, read the file `NAME` in the
//!   share's root (below). Without it only `FUSE_INIT` is sent.
//!
//! # What it does, and what the VMM sees
//!
//! Output goes to the 8250 UART at I/O [`SERIAL_PORT`] (polled, 115200 8N1, `\r\n` line
//! ends), every line starting with `test-guest: `:
//!
//! ```text
//! test-guest: hvm_start_info at 0x... version 1
//! test-guest: cmdline: <the command line>
//! test-guest: virtio-mmio@0x<base> id <device id> features ok queue0 size <n>[, <q> queues] ready
//! test-guest: virtio-rng: request 0: <n> random bytes in 2 descriptor(s): <hex>
//! test-guest: virtio-rng: request 1: <n> random bytes in 1 descriptor(s): <hex>
//! test-guest: <n> virtio-mmio device(s), <m> failure(s)
//! test-guest: exit success            (or: exit failure)
//! ```
//!
//! A virtio-vsock device (id 19, queues rx, tx, event) with `test_guest.vsock_port=P`:
//!
//! ```text
//! test-guest: vsock: guest cid 3
//! test-guest: vsock: connecting from port 1234 to host port P
//! test-guest: vsock: connected, host buf_alloc <n> fwd_cnt <n>
//! test-guest: vsock: sent "ping from the test guest\n"
//! test-guest: vsock: got "<the host's first line, without its newline>"
//! test-guest: vsock: closed: sent 25 bytes, received <n> bytes, forwarded <n>, <k> credit update(s)
//! ```
//!
//! The guest sends REQUEST from port [`VSOCK_GUEST_PORT`], waits for RESPONSE (an RST is
//! "connection refused", a failure), sends [`VSOCK_PAYLOAD`] as RW, reads RW packets up to
//! a newline (or the host's SHUTDOWN), then sends SHUTDOWN (both flags) and waits for the
//! host's RST. Flow control follows virtio 1.2 §5.10.6.3: every packet carries `buf_alloc` =
//! [`VSOCK_BUF_ALLOC`] and `fwd_cnt` = bytes taken out of that buffer; a longer line arrives
//! in pieces, each taken out of the buffer and answered with a CREDIT_UPDATE once the host
//! believes less than half of it free; a CREDIT_REQUEST gets a CREDIT_UPDATE; data beyond
//! the credit is a credit violation (RST, failure). The guest never sends beyond the host's
//! credit (it asks with CREDIT_REQUEST). Lines longer than 4096 bytes are printed cut, with
//! `(a line of <n> bytes, the first 4096 shown)`. Strings are printed in double quotes
//! with `"`, `\`, newline, CR, tab and non-ASCII bytes escaped (`\"`, `\\`, `\n`, `\r`, `\t`,
//! `\xNN`).
//!
//! A virtio-fs device (id 26, queues hiprio and one request queue) — FUSE 7.38 as Linux
//! sends it, with no optional feature, one request at a time on the request queue:
//!
//! ```text
//! test-guest: fs: tag "<tag>", 1 request queue(s)
//! test-guest: fs: FUSE_INIT: server speaks 7.<minor>, max_write <n>
//! test-guest: fs: lookup "<NAME>"
//! test-guest: fs: node <n>, inode <n>, mode 0100644, size <n>
//! test-guest: fs: read "<the first 1024 bytes of the file>"
//! ```
//!
//! then RELEASE and FORGET. A FUSE error fails the run with e.g.
//! `test-guest: fs: FUSE_LOOKUP failed: error 2 (ENOENT)`; so does a file that is not a
//! regular file or a short read.
//!
//! For each device: magic and version 2 are checked (a legacy version-1 transport is
//! reported as unsupported and counts as a failure; DeviceID 0 is reported and skipped),
//! then reset, ACKNOWLEDGE, DRIVER, only `VIRTIO_F_VERSION_1` accepted, FEATURES_OK (read
//! back), queue 0 set up with size min(QueueNumMax, 16) in static memory, QueueReady,
//! DRIVER_OK. On a virtio-rng device (id 4) it then moves data: two requests (a chain of
//! two device-writable descriptors, then one), each notified through QueueNotify and polled
//! for on the used ring (then InterruptStatus is read and acknowledged). All MMIO accesses
//! are single 32-bit `mov`s.
//!
//! A CPU exception prints `test-guest: fault vector <n> rip 0x... error 0x... cr2 0x...` and
//! exits with failure.
//!
//! Boot markers: single bytes written to I/O port [`MARKER_PORT`]: [`MARKER_ENTERED`] as the
//! first thing the PVH entry does, [`MARKER_PROBED`] when every device has been probed,
//! [`MARKER_EXIT_OK`] just before a successful exit. Under QEMU,
//! `-device isa-debugcon,iobase=0xe9,chardev=...` captures them.
//!
//! Exit: one byte to I/O port [`EXIT_PORT`]: [`EXIT_SUCCESS`] or [`EXIT_FAILURE`]. Under
//! QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=4` a value `v` makes QEMU exit with
//! `(v << 1) | 1`: **success is QEMU exit code 1, failure is 3** (see [`qemu_exit_code`]).
//! If the write does not stop the guest (no device on the port), it loads an empty IDT and
//! executes `ud2`: a triple fault, i.e. `KVM_EXIT_SHUTDOWN` (QEMU with `-no-reboot` exits
//! 0). A VMM should therefore judge the run by the exit port, and treat a shutdown without
//! it, a `KVM_EXIT_INTERNAL_ERROR` or a timeout as a failure.
//!
//! # Instructions
//!
//! Under PVM every guest instruction goes through KVM's instruction emulator, which lacks
//! SSE/x87, BMI, `popcnt`, fences, `int n` and more; the build disassembles the ELF and fails
//! on any of them ([`scan`]). A whole run is on the order of 10⁴–10⁵ instructions.

pub mod scan;

/// Path of the linked guest ELF (in this crate's `OUT_DIR`).
pub const ELF_PATH: &str = concat!(env!("OUT_DIR"), "/test-guest.elf");

/// Physical load address of the guest image.
pub const LOAD_ADDRESS: u64 = 0x10_0000;

/// I/O port of the UART the guest prints on (COM1).
pub const SERIAL_PORT: u16 = 0x3f8;

/// I/O port of the boot markers.
pub const MARKER_PORT: u16 = 0xe9;
/// Marker: the PVH entry point was reached.
pub const MARKER_ENTERED: u8 = 0x20;
/// Marker: every virtio-mmio device on the command line has been probed.
pub const MARKER_PROBED: u8 = 0x21;
/// Marker: about to exit with success.
pub const MARKER_EXIT_OK: u8 = 0x2f;

/// I/O port the guest writes its result to (QEMU's `isa-debug-exit` port).
pub const EXIT_PORT: u16 = 0xf4;
/// Byte written to [`EXIT_PORT`] on success.
pub const EXIT_SUCCESS: u8 = 0x00;
/// Byte written to [`EXIT_PORT`] on failure.
pub const EXIT_FAILURE: u8 = 0x01;

/// The guest's vsock port for its connection to the host.
pub const VSOCK_GUEST_PORT: u32 = 1234;
/// What the guest sends on its vsock connection.
pub const VSOCK_PAYLOAD: &str = "ping from the test guest\n";
/// The guest's vsock receive buffer (`buf_alloc`).
pub const VSOCK_BUF_ALLOC: u32 = 1024;

/// QEMU's exit code when the guest writes `value` to its `isa-debug-exit` device.
pub fn qemu_exit_code(value: u8) -> i32 {
    (i32::from(value) << 1) | 1
}
