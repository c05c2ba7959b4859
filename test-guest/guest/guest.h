/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared declarations of the freestanding test guest: port and MMIO access, boot markers,
 * the serial console and the exit path. No libc: everything the guest uses is here.
 *
 * Every instruction used here must be one KVM's x86 instruction emulator implements, because
 * on PVM hosts the whole guest runs through it (see ../src/scan.rs for the forbidden list).
 */
#ifndef TEST_GUEST_GUEST_H
#define TEST_GUEST_GUEST_H

typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef int int32_t;
typedef unsigned long uint64_t;
typedef long int64_t;
typedef unsigned long uintptr_t;
typedef unsigned long size_t;

_Static_assert(sizeof(uint16_t) == 2, "uint16_t");
_Static_assert(sizeof(uint32_t) == 4, "uint32_t");
_Static_assert(sizeof(int32_t) == 4, "int32_t");
_Static_assert(sizeof(uint64_t) == 8, "uint64_t");
_Static_assert(sizeof(void *) == 8, "pointers");

#define NULL ((void *)0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define NORETURN __attribute__((noreturn))
/* Big buffers go to .noinit: not zeroed at boot (their users initialise them). */
#define NOINIT __attribute__((section(".noinit")))

/* Boot-marker port and values (one byte each, see ../src/lib.rs). */
#define MARKER_PORT 0xe9
#define MARKER_ENTERED 0x20 /* written by entry.S, first instruction after cli/cld */
#define MARKER_PROBED 0x21
#define MARKER_EXIT_OK 0x2f

/* Exit port: QEMU's isa-debug-exit; our VMM reserves the same port. */
#define EXIT_PORT 0xf4
#define EXIT_SUCCESS 0x00 /* QEMU exits with (0 << 1) | 1 = 1 */
#define EXIT_FAILURE 0x01 /* QEMU exits with (1 << 1) | 1 = 3 */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* MMIO: exactly one plain 32-bit mov per access (a volatile access, never split or merged). */
static inline uint32_t mmio_read32(uintptr_t addr)
{
	return *(volatile uint32_t *)addr;
}

static inline void mmio_write32(uintptr_t addr, uint32_t v)
{
	*(volatile uint32_t *)addr = v;
}

/* Compiler barrier: x86 (TSO) keeps stores in order and loads in order. */
#define barrier() __asm__ volatile("" : : : "memory")

/*
 * Full barrier (store -> load ordering). A locked read-modify-write, as Linux's smp_mb() on
 * x86_64: mfence/sfence are not implemented by KVM's emulator (and lfence only recently).
 */
static inline void mb(void)
{
	__asm__ volatile("lock orl $0, (%%rsp)" : : : "memory", "cc");
}

static inline void marker(uint8_t m)
{
	outb(MARKER_PORT, m);
}

/* main.c */
NORETURN void guest_exit(int failed);

/* console.c: 8250/16550 UART on COM1, polled. */
void serial_init(void);
void put_char(char c);
void put_str(const char *s);
void put_hex(uint64_t v);   /* "0x" + lowercase hex, no leading zeros */
void put_dec(uint64_t v);
void put_bytes_hex(const uint8_t *p, size_t n); /* two hex digits per byte, no separator */
/* Bytes as one line in double quotes: printable ASCII as is, `"` and `\` escaped with `\`,
 * newline, carriage return and tab as \n \r \t, anything else as \xNN. */
void put_quoted(const uint8_t *p, size_t n);

/* lib.c: the few libc functions gcc may emit calls to. */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif
