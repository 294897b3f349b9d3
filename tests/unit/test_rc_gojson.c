/*
 * rc_gojson: Go encoding/json string escaping and the canonical object writer.
 *
 * Expected outputs for valid text come from ../shared/vectors/gojson.py (the oracle); the
 * invalid-UTF-8 expectations follow Go's utf8.DecodeRune (each byte that does not start a
 * complete shortest-form sequence becomes one \ufffd and decoding resumes at the next byte).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include <router-core/rc_gojson.h>

struct esc_case {
	const char *in;
	size_t in_len;
	const char *want;
};

#define C(in, want)                                                                                \
	{                                                                                          \
		in, sizeof(in) - 1, want                                                           \
	}

static const struct esc_case escape_cases[] = {
        /* HTML-sensitive bytes */
        C("a<b & c>d", "\"a\\u003cb \\u0026 c\\u003ed\""),
        C("</script>&amp;", "\"\\u003c/script\\u003e\\u0026amp;\""),
        /* JavaScript line terminators */
        C("x\xe2\x80\xa8y\xe2\x80\xa9z", "\"x\\u2028y\\u2029z\""),
        /* the neighbours of U+2028 are left alone */
        C("\xe2\x80\xa7\xe2\x80\xaa", "\"\xe2\x80\xa7\xe2\x80\xaa\""),
        /* short escapes, Go >= 1.22 includes \b and \f */
        C("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\""),
        /* NUL, other control bytes in lowercase hex; DEL verbatim */
        C("\x00\x01\x0b\x1a\x1f\x7f", "\"\\u0000\\u0001\\u000b\\u001a\\u001f\x7f\""),
        C("say \"hi\" \\ /path", "\"say \\\"hi\\\" \\\\ /path\""),
        /* valid multi-byte UTF-8 verbatim: 2, 3 and 4 bytes, and a literal U+FFFD */
        C("emoji \xf0\x9f\x98\x80 \xc3\xa9 \xe4\xb8\xad \xef\xbf\xbd",
          "\"emoji \xf0\x9f\x98\x80 \xc3\xa9 \xe4\xb8\xad \xef\xbf\xbd\""),
        /* largest code point U+10FFFF is valid */
        C("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\""),
        C("", "\"\""),
        /* invalid UTF-8: lone continuation bytes */
        C("a\x80"
          "b\xbf",
          "\"a\\ufffdb\\ufffd\""),
        /* overlong encodings: C0/C1 never start a sequence; E0 80.., F0 80.. */
        C("\xc0\x80", "\"\\ufffd\\ufffd\""),
        C("\xc1\xbf", "\"\\ufffd\\ufffd\""),
        C("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\""),
        C("\xf0\x8f\xbf\xbf", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""),
        /* UTF-16 surrogates encoded in UTF-8 (U+D800, U+DFFF) */
        C("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""),
        C("\xed\xbf\xbf", "\"\\ufffd\\ufffd\\ufffd\""),
        /* U+D7FF, just below the surrogates, is valid */
        C("\xed\x9f\xbf", "\"\xed\x9f\xbf\""),
        /* above U+10FFFF, and bytes that can never appear */
        C("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""),
        C("\xf5\xfe\xff", "\"\\ufffd\\ufffd\\ufffd\""),
        /* truncated multi-byte sequences: at the end, and followed by ASCII */
        C("\xe2\x82", "\"\\ufffd\\ufffd\""),
        C("\xe2\x82"
          "A",
          "\"\\ufffd\\ufffdA\""),
        C("\xf0\x9f\x98", "\"\\ufffd\\ufffd\\ufffd\""),
        C("\xf0\x9f\x98<", "\"\\ufffd\\ufffd\\ufffd\\u003c\""),
        C("\xc3", "\"\\ufffd\""),
        /* a bad byte right before a valid sequence does not swallow it */
        C("\xc3\xc3\xa9", "\"\\ufffd\xc3\xa9\""),
        /* truncated U+2028 is two replacement characters, not an escape */
        C("\xe2\x80", "\"\\ufffd\\ufffd\""),
};

static void test_rc_gojson__escapes_like_go(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	for (size_t i = 0; i < sizeof escape_cases / sizeof escape_cases[0]; i++) {
		const struct esc_case *c = &escape_cases[i];
		rc_buf_reset(&b);
		assert_int_equal(rc_gojson_append_string(&b, c->in, c->in_len), RC_OK);
		if (b.len != strlen(c->want) || memcmp(b.ptr, c->want, b.len) != 0)
			fail_msg("case %zu: got [%s] want [%s]", i, b.ptr, c->want);
	}
	rc_buf_release(&b);
}

/* §2.9.2 ESCAPE: the decoded prompt string and the Go receiver's re-serialization of it. */
static const char escape_msg[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"a<b & c>d "
                                 "\xc3\xa9\xe2\x80\xa8x\n\"}],\"stream\":true}";
static const char escape_signed[] =
        "{\"sessionid\":\"0x266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b8\","
        "\"message\":\"{\\\"messages\\\":[{\\\"role\\\":\\\"user\\\",\\\"content\\\":\\\"a\\u003cb "
        "\\u0026 c\\u003ed \xc3\xa9\\u2028x\\n\\\"}],\\\"stream\\\":true}\",\"timestamp\":"
        "1735689700000}";
static const uint8_t session_id[32] = {0x26, 0x6c, 0xda, 0x2d, 0x5d, 0x32, 0xf8, 0x44,
                                       0x18, 0x32, 0x08, 0x53, 0x91, 0xc6, 0x8d, 0xc8,
                                       0xe7, 0x88, 0xc9, 0x23, 0x5c, 0xee, 0x5d, 0x46,
                                       0xae, 0x47, 0xb5, 0x7e, 0x75, 0xf1, 0xc4, 0xb8};

static void test_rc_gojson__writer_reproduces_escape_vector(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	struct rc_gojson_w w;
	rc_gojson_w_init(&w, &b);
	rc_gojson_w_begin(&w, NULL);
	rc_gojson_w_hex0x(&w, "sessionid", session_id, sizeof session_id);
	rc_gojson_w_str(&w, "message", escape_msg, sizeof escape_msg - 1);
	rc_gojson_w_u64(&w, "timestamp", 1735689700000ull);
	rc_gojson_w_end(&w);
	assert_int_equal(rc_gojson_w_finish(&w), RC_OK);
	assert_int_equal(b.len, sizeof escape_signed - 1);
	assert_memory_equal(b.ptr, escape_signed, b.len);
	rc_buf_release(&b);
}

/* §2.5.4: the signed bytes of an error keep "signature":"0x" inside a nested object. */
static void test_rc_gojson__writer_nests_and_separates(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	struct rc_gojson_w w;
	rc_gojson_w_init(&w, &b);
	rc_gojson_w_begin(&w, NULL);
	rc_gojson_w_str(&w, "message", "m", 1);
	rc_gojson_w_i64(&w, "code", 400);
	rc_gojson_w_begin(&w, "data");
	rc_gojson_w_u64(&w, "timestamp", 0);
	rc_gojson_w_hex0x(&w, "signature", NULL, 0);
	rc_gojson_w_end(&w);
	rc_gojson_w_raw(&w, "result", "null", 4);
	rc_gojson_w_hex(&w, "h", (const uint8_t *)"\x00\xff", 2);
	rc_gojson_w_i64(&w, "neg", INT64_MIN);
	rc_gojson_w_u64(&w, "max", UINT64_MAX);
	rc_gojson_w_begin(&w, "empty");
	rc_gojson_w_end(&w);
	rc_gojson_w_end(&w);
	assert_int_equal(rc_gojson_w_finish(&w), RC_OK);
	assert_string_equal(b.ptr, "{\"message\":\"m\",\"code\":400,\"data\":{\"timestamp\":0,"
	                           "\"signature\":\"0x\"},\"result\":null,\"h\":\"00ff\","
	                           "\"neg\":-9223372036854775808,\"max\":18446744073709551615,"
	                           "\"empty\":{}}");
	rc_buf_release(&b);
}

static void test_rc_gojson__writer_rejects_misuse(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	struct rc_gojson_w w;

	rc_gojson_w_init(&w, &b); /* unclosed object */
	rc_gojson_w_begin(&w, NULL);
	assert_int_equal(rc_gojson_w_finish(&w), RC_EINVAL);

	rc_buf_reset(&b); /* member without a key */
	rc_gojson_w_init(&w, &b);
	rc_gojson_w_begin(&w, NULL);
	rc_gojson_w_u64(&w, NULL, 1);
	rc_gojson_w_end(&w);
	assert_int_equal(rc_gojson_w_finish(&w), RC_EINVAL);

	rc_buf_reset(&b); /* close without open; the error sticks */
	rc_gojson_w_init(&w, &b);
	rc_gojson_w_end(&w);
	rc_gojson_w_begin(&w, NULL);
	assert_int_equal(rc_gojson_w_finish(&w), RC_EINVAL);
	assert_int_equal(b.len, 0);

	rc_buf_reset(&b); /* nesting deeper than 32 */
	rc_gojson_w_init(&w, &b);
	rc_gojson_w_begin(&w, NULL);
	for (int i = 0; i < 32; i++)
		rc_gojson_w_begin(&w, "k");
	assert_int_equal(rc_gojson_w_finish(&w), RC_EINVAL);
	rc_buf_release(&b);
}

/*
 * Property: for any bytes, the output is one JSON string that jansson accepts, and it contains
 * none of the bytes Go never emits raw (controls, < > &, U+2028/9). For valid UTF-8 input the
 * string decodes back to the input exactly.
 */
static void test_rc_gojson__random_bytes_give_valid_json(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	uint8_t in[64];
	uint32_t x = 12345;
	for (int iter = 0; iter < 20000; iter++) {
		size_t n = (size_t)(iter % 64);
		int ascii_only = iter % 3 == 0;
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			in[i] = (uint8_t)(x >> 16);
			if (ascii_only)
				in[i] &= 0x7f;
		}
		rc_buf_reset(&b);
		assert_int_equal(rc_gojson_append_string(&b, (const char *)in, n), RC_OK);
		for (size_t i = 0; i < b.len; i++) {
			uint8_t c = (uint8_t)b.ptr[i];
			assert_true(c >= 0x20 && c != '<' && c != '>' && c != '&');
			if (i + 2 < b.len && c == 0xe2 && (uint8_t)b.ptr[i + 1] == 0x80)
				assert_true((uint8_t)b.ptr[i + 2] != 0xa8 &&
				            (uint8_t)b.ptr[i + 2] != 0xa9);
		}
		json_error_t je;
		json_t *j = json_loadb(b.ptr, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
		if (!j)
			fail_msg("iteration %d: jansson rejects [%s]: %s", iter, b.ptr, je.text);
		assert_true(json_is_string(j));
		if (ascii_only) {
			assert_int_equal(json_string_length(j), n);
			assert_memory_equal(json_string_value(j), in, n);
		}
		json_decref(j);
	}
	rc_buf_release(&b);
}

static void test_rc_gojson__appends_after_existing_content(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	assert_int_equal(rc_buf_append(&b, "x=", 2), RC_OK);
	/* long enough to force several reallocations mid-string */
	char big[1000];
	memset(big, '<', sizeof big);
	assert_int_equal(rc_gojson_append_string(&b, big, sizeof big), RC_OK);
	assert_int_equal(b.len, 2 + 2 + 6 * sizeof big);
	assert_memory_equal(b.ptr, "x=\"\\u003c\\u003c", 15);
	assert_int_equal(b.ptr[b.len - 1], '"');
	assert_int_equal(b.ptr[b.len], '\0');
	rc_buf_release(&b);
	rc_buf_release(&b); /* released twice: still fine */
	rc_buf_release(NULL);
}

/* Cleaning invalid UTF-8 as Go does: each bad byte becomes U+FFFD and valid text is untouched,
 * so escaping the cleaned text gives the escaping of the original with each "\ufffd" escape
 * written as the raw character, which is what a provider re-encodes after decoding. */
static void test_rc_gojson__valid_utf8_replaces_each_bad_byte(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	static const char in[] = "a\xff" "b\xe6\x97<\xe2\x80\xa8\xc0\xaf\xed\xa0\x80z\xf0\x9f\x9a\x80";
	static const char want[] = "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd<\xe2\x80\xa8"
				   "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
				   "z\xf0\x9f\x9a\x80";
	assert_int_equal(rc_gojson_append_valid_utf8(&b, in, sizeof in - 1), RC_OK);
	assert_int_equal(b.len, sizeof want - 1);
	assert_memory_equal(b.ptr, want, sizeof want - 1);
	for (int round = 0; round < 2000; round++) {
		unsigned char raw[64];
		size_t n = (size_t)rand() % sizeof raw;
		for (size_t i = 0; i < n; i++)
			raw[i] = (unsigned char)(rand() % 4 ? rand() % 0x80 : 0x80 + rand() % 0x80);
		for (size_t i = 0; i < n; i++) /* no backslash: it would escape the marker below */
			if (raw[i] == '\\')
				raw[i] = 'x';
		struct rc_buf clean = RC_BUF_INIT, e1 = RC_BUF_INIT, e2 = RC_BUF_INIT;
		assert_int_equal(rc_gojson_append_valid_utf8(&clean, (const char *)raw, n), RC_OK);
		assert_int_equal(rc_gojson_append_string(&e1, (const char *)raw, n), RC_OK);
		assert_int_equal(rc_gojson_append_string(&e2, clean.ptr, clean.len), RC_OK);
		struct rc_buf want_e = RC_BUF_INIT;
		for (size_t i = 0; i < e1.len;) {
			if (e1.len - i >= 6 && memcmp(e1.ptr + i, "\\ufffd", 6) == 0) {
				rc_buf_append(&want_e, "\xef\xbf\xbd", 3);
				i += 6;
			} else {
				rc_buf_append(&want_e, e1.ptr + i, 1);
				i++;
			}
		}
		assert_int_equal(want_e.len, e2.len);
		assert_memory_equal(want_e.ptr, e2.ptr, e2.len);
		rc_buf_release(&want_e);
		rc_buf_release(&clean);
		rc_buf_release(&e1);
		rc_buf_release(&e2);
	}
	rc_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rc_gojson__escapes_like_go),
	        cmocka_unit_test(test_rc_gojson__writer_reproduces_escape_vector),
	        cmocka_unit_test(test_rc_gojson__writer_nests_and_separates),
	        cmocka_unit_test(test_rc_gojson__writer_rejects_misuse),
	        cmocka_unit_test(test_rc_gojson__random_bytes_give_valid_json),
	        cmocka_unit_test(test_rc_gojson__appends_after_existing_content),
	        cmocka_unit_test(test_rc_gojson__valid_utf8_replaces_each_bad_byte),
	};
	return cmocka_run_group_tests_name("rc_gojson", tests, NULL, NULL);
}
