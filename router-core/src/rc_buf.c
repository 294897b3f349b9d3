/*
 * Growable byte buffer. Kept deliberately tiny: the codecs above it (Go-compatible JSON, the
 * MOR-RPC messages) append into it and reuse it across chunks, so the only interesting parts
 * are the growth policy and the always-present trailing NUL.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <router-core/rc_buf.h>

void rc_buf_init(struct rc_buf *b)
{
	b->ptr = NULL;
	b->len = 0;
	b->cap = 0;
}

void rc_buf_release(struct rc_buf *b)
{
	if (!b)
		return;
	free(b->ptr);
	rc_buf_init(b);
}

void rc_buf_release_wipe(struct rc_buf *b)
{
	if (!b)
		return;
	if (b->ptr)
		sodium_memzero(b->ptr, b->cap);
	rc_buf_release(b);
}

int rc_buf_grow(struct rc_buf *b, size_t extra)
{
	if (extra > SIZE_MAX - 1 - b->len)
		return RC_ERANGE;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return RC_OK;
	/* Double, starting at 64 bytes: a compact MOR-RPC response header fits the first block. */
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *p = realloc(b->ptr, cap);
	if (!p)
		return RC_ENOMEM;
	b->ptr = p;
	b->cap = cap;
	b->ptr[b->len] = '\0';
	return RC_OK;
}

int rc_buf_append(struct rc_buf *b, const void *p, size_t n)
{
	int rc = rc_buf_grow(b, n);
	if (rc != RC_OK)
		return rc;
	if (n)
		memcpy(b->ptr + b->len, p, n);
	rc_buf_setlen(b, b->len + n);
	return RC_OK;
}

int rc_buf_putc(struct rc_buf *b, char c)
{
	int rc = rc_buf_grow(b, 1);
	if (rc != RC_OK)
		return rc;
	b->ptr[b->len] = c;
	rc_buf_setlen(b, b->len + 1);
	return RC_OK;
}

int rc_buf_append_hex(struct rc_buf *b, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	if (n > SIZE_MAX / 2)
		return RC_ERANGE;
	int rc = rc_buf_grow(b, 2 * n);
	if (rc != RC_OK)
		return rc;
	char *o = b->ptr + b->len;
	for (size_t i = 0; i < n; i++) {
		o[2 * i] = digits[p[i] >> 4];
		o[2 * i + 1] = digits[p[i] & 15];
	}
	rc_buf_setlen(b, b->len + 2 * n);
	return RC_OK;
}

int rc_buf_append_u64(struct rc_buf *b, uint64_t v)
{
	char tmp[20];
	size_t i = sizeof tmp;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return rc_buf_append(b, tmp + i, sizeof tmp - i);
}
