//! The instruction scanner on objdump-style text: whole-word mnemonics after prefixes,
//! vector/x87 registers in operands, and no false positives from addresses or symbols.

use test_guest::scan::{check_instruction, scan_disassembly};

#[test]
fn forbidden_mnemonics_are_found_as_whole_words() {
    for insn in [
        "popcnt rax,rbx",
        "lzcnt  eax,ecx",
        "tzcnt  eax,ecx",
        "andn   eax,ebx,ecx",
        "shlx   rax,rbx,rcx",
        "crc32  eax,BYTE PTR [rdi]",
        "lock cmpxchg16b OWORD PTR [rdi]",
        "rdtscp",
        "rdpid  rax",
        "movbe  eax,DWORD PTR [rdi]",
        "xsaveopt [rdi]",
        "xrstors64 [rdi]",
        "xgetbv",
        "int3",
        "int    0x80",
        "syscall",
        "sysenter",
        "vmcall",
        "vmmcall",
        "mfence",
        "endbr64",
        "fld    QWORD PTR [rax]",
        "fnstcw WORD PTR [rsp]",
        "fadd   st,st(1)",
        "(bad)",
        "rex.W popcnt rax,rbx",
    ] {
        assert!(check_instruction(insn).is_some(), "{insn} not flagged");
    }
}

#[test]
fn vector_registers_are_found_in_operands() {
    for insn in [
        "movq   xmm0,rax",
        "movdqu xmm1,XMMWORD PTR [rsi]",
        "movups XMMWORD PTR [rdi],xmm0",
        "vmovdqa ymm0,ymm1",
        "vpaddq zmm0{k1},zmm1,zmm2",
        "paddb  mm0,mm1",
        "movaps xmm15,xmm0",
    ] {
        assert!(check_instruction(insn).is_some(), "{insn} not flagged");
    }
}

#[test]
fn ordinary_instructions_pass() {
    for insn in [
        "mov    eax,DWORD PTR fs:0x28",
        "rep stos QWORD PTR es:[rdi],rax",
        "lock or DWORD PTR [rsp],0x0",
        "cs nop WORD PTR [rax+rax*1+0x0]",
        "xchg   ax,ax",
        "call   100bad <int3_handler>",
        "jmp    100f00 <fault+0x10>",
        "mov    edi,0x101b3c # 101b3c <popcnt_table>",
        "fxsave [rsp]",
        "fxrstor [rsp]",
        "out    0xe9,al",
        "in     al,dx",
        "lgdtd  ds:0x101912",
        "jmp    0x8:0x100050",
        "cmovbe eax,edx",
        "bsf    eax,ecx",
        "div    ecx",
        "movzx  eax,WORD PTR [rdi+0x2]",
        "ud2",
        "interrupt_like_label_is_not_int",
    ] {
        assert_eq!(check_instruction(insn), None, "{insn} flagged");
    }
}

#[test]
fn disassembly_lines_carry_addresses() {
    let dis = "\n\
        /x/test-guest.elf:     file format elf64-x86-64\n\
        \n\
        Disassembly of section .text:\n\
        \n\
        0000000000100050 <entry64>:\n  \
          100050:\tmov    esp,0x10c8a0\n  \
          100055:\tpopcnt eax,ecx\n  \
          100059:\tcall   100bad <int3>\n\
        \t...\n  \
          10005e:\tpxor   xmm0,xmm0\n";
    let findings = scan_disassembly(dis);
    let addrs: Vec<u64> = findings.iter().map(|f| f.address).collect();
    assert_eq!(addrs, [0x100055, 0x10005e], "{findings:#?}");
    assert!(findings[0]
        .to_string()
        .starts_with("0x100055: popcnt eax,ecx ("));
}
