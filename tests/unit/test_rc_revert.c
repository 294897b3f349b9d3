/*
 * rc_revert: every custom error of morpheus-protocol §3.5 (both spellings), with its selector
 * checked against keccak256 of its signature, Error(string) and Panic(uint256) built with the ABI
 * encoder, unknown selectors, and malformed data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_revert.h>

/* morpheus-protocol §3.5, as printed there. */
static const struct {
	const char *signature;
	uint32_t selector;
} spec[] = {
	{"SesssionApproveExpired()", 0x69edda4d},
	{"SesssionApprovedForAnotherChainId()", 0xa468d1f9},
	{"SesssionReceiptExpired()", 0xc5bbe0c3},
	{"SesssionReceiptForAnotherChainId()", 0xd3dd539c},
	{"SessionApproveExpired()", 0x4db74c88},
	{"SessionApprovedForAnotherChainId()", 0xadf95488},
	{"SessionReceiptExpired()", 0xb55af04a},
	{"SessionReceiptForAnotherChainId()", 0x4069702a},
	{"SessionProviderSignatureMismatch()", 0x453ede6a},
	{"SessionDuplicateApproval()", 0x684df34c},
	{"SessionTooShort()", 0xf4d7eed5},
	{"SessionAlreadyClosed()", 0xe9fb372e},
	{"SessionBidNotFound()", 0x1de03f33},
	{"SessionStakeTooLow()", 0x63e209ea},
	{"SessionUserAmountToWithdrawIsZero()", 0xc41b8c4d},
	{"SessionMaxDurationTooShort()", 0xf0f669df},
	{"SessionApprovedForAnotherUser()", 0x49470e18},
	{"InsufficientRightsForOperation(address,address)", 0x2e980d14},
	{"OwnableUnauthorizedAccount(address)", 0x118cdaa7},
	{"MarketplaceProviderNotFound()", 0x8d0285d4},
	{"MarketplaceModelNotFound()", 0x0e68881c},
	{"MarketplaceActiveBidNotFound()", 0x33ac0973},
	{"MarketplaceBidPricePerSecondInvalid()", 0x9c7f2f48},
	{"ProviderStakeTooLow(uint256,uint256)", 0xbcc35dcc},
	{"ProviderHasActiveBids()", 0xf6c1fedc},
	{"ProviderNotFound()", 0xb1cd0903},
	{"ModelStakeTooLow(uint256,uint256)", 0x2f7895f5},
	{"ModelHasActiveBids()", 0x633910a0},
	{"Error(string)", 0x08c379a0},
};

/* Encode sig(args) into buf; returns the length. */
static size_t build(const char *sig, const struct rc_abi_value *args, size_t n, uint8_t *out)
{
	struct rc_buf b = RC_BUF_INIT;
	assert_int_equal(rc_abi_encode_call((struct rc_str){sig, strlen(sig)}, args, n, &b, NULL),
			 RC_OK);
	size_t len = b.len;
	memcpy(out, b.ptr, len);
	rc_buf_release(&b);
	return len;
}

static void test_rc_revert__spec_selectors_and_names(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
		uint8_t sel[4], data[4 + 64] = {0};
		const char *sig = spec[i].signature;
		rc_abi_selector(sig, strlen(sig), sel);
		uint32_t got = (uint32_t)sel[0] << 24 | (uint32_t)sel[1] << 16 |
			       (uint32_t)sel[2] << 8 | sel[3];
		if (got != spec[i].selector)
			fail_msg("%s: keccak says %08x, spec says %08x", sig, got, spec[i].selector);
		memcpy(data, sel, 4);
		size_t nargs = strstr(sig, "(address,address)") || strstr(sig, "(uint256,uint256)") ? 2
			       : strstr(sig, "(address)")                                          ? 1
																     : 0;
		size_t len = 4 + 32 * nargs;
		if (!strcmp(sig, "Error(string)")) {
			struct rc_abi_value s;
			rc_abi_set_string(&s, "", 0);
			len = build(sig, &s, 1, data);
		}
		struct rc_revert r;
		assert_int_equal(rc_revert_decode(data, len, &r, NULL), RC_OK);
		assert_int_equal(r.selector, spec[i].selector);
		assert_string_equal(r.signature, sig);
		assert_int_equal(strncmp(r.name, sig, strlen(r.name)), 0);
		assert_int_equal(sig[strlen(r.name)], '(');
		assert_int_equal(r.nargs, nargs);
		assert_int_equal(strncmp(r.text, sig, strlen(r.name) + 1), 0);
	}
}

static void test_rc_revert__both_spellings_decode_to_their_names(void **state)
{
	(void)state;
	struct rc_revert r;
	assert_int_equal(rc_revert_decode((const uint8_t *)"\x69\xed\xda\x4d", 4, &r, NULL), RC_OK);
	assert_int_equal(r.kind, RC_REVERT_CUSTOM);
	assert_string_equal(r.text, "SesssionApproveExpired()");
	assert_int_equal(rc_revert_decode((const uint8_t *)"\x4d\xb7\x4c\x88", 4, &r, NULL), RC_OK);
	assert_string_equal(r.text, "SessionApproveExpired()");
}

static void test_rc_revert__error_string(void **state)
{
	(void)state;
	uint8_t data[512];
	struct rc_abi_value s;
	rc_abi_set_string(&s, "ECDSA: invalid signature", 24);
	size_t n = build("Error(string)", &s, 1, data);
	struct rc_revert r;
	assert_int_equal(rc_revert_decode(data, n, &r, NULL), RC_OK);
	assert_int_equal(r.kind, RC_REVERT_ERROR_STRING);
	assert_string_equal(r.name, "Error");
	assert_int_equal(r.message.len, 24);
	assert_memory_equal(r.message.ptr, "ECDSA: invalid signature", 24);
	assert_string_equal(r.text, "Error(\"ECDSA: invalid signature\")");

	/* untrusted bytes are escaped and long reasons cut, the text stays one printable line */
	char nasty[600];
	memset(nasty, 'a', sizeof nasty);
	memcpy(nasty, "q\"\\\n\x01\xff", 6);
	rc_abi_set_string(&s, nasty, sizeof nasty);
	uint8_t big[1024];
	n = build("Error(string)", &s, 1, big);
	assert_int_equal(rc_revert_decode(big, n, &r, NULL), RC_OK);
	assert_int_equal(r.message.len, sizeof nasty);
	assert_int_equal(strncmp(r.text, "Error(\"q\\\"\\\\\\x0a\\x01\\xffaaa", 26), 0);
	size_t tl = strlen(r.text);
	assert_true(tl < sizeof r.text);
	assert_string_equal(r.text + tl - 5, "...\")");
	for (size_t i = 0; i < tl; i++)
		assert_true(r.text[i] >= 0x20 && r.text[i] < 0x7f);
}

static void test_rc_revert__panic(void **state)
{
	(void)state;
	uint8_t data[64];
	struct rc_abi_value c;
	struct rc_revert r;
	rc_abi_set_uint(&c, 0x11);
	size_t n = build("Panic(uint256)", &c, 1, data);
	assert_int_equal(rc_revert_decode(data, n, &r, NULL), RC_OK);
	assert_int_equal(r.kind, RC_REVERT_PANIC);
	assert_int_equal(r.nargs, 1);
	assert_int_equal(r.args[0][31], 0x11);
	assert_string_equal(r.text, "Panic(0x11): arithmetic overflow or underflow");
	rc_abi_set_uint(&c, 0x32);
	n = build("Panic(uint256)", &c, 1, data);
	assert_int_equal(rc_revert_decode(data, n, &r, NULL), RC_OK);
	assert_string_equal(r.text, "Panic(0x32): array index out of bounds");
	memset(data + 4, 0xff, 32);
	assert_int_equal(rc_revert_decode(data, n, &r, NULL), RC_OK);
	assert_string_equal(r.text, "Panic(0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
				    "ffff): unknown panic code");
}

static void test_rc_revert__custom_errors_with_arguments(void **state)
{
	(void)state;
	uint8_t data[128];
	struct rc_abi_value a[2];
	struct rc_revert r;
	rc_abi_set_uint(&a[0], 100000000000000000ull);
	rc_abi_set_uint(&a[1], 5);
	size_t n = build("ProviderStakeTooLow(uint256,uint256)", a, 2, data);
	assert_int_equal(rc_revert_decode(data, n, &r, NULL), RC_OK);
	assert_int_equal(r.kind, RC_REVERT_CUSTOM);
	assert_int_equal(r.nargs, 2);
	assert_string_equal(r.text, "ProviderStakeTooLow(100000000000000000, 5)");
	uint8_t who[20], whom[20];
	memset(who, 0xab, 20);
	memset(whom, 0x01, 20);
	rc_abi_set_address(&a[0], who);
	rc_abi_set_address(&a[1], whom);
	n = build("InsufficientRightsForOperation(address,address)", a, 2, data);
	assert_int_equal(rc_revert_decode(data, n, &r, NULL), RC_OK);
	assert_string_equal(r.text, "InsufficientRightsForOperation(0xabababababababababababababababab"
				    "abababab, 0x0101010101010101010101010101010101010101)");
	assert_memory_equal(r.args[1] + 12, whom, 20);
}

static void test_rc_revert__unknown_and_empty(void **state)
{
	(void)state;
	struct rc_revert r;
	uint8_t data[36] = {0x12, 0x34, 0x56, 0x78};
	assert_int_equal(rc_revert_decode(data, sizeof data, &r, NULL), RC_OK);
	assert_int_equal(r.kind, RC_REVERT_UNKNOWN);
	assert_int_equal(r.selector, 0x12345678);
	assert_null(r.name);
	assert_string_equal(r.text, "unknown error 0x12345678");
	assert_int_equal(rc_revert_decode(NULL, 0, &r, NULL), RC_OK);
	assert_int_equal(r.kind, RC_REVERT_EMPTY);
	assert_string_equal(r.text, "reverted without data");
}

static void test_rc_revert__malformed(void **state)
{
	(void)state;
	struct rc_revert r;
	struct rc_errinfo err;
	assert_int_equal(rc_revert_decode((const uint8_t *)"\x08\xc3\x79", 3, &r, &err), RC_EPARSE);
	assert_int_equal(r.kind, RC_REVERT_UNKNOWN);
	assert_string_equal(r.text, "malformed revert data: shorter than a selector");
	/* Error(string) whose offset points past the data */
	uint8_t data[4 + 64] = {0x08, 0xc3, 0x79, 0xa0};
	data[4 + 31] = 0x80;
	assert_int_equal(rc_revert_decode(data, sizeof data, &r, &err), RC_EPARSE);
	assert_int_equal(r.kind, RC_REVERT_UNKNOWN);
	assert_string_equal(r.name, "Error");
	assert_int_equal(err.offset, 4);
	assert_string_equal(r.text, "malformed Error(string) revert data: offset out of range");
	/* ProviderStakeTooLow with one argument */
	uint8_t short_args[4 + 32] = {0xbc, 0xc3, 0x5d, 0xcc};
	assert_int_equal(rc_revert_decode(short_args, sizeof short_args, &r, &err), RC_EPARSE);
	assert_int_equal(r.nargs, 0);
	assert_non_null(strstr(r.text, "ProviderStakeTooLow(uint256,uint256)"));
	/* a dirty address word */
	uint8_t dirty[4 + 32] = {0x11, 0x8c, 0xda, 0xa7, 0x01};
	assert_int_equal(rc_revert_decode(dirty, sizeof dirty, &r, &err), RC_EPARSE);
	assert_int_equal(err.offset, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_revert__spec_selectors_and_names),
		cmocka_unit_test(test_rc_revert__both_spellings_decode_to_their_names),
		cmocka_unit_test(test_rc_revert__error_string),
		cmocka_unit_test(test_rc_revert__panic),
		cmocka_unit_test(test_rc_revert__custom_errors_with_arguments),
		cmocka_unit_test(test_rc_revert__unknown_and_empty),
		cmocka_unit_test(test_rc_revert__malformed),
	};
	return cmocka_run_group_tests_name("rc_revert", tests, NULL, NULL);
}
