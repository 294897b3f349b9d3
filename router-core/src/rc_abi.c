/*
 * Solidity ABI codec: type strings, canonical encoding, hostile-input-safe decoding.
 *
 * Types: a recursive-descent parser fills one array of nodes sized by the string length (every
 * node consumes at least one character: a name, a '(' or a '['), so parsing allocates once.
 * Tuple members are linked through `next` so children need not be contiguous. An array suffix
 * wraps the node parsed so far *in place* (the old content moves to a new slot, the slot becomes
 * the array), which keeps the parent's link valid and the root at nodes[0].
 *
 * Encoding is two linear passes: rc_abi_encoded_size() validates the value tree against the type
 * and sizes it; the writer then emits heads and tails in one walk, each dynamic member's offset
 * being the running tail size, so no subtree is sized twice per level.
 *
 * Decoding is also two passes over the same code: the first counts values (and validates), the
 * second fills one exactly-sized block, so the result is one malloc however many bids a getter
 * returns. Offsets in the ABI are relative to the start of the enclosing tuple/array data; they
 * may point anywhere (Solidity's decoder does not require canonical layout), so two offsets can
 * share one tail. Recursion is bounded by the type depth, so loops are impossible, but sharing
 * could multiply the output exponentially; the value budget (len/32 + 1) x (depth + 1) stops
 * that while admitting every canonical encoding (each leaf owns at least one word there).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_keccak.h>

#define MAX_STATIC_HEAD ((size_t)1 << 24) /* bytes; bounds k in T[k] and tuple sizes */

static int fail(struct rc_errinfo *err, size_t off, const char *text)
{
	if (err) {
		err->offset = off;
		snprintf(err->text, sizeof err->text, "%s", text);
	}
	return RC_EPARSE;
}

/* ---- type strings -------------------------------------------------------------------------- */

struct parser {
	const char *s;
	size_t len, pos;
	struct rc_abi_type *nodes;
	size_t n, cap;
	struct rc_errinfo *err;
	bool failed;
};

static struct rc_abi_type *perr(struct parser *p, const char *text)
{
	if (!p->failed)
		fail(p->err, p->pos, text);
	p->failed = true;
	return NULL;
}

static struct rc_abi_type *new_node(struct parser *p)
{
	if (p->n == p->cap) /* cannot happen: cap = len + 1 */
		return perr(p, "type string too complex");
	struct rc_abi_type *t = &p->nodes[p->n++];
	memset(t, 0, sizeof *t);
	return t;
}

/* Derived fields from the children; false if the static size gets absurd. */
static bool finish(struct rc_abi_type *t)
{
	const struct rc_abi_type *c;
	switch (t->kind) {
	case RC_ABI_TUPLE:
		t->dynamic = false;
		t->head = 0;
		t->depth = 1;
		for (c = t->child; c; c = c->next) {
			t->dynamic |= c->dynamic;
			t->head += c->head;
			if (c->depth + 1 > t->depth)
				t->depth = c->depth + 1;
			if (t->head > MAX_STATIC_HEAD)
				return false;
		}
		break;
	case RC_ABI_ARRAY:
		t->dynamic = true;
		t->depth = t->child->depth + 1;
		break;
	case RC_ABI_FIXED_ARRAY:
		t->dynamic = t->child->dynamic;
		t->depth = t->child->depth + 1;
		if (!t->dynamic && t->count > MAX_STATIC_HEAD / t->child->head)
			return false;
		t->head = t->count * t->child->head;
		break;
	default:
		t->dynamic = t->kind == RC_ABI_BYTES || t->kind == RC_ABI_STRING;
		t->head = 32;
		t->depth = 1;
		break;
	}
	if (t->dynamic)
		t->head = 32;
	return true;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Parse an optional decimal suffix (no leading zero); -1 if absent, -2 if malformed. */
static long parse_num(const char *s, size_t n)
{
	if (n == 0)
		return -1;
	if (s[0] == '0' || n > 6)
		return -2;
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -2;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static bool parse_elementary(struct parser *p, struct rc_abi_type *t)
{
	size_t start = p->pos;
	while (p->pos < p->len &&
	       ((p->s[p->pos] >= 'a' && p->s[p->pos] <= 'z') || is_digit(p->s[p->pos])))
		p->pos++;
	const char *w = p->s + start;
	size_t n = p->pos - start;
	const char *bad = NULL;
	long num;
	if (n == 7 && !memcmp(w, "address", 7)) {
		t->kind = RC_ABI_ADDRESS;
	} else if (n == 4 && !memcmp(w, "bool", 4)) {
		t->kind = RC_ABI_BOOL;
	} else if (n == 6 && !memcmp(w, "string", 6)) {
		t->kind = RC_ABI_STRING;
	} else if (n >= 5 && !memcmp(w, "bytes", 5)) {
		num = parse_num(w + 5, n - 5);
		t->kind = num == -1 ? RC_ABI_BYTES : RC_ABI_FIXED_BYTES;
		t->size = num >= 1 && num <= 32 ? (unsigned)num : 0;
		if (num != -1 && t->size == 0)
			bad = "bytesN needs 1 <= N <= 32";
	} else if ((n >= 4 && !memcmp(w, "uint", 4)) || (n >= 3 && !memcmp(w, "int", 3))) {
		size_t pre = w[0] == 'u' ? 4 : 3;
		t->kind = pre == 4 ? RC_ABI_UINT : RC_ABI_INT;
		num = parse_num(w + pre, n - pre);
		if (num == -1)
			num = 256;
		if (num < 8 || num > 256 || num % 8)
			bad = "integer width must be a multiple of 8 from 8 to 256";
		t->size = (unsigned)num;
	} else {
		bad = n ? "unknown type name" : "expected a type";
	}
	if (bad) {
		p->pos = start; /* errors point at the start of the name */
		perr(p, bad);
		return false;
	}
	return true;
}

static struct rc_abi_type *parse_type(struct parser *p, unsigned depth)
{
	if (depth > RC_ABI_MAX_DEPTH)
		return perr(p, "type nested too deeply");
	struct rc_abi_type *t = new_node(p);
	if (!t)
		return NULL;
	if (p->pos < p->len && p->s[p->pos] == '(') {
		struct rc_abi_type *last = NULL;
		t->kind = RC_ABI_TUPLE;
		p->pos++;
		if (p->pos < p->len && p->s[p->pos] == ')')
			return perr(p, "empty tuple");
		for (;;) {
			struct rc_abi_type *m = parse_type(p, depth + 1);
			if (!m)
				return NULL;
			if (last)
				last->next = m;
			else
				t->child = m;
			last = m;
			t->count++;
			if (p->pos < p->len && p->s[p->pos] == ',') {
				p->pos++;
				continue;
			}
			if (p->pos < p->len && p->s[p->pos] == ')') {
				p->pos++;
				break;
			}
			return perr(p, "expected ',' or ')'");
		}
	} else if (!parse_elementary(p, t)) {
		return NULL;
	}
	if (!finish(t))
		return perr(p, "type too large");
	while (p->pos < p->len && p->s[p->pos] == '[') {
		if (++depth > RC_ABI_MAX_DEPTH)
			return perr(p, "type nested too deeply");
		size_t start = ++p->pos;
		while (p->pos < p->len && is_digit(p->s[p->pos]))
			p->pos++;
		long k = parse_num(p->s + start, p->pos - start);
		if (p->pos >= p->len || p->s[p->pos] != ']')
			return perr(p, "expected ']'");
		if (k == -2 || k == 0) {
			p->pos = start;
			return perr(p, "array length must be a positive number");
		}
		p->pos++;
		struct rc_abi_type *inner = new_node(p);
		if (!inner)
			return NULL;
		*inner = *t;
		memset(t, 0, sizeof *t);
		t->kind = k > 0 ? RC_ABI_FIXED_ARRAY : RC_ABI_ARRAY;
		t->count = k > 0 ? (size_t)k : 0;
		t->child = inner;
		if (!finish(t))
			return perr(p, "type too large");
	}
	return t;
}

int rc_abi_type_parse(const char *s, size_t len, struct rc_abi_type **out, struct rc_errinfo *err)
{
	struct parser p = {.s = s, .len = len, .cap = len + 1, .err = err};
	*out = NULL;
	if (len > (1u << 20))
		return fail(err, 0, "type string too long");
	p.nodes = malloc(p.cap * sizeof *p.nodes);
	if (!p.nodes)
		return RC_ENOMEM;
	struct rc_abi_type *t = parse_type(&p, 1);
	if (t && p.pos != len)
		t = perr(&p, "unexpected character after the type");
	if (!t) {
		free(p.nodes);
		return RC_EPARSE;
	}
	*out = p.nodes; /* the root is always nodes[0] */
	return RC_OK;
}

void rc_abi_type_free(struct rc_abi_type *t)
{
	free(t);
}

/* ---- values -------------------------------------------------------------------------------- */

static void set_word(struct rc_abi_value *v, enum rc_abi_kind kind)
{
	memset(v, 0, sizeof *v);
	v->kind = kind;
}

void rc_abi_set_uint(struct rc_abi_value *v, uint64_t x)
{
	set_word(v, RC_ABI_UINT);
	for (int i = 0; i < 8; i++)
		v->u.word[31 - i] = (uint8_t)(x >> (8 * i));
}

void rc_abi_set_u256(struct rc_abi_value *v, const struct rc_u256 *x)
{
	set_word(v, RC_ABI_UINT);
	rc_u256_to_be32(x, v->u.word);
}

void rc_abi_set_int(struct rc_abi_value *v, int64_t x)
{
	set_word(v, RC_ABI_INT);
	uint64_t ux = (uint64_t)x;
	memset(v->u.word, x < 0 ? 0xff : 0, 24);
	for (int i = 0; i < 8; i++)
		v->u.word[31 - i] = (uint8_t)(ux >> (8 * i));
}

void rc_abi_set_address(struct rc_abi_value *v, const uint8_t addr[20])
{
	set_word(v, RC_ABI_ADDRESS);
	memcpy(v->u.word + 12, addr, 20);
}

void rc_abi_set_bool(struct rc_abi_value *v, bool b)
{
	set_word(v, RC_ABI_BOOL);
	v->u.word[31] = b;
}

void rc_abi_set_fixed_bytes(struct rc_abi_value *v, const void *p, size_t n)
{
	set_word(v, RC_ABI_FIXED_BYTES);
	memcpy(v->u.word, p, n > 32 ? 32 : n);
}

void rc_abi_set_bytes(struct rc_abi_value *v, const void *p, size_t n)
{
	memset(v, 0, sizeof *v);
	v->kind = RC_ABI_BYTES;
	v->u.bytes.ptr = p;
	v->u.bytes.len = n;
}

void rc_abi_set_string(struct rc_abi_value *v, const char *p, size_t n)
{
	rc_abi_set_bytes(v, p, n);
	v->kind = RC_ABI_STRING;
}

void rc_abi_set_tuple(struct rc_abi_value *v, const struct rc_abi_value *items, size_t count)
{
	memset(v, 0, sizeof *v);
	v->kind = RC_ABI_TUPLE;
	v->u.list.items = items;
	v->u.list.count = count;
}

void rc_abi_set_array(struct rc_abi_value *v, const struct rc_abi_value *items, size_t count)
{
	rc_abi_set_tuple(v, items, count);
	v->kind = RC_ABI_ARRAY;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t b)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != b)
			return false;
	return true;
}

int rc_abi_get_u256(const struct rc_abi_value *v, struct rc_u256 *out)
{
	if (v->kind != RC_ABI_UINT)
		return RC_EINVAL;
	return rc_u256_from_be(out, v->u.word, 32);
}

int rc_abi_get_uint(const struct rc_abi_value *v, uint64_t *out)
{
	if (v->kind != RC_ABI_UINT)
		return RC_EINVAL;
	if (!all_bytes(v->u.word, 24, 0))
		return RC_ERANGE;
	uint64_t x = 0;
	for (int i = 24; i < 32; i++)
		x = x << 8 | v->u.word[i];
	*out = x;
	return RC_OK;
}

int rc_abi_get_int(const struct rc_abi_value *v, int64_t *out)
{
	if (v->kind != RC_ABI_INT)
		return RC_EINVAL;
	if (!all_bytes(v->u.word, 24, (v->u.word[24] & 0x80) ? 0xff : 0))
		return RC_ERANGE;
	uint64_t x = 0;
	for (int i = 24; i < 32; i++)
		x = x << 8 | v->u.word[i];
	*out = (int64_t)x; /* two's complement, implementation-defined but universal */
	return RC_OK;
}

int rc_abi_get_address(const struct rc_abi_value *v, uint8_t out[20])
{
	if (v->kind != RC_ABI_ADDRESS)
		return RC_EINVAL;
	memcpy(out, v->u.word + 12, 20);
	return RC_OK;
}

int rc_abi_get_bool(const struct rc_abi_value *v, bool *out)
{
	if (v->kind != RC_ABI_BOOL)
		return RC_EINVAL;
	*out = v->u.word[31] != 0;
	return RC_OK;
}

void rc_abi_value_free(struct rc_abi_value *v)
{
	free(v);
}

/* Is this 32-byte word a clean encoding of a value of static type t? (Solidity's v2 decoder
 * validation: it reverts on dirty words, and so do we.) */
static bool word_ok(const struct rc_abi_type *t, const uint8_t *w)
{
	switch (t->kind) {
	case RC_ABI_UINT:
		return all_bytes(w, 32 - t->size / 8, 0);
	case RC_ABI_INT: {
		size_t pad = 32 - t->size / 8;
		return all_bytes(w, pad, (w[pad] & 0x80) ? 0xff : 0);
	}
	case RC_ABI_ADDRESS:
		return all_bytes(w, 12, 0);
	case RC_ABI_BOOL:
		return all_bytes(w, 31, 0) && w[31] <= 1;
	case RC_ABI_FIXED_BYTES:
		return all_bytes(w + t->size, 32 - t->size, 0);
	default:
		return false;
	}
}

/* ---- encoding ------------------------------------------------------------------------------ */

static size_t pad32(size_t n)
{
	return (n + 31) & ~(size_t)31;
}

static int size_of(const struct rc_abi_type *t, const struct rc_abi_value *v, size_t *size);

/* Size of a sequence of n values (members of t's tuple, or n elements of type elem). */
static int seq_size(const struct rc_abi_type *members, const struct rc_abi_type *elem,
                    const struct rc_abi_value *items, size_t n, size_t *size)
{
	size_t total = 0;
	const struct rc_abi_type *e = members;
	for (size_t i = 0; i < n; i++, e = members ? e->next : NULL) {
		const struct rc_abi_type *et = members ? e : elem;
		size_t s;
		int rc = size_of(et, &items[i], &s);
		if (rc)
			return rc;
		if (et->dynamic)
			s += 32;
		if (s > SIZE_MAX / 2 - total)
			return RC_ERANGE;
		total += s;
	}
	*size = total;
	return RC_OK;
}

static int size_of(const struct rc_abi_type *t, const struct rc_abi_value *v, size_t *size)
{
	switch (t->kind) {
	case RC_ABI_UINT:
	case RC_ABI_INT:
	case RC_ABI_ADDRESS:
	case RC_ABI_BOOL:
	case RC_ABI_FIXED_BYTES:
		if (v->kind != t->kind)
			return RC_EINVAL;
		if (!word_ok(t, v->u.word))
			return RC_ERANGE;
		*size = 32;
		return RC_OK;
	case RC_ABI_BYTES:
	case RC_ABI_STRING:
		if (v->kind != RC_ABI_BYTES && v->kind != RC_ABI_STRING)
			return RC_EINVAL;
		if (v->u.bytes.len > SIZE_MAX / 4)
			return RC_ERANGE;
		*size = 32 + pad32(v->u.bytes.len);
		return RC_OK;
	case RC_ABI_TUPLE:
		if (v->kind != RC_ABI_TUPLE || v->u.list.count != t->count)
			return RC_EINVAL;
		return seq_size(t->child, NULL, v->u.list.items, t->count, size);
	case RC_ABI_FIXED_ARRAY:
	case RC_ABI_ARRAY: {
		if (v->kind != RC_ABI_ARRAY && v->kind != RC_ABI_FIXED_ARRAY)
			return RC_EINVAL;
		size_t n = v->u.list.count;
		if (t->kind == RC_ABI_FIXED_ARRAY && n != t->count)
			return RC_EINVAL;
		int rc = seq_size(NULL, t->child, v->u.list.items, n, size);
		if (rc == RC_OK && t->kind == RC_ABI_ARRAY)
			*size += 32;
		return rc;
	}
	}
	return RC_EINVAL;
}

static void put_word_size(uint8_t *w, size_t x)
{
	memset(w, 0, 24);
	for (int i = 0; i < 8; i++)
		w[31 - i] = (uint8_t)((uint64_t)x >> (8 * i));
}

static size_t enc(const struct rc_abi_type *t, const struct rc_abi_value *v, uint8_t *out);

/* Heads then tails; returns bytes written. Values were validated by size_of(). */
static size_t enc_seq(const struct rc_abi_type *members, const struct rc_abi_type *elem,
                      const struct rc_abi_value *items, size_t n, uint8_t *out)
{
	size_t head = 0, tail = 0;
	const struct rc_abi_type *e = members;
	for (size_t i = 0; i < n; i++, e = members ? e->next : NULL)
		tail += (members ? e : elem)->head;
	e = members;
	for (size_t i = 0; i < n; i++, e = members ? e->next : NULL) {
		const struct rc_abi_type *et = members ? e : elem;
		if (et->dynamic) {
			put_word_size(out + head, tail);
			tail += enc(et, &items[i], out + tail);
		} else {
			enc(et, &items[i], out + head);
		}
		head += et->head;
	}
	return tail;
}

static size_t enc(const struct rc_abi_type *t, const struct rc_abi_value *v, uint8_t *out)
{
	switch (t->kind) {
	case RC_ABI_BYTES:
	case RC_ABI_STRING: {
		size_t n = v->u.bytes.len, p = pad32(n);
		put_word_size(out, n);
		if (n)
			memcpy(out + 32, v->u.bytes.ptr, n);
		memset(out + 32 + n, 0, p - n);
		return 32 + p;
	}
	case RC_ABI_TUPLE:
		return enc_seq(t->child, NULL, v->u.list.items, t->count, out);
	case RC_ABI_FIXED_ARRAY:
		return enc_seq(NULL, t->child, v->u.list.items, t->count, out);
	case RC_ABI_ARRAY:
		put_word_size(out, v->u.list.count);
		return 32 + enc_seq(NULL, t->child, v->u.list.items, v->u.list.count, out + 32);
	default:
		memcpy(out, v->u.word, 32);
		return 32;
	}
}

int rc_abi_encoded_size(const struct rc_abi_type *t, const struct rc_abi_value *v, size_t *size)
{
	return size_of(t, v, size);
}

int rc_abi_encode(const struct rc_abi_type *t, const struct rc_abi_value *v, uint8_t *out,
                  size_t cap, size_t *outlen)
{
	size_t n;
	int rc = size_of(t, v, &n);
	if (rc)
		return rc;
	if (n > cap)
		return RC_ERANGE;
	size_t w = enc(t, v, out);
	if (w != n) /* our own invariant: sizing and writing walk the same tree */
		abort();
	if (outlen)
		*outlen = n;
	return RC_OK;
}

void rc_abi_selector(const char *sig, size_t len, uint8_t out[4])
{
	uint8_t h[RC_KECCAK256_LEN];
	rc_keccak256(sig, len, h);
	memcpy(out, h, 4);
}

int rc_abi_encode_call(struct rc_str sig, const struct rc_abi_value *args, size_t nargs,
                       struct rc_buf *out, struct rc_errinfo *err)
{
	const char *lp = memchr(sig.ptr, '(', sig.len);
	if (!lp || lp == sig.ptr)
		return fail(err, lp ? 0 : sig.len, "signature must be name(types)");
	size_t off = (size_t)(lp - sig.ptr);
	struct rc_abi_type *t;
	struct rc_abi_value tuple;
	size_t n;
	int rc;
	if (sig.len - off == 2 && lp[1] == ')') {
		/* "f()": the ABI has no empty tuple type; the calldata is the selector alone. */
		if (nargs != 0)
			return RC_EINVAL;
		if ((rc = rc_buf_grow(out, 4)) != RC_OK)
			return rc;
		rc_abi_selector(sig.ptr, sig.len, (uint8_t *)out->ptr + out->len);
		rc_buf_setlen(out, out->len + 4);
		return RC_OK;
	}
	rc = rc_abi_type_parse(lp, sig.len - off, &t, err);
	if (rc) {
		if (rc == RC_EPARSE && err)
			err->offset += off;
		return rc;
	}
	if (t->kind != RC_ABI_TUPLE) {
		rc = fail(err, off, "signature arguments must be a tuple");
		goto out;
	}
	rc_abi_set_tuple(&tuple, args, nargs);
	if ((rc = size_of(t, &tuple, &n)) != RC_OK || (rc = rc_buf_grow(out, 4 + n)) != RC_OK)
		goto out;
	uint8_t *p = (uint8_t *)out->ptr + out->len;
	rc_abi_selector(sig.ptr, sig.len, p);
	enc(t, &tuple, p + 4);
	rc_buf_setlen(out, out->len + 4 + n);
out:
	rc_abi_type_free(t);
	return rc;
}

/* ---- decoding ------------------------------------------------------------------------------ */

struct dec {
	const uint8_t *data;
	size_t len;
	unsigned flags;
	struct rc_abi_value *arena; /* NULL during the counting pass */
	size_t used, budget;
	struct rc_errinfo *err;
};

/* Reserve n values: *items points at them (NULL while counting). */
static int take(struct dec *d, size_t n, size_t at, struct rc_abi_value **items)
{
	if (n > d->budget - d->used)
		return fail(d->err, at, "too many values for the data size (offset aliasing?)");
	*items = d->arena ? d->arena + d->used : NULL;
	d->used += n;
	return RC_OK;
}

/* Read the word at pos as a size no larger than the data. */
static int read_size(struct dec *d, size_t pos, size_t *out, const char *what)
{
	if (pos > d->len || d->len - pos < 32)
		return fail(d->err, pos, "data too short");
	const uint8_t *w = d->data + pos;
	if (!all_bytes(w, 24, 0))
		return fail(d->err, pos, what);
	uint64_t x = 0;
	for (int i = 24; i < 32; i++)
		x = x << 8 | w[i];
	if (x > d->len)
		return fail(d->err, pos, what);
	*out = (size_t)x;
	return RC_OK;
}

static int dec_value(struct dec *d, const struct rc_abi_type *t, size_t pos,
                     struct rc_abi_value *out);

/* n values laid out as a tuple body starting at base. */
static int dec_seq(struct dec *d, const struct rc_abi_type *members, const struct rc_abi_type *elem,
                   size_t n, size_t base, struct rc_abi_value *items)
{
	size_t h = base;
	const struct rc_abi_type *e = members;
	for (size_t i = 0; i < n; i++, e = members ? e->next : NULL) {
		const struct rc_abi_type *et = members ? e : elem;
		struct rc_abi_value *v = items ? &items[i] : NULL;
		int rc;
		if (et->dynamic) {
			size_t off;
			if ((rc = read_size(d, h, &off, "offset out of range")) != RC_OK)
				return rc;
			if (off > d->len - base)
				return fail(d->err, h, "offset out of range");
			rc = dec_value(d, et, base + off, v);
		} else {
			rc = dec_value(d, et, h, v);
		}
		if (rc)
			return rc;
		h += et->head;
	}
	return RC_OK;
}

static int dec_value(struct dec *d, const struct rc_abi_type *t, size_t pos,
                     struct rc_abi_value *out)
{
	struct rc_abi_value *items;
	size_t n;
	int rc;
	switch (t->kind) {
	case RC_ABI_BYTES:
	case RC_ABI_STRING: {
		if ((rc = read_size(d, pos, &n, "bytes length exceeds data")) != RC_OK)
			return rc;
		if (n > d->len - pos - 32)
			return fail(d->err, pos, "bytes length exceeds data");
		const uint8_t *p = d->data + pos + 32;
		if (d->flags & RC_ABI_STRICT_PADDING) {
			size_t pad = pad32(n) - n;
			if (pad > d->len - pos - 32 - n || !all_bytes(p + n, pad, 0))
				return fail(d->err, pos + 32 + n, "bad padding after bytes");
		}
		if (out) {
			out->kind = t->kind;
			out->u.bytes.ptr = p;
			out->u.bytes.len = n;
		}
		return RC_OK;
	}
	case RC_ABI_TUPLE:
	case RC_ABI_FIXED_ARRAY:
		n = t->count;
		if (!t->dynamic && (pos > d->len || t->head > d->len - pos))
			return fail(d->err, pos, "data too short");
		if ((rc = take(d, n, pos, &items)) != RC_OK)
			return rc;
		if (out) {
			out->kind = t->kind;
			out->u.list.items = items;
			out->u.list.count = n;
		}
		return t->kind == RC_ABI_TUPLE ? dec_seq(d, t->child, NULL, n, pos, items)
		                               : dec_seq(d, NULL, t->child, n, pos, items);
	case RC_ABI_ARRAY:
		if ((rc = read_size(d, pos, &n, "array length exceeds data")) != RC_OK)
			return rc;
		/* every element needs at least its head in the data: no huge loops on short input
		 */
		if (n > (d->len - pos - 32) / t->child->head)
			return fail(d->err, pos, "array length exceeds data");
		if ((rc = take(d, n, pos, &items)) != RC_OK)
			return rc;
		if (out) {
			out->kind = RC_ABI_ARRAY;
			out->u.list.items = items;
			out->u.list.count = n;
		}
		return dec_seq(d, NULL, t->child, n, pos + 32, items);
	default:
		if (pos > d->len || d->len - pos < 32)
			return fail(d->err, pos, "data too short");
		if (!word_ok(t, d->data + pos))
			return fail(d->err, pos, "value has dirty high bits or is out of range");
		if (out) {
			out->kind = t->kind;
			memcpy(out->u.word, d->data + pos, 32);
		}
		return RC_OK;
	}
}

int rc_abi_decode(const struct rc_abi_type *t, const uint8_t *data, size_t len, unsigned flags,
                  struct rc_abi_value **out, struct rc_errinfo *err)
{
	struct dec d = {.data = data, .len = len, .flags = flags, .err = err};
	struct rc_abi_value *root;
	*out = NULL;
	d.budget = (len / 32 + 1) * (t->depth + 1);
	int rc = take(&d, 1, 0, &root);
	if (rc == RC_OK)
		rc = dec_value(&d, t, 0, NULL);
	if (rc)
		return rc;
	d.arena = malloc(d.used * sizeof *d.arena);
	if (!d.arena)
		return RC_ENOMEM;
	d.budget = d.used;
	d.used = 0;
	take(&d, 1, 0, &root);
	if (dec_value(&d, t, 0, root) != RC_OK) /* same walk as the counting pass */
		abort();
	*out = root;
	return RC_OK;
}
