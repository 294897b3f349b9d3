/*
 * rc_addr: EIP-55 examples from the EIP itself (all-caps, all-lower and mixed-case sets), the
 * morpheus-vectors.txt addresses, and every rejection (length, characters, wrong checksum).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_addr.h>

/* EIP-55 "Test Cases": each is its own checksummed form. */
static const char *eip55[] = {
	"0x52908400098527886E0F7030069857D2E4169EE7", "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
	"0xde709f2102306220921060314715629080e2fb77", "0x27b1fdb04752bbc536007a920d24acb045561c26",
	"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
	"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
	/* morpheus-vectors.txt "user address" / "provider address" */
	"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
};

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'F')
			*s = (char)(*s - 'A' + 'a');
}

static void test_rc_addr__eip55_examples_round_trip(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof eip55 / sizeof eip55[0]; i++) {
		uint8_t a[RC_ADDR_LEN];
		char out[RC_ADDR_STR_SIZE], low[RC_ADDR_STR_SIZE];
		assert_int_equal(rc_addr_parse(a, eip55[i], 42, NULL), RC_OK);
		rc_addr_format_checksum(a, out);
		assert_string_equal(out, eip55[i]);
		rc_addr_format(a, out);
		memcpy(low, eip55[i], sizeof low);
		lower(low);
		assert_string_equal(out, low);
		/* lower-case and unprefixed forms parse to the same bytes */
		uint8_t b[RC_ADDR_LEN];
		assert_int_equal(rc_addr_parse(b, low + 2, 40, NULL), RC_OK);
		assert_memory_equal(a, b, RC_ADDR_LEN);
	}
}

static void test_rc_addr__all_upper_without_checksum_accepted(void **state)
{
	(void)state;
	uint8_t a[RC_ADDR_LEN], b[RC_ADDR_LEN];
	assert_int_equal(rc_addr_parse(a, "0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266", 42, NULL),
			 RC_OK);
	assert_int_equal(rc_addr_parse(b, "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", 42, NULL),
			 RC_OK);
	assert_memory_equal(a, b, RC_ADDR_LEN);
	assert_int_equal(a[0], 0xf3);
	assert_int_equal(a[19], 0x66);
}

static void test_rc_addr__wrong_checksum_rejected(void **state)
{
	(void)state;
	for (size_t i = 4; i < sizeof eip55 / sizeof eip55[0]; i++) {
		/* flip the case of each letter in turn: every single flip must be caught */
		for (size_t j = 2; j < 42; j++) {
			char s[RC_ADDR_STR_SIZE];
			memcpy(s, eip55[i], sizeof s);
			if (s[j] >= 'a' && s[j] <= 'f')
				s[j] = (char)(s[j] - 'a' + 'A');
			else if (s[j] >= 'A' && s[j] <= 'F')
				s[j] = (char)(s[j] - 'A' + 'a');
			else
				continue;
			uint8_t a[RC_ADDR_LEN];
			struct rc_errinfo err;
			int rc = rc_addr_parse(a, s, 42, &err);
			char l[RC_ADDR_STR_SIZE];
			memcpy(l, s, sizeof l);
			lower(l);
			int all_same_case = strcmp(l, s) == 0;
			if (all_same_case)
				continue;
			assert_int_equal(rc, RC_ECRYPTO);
			assert_int_equal(err.offset, j);
		}
	}
}

static void test_rc_addr__malformed_rejected(void **state)
{
	(void)state;
	uint8_t a[RC_ADDR_LEN];
	struct rc_errinfo err;
	assert_int_equal(rc_addr_parse(a, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea", 40, &err),
			 RC_EPARSE);
	assert_int_equal(rc_addr_parse(a, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed00", 44, &err),
			 RC_EPARSE);
	assert_int_equal(rc_addr_parse(a, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeg", 42, &err),
			 RC_EPARSE);
	assert_int_equal(err.offset, 41);
	assert_int_equal(rc_addr_parse(a, "", 0, &err), RC_EPARSE);
	assert_int_equal(rc_addr_parse(a, "0x", 2, &err), RC_EPARSE);
	assert_int_equal(rc_addr_parse(a, " 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", 43, &err),
			 RC_EPARSE);
}

static void test_rc_addr__zero(void **state)
{
	(void)state;
	uint8_t a[RC_ADDR_LEN] = {0};
	char out[RC_ADDR_STR_SIZE];
	assert_true(rc_addr_is_zero(a));
	rc_addr_format_checksum(a, out);
	assert_string_equal(out, "0x0000000000000000000000000000000000000000");
	a[19] = 1;
	assert_false(rc_addr_is_zero(a));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_addr__eip55_examples_round_trip),
		cmocka_unit_test(test_rc_addr__all_upper_without_checksum_accepted),
		cmocka_unit_test(test_rc_addr__wrong_checksum_rejected),
		cmocka_unit_test(test_rc_addr__malformed_rejected),
		cmocka_unit_test(test_rc_addr__zero),
	};
	return cmocka_run_group_tests_name("rc_addr", tests, NULL, NULL);
}
