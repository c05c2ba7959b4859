/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Polled 8250/16550A UART on COM1 (I/O 0x3f8), 115200 8N1, no interrupts.
 *
 * Every port access is a VM exit (8.5 us each under PVM), so when the UART has a 16-byte
 * FIFO we wait for THRE once and then write up to 16 bytes (THRE means the whole transmit
 * FIFO is empty), as Linux's 8250 driver does. Without a FIFO it is one LSR poll per byte.
 */
#include "guest.h"

#define COM1 0x3f8
#define UART_THR 0
#define UART_IER 1
#define UART_DLL 0
#define UART_DLM 1
#define UART_IIR 2
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20

static unsigned int tx_fifo_size = 1;
static unsigned int tx_room;

void serial_init(void)
{
	outb(COM1 + UART_IER, 0x00);
	outb(COM1 + UART_LCR, 0x80);     /* DLAB */
	outb(COM1 + UART_DLL, 0x01);     /* 115200 baud */
	outb(COM1 + UART_DLM, 0x00);
	outb(COM1 + UART_LCR, 0x03);     /* 8N1 */
	outb(COM1 + UART_FCR, 0x07);     /* enable and clear FIFOs */
	outb(COM1 + UART_MCR, 0x03);     /* DTR, RTS; OUT2 off: no interrupts */
	if ((inb(COM1 + UART_IIR) & 0xc0) == 0xc0)
		tx_fifo_size = 16;
	tx_room = 0;
}

void put_char(char c)
{
	if (tx_room == 0) {
		/* Bounded: a missing UART reads 0xff (THRE set); a stuck one must not hang us. */
		for (unsigned int i = 0; i < 100000; i++)
			if (inb(COM1 + UART_LSR) & UART_LSR_THRE)
				break;
		tx_room = tx_fifo_size;
	}
	outb(COM1 + UART_THR, (uint8_t)c);
	tx_room--;
}

void put_str(const char *s)
{
	while (*s) {
		if (*s == '\n')
			put_char('\r');
		put_char(*s++);
	}
}

static const char hex_digits[] = "0123456789abcdef";

void put_hex(uint64_t v)
{
	char buf[16];
	int n = 0;

	do {
		buf[n++] = hex_digits[v & 0xf];
		v >>= 4;
	} while (v);
	put_char('0');
	put_char('x');
	while (n)
		put_char(buf[--n]);
}

void put_dec(uint64_t v)
{
	char buf[20];
	int n = 0;

	do {
		buf[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		put_char(buf[--n]);
}

void put_bytes_hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		put_char(hex_digits[p[i] >> 4]);
		put_char(hex_digits[p[i] & 0xf]);
	}
}

void put_quoted(const uint8_t *p, size_t n)
{
	put_char('"');
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (c == '"' || c == '\\') {
			put_char('\\');
			put_char((char)c);
		} else if (c == '\n') {
			put_str("\\n");
		} else if (c == '\r') {
			put_str("\\r");
		} else if (c == '\t') {
			put_str("\\t");
		} else if (c >= 0x20 && c < 0x7f) {
			put_char((char)c);
		} else {
			put_str("\\x");
			put_char(hex_digits[c >> 4]);
			put_char(hex_digits[c & 0xf]);
		}
	}
	put_char('"');
}
