/*
 * rc_rlp: the examples of the Ethereum wiki RLP page / yellow paper appendix B, encode and decode,
 * plus every canonical-form rejection of the decoder with its offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_rlp.h>

static const char lorem[] = "Lorem ipsum dolor sit amet, consectetur adipisicing elit"; /* 56 */

/* Finish w and compare with the expected bytes. */
static void assert_enc(struct rc_rlp_writer *w, const void *want, size_t n)
{
	const uint8_t *p;
	size_t len;
	assert_int_equal(rc_rlp_writer_finish(w, &p, &len), RC_OK);
	assert_int_equal(len, n);
	assert_memory_equal(p, want, n);
	rc_rlp_writer_release(w);
}

static void test_rc_rlp__encode_wiki_strings_and_ints(void **state)
{
	(void)state;
	struct rc_rlp_writer w;
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_bytes(&w, "dog", 3);
	assert_enc(&w, "\x83" "dog", 4);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_bytes(&w, "", 0);
	assert_enc(&w, "\x80", 1);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_bytes(&w, "\x00", 1);
	assert_enc(&w, "\x00", 1);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_bytes(&w, "\x80", 1);
	assert_enc(&w, "\x81\x80", 2);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_uint(&w, 0);
	assert_enc(&w, "\x80", 1);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_uint(&w, 15);
	assert_enc(&w, "\x0f", 1);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_uint(&w, 1024);
	assert_enc(&w, "\x82\x04\x00", 3);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_uint(&w, UINT64_MAX);
	assert_enc(&w, "\x88\xff\xff\xff\xff\xff\xff\xff\xff", 9);
	struct rc_u256 v;
	assert_int_equal(rc_u256_parse_dec(&v, "1000000000000000000", 19, NULL), RC_OK);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_u256(&w, &v);
	assert_enc(&w, "\x88\x0d\xe0\xb6\xb3\xa7\x64\x00\x00", 9);
	rc_u256_from_u64(&v, 0);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_u256(&w, &v);
	assert_enc(&w, "\x80", 1);
	/* the 56-byte string takes the long form */
	uint8_t want[58] = {0xb8, 0x38};
	memcpy(want + 2, lorem, 56);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_put_bytes(&w, lorem, 56);
	assert_enc(&w, want, sizeof want);
}

static void test_rc_rlp__encode_wiki_lists(void **state)
{
	(void)state;
	struct rc_rlp_writer w;
	rc_rlp_writer_init_heap(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_put_bytes(&w, "cat", 3);
	rc_rlp_put_bytes(&w, "dog", 3);
	rc_rlp_list_end(&w);
	assert_enc(&w, "\xc8\x83" "cat" "\x83" "dog", 9);

	rc_rlp_writer_init_heap(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_list_end(&w);
	assert_enc(&w, "\xc0", 1);

	/* set-theoretic three: [ [], [[]], [ [], [[]] ] ] */
	rc_rlp_writer_init_heap(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_list_end(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_list_end(&w);
	rc_rlp_list_end(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_list_end(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_list_end(&w);
	rc_rlp_list_end(&w);
	rc_rlp_list_end(&w);
	rc_rlp_list_end(&w);
	assert_enc(&w, "\xc7\xc0\xc1\xc0\xc3\xc0\xc1\xc0", 8);

	/* a list whose payload is 58 bytes moves to the long form: f8 3a */
	uint8_t want[60] = {0xf8, 0x3a, 0xb8, 0x38};
	memcpy(want + 4, lorem, 56);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_list_begin(&w);
	rc_rlp_put_bytes(&w, lorem, 56);
	rc_rlp_list_end(&w);
	assert_enc(&w, want, sizeof want);
}

static void test_rc_rlp__writer_errors(void **state)
{
	(void)state;
	struct rc_rlp_writer w;
	uint8_t small[4];
	rc_rlp_writer_init(&w, small, sizeof small);
	rc_rlp_put_bytes(&w, "dog", 3);
	assert_int_equal(rc_rlp_writer_finish(&w, NULL, NULL), RC_OK);
	rc_rlp_put_bytes(&w, "cat", 3);
	assert_int_equal(rc_rlp_writer_finish(&w, NULL, NULL), RC_ERANGE);
	rc_rlp_writer_release(&w);

	rc_rlp_writer_init_heap(&w);
	rc_rlp_list_begin(&w);
	assert_int_equal(rc_rlp_writer_finish(&w, NULL, NULL), RC_EINVAL);
	rc_rlp_writer_release(&w);
	rc_rlp_writer_init_heap(&w);
	rc_rlp_list_end(&w);
	assert_int_equal(rc_rlp_writer_finish(&w, NULL, NULL), RC_EINVAL);
	rc_rlp_writer_release(&w);
	rc_rlp_writer_init_heap(&w);
	for (int i = 0; i <= RC_RLP_MAX_DEPTH; i++)
		rc_rlp_list_begin(&w);
	assert_int_equal(rc_rlp_writer_finish(&w, NULL, NULL), RC_EINVAL);
	rc_rlp_writer_release(&w);
	rc_rlp_writer_release(NULL);
}

static void test_rc_rlp__decode_wiki_examples(void **state)
{
	(void)state;
	struct rc_rlp_item it, a, b;
	struct rc_rlp_iter iter;
	uint64_t v;
	assert_int_equal(rc_rlp_decode((const uint8_t *)"\x83" "dog", 4, &it, NULL), RC_OK);
	assert_false(it.list);
	assert_int_equal(it.len, 3);
	assert_memory_equal(it.ptr, "dog", 3);

	const uint8_t catdog[] = "\xc8\x83" "cat" "\x83" "dog";
	assert_int_equal(rc_rlp_validate(catdog, 9, NULL), RC_OK);
	assert_int_equal(rc_rlp_decode(catdog, 9, &it, NULL), RC_OK);
	assert_true(it.list);
	rc_rlp_iter_init(&iter, &it);
	assert_int_equal(rc_rlp_iter_next(&iter, &a, NULL), 1);
	assert_int_equal(rc_rlp_iter_next(&iter, &b, NULL), 1);
	assert_int_equal(rc_rlp_iter_next(&iter, &b, NULL), 0);
	assert_memory_equal(a.ptr, "cat", 3);
	assert_int_equal(a.offset, 1);
	rc_rlp_iter_init(&iter, &it);
	rc_rlp_iter_next(&iter, &a, NULL);
	rc_rlp_iter_next(&iter, &b, NULL);
	assert_memory_equal(b.ptr, "dog", 3);
	assert_int_equal(b.offset, 5);

	assert_int_equal(rc_rlp_decode((const uint8_t *)"\x80", 1, &it, NULL), RC_OK);
	assert_int_equal(rc_rlp_item_uint(&it, &v, NULL), RC_OK);
	assert_int_equal(v, 0);
	assert_int_equal(rc_rlp_decode((const uint8_t *)"\x0f", 1, &it, NULL), RC_OK);
	assert_int_equal(rc_rlp_item_uint(&it, &v, NULL), RC_OK);
	assert_int_equal(v, 15);
	assert_int_equal(rc_rlp_decode((const uint8_t *)"\x82\x04\x00", 3, &it, NULL), RC_OK);
	assert_int_equal(rc_rlp_item_uint(&it, &v, NULL), RC_OK);
	assert_int_equal(v, 1024);
	struct rc_u256 u;
	assert_int_equal(rc_rlp_item_u256(&it, &u, NULL), RC_OK);
	assert_int_equal(u.w[0], 1024);

	const uint8_t set3[] = "\xc7\xc0\xc1\xc0\xc3\xc0\xc1\xc0";
	assert_int_equal(rc_rlp_validate(set3, 8, NULL), RC_OK);
	assert_int_equal(rc_rlp_decode((const uint8_t *)"\xc0", 1, &it, NULL), RC_OK);
	assert_true(it.list);
	assert_int_equal(it.len, 0);

	uint8_t in[58] = {0xb8, 0x38};
	memcpy(in + 2, lorem, 56);
	assert_int_equal(rc_rlp_decode(in, sizeof in, &it, NULL), RC_OK);
	assert_int_equal(it.len, 56);
	assert_memory_equal(it.ptr, lorem, 56);
}

struct bad {
	const char *in;
	size_t len;
	size_t offset;
	const char *text; /* substring of the error text */
};

static void test_rc_rlp__decode_rejects_non_canonical(void **state)
{
	(void)state;
	static const struct bad cases[] = {
		{"", 0, 0, "end of input"},
		{"\x81\x05", 2, 0, "single byte"},
		{"\x81\x7f", 2, 0, "single byte"},
		{"\xb8\x05" "abcde", 7, 0, "long-form"},
		{"\xb8\x00", 2, 1, "leading zero"},
		{"\xb9\x00\x40", 3, 1, "leading zero"},
		{"\xf8\x01\x80", 3, 0, "long-form"},
		{"\xf9\x00\x38", 3, 1, "leading zero"},
		{"\x80\x80", 2, 1, "trailing"},
		{"\x83" "do", 3, 0, "exceeds input"},
		{"\xb8\xff", 2, 0, "exceeds input"},
		{"\xbf\xff\xff\xff\xff\xff\xff\xff\xff", 9, 0, "exceeds input"},
		{"\xbf\x01", 2, 0, "length of length"},
		{"\xc8\x83" "cat" "\x83" "do", 8, 0, "exceeds input"},
		{"\xff\xff\xff\xff\xff\xff\xff\xff\xff", 9, 0, "exceeds input"},
		/* an item overrunning its parent list, though not the input */
		{"\xc2\x83" "abc", 5, 3, "trailing"},
		{"\xc4\xc2\x83" "ab", 5, 2, "exceeds input"},
		{"\xc3\x81\x00\x80", 4, 1, "single byte"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct rc_errinfo err = {0};
		int rc = rc_rlp_validate((const uint8_t *)cases[i].in, cases[i].len, &err);
		if (rc != RC_EPARSE || err.offset != cases[i].offset ||
		    !strstr(err.text, cases[i].text))
			fail_msg("case %zu: rc %d offset %zu text '%s'", i, rc, err.offset, err.text);
	}
}

static void test_rc_rlp__decode_rejects_deep_nesting(void **state)
{
	(void)state;
	uint8_t deep[RC_RLP_MAX_DEPTH + 1];
	for (size_t i = 0; i < sizeof deep; i++)
		deep[i] = (uint8_t)(0xc0 + (sizeof deep - 1 - i));
	struct rc_errinfo err;
	assert_int_equal(rc_rlp_validate(deep, sizeof deep, &err), RC_EPARSE);
	assert_non_null(strstr(err.text, "nested"));
	assert_int_equal(rc_rlp_validate(deep + 1, sizeof deep - 1, &err), RC_OK);
}

static void test_rc_rlp__integer_rejections(void **state)
{
	(void)state;
	struct rc_rlp_item it;
	struct rc_errinfo err;
	uint64_t v;
	struct rc_u256 u;
	assert_int_equal(rc_rlp_decode((const uint8_t *)"\x00", 1, &it, NULL), RC_OK);
	assert_int_equal(rc_rlp_item_uint(&it, &v, &err), RC_EPARSE);
	assert_int_equal(rc_rlp_decode((const uint8_t *)"\x82\x00\x01", 3, &it, NULL), RC_OK);
	assert_int_equal(rc_rlp_item_uint(&it, &v, &err), RC_EPARSE);
	assert_non_null(strstr(err.text, "leading zero"));
	assert_int_equal(rc_rlp_decode((const uint8_t *)"\x89\x01\x00\x00\x00\x00\x00\x00\x00\x00",
					10, &it, NULL),
			 RC_OK);
	assert_int_equal(rc_rlp_item_uint(&it, &v, &err), RC_ERANGE);
	assert_int_equal(rc_rlp_item_u256(&it, &u, &err), RC_OK);
	assert_int_equal(u.w[1], 1);
	assert_int_equal(rc_rlp_decode((const uint8_t *)"\xc0", 1, &it, NULL), RC_OK);
	assert_int_equal(rc_rlp_item_uint(&it, &v, &err), RC_EPARSE);
	uint8_t big[34] = {0xa1, 0x01};
	assert_int_equal(rc_rlp_decode(big, 34, &it, NULL), RC_OK);
	assert_int_equal(rc_rlp_item_u256(&it, &u, &err), RC_ERANGE);
}

static void test_rc_rlp__round_trip_large_list(void **state)
{
	(void)state;
	/* 1000 integers in a list: long-form header with a 2-byte length, decoded back in order. */
	struct rc_rlp_writer w;
	const uint8_t *p;
	size_t n;
	rc_rlp_writer_init_heap(&w);
	rc_rlp_list_begin(&w);
	for (uint64_t i = 0; i < 1000; i++)
		rc_rlp_put_uint(&w, i * 977);
	rc_rlp_list_end(&w);
	assert_int_equal(rc_rlp_writer_finish(&w, &p, &n), RC_OK);
	assert_int_equal(p[0], 0xf9);
	assert_int_equal(rc_rlp_validate(p, n, NULL), RC_OK);
	struct rc_rlp_item top, it;
	struct rc_rlp_iter iter;
	assert_int_equal(rc_rlp_decode(p, n, &top, NULL), RC_OK);
	rc_rlp_iter_init(&iter, &top);
	uint64_t i = 0, v;
	while (rc_rlp_iter_next(&iter, &it, NULL) == 1) {
		assert_int_equal(rc_rlp_item_uint(&it, &v, NULL), RC_OK);
		assert_int_equal(v, i * 977);
		i++;
	}
	assert_int_equal(i, 1000);
	rc_rlp_writer_release(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_rlp__encode_wiki_strings_and_ints),
		cmocka_unit_test(test_rc_rlp__encode_wiki_lists),
		cmocka_unit_test(test_rc_rlp__writer_errors),
		cmocka_unit_test(test_rc_rlp__decode_wiki_examples),
		cmocka_unit_test(test_rc_rlp__decode_rejects_non_canonical),
		cmocka_unit_test(test_rc_rlp__decode_rejects_deep_nesting),
		cmocka_unit_test(test_rc_rlp__integer_rejections),
		cmocka_unit_test(test_rc_rlp__round_trip_large_list),
	};
	return cmocka_run_group_tests_name("rc_rlp", tests, NULL, NULL);
}
