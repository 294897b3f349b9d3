/*
 * Fuzz the ABI decoder (and, with a leading 0xff byte, the type-string parser).
 *
 * Input: byte 0 picks one of the types below (the Morpheus getter shapes and a few nasty ones)
 * and the rest is the data; or 0xff, a type string up to a NUL, then the data. Invariants: a
 * decoded tree re-encodes (the decoder only accepts values the encoder accepts), the canonical
 * re-encoding decodes strictly to an equal tree, and re-encoding that gives the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_morpheus.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const types[] = {
	"(bytes32[]," RC_MORPHEUS_BID_TYPE "[],uint256)",
	"(" RC_MORPHEUS_BID_TYPE ")",
	"(" RC_MORPHEUS_PROVIDER_TYPE ")",
	"(" RC_MORPHEUS_MODEL_TYPE ")",
	"(" RC_MORPHEUS_SESSION_TYPE ")",
	"(bytes32[],uint256)",
	"(address,uint256,bool,bytes,bytes)",
	"(bytes32,uint256,address,uint128)",
	"(uint256[][],string[])",
	"(bytes3[2],int8,int256,uint32[],bytes10,bytes)",
	"((string,bool)[2][],(uint8,(bytes,address)[])[3])",
	"(uint256,bytes[])",
};

static int equal(const struct rc_abi_value *a, const struct rc_abi_value *b)
{
	if (a->kind != b->kind)
		return 0;
	switch (a->kind) {
	case RC_ABI_BYTES:
	case RC_ABI_STRING:
		return a->u.bytes.len == b->u.bytes.len &&
		       (a->u.bytes.len == 0 ||
			memcmp(a->u.bytes.ptr, b->u.bytes.ptr, a->u.bytes.len) == 0);
	case RC_ABI_TUPLE:
	case RC_ABI_ARRAY:
	case RC_ABI_FIXED_ARRAY:
		if (a->u.list.count != b->u.list.count)
			return 0;
		for (size_t i = 0; i < a->u.list.count; i++)
			if (!equal(&a->u.list.items[i], &b->u.list.items[i]))
				return 0;
		return 1;
	default:
		return memcmp(a->u.word, b->u.word, 32) == 0;
	}
}

static void check(const struct rc_abi_type *t, const uint8_t *data, size_t size)
{
	struct rc_abi_value *v = NULL, *v2 = NULL;
	struct rc_errinfo err;
	size_t n, n2;
	int rc = rc_abi_decode(t, data, size, 0, &v, &err);
	if (rc != RC_OK) {
		if (rc != RC_EPARSE || v != NULL || err.offset > size || !err.text[0])
			abort();
		return;
	}
	if (rc_abi_encoded_size(t, v, &n) != RC_OK)
		abort();
	uint8_t *enc = malloc(n ? n : 1), *enc2 = malloc(n ? n : 1);
	if (!enc || !enc2 || rc_abi_encode(t, v, enc, n, &n2) != RC_OK || n2 != n)
		abort();
	if (rc_abi_decode(t, enc, n, RC_ABI_STRICT_PADDING, &v2, NULL) != RC_OK || !equal(v, v2))
		abort();
	if (rc_abi_encode(t, v2, enc2, n, &n2) != RC_OK || n2 != n || memcmp(enc, enc2, n) != 0)
		abort();
	rc_abi_value_free(v2);
	rc_abi_value_free(v);
	free(enc);
	free(enc2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rc_abi_type *t;
	struct rc_errinfo err;
	if (size == 0)
		return 0;
	if (data[0] == 0xff) {
		const uint8_t *nul = memchr(data + 1, 0, size - 1);
		size_t tl = nul ? (size_t)(nul - data - 1) : size - 1;
		int rc = rc_abi_type_parse((const char *)data + 1, tl, &t, &err);
		if (rc != RC_OK) {
			if (rc != RC_EPARSE || err.offset > tl)
				abort();
			return 0;
		}
		if (t->depth > 2 * RC_ABI_MAX_DEPTH + 1)
			abort();
		if (nul)
			check(t, nul + 1, size - tl - 2);
		rc_abi_type_free(t);
		return 0;
	}
	const char *ts = types[data[0] % (sizeof types / sizeof types[0])];
	if (rc_abi_type_parse(ts, strlen(ts), &t, NULL) != RC_OK)
		abort();
	check(t, data + 1, size - 1);
	rc_abi_type_free(t);
	return 0;
}
