/*
 * router-core growable byte buffer, in the manner of git's strbuf.
 *
 * A struct rc_buf owns one heap block. `ptr[0..len)` holds the bytes; the buffer always keeps a
 * NUL at ptr[len] once anything has been allocated, so text can be printed or handed to an API
 * that wants a C string, but the content may itself contain NUL bytes: trust `len`, not strlen.
 * `ptr` is NULL until the first append. Growth is geometric, so n appends cost O(n) amortized;
 * rc_buf_reset() keeps the block, which is how hot paths (one encode per streamed chunk) avoid
 * allocating after warm-up.
 *
 * Lifecycle: caller-allocated; start with RC_BUF_INIT or rc_buf_init(), end with
 * rc_buf_release() (which accepts a released or never-used buffer). A buffer is not thread-safe;
 * use one per thread or lock around it.
 */
#ifndef RC_BUF_H
#define RC_BUF_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_common.h>

struct rc_buf {
	char *ptr;  /* owned; NULL until the first allocation */
	size_t len; /* bytes in use */
	size_t cap; /* bytes allocated, including room for the trailing NUL */
};

#define RC_BUF_INIT                                                                                \
	{                                                                                          \
		NULL, 0, 0                                                                         \
	}

/* Set *b to the empty state. Does not free: use on fresh memory only. */
void rc_buf_init(struct rc_buf *b);

/* Free the block and return *b to the empty state. NULL and empty buffers are fine. */
void rc_buf_release(struct rc_buf *b);

/* Like rc_buf_release(), but first overwrites the whole block with zeros (for secrets). */
void rc_buf_release_wipe(struct rc_buf *b);

/* Drop the content, keep the block for reuse. */
static inline void rc_buf_reset(struct rc_buf *b)
{
	b->len = 0;
	if (b->ptr)
		b->ptr[0] = '\0';
}

/*
 * Make room for `extra` more bytes after len (plus the NUL) without changing the content.
 * Returns RC_OK, RC_ERANGE if len + extra overflows size_t, or RC_ENOMEM (the buffer is then
 * unchanged). After success, ptr[len .. len+extra) may be written directly, then rc_buf_setlen().
 */
int rc_buf_grow(struct rc_buf *b, size_t extra);

/* Set len after writing into the room made by rc_buf_grow(); n must be <= cap - 1. */
static inline void rc_buf_setlen(struct rc_buf *b, size_t n)
{
	b->len = n;
	b->ptr[n] = '\0';
}

/* Append n bytes from p (p may be NULL when n is 0). RC_OK, RC_ERANGE or RC_ENOMEM. */
int rc_buf_append(struct rc_buf *b, const void *p, size_t n);

/* Append one byte. RC_OK or RC_ENOMEM. */
int rc_buf_putc(struct rc_buf *b, char c);

/* Append 2n lowercase hex digits for the n bytes at p. RC_OK, RC_ERANGE or RC_ENOMEM. */
int rc_buf_append_hex(struct rc_buf *b, const uint8_t *p, size_t n);

/* Append the decimal form of v. RC_OK or RC_ENOMEM. */
int rc_buf_append_u64(struct rc_buf *b, uint64_t v);

/* The content as a borrowed slice, valid until the next call that changes b. */
static inline struct rc_str rc_buf_str(const struct rc_buf *b)
{
	return (struct rc_str){b->ptr ? b->ptr : "", b->len};
}

#endif
