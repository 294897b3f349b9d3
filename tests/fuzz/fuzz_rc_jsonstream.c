/*
 * Fuzz rc_jsonstream: the same bytes fed whole and fed in pseudo-random pieces must give the
 * same values, the same error and the same error offset; every value must respect the limits and
 * start and end where a JSON value can.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_jsonstream.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_VALUES 256
#define MAX_VALUE 512
#define MAX_DEPTH 16

struct run {
	size_t n;
	size_t off[MAX_VALUES]; /* a hash of each value: offset-independent comparison */
	uint64_t hash[MAX_VALUES];
	size_t len[MAX_VALUES];
	int rc;
	size_t err_offset;
};

static uint64_t fnv(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
	return h;
}

static void record(struct run *r, struct rc_str v)
{
	if (!v.ptr)
		return;
	if (v.len == 0 || v.len > MAX_VALUE)
		abort();
	uint8_t first = (uint8_t)v.ptr[0], last = (uint8_t)v.ptr[v.len - 1];
	if (first == ' ' || first == '\n' || first == '\t' || first == '\r' || last == ' ')
		abort();
	if (r->n < MAX_VALUES) {
		r->hash[r->n] = fnv(v.ptr, v.len);
		r->len[r->n] = v.len;
	}
	r->n++;
}

/* Feed data in pieces: piece sizes come from a small PRNG seeded by `seed` (0 = all at once). */
static void run(const uint8_t *data, size_t size, uint32_t seed, struct run *r)
{
	struct rc_jsonstream js;
	struct rc_errinfo ei = {0};
	memset(r, 0, sizeof *r);
	if (rc_jsonstream_init(&js, MAX_VALUE, MAX_DEPTH) != RC_OK)
		abort();
	size_t pos = 0;
	int rc = RC_OK;
	while (pos < size && rc == RC_OK) {
		size_t piece = size - pos;
		if (seed) {
			seed = seed * 1103515245u + 12345u;
			size_t want = 1 + (seed >> 16) % 17;
			if (want < piece)
				piece = want;
		}
		size_t left = piece;
		while (left > 0) {
			size_t used;
			struct rc_str v;
			rc = rc_jsonstream_feed(&js, (const char *)data + pos, left, &used, &v,
			                        &ei);
			if (used > left)
				abort();
			pos += used;
			left -= used;
			if (rc != RC_OK)
				break;
			record(r, v);
		}
	}
	if (rc == RC_OK) {
		struct rc_str v;
		rc = rc_jsonstream_end(&js, &v, &ei);
		if (rc == RC_OK)
			record(r, v);
	}
	r->rc = rc;
	r->err_offset = rc == RC_OK ? 0 : ei.offset;
	if (rc_jsonstream_offset(&js) > size)
		abort();
	rc_jsonstream_release(&js);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run whole, split;
	run(data, size, 0, &whole);
	run(data, size, (uint32_t)size * 2654435761u + 1, &split);
	if (whole.rc != split.rc || whole.err_offset != split.err_offset || whole.n != split.n)
		abort();
	size_t n = whole.n < MAX_VALUES ? whole.n : MAX_VALUES;
	for (size_t i = 0; i < n; i++)
		if (whole.hash[i] != split.hash[i] || whole.len[i] != split.len[i])
			abort();
	return 0;
}
