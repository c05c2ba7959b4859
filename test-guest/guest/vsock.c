/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A polling virtio-vsock driver (virtio 1.2 §5.10) for one stream connection from this guest
 * to a host port, written from the spec:
 *
 * - queues: rx (0) holds device-writable buffers, each a chain of a header and a payload
 *   buffer; tx (1) carries our packets, a header descriptor and, for RW, a payload one;
 *   event (2) is filled with buffers for `struct virtio_vsock_event` and otherwise unused;
 * - connection: REQUEST -> RESPONSE (or RST: refused), RW both ways, SHUTDOWN with both
 *   flags, then the peer's RST ends it (§5.10.6.6); a packet for no connection of ours is
 *   answered with RST;
 * - credit (§5.10.6.3): every packet we send carries our buf_alloc (BUF_ALLOC, the size of
 *   our receive buffer) and fwd_cnt (bytes the "application" has taken out of it); we never
 *   send more than the peer's buf_alloc - (tx_cnt - peer fwd_cnt), asking with
 *   CREDIT_REQUEST when it is 0; a CREDIT_REQUEST gets a CREDIT_UPDATE; a peer that sends
 *   more than we have room for is reset.
 */
#include "cmdline.h"
#include "drivers.h"

#define VSOCK_HOST_CID 2
#define VSOCK_LOCAL_PORT 1234
#define VSOCK_TYPE_STREAM 1

#define VSOCK_OP_REQUEST 1
#define VSOCK_OP_RESPONSE 2
#define VSOCK_OP_RST 3
#define VSOCK_OP_SHUTDOWN 4
#define VSOCK_OP_RW 5
#define VSOCK_OP_CREDIT_UPDATE 6
#define VSOCK_OP_CREDIT_REQUEST 7

#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2

/* struct virtio_vsock_hdr: little endian, packed. */
struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));

_Static_assert(sizeof(struct vsock_hdr) == 44, "struct virtio_vsock_hdr is 44 bytes");

/* struct virtio_vsock_event. */
struct vsock_event {
	uint32_t id;
};

#define RX_BUFFERS 4
#define RX_DATA 512
#define EVENT_BUFFERS 2
/* Our receive buffer, advertised as buf_alloc. */
#define BUF_ALLOC 1024
/* The longest reply line we keep (and print); the rest of a longer one is read and dropped. */
#define LINE_MAX 4096
/* The largest payload we put in one packet. */
#define TX_MAX 4096
/* At most this many packets while waiting for one thing (a chatty peer cannot keep us). */
#define WAIT_PACKETS 256

/* The line the guest sends. */
static const char payload[] = "ping from the test guest\n";

enum conn_state {
	CLOSED,
	CONNECTING,
	ESTABLISHED,
	CLOSING, /* we sent SHUTDOWN, waiting for the peer's RST */
};

struct conn {
	struct virtq *rx, *tx, *event;
	uint64_t cid;
	uint32_t local_port, peer_port;
	enum conn_state state;
	int failed;             /* a reported failure: stop */
	uint32_t peer_shutdown; /* SHUTDOWN flags the peer sent */

	/* Sending: the peer's receive buffer as it last told us, and what we sent in all. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;

	/* Receiving: rx_cnt - fwd_cnt bytes wait in buf[0..]. */
	uint32_t rx_cnt, fwd_cnt;
	uint32_t fwd_cnt_sent; /* fwd_cnt as of our last packet */
	uint32_t credit_updates; /* CREDIT_UPDATEs we sent */
	uint8_t buf[BUF_ALLOC];
};

static struct conn conn;
static uint8_t line[LINE_MAX];
static struct vsock_hdr tx_hdr;
static struct vsock_hdr rx_hdr[RX_BUFFERS];
static uint8_t rx_data[RX_BUFFERS][RX_DATA];
static uint8_t rx_slot_of_head[VIRTQ_MAX_SIZE];
static struct vsock_event events[EVENT_BUFFERS];

static void say(const char *s)
{
	put_str("test-guest: vsock: ");
	put_str(s);
}

static uint32_t buffered(const struct conn *c)
{
	return c->rx_cnt - c->fwd_cnt;
}

/* Bytes the peer has room for. */
static uint32_t peer_free(const struct conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* Sends one packet from our `src_port` to host port `dst_port` and waits until the device
 * has taken it. Returns 0, or 1 (reported, c->failed set). */
static int send_packet(struct conn *c, uint32_t src_port, uint32_t dst_port, uint16_t op,
		       uint32_t flags, const void *data, uint32_t len)
{
	struct virtq_buf bufs[2];
	uint32_t used;
	int head, id;

	tx_hdr.src_cid = c->cid;
	tx_hdr.dst_cid = VSOCK_HOST_CID;
	tx_hdr.src_port = src_port;
	tx_hdr.dst_port = dst_port;
	tx_hdr.len = len;
	tx_hdr.type = VSOCK_TYPE_STREAM;
	tx_hdr.op = op;
	tx_hdr.flags = flags;
	tx_hdr.buf_alloc = BUF_ALLOC;
	tx_hdr.fwd_cnt = c->fwd_cnt;
	bufs[0].addr = &tx_hdr;
	bufs[0].len = sizeof(tx_hdr);
	bufs[1].addr = (void *)data;
	bufs[1].len = len;

	head = virtq_add_chain(c->tx, bufs, len ? 2 : 1, 0);
	if (head < 0) {
		say("tx: no free descriptors\n");
		c->failed = 1;
		return 1;
	}
	virtq_notify(c->tx);
	id = virtq_wait_used(c->tx, &used, USED_RING_SPINS);
	if (id != head) {
		say(id < 0 ? "tx: packet not taken (timeout)\n" : "tx: another chain was used\n");
		c->failed = 1;
		return 1;
	}
	c->fwd_cnt_sent = c->fwd_cnt;
	if (op == VSOCK_OP_RW)
		c->tx_cnt += len;
	if (op == VSOCK_OP_CREDIT_UPDATE)
		c->credit_updates++;
	return 0;
}

static int send_op(struct conn *c, uint16_t op, uint32_t flags)
{
	return send_packet(c, c->local_port, c->peer_port, op, flags, NULL, 0);
}

static int post_rx(struct conn *c, unsigned int slot)
{
	struct virtq_buf bufs[2];
	int head;

	bufs[0].addr = &rx_hdr[slot];
	bufs[0].len = sizeof(rx_hdr[slot]);
	bufs[1].addr = rx_data[slot];
	bufs[1].len = RX_DATA;
	head = virtq_add_chain(c->rx, bufs, 0, 2);
	if (head < 0) {
		say("rx: no free descriptors\n");
		c->failed = 1;
		return 1;
	}
	rx_slot_of_head[head] = (uint8_t)slot;
	return 0;
}

static void protocol_error(struct conn *c, const struct vsock_hdr *h, const char *why)
{
	put_str("test-guest: vsock: ");
	put_str(why);
	put_str(" (op ");
	put_dec(h->op);
	put_str(", len ");
	put_dec(h->len);
	put_str("): resetting the connection\n");
	if (c->state != CLOSED)
		send_op(c, VSOCK_OP_RST, 0);
	c->state = CLOSED;
	c->failed = 1;
}

static void update_credit(struct conn *c, const struct vsock_hdr *h)
{
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
}

/* One packet the device delivered: header `h`, payload `data` (h->len bytes). */
static void handle(struct conn *c, const struct vsock_hdr *h, const uint8_t *data)
{
	if (h->dst_cid != c->cid || h->src_cid != VSOCK_HOST_CID || h->type != VSOCK_TYPE_STREAM) {
		/* §5.10.6.4: not a stream packet for us: dropped. */
		say("dropped a packet from cid ");
		put_dec(h->src_cid);
		put_str(" to cid ");
		put_dec(h->dst_cid);
		put_str(" type ");
		put_dec(h->type);
		put_str("\n");
		return;
	}
	if (h->dst_port != c->local_port || h->src_port != c->peer_port || c->state == CLOSED) {
		/* No socket for it: reset (but never answer an RST). */
		say("packet op ");
		put_dec(h->op);
		put_str(" from host port ");
		put_dec(h->src_port);
		put_str(" to port ");
		put_dec(h->dst_port);
		put_str(" has no connection\n");
		if (h->op != VSOCK_OP_RST)
			send_packet(c, h->dst_port, h->src_port, VSOCK_OP_RST, 0, NULL, 0);
		return;
	}
	switch (h->op) {
	case VSOCK_OP_RESPONSE:
		if (c->state != CONNECTING) {
			protocol_error(c, h, "RESPONSE on a connected stream");
			return;
		}
		update_credit(c, h);
		c->state = ESTABLISHED;
		return;
	case VSOCK_OP_RST:
		c->state = CLOSED;
		return;
	case VSOCK_OP_RW:
		update_credit(c, h);
		if (c->state == CLOSING)
			return; /* sent before our SHUTDOWN reached the peer; we receive no more */
		if (c->state != ESTABLISHED || (c->peer_shutdown & VSOCK_SHUTDOWN_SEND)) {
			protocol_error(c, h, "data on a stream that is not open for it");
			return;
		}
		if (h->len > BUF_ALLOC - buffered(c)) {
			protocol_error(c, h, "credit violation: more data than buf_alloc allows");
			return;
		}
		memcpy(c->buf + buffered(c), data, h->len);
		c->rx_cnt += h->len;
		return;
	case VSOCK_OP_CREDIT_UPDATE:
		update_credit(c, h);
		return;
	case VSOCK_OP_CREDIT_REQUEST:
		update_credit(c, h);
		send_op(c, VSOCK_OP_CREDIT_UPDATE, 0);
		return;
	case VSOCK_OP_SHUTDOWN:
		update_credit(c, h);
		c->peer_shutdown |= h->flags & (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
		return;
	default:
		protocol_error(c, h, "unexpected operation");
		return;
	}
}

/* Waits for one rx packet, handles it and gives its buffer back. Returns 0 when a packet was
 * handled, 1 on a timeout or a bad used entry (reported). */
static int receive(struct conn *c)
{
	struct vsock_hdr h;
	unsigned int slot;
	uint32_t len;
	int id;

	id = virtq_wait_used(c->rx, &len, USED_RING_SPINS);
	if (id < 0)
		return 1;
	slot = rx_slot_of_head[id];
	h = rx_hdr[slot];
	if (len < sizeof(h) || h.len > RX_DATA || len != sizeof(h) + h.len) {
		say("rx: used length ");
		put_dec(len);
		put_str(" does not match a header with len ");
		put_dec(h.len);
		put_str("\n");
		c->failed = 1;
		return 1;
	}
	handle(c, &h, rx_data[slot]);
	if (post_rx(c, slot))
		return 1;
	virtq_notify(c->rx);
	return 0;
}

/* Handles packets until done(c); returns 0 then, or 1 when the connection failed or nothing
 * came (reported with `what`). */
static int wait_for(struct conn *c, int (*done)(const struct conn *), const char *what)
{
	for (unsigned int n = 0; n < WAIT_PACKETS; n++) {
		if (done(c))
			return 0;
		if (c->failed)
			return 1;
		if (receive(c)) {
			if (!c->failed) {
				say("timed out waiting for ");
				put_str(what);
				put_str("\n");
				c->failed = 1;
			}
			return 1;
		}
	}
	if (done(c))
		return 0;
	say("too many packets while waiting for ");
	put_str(what);
	put_str("\n");
	c->failed = 1;
	return 1;
}

static int not_connecting(const struct conn *c)
{
	return c->state != CONNECTING;
}

static int has_credit_or_closed(const struct conn *c)
{
	return peer_free(c) > 0 || c->state != ESTABLISHED;
}

/* A whole line is buffered, or no more data can come. */
static int line_or_end(const struct conn *c)
{
	for (uint32_t i = 0; i < buffered(c); i++)
		if (c->buf[i] == '\n')
			return 1;
	return buffered(c) == BUF_ALLOC || c->state != ESTABLISHED ||
	       (c->peer_shutdown & VSOCK_SHUTDOWN_SEND);
}

static int closed(const struct conn *c)
{
	return c->state == CLOSED;
}

/* Sends `len` bytes as RW packets within the peer's credit. */
static int send_data(struct conn *c, const uint8_t *data, uint32_t len)
{
	while (len) {
		uint32_t n = peer_free(c);

		if (c->state != ESTABLISHED || (c->peer_shutdown & VSOCK_SHUTDOWN_RCV)) {
			say("the host stopped receiving\n");
			return 1;
		}
		if (n == 0) {
			if (send_op(c, VSOCK_OP_CREDIT_REQUEST, 0) ||
			    wait_for(c, has_credit_or_closed, "credit"))
				return 1;
			continue;
		}
		if (n > len)
			n = len;
		if (n > TX_MAX)
			n = TX_MAX;
		if (send_packet(c, c->local_port, c->peer_port, VSOCK_OP_RW, 0, data, n))
			return 1;
		data += n;
		len -= n;
	}
	return 0;
}

/* The application takes `n` bytes out of the receive buffer. */
static int consume(struct conn *c, uint32_t n)
{
	memmove(c->buf, c->buf + n, buffered(c) - n);
	c->fwd_cnt += n;
	/* Tell the peer once it believes less than half our buffer is free. */
	if (c->state == ESTABLISHED && c->rx_cnt - c->fwd_cnt_sent > BUF_ALLOC / 2)
		return send_op(c, VSOCK_OP_CREDIT_UPDATE, 0);
	return 0;
}

/* Fills the rx and event queues. */
static int fill_queues(struct conn *c)
{
	for (unsigned int i = 0; i < RX_BUFFERS; i++)
		if (post_rx(c, i))
			return 1;
	for (unsigned int i = 0; i < EVENT_BUFFERS; i++) {
		struct virtq_buf buf = { &events[i], sizeof(events[i]) };

		if (virtq_add_chain(c->event, &buf, 0, 1) < 0) {
			say("event: no free descriptors\n");
			return 1;
		}
	}
	virtq_notify(c->rx);
	virtq_notify(c->event);
	return 0;
}

/*
 * Reads one line of reply (up to a newline, or whatever came before the host stopped
 * sending) and prints it. A line longer than our receive buffer arrives in pieces: each is
 * taken out of the buffer, which returns credit to the host.
 */
static int read_line(struct conn *c)
{
	uint32_t len = 0, total = 0;
	int newline = 0;

	while (!newline) {
		uint32_t n, keep;

		if (wait_for(c, line_or_end, "the reply"))
			return 1;
		if (c->state == CLOSED) {
			say("the host reset the connection\n");
			return 1;
		}
		for (n = 0; n < buffered(c) && c->buf[n] != '\n'; n++)
			;
		newline = n < buffered(c);
		keep = n < LINE_MAX - len ? n : LINE_MAX - len;
		memcpy(line + len, c->buf, keep);
		len += keep;
		total += n;
		if (consume(c, n + (uint32_t)newline))
			return 1;
		if (!newline && buffered(c) == 0 &&
		    (c->state != ESTABLISHED || (c->peer_shutdown & VSOCK_SHUTDOWN_SEND)))
			break;
	}
	if (total == 0 && !newline) {
		say("the host closed without replying\n");
		return 1;
	}
	say("got ");
	put_quoted(line, len);
	put_str("\n");
	if (total > len) {
		say("(a line of ");
		put_dec(total);
		put_str(" bytes, the first ");
		put_dec(len);
		put_str(" shown)\n");
	}
	return 0;
}

static int talk(struct conn *c, uint32_t port)
{
	c->local_port = VSOCK_LOCAL_PORT;
	c->peer_port = port;
	c->state = CONNECTING;
	say("connecting from port ");
	put_dec(c->local_port);
	put_str(" to host port ");
	put_dec(port);
	put_str("\n");
	if (send_op(c, VSOCK_OP_REQUEST, 0) || wait_for(c, not_connecting, "RESPONSE"))
		return 1;
	if (c->state != ESTABLISHED) {
		say("connection refused (RST)\n");
		return 1;
	}
	say("connected, host buf_alloc ");
	put_dec(c->peer_buf_alloc);
	put_str(" fwd_cnt ");
	put_dec(c->peer_fwd_cnt);
	put_str("\n");

	if (send_data(c, (const uint8_t *)payload, sizeof(payload) - 1))
		return 1;
	say("sent ");
	put_quoted((const uint8_t *)payload, sizeof(payload) - 1);
	put_str("\n");

	if (read_line(c))
		return 1;
	/* Clean close: SHUTDOWN both ways, then the peer's RST (§5.10.6.6). */
	if (c->state == ESTABLISHED) {
		if (send_op(c, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND))
			return 1;
		c->state = CLOSING;
		if (wait_for(c, closed, "the host's RST after SHUTDOWN"))
			return 1;
	}
	say("closed: sent ");
	put_dec(c->tx_cnt);
	put_str(" bytes, received ");
	put_dec(c->rx_cnt);
	put_str(" bytes, forwarded ");
	put_dec(c->fwd_cnt);
	put_str(", ");
	put_dec(c->credit_updates);
	put_str(" credit update(s)\n");
	return 0;
}

int vsock_test(struct virtio_dev *d, struct virtq *q[VSOCK_NUM_QUEUES], const char *cmdline)
{
	struct conn *c = &conn;
	uint32_t port;
	int r;

	memset(c, 0, sizeof(*c));
	c->rx = q[0];
	c->tx = q[1];
	c->event = q[2];
	c->cid = virtio_config_read32(d, 0) | (uint64_t)virtio_config_read32(d, 4) << 32;
	say("guest cid ");
	put_dec(c->cid);
	put_str("\n");
	if (c->cid < 3 || c->cid > 0xfffffffeUL) {
		say("reserved or invalid guest cid\n");
		return 1;
	}
	if (fill_queues(c))
		return 1;

	r = cmdline_get_u32(cmdline, "test_guest.vsock_port", &port);
	if (r < 0)
		return 1;
	if (r == 0) {
		say("no test_guest.vsock_port: no connection\n");
		return 0;
	}
	if (talk(c, port) || c->failed) {
		if (c->state != CLOSED)
			send_op(c, VSOCK_OP_RST, 0);
		return 1;
	}
	return 0;
}
