/*
 * Transaction manager. The fee and bump rules are pure functions; the rest is the nonce lock
 * and polling around rc_rpc.
 *
 * Why the nonce mutex is held across eth_sendRawTransaction: the node must see nonces in order
 * and the counter may only advance once a transaction was accepted. Releasing the lock before
 * the send would let nonce n+1 arrive before n (fine for a pool, but an error on n would then
 * leave a gap that stalls n+1 forever). Sends from one wallet are therefore serialized; gas and
 * fee estimation happen before the lock, so only the one send round trip is serialized.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include <router-core/rc_tx.h>
#include <router-core/rc_txm.h>

struct rc_txm {
	struct rc_rpc *rpc;
	struct rc_secp_privkey key;
	uint8_t addr[20];
	struct rc_txm_options o;
	pthread_mutex_t mu;
	bool nonce_valid;
	uint64_t next_nonce;
};

int rc_txm_new(struct rc_rpc *rpc, const struct rc_secp_privkey *key,
               const struct rc_txm_options *o, struct rc_txm **out)
{
	*out = NULL;
	if (!rpc || !key || !o || !o->chain_id)
		return RC_EINVAL;
	struct rc_txm *m = calloc(1, sizeof *m);
	if (!m)
		return RC_ENOMEM;
	m->rpc = rpc;
	m->key = *key;
	if (rc_secp_privkey_to_address(&m->key, m->addr) != RC_OK) {
		rc_txm_free(m);
		return RC_ECRYPTO;
	}
	m->o = *o;
	if (!m->o.gas_margin_pct)
		m->o.gas_margin_pct = 20;
	if (!m->o.fee_history_blocks)
		m->o.fee_history_blocks = 10;
	if (m->o.reward_percentile <= 0 || m->o.reward_percentile > 100)
		m->o.reward_percentile = 50;
	if (m->o.receipt_timeout_ms <= 0)
		m->o.receipt_timeout_ms = 60000;
	if (m->o.poll_interval_ms <= 0)
		m->o.poll_interval_ms = 250;
	pthread_mutex_init(&m->mu, NULL);
	*out = m;
	return RC_OK;
}

void rc_txm_free(struct rc_txm *m)
{
	if (!m)
		return;
	rc_secp_privkey_release(&m->key);
	pthread_mutex_destroy(&m->mu);
	sodium_memzero(m, sizeof *m);
	free(m);
}

void rc_txm_address(const struct rc_txm *m, uint8_t addr[20])
{
	memcpy(addr, m->addr, 20);
}

struct rc_rpc *rc_txm_rpc(const struct rc_txm *m)
{
	return m->rpc;
}

uint64_t rc_txm_chain_id(const struct rc_txm *m)
{
	return m->o.chain_id;
}

void rc_txm_resync(struct rc_txm *m)
{
	pthread_mutex_lock(&m->mu);
	m->nonce_valid = false;
	pthread_mutex_unlock(&m->mu);
}

/* ---- pure fee rules ---------------------------------------------------------------------- */

int rc_txm_fees_compute(const struct rc_u256 *base_fee, const struct rc_u256 *tip,
                        const struct rc_u256 *cap, struct rc_txm_fees *out)
{
	struct rc_u256 max;
	if (rc_u256_mul_u64(&max, base_fee, 2) != RC_OK || rc_u256_add(&max, &max, tip) != RC_OK)
		return RC_ERANGE;
	struct rc_txm_fees f = {*tip, max};
	if (cap && !rc_u256_is_zero(cap)) {
		if (rc_u256_cmp(cap, base_fee) < 0)
			return RC_EUNDERPRICED;
		if (rc_u256_cmp(&f.max_fee, cap) > 0)
			f.max_fee = *cap;
		/* The tip can never exceed the fee cap, and the cap must still cover the base fee:
		 * shrink the tip to what is left over. */
		struct rc_u256 room;
		rc_u256_sub(&room, &f.max_fee, base_fee);
		if (rc_u256_cmp(&f.tip, &room) > 0)
			f.tip = room;
	}
	*out = f;
	return RC_OK;
}

static int bump_one(const struct rc_u256 *v, struct rc_u256 *out)
{
	/* v + ceil(v / 8), and at least v + 1. */
	struct rc_u256 add;
	uint64_t r;
	rc_u256_divmod_u64(&add, &r, v, 8);
	struct rc_u256 one;
	rc_u256_from_u64(&one, 1);
	if (r || rc_u256_is_zero(&add))
		if (rc_u256_add(&add, &add, &one) != RC_OK)
			return RC_ERANGE;
	return rc_u256_add(out, v, &add);
}

int rc_txm_fees_bump(const struct rc_txm_fees *old, const struct rc_u256 *cap,
                     struct rc_txm_fees *out)
{
	struct rc_txm_fees f;
	if (bump_one(&old->tip, &f.tip) != RC_OK || bump_one(&old->max_fee, &f.max_fee) != RC_OK)
		return RC_ERANGE;
	if (cap && !rc_u256_is_zero(cap) && rc_u256_cmp(&f.max_fee, cap) > 0)
		return RC_EUNDERPRICED;
	if (rc_u256_cmp(&f.tip, &f.max_fee) > 0)
		f.tip = f.max_fee;
	*out = f;
	return RC_OK;
}

/* ---- estimation ---------------------------------------------------------------------------- */

int rc_txm_estimate_fees(struct rc_txm *m, struct rc_txm_fees *out, struct rc_rpc_error *err)
{
	struct rc_rpc_fee_history fh;
	int rc = rc_rpc_fee_history(m->rpc, m->o.fee_history_blocks, m->o.reward_percentile, &fh,
	                            err);
	if (rc != RC_OK)
		return rc;
	struct rc_u256 tip;
	struct rc_rpc_error e2;
	if (rc_rpc_max_priority_fee(m->rpc, &tip, &e2) != RC_OK)
		tip = fh.reward;
	else if (rc_u256_cmp(&fh.reward, &tip) > 0)
		tip = fh.reward;
	rc = rc_txm_fees_compute(&fh.next_base_fee, &tip, &m->o.max_fee_cap, out);
	if (rc != RC_OK && err) {
		err->rc = rc;
		snprintf(err->message, sizeof err->message, "%s",
		         rc == RC_EUNDERPRICED ? "fee cap is below the base fee" : "fee overflow");
	}
	return rc;
}

int rc_txm_estimate_gas(struct rc_txm *m, const struct rc_txm_call *call, uint64_t *gas,
                        struct rc_rpc_error *err)
{
	struct rc_rpc_callmsg msg = {m->addr, call->to, call->value, call->data, call->data_len};
	uint64_t g;
	int rc = rc_rpc_estimate_gas(m->rpc, &msg, &g, err);
	if (rc != RC_OK)
		return rc;
	if (g > UINT64_MAX / (100 + m->o.gas_margin_pct))
		return RC_ERANGE;
	*gas = g * (100 + m->o.gas_margin_pct) / 100;
	return RC_OK;
}

/* ---- sending ------------------------------------------------------------------------------- */

static int sign_send(struct rc_txm *m, const struct rc_txm_call *call, uint64_t nonce, uint64_t gas,
                     const struct rc_txm_fees *fees, uint8_t hash[32], struct rc_rpc_error *err)
{
	struct rc_tx tx = {
	        .chain_id = m->o.chain_id,
	        .nonce = nonce,
	        .max_priority_fee_per_gas = fees->tip,
	        .max_fee_per_gas = fees->max_fee,
	        .gas = gas,
	        .has_to = call->to != NULL,
	        .value = call->value,
	        .data = call->data,
	        .data_len = call->data_len,
	};
	if (call->to)
		memcpy(tx.to, call->to, 20);
	struct rc_buf raw = RC_BUF_INIT;
	uint8_t local_hash[32];
	int rc = rc_tx_sign(&tx, &m->key, &raw, local_hash);
	if (rc == RC_OK) {
		rc = rc_rpc_send_raw(m->rpc, (const uint8_t *)raw.ptr, raw.len, hash, err);
		/* The node already has exactly these bytes (a retried send after a lost reply):
		 * that is a success, and the hash is ours. */
		if (rc == RC_EKNOWN) {
			memcpy(hash, local_hash, 32);
			rc = RC_OK;
		}
	}
	rc_buf_release(&raw);
	return rc;
}

/* Under m->mu: make sure next_nonce is the node's pending count. */
static int nonce_load(struct rc_txm *m, struct rc_rpc_error *err)
{
	if (m->nonce_valid)
		return RC_OK;
	uint64_t n;
	int rc = rc_rpc_get_tx_count(m->rpc, m->addr, true, &n, err);
	if (rc != RC_OK)
		return rc;
	m->next_nonce = n;
	m->nonce_valid = true;
	return RC_OK;
}

int rc_txm_send(struct rc_txm *m, const struct rc_txm_call *call, struct rc_txm_sent *sent,
                struct rc_rpc_error *err)
{
	memset(sent, 0, sizeof *sent);
	uint64_t gas = call->gas;
	int rc;
	if (!gas && (rc = rc_txm_estimate_gas(m, call, &gas, err)) != RC_OK)
		return rc;
	struct rc_txm_fees fees;
	if ((rc = rc_txm_estimate_fees(m, &fees, err)) != RC_OK)
		return rc;
	pthread_mutex_lock(&m->mu);
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((rc = nonce_load(m, err)) != RC_OK)
			break;
		rc = sign_send(m, call, m->next_nonce, gas, &fees, sent->hash, err);
		if (rc == RC_OK) {
			sent->nonce = m->next_nonce++;
			break;
		}
		/* Our counter is behind the chain (another process used the wallet, or a replaced
		 * transaction): re-read and try once more. A transport error may or may not have
		 * delivered the transaction: re-read before the next send either way. */
		m->nonce_valid = false;
		if (rc != RC_ENONCE)
			break;
	}
	pthread_mutex_unlock(&m->mu);
	if (rc == RC_OK) {
		sent->gas = gas;
		sent->fees = fees;
		sent->call = *call;
	}
	return rc;
}

int rc_txm_bump(struct rc_txm *m, const struct rc_txm_sent *sent, struct rc_txm_sent *out,
                struct rc_rpc_error *err)
{
	struct rc_txm_sent s = *sent;
	struct rc_txm_fees nf;
	int rc = rc_txm_fees_bump(&s.fees, &m->o.max_fee_cap, &nf);
	if (rc != RC_OK)
		return rc;
	/* Follow a rising base fee too: never bump to less than a fresh estimate. */
	struct rc_txm_fees fresh;
	struct rc_rpc_error e2;
	if (rc_txm_estimate_fees(m, &fresh, &e2) == RC_OK) {
		if (rc_u256_cmp(&fresh.max_fee, &nf.max_fee) > 0)
			nf.max_fee = fresh.max_fee;
		if (rc_u256_cmp(&fresh.tip, &nf.tip) > 0 &&
		    rc_u256_cmp(&fresh.tip, &nf.max_fee) <= 0)
			nf.tip = fresh.tip;
	}
	uint8_t hash[32];
	rc = sign_send(m, &s.call, s.nonce, s.gas, &nf, hash, err);
	if (rc != RC_OK)
		return rc;
	s.fees = nf;
	memcpy(s.hash, hash, 32);
	*out = s;
	return RC_OK;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Replay a failed call at the latest block to learn its revert reason. */
static void replay_reason(struct rc_txm *m, const struct rc_txm_call *call,
                          struct rc_rpc_error *err)
{
	if (!err || !call->to)
		return;
	struct rc_buf out = RC_BUF_INIT;
	struct rc_rpc_error e;
	if (rc_rpc_eth_call(m->rpc, m->addr, call->to, call->data, call->data_len, &out, &e) ==
	            RC_EREVERT &&
	    e.has_revert) {
		*err = e;
	}
	err->rc = RC_ETXFAILED;
	rc_buf_release(&out);
}

int rc_txm_wait(struct rc_txm *m, const uint8_t hash[32], long timeout_ms, struct rc_rpc_receipt *r,
                struct rc_rpc_error *err)
{
	if (timeout_ms <= 0)
		timeout_ms = m->o.receipt_timeout_ms;
	int64_t deadline = rc_mono_ms() + timeout_ms;
	memset(r, 0, sizeof *r);
	for (;;) {
		bool found;
		int rc = rc_rpc_get_receipt(m->rpc, hash, &found, r, err);
		if (rc == RC_ENOMEM || rc == RC_ERPC)
			return rc;
		if (rc == RC_OK && found) {
			if (!r->status) {
				if (err) {
					err->rc = RC_ETXFAILED;
					snprintf(err->message, sizeof err->message,
					         "transaction failed in block %llu",
					         (unsigned long long)r->block_number);
				}
				return RC_ETXFAILED;
			}
			return RC_OK;
		}
		if (rc_mono_ms() >= deadline) {
			rc_txm_resync(m);
			if (err) {
				err->rc = RC_ETIMEOUT;
				snprintf(err->message, sizeof err->message,
				         "transaction not mined within %ld ms", timeout_ms);
			}
			return RC_ETIMEOUT;
		}
		sleep_ms(m->o.poll_interval_ms);
	}
}

int rc_txm_send_wait(struct rc_txm *m, const struct rc_txm_call *call, struct rc_rpc_receipt *r,
                     struct rc_rpc_error *err)
{
	struct rc_txm_sent s;
	memset(r, 0, sizeof *r);
	int rc = rc_txm_send(m, call, &s, err);
	if (rc != RC_OK)
		return rc;
	rc = rc_txm_wait(m, s.hash, 0, r, err);
	if (rc == RC_ETXFAILED) {
		replay_reason(m, call, err);
		if (err && !err->has_revert)
			snprintf(err->message, sizeof err->message,
			         "transaction failed in block %llu (gas used %llu of %llu)%s",
			         (unsigned long long)r->block_number,
			         (unsigned long long)r->gas_used, (unsigned long long)s.gas,
			         r->gas_used >= s.gas ? ": out of gas" : "");
	}
	return rc;
}
