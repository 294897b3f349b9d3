/*
 * rc_abi: type strings, the selectors of morpheus-protocol §3.2, the encoding examples of the
 * Solidity ABI specification ("Examples" and "Use of Dynamic Types"), the §3.3 struct layouts,
 * a getModelActiveBids-shaped reply, and every decode rejection (hostile offsets, lengths,
 * aliasing, dirty words, padding).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_morpheus.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static struct rc_abi_type *parse(const char *s)
{
	struct rc_abi_type *t = NULL;
	struct rc_errinfo err = {0};
	int rc = rc_abi_type_parse(s, strlen(s), &t, &err);
	if (rc != RC_OK)
		fail_msg("parse '%s': %d at %zu: %s", s, rc, err.offset, err.text);
	return t;
}

/* Hex (whitespace ignored) to a fresh heap buffer. */
static uint8_t *unhex(const char *h, size_t *n)
{
	size_t len = strlen(h);
	char *clean = malloc(len + 1);
	size_t j = 0;
	for (size_t i = 0; i < len; i++)
		if (h[i] != ' ' && h[i] != '\n')
			clean[j++] = h[i];
	uint8_t *out = malloc(j / 2 + 1);
	assert_int_equal(rc_hex_decode(clean, j, out, j / 2, n, NULL), RC_OK);
	free(clean);
	return out;
}

static void assert_call(const char *sig, const struct rc_abi_value *args, size_t n,
			const char *want_hex)
{
	struct rc_buf b = RC_BUF_INIT;
	size_t wn;
	uint8_t *want = unhex(want_hex, &wn);
	struct rc_errinfo err = {0};
	int rc = rc_abi_encode_call((struct rc_str){sig, strlen(sig)}, args, n, &b, &err);
	if (rc != RC_OK)
		fail_msg("encode %s: %d %s", sig, rc, err.text);
	assert_int_equal(b.len, wn);
	assert_memory_equal(b.ptr, want, wn);
	free(want);
	rc_buf_release(&b);
}

#define W0 "0000000000000000000000000000000000000000000000000000000000000000"
#define WORD(x) "00000000000000000000000000000000000000000000000000000000000000" x

/* ---- types --------------------------------------------------------------------------------- */

static void test_rc_abi__type_parse_shapes(void **state)
{
	(void)state;
	struct rc_abi_type *t = parse("(bytes32[]," RC_MORPHEUS_BID_TYPE "[],uint256)");
	assert_int_equal(t->kind, RC_ABI_TUPLE);
	assert_int_equal(t->count, 3);
	assert_true(t->dynamic);
	assert_int_equal(t->head, 32);
	const struct rc_abi_type *ids = t->child, *bids = ids->next, *total = bids->next;
	assert_int_equal(ids->kind, RC_ABI_ARRAY);
	assert_int_equal(ids->child->kind, RC_ABI_FIXED_BYTES);
	assert_int_equal(ids->child->size, 32);
	assert_int_equal(bids->kind, RC_ABI_ARRAY);
	assert_int_equal(bids->child->kind, RC_ABI_TUPLE);
	assert_false(bids->child->dynamic);
	assert_int_equal(bids->child->head, 6 * 32);
	assert_int_equal(total->kind, RC_ABI_UINT);
	assert_int_equal(total->size, 256);
	assert_null(total->next);
	assert_int_equal(t->depth, 4);
	rc_abi_type_free(t);

	t = parse("uint");
	assert_int_equal(t->size, 256);
	rc_abi_type_free(t);
	t = parse("int8[2][3]");
	assert_int_equal(t->kind, RC_ABI_FIXED_ARRAY);
	assert_int_equal(t->count, 3);
	assert_int_equal(t->child->count, 2);
	assert_int_equal(t->child->child->kind, RC_ABI_INT);
	assert_int_equal(t->head, 6 * 32);
	assert_false(t->dynamic);
	rc_abi_type_free(t);
	t = parse("(string,bool)[2]");
	assert_true(t->dynamic);
	assert_int_equal(t->head, 32);
	rc_abi_type_free(t);
	t = parse(RC_MORPHEUS_MODEL_TYPE);
	assert_int_equal(t->count, 8);
	rc_abi_type_free(t);
	rc_abi_type_free(NULL);
}

static void test_rc_abi__type_parse_rejections(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		size_t offset;
	} bad[] = {
		{"", 0},           {"uint7", 0},        {"uint264", 0},   {"int0", 0},
		{"uint08", 0},     {"bytes0", 0},       {"bytes33", 0},   {"()", 1},
		{"(uint256", 8},   {"(uint256,)", 9},   {"uint256[0]", 8}, {"uint256[", 8},
		{"uint256[01]", 8}, {"foo", 0},          {"uint256 ", 7},  {"(uint256))", 9},
		{"Uint256", 0},    {"fixed128x18", 0},  {"uint256[-1]", 8}, {"address,", 7},
		{"uint256[9999999]", 8},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct rc_abi_type *t = (void *)1;
		struct rc_errinfo err = {0};
		int rc = rc_abi_type_parse(bad[i].s, strlen(bad[i].s), &t, &err);
		if (rc != RC_EPARSE || t != NULL || err.offset != bad[i].offset)
			fail_msg("'%s': rc %d offset %zu (%s)", bad[i].s, rc, err.offset, err.text);
	}
	/* nesting limit */
	char deep[64];
	memset(deep, '(', 40);
	memcpy(deep + 40, "bool", 5);
	struct rc_abi_type *t;
	struct rc_errinfo err;
	assert_int_equal(rc_abi_type_parse(deep, strlen(deep), &t, &err), RC_EPARSE);
	assert_non_null(strstr(err.text, "deep"));
	/* huge static types are refused rather than overflowing sizes */
	const char *huge = "uint256[65536][65536][65536]";
	assert_int_equal(rc_abi_type_parse(huge, strlen(huge), &t, &err), RC_EPARSE);
}

static void test_rc_abi__selectors_match_spec_table(void **state)
{
	(void)state;
	/* morpheus-protocol §3.2 and §3.5 */
	static const struct {
		const char *sig, *sel;
	} tab[] = {
		{"transfer(address,uint256)", "a9059cbb"},
		{"getModelActiveBids(bytes32,uint256,uint256)", "8a683b6e"},
		{"getBid(bytes32)", "91704e1e"},
		{"isBidActive(bytes32)", "1345df58"},
		{"getProvider(address)", "55f21eb7"},
		{"getProviderModelStats(bytes32,address)", "1b26c116"},
		{"getModel(bytes32)", "21e7c498"},
		{"openSession(address,uint256,bool,bytes,bytes)", "a85a1782"},
		{"closeSession(bytes,bytes)", "42f77a31"},
		{"getSession(bytes32)", "39b240bd"},
		{"getSessionId(address,address,bytes32,uint256)", "4d689ffd"},
		{"getUserStakesOnHold(address,uint8)", "967885df"},
		{"totalMORSupply(uint128)", "6d0cfe5a"},
		{"aggregate((address,bytes)[])", "252dba42"},
		{"increaseAllowance(address,uint256)", "39509351"},
		{"SessionTooShort()", "f4d7eed5"},
	};
	for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		uint8_t sel[4];
		char hex[9];
		rc_abi_selector(tab[i].sig, strlen(tab[i].sig), sel);
		rc_hex_encode(sel, 4, hex, sizeof hex);
		assert_string_equal(hex, tab[i].sel);
	}
}

/* ---- encoding: the Solidity ABI specification examples ------------------------------------ */

static void test_rc_abi__encode_spec_examples(void **state)
{
	(void)state;
	struct rc_abi_value a[4], inner[8];

	/* baz(uint32,bool) with 69, true */
	rc_abi_set_uint(&a[0], 69);
	rc_abi_set_bool(&a[1], true);
	assert_call("baz(uint32,bool)", a, 2, "cdcd77c0" WORD("45") WORD("01"));

	/* bar(bytes3[2]) with ["abc", "def"] */
	rc_abi_set_fixed_bytes(&inner[0], "abc", 3);
	rc_abi_set_fixed_bytes(&inner[1], "def", 3);
	rc_abi_set_array(&a[0], inner, 2);
	assert_call("bar(bytes3[2])", a, 1,
		    "fce353f6"
		    "6162630000000000000000000000000000000000000000000000000000000000"
		    "6465660000000000000000000000000000000000000000000000000000000000");

	/* sam(bytes,bool,uint256[]) with "dave", true, [1,2,3] */
	rc_abi_set_bytes(&a[0], "dave", 4);
	rc_abi_set_bool(&a[1], true);
	for (int i = 0; i < 3; i++)
		rc_abi_set_uint(&inner[i], (uint64_t)i + 1);
	rc_abi_set_array(&a[2], inner, 3);
	assert_call("sam(bytes,bool,uint256[])", a, 3,
		    "a5643bf2" WORD("60") WORD("01") WORD("a0") WORD("04")
		    "6461766500000000000000000000000000000000000000000000000000000000" WORD("03")
			    WORD("01") WORD("02") WORD("03"));

	/* f(uint256,uint32[],bytes10,bytes) with 0x123, [0x456, 0x789], "1234567890",
	 * "Hello, world!" */
	rc_abi_set_uint(&a[0], 0x123);
	rc_abi_set_uint(&inner[0], 0x456);
	rc_abi_set_uint(&inner[1], 0x789);
	rc_abi_set_array(&a[1], inner, 2);
	rc_abi_set_fixed_bytes(&a[2], "1234567890", 10);
	rc_abi_set_bytes(&a[3], "Hello, world!", 13);
	assert_call("f(uint256,uint32[],bytes10,bytes)", a, 4,
		    "8be65246"
		    "0000000000000000000000000000000000000000000000000000000000000123" WORD("80")
		    "3132333435363738393000000000000000000000000000000000000000000000" WORD("e0")
			    WORD("02")
		    "0000000000000000000000000000000000000000000000000000000000000456"
		    "0000000000000000000000000000000000000000000000000000000000000789" WORD("0d")
		    "48656c6c6f2c20776f726c642100000000000000000000000000000000000000");

	/* g(uint256[][],string[]) with [[1, 2], [3]], ["one", "two", "three"] */
	struct rc_abi_value ints[3], rows[2], strs[3];
	rc_abi_set_uint(&ints[0], 1);
	rc_abi_set_uint(&ints[1], 2);
	rc_abi_set_uint(&ints[2], 3);
	rc_abi_set_array(&rows[0], ints, 2);
	rc_abi_set_array(&rows[1], ints + 2, 1);
	rc_abi_set_array(&a[0], rows, 2);
	rc_abi_set_string(&strs[0], "one", 3);
	rc_abi_set_string(&strs[1], "two", 3);
	rc_abi_set_string(&strs[2], "three", 5);
	rc_abi_set_array(&a[1], strs, 3);
	assert_call("g(uint256[][],string[])", a, 2,
		    "2289b18c" WORD("40") "0000000000000000000000000000000000000000000000000000000000000140"
			    WORD("02") WORD("40") WORD("a0") WORD("02") WORD("01") WORD("02")
				    WORD("01") WORD("03") WORD("03") WORD("60") WORD("a0") WORD("e0")
					    WORD("03")
		    "6f6e650000000000000000000000000000000000000000000000000000000000" WORD("03")
		    "74776f0000000000000000000000000000000000000000000000000000000000" WORD("05")
		    "7468726565000000000000000000000000000000000000000000000000000000");
}

static void test_rc_abi__encode_signed_and_range_checks(void **state)
{
	(void)state;
	struct rc_abi_value a[2];
	rc_abi_set_int(&a[0], -1);
	rc_abi_set_int(&a[1], -128);
	assert_call("h(int256,int8)", a, 2,
		    "6e0464fc"
		    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
		    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff80");

	struct rc_abi_type *t = parse("(int8,uint8)");
	struct rc_abi_value v, items[2];
	uint8_t out[64];
	size_t n;
	rc_abi_set_tuple(&v, items, 2);
	rc_abi_set_int(&items[0], 127);
	rc_abi_set_uint(&items[1], 255);
	assert_int_equal(rc_abi_encode(t, &v, out, sizeof out, &n), RC_OK);
	assert_int_equal(n, 64);
	rc_abi_set_int(&items[0], 128);
	assert_int_equal(rc_abi_encode(t, &v, out, sizeof out, &n), RC_ERANGE);
	rc_abi_set_int(&items[0], -129);
	assert_int_equal(rc_abi_encode(t, &v, out, sizeof out, &n), RC_ERANGE);
	rc_abi_set_int(&items[0], -128);
	rc_abi_set_uint(&items[1], 256);
	assert_int_equal(rc_abi_encode(t, &v, out, sizeof out, &n), RC_ERANGE);
	rc_abi_set_uint(&items[1], 1);
	assert_int_equal(rc_abi_encode(t, &v, out, 63, &n), RC_ERANGE); /* buffer too small */
	rc_abi_set_bool(&items[1], true); /* kind mismatch */
	assert_int_equal(rc_abi_encode(t, &v, out, sizeof out, &n), RC_EINVAL);
	rc_abi_set_tuple(&v, items, 1); /* member count mismatch */
	assert_int_equal(rc_abi_encode(t, &v, out, sizeof out, &n), RC_EINVAL);
	rc_abi_type_free(t);

	t = parse("uint256[3]");
	rc_abi_set_array(&v, items, 2);
	assert_int_equal(rc_abi_encoded_size(t, &v, &n), RC_EINVAL);
	rc_abi_type_free(t);

	struct rc_buf b = RC_BUF_INIT;
	struct rc_errinfo err;
	/* no arguments: the selector alone (getBidFee() is 8dbb4647, §3.2) */
	assert_int_equal(rc_abi_encode_call(RC_STR_LIT("getBidFee()"), NULL, 0, &b, &err), RC_OK);
	assert_int_equal(b.len, 4);
	assert_memory_equal(b.ptr, "\x8d\xbb\x46\x47", 4);
	assert_int_equal(rc_abi_encode_call(RC_STR_LIT("getBidFee()"), a, 1, &b, &err), RC_EINVAL);
	rc_buf_reset(&b);
	assert_int_equal(rc_abi_encode_call(RC_STR_LIT("f(uint257)"), a, 1, &b, &err), RC_EPARSE);
	assert_int_equal(err.offset, 2);
	assert_int_equal(rc_abi_encode_call(RC_STR_LIT("(uint256)"), a, 1, &b, &err), RC_EPARSE);
	assert_int_equal(rc_abi_encode_call(RC_STR_LIT("f"), a, 1, &b, &err), RC_EPARSE);
	assert_int_equal(b.len, 0);
	rc_buf_release(&b);
}

/* ---- decoding ------------------------------------------------------------------------------ */

static void test_rc_abi__decode_spec_example_round_trip(void **state)
{
	(void)state;
	size_t n;
	/* the g(uint256[][],string[]) arguments, without the selector */
	uint8_t *data = unhex(WORD("40") "0000000000000000000000000000000000000000000000000000000000000140"
		    WORD("02") WORD("40") WORD("a0") WORD("02") WORD("01") WORD("02") WORD("01")
			    WORD("03") WORD("03") WORD("60") WORD("a0") WORD("e0") WORD("03")
		    "6f6e650000000000000000000000000000000000000000000000000000000000" WORD("03")
		    "74776f0000000000000000000000000000000000000000000000000000000000" WORD("05")
		    "7468726565000000000000000000000000000000000000000000000000000000",
		    &n);
	struct rc_abi_type *t = parse("(uint256[][],string[])");
	struct rc_abi_value *v;
	assert_int_equal(rc_abi_decode(t, data, n, RC_ABI_STRICT_PADDING, &v, NULL), RC_OK);
	const struct rc_abi_value *rows = v->u.list.items[0].u.list.items;
	const struct rc_abi_value *strs = v->u.list.items[1].u.list.items;
	uint64_t x;
	assert_int_equal(v->u.list.items[0].u.list.count, 2);
	assert_int_equal(rows[0].u.list.count, 2);
	assert_int_equal(rows[1].u.list.count, 1);
	assert_int_equal(rc_abi_get_uint(&rows[0].u.list.items[1], &x), RC_OK);
	assert_int_equal(x, 2);
	assert_int_equal(rc_abi_get_uint(&rows[1].u.list.items[0], &x), RC_OK);
	assert_int_equal(x, 3);
	assert_int_equal(v->u.list.items[1].u.list.count, 3);
	assert_int_equal(strs[2].kind, RC_ABI_STRING);
	assert_int_equal(strs[2].u.bytes.len, 5);
	assert_memory_equal(strs[2].u.bytes.ptr, "three", 5);
	assert_ptr_equal(strs[2].u.bytes.ptr, data + n - 32); /* zero-copy */
	/* re-encoding gives the same bytes */
	uint8_t out[1024];
	size_t m;
	assert_int_equal(rc_abi_encode(t, v, out, sizeof out, &m), RC_OK);
	assert_int_equal(m, n);
	assert_memory_equal(out, data, n);
	rc_abi_value_free(v);
	rc_abi_type_free(t);
	free(data);
}

static void test_rc_abi__struct_layouts_of_section_3_3(void **state)
{
	(void)state;
	/* getProvider returns a dynamic struct: word 0x20, then a 6-word head whose endpoint
	 * offset is 0xc0 (relative to the tuple), then the string. */
	struct rc_abi_type *t = parse("(" RC_MORPHEUS_PROVIDER_TYPE ")");
	struct rc_abi_value top, prov, f[6];
	struct rc_u256 stake;
	rc_u256_from_u64(&stake, 100000000000000000ull);
	rc_abi_set_string(&f[0], "host.example:3333", 17);
	rc_abi_set_u256(&f[1], &stake);
	rc_abi_set_uint(&f[2], 1735689600);
	rc_abi_set_uint(&f[3], 0);
	rc_abi_set_uint(&f[4], 0);
	rc_abi_set_bool(&f[5], false);
	rc_abi_set_tuple(&prov, f, 6);
	rc_abi_set_tuple(&top, &prov, 1);
	uint8_t out[512];
	size_t n;
	assert_int_equal(rc_abi_encode(t, &top, out, sizeof out, &n), RC_OK);
	assert_int_equal(n, 32 + 6 * 32 + 32 + 32);
	assert_int_equal(out[31], 0x20);
	assert_int_equal(out[32 + 31], 0xc0);
	assert_int_equal(out[32 + 6 * 32 + 31], 17);
	struct rc_abi_value *v;
	assert_int_equal(rc_abi_decode(t, out, n, RC_ABI_STRICT_PADDING, &v, NULL), RC_OK);
	const struct rc_abi_value *p = v->u.list.items[0].u.list.items;
	assert_int_equal(p[0].u.bytes.len, 17);
	assert_memory_equal(p[0].u.bytes.ptr, "host.example:3333", 17);
	struct rc_u256 got;
	assert_int_equal(rc_abi_get_u256(&p[1], &got), RC_OK);
	assert_int_equal(rc_u256_cmp(&got, &stake), 0);
	rc_abi_value_free(v);
	rc_abi_type_free(t);

	/* a static struct (Bid, 6 words) returns without any offset word */
	t = parse("(" RC_MORPHEUS_BID_TYPE ")");
	uint8_t zeros[6 * 32] = {0};
	assert_int_equal(rc_abi_decode(t, zeros, sizeof zeros, 0, &v, NULL), RC_OK);
	assert_int_equal(v->u.list.items[0].u.list.count, 6);
	rc_abi_value_free(v);
	assert_int_equal(rc_abi_decode(t, zeros, sizeof zeros - 1, 0, &v, NULL), RC_EPARSE);
	assert_null(v);
	rc_abi_type_free(t);
}

static void test_rc_abi__active_bids_reply_round_trip(void **state)
{
	(void)state;
	enum { N = 255 };
	struct rc_abi_type *t = parse("(bytes32[]," RC_MORPHEUS_BID_TYPE "[],uint256)");
	struct rc_abi_value top[3], ids[N], bids[N], fields[N][6];
	uint8_t id[N][32], provider[20];
	for (int i = 0; i < N; i++) {
		memset(id[i], i, 32);
		memset(provider, 0x70 + (i & 7), 20);
		rc_abi_set_fixed_bytes(&ids[i], id[i], 32);
		rc_abi_set_address(&fields[i][0], provider);
		rc_abi_set_fixed_bytes(&fields[i][1], id[i], 32);
		rc_abi_set_uint(&fields[i][2], 10000000000000ull + (uint64_t)i);
		rc_abi_set_uint(&fields[i][3], (uint64_t)i);
		rc_abi_set_uint(&fields[i][4], 1735689600 + (uint64_t)i);
		rc_abi_set_uint(&fields[i][5], 0);
		rc_abi_set_tuple(&bids[i], fields[i], 6);
	}
	rc_abi_set_array(&top[0], ids, N);
	rc_abi_set_array(&top[1], bids, N);
	rc_abi_set_uint(&top[2], 1000);
	struct rc_abi_value root;
	rc_abi_set_tuple(&root, top, 3);
	size_t n;
	assert_int_equal(rc_abi_encoded_size(t, &root, &n), RC_OK);
	assert_int_equal(n, 3 * 32 + 32 + N * 32 + 32 + N * 6 * 32);
	uint8_t *buf = malloc(n);
	assert_int_equal(rc_abi_encode(t, &root, buf, n, &n), RC_OK);
	struct rc_abi_value *v;
	assert_int_equal(rc_abi_decode(t, buf, n, RC_ABI_STRICT_PADDING, &v, NULL), RC_OK);
	assert_int_equal(v->u.list.items[1].u.list.count, N);
	for (int i = 0; i < N; i++) {
		const struct rc_abi_value *b = &v->u.list.items[1].u.list.items[i];
		uint8_t addr[20];
		uint64_t price, created;
		assert_int_equal(rc_abi_get_address(&b->u.list.items[0], addr), RC_OK);
		assert_int_equal(addr[0], 0x70 + (i & 7));
		assert_int_equal(rc_abi_get_uint(&b->u.list.items[2], &price), RC_OK);
		assert_int_equal(price, 10000000000000ull + (uint64_t)i);
		assert_int_equal(rc_abi_get_uint(&b->u.list.items[4], &created), RC_OK);
		assert_int_equal(created, 1735689600 + (uint64_t)i);
		assert_memory_equal(v->u.list.items[0].u.list.items[i].u.word, id[i], 32);
	}
	uint64_t total;
	assert_int_equal(rc_abi_get_uint(&v->u.list.items[2], &total), RC_OK);
	assert_int_equal(total, 1000);
	/* getters refuse the wrong kind */
	bool flag;
	assert_int_equal(rc_abi_get_bool(&v->u.list.items[2], &flag), RC_EINVAL);
	rc_abi_value_free(v);
	free(buf);
	rc_abi_type_free(t);
}

/* Expect decode of hex data as type to fail with RC_EPARSE at offset, text containing what. */
static void assert_reject(const char *type, const char *hex, unsigned flags, size_t offset,
			  const char *what)
{
	struct rc_abi_type *t = parse(type);
	size_t n;
	uint8_t *data = unhex(hex, &n);
	struct rc_abi_value *v = (void *)1;
	struct rc_errinfo err = {0};
	int rc = rc_abi_decode(t, data, n, flags, &v, &err);
	if (rc != RC_EPARSE || v != NULL || err.offset != offset || !strstr(err.text, what))
		fail_msg("%s: rc %d offset %zu text '%s'", type, rc, err.offset, err.text);
	free(data);
	rc_abi_type_free(t);
}

static void test_rc_abi__decode_rejects_hostile_input(void **state)
{
	(void)state;
	/* offset past the end */
	assert_reject("(bytes)", WORD("60") WORD("00"), 0, 0, "offset out of range");
	/* offset exactly at the end: nothing to read there */
	assert_reject("(bytes)", WORD("40") WORD("00"), 0, 64, "too short");
	/* offset with high bits set (would wrap a size_t) */
	assert_reject("(bytes)", "ff00000000000000000000000000000000000000000000000000000000000020"
				 WORD("00"),
		      0, 0, "offset out of range");
	/* bytes length far past the data */
	assert_reject("(bytes)", WORD("20") "00000000000000000000000000000000000000000000000000000000ffffffff",
		      0, 32, "length exceeds");
	assert_reject("(bytes)", WORD("20") WORD("21") W0, 0, 32, "length exceeds");
	/* array length larger than the data could hold */
	assert_reject("(uint256[])", WORD("20") WORD("03") WORD("01") WORD("02"), 0, 32,
		      "array length exceeds");
	assert_reject("(uint256[])", WORD("20") "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff0",
		      0, 32, "array length exceeds");
	/* truncated static data */
	assert_reject("(uint256,uint256)", WORD("01") "00", 0, 0, "too short");
	assert_reject("(uint256)", "", 0, 0, "too short");
	/* dirty words */
	assert_reject("(address)", "0100000000000000000000000000000000000000000000000000000000000000", 0,
		      0, "dirty");
	assert_reject("(uint32)", "0000000000000000000000000000000000000000000000000000000100000000", 0,
		      0, "dirty");
	assert_reject("(bool)", WORD("02"), 0, 0, "dirty");
	assert_reject("(int8)", WORD("80"), 0, 0, "dirty"); /* -128 must be sign-extended */
	assert_reject("(int8)", "ff0000000000000000000000000000000000000000000000000000000000007f", 0, 0,
		      "dirty");
	assert_reject("(bytes2)", "6162630000000000000000000000000000000000000000000000000000000000", 0,
		      0, "dirty");
	/* non-zero padding after bytes, only in strict mode */
	assert_reject("(bytes)", WORD("20") WORD("01") "6101000000000000000000000000000000000000000000000000000000000000",
		      RC_ABI_STRICT_PADDING, 65, "padding");
	assert_reject("(bytes)", WORD("20") WORD("01") "61", RC_ABI_STRICT_PADDING, 65, "padding");
	struct rc_abi_type *t = parse("(bytes)");
	size_t n;
	uint8_t *d = unhex(WORD("20") WORD("01") "6101000000000000000000000000000000000000000000000000000000000000", &n);
	struct rc_abi_value *v;
	assert_int_equal(rc_abi_decode(t, d, n, 0, &v, NULL), RC_OK);
	assert_int_equal(v->u.list.items[0].u.bytes.len, 1);
	rc_abi_value_free(v);
	free(d);
	rc_abi_type_free(t);
}

static void test_rc_abi__decode_stops_offset_aliasing(void **state)
{
	(void)state;
	/* bytes32[][] whose 200 outer offsets all point at one inner array of 200 elements:
	 * 40 000 values out of ~13 KB. Canonical data that size holds at most ~1 700 values. */
	enum { K = 200 };
	size_t words = 1 + 1 + K + 1 + K;
	uint8_t *d = calloc(words, 32);
	size_t base = 64; /* outer elements' offsets are relative to after the length word */
	d[31] = 0x20;     /* tuple offset */
	d[63] = K;        /* outer length */
	for (int i = 0; i < K; i++) {
		size_t off = (size_t)K * 32; /* every offset -> the same inner array */
		d[base + 32 * i + 30] = (uint8_t)(off >> 8);
		d[base + 32 * i + 31] = (uint8_t)off;
	}
	d[base + K * 32 + 31] = K; /* inner length */
	struct rc_abi_type *t = parse("(bytes32[][])");
	struct rc_abi_value *v = (void *)1;
	struct rc_errinfo err;
	assert_int_equal(rc_abi_decode(t, d, words * 32, 0, &v, &err), RC_EPARSE);
	assert_null(v);
	assert_non_null(strstr(err.text, "too many values"));
	/* the same data with the outer length 2 is merely non-canonical, and accepted */
	d[63] = 2;
	assert_int_equal(rc_abi_decode(t, d, words * 32, 0, &v, &err), RC_OK);
	assert_int_equal(v->u.list.items[0].u.list.count, 2);
	assert_int_equal(v->u.list.items[0].u.list.items[1].u.list.count, K);
	rc_abi_value_free(v);
	/* an offset pointing back at itself just decodes as a (weird) value, no loop */
	memset(d, 0, words * 32);
	d[31] = 0x20;
	d[63] = 1; /* outer length 1, element offset 0 -> inner array at its own offset word */
	assert_int_equal(rc_abi_decode(t, d, 96, 0, &v, &err), RC_OK);
	assert_int_equal(v->u.list.items[0].u.list.items[0].u.list.count, 0);
	rc_abi_value_free(v);
	rc_abi_type_free(t);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_abi__type_parse_shapes),
		cmocka_unit_test(test_rc_abi__type_parse_rejections),
		cmocka_unit_test(test_rc_abi__selectors_match_spec_table),
		cmocka_unit_test(test_rc_abi__encode_spec_examples),
		cmocka_unit_test(test_rc_abi__encode_signed_and_range_checks),
		cmocka_unit_test(test_rc_abi__decode_spec_example_round_trip),
		cmocka_unit_test(test_rc_abi__struct_layouts_of_section_3_3),
		cmocka_unit_test(test_rc_abi__active_bids_reply_round_trip),
		cmocka_unit_test(test_rc_abi__decode_rejects_hostile_input),
		cmocka_unit_test(test_rc_abi__decode_stops_offset_aliasing),
	};
	return cmocka_run_group_tests_name("rc_abi", tests, NULL, NULL);
}
