/*
 * EIP-1559 transaction encoding and signing.
 *
 * One writer builds both forms: the nine fields are common, the signed form appends yParity, r
 * and s. r and s are RLP *integers* (leading zero bytes stripped), not 32-byte strings, which is
 * the classic interoperability bug: about one signature in 128 has an r or s with a leading zero
 * byte, and a fixed-width encoding would make that transaction invalid. yParity is 0 or 1 even
 * when the signature carries Ethereum's 27/28.
 */
#include <string.h>

#include <router-core/rc_keccak.h>
#include <router-core/rc_rlp.h>
#include <router-core/rc_tx.h>

#define TX_TYPE_EIP1559 0x02

static void put_fields(struct rc_rlp_writer *w, const struct rc_tx *tx)
{
	rc_rlp_put_uint(w, tx->chain_id);
	rc_rlp_put_uint(w, tx->nonce);
	rc_rlp_put_u256(w, &tx->max_priority_fee_per_gas);
	rc_rlp_put_u256(w, &tx->max_fee_per_gas);
	rc_rlp_put_uint(w, tx->gas);
	rc_rlp_put_bytes(w, tx->to, tx->has_to ? 20 : 0); /* creation: the empty string */
	rc_rlp_put_u256(w, &tx->value);
	rc_rlp_put_bytes(w, tx->data, tx->data_len);
	rc_rlp_list_begin(w); /* accessList: [] */
	rc_rlp_list_end(w);
}

/* A 32-byte big-endian integer as a minimal RLP integer. */
static void put_be32_int(struct rc_rlp_writer *w, const uint8_t be[32])
{
	size_t skip = 0;
	while (skip < 32 && be[skip] == 0)
		skip++;
	rc_rlp_put_bytes(w, be + skip, 32 - skip);
}

/* Encode 0x02 || rlp(list) into w; sig NULL for the unsigned (signing) form. */
static int encode(const struct rc_tx *tx, const uint8_t *sig, struct rc_rlp_writer *w,
                  const uint8_t **out, size_t *len)
{
	const uint8_t type = TX_TYPE_EIP1559;
	rc_rlp_put_raw(w, &type, 1);
	rc_rlp_list_begin(w);
	put_fields(w, tx);
	if (sig) {
		rc_rlp_put_uint(w, sig[64] >= 27 ? sig[64] - 27u : sig[64]);
		put_be32_int(w, sig);
		put_be32_int(w, sig + 32);
	}
	rc_rlp_list_end(w);
	return rc_rlp_writer_finish(w, out, len);
}

int rc_tx_signing_hash(const struct rc_tx *tx, uint8_t hash[32])
{
	struct rc_rlp_writer w;
	const uint8_t *p;
	size_t n;
	rc_rlp_writer_init_heap(&w);
	int rc = encode(tx, NULL, &w, &p, &n);
	if (rc == RC_OK)
		rc_keccak256(p, n, hash);
	rc_rlp_writer_release(&w);
	return rc;
}

int rc_tx_encode_signed(const struct rc_tx *tx, const uint8_t sig[RC_SECP_SIG_LEN],
                        struct rc_buf *raw)
{
	uint8_t v = sig[64];
	if (v != 0 && v != 1 && v != 27 && v != 28)
		return RC_EINVAL;
	struct rc_rlp_writer w;
	const uint8_t *p;
	size_t n;
	rc_rlp_writer_init_heap(&w);
	int rc = encode(tx, sig, &w, &p, &n);
	if (rc == RC_OK)
		rc = rc_buf_append(raw, p, n);
	rc_rlp_writer_release(&w);
	return rc;
}

int rc_tx_sign(const struct rc_tx *tx, const struct rc_secp_privkey *key, struct rc_buf *raw,
               uint8_t tx_hash[32])
{
	uint8_t h[32], sig[RC_SECP_SIG_LEN];
	size_t start = raw->len;
	int rc = rc_tx_signing_hash(tx, h);
	if (rc == RC_OK)
		rc = rc_secp_sign_hash(key, h, sig);
	if (rc == RC_OK)
		rc = rc_tx_encode_signed(tx, sig, raw);
	if (rc == RC_OK && tx_hash)
		rc_keccak256(raw->ptr + start, raw->len - start, tx_hash);
	return rc;
}
