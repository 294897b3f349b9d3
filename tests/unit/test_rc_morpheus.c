/*
 * rc_morpheus: ids, approval and receipt blobs, their EIP-191 signatures and the openSession /
 * closeSession calldata, against ../shared/vectors/morpheus-vectors.txt (morpheus-protocol
 * §2.9). The values are copied below so the test cannot skip; one more test checks that the
 * copies still agree with the file when it is there ($MORGATE_ROOT/../shared/vectors/).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_addr.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_morpheus.h>
#include <router-core/rc_secp.h>

#define PROV_PRIV "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
#define USER_PRIV "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"

/* label -> value, exactly as in morpheus-vectors.txt (hex without 0x where the file has 0x) */
static const struct {
	const char *label, *value;
} V[] = {
	{"user address",
	 "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"},
	{"provider address",
	 "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"},
	{"modelId",
	 "0x6a4813e866a48da528c533e706344ea853a1d3f21e37b4c8e7ffd5ff25779018"},
	{"bidId = keccak256(provider20||modelId32||uint256(0))",
	 "0x694714f934f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab50"},
	{"sessionId = keccak256(user20||provider20||bidId32||uint256(7))",
	 "0x266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b8"},
	{"REQ signed bytes",
	 "{\"user\":\"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266\",\"key\":\"0x048318535b54105d4a7aae60c0"
	 "8fc45f9687181b4fdfc625bd1a753fa7397fed753547f11ca8696646f2f3acb08e31016afac23e630c5d11f5"
	 "9f61fef57b0d2aa5\",\"spend\":\"1000000000000000000\",\"timestamp\":1735689600000,\"bidid\":\"0x694"
	 "714f934f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab50\"}"},
	{"REQ keccak",
	 "0x1e3ffa4c0c8f03df8cd56bb4fb4f0f882084c836bd5e1340b7bde07d47b7478a"},
	{"REQ signature",
	 "0xf9e83a046c91764cd4131e7240cfb3c8df877b7e66d2faee8fe88b3271f3234335db05953663c97d8a203c"
	 "d2f8b0f4e194e724e7010a67cd1eb634c3e42ae64f00"},
	{"approval (abi bytes32,uint256,address,uint128)",
	 "0x694714f934f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab500000000000000000000000"
	 "00000000000000000000000000000000000000a4b1000000000000000000000000f39fd6e51aad88f6f4ce6a"
	 "b8827279cfffb92266000000000000000000000000000000000000000000000000000001941f297c7b"},
	{"approval keccak",
	 "0x19956fdada9799fcc4ee0129e0aef00fc7d78a9fd032f62ad6a63785f6da0bed"},
	{"approval eth-signed hash",
	 "0xe07966c95d6f79adf2af39d0ce0cd5ab86642ed311dab3c4bfea2139134f2d33"},
	{"approvalSig",
	 "0xde027f31a46fa22de0015994cf8f1b994d5540d7fd05fad33a1ce8c04208625763ef5b2d9272d636e76f02"
	 "ce321c56fa146806c8d56f49eab8b76e1181bcb8891c"},
	{"openSession calldata",
	 "0xa85a1782000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cfffb9226600000000000000"
	 "00000000000000000000000000000000000de0b6b3a764000000000000000000000000000000000000000000"
	 "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
	 "a000000000000000000000000000000000000000000000000000000000000001400000000000000000000000"
	 "000000000000000000000000000000000000000080694714f934f06307cb2d0b3af993c376110bfad4c9ab59"
	 "58be519c937b59ab50000000000000000000000000000000000000000000000000000000000000a4b1000000"
	 "000000000000000000f39fd6e51aad88f6f4ce6ab8827279cfffb92266000000000000000000000000000000"
	 "000000000000000000000001941f297c7b000000000000000000000000000000000000000000000000000000"
	 "0000000041de027f31a46fa22de0015994cf8f1b994d5540d7fd05fad33a1ce8c04208625763ef5b2d9272d6"
	 "36e76f02ce321c56fa146806c8d56f49eab8b76e1181bcb8891c000000000000000000000000000000000000"
	 "00000000000000000000000000"},
	{"REPORT (abi bytes32,uint256,uint128,uint32 tps,uint32 ttft,uint32 in,uint32 out)",
	 "0x266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4b80000000000000000000000"
	 "00000000000000000000000000000000000000a4b10000000000000000000000000000000000000000000000"
	 "00000001941f2f977a000000000000000000000000000000000000000000000000000000000000a604000000"
	 "000000000000000000000000000000000000000000000000000000015e000000000000000000000000000000"
	 "0000000000000000000000000000000078000000000000000000000000000000000000000000000000000000"
	 "0000000320"},
	{"signedReport",
	 "0x0c98fb37b7c47f9538ec2ec50baa0eef9f70afb5a5def91540e79d24a44c2c11326637683965fbbc534b8a"
	 "df5394e080c35ad24d81d444969afef39a338bde2b1b"},
	{"closeSession calldata",
	 "0x42f77a31000000000000000000000000000000000000000000000000000000000000004000000000000000"
	 "0000000000000000000000000000000000000000000000014000000000000000000000000000000000000000"
	 "000000000000000000000000e0266cda2d5d32f8441832085391c68dc8e788c9235cee5d46ae47b57e75f1c4"
	 "b8000000000000000000000000000000000000000000000000000000000000a4b10000000000000000000000"
	 "00000000000000000000000000000001941f2f977a0000000000000000000000000000000000000000000000"
	 "00000000000000a604000000000000000000000000000000000000000000000000000000000000015e000000"
	 "0000000000000000000000000000000000000000000000000000000078000000000000000000000000000000"
	 "0000000000000000000000000000000320000000000000000000000000000000000000000000000000000000"
	 "00000000410c98fb37b7c47f9538ec2ec50baa0eef9f70afb5a5def91540e79d24a44c2c11326637683965fb"
	 "bc534b8adf5394e080c35ad24d81d444969afef39a338bde2b1b000000000000000000000000000000000000"
	 "00000000000000000000000000"},
};

static const char *vec(const char *label)
{
	for (size_t i = 0; i < sizeof V / sizeof V[0]; i++)
		if (!strcmp(V[i].label, label))
			return V[i].value;
	fail_msg("no vector '%s'", label);
	return NULL;
}

/* Decode a 0x-hex vector into a heap buffer. */
static uint8_t *vbytes(const char *label, size_t *n)
{
	const char *h = vec(label);
	size_t len = strlen(h);
	uint8_t *out = malloc(len / 2);
	assert_int_equal(rc_hex_decode(h, len, out, len / 2, n, NULL), RC_OK);
	return out;
}

static void assert_vec(const char *label, const uint8_t *got, size_t n)
{
	size_t wn;
	uint8_t *want = vbytes(label, &wn);
	assert_int_equal(n, wn);
	assert_memory_equal(got, want, n);
	free(want);
}

static void addr(const char *label, uint8_t out[20])
{
	const char *s = vec(label);
	assert_int_equal(rc_addr_parse(out, s, strlen(s), NULL), RC_OK);
}

static void test_rc_morpheus__bid_and_session_ids(void **state)
{
	(void)state;
	uint8_t user[20], prov[20], model[32], bid[32], sess[32];
	struct rc_u256 zero, seven;
	addr("user address", user);
	addr("provider address", prov);
	assert_int_equal(rc_hex_decode_exact(vec("modelId"), 66, model, 32, NULL), RC_OK);
	rc_u256_from_u64(&zero, 0);
	rc_u256_from_u64(&seven, 7);
	rc_morpheus_bid_id(prov, model, &zero, bid);
	assert_vec("bidId = keccak256(provider20||modelId32||uint256(0))", bid, 32);
	rc_morpheus_session_id(user, prov, bid, &seven, sess);
	assert_vec("sessionId = keccak256(user20||provider20||bidId32||uint256(7))", sess, 32);
}

static void test_rc_morpheus__request_keccak_and_raw_signature(void **state)
{
	(void)state;
	const char *signed_bytes = vec("REQ signed bytes");
	uint8_t h[32], sig[65];
	struct rc_secp_privkey user;
	rc_keccak256(signed_bytes, strlen(signed_bytes), h);
	assert_vec("REQ keccak", h, 32);
	assert_int_equal(rc_secp_privkey_from_hex(&user, USER_PRIV, 64, NULL), RC_OK);
	assert_int_equal(rc_secp_sign_hash(&user, h, sig), RC_OK);
	assert_vec("REQ signature", sig, 65);
	assert_true(sig[64] <= 1); /* raw flavour */
	rc_secp_privkey_release(&user);
}

static void approval_fixture(struct rc_morpheus_approval *a)
{
	size_t n;
	uint8_t *bid = vbytes("bidId = keccak256(provider20||modelId32||uint256(0))", &n);
	memcpy(a->bid_id, bid, 32);
	free(bid);
	a->chain_id = 42161;
	addr("user address", a->user);
	a->timestamp_ms = 1735689600123;
}

static void test_rc_morpheus__approval_blob_hashes_and_signature(void **state)
{
	(void)state;
	struct rc_morpheus_approval a, back;
	uint8_t blob[RC_MORPHEUS_APPROVAL_LEN], h[32], sig[65], prov[20];
	struct rc_secp_privkey key;
	approval_fixture(&a);
	rc_morpheus_approval_encode(&a, blob);
	assert_vec("approval (abi bytes32,uint256,address,uint128)", blob, sizeof blob);
	rc_keccak256(blob, sizeof blob, h);
	assert_vec("approval keccak", h, 32);
	rc_secp_eth_message_hash(blob, sizeof blob, h);
	assert_vec("approval eth-signed hash", h, 32);
	assert_int_equal(rc_secp_privkey_from_hex(&key, PROV_PRIV, 64, NULL), RC_OK);
	assert_int_equal(rc_secp_sign_eth_message(&key, blob, sizeof blob, sig), RC_OK);
	assert_vec("approvalSig", sig, 65);
	addr("provider address", prov);
	assert_int_equal(rc_morpheus_verify_blob(blob, sizeof blob, sig, prov), RC_OK);
	blob[127] ^= 1; /* another timestamp: the signature no longer matches */
	assert_int_equal(rc_morpheus_verify_blob(blob, sizeof blob, sig, prov), RC_ECRYPTO);
	blob[127] ^= 1;
	assert_int_equal(rc_morpheus_approval_decode(blob, sizeof blob, &back, NULL), RC_OK);
	assert_memory_equal(back.bid_id, a.bid_id, 32);
	assert_memory_equal(back.user, a.user, 20);
	assert_int_equal(back.chain_id, 42161);
	assert_int_equal(back.timestamp_ms, 1735689600123);
	rc_secp_privkey_release(&key);
}

static void test_rc_morpheus__approval_decode_rejections(void **state)
{
	(void)state;
	struct rc_morpheus_approval a;
	uint8_t blob[RC_MORPHEUS_APPROVAL_LEN + 1];
	struct rc_errinfo err;
	approval_fixture(&a);
	rc_morpheus_approval_encode(&a, blob);
	assert_int_equal(rc_morpheus_approval_decode(blob, 127, &a, &err), RC_EPARSE);
	assert_int_equal(rc_morpheus_approval_decode(blob, 129, &a, &err), RC_EPARSE);
	blob[64] = 1; /* dirty address word */
	assert_int_equal(rc_morpheus_approval_decode(blob, 128, &a, &err), RC_EPARSE);
	assert_int_equal(err.offset, 64);
	blob[64] = 0;
	blob[96 + 15] = 1; /* timestamp > 2^64 but a valid uint128 */
	assert_int_equal(rc_morpheus_approval_decode(blob, 128, &a, &err), RC_EPARSE);
	assert_int_equal(err.offset, 96);
	blob[96 + 15] = 0;
	blob[96] = 1; /* timestamp > uint128 */
	assert_int_equal(rc_morpheus_approval_decode(blob, 128, &a, &err), RC_EPARSE);
	assert_int_equal(err.offset, 96);
}

static void test_rc_morpheus__open_session_calldata(void **state)
{
	(void)state;
	struct rc_morpheus_approval a;
	uint8_t blob[RC_MORPHEUS_APPROVAL_LEN];
	size_t n;
	struct rc_u256 amount;
	struct rc_buf b = RC_BUF_INIT;
	approval_fixture(&a);
	rc_morpheus_approval_encode(&a, blob);
	uint8_t *sig = vbytes("approvalSig", &n);
	assert_int_equal(rc_u256_parse_dec(&amount, "1000000000000000000", 19, NULL), RC_OK);
	assert_int_equal(rc_morpheus_open_session_calldata(a.user, &amount, false, blob, sizeof blob,
							   sig, n, &b),
			 RC_OK);
	assert_vec("openSession calldata", (const uint8_t *)b.ptr, b.len);
	free(sig);
	rc_buf_release(&b);
}

static void test_rc_morpheus__report_blob_signature_and_close_calldata(void **state)
{
	(void)state;
	struct rc_morpheus_receipt r = {.chain_id = 42161,
					.timestamp_ms = 1735690000250,
					.tps_scaled1000 = 42500,
					.ttft_ms = 350,
					.tokens_in = 120,
					.tokens_out = 800};
	uint8_t blob[RC_MORPHEUS_RECEIPT_LEN], sig[65], prov[20];
	size_t n;
	uint8_t *sid = vbytes("sessionId = keccak256(user20||provider20||bidId32||uint256(7))", &n);
	memcpy(r.session_id, sid, 32);
	free(sid);
	rc_morpheus_receipt_encode(&r, blob);
	assert_vec("REPORT (abi bytes32,uint256,uint128,uint32 tps,uint32 ttft,uint32 in,uint32 out)",
		   blob, sizeof blob);
	struct rc_secp_privkey key;
	assert_int_equal(rc_secp_privkey_from_hex(&key, PROV_PRIV, 64, NULL), RC_OK);
	assert_int_equal(rc_secp_sign_eth_message(&key, blob, sizeof blob, sig), RC_OK);
	assert_vec("signedReport", sig, 65);
	addr("provider address", prov);
	assert_int_equal(rc_morpheus_verify_blob(blob, sizeof blob, sig, prov), RC_OK);
	struct rc_buf b = RC_BUF_INIT;
	assert_int_equal(rc_morpheus_close_session_calldata(blob, sizeof blob, sig, 65, &b), RC_OK);
	assert_vec("closeSession calldata", (const uint8_t *)b.ptr, b.len);
	rc_buf_release(&b);
	rc_secp_privkey_release(&key);
}

static void test_rc_morpheus__embedded_vectors_match_file(void **state)
{
	(void)state;
	const char *root = getenv("MORGATE_ROOT");
	char path[4096];
	snprintf(path, sizeof path, "%s/../shared/vectors/morpheus-vectors.txt", root ? root : ".");
	FILE *f = fopen(path, "r");
	if (!f) {
		print_message("vectors file '%s' not found: embedded copies only\n", path);
		skip();
	}
	static char line[16384];
	size_t found = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
			size_t ll = strlen(V[i].label);
			if (!strncmp(line, V[i].label, ll) && !strncmp(line + ll, ": ", 2)) {
				assert_string_equal(line + ll + 2, V[i].value);
				found++;
			}
		}
	}
	fclose(f);
	assert_int_equal(found, sizeof V / sizeof V[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_morpheus__bid_and_session_ids),
		cmocka_unit_test(test_rc_morpheus__request_keccak_and_raw_signature),
		cmocka_unit_test(test_rc_morpheus__approval_blob_hashes_and_signature),
		cmocka_unit_test(test_rc_morpheus__approval_decode_rejections),
		cmocka_unit_test(test_rc_morpheus__open_session_calldata),
		cmocka_unit_test(test_rc_morpheus__report_blob_signature_and_close_calldata),
		cmocka_unit_test(test_rc_morpheus__embedded_vectors_match_file),
	};
	return cmocka_run_group_tests_name("rc_morpheus", tests, NULL, NULL);
}
