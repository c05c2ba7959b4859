/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PVH entry of the test guest (x86/HVM direct boot ABI, as Linux's arch/x86/platform/pvh).
 *
 * Entered in 32-bit protected mode, paging off, flat CS/DS/ES/SS, interrupts off, with %ebx =
 * physical address of struct hvm_start_info. We load our own GDT, switch to long mode with
 * static identity page tables (first 4 GiB, 2 MiB pages, >= 3 GiB uncached: the MMIO hole
 * with the virtio-mmio transports at 0xfeb00000.. and the APICs), and call guest_main(si).
 */

#define CODE64_SEL 0x08
#define DATA_SEL 0x10
#define CODE32_SEL 0x18

#define MARKER_PORT 0xe9
#define MARKER_ENTERED 0x20

#define XEN_ELFNOTE_PHYS32_ENTRY 18

#define CR0_PE 0x00000001
#define CR0_PG 0x80000000
#define CR4_PAE 0x00000020
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100

/* 2 MiB page-directory entry flags: present, writable, page size (+ PWT|PCD for MMIO). */
#define PDE_2M 0x83
#define PDE_2M_UC 0x9b

/*
 * The PVH note. Linux's x86_64 vmlinux stores the entry as an 8-byte desc (ELFNOTE(Xen,
 * XEN_ELFNOTE_PHYS32_ENTRY, _ASM_PTR ...)); we do the same, so both loaders that matter read it
 * exactly as they read Linux's: linux-loader takes the low 32 bits of desc, QEMU (7.2
 * read_pvh_start_addr) reads 8 bytes and truncates to 32. Note and section are 4-aligned:
 * QEMU aligns namesz to the PT_NOTE segment's p_align, so that must be 4.
 */
	.section .note.pvh, "a", @note
	.balign 4
	.long 2f - 1f			/* namesz */
	.long 4f - 3f			/* descsz */
	.long XEN_ELFNOTE_PHYS32_ENTRY	/* type */
1:	.asciz "Xen"
2:	.balign 4
3:	.quad pvh_start
4:	.balign 4

/* 32-bit code lives in its own section so the instruction scan disassembles it as i386. */
	.section .text32, "ax"
	.code32
	.globl pvh_start
	.type pvh_start, @function
pvh_start:
	cli
	cld
	movb $MARKER_ENTERED, %al
	outb %al, $MARKER_PORT
	movl %ebx, %esi			/* hvm_start_info, kept in %esi */

	lgdt gdt_desc
	movl $DATA_SEL, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs

	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $(CR0_PG | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $CODE64_SEL, $entry64
	.size pvh_start, . - pvh_start

	.section .text, "ax"
	.code64
entry64:
	movl $stack_top, %esp
	movl %esi, %ebx			/* zero-extends: upper halves are undefined here */

	/* Zero .bss (the loader should have; we do not rely on it). .noinit is left alone. */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	shrl $3, %ecx
	xorl %eax, %eax
	rep stosq

	movl %ebx, %edi
	call guest_main
	movl %eax, %edi
	call guest_exit
	jmp triple_fault

/*
 * Exception stubs for vectors 0-31: push a dummy error code where the CPU pushes none, then
 * the vector, and hand (vector, error code, rip, cr2) to fault_handler(), which reports on the
 * serial port and exits with failure. No IST: a fault that broke the stack triple-faults.
 */
	.balign 16
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
isr\n:
	.if (\n == 8) || (\n == 10) || (\n == 11) || (\n == 12) || (\n == 13) || (\n == 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
	.else
	pushq $0
	.endif
	pushq $\n
	jmp isr_common
.endr

isr_common:
	movq (%rsp), %rdi		/* vector */
	movq 8(%rsp), %rsi		/* error code */
	movq 16(%rsp), %rdx		/* rip pushed by the CPU */
	movq %cr2, %rcx
	andq $-16, %rsp
	call fault_handler
	jmp triple_fault

/*
 * Last resort when the exit port did not stop us: an empty IDT makes the next exception a
 * triple fault, which a VMM sees as a shutdown (KVM_EXIT_SHUTDOWN; QEMU -no-reboot exits 0).
 */
	.globl triple_fault
	.type triple_fault, @function
triple_fault:
	cli
	lidt null_idt_desc
	ud2
	jmp triple_fault
	.size triple_fault, . - triple_fault

	.section .rodata
	.balign 8
	.globl isr_table
isr_table:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad isr\n
.endr

	.balign 8
null_idt_desc:
	.word 0
	.quad 0

/* GDT: accessed bits preset so loading a selector never writes to the table. */
	.balign 16
gdt:
	.quad 0
	.quad 0x00af9b000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf93000000ffff	/* 0x10: flat data */
	.quad 0x00cf9b000000ffff	/* 0x18: flat 32-bit code */
gdt_end:
	.balign 8
	.word 0
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

/*
 * Identity page tables for the first 4 GiB, fully static (no loop at boot: under PVM every
 * guest instruction is emulated). PML4[0] -> PDPT[0..3] -> four page directories of 2 MiB pages.
 */
	.section .data.pagetables, "aw"
	.balign 4096
pml4:
	.quad pdpt + 0x3
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x3
	.quad pd + 0x1000 + 0x3
	.quad pd + 0x2000 + 0x3
	.quad pd + 0x3000 + 0x3
	.fill 508, 8, 0
pd:
	.set addr, 0
	.rept 2048
	.if addr < 0xc0000000
	.quad addr + PDE_2M
	.else
	.quad addr + PDE_2M_UC
	.endif
	.set addr, addr + 0x200000
	.endr

	.section .noinit.stack, "aw", @nobits
	.balign 16
	.skip 16384
stack_top:
