/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device self tests main.c runs once a device is live (DRIVER_OK): each moves real data
 * through its device by polling and returns 0 on success, 1 on failure (reported).
 */
#ifndef TEST_GUEST_DRIVERS_H
#define TEST_GUEST_DRIVERS_H

#include "guest.h"
#include "virtio.h"

/*
 * How often to look at a used ring before giving up: ~5 instructions each, so about 15 s
 * under PVM's emulator, well under a second with hardware virtualization or TCG.
 */
#define USED_RING_SPINS 5000000UL

/* Queues of each device type this guest drives (1 for any other device). */
#define VSOCK_NUM_QUEUES 3 /* rx, tx, event */
#define FS_NUM_QUEUES 2    /* hiprio, one request queue */

/*
 * vsock.c: with `test_guest.vsock_port=P` on `cmdline`, a stream from this guest's port
 * VSOCK_LOCAL_PORT to host (CID 2) port P: REQUEST, one line sent, one line of reply read
 * and printed, clean SHUTDOWN. Without it, only the rx and event queues are filled.
 * `q` are the rx, tx and event queues, live.
 */
int vsock_test(struct virtio_dev *d, struct virtq *q[VSOCK_NUM_QUEUES], const char *cmdline);

/*
 * fs.c: FUSE_INIT on the request queue; with `test_guest.fs_file=NAME`, LOOKUP of NAME in
 * the share's root, OPEN, READ (printed), RELEASE and FORGET. `q` are the hiprio and request
 * queues, live.
 */
int fs_test(struct virtio_dev *d, struct virtq *q[FS_NUM_QUEUES], const char *cmdline);

#endif
