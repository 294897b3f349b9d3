/*
 * Morpheus ids, approval/receipt blobs and session calldata.
 *
 * The ids are abi.encodePacked hashes (addresses as 20 raw bytes, not padded words:
 * smart-contracts Marketplace.sol getBidId, SessionRouter.sol getSessionId, morpheus-protocol
 * §3.2), so they are hashed incrementally here rather than through the ABI encoder. The blobs are
 * plain abi.encode of static tuples, small enough to write word by word; decoding an approval
 * goes through rc_abi so a provider's blob gets the same clean-word checks as any chain data.
 */
#include <stdio.h>
#include <string.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_morpheus.h>
#include <router-core/rc_secp.h>

static int fail(struct rc_errinfo *err, size_t off, const char *text)
{
	if (err) {
		err->offset = off;
		snprintf(err->text, sizeof err->text, "%s", text);
	}
	return RC_EPARSE;
}

static void put_u64_word(uint8_t w[32], uint64_t x)
{
	memset(w, 0, 24);
	for (int i = 0; i < 8; i++)
		w[31 - i] = (uint8_t)(x >> (8 * i));
}

void rc_morpheus_bid_id(const uint8_t provider[20], const uint8_t model_id[32],
                        const struct rc_u256 *nonce, uint8_t out[32])
{
	uint8_t n[32];
	struct rc_keccak k;
	rc_u256_to_be32(nonce, n);
	rc_keccak_init(&k);
	rc_keccak_update(&k, provider, 20);
	rc_keccak_update(&k, model_id, 32);
	rc_keccak_update(&k, n, 32);
	rc_keccak_final(&k, out);
}

void rc_morpheus_session_id(const uint8_t user[20], const uint8_t provider[20],
                            const uint8_t bid_id[32], const struct rc_u256 *nonce, uint8_t out[32])
{
	uint8_t n[32];
	struct rc_keccak k;
	rc_u256_to_be32(nonce, n);
	rc_keccak_init(&k);
	rc_keccak_update(&k, user, 20);
	rc_keccak_update(&k, provider, 20);
	rc_keccak_update(&k, bid_id, 32);
	rc_keccak_update(&k, n, 32);
	rc_keccak_final(&k, out);
}

void rc_morpheus_approval_encode(const struct rc_morpheus_approval *a,
                                 uint8_t out[RC_MORPHEUS_APPROVAL_LEN])
{
	memcpy(out, a->bid_id, 32);
	put_u64_word(out + 32, a->chain_id);
	memset(out + 64, 0, 12);
	memcpy(out + 76, a->user, 20);
	put_u64_word(out + 96, a->timestamp_ms);
}

int rc_morpheus_approval_decode(const uint8_t *in, size_t len, struct rc_morpheus_approval *a,
                                struct rc_errinfo *err)
{
	static const char type[] = "(bytes32,uint256,address,uint128)";
	struct rc_abi_type *t = NULL;
	struct rc_abi_value *v = NULL;
	int rc;
	if (len != RC_MORPHEUS_APPROVAL_LEN)
		return fail(err, len < RC_MORPHEUS_APPROVAL_LEN ? len : RC_MORPHEUS_APPROVAL_LEN,
		            "approval must be 128 bytes");
	if ((rc = rc_abi_type_parse(type, sizeof type - 1, &t, NULL)) != RC_OK)
		return rc;
	if ((rc = rc_abi_decode(t, in, len, 0, &v, err)) != RC_OK)
		goto out;
	const struct rc_abi_value *m = v->u.list.items;
	memcpy(a->bid_id, m[0].u.word, 32);
	rc_abi_get_address(&m[2], a->user);
	if (rc_abi_get_uint(&m[1], &a->chain_id) != RC_OK)
		rc = fail(err, 32, "chainId exceeds 64 bits");
	else if (rc_abi_get_uint(&m[3], &a->timestamp_ms) != RC_OK)
		rc = fail(err, 96, "timestamp exceeds 64 bits");
out:
	rc_abi_value_free(v);
	rc_abi_type_free(t);
	return rc;
}

void rc_morpheus_receipt_encode(const struct rc_morpheus_receipt *r,
                                uint8_t out[RC_MORPHEUS_RECEIPT_LEN])
{
	memcpy(out, r->session_id, 32);
	put_u64_word(out + 32, r->chain_id);
	put_u64_word(out + 64, r->timestamp_ms);
	put_u64_word(out + 96, r->tps_scaled1000);
	put_u64_word(out + 128, r->ttft_ms);
	put_u64_word(out + 160, r->tokens_in);
	put_u64_word(out + 192, r->tokens_out);
}

int rc_morpheus_verify_blob(const uint8_t *blob, size_t len, const uint8_t sig[65],
                            const uint8_t signer[20])
{
	uint8_t h[32];
	rc_secp_eth_message_hash(blob, len, h);
	return rc_secp_verify_address(h, sig, signer);
}

int rc_morpheus_open_session_calldata(const uint8_t user[20], const struct rc_u256 *amount,
                                      bool direct, const uint8_t *approval, size_t approval_len,
                                      const uint8_t *sig, size_t sig_len, struct rc_buf *out)
{
	struct rc_abi_value a[5];
	rc_abi_set_address(&a[0], user);
	rc_abi_set_u256(&a[1], amount);
	rc_abi_set_bool(&a[2], direct);
	rc_abi_set_bytes(&a[3], approval, approval_len);
	rc_abi_set_bytes(&a[4], sig, sig_len);
	return rc_abi_encode_call(RC_STR_LIT("openSession(address,uint256,bool,bytes,bytes)"), a, 5,
	                          out, NULL);
}

int rc_morpheus_close_session_calldata(const uint8_t *receipt, size_t receipt_len,
                                       const uint8_t *sig, size_t sig_len, struct rc_buf *out)
{
	struct rc_abi_value a[2];
	rc_abi_set_bytes(&a[0], receipt, receipt_len);
	rc_abi_set_bytes(&a[1], sig, sig_len);
	return rc_abi_encode_call(RC_STR_LIT("closeSession(bytes,bytes)"), a, 2, out, NULL);
}
