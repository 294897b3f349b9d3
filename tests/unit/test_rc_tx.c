/*
 * rc_tx: EIP-1559 signing against published vectors (ethereumjs packages/tx/test/json/
 * eip1559.json, as quoted by MEWwalletKit's Eip1559TransactionTest, and MEWwalletKit's own
 * "real transaction" with its hash) and against `cast mktx` (foundry 1.7.1) as an oracle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_addr.h>
#include <router-core/rc_morpheus.h>
#include <router-core/rc_rlp.h>
#include <router-core/rc_tx.h>

#define ANVIL0 "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#define ANVIL1 "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"

static void key(struct rc_secp_privkey *k, const char *hex)
{
	assert_int_equal(rc_secp_privkey_from_hex(k, hex, strlen(hex), NULL), RC_OK);
}

static void to(struct rc_tx *tx, const char *addr)
{
	tx->has_to = true;
	assert_int_equal(rc_addr_parse(tx->to, addr, strlen(addr), NULL), RC_OK);
}

static void u256(struct rc_u256 *v, const char *dec)
{
	assert_int_equal(rc_u256_parse_dec(v, dec, strlen(dec), NULL), RC_OK);
}

/* Sign and compare with the expected raw hex (0x-prefixed) and, if given, the tx hash. */
static void assert_signed(const struct rc_tx *tx, const char *priv, const char *want_raw,
			  const char *want_hash)
{
	struct rc_secp_privkey k;
	struct rc_buf raw = RC_BUF_INIT;
	uint8_t h[32];
	key(&k, priv);
	assert_int_equal(rc_tx_sign(tx, &k, &raw, h), RC_OK);
	char *hex = malloc(2 * raw.len + 3);
	rc_hex_encode_0x(raw.ptr, raw.len, hex, 2 * raw.len + 3);
	assert_string_equal(hex, want_raw);
	if (want_hash) {
		char hh[67];
		rc_hex_encode_0x(h, 32, hh, sizeof hh);
		assert_string_equal(hh, want_hash);
	}
	/* the signing hash recovers the signer's address */
	uint8_t sh[32], sig[65], want_addr[20], got_addr[20];
	assert_int_equal(rc_tx_signing_hash(tx, sh), RC_OK);
	assert_int_equal(rc_secp_sign_hash(&k, sh, sig), RC_OK);
	assert_int_equal(rc_secp_privkey_to_address(&k, want_addr), RC_OK);
	assert_int_equal(rc_secp_recover_address(sh, sig, got_addr), RC_OK);
	assert_memory_equal(got_addr, want_addr, 20);
	/* the raw form is one canonical RLP list of 12 items after the type byte */
	struct rc_rlp_item top, it;
	struct rc_rlp_iter iter;
	int n = 0;
	assert_int_equal(raw.ptr[0], 2);
	assert_int_equal(rc_rlp_validate((uint8_t *)raw.ptr + 1, raw.len - 1, NULL), RC_OK);
	assert_int_equal(rc_rlp_decode((uint8_t *)raw.ptr + 1, raw.len - 1, &top, NULL), RC_OK);
	rc_rlp_iter_init(&iter, &top);
	while (rc_rlp_iter_next(&iter, &it, NULL) == 1)
		n++;
	assert_int_equal(n, 12);
	free(hex);
	rc_buf_release(&raw);
	rc_secp_privkey_release(&k);
}

static void test_rc_tx__ethereumjs_eip1559_vectors(void **state)
{
	(void)state;
	/* eip1559.json: chainId 7822, to 0x...aaaa, empty data and access list; the JSON's
	 * signedTransactionRLP wraps the typed bytes in an RLP string (b873...), stripped here. */
	static const struct {
		uint64_t nonce, value, tip, cap, gas;
		const char *raw, *hash;
	} v[] = {
		{819, 43203529, 75853, 121212, 35552,
		 "0x02f870821e8e8203338301284d8301d97c828ae094000000000000000000000000000000000000aaaa84"
		 "02933bc980c080a0d067f2167008c59219652f91cbf8788dbca5f771f6e91e2b7657e85b78b472e0a01d"
		 "305af9fe81fdba43f0dfcd400ed24dcace0a7e30d4e85701dcaaf484cd079e",
		 "0xa3bf78ff247cad934aa5fb13e05f11e59c93511523ff8a622e59c3a34700e5c8"},
		{353, 61901619, 38850, 136295, 32593,
		 "0x02f86f821e8e8201618297c283021467827f5194000000000000000000000000000000000000aaaa8403"
		 "b08b3380c001a004205678f13fc1d7b10feea6513dfa76e24418b6e08097d95c6f93a3b64e536da01d45"
		 "ad61bfece43862de2cce7d2575a8c1d08c26c87f3cb5f26d7b0be54a91b2",
		 NULL},
		{119, 65456115, 24721, 107729, 62341,
		 "0x02f86d821e8e778260918301a4d182f38594000000000000000000000000000000000000aaaa8403e6c7"
		 "f380c001a0e38e239770801eb995498c821e55ac9c19ae09184bb27b34be105e02fe3b7615a067c64ca6"
		 "bd6d9107e85fd581ab2e70a14b637eb36505bb40861ef9d6e800cab6",
		 NULL},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		struct rc_tx tx = {.chain_id = 7822, .nonce = v[i].nonce, .gas = v[i].gas};
		rc_u256_from_u64(&tx.value, v[i].value);
		rc_u256_from_u64(&tx.max_priority_fee_per_gas, v[i].tip);
		rc_u256_from_u64(&tx.max_fee_per_gas, v[i].cap);
		to(&tx, "0x000000000000000000000000000000000000aaaa");
		assert_signed(&tx, "8f2a55949038a9610f50fb23b5883af3b4ecb3c3bb792cbcefbd1542c692be63",
			      v[i].raw, v[i].hash);
	}
}

static void test_rc_tx__mewwalletkit_real_transaction(void **state)
{
	(void)state;
	struct rc_tx tx = {.chain_id = 123, .nonce = 0, .gas = 21000};
	rc_u256_from_u64(&tx.max_priority_fee_per_gas, 7);
	rc_u256_from_u64(&tx.max_fee_per_gas, 7);
	rc_u256_from_u64(&tx.value, 0x16345785D8A0000ull);
	to(&tx, "0x61fac28c810253ea3a42ebbb1a5cf8687765e4ee"); /* the key's own address */
	assert_signed(&tx, "e3046226c9d5f6b7fda49b00123fe96ab2fac359315f27169b5c984059b3540f",
		      "0x02f86a7b8007078252089461fac28c810253ea3a42ebbb1a5cf8687765e4ee88016345785d8a0000"
		      "80c001a01f75fb4ae321bb55c0e7569d940ce133e775fb4494500ac6de9aeb16f45f20d1a05bf9b98c"
		      "50422e3ada79a6920b1007bc36a1c36d178dbc1b44dfbd97fc56cf13",
		      "0xbe76a9ae424fe7a42da7db0f42db0ced82929710d9c19cfdaa7e18c634e6ae54");
}

/*
 * cast mktx --private-key 0xac09...ff80 --chain 42161 --nonce 7 --gas-limit 250000
 *   --gas-price 20000000 --priority-gas-price 1000000 0x092bAaDB7DEf4C3981454dD9c0A0D7FF07bCFc86
 *   'approve(address,uint256)' 0xDE819AaEE474626E3f34Ef0263373357e5a6C71b 1000000000000000000
 * (hash: cast keccak <raw>)
 */
static void test_rc_tx__cast_approve_call(void **state)
{
	(void)state;
	struct rc_tx tx = {.chain_id = 42161, .nonce = 7, .gas = 250000};
	struct rc_abi_value a[2];
	struct rc_u256 amount;
	uint8_t spender[20];
	struct rc_buf data = RC_BUF_INIT;
	u256(&tx.max_fee_per_gas, "20000000");
	u256(&tx.max_priority_fee_per_gas, "1000000");
	to(&tx, "0x092bAaDB7DEf4C3981454dD9c0A0D7FF07bCFc86");
	assert_int_equal(rc_addr_parse(spender, "0xDE819AaEE474626E3f34Ef0263373357e5a6C71b", 42, NULL),
			 RC_OK);
	u256(&amount, "1000000000000000000");
	rc_abi_set_address(&a[0], spender);
	rc_abi_set_u256(&a[1], &amount);
	assert_int_equal(rc_abi_encode_call(RC_STR_LIT("approve(address,uint256)"), a, 2, &data, NULL),
			 RC_OK);
	tx.data = (const uint8_t *)data.ptr;
	tx.data_len = data.len;
	assert_signed(&tx, ANVIL0,
		      "0x02f8b182a4b107830f42408401312d008303d09094092baadb7def4c3981454dd9c0a0d7ff07bcfc8680"
		      "b844095ea7b3000000000000000000000000de819aaee474626e3f34ef0263373357e5a6c71b00000000"
		      "00000000000000000000000000000000000000000de0b6b3a7640000c080a02bed3cc7b6b16f85361915"
		      "c862604b18ccaf4f52ee884ea4e3769e4d1da4c42fa02951cb97c5be63e88a7b257b3abce87acaf516f8"
		      "a8f856c8ebbef72748680418",
		      "0xc4882c5a591c736df7bb4245311196ea6f07ecde85d38fa012ca50930bf728ab");
	rc_buf_release(&data);
}

/*
 * cast mktx --private-key 0xac09...ff80 --chain 8453 --nonce 12 --gas-limit 400000
 *   --gas-price 3000000000 --priority-gas-price 1500000000
 *   0x6aBE1d282f72B474E54527D93b979A4f64d3030a <"openSession calldata" of morpheus-vectors.txt>
 */
static void test_rc_tx__cast_open_session_on_base(void **state)
{
	(void)state;
	struct rc_tx tx = {.chain_id = 8453, .nonce = 12, .gas = 400000};
	struct rc_morpheus_approval ap = {.chain_id = 42161, .timestamp_ms = 1735689600123};
	uint8_t blob[RC_MORPHEUS_APPROVAL_LEN], sig[65];
	struct rc_u256 amount, zero = {{0}};
	struct rc_buf data = RC_BUF_INIT;
	struct rc_secp_privkey prov;
	u256(&tx.max_fee_per_gas, "3000000000");
	u256(&tx.max_priority_fee_per_gas, "1500000000");
	to(&tx, "0x6aBE1d282f72B474E54527D93b979A4f64d3030a");
	/* rebuild the vectors' approval and calldata from scratch */
	uint8_t model[32], provider[20];
	assert_int_equal(rc_hex_decode_exact("6a4813e866a48da528c533e706344ea853a1d3f21e37b4c8e7ffd5ff"
					     "25779018",
					     64, model, 32, NULL),
			 RC_OK);
	key(&prov, ANVIL1);
	rc_secp_privkey_to_address(&prov, provider);
	rc_morpheus_bid_id(provider, model, &zero, ap.bid_id);
	assert_int_equal(rc_addr_parse(ap.user, "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", 42, NULL),
			 RC_OK);
	rc_morpheus_approval_encode(&ap, blob);
	assert_int_equal(rc_secp_sign_eth_message(&prov, blob, sizeof blob, sig), RC_OK);
	u256(&amount, "1000000000000000000");
	assert_int_equal(rc_morpheus_open_session_calldata(ap.user, &amount, false, blob, sizeof blob,
							   sig, 65, &data),
			 RC_OK);
	tx.data = (const uint8_t *)data.ptr;
	tx.data_len = data.len;
	assert_signed(&tx, ANVIL0,
		      "0x02f902338221050c8459682f0084b2d05e0083061a80946abe1d282f72b474e54527d93b979a4f64d3"
		      "030a80b901c4a85a1782000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cfffb92266"
		      "0000000000000000000000000000000000000000000000000de0b6b3a764000000000000000000000000"
		      "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
		      "0000000000000000000000a0000000000000000000000000000000000000000000000000000000000000"
		      "01400000000000000000000000000000000000000000000000000000000000000080694714f934f06307"
		      "cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab50000000000000000000000000000000000000"
		      "000000000000000000000000a4b1000000000000000000000000f39fd6e51aad88f6f4ce6ab8827279cf"
		      "ffb92266000000000000000000000000000000000000000000000000000001941f297c7b000000000000"
		      "0000000000000000000000000000000000000000000000000041de027f31a46fa22de0015994cf8f1b99"
		      "4d5540d7fd05fad33a1ce8c04208625763ef5b2d9272d636e76f02ce321c56fa146806c8d56f49eab8b7"
		      "6e1181bcb8891c00000000000000000000000000000000000000000000000000000000000000c001a0b7"
		      "fc7f8e4bf8eb8f9349402b2f93a80863cbfed5fb68dbf837e3dd9735cf65d7a07f5b823c756290b54507"
		      "a8f5bb36a2031a05ae3e5c328e3dd1445f7abf56f5e1",
		      NULL);
	rc_buf_release(&data);
	rc_secp_privkey_release(&prov);
}

/*
 * cast mktx --private-key 0x59c6...690d --chain 8453 --nonce 0 --gas-limit 21000
 *   --gas-price 1000000000 --priority-gas-price 0 --value 1000000000000000000
 *   0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
 */
static void test_rc_tx__cast_value_transfer_zero_tip(void **state)
{
	(void)state;
	struct rc_tx tx = {.chain_id = 8453, .nonce = 0, .gas = 21000};
	u256(&tx.max_fee_per_gas, "1000000000");
	u256(&tx.value, "1000000000000000000");
	to(&tx, "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
	assert_signed(&tx, ANVIL1,
		      "0x02f8708221058080843b9aca0082520894f39fd6e51aad88f6f4ce6ab8827279cfffb92266880de0b6"
		      "b3a764000080c080a038512cd8009240062145a51c02d6ab6271aee9db5608acc4710372c5aa5badc0"
		      "a06e1cfde4b3d330939b2d08e61c7d27e3966dd17ffb84b068b9f0974442d147b8",
		      "0x62fe9781b28073e33ce242da0b9d15c20916590b4f8cd9273a4523b516f415d2");
}

/*
 * cast mktx --private-key 0x59c6...690d --chain 31337 --nonce 1 --gas-limit 1000000
 *   --gas-price 2000000000 --priority-gas-price 1000000000 --create 0x6080...000a
 */
static void test_rc_tx__cast_contract_creation(void **state)
{
	(void)state;
	static const char code_hex[] = "6080604052348015600f57600080fd5b50603f80601d6000396000f3fe60806040"
				       "52600080fdfea164736f6c6343000813000a";
	uint8_t code[64];
	size_t n;
	assert_int_equal(rc_hex_decode(code_hex, sizeof code_hex - 1, code, sizeof code, &n, NULL),
			 RC_OK);
	struct rc_tx tx = {.chain_id = 31337, .nonce = 1, .gas = 1000000, .data = code, .data_len = n};
	u256(&tx.max_fee_per_gas, "2000000000");
	u256(&tx.max_priority_fee_per_gas, "1000000000");
	assert_signed(&tx, ANVIL1,
		      "0x02f88c827a6901843b9aca008477359400830f42408080b36080604052348015600f57600080fd5b50"
		      "603f80601d6000396000f3fe6080604052600080fdfea164736f6c6343000813000ac080a0960c65ade8"
		      "fdb13de1e9b364f29840678dab9a401bf53361b1dd42f644af0cd9a0581edb037bad4aacf4ac797e92af"
		      "724f24e6fe4f388110abff1878151ce5dbc0",
		      "0x00f92d458201b824edfc8cac6534dfb0bf3d7c3987661ef5c6974369e2eb9d3a");
}

static void test_rc_tx__signature_integers_are_minimal(void **state)
{
	(void)state;
	/* r with two leading zero bytes, s = 1, v = 28 (27/28 form): r is a 30-byte integer,
	 * s the single byte 0x01, yParity 1. */
	struct rc_tx tx = {.chain_id = 1, .gas = 21000};
	uint8_t sig[65] = {0};
	memset(sig + 2, 0xab, 30);
	sig[63] = 1;
	sig[64] = 28;
	struct rc_buf raw = RC_BUF_INIT;
	assert_int_equal(rc_tx_encode_signed(&tx, sig, &raw), RC_OK);
	const uint8_t *p = (const uint8_t *)raw.ptr;
	/* ... accessList c0, yParity 01, r 9e ab*30, s 01 */
	assert_memory_equal(p + raw.len - 34, "\xc0\x01\x9e\xab", 4);
	assert_int_equal(p[raw.len - 1], 0x01);
	sig[64] = 2;
	size_t before = raw.len;
	assert_int_equal(rc_tx_encode_signed(&tx, sig, &raw), RC_EINVAL);
	assert_int_equal(raw.len, before);
	rc_buf_release(&raw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_tx__ethereumjs_eip1559_vectors),
		cmocka_unit_test(test_rc_tx__mewwalletkit_real_transaction),
		cmocka_unit_test(test_rc_tx__cast_approve_call),
		cmocka_unit_test(test_rc_tx__cast_open_session_on_base),
		cmocka_unit_test(test_rc_tx__cast_value_transfer_zero_tip),
		cmocka_unit_test(test_rc_tx__cast_contract_creation),
		cmocka_unit_test(test_rc_tx__signature_integers_are_minimal),
	};
	return cmocka_run_group_tests_name("rc_tx", tests, NULL, NULL);
}
