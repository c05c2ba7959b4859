/* SPDX-License-Identifier: Apache-2.0 */
#ifndef TEST_GUEST_CMDLINE_H
#define TEST_GUEST_CMDLINE_H

#include "guest.h"

/* One `virtio_mmio.device=<size>@<base>:<irq>[:<id>]` entry. */
struct mmio_desc {
	uint64_t size;
	uint64_t base;
	uint32_t irq;
};

/*
 * Finds every virtio_mmio.device= parameter of the command line, parsed as Linux's
 * drivers/virtio/virtio_mmio.c vm_cmdline_set() does: size by memparse() (base 0 number,
 * optional K/M/G/T/P/E suffix), then "@%lli:%u" with an optional ":%d" platform-device id,
 * nothing after it, irq != 0. Parameter names compare with '-' == '_' as Linux's parameq().
 * Stores up to `max` entries in `out` and returns how many were found in total; malformed
 * entries are reported on the serial port and counted in *bad.
 */
int cmdline_virtio_mmio(const char *cmdline, struct mmio_desc *out, int max, int *bad);

/* True if the command line has the bare word or `word=...` parameter `name`. */
int cmdline_has(const char *cmdline, const char *name);

/*
 * The value of the last `name=value` parameter (quotes removed, not NUL-terminated): stores
 * its start and length and returns 1, or returns 0 if there is none.
 */
int cmdline_get(const char *cmdline, const char *name, const char **val, size_t *len);

/*
 * The last `name=<number>` parameter as an unsigned 32-bit number (decimal, or hex with 0x):
 * returns 1 and stores it, 0 if there is none, -1 (reported) if it is not such a number.
 */
int cmdline_get_u32(const char *cmdline, const char *name, uint32_t *out);

#endif
