/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A polling virtio 1.x driver for the MMIO transport (virtio spec 1.2, section 4.2, register
 * layout of version 2 = "modern"), with split virtqueues (section 2.7). No interrupts: the
 * driver notifies through QueueNotify and polls the used ring in memory.
 *
 * Typical use (see rng_selftest() in main.c):
 *
 *	virtio_dev_init(dev)                      reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK
 *	virtq_setup(dev, q, 0, 16)                 queue 0, size min(QueueNumMax, 16), QueueReady
 *	virtio_driver_ok(dev)                      DRIVER_OK
 *	head = virtq_add_chain(q, bufs, out, in)   device-readable bufs first, then writable ones
 *	virtq_notify(q)
 *	virtq_wait_used(q, &len, spins)            -> head of the chain the device used
 */
#ifndef TEST_GUEST_VIRTIO_H
#define TEST_GUEST_VIRTIO_H

#include "guest.h"

/* MMIO registers (spec 4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */

/* Device status bits (spec 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

/* Feature bits (spec 6). */
#define VIRTIO_F_VERSION_1 32

/* Device ids (spec 5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_VSOCK 19
#define VIRTIO_ID_FS 26

/* Split virtqueue (spec 2.7). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Queue sizes are capped here: the rings live in static storage. */
#define VIRTQ_MAX_SIZE 16

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[VIRTQ_MAX_SIZE];
	uint16_t used_event; /* at ring[size]; unused: VIRTIO_F_EVENT_IDX is not negotiated */
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[VIRTQ_MAX_SIZE];
	uint16_t avail_event;
};

struct virtio_dev {
	uintptr_t base;
	uint64_t size;
	uint32_t irq;
	uint32_t version;
	uint32_t device_id;
	uint32_t vendor_id;
	uint64_t device_features;
	uint64_t driver_features;
};

struct virtq {
	/* The three areas, with the alignment spec 2.7 requires (16, 2 and 4 bytes). */
	struct virtq_desc desc[VIRTQ_MAX_SIZE] __attribute__((aligned(16)));
	struct virtq_avail avail __attribute__((aligned(2)));
	struct virtq_used used __attribute__((aligned(4)));

	struct virtio_dev *dev;
	uint16_t index;     /* queue number within the device */
	uint16_t size;      /* QueueNum written to the device */
	uint16_t free_head; /* free descriptors form a list through .next */
	uint16_t num_free;
	uint16_t avail_idx; /* our copy of avail.idx */
	uint16_t last_used; /* used.idx we have consumed up to */
};

/* A buffer for virtq_add_chain(); physical == virtual (identity mapping). */
struct virtq_buf {
	void *addr;
	uint32_t len;
};

/* Results of virtio_dev_init(). */
#define VIRTIO_INIT_OK 0
#define VIRTIO_INIT_NO_DEVICE 1 /* DeviceID 0: transport without a device, skip it */
#define VIRTIO_INIT_FAILED (-1) /* reported on the serial port */

static inline uint32_t virtio_read(const struct virtio_dev *d, uint32_t reg)
{
	return mmio_read32(d->base + reg);
}

static inline void virtio_write(const struct virtio_dev *d, uint32_t reg, uint32_t v)
{
	mmio_write32(d->base + reg, v);
}

/*
 * Checks magic and version, reads the ids, resets the device and negotiates features up to
 * FEATURES_OK. `wanted` is the driver's feature set; VIRTIO_F_VERSION_1 is always required.
 * driver_features = device_features & (wanted | VERSION_1).
 */
int virtio_dev_init(struct virtio_dev *d, uint64_t wanted);

/* Sets DRIVER_OK (after all virtq_setup() calls). */
void virtio_driver_ok(struct virtio_dev *d);

/* Marks the device FAILED (spec 3.1.1 step 8 on an unrecoverable error). */
void virtio_fail(struct virtio_dev *d);

/* Reads a 32-bit word of device config space, retried until ConfigGeneration is stable. */
uint32_t virtio_config_read32(const struct virtio_dev *d, uint32_t offset);

/*
 * Sets up queue `index` with size min(QueueNumMax, max_size, VIRTQ_MAX_SIZE) (spec 4.2.3.2).
 * Returns the size, or 0 if the queue does not exist or is already live (reported).
 */
unsigned int virtq_setup(struct virtio_dev *d, struct virtq *q, uint16_t index,
			 unsigned int max_size);

/* Storage for queues: a bump allocator over a static pool (NULL when exhausted). */
struct virtq *virtq_alloc(void);

/*
 * Makes `out` device-readable buffers followed by `in` device-writable ones into one
 * descriptor chain and publishes it in the available ring (does not notify). Returns the
 * chain's head descriptor, or -1 if there are not enough free descriptors.
 */
int virtq_add_chain(struct virtq *q, const struct virtq_buf *bufs, unsigned int out,
		    unsigned int in);

/* Notifies the device of new available buffers unless it asked not to be (NO_NOTIFY). */
void virtq_notify(struct virtq *q);

/*
 * Takes one entry off the used ring if there is one: returns the head of the used chain,
 * stores the number of bytes the device wrote in *len and frees the chain's descriptors.
 * Returns -1 if the used ring is empty, -2 if the device returned a bad id (reported).
 */
int virtq_get_used(struct virtq *q, uint32_t *len);

/* virtq_get_used(), polled up to `spins` times. Returns -1 on timeout or a bad entry. */
int virtq_wait_used(struct virtq *q, uint32_t *len, unsigned long spins);

#endif
