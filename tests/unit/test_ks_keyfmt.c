/* keystore key format: generation, the offline check, and the peppered HMAC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/hmac.h>
#include <sodium.h>

#include "../../keystore/src/ks_internal.h"

static void test_ks_keyfmt__generated_keys_are_well_formed_and_unique(void **state)
{
	(void)state;
	enum { N = 5000 };
	static char ids[N][KS_KEY_ID_LEN + 1];
	for (int i = 0; i < N; i++) {
		char key[KS_KEY_LEN + 1];
		ks_key_generate(key);
		assert_int_equal(strlen(key), KS_KEY_LEN);
		assert_memory_equal(key, "sk-mor-", 7);
		assert_int_equal(key[19], '_');
		struct ks_parsed_key pk;
		assert_int_equal(ks_key_parse(key, KS_KEY_LEN, &pk), KS_OK);
		assert_ptr_equal(pk.id, key + 7);
		assert_ptr_equal(pk.secret, key + 20);
		memcpy(ids[i], pk.id, KS_KEY_ID_LEN);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(ids[i], ids[j]);
	}
}

static void test_ks_keyfmt__secret_digits_are_uniform(void **state)
{
	(void)state;
	/* 2000 secrets x 43 digits: each of the 62 digits expected ~1387 times. A biased mapping
	 * (e.g. byte % 62 without rejection) would push the low digits ~3% high. */
	long count[128] = {0};
	for (int i = 0; i < 2000; i++) {
		char key[KS_KEY_LEN + 1];
		ks_key_generate(key);
		for (int k = 20; k < 63; k++)
			count[(unsigned char)key[k]]++;
	}
	double expect = 2000.0 * 43 / 62, chi = 0;
	int distinct = 0;
	for (int c = 0; c < 128; c++)
		if (count[c]) {
			distinct++;
			chi += (count[c] - expect) * (count[c] - expect) / expect;
		}
	assert_int_equal(distinct, 62);
	assert_true(chi < 120); /* 61 degrees of freedom: p < 1e-5 above ~115 */
}

static void test_ks_keyfmt__every_single_character_typo_is_rejected(void **state)
{
	(void)state;
	char key[KS_KEY_LEN + 1];
	ks_key_generate(key);
	static const char subs[] = "0aZ_-.9zA \x01\xff";
	for (int pos = 0; pos < KS_KEY_LEN; pos++)
		for (const char *s = subs; *s; s++) {
			if (key[pos] == *s)
				continue;
			char bad[KS_KEY_LEN + 1];
			memcpy(bad, key, sizeof bad);
			bad[pos] = *s;
			assert_int_equal(ks_key_check_format(bad, KS_KEY_LEN), KS_EMALFORMED);
		}
	/* swapping two adjacent different characters is caught too */
	for (int pos = 20; pos + 1 < KS_KEY_LEN; pos++) {
		if (key[pos] == key[pos + 1])
			continue;
		char bad[KS_KEY_LEN + 1];
		memcpy(bad, key, sizeof bad);
		bad[pos] = key[pos + 1];
		bad[pos + 1] = key[pos];
		assert_int_equal(ks_key_check_format(bad, KS_KEY_LEN), KS_EMALFORMED);
	}
}

static void test_ks_keyfmt__wrong_shapes_are_rejected(void **state)
{
	(void)state;
	char key[KS_KEY_LEN + 2];
	ks_key_generate(key);
	assert_int_equal(ks_key_check_format(key, KS_KEY_LEN), KS_OK);
	assert_int_equal(ks_key_check_format(key, KS_KEY_LEN - 1), KS_EMALFORMED);
	key[KS_KEY_LEN] = 'a';
	assert_int_equal(ks_key_check_format(key, KS_KEY_LEN + 1), KS_EMALFORMED);
	assert_int_equal(ks_key_check_format(NULL, 0), KS_EMALFORMED);
	assert_int_equal(ks_key_check_format("", 0), KS_EMALFORMED);
	assert_int_equal(ks_key_check_format("sk-mor-", 7), KS_EMALFORMED);
	/* the incumbent gateway's format is not ours */
	const char *other = "sk-AbC123.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	assert_int_equal(ks_key_check_format(other, strlen(other)), KS_EMALFORMED);
	char nul[KS_KEY_LEN + 1];
	ks_key_generate(nul);
	nul[30] = '\0';
	assert_int_equal(ks_key_check_format(nul, KS_KEY_LEN), KS_EMALFORMED);
}

static void test_ks_keyfmt__regenerated_secret_keeps_the_id(void **state)
{
	(void)state;
	char key[KS_KEY_LEN + 1], old[KS_KEY_LEN + 1];
	ks_key_generate(key);
	memcpy(old, key, sizeof key);
	ks_key_regenerate_secret(key);
	assert_memory_equal(key, old, 20);
	assert_memory_not_equal(key + 20, old + 20, 43);
	assert_int_equal(ks_key_check_format(key, KS_KEY_LEN), KS_OK);
}

static void test_ks_keyfmt__hmac_matches_rfc4231_and_openssl(void **state)
{
	(void)state;
	/* RFC 4231 test case 2: key "Jefe" (HMAC zero-pads short keys, so a 32-byte pepper of
	 * "Jefe" and zeros is the same key). */
	uint8_t pepper[KS_PEPPER_LEN] = {'J', 'e', 'f', 'e'};
	static const uint8_t want[32] = {
		0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
		0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
		0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
	struct ks_hmac h;
	uint8_t out[32];
	ks_hmac_init(&h, pepper);
	ks_hmac(&h, "what do ya want for nothing?", 28, out);
	assert_memory_equal(out, want, 32);
	for (int i = 0; i < 200; i++) {
		uint8_t msg[300], ref[32];
		unsigned reflen = 0;
		size_t n = (size_t)i * 3 % sizeof msg;
		randombytes_buf(pepper, sizeof pepper);
		randombytes_buf(msg, n);
		ks_hmac_init(&h, pepper);
		ks_hmac(&h, msg, n, out);
		HMAC(EVP_sha256(), pepper, sizeof pepper, msg, n, ref, &reflen);
		assert_int_equal(reflen, 32);
		assert_memory_equal(out, ref, 32);
	}
	ks_hmac_release(&h);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ks_keyfmt__generated_keys_are_well_formed_and_unique),
		cmocka_unit_test(test_ks_keyfmt__secret_digits_are_uniform),
		cmocka_unit_test(test_ks_keyfmt__every_single_character_typo_is_rejected),
		cmocka_unit_test(test_ks_keyfmt__wrong_shapes_are_rejected),
		cmocka_unit_test(test_ks_keyfmt__regenerated_secret_keeps_the_id),
		cmocka_unit_test(test_ks_keyfmt__hmac_matches_rfc4231_and_openssl),
	};
	return cmocka_run_group_tests_name("ks_keyfmt", tests, NULL, NULL);
}
