/*
 * router-core: Morpheus on-chain ids and blobs (morpheus-protocol §2.9, §3.2, §3.3, §3.6, §3.7).
 *
 *   bidId     = keccak256(provider20 || modelId32 || uint256 nonce)            abi.encodePacked
 *   sessionId = keccak256(user20 || provider20 || bidId32 || uint256 nonce)    abi.encodePacked
 *   approval  = abi.encode(bytes32 bidId, uint256 chainId, address user, uint128 timestampMs)
 *   receipt   = abi.encode(bytes32 sessionId, uint256 chainId, uint128 timestampMs,
 *                          uint32 tpsScaled1000, uint32 ttftMs, uint32 in, uint32 out)
 * Approvals and receipts are signed by the provider as EIP-191 messages (rc_secp_sign_eth_message,
 * v = 27/28); the Diamond checks them with ECDSA.recover(toEthSignedMessageHash(keccak256(blob))).
 *
 * Pure and thread-safe. Type strings of the structs are given as macros for rc_abi_type_parse().
 */
#ifndef RC_MORPHEUS_H
#define RC_MORPHEUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>
#include <router-core/rc_hex.h>

/* §3.3 struct layouts, in ABI order. */
#define RC_MORPHEUS_BID_TYPE "(address,bytes32,uint256,uint256,uint128,uint128)"
#define RC_MORPHEUS_PROVIDER_TYPE "(string,uint256,uint128,uint128,uint256,bool)"
#define RC_MORPHEUS_MODEL_TYPE "(bytes32,uint256,uint256,address,string,string[],uint128,bool)"
#define RC_MORPHEUS_SESSION_TYPE                                                                   \
	"(address,bytes32,uint256,bytes,uint256,uint256,uint128,uint128,uint128,bool,bool)"

#define RC_MORPHEUS_APPROVAL_LEN 128 /* 4 words */
#define RC_MORPHEUS_RECEIPT_LEN 224  /* 7 words, as the Go node sends (§3.7) */

/* bidId of (provider, modelId, nonce). Never fails. */
void rc_morpheus_bid_id(const uint8_t provider[20], const uint8_t model_id[32],
                        const struct rc_u256 *nonce, uint8_t out[32]);

/* sessionId of (user, provider, bidId, global session nonce). Never fails. */
void rc_morpheus_session_id(const uint8_t user[20], const uint8_t provider[20],
                            const uint8_t bid_id[32], const struct rc_u256 *nonce, uint8_t out[32]);

/* The provider's approval of a session (§3.6 step 2); timestamp in milliseconds, as the
 * reference sends it (which makes the contract's 600 s TTL never expire). */
struct rc_morpheus_approval {
	uint8_t bid_id[32];
	uint64_t chain_id;
	uint8_t user[20];
	uint64_t timestamp_ms;
};

/* abi.encode of *a into out (128 bytes). Never fails. */
void rc_morpheus_approval_encode(const struct rc_morpheus_approval *a,
                                 uint8_t out[RC_MORPHEUS_APPROVAL_LEN]);

/*
 * Decode an approval blob received from a provider: exactly 128 bytes of clean words, chainId
 * and timestamp within 64 bits. RC_OK or RC_EPARSE (err says which word is wrong).
 */
int rc_morpheus_approval_decode(const uint8_t *in, size_t len, struct rc_morpheus_approval *a,
                                struct rc_errinfo *err);

/* The provider's session report / close receipt (§3.7, "REPORT" vector). */
struct rc_morpheus_receipt {
	uint8_t session_id[32];
	uint64_t chain_id;
	uint64_t timestamp_ms;
	uint32_t tps_scaled1000, ttft_ms, tokens_in, tokens_out;
};

void rc_morpheus_receipt_encode(const struct rc_morpheus_receipt *r,
                                uint8_t out[RC_MORPHEUS_RECEIPT_LEN]);

/*
 * Check that sig (65 bytes, v 27/28 or 0/1) is the EIP-191 signature of blob (an approval or a
 * receipt) by the key of address signer, with low s (OpenZeppelin's rule). RC_OK or RC_ECRYPTO.
 * Delegation (§3.6 step 5) is not considered: that needs a chain read.
 */
int rc_morpheus_verify_blob(const uint8_t *blob, size_t len, const uint8_t sig[65],
                            const uint8_t signer[20]);

/*
 * Append openSession(user, amount, isDirectPaymentFromUser, approval, signature) calldata
 * (selector a85a1782, §3.6) to out. RC_OK, RC_ENOMEM or RC_ERANGE; out unchanged on error.
 */
int rc_morpheus_open_session_calldata(const uint8_t user[20], const struct rc_u256 *amount,
                                      bool direct, const uint8_t *approval, size_t approval_len,
                                      const uint8_t *sig, size_t sig_len, struct rc_buf *out);

/* Append closeSession(receipt, signature) calldata (selector 42f77a31, §3.7) to out. */
int rc_morpheus_close_session_calldata(const uint8_t *receipt, size_t receipt_len,
                                       const uint8_t *sig, size_t sig_len, struct rc_buf *out);

#endif
