/* SPDX-License-Identifier: Apache-2.0 */
/* Polling virtio-mmio (version 2) driver with split virtqueues; see virtio.h. */
#include "virtio.h"

#define VIRTQ_POOL_SIZE 16

static struct virtq virtq_pool[VIRTQ_POOL_SIZE] NOINIT;
static unsigned int virtq_pool_used;

static void report(const struct virtio_dev *d, const char *what)
{
	put_str("test-guest: virtio-mmio@");
	put_hex(d->base);
	put_str(" ");
	put_str(what);
}

static void set_status(struct virtio_dev *d, uint32_t bits)
{
	virtio_write(d, VIRTIO_MMIO_STATUS, virtio_read(d, VIRTIO_MMIO_STATUS) | bits);
}

void virtio_fail(struct virtio_dev *d)
{
	set_status(d, VIRTIO_STATUS_FAILED);
}

int virtio_dev_init(struct virtio_dev *d, uint64_t wanted)
{
	uint32_t magic = virtio_read(d, VIRTIO_MMIO_MAGIC_VALUE);
	uint32_t status;
	unsigned int i;

	if (magic != VIRTIO_MMIO_MAGIC) {
		report(d, "bad magic ");
		put_hex(magic);
		put_str("\n");
		return VIRTIO_INIT_FAILED;
	}
	/* MagicValue, Version and DeviceID are at the same offsets in legacy and modern. */
	d->version = virtio_read(d, VIRTIO_MMIO_VERSION);
	if (d->version != 1 && d->version != 2) {
		report(d, "unsupported version ");
		put_dec(d->version);
		put_str("\n");
		return VIRTIO_INIT_FAILED;
	}
	d->device_id = virtio_read(d, VIRTIO_MMIO_DEVICE_ID);
	if (d->device_id == 0) {
		report(d, "no device (id 0), skipped\n");
		return VIRTIO_INIT_NO_DEVICE;
	}
	if (d->version == 1) {
		report(d, "legacy (version 1) transport unsupported\n");
		return VIRTIO_INIT_FAILED;
	}
	d->vendor_id = virtio_read(d, VIRTIO_MMIO_VENDOR_ID);

	/* Spec 3.1.1: reset, then wait until the reset has completed (status reads 0). */
	virtio_write(d, VIRTIO_MMIO_STATUS, 0);
	for (i = 0; i < 1000 && virtio_read(d, VIRTIO_MMIO_STATUS) != 0; i++)
		;
	if (i == 1000) {
		report(d, "does not reset\n");
		return VIRTIO_INIT_FAILED;
	}
	status = VIRTIO_STATUS_ACKNOWLEDGE;
	virtio_write(d, VIRTIO_MMIO_STATUS, status);
	status |= VIRTIO_STATUS_DRIVER;
	virtio_write(d, VIRTIO_MMIO_STATUS, status);

	virtio_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	d->device_features = (uint64_t)virtio_read(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	virtio_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	d->device_features |= virtio_read(d, VIRTIO_MMIO_DEVICE_FEATURES);
	if (!(d->device_features & (1UL << VIRTIO_F_VERSION_1))) {
		report(d, "does not offer VIRTIO_F_VERSION_1, features ");
		put_hex(d->device_features);
		put_str("\n");
		virtio_fail(d);
		return VIRTIO_INIT_FAILED;
	}
	d->driver_features = d->device_features & (wanted | (1UL << VIRTIO_F_VERSION_1));
	virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)d->driver_features);
	virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->driver_features >> 32));

	status |= VIRTIO_STATUS_FEATURES_OK;
	virtio_write(d, VIRTIO_MMIO_STATUS, status);
	if (!(virtio_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
		report(d, "rejected features ");
		put_hex(d->driver_features);
		put_str("\n");
		virtio_fail(d);
		return VIRTIO_INIT_FAILED;
	}
	return VIRTIO_INIT_OK;
}

void virtio_driver_ok(struct virtio_dev *d)
{
	set_status(d, VIRTIO_STATUS_DRIVER_OK);
}

uint32_t virtio_config_read32(const struct virtio_dev *d, uint32_t offset)
{
	uint32_t gen, v;

	do {
		gen = virtio_read(d, VIRTIO_MMIO_CONFIG_GENERATION);
		v = virtio_read(d, VIRTIO_MMIO_CONFIG + offset);
	} while (gen != virtio_read(d, VIRTIO_MMIO_CONFIG_GENERATION));
	return v;
}

struct virtq *virtq_alloc(void)
{
	if (virtq_pool_used == VIRTQ_POOL_SIZE)
		return NULL;
	return &virtq_pool[virtq_pool_used++];
}

unsigned int virtq_setup(struct virtio_dev *d, struct virtq *q, uint16_t index,
			 unsigned int max_size)
{
	unsigned int max, size;
	uintptr_t a;

	virtio_write(d, VIRTIO_MMIO_QUEUE_SEL, index);
	if (virtio_read(d, VIRTIO_MMIO_QUEUE_READY) != 0) {
		report(d, "queue already live\n");
		return 0;
	}
	max = virtio_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (max == 0) {
		report(d, "queue not available\n");
		return 0;
	}
	/* Split queues have power-of-two sizes. */
	size = 1;
	while (size * 2 <= max && size * 2 <= max_size && size * 2 <= VIRTQ_MAX_SIZE)
		size *= 2;

	memset(q, 0, sizeof(*q));
	q->dev = d;
	q->index = index;
	q->size = (uint16_t)size;
	q->num_free = (uint16_t)size;
	for (unsigned int i = 0; i < size; i++)
		q->desc[i].next = (uint16_t)(i + 1);

	virtio_write(d, VIRTIO_MMIO_QUEUE_NUM, size);
	a = (uintptr_t)q->desc;
	virtio_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)a);
	virtio_write(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(a >> 32));
	a = (uintptr_t)&q->avail;
	virtio_write(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)a);
	virtio_write(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(a >> 32));
	a = (uintptr_t)&q->used;
	virtio_write(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)a);
	virtio_write(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(a >> 32));
	virtio_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
	return size;
}

int virtq_add_chain(struct virtq *q, const struct virtq_buf *bufs, unsigned int out,
		    unsigned int in)
{
	unsigned int n = out + in;
	uint16_t head = q->free_head, i = head;

	if (n == 0 || n > q->num_free)
		return -1;
	for (unsigned int k = 0; k < n; k++) {
		struct virtq_desc *d = &q->desc[i];

		d->addr = (uintptr_t)bufs[k].addr;
		d->len = bufs[k].len;
		d->flags = (uint16_t)((k >= out ? VIRTQ_DESC_F_WRITE : 0) |
				      (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		i = d->next;
	}
	q->free_head = i;
	q->num_free = (uint16_t)(q->num_free - n);

	q->avail.ring[q->avail_idx & (q->size - 1)] = head;
	barrier(); /* the ring entry is visible before the index that publishes it */
	q->avail_idx++;
	*(volatile uint16_t *)&q->avail.idx = q->avail_idx;
	return head;
}

void virtq_notify(struct virtq *q)
{
	mb(); /* avail.idx is visible before we read used.flags */
	if (!(*(volatile uint16_t *)&q->used.flags & VIRTQ_USED_F_NO_NOTIFY))
		virtio_write(q->dev, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

int virtq_get_used(struct virtq *q, uint32_t *len)
{
	uint16_t used_idx = *(volatile uint16_t *)&q->used.idx;
	volatile struct virtq_used_elem *e;
	uint32_t id;
	uint16_t tail, count = 1;

	if (used_idx == q->last_used)
		return -1;
	barrier(); /* read the entry after the index (loads are not reordered on x86) */
	e = &q->used.ring[q->last_used & (q->size - 1)];
	id = e->id;
	*len = e->len;
	q->last_used++;
	if (id >= q->size) {
		report(q->dev, "used ring names descriptor ");
		put_dec(id);
		put_str("\n");
		return -2;
	}

	/* Return the chain to the free list. */
	tail = (uint16_t)id;
	while (q->desc[tail].flags & VIRTQ_DESC_F_NEXT) {
		tail = q->desc[tail].next;
		count++;
	}
	q->desc[tail].next = q->free_head;
	q->free_head = (uint16_t)id;
	q->num_free = (uint16_t)(q->num_free + count);
	return (int)id;
}

int virtq_wait_used(struct virtq *q, uint32_t *len, unsigned long spins)
{
	for (unsigned long i = 0; i < spins; i++) {
		int id = virtq_get_used(q, len);

		if (id == -2)
			return -1;
		if (id >= 0) {
			/* We poll, but acknowledge so the device can deassert its interrupt. */
			uint32_t isr = virtio_read(q->dev, VIRTIO_MMIO_INTERRUPT_STATUS);

			if (isr)
				virtio_write(q->dev, VIRTIO_MMIO_INTERRUPT_ACK, isr);
			return id;
		}
	}
	return -1;
}
