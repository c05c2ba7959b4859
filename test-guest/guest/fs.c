/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A polling virtio-fs driver (virtio 1.2 §5.11): FUSE requests on the first request queue,
 * one at a time, each a chain of two device-readable descriptors (fuse_in_header, the
 * arguments) and two device-writable ones (fuse_out_header, the reply arguments), as Linux
 * lays them out. See fuse.h for the protocol.
 */
#include "cmdline.h"
#include "drivers.h"
#include "fuse.h"

#define FS_TAG_SIZE 36       /* virtio_fs_config.tag */
#define FS_NAME_MAX 255      /* a file name, without the NUL */
#define FS_READ_MAX 1024     /* bytes of the file read (and printed) */
#define FS_ARGS_MAX (sizeof(struct fuse_init_in) + FS_NAME_MAX + 1)
#define FS_REPLY_MAX FS_READ_MAX
#define REQUEST_QUEUE 1

struct fuse_session {
	struct virtio_dev *dev;
	struct virtq *q;
	uint64_t unique;
};

static struct fuse_in_header in_header;
static uint8_t in_args[FS_ARGS_MAX];
static struct fuse_out_header out_header;
static uint8_t out_args[FS_REPLY_MAX] __attribute__((aligned(8)));

static void say(const char *s)
{
	put_str("test-guest: fs: ");
	put_str(s);
}

static void put_oct(uint64_t v)
{
	char buf[24];
	int n = 0;

	do {
		buf[n++] = (char)('0' + (v & 7));
		v >>= 3;
	} while (v);
	put_char('0');
	while (n)
		put_char(buf[--n]);
}

/*
 * Sends one request: `args` (`args_len` bytes) then, if `name`, `name_len` bytes of a name
 * and its NUL. Unless the opcode has no reply, waits for it: returns 0 with the reply
 * arguments in out_args (*got bytes), or the FUSE error as a negative errno, or 1 when the
 * exchange itself failed (reported).
 */
static int fuse_call(struct fuse_session *s, uint32_t opcode, uint64_t nodeid, const void *args,
		     uint32_t args_len, const char *name, size_t name_len, uint32_t reply_len,
		     uint32_t *got)
{
	struct virtq_buf bufs[4];
	unsigned int out = 1, in = 0;
	uint32_t total = args_len, used;
	int no_reply = opcode == FUSE_FORGET;
	int head, id;

	if (name)
		total += (uint32_t)name_len + 1;
	if (total > sizeof(in_args) || reply_len > sizeof(out_args)) {
		say("request or reply too large\n");
		return 1;
	}
	memcpy(in_args, args, args_len);
	if (name) {
		memcpy(in_args + args_len, name, name_len);
		in_args[args_len + name_len] = 0;
	}
	memset(&in_header, 0, sizeof(in_header));
	in_header.len = (uint32_t)sizeof(in_header) + total;
	in_header.opcode = opcode;
	in_header.unique = ++s->unique;
	in_header.nodeid = nodeid;

	bufs[0].addr = &in_header;
	bufs[0].len = sizeof(in_header);
	if (total) {
		bufs[out].addr = in_args;
		bufs[out].len = total;
		out++;
	}
	if (!no_reply) {
		memset(&out_header, 0, sizeof(out_header));
		bufs[out].addr = &out_header;
		bufs[out].len = sizeof(out_header);
		in++;
		if (reply_len) {
			bufs[out + in].addr = out_args;
			bufs[out + in].len = reply_len;
			in++;
		}
	}
	head = virtq_add_chain(s->q, bufs, out, in);
	if (head < 0) {
		say("no free descriptors\n");
		return 1;
	}
	virtq_notify(s->q);
	id = virtq_wait_used(s->q, &used, USED_RING_SPINS);
	if (id != head) {
		say(id < 0 ? "no reply (timeout)\n" : "another chain was used\n");
		return 1;
	}
	if (no_reply) {
		if (used != 0) {
			say("a reply to a request that has none\n");
			return 1;
		}
		return 0;
	}
	if (used < sizeof(out_header) || out_header.len != used ||
	    out_header.unique != in_header.unique || out_header.error > 0 ||
	    out_header.error < -4095 || (out_header.error && used != sizeof(out_header))) {
		say("bad reply: used length ");
		put_dec(used);
		put_str(", header len ");
		put_dec(out_header.len);
		put_str(" error ");
		put_dec((uint64_t)(int64_t)-out_header.error);
		put_str(" unique ");
		put_dec(out_header.unique);
		put_str(" for ");
		put_dec(in_header.unique);
		put_str("\n");
		return 1;
	}
	*got = used - (uint32_t)sizeof(out_header);
	return out_header.error;
}

static const char *errno_name(int e)
{
	switch (e) {
	case 1: return "EPERM";
	case 2: return "ENOENT";
	case 5: return "EIO";
	case 9: return "EBADF";
	case 13: return "EACCES";
	case 20: return "ENOTDIR";
	case 21: return "EISDIR";
	case 22: return "EINVAL";
	case 30: return "EROFS";
	case 36: return "ENAMETOOLONG";
	case 38: return "ENOSYS";
	case 71: return "EPROTO";
	default: return NULL;
	}
}

/* Prints "<what> failed: error N (NAME)" for a negative errno; returns 1. */
static int failed(const char *what, int r)
{
	if (r < 0) {
		const char *name = errno_name(-r);

		say(what);
		put_str(" failed: error ");
		put_dec((uint64_t)-r);
		if (name) {
			put_str(" (");
			put_str(name);
			put_str(")");
		}
		put_str("\n");
	}
	return 1;
}

static int fuse_init(struct fuse_session *s)
{
	struct fuse_init_in in;
	struct fuse_init_out init;
	uint32_t got;
	int r;

	/* Minimal: no optional feature (flags 0), no readahead. */
	memset(&in, 0, sizeof(in));
	in.major = FUSE_KERNEL_VERSION;
	in.minor = FUSE_KERNEL_MINOR_VERSION;
	r = fuse_call(s, FUSE_INIT, 0, &in, sizeof(in), NULL, 0, sizeof(init), &got);
	if (r)
		return failed("FUSE_INIT", r);
	memset(&init, 0, sizeof(init));
	memcpy(&init, out_args, got < sizeof(init) ? got : sizeof(init));
	/* Since 7.23 the reply is the whole struct. */
	if (got < 24 || init.major != FUSE_KERNEL_VERSION) {
		say("FUSE_INIT: unusable reply of ");
		put_dec(got);
		put_str(" bytes, major ");
		put_dec(init.major);
		put_str("\n");
		return 1;
	}
	say("FUSE_INIT: server speaks 7.");
	put_dec(init.minor);
	put_str(", max_write ");
	put_dec(init.max_write);
	put_str("\n");
	return 0;
}

static int read_file(struct fuse_session *s, const char *name, size_t name_len)
{
	struct fuse_entry_out entry;
	struct fuse_open_in open_in;
	struct fuse_open_out open_out;
	struct fuse_read_in read_in;
	struct fuse_release_in release_in;
	struct fuse_forget_in forget_in;
	uint32_t got, want;
	uint64_t node;
	int r, bad = 0;

	say("lookup ");
	put_quoted((const uint8_t *)name, name_len);
	if (name_len == 0 || name_len > FS_NAME_MAX) {
		put_str(": bad name length\n");
		return 1;
	}
	put_str("\n");
	r = fuse_call(s, FUSE_LOOKUP, FUSE_ROOT_ID, NULL, 0, name, name_len, sizeof(entry), &got);
	if (r)
		return failed("FUSE_LOOKUP", r);
	if (got != sizeof(entry)) {
		say("FUSE_LOOKUP: reply of ");
		put_dec(got);
		put_str(" bytes\n");
		return 1;
	}
	memcpy(&entry, out_args, sizeof(entry));
	node = entry.nodeid;
	say("node ");
	put_dec(node);
	put_str(", inode ");
	put_dec(entry.attr.ino);
	put_str(", mode ");
	put_oct(entry.attr.mode);
	put_str(", size ");
	put_dec(entry.attr.size);
	put_str("\n");
	if ((entry.attr.mode & FUSE_S_IFMT) != FUSE_S_IFREG) {
		say("not a regular file\n");
		bad = 1;
		goto forget;
	}

	memset(&open_in, 0, sizeof(open_in));
	open_in.flags = FUSE_O_RDONLY;
	r = fuse_call(s, FUSE_OPEN, node, &open_in, sizeof(open_in), NULL, 0, sizeof(open_out),
		      &got);
	if (r || got != sizeof(open_out)) {
		if (!r) {
			say("FUSE_OPEN: reply of ");
			put_dec(got);
			put_str(" bytes\n");
		}
		bad = failed("FUSE_OPEN", r);
		goto forget;
	}
	memcpy(&open_out, out_args, sizeof(open_out));

	want = entry.attr.size < FS_READ_MAX ? (uint32_t)entry.attr.size : FS_READ_MAX;
	memset(&read_in, 0, sizeof(read_in));
	read_in.fh = open_out.fh;
	read_in.offset = 0;
	read_in.size = FS_READ_MAX;
	read_in.flags = FUSE_O_RDONLY;
	r = fuse_call(s, FUSE_READ, node, &read_in, sizeof(read_in), NULL, 0, FS_READ_MAX, &got);
	if (r) {
		bad = failed("FUSE_READ", r);
	} else {
		say("read ");
		put_quoted(out_args, got);
		put_str("\n");
		if (got != want) {
			say("read ");
			put_dec(got);
			put_str(" bytes, the file has ");
			put_dec(entry.attr.size);
			put_str("\n");
			bad = 1;
		} else if (entry.attr.size > FS_READ_MAX) {
			say("(the first ");
			put_dec(FS_READ_MAX);
			put_str(" bytes)\n");
		}
	}

	memset(&release_in, 0, sizeof(release_in));
	release_in.fh = open_out.fh;
	release_in.flags = FUSE_O_RDONLY;
	r = fuse_call(s, FUSE_RELEASE, node, &release_in, sizeof(release_in), NULL, 0, 0, &got);
	if (r)
		bad = failed("FUSE_RELEASE", r);
forget:
	/* Drop the lookup's reference (no reply). */
	forget_in.nlookup = 1;
	if (fuse_call(s, FUSE_FORGET, node, &forget_in, sizeof(forget_in), NULL, 0, 0, &got))
		bad = 1;
	return bad;
}

int fs_test(struct virtio_dev *d, struct virtq *q[FS_NUM_QUEUES], const char *cmdline)
{
	struct fuse_session s = { d, q[REQUEST_QUEUE], 0 };
	uint32_t words[FS_TAG_SIZE / 4];
	const char *tag = (const char *)words, *name;
	size_t tag_len = 0, name_len;

	for (unsigned int i = 0; i < ARRAY_SIZE(words); i++)
		words[i] = virtio_config_read32(d, i * 4);
	while (tag_len < FS_TAG_SIZE && tag[tag_len])
		tag_len++;
	say("tag ");
	put_quoted((const uint8_t *)tag, tag_len);
	put_str(", ");
	put_dec(virtio_config_read32(d, FS_TAG_SIZE));
	put_str(" request queue(s)\n");
	if (tag_len == 0) {
		say("empty tag\n");
		return 1;
	}

	if (fuse_init(&s))
		return 1;
	if (!cmdline_get(cmdline, "test_guest.fs_file", &name, &name_len)) {
		say("no test_guest.fs_file: nothing to read\n");
		return 0;
	}
	return read_file(&s, name, name_len);
}
