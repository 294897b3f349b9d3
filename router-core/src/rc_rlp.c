/*
 * RLP writer and strict decoder.
 *
 * Lists are written in one pass: list_begin reserves one header byte, list_end fills it in, and
 * only when the payload turns out to be 56 bytes or more shifts the payload right to make room
 * for the long-form length (rare for transactions: only the outer list of a tx with calldata).
 *
 * The decoder never trusts a length: every length is compared with what is left of the input
 * before use, with arithmetic that cannot overflow (lengths are at most 8 bytes, so they fit a
 * uint64_t and are compared against the remaining size_t before any addition). Canonical form is
 * enforced (yellow paper appendix B, and go-ethereum's rlp package which rejects the same
 * non-canonical inputs: ErrCanonSize, ErrCanonInt, ErrNonCanonicalSize).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_rlp.h>

static int fail(struct rc_errinfo *err, size_t off, const char *text)
{
	if (err) {
		err->offset = off;
		snprintf(err->text, sizeof err->text, "%s", text);
	}
	return RC_EPARSE;
}

/* ---- writer -------------------------------------------------------------------------------- */

void rc_rlp_writer_init(struct rc_rlp_writer *w, uint8_t *buf, size_t cap)
{
	memset(w, 0, sizeof *w);
	w->buf = buf;
	w->cap = cap;
}

void rc_rlp_writer_init_heap(struct rc_rlp_writer *w)
{
	memset(w, 0, sizeof *w);
	w->heap = true;
}

void rc_rlp_writer_release(struct rc_rlp_writer *w)
{
	if (!w)
		return;
	if (w->heap)
		free(w->buf);
	memset(w, 0, sizeof *w);
}

/* Make room for n more bytes; false (and the sticky error set) if impossible. */
static bool reserve(struct rc_rlp_writer *w, size_t n)
{
	if (w->err)
		return false;
	if (n <= w->cap - w->len)
		return true;
	if (!w->heap || n > SIZE_MAX / 2 - w->len) {
		w->err = RC_ERANGE;
		return false;
	}
	size_t cap = w->cap ? w->cap : 64;
	while (cap - w->len < n)
		cap *= 2;
	uint8_t *nb = realloc(w->buf, cap);
	if (!nb) {
		w->err = RC_ENOMEM;
		return false;
	}
	w->buf = nb;
	w->cap = cap;
	return true;
}

static unsigned be_len(uint64_t v)
{
	unsigned n = 0;
	while (v) {
		n++;
		v >>= 8;
	}
	return n;
}

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* Header for a payload of n bytes: short form base + n, or long form (base + 55 + lenlen). */
static void put_header(struct rc_rlp_writer *w, uint8_t base, size_t n)
{
	if (n < 56) {
		if (reserve(w, 1))
			w->buf[w->len++] = (uint8_t)(base + n);
		return;
	}
	unsigned ll = be_len(n);
	if (!reserve(w, 1 + ll))
		return;
	w->buf[w->len] = (uint8_t)(base + 55 + ll);
	put_be(w->buf + w->len + 1, n, ll);
	w->len += 1 + ll;
}

void rc_rlp_put_bytes(struct rc_rlp_writer *w, const void *p, size_t n)
{
	const uint8_t *b = p;
	if (n == 1 && b[0] < 0x80) {
		rc_rlp_put_raw(w, b, 1); /* a single low byte is its own encoding */
		return;
	}
	put_header(w, 0x80, n);
	rc_rlp_put_raw(w, p, n);
}

void rc_rlp_put_raw(struct rc_rlp_writer *w, const void *p, size_t n)
{
	if (n == 0 || !reserve(w, n))
		return;
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

void rc_rlp_put_uint(struct rc_rlp_writer *w, uint64_t v)
{
	uint8_t be[8];
	unsigned n = be_len(v);
	put_be(be, v, n);
	rc_rlp_put_bytes(w, be, n);
}

void rc_rlp_put_u256(struct rc_rlp_writer *w, const struct rc_u256 *v)
{
	uint8_t be[32];
	size_t skip = 0;
	rc_u256_to_be32(v, be);
	while (skip < 32 && be[skip] == 0)
		skip++;
	rc_rlp_put_bytes(w, be + skip, 32 - skip);
}

void rc_rlp_list_begin(struct rc_rlp_writer *w)
{
	if (w->err)
		return;
	if (w->depth == RC_RLP_MAX_DEPTH) {
		w->err = RC_EINVAL;
		return;
	}
	if (!reserve(w, 1))
		return;
	w->open[w->depth++] = w->len++;
}

void rc_rlp_list_end(struct rc_rlp_writer *w)
{
	if (w->err)
		return;
	if (w->depth == 0) {
		w->err = RC_EINVAL;
		return;
	}
	size_t hdr = w->open[--w->depth];
	size_t n = w->len - hdr - 1;
	if (n < 56) {
		w->buf[hdr] = (uint8_t)(0xc0 + n);
		return;
	}
	unsigned ll = be_len(n);
	if (!reserve(w, ll))
		return;
	memmove(w->buf + hdr + 1 + ll, w->buf + hdr + 1, n);
	w->buf[hdr] = (uint8_t)(0xf7 + ll);
	put_be(w->buf + hdr + 1, n, ll);
	w->len += ll;
}

int rc_rlp_writer_finish(struct rc_rlp_writer *w, const uint8_t **out, size_t *len)
{
	if (!w->err && w->depth)
		w->err = RC_EINVAL;
	if (w->err)
		return w->err;
	if (out)
		*out = w->buf;
	if (len)
		*len = w->len;
	return RC_OK;
}

/* ---- decoder ------------------------------------------------------------------------------- */

/* Parse the item at p (avail bytes, absolute offset off). The payload must fit in avail. */
static int parse_item(const uint8_t *p, size_t avail, size_t off, struct rc_rlp_item *it,
                      struct rc_errinfo *err)
{
	if (avail == 0)
		return fail(err, off, "unexpected end of input");
	uint8_t b = p[0];
	size_t hdr, n;
	it->offset = off;
	it->list = b >= 0xc0;
	if (b < 0x80) {
		it->ptr = p;
		it->len = 1;
		it->size = 1;
		return RC_OK;
	}
	uint8_t base = it->list ? 0xc0 : 0x80;
	if (b - base < 56) {
		hdr = 1;
		n = (size_t)(b - base);
		if (n > avail - 1)
			return fail(err, off,
			            it->list ? "list length exceeds input"
			                     : "string length exceeds input");
		if (!it->list && n == 1 && p[1] < 0x80)
			return fail(err, off, "single byte below 0x80 must be encoded as itself");
	} else {
		unsigned ll = (unsigned)(b - base - 55);
		if (ll > avail - 1)
			return fail(err, off, "length of length exceeds input");
		if (p[1] == 0)
			return fail(err, off + 1, "length has a leading zero");
		uint64_t v = 0;
		for (unsigned i = 0; i < ll; i++)
			v = v << 8 | p[1 + i];
		if (v < 56)
			return fail(err, off, "long-form length for a payload under 56 bytes");
		hdr = 1 + ll;
		if (v > avail - hdr)
			return fail(err, off,
			            it->list ? "list length exceeds input"
			                     : "string length exceeds input");
		n = (size_t)v;
	}
	it->ptr = p + hdr;
	it->len = n;
	it->size = hdr + n;
	return RC_OK;
}

int rc_rlp_decode(const uint8_t *in, size_t len, struct rc_rlp_item *item, struct rc_errinfo *err)
{
	int rc = parse_item(in, len, 0, item, err);
	if (rc)
		return rc;
	if (item->size != len)
		return fail(err, item->size, "trailing bytes after the item");
	return RC_OK;
}

void rc_rlp_iter_init(struct rc_rlp_iter *it, const struct rc_rlp_item *list)
{
	it->p = list->ptr;
	it->left = list->list ? list->len : 0;
	it->offset = list->offset + (list->size - list->len);
}

int rc_rlp_iter_next(struct rc_rlp_iter *it, struct rc_rlp_item *item, struct rc_errinfo *err)
{
	if (it->left == 0)
		return 0;
	int rc = parse_item(it->p, it->left, it->offset, item, err);
	if (rc)
		return rc;
	it->p += item->size;
	it->left -= item->size;
	it->offset += item->size;
	return 1;
}

static int validate_list(const struct rc_rlp_item *list, unsigned depth, struct rc_errinfo *err)
{
	if (depth > RC_RLP_MAX_DEPTH)
		return fail(err, list->offset, "lists nested too deeply");
	struct rc_rlp_iter it;
	struct rc_rlp_item sub;
	int rc;
	rc_rlp_iter_init(&it, list);
	while ((rc = rc_rlp_iter_next(&it, &sub, err)) == 1)
		if (sub.list && (rc = validate_list(&sub, depth + 1, err)) != RC_OK)
			return rc;
	return rc;
}

int rc_rlp_validate(const uint8_t *in, size_t len, struct rc_errinfo *err)
{
	struct rc_rlp_item top;
	int rc = rc_rlp_decode(in, len, &top, err);
	if (rc == RC_OK && top.list)
		rc = validate_list(&top, 1, err);
	return rc;
}

static int int_item(const struct rc_rlp_item *item, size_t max, struct rc_errinfo *err)
{
	if (item->list)
		return fail(err, item->offset, "expected an integer, got a list");
	if (item->len > 0 && item->ptr[0] == 0)
		return fail(err, item->offset, "integer has a leading zero byte");
	if (item->len > max) {
		fail(err, item->offset, "integer too large");
		return RC_ERANGE;
	}
	return RC_OK;
}

int rc_rlp_item_uint(const struct rc_rlp_item *item, uint64_t *out, struct rc_errinfo *err)
{
	int rc = int_item(item, 8, err);
	if (rc)
		return rc;
	uint64_t v = 0;
	for (size_t i = 0; i < item->len; i++)
		v = v << 8 | item->ptr[i];
	*out = v;
	return RC_OK;
}

int rc_rlp_item_u256(const struct rc_rlp_item *item, struct rc_u256 *out, struct rc_errinfo *err)
{
	int rc = int_item(item, 32, err);
	return rc ? rc : rc_u256_from_be(out, item->ptr, item->len);
}
