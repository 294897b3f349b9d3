/*
 * rc_hex: hex codecs (strictness, prefix, offsets of bad bytes) and struct rc_u256 (decimal and
 * hex-quantity text, checked arithmetic at the 2^256 edges).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_hex.h>

#define U256_MAX_DEC                                                                               \
	"115792089237316195423570985008687907853269984665640564039457584007913129639935"

static void test_rc_hex__encode_lower_case(void **state)
{
	(void)state;
	char out[16];
	assert_int_equal(rc_hex_encode("\x00\xab\xCD\x7f", 4, out, sizeof out), RC_OK);
	assert_string_equal(out, "00abcd7f");
	assert_int_equal(rc_hex_encode_0x("\xff", 1, out, sizeof out), RC_OK);
	assert_string_equal(out, "0xff");
	assert_int_equal(rc_hex_encode("", 0, out, 1), RC_OK);
	assert_string_equal(out, "");
	assert_int_equal(rc_hex_encode("\x01\x02", 2, out, 4), RC_ERANGE); /* no room for NUL */
	assert_int_equal(rc_hex_encode_0x("\x01", 1, out, 4), RC_ERANGE);
}

static void test_rc_hex__decode_prefix_and_case(void **state)
{
	(void)state;
	uint8_t out[8];
	size_t n = 99;
	assert_int_equal(rc_hex_decode("0xDeadBEEF", 10, out, sizeof out, &n, NULL), RC_OK);
	assert_int_equal(n, 4);
	assert_memory_equal(out, "\xde\xad\xbe\xef", 4);
	assert_int_equal(rc_hex_decode("0Xff00", 6, out, sizeof out, &n, NULL), RC_OK);
	assert_int_equal(n, 2);
	assert_int_equal(rc_hex_decode("ff00", 4, out, sizeof out, &n, NULL), RC_OK);
	assert_memory_equal(out, "\xff\x00", 2);
	assert_int_equal(rc_hex_decode("0x", 2, out, sizeof out, &n, NULL), RC_OK);
	assert_int_equal(n, 0);
	assert_int_equal(rc_hex_decode("", 0, out, sizeof out, &n, NULL), RC_OK);
	assert_int_equal(n, 0);
}

static void test_rc_hex__decode_rejections(void **state)
{
	(void)state;
	uint8_t out[4];
	struct rc_errinfo err;
	size_t n;
	assert_int_equal(rc_hex_decode("0xabc", 5, out, sizeof out, &n, &err), RC_EPARSE);
	assert_non_null(strstr(err.text, "odd"));
	assert_int_equal(rc_hex_decode("0xabzd", 6, out, sizeof out, &n, &err), RC_EPARSE);
	assert_int_equal(err.offset, 4);
	assert_int_equal(rc_hex_decode("ab d", 4, out, sizeof out, &n, &err), RC_EPARSE);
	assert_int_equal(err.offset, 2);
	assert_int_equal(rc_hex_decode("0x0x00", 6, out, sizeof out, &n, &err), RC_EPARSE);
	assert_int_equal(rc_hex_decode("ab\0d", 4, out, sizeof out, &n, &err), RC_EPARSE);
	assert_int_equal(rc_hex_decode("x0", 2, out, sizeof out, &n, &err), RC_EPARSE);
	assert_int_equal(rc_hex_decode("0011223344", 10, out, sizeof out, &n, &err), RC_ERANGE);
	assert_int_equal(rc_hex_decode_exact("0x0011", 6, out, 3, &err), RC_EPARSE);
	assert_int_equal(rc_hex_decode_exact("0x001122", 8, out, 3, &err), RC_OK);
	/* Every non-hex byte value is refused. */
	for (int c = 0; c < 256; c++) {
		char s[2] = {'a', (char)c};
		int hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
		assert_int_equal(rc_hex_decode(s, 2, out, sizeof out, &n, NULL),
				 hex ? RC_OK : RC_EPARSE);
	}
}

static void test_rc_hex__u256_decimal_round_trip(void **state)
{
	(void)state;
	static const char *cases[] = {"0", "1", "9", "10", "1000000000000000000",
				      "18446744073709551615", "18446744073709551616",
				      "10000000000000000000", "270233162839357259772", U256_MAX_DEC};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct rc_u256 v;
		char out[RC_U256_DEC_SIZE];
		assert_int_equal(rc_u256_parse_dec(&v, cases[i], strlen(cases[i]), NULL), RC_OK);
		assert_int_equal(rc_u256_format_dec(&v, out, sizeof out), (int)strlen(cases[i]));
		assert_string_equal(out, cases[i]);
	}
	struct rc_u256 v;
	assert_int_equal(rc_u256_parse_dec(&v, "1000000000000000000", 19, NULL), RC_OK);
	assert_int_equal(v.w[0], 1000000000000000000ull);
	assert_int_equal(v.w[1] | v.w[2] | v.w[3], 0);
	assert_int_equal(rc_u256_parse_dec(&v, "007", 3, NULL), RC_OK);
	assert_int_equal(v.w[0], 7);
}

static void test_rc_hex__u256_decimal_rejections(void **state)
{
	(void)state;
	struct rc_u256 v;
	struct rc_errinfo err;
	char out[4];
	assert_int_equal(rc_u256_parse_dec(&v, "", 0, &err), RC_EPARSE);
	assert_int_equal(rc_u256_parse_dec(&v, "-1", 2, &err), RC_EPARSE);
	assert_int_equal(rc_u256_parse_dec(&v, "12a", 3, &err), RC_EPARSE);
	assert_int_equal(err.offset, 2);
	assert_int_equal(rc_u256_parse_dec(&v, " 1", 2, &err), RC_EPARSE);
	/* 2^256 */
	const char *over =
		"115792089237316195423570985008687907853269984665640564039457584007913129639936";
	assert_int_equal(rc_u256_parse_dec(&v, over, strlen(over), &err), RC_ERANGE);
	assert_int_equal(rc_u256_parse_dec(&v, U256_MAX_DEC "0", strlen(U256_MAX_DEC) + 1, &err),
			 RC_ERANGE);
	rc_u256_from_u64(&v, 12345);
	assert_int_equal(rc_u256_format_dec(&v, out, sizeof out), RC_ERANGE);
}

static void test_rc_hex__u256_hex_quantity(void **state)
{
	(void)state;
	struct rc_u256 v;
	char out[RC_U256_HEX_SIZE];
	assert_int_equal(rc_u256_parse_hex(&v, "0x0", 3, NULL), RC_OK);
	assert_true(rc_u256_is_zero(&v));
	assert_int_equal(rc_u256_format_hex(&v, out, sizeof out), 3);
	assert_string_equal(out, "0x0");
	assert_int_equal(rc_u256_parse_hex(&v, "0xa4B1", 6, NULL), RC_OK);
	assert_int_equal(v.w[0], 42161);
	assert_int_equal(rc_u256_format_hex(&v, out, sizeof out), 6);
	assert_string_equal(out, "0xa4b1");
	const char *max = "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
	assert_int_equal(rc_u256_parse_hex(&v, max, strlen(max), NULL), RC_OK);
	assert_int_equal(rc_u256_format_hex(&v, out, sizeof out), 66);
	assert_string_equal(out, max);
	assert_int_equal(rc_u256_parse_hex(&v, "0x00000001", 10, NULL), RC_OK);
	assert_int_equal(v.w[0], 1);
	assert_int_equal(rc_u256_parse_hex(&v, "0x", 2, NULL), RC_EPARSE);
	assert_int_equal(rc_u256_parse_hex(&v, "12", 2, NULL), RC_EPARSE);
	assert_int_equal(rc_u256_parse_hex(&v, "0x1g", 4, NULL), RC_EPARSE);
	const char *big = "0x1ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
	assert_int_equal(rc_u256_parse_hex(&v, big, strlen(big), NULL), RC_ERANGE);
}

static void test_rc_hex__u256_be_conversion(void **state)
{
	(void)state;
	uint8_t be[33] = {0}, out[32];
	struct rc_u256 v;
	for (int i = 0; i < 32; i++)
		be[1 + i] = (uint8_t)(i + 1);
	assert_int_equal(rc_u256_from_be(&v, be, 33), RC_OK);
	assert_int_equal(v.w[3], 0x0102030405060708ull);
	assert_int_equal(v.w[0], 0x191a1b1c1d1e1f20ull);
	rc_u256_to_be32(&v, out);
	assert_memory_equal(out, be + 1, 32);
	be[0] = 1;
	assert_int_equal(rc_u256_from_be(&v, be, 33), RC_ERANGE);
	assert_int_equal(rc_u256_from_be(&v, (const uint8_t *)"\x01\x00", 2), RC_OK);
	assert_int_equal(v.w[0], 256);
	uint64_t x;
	assert_int_equal(rc_u256_to_u64(&v, &x), RC_OK);
	assert_int_equal(x, 256);
	v.w[2] = 1;
	assert_int_equal(rc_u256_to_u64(&v, &x), RC_ERANGE);
}

static void test_rc_hex__u256_checked_arithmetic(void **state)
{
	(void)state;
	struct rc_u256 max, one, two, r, q, rem;
	uint64_t r64;
	assert_int_equal(rc_u256_parse_dec(&max, U256_MAX_DEC, strlen(U256_MAX_DEC), NULL), RC_OK);
	rc_u256_from_u64(&one, 1);
	rc_u256_from_u64(&two, 2);
	r = max;
	assert_int_equal(rc_u256_add(&r, &max, &one), RC_ERANGE);
	assert_int_equal(rc_u256_cmp(&r, &max), 0); /* unchanged on overflow */
	assert_int_equal(rc_u256_sub(&r, &one, &two), RC_ERANGE);
	assert_int_equal(rc_u256_sub(&r, &max, &one), RC_OK);
	assert_int_equal(rc_u256_cmp(&r, &max), -1);
	assert_int_equal(rc_u256_add(&r, &r, &one), RC_OK);
	assert_int_equal(rc_u256_cmp(&r, &max), 0);
	assert_int_equal(rc_u256_mul_u64(&r, &max, 2), RC_ERANGE);
	assert_int_equal(rc_u256_mul(&r, &max, &two), RC_ERANGE);
	assert_int_equal(rc_u256_mul(&r, &max, &one), RC_OK);
	assert_int_equal(rc_u256_cmp(&r, &max), 0);
	/* carry across limbs: (2^64-1) + 1 = 2^64 */
	struct rc_u256 a;
	rc_u256_from_u64(&a, UINT64_MAX);
	assert_int_equal(rc_u256_add(&r, &a, &one), RC_OK);
	assert_true(r.w[0] == 0 && r.w[1] == 1);
	assert_int_equal(rc_u256_sub(&r, &r, &one), RC_OK);
	assert_true(r.w[0] == UINT64_MAX && r.w[1] == 0);
	/* 1e18 * 3456 = 3456e18 ; / 1e18 back */
	struct rc_u256 e18, big;
	rc_u256_from_u64(&e18, 1000000000000000000ull);
	assert_int_equal(rc_u256_mul_u64(&big, &e18, 3456), RC_OK);
	char txt[RC_U256_DEC_SIZE];
	rc_u256_format_dec(&big, txt, sizeof txt);
	assert_string_equal(txt, "3456000000000000000000");
	assert_int_equal(rc_u256_mul(&big, &big, &big), RC_OK);
	rc_u256_format_dec(&big, txt, sizeof txt);
	assert_string_equal(txt, "11943936000000000000000000000000000000000000");
	assert_int_equal(rc_u256_divmod(&q, &rem, &big, &e18), RC_OK);
	rc_u256_format_dec(&q, txt, sizeof txt);
	assert_string_equal(txt, "11943936000000000000000000");
	assert_true(rc_u256_is_zero(&rem));
	assert_int_equal(rc_u256_divmod(&q, &rem, &max, &e18), RC_OK);
	rc_u256_format_dec(&q, txt, sizeof txt);
	assert_string_equal(txt, "115792089237316195423570985008687907853269984665640564039457");
	rc_u256_format_dec(&rem, txt, sizeof txt);
	assert_string_equal(txt, "584007913129639935");
	assert_int_equal(rc_u256_divmod_u64(&q, &r64, &max, 10), RC_OK);
	assert_int_equal(r64, 5);
	struct rc_u256 zero = {{0}};
	assert_int_equal(rc_u256_divmod(&q, &rem, &max, &zero), RC_ERANGE);
	assert_int_equal(rc_u256_divmod_u64(&q, &r64, &max, 0), RC_ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_hex__encode_lower_case),
		cmocka_unit_test(test_rc_hex__decode_prefix_and_case),
		cmocka_unit_test(test_rc_hex__decode_rejections),
		cmocka_unit_test(test_rc_hex__u256_decimal_round_trip),
		cmocka_unit_test(test_rc_hex__u256_decimal_rejections),
		cmocka_unit_test(test_rc_hex__u256_hex_quantity),
		cmocka_unit_test(test_rc_hex__u256_be_conversion),
		cmocka_unit_test(test_rc_hex__u256_checked_arithmetic),
	};
	return cmocka_run_group_tests_name("rc_hex", tests, NULL, NULL);
}
