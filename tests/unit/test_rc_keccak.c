/*
 * rc_keccak: Keccak-256 against published digests ("", "abc", the quick brown fox, 200 x 0xa3 from
 * the Keccak team's KAT) and against the oracle ../shared/vectors/keccak.py at block boundaries
 * (135/136/137/272/1000 bytes of i % 251); incremental updates split anywhere agree with one-shot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_hex.h>
#include <router-core/rc_keccak.h>

static void assert_digest(const uint8_t got[32], const char *hex)
{
	char txt[65];
	assert_int_equal(rc_hex_encode(got, 32, txt, sizeof txt), RC_OK);
	assert_string_equal(txt, hex);
}

static void test_rc_keccak__empty(void **state)
{
	(void)state;
	uint8_t d[32];
	rc_keccak256("", 0, d);
	assert_digest(d, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
	rc_keccak256(NULL, 0, d);
	assert_digest(d, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
}

static void test_rc_keccak__short_published(void **state)
{
	(void)state;
	uint8_t d[32];
	rc_keccak256("abc", 3, d);
	assert_digest(d, "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
	const char *fox = "The quick brown fox jumps over the lazy dog";
	rc_keccak256(fox, strlen(fox), d);
	assert_digest(d, "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15");
	/* morpheus-protocol §3: the selector check used for the binding ABIs. */
	rc_keccak256("transfer(address,uint256)", 25, d);
	assert_memory_equal(d, "\xa9\x05\x9c\xbb", 4);
}

static void test_rc_keccak__200_bytes_a3(void **state)
{
	(void)state;
	uint8_t in[200], d[32];
	memset(in, 0xa3, sizeof in);
	rc_keccak256(in, sizeof in, d);
	assert_digest(d, "3a57666b048777f2c953dc4456f45a2588e1cb6f2da760122d530ac2ce607d4a");
}

static const struct {
	size_t n;
	const char *hex;
} boundary[] = {
	/* python3 -c "from keccak import keccak256 as k; print(k(bytes(i%251 for i in range(n))).hex())" */
	{135, "cbdfd9dee5faad3818d6b06f95a219fd290b0e1706f6a82e5a595b9ce9faca62"},
	{136, "7ce759f1ab7f9ce437719970c26b0a66ff11fe3e38e17df89cf5d29c7d7f807e"},
	{137, "ac73d4fae68b8453f764007c1a20ce95994187861f0c3227a3a8e99a73a3b1db"},
	{272, "8e2476e65823b24d96ebe239f2c1534cdf763e689e2410c3b1cb0c74e6177bfc"},
	{1000, "af692982e84a5a9688359025660a7857cd28ee7c8d867cfa1677baf2e6d1f63b"},
};

static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i % 251);
}

static void test_rc_keccak__multi_block_boundaries(void **state)
{
	(void)state;
	uint8_t in[1000], d[32];
	fill(in, sizeof in);
	for (size_t i = 0; i < sizeof boundary / sizeof boundary[0]; i++) {
		rc_keccak256(in, boundary[i].n, d);
		assert_digest(d, boundary[i].hex);
	}
}

static void test_rc_keccak__incremental_any_split(void **state)
{
	(void)state;
	uint8_t in[1000], want[32], got[32];
	fill(in, sizeof in);
	rc_keccak256(in, sizeof in, want);
	for (size_t a = 0; a <= sizeof in; a += 7) {
		for (size_t b = a; b <= sizeof in; b += 61) {
			struct rc_keccak k;
			rc_keccak_init(&k);
			rc_keccak_update(&k, in, a);
			rc_keccak_update(&k, in + a, b - a);
			rc_keccak_update(&k, in + b, sizeof in - b);
			rc_keccak_final(&k, got);
			assert_memory_equal(got, want, 32);
		}
	}
	struct rc_keccak k;
	rc_keccak_init(&k);
	for (size_t i = 0; i < sizeof in; i++)
		rc_keccak_update(&k, in + i, 1);
	rc_keccak_final(&k, got);
	assert_memory_equal(got, want, 32);
}

static void test_rc_keccak__fork_copies_state(void **state)
{
	(void)state;
	struct rc_keccak a, b;
	uint8_t d1[32], d2[32], want[32];
	rc_keccak_init(&a);
	rc_keccak_update(&a, "ab", 2);
	b = a;
	rc_keccak_update(&a, "c", 1);
	rc_keccak_final(&a, d1);
	rc_keccak_final(&b, d2);
	rc_keccak256("abc", 3, want);
	assert_memory_equal(d1, want, 32);
	rc_keccak256("ab", 2, want);
	assert_memory_equal(d2, want, 32);
	/* Output may alias input. */
	uint8_t buf[32] = "abc";
	rc_keccak256(buf, 3, buf);
	assert_digest(buf, "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_keccak__empty),
		cmocka_unit_test(test_rc_keccak__short_published),
		cmocka_unit_test(test_rc_keccak__200_bytes_a3),
		cmocka_unit_test(test_rc_keccak__multi_block_boundaries),
		cmocka_unit_test(test_rc_keccak__incremental_any_split),
		cmocka_unit_test(test_rc_keccak__fork_copies_state),
	};
	return cmocka_run_group_tests_name("rc_keccak", tests, NULL, NULL);
}
