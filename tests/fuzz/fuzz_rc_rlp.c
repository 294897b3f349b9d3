/*
 * Fuzz the strict RLP decoder. Invariant: anything rc_rlp_validate() accepts is canonical, so
 * walking it with the iterator and re-encoding every item through the writer must give back the
 * input byte for byte; and every integer-looking item either reads or fails cleanly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_rlp.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void reencode(const struct rc_rlp_item *it, struct rc_rlp_writer *w, unsigned depth)
{
	if (depth > RC_RLP_MAX_DEPTH)
		abort();
	if (!it->list) {
		uint64_t v;
		struct rc_u256 u;
		int rc = rc_rlp_item_uint(it, &v, NULL);
		if (rc == RC_OK && (it->len > 8 || (it->len && it->ptr[0] == 0)))
			abort();
		if (rc_rlp_item_u256(it, &u, NULL) == RC_OK && rc == RC_OK && u.w[0] != v)
			abort();
		rc_rlp_put_bytes(w, it->ptr, it->len);
		return;
	}
	struct rc_rlp_iter iter;
	struct rc_rlp_item sub;
	int rc;
	rc_rlp_list_begin(w);
	rc_rlp_iter_init(&iter, it);
	while ((rc = rc_rlp_iter_next(&iter, &sub, NULL)) == 1)
		reencode(&sub, w, depth + 1);
	if (rc != 0)
		abort(); /* validate said the whole tree is fine */
	rc_rlp_list_end(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rc_errinfo err;
	if (rc_rlp_validate(data, size, &err) != RC_OK) {
		if (err.offset > size || !memchr(err.text, '\0', sizeof err.text) || !err.text[0])
			abort();
		return 0;
	}
	struct rc_rlp_item top;
	if (rc_rlp_decode(data, size, &top, NULL) != RC_OK || top.size != size)
		abort();
	struct rc_rlp_writer w;
	const uint8_t *out;
	size_t n;
	rc_rlp_writer_init_heap(&w);
	reencode(&top, &w, 1);
	if (rc_rlp_writer_finish(&w, &out, &n) != RC_OK || n != size || memcmp(out, data, n) != 0)
		abort();
	rc_rlp_writer_release(&w);
	return 0;
}
