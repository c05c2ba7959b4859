//! Builds the freestanding test guest (`guest/`) into `$OUT_DIR/test-guest.elf` with gcc and
//! ld, then disassembles it and fails the build on any instruction PVM's emulator lacks
//! (the list is in `src/scan.rs`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(dead_code)]
#[path = "src/scan.rs"]
mod scan;

/// Guest sources, compiled in this order and linked with `guest/guest.ld`.
const SOURCES: &[&str] = &[
    "entry.S",
    "main.c",
    "console.c",
    "cmdline.c",
    "virtio.c",
    "vsock.c",
    "fs.c",
    "lib.c",
];
const HEADERS: &[&str] = &["guest.h", "cmdline.h", "virtio.h", "drivers.h", "fuse.h"];
const LINKER_SCRIPT: &str = "guest.ld";

/// Freestanding x86_64 code that uses general-purpose registers only (no SSE/x87), no red
/// zone (interrupt handlers share the stack), absolute addressing below 2 GiB, no stack
/// protector (no TLS), no CET `endbr64` (not emulated), no unwind tables, and no executed
/// alignment padding.
const CFLAGS: &[&str] = &[
    "-m64",
    "-march=x86-64",
    "-mtune=generic",
    "-std=gnu11",
    "-O2",
    "-ffreestanding",
    "-fno-builtin",
    "-nostdlib",
    "-mgeneral-regs-only",
    "-mno-red-zone",
    "-mcmodel=small",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-fcf-protection=none",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fno-tree-loop-distribute-patterns",
    "-falign-functions=1",
    "-falign-jumps=1",
    "-falign-loops=1",
    "-falign-labels=1",
    "-Wa,--noexecstack",
    "-Wall",
    "-Wextra",
    "-Werror",
];

/// One RWX PT_LOAD at 1 MiB whose p_align is 2 MiB, as linux-loader's newer ELF loader
/// requires of a vmlinux (costs 1 MiB of sparse file padding), no build-id note.
const LDFLAGS: &[&str] = &[
    "-nostdlib",
    "-static",
    "-no-pie",
    "--no-dynamic-linker",
    "--build-id=none",
    "-z",
    "noexecstack",
    "-z",
    "max-page-size=0x200000",
    "--no-warn-rwx-segments",
];

fn tool(var: &str, default: &str) -> String {
    println!("cargo:rerun-if-env-changed={var}");
    env::var(var).unwrap_or_else(|_| default.to_string())
}

fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("test-guest: `{shown}` failed: {status}"),
        Err(e) => panic!("test-guest: cannot run `{shown}`: {e}"),
    }
}

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let guest = manifest.join("guest");
    let cc = tool("TEST_GUEST_CC", "gcc");
    let ld = tool("TEST_GUEST_LD", "ld");
    let objdump = tool("TEST_GUEST_OBJDUMP", "objdump");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/scan.rs");
    for f in SOURCES.iter().chain(HEADERS).chain(&[LINKER_SCRIPT]) {
        println!("cargo:rerun-if-changed=guest/{f}");
    }

    let mut objects = Vec::new();
    for src in SOURCES {
        let obj = out.join(Path::new(src).with_extension("o"));
        run(Command::new(&cc)
            .args(CFLAGS)
            .arg("-c")
            .arg(guest.join(src))
            .arg("-o")
            .arg(&obj));
        objects.push(obj);
    }
    let elf = out.join("test-guest.elf");
    run(Command::new(&ld)
        .args(LDFLAGS)
        .arg("-T")
        .arg(guest.join(LINKER_SCRIPT))
        .arg("-o")
        .arg(&elf)
        .args(&objects));

    // Keep the disassembly next to the ELF for whoever debugs the guest.
    let disassembly = scan::disassemble(&objdump, &elf)
        .unwrap_or_else(|e| panic!("test-guest: instruction scan failed: {e}"));
    std::fs::write(out.join("test-guest.dis"), &disassembly)
        .unwrap_or_else(|e| panic!("test-guest: writing the disassembly: {e}"));
    let findings = scan::scan_disassembly(&disassembly);
    if !findings.is_empty() {
        // Leave no unchecked image behind for anyone to boot.
        let _ = std::fs::remove_file(&elf);
        let list: Vec<String> = findings.iter().map(ToString::to_string).collect();
        panic!(
            "test-guest: {} instruction(s) that KVM's emulator (PVM) cannot run:\n  {}\n\
             (the list is in test-guest/src/scan.rs; see {})",
            findings.len(),
            list.join("\n  "),
            out.join("test-guest.dis").display()
        );
    }
}
