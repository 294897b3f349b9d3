/*
 * rc_ecies: go-ethereum ECIES (morpheus-protocol §2.4) against the §2.9.2 vectors: decryption
 * of the three published blobs, byte-exact re-encryption with the published ephemeral keys and
 * IV, random round trips, and rejection of every single-byte tamper and every truncation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_ecies.h>
#include <router-core/rc_hex.h>

/* Hardhat/Anvil account #0 (the consumer in §2.9): public test key, never for real funds. */
static const char USER_PRIV_HEX[] =
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
static const char PROVIDER_PRIV_HEX[] =
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
static const char DONE_PLAIN[] = "\"[DONE]\"";
static const uint8_t IV[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* ---- §2.9.2 ECIES lines ---------------------------------------------------------------------- */
static const char ECIES_PLAIN[] =
        "{\"choices\":[{\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null,\"index\":0}],\""
        "created\":1735689700,\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o-mini\",\"object\":\"chat.c"
        "ompletion.chunk\"}";
static const char ECIES_CT_HEX[] =
        "044f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa385b6b1b8ead809ca67454"
        "d9683fcf2ba03456d6fe2c4abe2b07f0fbdbb2f1c1000102030405060708090a0b0c0d0e0fb70fac3c35028f"
        "bed321021c8dbd8f010fc57527d3bfb83537276fad526d4df39e76131d73a2dbaa854c178c30d22027e8a03f"
        "d13184531fcb97137eb62a82834fc210ace238cd47e25ed528a77b2331c928e0dcc4bd9e2a8ba302dcc4874e"
        "b28c3df38da94ea272e125b87296eb85aaa971fbfb3c7997658d79900a1c001ccd53be7c375e6693e94d5871"
        "48141732a8261f1120824bdf96918fb4ab00729cff5decc77035a1eb7e6fd0f3dd80e83ac888579b7d02f123"
        "9c2ba027cbe11b6e5b0fba3c34f338d123";
static const char DONE_CT_HEX[] =
        "04cd0f9e5e0fc81997dbbc80293aa7a5f498753af667aed160c70ff0d3d53c5d74b731af5a9237e60ac2a280"
        "e5464bffefb635f4d3ef03eb0bef2370234650e809000102030405060708090a0b0c0d0e0f34e2b0bae4e607"
        "5b4ac632ece4b363be100a8fb4ec053e12e437347b9062edfffaa8b52469fc2bd3";
static const char ERR_PLAIN[] =
        "{\"providerModelError\":{\"error\":{\"message\":\"rate limited\",\"type\":\"upstream_err"
        "or\"}}}";
static const char ERR_CT_HEX[] =
        "045421b3fc2cca1f6a36f858170c23fa18f6525b1c95ce31e4fcdb6628ae7e20e309ad404484172f30c1b003"
        "1c02368c30b069d02a4c774260f9e9169d41151990000102030405060708090a0b0c0d0e0f34cadc980c04c9"
        "09a318ca1800c01d85166fca4f7561bd56e8ee1dc0c03443ca4da19aa1aff20e588e5dc2252f4847418ebbcf"
        "b845d762302153c7e55bfbe39a4d65269d8298d91b7dea02f4c0e063bc47bc61ca21c274273c8a39f6b158d3"
        "4149550b86a31674d6ad8547773ce423dd53b3cb";
static const char USER_PUB_HEX[] =
        "0x048318535b54105d4a7aae60c08fc45f9687181b4fdfc625bd1a753fa7397fed753547f11ca8696646f2f3"
        "acb08e31016afac23e630c5d11f59f61fef57b0d2aa5";
static const char EPH_PUB_HEX[] =
        "0x044f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa385b6b1b8ead809ca674"
        "54d9683fcf2ba03456d6fe2c4abe2b07f0fbdbb2f1c1";

struct fixture {
	struct rc_secp_privkey user;
	uint8_t user_pub[65];
};

static int setup(void **state)
{
	static struct fixture f;
	if (rc_secp_privkey_from_hex(&f.user, USER_PRIV_HEX, 64, NULL) != RC_OK)
		return -1;
	if (rc_hex_decode_exact(USER_PUB_HEX, sizeof USER_PUB_HEX - 1, f.user_pub, 65, NULL))
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	rc_secp_privkey_release(&f->user);
	return 0;
}

/* Decode a hex constant into a fresh heap block of exactly its size (so ASan sees overreads). */
static uint8_t *unhex(const char *hex, size_t *n)
{
	size_t len = strlen(hex);
	uint8_t *p = malloc(len / 2);
	assert_non_null(p);
	assert_int_equal(rc_hex_decode(hex, len, p, len / 2, n, NULL), RC_OK);
	assert_int_equal(*n, len / 2);
	return p;
}

static void eph_key(uint8_t eph[32], uint8_t last)
{
	memset(eph, 0x11, 32);
	eph[31] = last;
}

struct vec {
	const char *ct_hex;
	const char *plain;
	uint8_t eph_last;
};

static const struct vec vecs[] = {
        {ECIES_CT_HEX, ECIES_PLAIN, 0x11},
        {DONE_CT_HEX, DONE_PLAIN, 0x12},
        {ERR_CT_HEX, ERR_PLAIN, 0x13},
};

static void test_rc_ecies__decrypts_vectors(void **state)
{
	struct fixture *f = *state;
	for (size_t i = 0; i < 3; i++) {
		size_t n, got;
		uint8_t *ct = unhex(vecs[i].ct_hex, &n);
		uint8_t out[512];
		assert_int_equal(rc_ecies_decrypt(&f->user, ct, n, out, sizeof out, &got, NULL),
		                 RC_OK);
		assert_int_equal(got, strlen(vecs[i].plain));
		assert_int_equal(n, got + RC_ECIES_OVERHEAD);
		assert_memory_equal(out, vecs[i].plain, got);
		free(ct);
	}
	/* the first blob is 281 bytes and starts with the published ephemeral public key */
	size_t n;
	uint8_t *ct = unhex(ECIES_CT_HEX, &n);
	assert_int_equal(n, 281);
	size_t pn;
	uint8_t *eph_pub = unhex(EPH_PUB_HEX + 2, &pn);
	assert_memory_equal(ct, eph_pub, 65);
	assert_memory_equal(ct + 65, IV, 16);
	free(eph_pub);
	free(ct);
}

static void test_rc_ecies__reencrypts_vectors_byte_exact(void **state)
{
	struct fixture *f = *state;
	for (size_t i = 0; i < 3; i++) {
		size_t n, got;
		uint8_t *want = unhex(vecs[i].ct_hex, &n);
		uint8_t eph[32], out[512];
		eph_key(eph, vecs[i].eph_last);
		size_t plen = strlen(vecs[i].plain);
		assert_int_equal(rc_ecies_encrypt_fixed(f->user_pub, (const uint8_t *)vecs[i].plain,
		                                        plen, eph, IV, out, sizeof out, &got),
		                 RC_OK);
		assert_int_equal(got, n);
		assert_memory_equal(out, want, n);
		/* exactly enough room is enough; one byte less is not */
		assert_int_equal(rc_ecies_encrypt_fixed(f->user_pub, (const uint8_t *)vecs[i].plain,
		                                        plen, eph, IV, out, n, &got),
		                 RC_OK);
		assert_int_equal(rc_ecies_encrypt_fixed(f->user_pub, (const uint8_t *)vecs[i].plain,
		                                        plen, eph, IV, out, n - 1, &got),
		                 RC_ERANGE);
		free(want);
	}
}

static void test_rc_ecies__random_round_trips(void **state)
{
	struct fixture *f = *state;
	static uint8_t msg[4096], ct[4096 + RC_ECIES_OVERHEAD], ct2[4096 + RC_ECIES_OVERHEAD],
	        back[4096];
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (uint8_t)(i * 131 + 7);
	static const size_t lens[] = {0, 1, 15, 16, 17, 100, 1024, 4096};
	for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
		size_t len = lens[li], n, n2, got;
		assert_int_equal(rc_ecies_encrypt(f->user_pub, msg, len, ct, sizeof ct, &n), RC_OK);
		assert_int_equal(n, len + RC_ECIES_OVERHEAD);
		assert_int_equal(rc_ecies_encrypt(f->user_pub, msg, len, ct2, sizeof ct2, &n2),
		                 RC_OK);
		/* fresh ephemeral key and IV each time */
		assert_memory_not_equal(ct, ct2, 65 + 16);
		assert_int_equal(rc_ecies_decrypt(&f->user, ct, n, back, sizeof back, &got, NULL),
		                 RC_OK);
		assert_int_equal(got, len);
		if (len)
			assert_memory_equal(back, msg, len);
		assert_int_equal(rc_ecies_decrypt(&f->user, ct2, n2, back, len, &got, NULL), RC_OK);
	}
}

static void test_rc_ecies__every_tampered_byte_rejected(void **state)
{
	struct fixture *f = *state;
	size_t n, got;
	uint8_t *ct = unhex(ECIES_CT_HEX, &n);
	uint8_t out[512];
	memset(out, 0xaa, sizeof out);
	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			ct[i] ^= (uint8_t)(1u << bit);
			struct rc_errinfo ei;
			int rc = rc_ecies_decrypt(&f->user, ct, n, out, sizeof out, &got, &ei);
			ct[i] ^= (uint8_t)(1u << bit);
			if (i < 65) {
				/* a changed ephemeral key is either not a point or the wrong one */
				assert_true(rc == RC_EPARSE || rc == RC_ECRYPTO);
			} else {
				assert_int_equal(rc, RC_ECRYPTO);
				assert_string_equal(ei.text, "message tag mismatch");
				assert_int_equal(ei.offset, n - 32);
			}
		}
	}
	/* nothing was ever written to out */
	for (size_t i = 0; i < sizeof out; i++)
		assert_int_equal(out[i], 0xaa);
	free(ct);
}

static void test_rc_ecies__every_truncation_rejected(void **state)
{
	struct fixture *f = *state;
	size_t n, got;
	uint8_t *ct = unhex(ECIES_CT_HEX, &n);
	uint8_t out[512];
	for (size_t len = 0; len < n; len++) {
		/* exact-size copy so ASan catches any read past len */
		uint8_t *p = malloc(len ? len : 1);
		assert_non_null(p);
		memcpy(p, ct, len);
		struct rc_errinfo ei;
		int rc = rc_ecies_decrypt(&f->user, p, len, out, sizeof out, &got, &ei);
		if (len < RC_ECIES_OVERHEAD) {
			assert_int_equal(rc, RC_ETRUNC);
			assert_string_equal(ei.text, "ciphertext shorter than 113 bytes");
		} else {
			assert_int_equal(rc, RC_ECRYPTO);
		}
		free(p);
	}
	free(ct);
}

static void test_rc_ecies__invalid_ephemeral_point(void **state)
{
	struct fixture *f = *state;
	size_t n, got;
	uint8_t *ct = unhex(ECIES_CT_HEX, &n);
	uint8_t out[512];
	struct rc_errinfo ei;
	/* compressed and hybrid prefixes are refused even though the point is fine */
	static const uint8_t prefixes[] = {0x00, 0x02, 0x03, 0x05, 0x06, 0x07};
	for (size_t i = 0; i < sizeof prefixes; i++) {
		ct[0] = prefixes[i];
		assert_int_equal(rc_ecies_decrypt(&f->user, ct, n, out, sizeof out, &got, &ei),
		                 RC_EPARSE);
		assert_string_equal(ei.text, "ephemeral key is not an uncompressed point");
	}
	ct[0] = 0x04;
	ct[64] ^= 1; /* y no longer matches x */
	assert_int_equal(rc_ecies_decrypt(&f->user, ct, n, out, sizeof out, &got, &ei), RC_EPARSE);
	assert_string_equal(ei.text, "ephemeral key is not on the curve");
	memset(ct + 1, 0xff, 64); /* coordinates >= p */
	assert_int_equal(rc_ecies_decrypt(&f->user, ct, n, out, sizeof out, &got, &ei), RC_EPARSE);
	free(ct);
}

static void test_rc_ecies__wrong_key_and_small_output(void **state)
{
	struct fixture *f = *state;
	size_t n, got;
	uint8_t *ct = unhex(ECIES_CT_HEX, &n);
	uint8_t out[512];
	struct rc_secp_privkey other;
	assert_int_equal(rc_secp_privkey_from_hex(&other, PROVIDER_PRIV_HEX, 64, NULL), RC_OK);
	assert_int_equal(rc_ecies_decrypt(&other, ct, n, out, sizeof out, &got, NULL), RC_ECRYPTO);
	rc_secp_privkey_release(&other);
	struct rc_errinfo ei;
	assert_int_equal(
	        rc_ecies_decrypt(&f->user, ct, n, out, n - RC_ECIES_OVERHEAD - 1, &got, &ei),
	        RC_ERANGE);
	assert_int_equal(rc_ecies_decrypt(&f->user, ct, n, out, n - RC_ECIES_OVERHEAD, &got, NULL),
	                 RC_OK);
	assert_int_equal(rc_ecies_decrypt(NULL, ct, n, out, sizeof out, &got, NULL), RC_EINVAL);
	free(ct);
}

static void test_rc_ecies__encrypt_rejects_bad_keys(void **state)
{
	struct fixture *f = *state;
	uint8_t out[256], eph[32], pub[65];
	size_t n;
	memcpy(pub, f->user_pub, 65);
	pub[64] ^= 1; /* off the curve */
	assert_int_equal(rc_ecies_encrypt(pub, (const uint8_t *)"x", 1, out, sizeof out, &n),
	                 RC_EINVAL);
	memcpy(pub, f->user_pub, 65);
	pub[0] = 0x02; /* compressed prefix on a 65-byte key */
	assert_int_equal(rc_ecies_encrypt(pub, (const uint8_t *)"x", 1, out, sizeof out, &n),
	                 RC_EINVAL);
	memset(eph, 0, sizeof eph); /* zero scalar */
	assert_int_equal(rc_ecies_encrypt_fixed(f->user_pub, (const uint8_t *)"x", 1, eph, IV, out,
	                                        sizeof out, &n),
	                 RC_EINVAL);
	memset(eph, 0xff, sizeof eph); /* above the group order */
	assert_int_equal(rc_ecies_encrypt_fixed(f->user_pub, (const uint8_t *)"x", 1, eph, IV, out,
	                                        sizeof out, &n),
	                 RC_EINVAL);
	assert_int_equal(rc_ecies_encrypt(f->user_pub, NULL, 5, out, sizeof out, &n), RC_EINVAL);
	assert_int_equal(rc_ecies_encrypt(f->user_pub, NULL, SIZE_MAX, out, sizeof out, &n),
	                 RC_EINVAL);
	assert_int_equal(rc_ecies_encrypt(f->user_pub, out, SIZE_MAX - 10, out, sizeof out, &n),
	                 RC_ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rc_ecies__decrypts_vectors),
	        cmocka_unit_test(test_rc_ecies__reencrypts_vectors_byte_exact),
	        cmocka_unit_test(test_rc_ecies__random_round_trips),
	        cmocka_unit_test(test_rc_ecies__every_tampered_byte_rejected),
	        cmocka_unit_test(test_rc_ecies__every_truncation_rejected),
	        cmocka_unit_test(test_rc_ecies__invalid_ephemeral_point),
	        cmocka_unit_test(test_rc_ecies__wrong_key_and_small_output),
	        cmocka_unit_test(test_rc_ecies__encrypt_rejects_bad_keys),
	};
	return cmocka_run_group_tests_name("rc_ecies", tests, setup, teardown);
}
