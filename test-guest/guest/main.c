/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The test guest's main program: reports faults, reads the command line, probes every
 * virtio-mmio device on it, runs a data-path self test on virtio-rng devices and exits
 * through the exit port. The protocol (markers, output lines, exit codes) is documented in
 * ../src/lib.rs.
 */
#include "guest.h"
#include "cmdline.h"
#include "drivers.h"
#include "virtio.h"

#define XEN_HVM_START_MAGIC 0x336ec578

/* xen/include/public/arch-x86/hvm/start_info.h */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;   /* version >= 1 */
	uint32_t memmap_entries; /* version >= 1 */
	uint32_t reserved;
};

#define MAX_DEVICES 32
#define IDENTITY_MAPPED_END 0x100000000UL
#define MAX_QUEUES 3

struct idt_entry {
	uint16_t offset_low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset_mid;
	uint32_t offset_high;
	uint32_t zero;
} __attribute__((packed));

struct table_desc {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

extern const uint64_t isr_table[32];
NORETURN void triple_fault(void);
NORETURN void fault_handler(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2);
int guest_main(const struct hvm_start_info *si);

static struct idt_entry idt[32];
static struct virtio_dev devices[MAX_DEVICES];
static const char *cmdline = "";
static int use_exit_port = 1;
static int in_fault;

static void idt_init(void)
{
	struct table_desc desc;

	for (unsigned int i = 0; i < ARRAY_SIZE(idt); i++) {
		uint64_t off = isr_table[i];

		idt[i].offset_low = (uint16_t)off;
		idt[i].selector = 0x08;
		idt[i].ist = 0;
		idt[i].type_attr = 0x8e; /* present, DPL 0, 64-bit interrupt gate */
		idt[i].offset_mid = (uint16_t)(off >> 16);
		idt[i].offset_high = (uint32_t)(off >> 32);
		idt[i].zero = 0;
	}
	desc.limit = sizeof(idt) - 1;
	desc.base = (uintptr_t)idt;
	__asm__ volatile("lidt %0" : : "m"(desc));
}

NORETURN void guest_exit(int failed)
{
	if (failed) {
		put_str("test-guest: exit failure\n");
	} else {
		put_str("test-guest: exit success\n");
		marker(MARKER_EXIT_OK);
	}
	if (use_exit_port)
		outb(EXIT_PORT, failed ? EXIT_FAILURE : EXIT_SUCCESS);
	triple_fault();
}

NORETURN void fault_handler(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2)
{
	if (in_fault++)
		triple_fault(); /* faulted while reporting a fault */
	put_str("test-guest: fault vector ");
	put_dec(vector);
	put_str(" rip ");
	put_hex(rip);
	put_str(" error ");
	put_hex(error);
	put_str(" cr2 ");
	put_hex(cr2);
	put_str("\n");
	guest_exit(1);
}

/* Self test of the data path on a virtio-rng device (one queue, device-writable buffers). */
static int rng_selftest(struct virtq *q)
{
	static uint8_t buf[64];
	struct virtq_buf bufs[2];
	int failed = 0;

	/* Request 0: one chain of two descriptors; request 1: one descriptor. */
	for (unsigned int r = 0; r < 2; r++) {
		unsigned int nbufs = r == 0 ? 2 : 1;
		uint32_t total = 0, len = 0;
		int head, id;

		memset(buf, 0, sizeof(buf));
		bufs[0].addr = buf;
		bufs[0].len = r == 0 ? 16 : 32;
		bufs[1].addr = buf + 16;
		bufs[1].len = 16;
		for (unsigned int i = 0; i < nbufs; i++)
			total += bufs[i].len;

		head = virtq_add_chain(q, bufs, 0, nbufs);
		if (head < 0) {
			put_str("test-guest: virtio-rng: no free descriptors\n");
			return 1;
		}
		virtq_notify(q);
		id = virtq_wait_used(q, &len, USED_RING_SPINS);
		if (id < 0) {
			put_str("test-guest: virtio-rng: no used buffer (timeout)\n");
			return 1;
		}
		put_str("test-guest: virtio-rng: request ");
		put_dec(r);
		put_str(": ");
		put_dec(len);
		put_str(" random bytes in ");
		put_dec(nbufs);
		put_str(" descriptor(s): ");
		put_bytes_hex(buf, len < 8 ? len : 8);
		put_str("\n");
		if (id != head || len == 0 || len > total) {
			put_str("test-guest: virtio-rng: bad used entry id ");
			put_dec((uint64_t)id);
			put_str(" head ");
			put_dec((uint64_t)head);
			put_str("\n");
			failed = 1;
		}
	}
	if (q->num_free != q->size) {
		put_str("test-guest: virtio-rng: descriptors leaked\n");
		failed = 1;
	}
	return failed;
}

static unsigned int num_queues(uint32_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_VSOCK:
		return VSOCK_NUM_QUEUES;
	case VIRTIO_ID_FS:
		return FS_NUM_QUEUES;
	default:
		return 1;
	}
}

_Static_assert(VSOCK_NUM_QUEUES <= MAX_QUEUES && FS_NUM_QUEUES <= MAX_QUEUES, "MAX_QUEUES");

/* Returns 1 on failure. */
static int probe(struct virtio_dev *d, const struct mmio_desc *m)
{
	struct virtq *q[MAX_QUEUES];
	unsigned int nq, qsize = 0;
	uint32_t status;

	d->base = (uintptr_t)m->base;
	d->size = m->size;
	d->irq = m->irq;
	if (m->base >= IDENTITY_MAPPED_END - 0x100 || (m->base & 3)) {
		put_str("test-guest: virtio-mmio@");
		put_hex(m->base);
		put_str(" outside the identity-mapped 4 GiB or misaligned\n");
		return 1;
	}
	switch (virtio_dev_init(d, 0)) {
	case VIRTIO_INIT_OK:
		break;
	case VIRTIO_INIT_NO_DEVICE:
		return 0;
	default:
		return 1;
	}
	nq = num_queues(d->device_id);
	for (unsigned int i = 0; i < nq; i++) {
		unsigned int size;

		q[i] = virtq_alloc();
		size = q[i] ? virtq_setup(d, q[i], (uint16_t)i, VIRTQ_MAX_SIZE) : 0;
		if (!size) {
			virtio_fail(d);
			return 1;
		}
		if (i == 0)
			qsize = size;
	}
	virtio_driver_ok(d);
	status = virtio_read(d, VIRTIO_MMIO_STATUS);
	if (!(status & VIRTIO_STATUS_DRIVER_OK) || (status & VIRTIO_STATUS_NEEDS_RESET)) {
		put_str("test-guest: virtio-mmio@");
		put_hex(d->base);
		put_str(" bad status after DRIVER_OK ");
		put_hex(status);
		put_str("\n");
		return 1;
	}
	put_str("test-guest: virtio-mmio@");
	put_hex(d->base);
	put_str(" id ");
	put_dec(d->device_id);
	put_str(" features ok queue0 size ");
	put_dec(qsize);
	if (nq > 1) {
		put_str(", ");
		put_dec(nq);
		put_str(" queues");
	}
	put_str(" ready\n");

	switch (d->device_id) {
	case VIRTIO_ID_RNG:
		return rng_selftest(q[0]);
	case VIRTIO_ID_VSOCK:
		return vsock_test(d, q, cmdline);
	case VIRTIO_ID_FS:
		return fs_test(d, q, cmdline);
	default:
		return 0;
	}
}

static void divide_error(void)
{
	volatile uint32_t zero = 0;
	uint32_t lo = 1, hi = 0;

	__asm__ volatile("divl %2" : "+a"(lo), "+d"(hi) : "r"(zero));
}

int guest_main(const struct hvm_start_info *si)
{
	struct mmio_desc descs[MAX_DEVICES];
	int n, bad = 0, failures = 0;

	serial_init();
	idt_init();
	put_str("test-guest: hvm_start_info at ");
	put_hex((uintptr_t)si);
	if (si->magic != XEN_HVM_START_MAGIC) {
		put_str(" has bad magic ");
		put_hex(si->magic);
		put_str("\n");
		return 1;
	}
	put_str(" version ");
	put_dec(si->version);
	put_str("\n");
	if (si->cmdline_paddr && si->cmdline_paddr < IDENTITY_MAPPED_END)
		cmdline = (const char *)si->cmdline_paddr;
	put_str("test-guest: cmdline: ");
	put_str(cmdline);
	put_str("\n");

	if (cmdline_has(cmdline, "test_guest.no_exit_port"))
		use_exit_port = 0;
	if (cmdline_has(cmdline, "test_guest.fault"))
		divide_error();

	n = cmdline_virtio_mmio(cmdline, descs, MAX_DEVICES, &bad);
	if (n > MAX_DEVICES) {
		put_str("test-guest: too many virtio-mmio devices\n");
		failures++;
		n = MAX_DEVICES;
	}
	for (int i = 0; i < n; i++)
		failures += probe(&devices[i], &descs[i]);
	marker(MARKER_PROBED);
	put_str("test-guest: ");
	put_dec((uint64_t)n);
	put_str(" virtio-mmio device(s), ");
	put_dec((uint64_t)(failures + bad));
	put_str(" failure(s)\n");
	return failures + bad != 0;
}
