//! Static checks of the linked test guest, shared by `build.rs` (which fails the build on any
//! finding) and the crate's tests: the forbidden-instruction scan over `objdump` output, and
//! a small ELF64 reader (sections, program headers, the PVH note).
//!
//! Why a scan: on this project's machines `/dev/kvm` is PVM, which runs a non-PVM guest
//! entirely in KVM's x86 instruction emulator; an instruction the emulator does not implement
//! stops the VM (`KVM_EXIT_INTERNAL_ERROR`), and `lzcnt`/`tzcnt` silently compute `bsr`/`bsf`.
//! The list below is the one place those instructions are named.

use std::fmt;
use std::path::Path;
use std::process::Command;

/// Mnemonics (Intel syntax, as `objdump -M intel` prints them) the guest must not contain,
/// each with the reason. Matched as whole words against the mnemonic after any prefixes.
pub const FORBIDDEN_MNEMONICS: &[(&str, &str)] = &[
    // SSE/AVX by name; any use of a vector register is caught by FORBIDDEN_REGISTERS too.
    ("pxor", "SSE: not emulated"),
    ("xorps", "SSE: not emulated"),
    ("xorpd", "SSE: not emulated"),
    ("movq", "MMX/SSE move: not emulated"),
    ("movd", "MMX/SSE move: not emulated"),
    ("ldmxcsr", "SSE control: not emulated"),
    ("stmxcsr", "SSE control: not emulated"),
    ("vldmxcsr", "AVX: not emulated"),
    ("vstmxcsr", "AVX: not emulated"),
    ("vzeroupper", "AVX: not emulated"),
    ("vzeroall", "AVX: not emulated"),
    ("emms", "MMX: not emulated"),
    ("femms", "3DNow!: not emulated"),
    // POPCNT, LZCNT/TZCNT (decoded as BSR/BSF: silently wrong), BMI1/BMI2, ADX.
    ("popcnt", "not emulated"),
    ("lzcnt", "emulated as bsr: wrong result"),
    ("tzcnt", "emulated as bsf: wrong result"),
    ("andn", "BMI1: not emulated"),
    ("bextr", "BMI1: not emulated"),
    ("blsi", "BMI1: not emulated"),
    ("blsr", "BMI1: not emulated"),
    ("blsmsk", "BMI1: not emulated"),
    ("bzhi", "BMI2: not emulated"),
    ("pdep", "BMI2: not emulated"),
    ("pext", "BMI2: not emulated"),
    ("sarx", "BMI2: not emulated"),
    ("shlx", "BMI2: not emulated"),
    ("shrx", "BMI2: not emulated"),
    ("mulx", "BMI2: not emulated"),
    ("rorx", "BMI2: not emulated"),
    ("adcx", "ADX: not emulated"),
    ("adox", "ADX: not emulated"),
    // Miscellaneous extensions.
    ("crc32", "SSE4.2: not emulated"),
    ("cmpxchg16b", "not emulated"),
    ("rdtscp", "not emulated"),
    ("rdpid", "not emulated"),
    ("movbe", "not emulated"),
    ("xgetbv", "not emulated"),
    ("xsetbv", "not emulated"),
    ("rdrand", "not emulated"),
    ("rdseed", "not emulated"),
    // Fences: KVM's emulator implements none of mfence/sfence, lfence only since Linux 5.x.
    (
        "mfence",
        "not emulated (use a locked or as the full barrier)",
    ),
    ("sfence", "not emulated"),
    ("lfence", "not emulated by older KVM"),
    // CET: `endbr64` (0f 1e) is not in the emulator's opcode table; build with
    // -fcf-protection=none.
    ("endbr64", "CET: not emulated"),
    ("endbr32", "CET: not emulated"),
    // Software interrupts and fast system calls.
    ("int3", "software interrupt: not emulated"),
    ("int", "software interrupt: not emulated"),
    ("int1", "software interrupt: not emulated"),
    ("icebp", "software interrupt: not emulated"),
    ("into", "software interrupt: not emulated"),
    ("syscall", "fast system call: not usable"),
    ("sysenter", "fast system call: not usable"),
    ("sysret", "fast system call: not usable"),
    ("sysexit", "fast system call: not usable"),
    // Hypercalls.
    ("vmcall", "hypercall: not supported"),
    ("vmmcall", "hypercall: not supported"),
    // objdump could not decode the bytes: nothing can be said about them.
    ("(bad)", "undecodable bytes in executable code"),
];

/// Mnemonic families: every mnemonic starting with one of these is forbidden, unless it is
/// in [`ALLOWED_MNEMONICS`]. `f` is the x87 floating-point instruction set.
pub const FORBIDDEN_MNEMONIC_PREFIXES: &[(&str, &str)] = &[
    ("xsave", "XSAVE family: not emulated"),
    ("xrstor", "XSAVE family: not emulated"),
    ("f", "x87: not emulated"),
];

/// Exceptions to [`FORBIDDEN_MNEMONIC_PREFIXES`]: KVM emulates `fxsave`/`fxrstor`.
pub const ALLOWED_MNEMONICS: &[&str] = &["fxsave", "fxsave64", "fxrstor", "fxrstor64"];

/// Registers (name prefix followed by a number, or `st`) no instruction may touch: using one
/// means vector, x87, AVX-512 mask or MPX code.
pub const FORBIDDEN_REGISTERS: &[(&str, &str)] = &[
    ("xmm", "SSE register"),
    ("ymm", "AVX register"),
    ("zmm", "AVX-512 register"),
    ("mm", "MMX register"),
    ("k", "AVX-512 mask register"),
    ("bnd", "MPX register"),
];

/// Memory-operand size keywords that only vector or x87 instructions use.
pub const FORBIDDEN_OPERAND_WORDS: &[(&str, &str)] = &[
    ("st", "x87 register"),
    ("xmmword", "SSE memory operand"),
    ("ymmword", "AVX memory operand"),
    ("zmmword", "AVX-512 memory operand"),
    ("tbyte", "x87 memory operand"),
];

/// Instruction prefixes `objdump -M intel` prints before the mnemonic.
const PREFIXES: &[&str] = &[
    "rep", "repz", "repe", "repnz", "repne", "lock", "data16", "data32", "addr16", "addr32",
    "notrack", "bnd", "cs", "ds", "es", "ss", "fs", "gs", "xacquire", "xrelease", "rex", "{vex}",
    "{vex3}", "{evex}", "{disp8}", "{disp32}",
];

/// A forbidden instruction found in the disassembly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Address of the instruction.
    pub address: u64,
    /// The instruction as objdump printed it.
    pub instruction: String,
    /// Why it is forbidden.
    pub reason: &'static str,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x}: {} ({})",
            self.address, self.instruction, self.reason
        )
    }
}

fn is_prefix(word: &str) -> bool {
    PREFIXES.contains(&word) || word.starts_with("rex.")
}

/// Checks one instruction as printed by `objdump -M intel --no-show-raw-insn` (without the
/// address). Returns why it is forbidden, or `None`.
pub fn check_instruction(text: &str) -> Option<&'static str> {
    // Drop objdump's annotations: `# <comment>` and `<symbol+offset>`.
    let text = text.split('#').next().unwrap_or("");
    let text = match text.find('<') {
        Some(i) => &text[..i],
        None => text,
    };
    let lower = text.to_ascii_lowercase();
    let mut words = lower.split_whitespace();
    let mnemonic = words.by_ref().find(|w| !is_prefix(w))?;
    if let Some((_, why)) = FORBIDDEN_MNEMONICS.iter().find(|(m, _)| *m == mnemonic) {
        return Some(why);
    }
    if !ALLOWED_MNEMONICS.contains(&mnemonic) {
        if let Some((_, why)) = FORBIDDEN_MNEMONIC_PREFIXES
            .iter()
            .find(|(p, _)| mnemonic.starts_with(p))
        {
            return Some(why);
        }
    }
    let operands: Vec<&str> = words.collect();
    let operands = operands.join(" ");
    for token in operands.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some((_, why)) = FORBIDDEN_OPERAND_WORDS.iter().find(|(w, _)| *w == token) {
            return Some(why);
        }
        for (reg, why) in FORBIDDEN_REGISTERS {
            if let Some(n) = token.strip_prefix(reg) {
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                    return Some(why);
                }
            }
        }
    }
    None
}

/// Scans the output of `objdump -d -M intel --no-show-raw-insn` and returns every forbidden
/// instruction in it.
pub fn scan_disassembly(disassembly: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for line in disassembly.lines() {
        // Instruction lines look like "  100000:\tcli"; everything else is a header/label.
        let Some((addr, text)) = line.split_once(":\t") else {
            continue;
        };
        let Ok(address) = u64::from_str_radix(addr.trim(), 16) else {
            continue;
        };
        if let Some(reason) = check_instruction(text) {
            findings.push(Finding {
                address,
                instruction: text.trim().to_string(),
                reason,
            });
        }
    }
    findings
}

/// Executable sections of the guest and how to disassemble them: the PVH entry runs in
/// 32-bit protected mode (`.text32`), everything else in 64-bit mode.
pub const CODE_SECTIONS: &[(&str, &str)] = &[(".text32", "intel,i386"), (".text", "intel")];

/// Disassembles every executable section of the ELF at `elf_path` with `objdump` (Intel
/// syntax, no raw bytes), each in its mode from [`CODE_SECTIONS`]; an executable section not
/// listed there is an error (it could not be checked).
pub fn disassemble(objdump: &str, elf_path: &Path) -> Result<String, String> {
    let data = std::fs::read(elf_path).map_err(|e| format!("{}: {e}", elf_path.display()))?;
    let elf = Elf::parse(&data)?;
    let mut all = String::new();
    for s in elf.sections.iter().filter(|s| s.flags & SHF_EXECINSTR != 0) {
        let Some((_, options)) = CODE_SECTIONS.iter().find(|(name, _)| *name == s.name) else {
            return Err(format!("unexpected executable section {}", s.name));
        };
        let out = Command::new(objdump)
            .args(["-d", "--no-show-raw-insn", "-M", options, "-j", &s.name])
            .arg(elf_path)
            .output()
            .map_err(|e| format!("cannot run {objdump}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{objdump} -j {} {} failed: {}",
                s.name,
                elf_path.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    Ok(all)
}

/// Checks the linked guest: disassembles it ([`disassemble`]) and returns every forbidden
/// instruction (empty = clean).
pub fn scan_elf(objdump: &str, elf_path: &Path) -> Result<Vec<Finding>, String> {
    Ok(scan_disassembly(&disassemble(objdump, elf_path)?))
}

/// `PT_LOAD` program header type.
pub const PT_LOAD: u32 = 1;
/// `PT_NOTE` program header type.
pub const PT_NOTE: u32 = 4;
/// `SHF_EXECINSTR` section flag.
pub const SHF_EXECINSTR: u64 = 4;
/// `EM_X86_64`.
pub const EM_X86_64: u16 = 62;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the note whose desc is the 32-bit PVH entry address.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// An ELF64 program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    /// p_type
    pub p_type: u32,
    /// p_flags
    pub flags: u32,
    /// p_offset
    pub offset: u64,
    /// p_vaddr
    pub vaddr: u64,
    /// p_paddr
    pub paddr: u64,
    /// p_filesz
    pub filesz: u64,
    /// p_memsz
    pub memsz: u64,
    /// p_align
    pub align: u64,
}

/// An ELF64 section header (the fields we need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name from the section header string table.
    pub name: String,
    /// sh_flags
    pub flags: u64,
    /// sh_addr
    pub addr: u64,
    /// sh_size
    pub size: u64,
}

/// The parts of a little-endian ELF64 file the checks look at.
#[derive(Debug, Clone)]
pub struct Elf<'a> {
    data: &'a [u8],
    /// e_machine
    pub machine: u16,
    /// e_entry
    pub entry: u64,
    /// Program headers.
    pub program_headers: Vec<ProgramHeader>,
    /// Section headers.
    pub sections: Vec<Section>,
}

fn bytes<const N: usize>(data: &[u8], at: u64) -> Result<[u8; N], String> {
    let start = usize::try_from(at).map_err(|_| "offset overflows usize".to_string())?;
    start
        .checked_add(N)
        .and_then(|end| data.get(start..end))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("ELF truncated at {at:#x}"))
}

fn u16_at(data: &[u8], at: u64) -> Result<u16, String> {
    bytes(data, at).map(u16::from_le_bytes)
}

fn u32_at(data: &[u8], at: u64) -> Result<u32, String> {
    bytes(data, at).map(u32::from_le_bytes)
}

fn u64_at(data: &[u8], at: u64) -> Result<u64, String> {
    bytes(data, at).map(u64::from_le_bytes)
}

fn align4(n: u64) -> u64 {
    (n + 3) & !3
}

impl<'a> Elf<'a> {
    /// Parses the headers of a little-endian ELF64 file.
    pub fn parse(data: &'a [u8]) -> Result<Self, String> {
        if data.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err("not an ELF file".into());
        }
        if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
            return Err("not a little-endian ELF64 file".into());
        }
        let machine = u16_at(data, 18)?;
        let entry = u64_at(data, 24)?;
        let phoff = u64_at(data, 32)?;
        let shoff = u64_at(data, 40)?;
        let phentsize = u64::from(u16_at(data, 54)?);
        let phnum = u64::from(u16_at(data, 56)?);
        let shentsize = u64::from(u16_at(data, 58)?);
        let shnum = u64::from(u16_at(data, 60)?);
        let shstrndx = u64::from(u16_at(data, 62)?);

        let mut program_headers = Vec::new();
        for i in 0..phnum {
            let at = phoff + i * phentsize;
            program_headers.push(ProgramHeader {
                p_type: u32_at(data, at)?,
                flags: u32_at(data, at + 4)?,
                offset: u64_at(data, at + 8)?,
                vaddr: u64_at(data, at + 16)?,
                paddr: u64_at(data, at + 24)?,
                filesz: u64_at(data, at + 32)?,
                memsz: u64_at(data, at + 40)?,
                align: u64_at(data, at + 48)?,
            });
        }

        let mut raw = Vec::new();
        for i in 0..shnum {
            let at = shoff + i * shentsize;
            raw.push((
                u32_at(data, at)?,      // sh_name
                u64_at(data, at + 8)?,  // sh_flags
                u64_at(data, at + 16)?, // sh_addr
                u64_at(data, at + 24)?, // sh_offset
                u64_at(data, at + 32)?, // sh_size
            ));
        }
        let strtab_offset = usize::try_from(shstrndx)
            .ok()
            .and_then(|i| raw.get(i))
            .map(|s| s.3)
            .ok_or("bad section name table index")?;
        let mut sections = Vec::new();
        for (name, flags, addr, _, size) in raw {
            let start = usize::try_from(strtab_offset + u64::from(name))
                .map_err(|_| "section name offset overflows usize".to_string())?;
            let tail = data.get(start..).ok_or("section name outside the file")?;
            let end = tail
                .iter()
                .position(|&b| b == 0)
                .ok_or("unterminated section name")?;
            sections.push(Section {
                name: String::from_utf8_lossy(&tail[..end]).into_owned(),
                flags,
                addr,
                size,
            });
        }
        Ok(Elf {
            data,
            machine,
            entry,
            program_headers,
            sections,
        })
    }

    /// The PVH entry address from a `Xen`/`XEN_ELFNOTE_PHYS32_ENTRY` note in a `PT_NOTE`
    /// segment (notes 4-byte aligned, desc of 4 or 8 bytes whose value fits in 32 bits), or
    /// `None` if there is no such note.
    pub fn pvh_entry(&self) -> Result<Option<u32>, String> {
        for ph in self.program_headers.iter().filter(|p| p.p_type == PT_NOTE) {
            let mut at = ph.offset;
            let end = ph.offset + ph.filesz;
            while at + 12 <= end {
                let namesz = u64::from(u32_at(self.data, at)?);
                let descsz = u64::from(u32_at(self.data, at + 4)?);
                let n_type = u32_at(self.data, at + 8)?;
                let name_at = at + 12;
                let desc_at = name_at + align4(namesz);
                if n_type == XEN_ELFNOTE_PHYS32_ENTRY
                    && bytes::<4>(self.data, name_at)? == *b"Xen\0"
                {
                    let entry = match descsz {
                        4 => u64::from(u32_at(self.data, desc_at)?),
                        8 => u64_at(self.data, desc_at)?,
                        n => return Err(format!("PVH note desc has {n} bytes")),
                    };
                    return u32::try_from(entry)
                        .map(Some)
                        .map_err(|_| format!("PVH entry {entry:#x} is not a 32-bit address"));
                }
                at = desc_at + align4(descsz);
            }
        }
        Ok(None)
    }
}
