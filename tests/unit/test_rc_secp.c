/*
 * rc_secp: keys, addresses, both signature flavours, recovery, verification and raw-x ECDH,
 * against ../shared/vectors/morpheus-vectors.txt (morpheus-protocol §2.9; values copied below so
 * the test cannot silently skip) and the captured historical message of §2.9.1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_hex.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_secp.h>

/* Hardhat/anvil development accounts #0 (user), #1 (provider), #2 (historical). */
#define USER_PRIV "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#define PROV_PRIV "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
#define HIST_PRIV "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"

#define USER_ADDR "f39fd6e51aad88f6f4ce6ab8827279cfffb92266"
#define PROV_ADDR "70997970c51812dc3a010c7d01b50e0d17dc79c8"
#define USER_PUB                                                                                   \
	"048318535b54105d4a7aae60c08fc45f9687181b4fdfc625bd1a753fa7397fed753547f11ca8696646f2f3acb0" \
	"8e31016afac23e630c5d11f59f61fef57b0d2aa5"
#define PROV_PUB                                                                                   \
	"04ba5734d8f7091719471e7f7ed6b9df170dc70cc661ca05e688601ad984f068b0d67351e5f06073092499336a" \
	"b0839ef8a521afd334e53807205fa2f08eec74f4"

/* "REQ signed bytes", "REQ keccak", "REQ signature" */
static const char req_signed[] =
	"{\"user\":\"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266\",\"key\":\"0x048318535b54105d4a7aae60c0"
	"8fc45f9687181b4fdfc625bd1a753fa7397fed753547f11ca8696646f2f3acb08e31016afac23e630c5d11f59f61"
	"fef57b0d2aa5\",\"spend\":\"1000000000000000000\",\"timestamp\":1735689600000,\"bidid\":\"0x6947"
	"14f934f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab50\"}";
#define REQ_KECCAK "1e3ffa4c0c8f03df8cd56bb4fb4f0f882084c836bd5e1340b7bde07d47b7478a"
#define REQ_SIG                                                                                    \
	"f9e83a046c91764cd4131e7240cfb3c8df877b7e66d2faee8fe88b3271f3234335db05953663c97d8a203cd2f8" \
	"b0f4e194e724e7010a67cd1eb634c3e42ae64f00"

/* "approval (abi bytes32,uint256,address,uint128)", "approval eth-signed hash", "approvalSig" */
#define APPROVAL                                                                                   \
	"694714f934f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab5000000000000000000000000000" \
	"0000000000000000000000000000000000a4b1000000000000000000000000f39fd6e51aad88f6f4ce6ab88272" \
	"79cfffb92266000000000000000000000000000000000000000000000000000001941f297c7b"
#define APPROVAL_ETH_HASH "e07966c95d6f79adf2af39d0ce0cd5ab86642ed311dab3c4bfea2139134f2d33"
#define APPROVAL_SIG                                                                               \
	"de027f31a46fa22de0015994cf8f1b994d5540d7fd05fad33a1ce8c04208625763ef5b2d9272d636e76f02ce32" \
	"1c56fa146806c8d56f49eab8b76e1181bcb8891c"

/* "PONG signed bytes" / "PONG signature" (provider key, v = 0/1) */
static const char pong_signed[] =
	"{\"nonce\":\"0x0102030405060708\",\"version\":\"v7.0.0\",\"signature\":\"0x\"}";
#define PONG_SIG                                                                                   \
	"651a804ab53fa27b9a84facd6c6869fac73ade49c1c52acb3f740b97d99e094732521a99ecd526d204f2716c23" \
	"8280561dee7dddbbe3830cd6c946cb58a4923700"

/* §2.9.1: the June-2024 captured request (sorted keys, hardhat #2) and its real signature. */
static const char hist_signed[] =
	"{\"bidid\":\"0xb0119306909b29feb8a2a30f343c32f7ceb0927325a4a6e4936d11d1236556c3\",\"key\":\"0x0"
	"49d9031e97dd78ff8c15aa86939de9b1e791066a0224e331bc962a2099a7b1f0464b8bbafe1535f2301c72c2cb3"
	"535b172da30b02686ab0393d348614f157fbdb\",\"provider\":\"0x70997970c51812dc3a010c7d01b50e0d17dc"
	"79c8\",\"spend\":\"270233162839357259772\",\"timestamp\":1719253477054,\"user\":\"0x3c44cdddb6a"
	"900fa2b585dd299e03d12fa4293bc\"}";
#define HIST_SIG                                                                                   \
	"a2bcdbd6ab6bf137c9372488139b9c4ed42503bb145f6ee9f72efd3eae6133934f0f24d8f09a8f05d057e80f8e" \
	"f320d74abef9fdc915e47cdc06c55f51d78a4e01"
/* "HIST-CURRENT signed bytes" / keccak / signature */
static const char histcur_signed[] =
	"{\"user\":\"0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc\",\"key\":\"0x049d9031e97dd78ff8c15aa869"
	"39de9b1e791066a0224e331bc962a2099a7b1f0464b8bbafe1535f2301c72c2cb3535b172da30b02686ab0393d34"
	"8614f157fbdb\",\"spend\":\"270233162839357259772\",\"timestamp\":1719253477054,\"bidid\":\"0xb01"
	"19306909b29feb8a2a30f343c32f7ceb0927325a4a6e4936d11d1236556c3\"}";
#define HISTCUR_KECCAK "14f6bcff3639672bdd84a1f257ab83630c3a4370a209a3c5166e69bed3cd07b2"
#define HISTCUR_SIG                                                                                \
	"dc66ce09efbecdd77f273a82d672af222d3cf2afb17472cfa44dd580906563d41f954b8667f46d8d5259ec6f55" \
	"889773d94236372e8632c1ba3efa4b2c5ad9fa00"

/* "ECIES ephemeral priv", "ECIES ephemeral pub", "ECIES shared x (z)" */
#define EPH_PRIV "1111111111111111111111111111111111111111111111111111111111111111"
#define EPH_PUB                                                                                    \
	"044f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa385b6b1b8ead809ca67454d9" \
	"683fcf2ba03456d6fe2c4abe2b07f0fbdbb2f1c1"
#define ECDH_Z "8dc6087cfba96177fc605685595af77abe42fcb6b5b5f913405b9e167b8dbe00"

static void unhex(const char *h, uint8_t *out, size_t n)
{
	assert_int_equal(rc_hex_decode_exact(h, strlen(h), out, n, NULL), RC_OK);
}

static void assert_hex(const uint8_t *got, size_t n, const char *want)
{
	char txt[256];
	assert_int_equal(rc_hex_encode(got, n, txt, sizeof txt), RC_OK);
	assert_string_equal(txt, want);
}

static void load(struct rc_secp_privkey *k, const char *hex)
{
	assert_int_equal(rc_secp_privkey_from_hex(k, hex, strlen(hex), NULL), RC_OK);
}

static void test_rc_secp__key_pubkey_address(void **state)
{
	(void)state;
	struct rc_secp_privkey k;
	uint8_t pub[65], addr[20];
	load(&k, USER_PRIV);
	assert_int_equal(rc_secp_pubkey(&k, pub), RC_OK);
	assert_hex(pub, 65, USER_PUB);
	assert_int_equal(rc_secp_privkey_to_address(&k, addr), RC_OK);
	assert_hex(addr, 20, USER_ADDR);
	rc_secp_privkey_release(&k);
	load(&k, PROV_PRIV);
	assert_int_equal(rc_secp_pubkey(&k, pub), RC_OK);
	assert_hex(pub, 65, PROV_PUB);
	assert_int_equal(rc_secp_pubkey_to_address(pub, addr), RC_OK);
	assert_hex(addr, 20, PROV_ADDR);
	rc_secp_privkey_release(&k);
	uint8_t zero[32] = {0};
	assert_memory_equal(k.d, zero, 32);
	rc_secp_privkey_release(NULL);
}

static void test_rc_secp__privkey_rejects_bad_input(void **state)
{
	(void)state;
	struct rc_secp_privkey k;
	struct rc_errinfo err;
	const char *zero = "0000000000000000000000000000000000000000000000000000000000000000";
	const char *order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
	const char *order_minus_1 = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140";
	assert_int_equal(rc_secp_privkey_from_hex(&k, zero, 64, NULL), RC_ECRYPTO);
	assert_int_equal(rc_secp_privkey_from_hex(&k, order, 64, NULL), RC_ECRYPTO);
	assert_int_equal(rc_secp_privkey_from_hex(&k, order_minus_1, 64, NULL), RC_OK);
	assert_int_equal(rc_secp_privkey_from_hex(&k, USER_PRIV, 62, &err), RC_EPARSE);
	assert_int_equal(rc_secp_privkey_from_hex(&k, "0x" USER_PRIV "00", 68, &err), RC_EPARSE);
	char bad[] = USER_PRIV;
	bad[10] = 'g';
	assert_int_equal(rc_secp_privkey_from_hex(&k, bad, 64, &err), RC_EPARSE);
	assert_int_equal(err.offset, 10);
	uint8_t zeros[32] = {0};
	assert_memory_equal(k.d, zeros, 32); /* a failed load leaves no key behind */
}

static void test_rc_secp__raw_signatures_match_vectors(void **state)
{
	(void)state;
	struct rc_secp_privkey user, prov, hist;
	uint8_t h[32], sig[65];
	load(&user, USER_PRIV);
	load(&prov, PROV_PRIV);
	load(&hist, HIST_PRIV);

	rc_keccak256(req_signed, sizeof req_signed - 1, h);
	assert_hex(h, 32, REQ_KECCAK);
	assert_int_equal(rc_secp_sign_hash(&user, h, sig), RC_OK);
	assert_hex(sig, 65, REQ_SIG);

	rc_keccak256(pong_signed, sizeof pong_signed - 1, h);
	assert_int_equal(rc_secp_sign_hash(&prov, h, sig), RC_OK);
	assert_hex(sig, 65, PONG_SIG);

	rc_keccak256(hist_signed, sizeof hist_signed - 1, h);
	assert_int_equal(rc_secp_sign_hash(&hist, h, sig), RC_OK);
	assert_hex(sig, 65, HIST_SIG);

	rc_keccak256(histcur_signed, sizeof histcur_signed - 1, h);
	assert_hex(h, 32, HISTCUR_KECCAK);
	assert_int_equal(rc_secp_sign_hash(&hist, h, sig), RC_OK);
	assert_hex(sig, 65, HISTCUR_SIG);

	rc_secp_privkey_release(&user);
	rc_secp_privkey_release(&prov);
	rc_secp_privkey_release(&hist);
}

static void test_rc_secp__eth_message_signature_matches_vector(void **state)
{
	(void)state;
	struct rc_secp_privkey prov;
	uint8_t approval[128], h[32], sig[65], addr[20], want_addr[20];
	unhex(APPROVAL, approval, sizeof approval);
	rc_secp_eth_message_hash(approval, sizeof approval, h);
	assert_hex(h, 32, APPROVAL_ETH_HASH);
	load(&prov, PROV_PRIV);
	assert_int_equal(rc_secp_sign_eth_message(&prov, approval, sizeof approval, sig), RC_OK);
	assert_hex(sig, 65, APPROVAL_SIG);
	assert_true(sig[64] == 27 || sig[64] == 28);
	unhex(PROV_ADDR, want_addr, 20);
	assert_int_equal(rc_secp_recover_address(h, sig, addr), RC_OK);
	assert_memory_equal(addr, want_addr, 20);
	assert_int_equal(rc_secp_verify_address(h, sig, want_addr), RC_OK);
	rc_secp_privkey_release(&prov);
}

static void test_rc_secp__recover_accepts_both_v_forms(void **state)
{
	(void)state;
	uint8_t h[32], sig[65], pub[65], want[65];
	rc_keccak256(req_signed, sizeof req_signed - 1, h);
	unhex(REQ_SIG, sig, 65);
	unhex(USER_PUB, want, 65);
	assert_int_equal(rc_secp_recover(h, sig, pub), RC_OK);
	assert_memory_equal(pub, want, 65);
	assert_int_equal(rc_secp_verify_pubkey(h, sig, want), RC_OK);
	sig[64] += 27;
	assert_int_equal(rc_secp_recover(h, sig, pub), RC_OK);
	assert_memory_equal(pub, want, 65);
	assert_int_equal(rc_secp_verify_pubkey(h, sig, want), RC_OK);
	for (int v = 2; v < 256; v++) {
		if (v == 27 || v == 28)
			continue;
		sig[64] = (uint8_t)v;
		assert_int_equal(rc_secp_recover(h, sig, pub), RC_ECRYPTO);
	}
}

static void test_rc_secp__verify_rejects_wrong_signer_and_tampering(void **state)
{
	(void)state;
	uint8_t h[32], sig[65], prov[20], user[20];
	rc_keccak256(req_signed, sizeof req_signed - 1, h);
	unhex(REQ_SIG, sig, 65);
	unhex(PROV_ADDR, prov, 20);
	unhex(USER_ADDR, user, 20);
	assert_int_equal(rc_secp_verify_address(h, sig, user), RC_OK);
	assert_int_equal(rc_secp_verify_address(h, sig, prov), RC_ECRYPTO);
	h[0] ^= 1;
	assert_int_equal(rc_secp_verify_address(h, sig, user), RC_ECRYPTO);
	h[0] ^= 1;
	/* r = 0 and s = 0 are invalid. */
	uint8_t bad[65];
	memcpy(bad, sig, 65);
	memset(bad, 0, 32);
	assert_int_equal(rc_secp_recover(h, bad, (uint8_t[65]){0}), RC_ECRYPTO);
	memcpy(bad, sig, 65);
	memset(bad + 32, 0, 32);
	assert_int_equal(rc_secp_verify_address(h, bad, user), RC_ECRYPTO);
}

/* n - s with the recovery id flipped: the same signature in high-S form. */
static void to_high_s(uint8_t sig[65])
{
	static const uint8_t n[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				      0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
				      0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};
	int borrow = 0;
	for (int i = 31; i >= 0; i--) {
		int d = n[i] - sig[32 + i] - borrow;
		borrow = d < 0;
		sig[32 + i] = (uint8_t)(d + (borrow ? 256 : 0));
	}
	sig[64] ^= 1;
}

static void test_rc_secp__high_s_recovers_but_does_not_verify(void **state)
{
	(void)state;
	uint8_t h[32], sig[65], user[20], addr[20];
	rc_keccak256(req_signed, sizeof req_signed - 1, h);
	unhex(REQ_SIG, sig, 65);
	unhex(USER_ADDR, user, 20);
	to_high_s(sig);
	assert_int_equal(rc_secp_recover_address(h, sig, addr), RC_OK);
	assert_memory_equal(addr, user, 20);
	assert_int_equal(rc_secp_verify_address(h, sig, user), RC_ECRYPTO);
}

static void test_rc_secp__ecdh_raw_x_matches_vector(void **state)
{
	(void)state;
	struct rc_secp_privkey eph, user;
	uint8_t user_pub[65], eph_pub[65], z[32], z2[32];
	load(&eph, EPH_PRIV);
	load(&user, USER_PRIV);
	assert_int_equal(rc_secp_pubkey(&eph, eph_pub), RC_OK);
	assert_hex(eph_pub, 65, EPH_PUB);
	unhex(USER_PUB, user_pub, 65);
	assert_int_equal(rc_secp_ecdh_x(&eph, user_pub, z), RC_OK);
	assert_hex(z, 32, ECDH_Z);
	/* And from the other side. */
	assert_int_equal(rc_secp_ecdh_x(&user, eph_pub, z2), RC_OK);
	assert_memory_equal(z, z2, 32);
	/* A point off the curve is refused. */
	user_pub[64] ^= 1;
	assert_int_equal(rc_secp_ecdh_x(&eph, user_pub, z), RC_ECRYPTO);
	rc_secp_privkey_release(&eph);
	rc_secp_privkey_release(&user);
}

static void test_rc_secp__pubkey_parse_forms(void **state)
{
	(void)state;
	uint8_t pub[65], out[65], comp[33];
	unhex(USER_PUB, pub, 65);
	assert_int_equal(rc_secp_pubkey_parse(pub, 65, out), RC_OK);
	assert_memory_equal(out, pub, 65);
	comp[0] = (uint8_t)(2 | (pub[64] & 1));
	memcpy(comp + 1, pub + 1, 32);
	assert_int_equal(rc_secp_pubkey_parse(comp, 33, out), RC_OK);
	assert_memory_equal(out, pub, 65);
	assert_int_equal(rc_secp_pubkey_parse(pub, 64, out), RC_ECRYPTO);
	pub[0] = 6; /* hybrid form is not accepted */
	assert_int_equal(rc_secp_pubkey_parse(pub, 65, out), RC_ECRYPTO);
	pub[0] = 4;
	pub[40] ^= 0x80;
	assert_int_equal(rc_secp_pubkey_parse(pub, 65, out), RC_ECRYPTO);
	pub[40] ^= 0x80;
	pub[0] = 3; /* the address helper takes only the uncompressed form */
	assert_int_equal(rc_secp_pubkey_to_address(pub, out), RC_EINVAL);
}

static void test_rc_secp__generated_key_round_trip(void **state)
{
	(void)state;
	struct rc_secp_privkey a, b;
	uint8_t h[32], sig[65], addr[20], got[20];
	assert_int_equal(rc_secp_privkey_generate(&a), RC_OK);
	assert_int_equal(rc_secp_privkey_generate(&b), RC_OK);
	assert_memory_not_equal(a.d, b.d, 32);
	assert_int_equal(rc_secp_privkey_to_address(&a, addr), RC_OK);
	rc_keccak256("hello", 5, h);
	assert_int_equal(rc_secp_sign_hash(&a, h, sig), RC_OK);
	assert_int_equal(rc_secp_recover_address(h, sig, got), RC_OK);
	assert_memory_equal(addr, got, 20);
	rc_secp_privkey_release(&a);
	rc_secp_privkey_release(&b);
}

/* rc_secp_verify_rs: plain r||s verify against a known key, the reference's VerifySignature. */
static void test_rc_secp__verify_rs_against_known_key(void **state)
{
	(void)state;
	uint8_t h[32], sig[65], user_pub[65], prov_pub[65], bad[65];
	rc_keccak256(req_signed, sizeof req_signed - 1, h);
	unhex(REQ_SIG, sig, 65);
	unhex(USER_PUB, user_pub, 65);
	unhex(PROV_PUB, prov_pub, 65);
	assert_int_equal(rc_secp_verify_rs(h, sig, user_pub), RC_OK);
	/* v is not read: any recovery byte, or none at all (64-byte buffer) */
	memcpy(bad, sig, 65);
	bad[64] = 0x5a;
	assert_int_equal(rc_secp_verify_rs(h, bad, user_pub), RC_OK);
	uint8_t rs[64];
	memcpy(rs, sig, 64);
	assert_int_equal(rc_secp_verify_rs(h, rs, user_pub), RC_OK);
	/* other signer, other hash */
	assert_int_equal(rc_secp_verify_rs(h, sig, prov_pub), RC_ECRYPTO);
	h[31] ^= 1;
	assert_int_equal(rc_secp_verify_rs(h, sig, user_pub), RC_ECRYPTO);
	h[31] ^= 1;
	/* high s is refused, as go-ethereum does */
	memcpy(bad, sig, 65);
	to_high_s(bad);
	assert_int_equal(rc_secp_verify_rs(h, bad, user_pub), RC_ECRYPTO);
	/* r = 0, s = 0, r >= n */
	memcpy(bad, sig, 65);
	memset(bad, 0, 32);
	assert_int_equal(rc_secp_verify_rs(h, bad, user_pub), RC_ECRYPTO);
	memcpy(bad, sig, 65);
	memset(bad + 32, 0, 32);
	assert_int_equal(rc_secp_verify_rs(h, bad, user_pub), RC_ECRYPTO);
	memcpy(bad, sig, 65);
	memset(bad, 0xff, 32);
	assert_int_equal(rc_secp_verify_rs(h, bad, user_pub), RC_ECRYPTO);
	/* keys: off the curve, compressed prefix, hybrid prefix */
	uint8_t k[65];
	memcpy(k, user_pub, 65);
	k[64] ^= 1;
	assert_int_equal(rc_secp_verify_rs(h, sig, k), RC_ECRYPTO);
	memcpy(k, user_pub, 65);
	k[0] = 2;
	assert_int_equal(rc_secp_verify_rs(h, sig, k), RC_ECRYPTO);
	k[0] = 6 | (user_pub[64] & 1);
	assert_int_equal(rc_secp_verify_rs(h, sig, k), RC_ECRYPTO);
	/* agrees with the recovery-based check on the vectors */
	rc_keccak256(pong_signed, sizeof pong_signed - 1, h);
	unhex(PONG_SIG, sig, 65);
	assert_int_equal(rc_secp_verify_rs(h, sig, prov_pub), RC_OK);
	assert_int_equal(rc_secp_verify_pubkey(h, sig, prov_pub), RC_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_secp__key_pubkey_address),
		cmocka_unit_test(test_rc_secp__privkey_rejects_bad_input),
		cmocka_unit_test(test_rc_secp__raw_signatures_match_vectors),
		cmocka_unit_test(test_rc_secp__eth_message_signature_matches_vector),
		cmocka_unit_test(test_rc_secp__recover_accepts_both_v_forms),
		cmocka_unit_test(test_rc_secp__verify_rejects_wrong_signer_and_tampering),
		cmocka_unit_test(test_rc_secp__high_s_recovers_but_does_not_verify),
		cmocka_unit_test(test_rc_secp__ecdh_raw_x_matches_vector),
		cmocka_unit_test(test_rc_secp__pubkey_parse_forms),
		cmocka_unit_test(test_rc_secp__generated_key_round_trip),
		cmocka_unit_test(test_rc_secp__verify_rs_against_known_key),
	};
	return cmocka_run_group_tests_name("rc_secp", tests, NULL, NULL);
}
