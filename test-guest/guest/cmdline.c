/* SPDX-License-Identifier: Apache-2.0 */
/* Kernel-style command line parsing (see cmdline.h). */
#include "cmdline.h"

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 99;
}

/*
 * Linux's simple_strtoull(): base 0 means "0x" + hex digit -> 16, leading "0" -> 8, else 10.
 * Returns the end of the digits in *end (== s if there were none).
 */
static uint64_t parse_number(const char *s, unsigned int base, const char **end)
{
	uint64_t v = 0;

	if (base == 0) {
		if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && digit_value(s[2]) < 16) {
			base = 16;
			s += 2;
		} else if (s[0] == '0') {
			base = 8;
		} else {
			base = 10;
		}
	} else if (base == 16 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
	}
	while (digit_value(*s) < (int)base) {
		v = v * base + (uint64_t)digit_value(*s);
		s++;
	}
	*end = s;
	return v;
}

/* Linux's memparse(). */
static uint64_t memparse(const char *s, const char **end)
{
	uint64_t v = parse_number(s, 0, end);
	unsigned int shift = 0;

	switch (**end) {
	case 'E': case 'e': shift += 10; /* fall through */
	case 'P': case 'p': shift += 10; /* fall through */
	case 'T': case 't': shift += 10; /* fall through */
	case 'G': case 'g': shift += 10; /* fall through */
	case 'M': case 'm': shift += 10; /* fall through */
	case 'K': case 'k': shift += 10;
		(*end)++;
		break;
	default:
		break;
	}
	return v << shift;
}

/* The subset of the kernel's vsscanf() "%lli" / "%u" / "%d" we need: a signed-or-not integer
 * whose first character must be a digit (after an optional '-' when signed). */
static int scan_int(const char **p, unsigned int base, int is_signed, uint64_t *out)
{
	const char *s = *p, *end;
	int neg = 0;

	while (is_space(*s))
		s++;
	if (is_signed && *s == '-') {
		neg = 1;
		s++;
	}
	if (!is_digit(*s))
		return 0;
	*out = parse_number(s, base, &end);
	if (neg)
		*out = (uint64_t)(-(int64_t)*out);
	*p = end;
	return 1;
}

/* vm_cmdline_set(): "<size>@<base>:<irq>[:<id>]" with `len` characters at `v`. */
static int parse_device(const char *v, size_t len, struct mmio_desc *d)
{
	char buf[96];
	const char *p;
	uint64_t irq, id;

	if (len >= sizeof(buf))
		return 0;
	memcpy(buf, v, len);
	buf[len] = 0;
	d->size = memparse(buf, &p);
	if (*p++ != '@')
		return 0;
	if (!scan_int(&p, 0, 1, &d->base))
		return 0;
	if (*p++ != ':')
		return 0;
	if (!scan_int(&p, 10, 0, &irq))
		return 0;
	if (*p == ':') {
		p++;
		if (!scan_int(&p, 10, 1, &id))
			return 0;
	}
	if (*p != 0 || irq == 0 || irq > 0xffffffffUL)
		return 0;
	d->irq = (uint32_t)irq;
	return 1;
}

/* parameq(): '-' and '_' are the same in parameter names. */
static int param_eq(const char *a, size_t alen, const char *b)
{
	size_t i;

	for (i = 0; i < alen; i++) {
		char x = a[i] == '-' ? '_' : a[i];
		char y = b[i] == '-' ? '_' : b[i];

		if (b[i] == 0 || x != y)
			return 0;
	}
	return b[i] == 0;
}

/*
 * Linux's next_arg(): a word ends at whitespace outside double quotes. Returns the word's
 * name (up to '=') and value (after '=', surrounding quotes removed), or 0 at the end.
 */
static int next_param(const char **cursor, const char **name, size_t *name_len,
		      const char **val, size_t *val_len)
{
	const char *s = *cursor, *start, *eq = NULL;
	int in_quote = 0;

	while (is_space(*s))
		s++;
	if (*s == 0)
		return 0;
	start = s;
	for (; *s && (in_quote || !is_space(*s)); s++) {
		if (*s == '"')
			in_quote = !in_quote;
		else if (*s == '=' && !eq && !in_quote)
			eq = s;
	}
	*cursor = s;
	*name = start;
	if (*start == '"')
		(*name)++;
	if (eq) {
		*name_len = (size_t)(eq - *name);
		*val = eq + 1;
		*val_len = (size_t)(s - *val);
		if (*val_len >= 2 && (*val)[0] == '"' && (*val)[*val_len - 1] == '"') {
			(*val)++;
			*val_len -= 2;
		}
	} else {
		*name_len = (size_t)(s - *name);
		if (*name_len && (*name)[*name_len - 1] == '"')
			(*name_len)--;
		*val = s;
		*val_len = 0;
	}
	return 1;
}

int cmdline_virtio_mmio(const char *cmdline, struct mmio_desc *out, int max, int *bad)
{
	const char *cur = cmdline, *name, *val;
	size_t name_len, val_len;
	int found = 0;

	while (next_param(&cur, &name, &name_len, &val, &val_len)) {
		struct mmio_desc d;

		if (!param_eq(name, name_len, "virtio_mmio.device"))
			continue;
		if (!parse_device(val, val_len, &d)) {
			put_str("test-guest: malformed virtio_mmio.device=");
			for (size_t i = 0; i < val_len; i++)
				put_char(val[i]);
			put_str("\n");
			(*bad)++;
			continue;
		}
		if (found < max)
			out[found] = d;
		found++;
	}
	return found;
}

int cmdline_has(const char *cmdline, const char *want)
{
	const char *cur = cmdline, *name, *val;
	size_t name_len, val_len;

	while (next_param(&cur, &name, &name_len, &val, &val_len))
		if (param_eq(name, name_len, want))
			return 1;
	return 0;
}

int cmdline_get(const char *cmdline, const char *want, const char **val, size_t *len)
{
	const char *cur = cmdline, *name, *v;
	size_t name_len, v_len;
	int found = 0;

	while (next_param(&cur, &name, &name_len, &v, &v_len)) {
		/* A bare word has no value: `name` alone is not `name=`. */
		if (param_eq(name, name_len, want) && name[name_len] == '=') {
			*val = v;
			*len = v_len;
			found = 1;
		}
	}
	return found;
}

int cmdline_get_u32(const char *cmdline, const char *want, uint32_t *out)
{
	const char *val, *end;
	size_t len;
	uint64_t v;

	if (!cmdline_get(cmdline, want, &val, &len))
		return 0;
	/* Digits only (base 10, or 16 after 0x), the whole value, at most 32 bits. */
	if (len == 0 || len > 10 || !is_digit(val[0]))
		goto bad;
	if (len > 2 && val[0] == '0' && (val[1] == 'x' || val[1] == 'X'))
		v = parse_number(val, 16, &end);
	else
		v = parse_number(val, 10, &end);
	if (end != val + len || v > 0xffffffffUL)
		goto bad;
	*out = (uint32_t)v;
	return 1;
bad:
	put_str("test-guest: ");
	put_str(want);
	put_str("=");
	for (size_t i = 0; i < len; i++)
		put_char(val[i]);
	put_str(": not a 32-bit number\n");
	return -1;
}
