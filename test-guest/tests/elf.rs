//! Checks of the built guest ELF: format, load address, PVH note, instruction scan, and that
//! the protocol constants in `src/lib.rs` are the ones the guest was built with.

use std::path::Path;
use std::process::Command;

use test_guest::scan::{self, Elf, EM_X86_64, PT_LOAD, PT_NOTE};

fn guest_elf() -> Vec<u8> {
    std::fs::read(test_guest::ELF_PATH).expect("the guest ELF exists")
}

#[test]
fn elf_is_a_pvh_bootable_x86_64_image_at_1mib() {
    let data = guest_elf();
    let elf = Elf::parse(&data).expect("ELF64 little-endian");
    assert_eq!(elf.machine, EM_X86_64);

    let loads: Vec<_> = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .collect();
    assert_eq!(loads.len(), 1, "one PT_LOAD: {loads:?}");
    let load = loads[0];
    assert_eq!(load.paddr, test_guest::LOAD_ADDRESS);
    assert_eq!(load.vaddr, load.paddr, "identity mapped");
    assert!(load.filesz > 0 && load.filesz <= load.memsz);
    // linux-loader (newer than 0.13) rejects PT_LOAD segments not aligned to 2 MiB.
    assert_eq!(load.align % 0x20_0000, 0, "p_align {:#x}", load.align);
    // The whole image, .bss and stack included, stays below 2 MiB (and in the 4 GiB we map).
    assert!(
        load.paddr + load.memsz <= 0x20_0000,
        "image ends at {:#x}",
        load.paddr + load.memsz
    );

    // QEMU aligns the note name to the PT_NOTE's p_align: it must be 4.
    let notes: Vec<_> = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == PT_NOTE)
        .collect();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].align, 4);

    let entry = elf
        .pvh_entry()
        .expect("well-formed notes")
        .expect("a Xen PHYS32_ENTRY note");
    assert_eq!(u64::from(entry), elf.entry, "PVH entry == e_entry");
    assert_eq!(u64::from(entry), test_guest::LOAD_ADDRESS);
    let text32 = elf
        .sections
        .iter()
        .find(|s| s.name == ".text32")
        .expect(".text32");
    assert_eq!(
        text32.addr,
        u64::from(entry),
        "the entry is the 32-bit code"
    );
}

#[test]
fn guest_has_no_instruction_pvm_cannot_emulate() {
    let findings = scan::scan_elf("objdump", Path::new(test_guest::ELF_PATH)).unwrap();
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn scan_catches_forbidden_instructions_in_a_real_object() {
    let dir = std::env::temp_dir().join(format!("test-guest-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("bad.S");
    let obj = dir.join("bad.o");
    std::fs::write(
        &src,
        ".section .text32, \"ax\"\n.code32\ninc %eax\ntzcnt %eax, %ebx\n\
         .text\n.code64\nmov %rax, %rbx\npopcnt %rax, %rbx\npxor %xmm0, %xmm0\nmfence\nfldz\n\
         int3\nint $0x80\nrep stosq\nlock orl $0, (%rsp)\nfxsave (%rsp)\n",
    )
    .unwrap();
    let status = Command::new("gcc")
        .args(["-c", "-o"])
        .arg(&obj)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    let findings = scan::scan_elf("objdump", &obj).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let mut found: Vec<&str> = findings
        .iter()
        .map(|f| f.instruction.split_whitespace().next().unwrap())
        .collect();
    found.sort_unstable();
    assert_eq!(
        found,
        ["fldz", "int", "int3", "mfence", "popcnt", "pxor", "tzcnt"],
        "{findings:#?}"
    );
}

/// `#define NAME VALUE` from a guest header.
fn guest_define(header: &str, name: &str) -> u64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("guest")
        .join(header);
    let text = std::fs::read_to_string(path).unwrap();
    let value = text
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name)).then(|| words.next().unwrap().to_string())
        })
        .unwrap_or_else(|| panic!("{name} not defined in {header}"));
    let hex = value.trim_start_matches("0x");
    u64::from_str_radix(hex, if hex.len() < value.len() { 16 } else { 10 }).unwrap()
}

#[test]
fn protocol_constants_match_the_guest_sources() {
    let h = "guest.h";
    assert_eq!(
        guest_define(h, "MARKER_PORT"),
        u64::from(test_guest::MARKER_PORT)
    );
    assert_eq!(
        guest_define(h, "MARKER_ENTERED"),
        u64::from(test_guest::MARKER_ENTERED)
    );
    assert_eq!(
        guest_define(h, "MARKER_PROBED"),
        u64::from(test_guest::MARKER_PROBED)
    );
    assert_eq!(
        guest_define(h, "MARKER_EXIT_OK"),
        u64::from(test_guest::MARKER_EXIT_OK)
    );
    assert_eq!(
        guest_define(h, "EXIT_PORT"),
        u64::from(test_guest::EXIT_PORT)
    );
    assert_eq!(
        guest_define(h, "EXIT_SUCCESS"),
        u64::from(test_guest::EXIT_SUCCESS)
    );
    assert_eq!(
        guest_define(h, "EXIT_FAILURE"),
        u64::from(test_guest::EXIT_FAILURE)
    );
    // entry.S writes the first marker itself.
    assert_eq!(
        guest_define("entry.S", "MARKER_ENTERED"),
        u64::from(test_guest::MARKER_ENTERED)
    );
    assert_eq!(
        guest_define("vsock.c", "VSOCK_LOCAL_PORT"),
        u64::from(test_guest::VSOCK_GUEST_PORT)
    );
    assert_eq!(
        guest_define("vsock.c", "BUF_ALLOC"),
        u64::from(test_guest::VSOCK_BUF_ALLOC)
    );
    let vsock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("guest/vsock.c"))
            .unwrap();
    let payload = test_guest::VSOCK_PAYLOAD.replace('\n', "\\n");
    assert!(
        vsock.contains(&format!("static const char payload[] = \"{payload}\";")),
        "VSOCK_PAYLOAD is not vsock.c's payload"
    );
    assert_eq!(test_guest::qemu_exit_code(test_guest::EXIT_SUCCESS), 1);
    assert_eq!(test_guest::qemu_exit_code(test_guest::EXIT_FAILURE), 3);
}
