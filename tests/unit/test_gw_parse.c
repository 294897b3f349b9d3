/* gateway request parsing: body fields, auth headers, request ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gw_parse.h"

static int parse(const char *s, struct gw_body_info *bi, struct gw_perr *e)
{
	return gw_body_parse(s, strlen(s), 1, bi, e);
}

static void test_gw_parse__reads_the_fields_it_needs(void **state)
{
	(void)state;
	struct gw_body_info bi;
	struct gw_perr e;
	assert_int_equal(parse("{\"model\":\"m1\",\"stream\":true,\"max_tokens\":42,"
			       "\"stream_options\":{\"include_usage\":true},\"seed\":1,\"tools\":[]}",
			       &bi, &e),
			 GW_PARSE_OK);
	assert_string_equal(bi.model, "m1");
	assert_int_equal(bi.model_len, 2);
	assert_int_equal(bi.stream, 1);
	assert_int_equal(bi.max_tokens, 42);
	assert_int_equal(bi.include_usage, 1);
	assert_true(bi.prompt_estimate >= 1);
	assert_int_equal(parse("{\"model\":\"m\",\"max_completion_tokens\":7,\"stream\":null}", &bi, &e), GW_PARSE_OK);
	assert_int_equal(bi.max_tokens, 7);
	assert_int_equal(bi.stream, 0);
}

static void test_gw_parse__rejects_bad_bodies_naming_the_field(void **state)
{
	(void)state;
	struct gw_body_info bi;
	struct gw_perr e;
	static const struct {
		const char *body;
		int rc;
		const char *param;
	} cases[] = {
		{"", GW_PARSE_EJSON, ""},
		{"{", GW_PARSE_EJSON, ""},
		{"[]", GW_PARSE_EJSON, ""},
		{"{\"model\":\"a\"} x", GW_PARSE_EJSON, ""},
		{"{\"model\":\"a\",\"model\":\"b\"}", GW_PARSE_EJSON, ""},
		{"{\"model\":\"\\u0000x\"}", GW_PARSE_EJSON, ""},
		{"{\"model\":\"a\\u0001\"}", GW_PARSE_EFIELD, "model"},
		{"{\"model\":\"\"}", GW_PARSE_EFIELD, "model"},
		{"{\"model\":5}", GW_PARSE_EFIELD, "model"},
		{"{\"messages\":[]}", GW_PARSE_EFIELD, "model"},
		{"{\"model\":\"a\",\"stream\":1}", GW_PARSE_EFIELD, "stream"},
		{"{\"model\":\"a\",\"max_tokens\":0}", GW_PARSE_EFIELD, "max_tokens"},
		{"{\"model\":\"a\",\"max_tokens\":\"9\"}", GW_PARSE_EFIELD, "max_tokens"},
		{"{\"model\":\"a\",\"stream_options\":[]}", GW_PARSE_EFIELD, "stream_options"},
		{"{\"model\":\"a\",\"stream_options\":{\"include_usage\":\"yes\"}}", GW_PARSE_EFIELD,
		 "stream_options.include_usage"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(&e, 0, sizeof e);
		if (parse(cases[i].body, &bi, &e) != cases[i].rc)
			fail_msg("case %zu '%s': %s", i, cases[i].body, e.msg);
		assert_string_equal(e.param, cases[i].param);
		assert_true(e.msg[0] != '\0');
	}
	/* invalid UTF-8 */
	const char bad[] = "{\"model\":\"a\xff\"}";
	assert_int_equal(gw_body_parse(bad, sizeof bad - 1, 1, &bi, &e), GW_PARSE_EJSON);
	/* a long model name */
	char big[400];
	memset(big, 'm', sizeof big);
	memcpy(big, "{\"model\":\"", 10);
	memcpy(big + sizeof big - 3, "\"}", 3);
	assert_int_equal(parse(big, &bi, &e), GW_PARSE_EFIELD);
}

static void test_gw_parse__auth_headers(void **state)
{
	(void)state;
	const char *k;
	size_t n;
	assert_int_equal(gw_auth_parse("Bearer abc", NULL, &k, &n), GW_AUTH_OK);
	assert_int_equal(n, 3);
	assert_memory_equal(k, "abc", 3);
	assert_int_equal(gw_auth_parse("  bearer \t xyz  ", NULL, &k, &n), GW_AUTH_OK);
	assert_memory_equal(k, "xyz", 3);
	assert_int_equal(n, 3);
	assert_int_equal(gw_auth_parse(NULL, " key1 ", &k, &n), GW_AUTH_OK);
	assert_memory_equal(k, "key1", 4);
	assert_int_equal(gw_auth_parse("Bearer a", "b", &k, &n), GW_AUTH_OK);
	assert_memory_equal(k, "a", 1); /* Authorization wins */
	assert_int_equal(gw_auth_parse(NULL, NULL, &k, &n), GW_AUTH_MISSING);
	assert_int_equal(gw_auth_parse("", "", &k, &n), GW_AUTH_MISSING);
	assert_int_equal(gw_auth_parse("Basic dXNlcg==", NULL, &k, &n), GW_AUTH_MALFORMED);
	assert_int_equal(gw_auth_parse("Bearer", NULL, &k, &n), GW_AUTH_MALFORMED);
	assert_int_equal(gw_auth_parse("Bearer ", NULL, &k, &n), GW_AUTH_MALFORMED);
	assert_int_equal(gw_auth_parse("Bearer a b", NULL, &k, &n), GW_AUTH_MALFORMED);
	assert_int_equal(gw_auth_parse("Bearerabc", NULL, &k, &n), GW_AUTH_MALFORMED);
	assert_int_equal(gw_auth_parse(NULL, "a\x01", &k, &n), GW_AUTH_MALFORMED);
	assert_null(k);
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_gw_parse__request_ids(void **state)
{
	(void)state;
	assert_true(gw_request_id_sane("abc-DEF_1.2:3", 13));
	assert_false(gw_request_id_sane("", 0));
	assert_false(gw_request_id_sane("a b", 3));
	assert_false(gw_request_id_sane("a\r\nb", 4));
	char big[65];
	memset(big, 'a', sizeof big);
	assert_true(gw_request_id_sane(big, 64));
	assert_false(gw_request_id_sane(big, 65));
	char a[32], b[32];
	gw_request_id_new(a);
	gw_request_id_new(b);
	assert_int_equal(strlen(a), 26);
	assert_true(gw_request_id_sane(a, strlen(a)));
	assert_string_not_equal(a, b);
	/* across several refills of the per-thread pool: all distinct, all well-formed */
	static char many[2000][32];
	for (int i = 0; i < 2000; i++) {
		gw_request_id_new(many[i]);
		assert_int_equal(strlen(many[i]), 26);
		assert_true(gw_request_id_sane(many[i], 26));
	}
	qsort(many, 2000, 32, cmp_id);
	for (int i = 1; i < 2000; i++)
		assert_string_not_equal(many[i - 1], many[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gw_parse__reads_the_fields_it_needs),
		cmocka_unit_test(test_gw_parse__rejects_bad_bodies_naming_the_field),
		cmocka_unit_test(test_gw_parse__auth_headers),
		cmocka_unit_test(test_gw_parse__request_ids),
	};
	return cmocka_run_group_tests_name("gw_parse", tests, NULL, NULL);
}
