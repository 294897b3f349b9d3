/*
 * router-core: transaction manager for one wallet: EIP-1559 fees, gas estimation, nonces,
 * receipts, and bumping stuck transactions.
 *
 *   fees:   tip = max(eth_maxPriorityFeePerGas, mean reward of eth_feeHistory at the configured
 *           percentile); maxFee = 2 x next base fee + tip (the reference node's rule, §3.6.2),
 *           both clamped to max_fee_cap when one is set (a cap below the base fee is reported as
 *           RC_EUNDERPRICED instead of sending a transaction that cannot be mined).
 *   gas:    eth_estimateGas x (100 + gas_margin_pct) / 100, unless the caller gives a limit.
 *   nonces: one counter per manager, under a mutex held from nonce assignment to the node's
 *           acceptance of the transaction, so concurrent senders from one wallet get 0, 1, 2, ...
 *           with none reused and none skipped. The counter starts from (and, after a nonce
 *           error, a timeout or rc_txm_resync(), is re-read from) eth_getTransactionCount
 *           "pending", which is what recovers after a dropped or replaced transaction.
 *   bump:   same nonce, tip and fee cap each raised by 12.5 % (rounded up, at least +1 wei;
 *           the minimum replacement rule of geth and anvil), re-signed, re-sent.
 *
 * Thread-safety: every function may be called from many threads on one manager. The manager
 * borrows its struct rc_rpc (which must outlive it) and keeps its own copy of the key, wiped by
 * rc_txm_free().
 */
#ifndef RC_TXM_H
#define RC_TXM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_hex.h>
#include <router-core/rc_rpc.h>
#include <router-core/rc_secp.h>

struct rc_txm_options {
	uint64_t chain_id;           /* required: transactions are signed for it */
	struct rc_u256 max_fee_cap;  /* wei per gas; zero = no cap */
	unsigned gas_margin_pct;     /* [20] */
	unsigned fee_history_blocks; /* [10] */
	double reward_percentile;    /* [50] */
	long receipt_timeout_ms;     /* rc_txm_wait default [60000] */
	long poll_interval_ms;       /* receipt polling [250] */
};

struct rc_txm_fees {
	struct rc_u256 tip;     /* maxPriorityFeePerGas */
	struct rc_u256 max_fee; /* maxFeePerGas */
};

/* A transaction to send. */
struct rc_txm_call {
	const uint8_t *to; /* 20 bytes; NULL = contract creation */
	struct rc_u256 value;
	const uint8_t *data;
	size_t data_len;
	uint64_t gas; /* 0 = estimate with margin */
};

/* What was sent: enough to wait for it or bump it. Plain data; data is borrowed from the call. */
struct rc_txm_sent {
	uint8_t hash[32];
	uint64_t nonce;
	uint64_t gas;
	struct rc_txm_fees fees;
	struct rc_txm_call call;
};

struct rc_txm;

/* New manager. key is copied. RC_OK, RC_EINVAL (no chain id), RC_ECRYPTO, RC_ENOMEM. */
int rc_txm_new(struct rc_rpc *rpc, const struct rc_secp_privkey *key,
               const struct rc_txm_options *o, struct rc_txm **out);
void rc_txm_free(struct rc_txm *m);

/* The wallet's address. */
void rc_txm_address(const struct rc_txm *m, uint8_t addr[20]);
struct rc_rpc *rc_txm_rpc(const struct rc_txm *m);
uint64_t rc_txm_chain_id(const struct rc_txm *m);

/* Pure fee rule: from the next base fee, a tip suggestion and a cap (zero = none). RC_OK,
 * RC_EUNDERPRICED (cap below the base fee) or RC_ERANGE. */
int rc_txm_fees_compute(const struct rc_u256 *base_fee, const struct rc_u256 *tip,
                        const struct rc_u256 *cap, struct rc_txm_fees *out);

/* Pure bump rule: each of tip and max fee x 1.125 rounded up, at least +1; capped at cap when
 * non-zero (then RC_EUNDERPRICED if the cap leaves no room to bump). */
int rc_txm_fees_bump(const struct rc_txm_fees *old, const struct rc_u256 *cap,
                     struct rc_txm_fees *out);

/* Live fee estimate (eth_feeHistory + eth_maxPriorityFeePerGas; either failing alone is fine). */
int rc_txm_estimate_fees(struct rc_txm *m, struct rc_txm_fees *out, struct rc_rpc_error *err);

/* Gas limit with margin for call (from = this wallet). A revert gives RC_EREVERT + reason. */
int rc_txm_estimate_gas(struct rc_txm *m, const struct rc_txm_call *call, uint64_t *gas,
                        struct rc_rpc_error *err);

/*
 * Estimate (gas, fees), take the next nonce, sign and send. On RC_OK *sent describes the
 * transaction (not yet mined). A nonce error re-reads the pending nonce and retries once.
 * Errors: rc_rpc codes (RC_EREVERT from estimation, RC_EFUNDS, ...).
 */
int rc_txm_send(struct rc_txm *m, const struct rc_txm_call *call, struct rc_txm_sent *sent,
                struct rc_rpc_error *err);

/*
 * Poll for the receipt until timeout_ms (<= 0: the configured default). RC_OK with *r filled
 * (release it) when mined with status 1; RC_ETXFAILED when mined with status 0 (*r filled,
 * err has the revert reason when a replay with eth_call reproduces it); RC_ETIMEOUT when not
 * mined in time (the next send then re-reads the pending nonce).
 */
int rc_txm_wait(struct rc_txm *m, const uint8_t hash[32], long timeout_ms, struct rc_rpc_receipt *r,
                struct rc_rpc_error *err);

/* rc_txm_send then rc_txm_wait; on a failed transaction the call is replayed for its reason. */
int rc_txm_send_wait(struct rc_txm *m, const struct rc_txm_call *call, struct rc_rpc_receipt *r,
                     struct rc_rpc_error *err);

/* Re-send *sent with the same nonce and bumped fees; *out (may alias sent) gets the new one. */
int rc_txm_bump(struct rc_txm *m, const struct rc_txm_sent *sent, struct rc_txm_sent *out,
                struct rc_rpc_error *err);

/* Forget the local nonce counter: the next send re-reads eth_getTransactionCount "pending". */
void rc_txm_resync(struct rc_txm *m);

#endif
