/*
 * router-core: EIP-1559 (type 2) transactions: the signing hash, the signed raw bytes for
 * eth_sendRawTransaction, and the transaction hash.
 *
 *   signing hash = keccak256(0x02 || rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas,
 *                                         gas, to, value, data, accessList]))
 *   raw          = 0x02 || rlp([... the same nine ..., yParity, r, s])
 *   tx hash      = keccak256(raw)
 * The access list is always empty (all Morpheus calls go to one contract, §3.6). Signatures are
 * RFC 6979 (rc_secp_sign_hash), so the raw bytes equal what `cast mktx` and go-ethereum produce
 * for the same fields (platform-notes).
 *
 * Pure (no I/O) and thread-safe; the output goes into a caller-owned struct rc_buf.
 */
#ifndef RC_TX_H
#define RC_TX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>
#include <router-core/rc_hex.h>
#include <router-core/rc_secp.h>

/* The fields of a type-2 transaction. Plain data; data is borrowed. */
struct rc_tx {
	uint64_t chain_id;
	uint64_t nonce;
	struct rc_u256 max_priority_fee_per_gas; /* tip, wei per gas */
	struct rc_u256 max_fee_per_gas;          /* fee cap, wei per gas */
	uint64_t gas;                            /* gas limit */
	bool has_to;                             /* false: contract creation */
	uint8_t to[20];
	struct rc_u256 value; /* wei */
	const uint8_t *data;  /* calldata or init code (may be NULL when data_len is 0) */
	size_t data_len;
};

/* The hash to sign. RC_OK or RC_ENOMEM. */
int rc_tx_signing_hash(const struct rc_tx *tx, uint8_t hash[32]);

/*
 * Append 0x02 || rlp([fields..., yParity, r, s]) for a signature made over the signing hash
 * (r||s||v, v 0/1 or 27/28) to raw. RC_OK, RC_EINVAL (v not 0/1/27/28) or RC_ENOMEM; raw is
 * unchanged on error.
 */
int rc_tx_encode_signed(const struct rc_tx *tx, const uint8_t sig[RC_SECP_SIG_LEN],
                        struct rc_buf *raw);

/*
 * Sign tx with key: append the raw signed transaction to raw and, if tx_hash is not NULL, write
 * its transaction hash (what eth_sendRawTransaction returns). RC_OK, RC_ECRYPTO or RC_ENOMEM.
 */
int rc_tx_sign(const struct rc_tx *tx, const struct rc_secp_privkey *key, struct rc_buf *raw,
               uint8_t tx_hash[32]);

#endif
