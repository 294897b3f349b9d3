/*
 * router-core: RLP (Ethereum yellow paper, appendix B), the serialization of transactions.
 *
 * Encoding goes through a writer with a sticky error, so a sequence of puts needs one check at
 * the end, in the manner of git's strbuf:
 *
 *     struct rc_rlp_writer w;
 *     rc_rlp_writer_init_heap(&w);
 *     rc_rlp_list_begin(&w);
 *     rc_rlp_put_uint(&w, nonce);
 *     rc_rlp_put_bytes(&w, to, 20);
 *     rc_rlp_list_end(&w);
 *     rc = rc_rlp_writer_finish(&w, &p, &n);   // RC_OK, RC_ENOMEM, RC_ERANGE or RC_EINVAL
 *     ...
 *     rc_rlp_writer_release(&w);
 *
 * Decoding is zero-copy and strict: only the canonical encoding of a value is accepted (no
 * long-form header for a short payload, no leading zero in a length, no single byte < 0x80
 * wrapped as a one-byte string, no integer with a leading zero, nothing past the end), because
 * two encodings of one transaction would have two hashes. Errors are RC_EPARSE with the byte
 * offset (from the start of the top-level input) and a short text in struct rc_errinfo.
 *
 * No global state; a writer or iterator must not be shared between threads without a lock.
 */
#ifndef RC_RLP_H
#define RC_RLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_common.h>
#include <router-core/rc_hex.h>

#define RC_RLP_MAX_DEPTH 32 /* list nesting the writer and rc_rlp_validate() accept */

/* ---- encoding ------------------------------------------------------------------------------ */

/* Writer state; fields are private. Caller-allocated; always end with rc_rlp_writer_release(). */
struct rc_rlp_writer {
	uint8_t *buf;
	size_t len, cap;
	bool heap; /* buf is ours and grows; otherwise it is the caller's fixed buffer */
	int err;   /* first error, sticky */
	unsigned depth;
	size_t open[RC_RLP_MAX_DEPTH]; /* offsets of the reserved headers of open lists */
};

/* Write into the caller's buf[0..cap) (borrowed until release); running out gives RC_ERANGE. */
void rc_rlp_writer_init(struct rc_rlp_writer *w, uint8_t *buf, size_t cap);

/* Write into a heap buffer owned by the writer, grown as needed (RC_ENOMEM on failure). */
void rc_rlp_writer_init_heap(struct rc_rlp_writer *w);

/* Free the heap buffer (if any). The writer may be re-initialised afterwards. NULL is a no-op. */
void rc_rlp_writer_release(struct rc_rlp_writer *w);

/* Append a byte string (p may be NULL when n == 0). */
void rc_rlp_put_bytes(struct rc_rlp_writer *w, const void *p, size_t n);

/* Append an unsigned integer as a minimal big-endian string (0 is the empty string 0x80). */
void rc_rlp_put_uint(struct rc_rlp_writer *w, uint64_t v);
void rc_rlp_put_u256(struct rc_rlp_writer *w, const struct rc_u256 *v);

/* Append an already-encoded item (or several) verbatim. The bytes are not checked. */
void rc_rlp_put_raw(struct rc_rlp_writer *w, const void *p, size_t n);

/* Open a list; every item appended until the matching rc_rlp_list_end() goes inside it. More
 * than RC_RLP_MAX_DEPTH open lists, or an end without a begin, set RC_EINVAL. */
void rc_rlp_list_begin(struct rc_rlp_writer *w);
void rc_rlp_list_end(struct rc_rlp_writer *w);

/*
 * Finish: returns the first error met (RC_ENOMEM, RC_ERANGE for a full fixed buffer, RC_EINVAL
 * for unbalanced lists) or RC_OK with *out and *len (either may be NULL) describing the encoding.
 * *out is borrowed from the writer: valid until the next put or release.
 */
int rc_rlp_writer_finish(struct rc_rlp_writer *w, const uint8_t **out, size_t *len);

/* ---- decoding ------------------------------------------------------------------------------ */

/* One decoded item: a byte string or a list, as a view into the caller's input. */
struct rc_rlp_item {
	bool list;          /* true: ptr/len is the list payload (the encoded items) */
	const uint8_t *ptr; /* payload, borrowed from the input */
	size_t len;         /* payload length */
	size_t offset;      /* offset of the item's first (header) byte in the top-level input */
	size_t size;        /* header + payload bytes */
};

/*
 * Decode the item that must fill all len bytes of in. Only its own header is checked; call
 * rc_rlp_validate() first (or iterate) to check what a list contains. RC_OK or RC_EPARSE
 * (empty input, bad header, payload past the end, trailing bytes).
 */
int rc_rlp_decode(const uint8_t *in, size_t len, struct rc_rlp_item *item, struct rc_errinfo *err);

/* Check that in[0..len) is exactly one canonical item, recursively, nesting at most
 * RC_RLP_MAX_DEPTH lists. RC_OK or RC_EPARSE. */
int rc_rlp_validate(const uint8_t *in, size_t len, struct rc_errinfo *err);

/* Iterator over the items of a list; fields are private. Borrows the list's input. */
struct rc_rlp_iter {
	const uint8_t *p;
	size_t left;
	size_t offset; /* absolute offset of p */
};

/* Start iterating the payload of list (which must have list == true; otherwise the iterator is
 * empty). */
void rc_rlp_iter_init(struct rc_rlp_iter *it, const struct rc_rlp_item *list);

/* Next item of the list: returns 1 and fills *item, 0 at the end, RC_EPARSE on a bad item. */
int rc_rlp_iter_next(struct rc_rlp_iter *it, struct rc_rlp_item *item, struct rc_errinfo *err);

/*
 * Read a string item as an unsigned integer. RC_OK; RC_EPARSE if it is a list or has a leading
 * zero byte (non-canonical); RC_ERANGE if it does not fit.
 */
int rc_rlp_item_uint(const struct rc_rlp_item *item, uint64_t *out, struct rc_errinfo *err);
int rc_rlp_item_u256(const struct rc_rlp_item *item, struct rc_u256 *out, struct rc_errinfo *err);

#endif
