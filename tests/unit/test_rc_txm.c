/*
 * rc_txm: the pure fee and bump rules, then the manager against a real anvil started for this
 * binary: an ETH transfer, 20 transactions sent at once from one wallet by 20 threads (no nonce
 * reused or skipped), recovery after a dropped transaction, a bumped replacement, receipt
 * timeouts and a failed transaction.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <router-core/rc_addr.h>
#include <router-core/rc_txm.h>

#include "testutil.h"

/* ---- a private anvil ---------------------------------------------------------------------- */

static pid_t anvil_pid;
static char anvil_url[64];

static int anvil_start(void **state)
{
	(void)state;
	anvil_pid = tu_anvil_start(anvil_url, sizeof anvil_url);
	return anvil_pid > 0 ? 0 : -1;
}

static int anvil_stop(void **state)
{
	(void)state;
	tu_anvil_stop(anvil_pid);
	return 0;
}

static const char anvil0_key[] = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

static struct rc_rpc *rpc;
static struct rc_txm *txm;

static int setup(void **state)
{
	if (anvil_start(state) != 0)
		return -1;
	const char *urls[] = {anvil_url};
	struct rc_rpc_options o = {urls, 1, 500, 5000, 1000, 0};
	if (rc_rpc_new(&o, &rpc) != RC_OK)
		return -1;
	struct rc_secp_privkey k;
	if (rc_secp_privkey_from_hex(&k, anvil0_key, 64, NULL) != RC_OK)
		return -1;
	struct rc_txm_options to = {.chain_id = 31337, .poll_interval_ms = 20};
	int rc = rc_txm_new(rpc, &k, &to, &txm);
	rc_secp_privkey_release(&k);
	return rc == RC_OK ? 0 : -1;
}

static int teardown(void **state)
{
	rc_txm_free(txm);
	rc_rpc_free(rpc);
	return anvil_stop(state);
}

static void anvil_cmd(const char *method, json_t *params)
{
	json_t *r;
	assert_int_equal(rc_rpc_call(rpc, method, params, &r, NULL), RC_OK);
	json_decref(r);
}

static struct rc_u256 u(uint64_t v)
{
	struct rc_u256 x;
	rc_u256_from_u64(&x, v);
	return x;
}

/* ---- pure ----------------------------------------------------------------------------------- */

static void test_rc_txm__fee_rules(void **state)
{
	struct rc_txm_fees f;
	struct rc_u256 base = u(1000), tip = u(10), none = u(0), cap = u(1500);
	assert_int_equal(rc_txm_fees_compute(&base, &tip, &none, &f), RC_OK);
	assert_int_equal(f.max_fee.w[0], 2010);
	assert_int_equal(f.tip.w[0], 10);
	assert_int_equal(rc_txm_fees_compute(&base, &tip, &cap, &f), RC_OK);
	assert_int_equal(f.max_fee.w[0], 1500);
	struct rc_u256 big_tip = u(800);
	assert_int_equal(rc_txm_fees_compute(&base, &big_tip, &cap, &f), RC_OK);
	assert_int_equal(f.tip.w[0], 500); /* what the cap leaves above the base fee */
	struct rc_u256 low = u(999);
	assert_int_equal(rc_txm_fees_compute(&base, &tip, &low, &f), RC_EUNDERPRICED);

	struct rc_txm_fees old = {u(8), u(80)}, nf;
	assert_int_equal(rc_txm_fees_bump(&old, &none, &nf), RC_OK);
	assert_int_equal(nf.tip.w[0], 9);
	assert_int_equal(nf.max_fee.w[0], 90);
	struct rc_txm_fees odd = {u(1), u(17)};
	assert_int_equal(rc_txm_fees_bump(&odd, &none, &nf), RC_OK);
	assert_int_equal(nf.tip.w[0], 2);      /* at least +1 */
	assert_int_equal(nf.max_fee.w[0], 20); /* 17 + ceil(17/8) */
	struct rc_txm_fees z = {u(0), u(0)};
	assert_int_equal(rc_txm_fees_bump(&z, &none, &nf), RC_OK);
	assert_int_equal(nf.max_fee.w[0], 1);
	struct rc_u256 c85 = u(85);
	assert_int_equal(rc_txm_fees_bump(&old, &c85, &nf), RC_EUNDERPRICED);
	struct rc_u256 max;
	memset(&max, 0xff, sizeof max);
	struct rc_txm_fees huge = {max, max};
	assert_int_equal(rc_txm_fees_bump(&huge, &none, &nf), RC_ERANGE);
}

/* ---- live ----------------------------------------------------------------------------------- */

static void test_rc_txm__transfer(void **state)
{
	uint8_t to[20];
	memset(to, 0x42, sizeof to);
	struct rc_txm_call call = {.to = to, .value = u(1000000000000000000ull)};
	struct rc_rpc_receipt r;
	struct rc_rpc_error e;
	assert_int_equal(rc_txm_send_wait(txm, &call, &r, &e), RC_OK);
	assert_true(r.status);
	assert_int_equal(r.gas_used, 21000);
	rc_rpc_receipt_release(&r);
	struct rc_u256 bal;
	assert_int_equal(rc_rpc_get_balance(rpc, to, &bal, NULL), RC_OK);
	assert_int_equal(bal.w[0], 1000000000000000000ull);
	struct rc_txm_fees f;
	assert_int_equal(rc_txm_estimate_fees(txm, &f, &e), RC_OK);
	assert_true(rc_u256_cmp(&f.tip, &f.max_fee) <= 0);
}

#define NTHREADS 20
struct worker {
	int idx, rc;
	struct rc_txm_sent sent;
	struct rc_rpc_error err;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t to[20];
	memset(to, 0x31, sizeof to); /* not a precompile */
	to[19] = (uint8_t)(w->idx + 1);
	struct rc_txm_call call = {.to = to, .value = u(1000 + (uint64_t)w->idx)};
	w->rc = rc_txm_send(txm, &call, &w->sent, &w->err);
	return NULL;
}

static void test_rc_txm__concurrent_nonces(void **state)
{
	uint8_t me[20];
	rc_txm_address(txm, me);
	uint64_t start;
	assert_int_equal(rc_rpc_get_tx_count(rpc, me, true, &start, NULL), RC_OK);
	pthread_t th[NTHREADS];
	static struct worker w[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		w[i].idx = i;
		pthread_create(&th[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	int seen[NTHREADS] = {0};
	for (int i = 0; i < NTHREADS; i++) {
		if (w[i].rc != RC_OK)
			fail_msg("worker %d: %s: %s", i, rc_rpc_strerror(w[i].rc),
			         w[i].err.message);
		assert_true(w[i].sent.nonce >= start && w[i].sent.nonce < start + NTHREADS);
		seen[w[i].sent.nonce - start]++;
	}
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(seen[i], 1);
	for (int i = 0; i < NTHREADS; i++) {
		struct rc_rpc_receipt r;
		assert_int_equal(rc_txm_wait(txm, w[i].sent.hash, 10000, &r, NULL), RC_OK);
		rc_rpc_receipt_release(&r);
	}
	uint64_t end;
	assert_int_equal(rc_rpc_get_tx_count(rpc, me, false, &end, NULL), RC_OK);
	assert_int_equal(end, start + NTHREADS);
}

static json_t *hash_json(const uint8_t h[32])
{
	char s[67];
	rc_hex_encode_0x(h, 32, s, sizeof s);
	return json_string(s);
}

static void test_rc_txm__dropped_tx_recovers(void **state)
{
	anvil_cmd("evm_setAutomine", json_pack("[b]", 0));
	uint8_t to[20];
	memset(to, 0x77, sizeof to);
	struct rc_txm_call call = {.to = to, .value = u(5)};
	struct rc_txm_sent a, b;
	struct rc_rpc_error e;
	assert_int_equal(rc_txm_send(txm, &call, &a, &e), RC_OK);
	anvil_cmd("anvil_dropTransaction", json_pack("[o]", hash_json(a.hash)));
	struct rc_rpc_receipt r;
	assert_int_equal(rc_txm_wait(txm, a.hash, 200, &r, &e), RC_ETIMEOUT);
	assert_int_equal(e.rc, RC_ETIMEOUT);
	/* The timeout made the manager re-read the pending nonce: b reuses a's (dropped) nonce. */
	assert_int_equal(rc_txm_send(txm, &call, &b, &e), RC_OK);
	assert_int_equal(b.nonce, a.nonce);
	anvil_cmd("evm_mine", NULL);
	assert_int_equal(rc_txm_wait(txm, b.hash, 5000, &r, &e), RC_OK);
	rc_rpc_receipt_release(&r);
	/* Another writer of the same wallet: our counter is behind the chain -> nonce error ->
	 * re-read and retry inside rc_txm_send. */
	struct rc_secp_privkey k;
	assert_int_equal(rc_secp_privkey_from_hex(&k, anvil0_key, 64, NULL), RC_OK);
	struct rc_txm *other;
	struct rc_txm_options to2 = {.chain_id = 31337, .poll_interval_ms = 20};
	assert_int_equal(rc_txm_new(rpc, &k, &to2, &other), RC_OK);
	rc_secp_privkey_release(&k);
	struct rc_txm_sent c, d;
	assert_int_equal(rc_txm_send(other, &call, &c, &e), RC_OK);
	anvil_cmd("evm_mine", NULL);
	assert_int_equal(rc_txm_wait(other, c.hash, 5000, &r, &e), RC_OK);
	rc_rpc_receipt_release(&r);
	assert_int_equal(rc_txm_send(txm, &call, &d, &e), RC_OK);
	assert_int_equal(d.nonce, c.nonce + 1);
	anvil_cmd("evm_mine", NULL);
	assert_int_equal(rc_txm_wait(txm, d.hash, 5000, &r, &e), RC_OK);
	rc_rpc_receipt_release(&r);
	rc_txm_free(other);
	anvil_cmd("evm_setAutomine", json_pack("[b]", 1));
}

static void test_rc_txm__bump_stuck(void **state)
{
	anvil_cmd("evm_setAutomine", json_pack("[b]", 0));
	uint8_t to[20];
	memset(to, 0x55, sizeof to);
	struct rc_txm_call call = {.to = to, .value = u(7)};
	struct rc_txm_sent a, b;
	struct rc_rpc_error e;
	assert_int_equal(rc_txm_send(txm, &call, &a, &e), RC_OK);
	assert_int_equal(rc_txm_bump(txm, &a, &b, &e), RC_OK);
	assert_int_equal(b.nonce, a.nonce);
	assert_memory_not_equal(a.hash, b.hash, 32);
	struct rc_u256 min;
	assert_int_equal(rc_u256_mul_u64(&min, &a.fees.max_fee, 1125), RC_OK);
	rc_u256_divmod_u64(&min, NULL, &min, 1000);
	assert_true(rc_u256_cmp(&b.fees.max_fee, &min) >= 0);
	assert_true(rc_u256_cmp(&b.fees.tip, &a.fees.tip) > 0);
	anvil_cmd("evm_mine", NULL);
	struct rc_rpc_receipt r;
	assert_int_equal(rc_txm_wait(txm, b.hash, 5000, &r, &e), RC_OK);
	rc_rpc_receipt_release(&r);
	bool found;
	assert_int_equal(rc_rpc_get_receipt(rpc, a.hash, &found, &r, NULL), RC_OK);
	assert_false(found);
	anvil_cmd("evm_setAutomine", json_pack("[b]", 1));
}

static void test_rc_txm__failed_tx_and_cap(void **state)
{
	/* Creation whose init code reverts with SessionTooShort(), gas given so it is mined. */
	static const uint8_t code[] = {0x63, 0xf4, 0xd7, 0xee, 0xd5, 0x60, 0xe0, 0x1b,
	                               0x60, 0x00, 0x52, 0x60, 0x04, 0x60, 0x00, 0xfd};
	struct rc_txm_call call = {.data = code, .data_len = sizeof code, .gas = 100000};
	struct rc_rpc_receipt r;
	struct rc_rpc_error e;
	assert_int_equal(rc_txm_send_wait(txm, &call, &r, &e), RC_ETXFAILED);
	assert_false(r.status);
	rc_rpc_receipt_release(&r);
	/* Estimating it instead reports the decoded reason and sends nothing. */
	call.gas = 0;
	struct rc_txm_sent s;
	assert_int_equal(rc_txm_send(txm, &call, &s, &e), RC_EREVERT);
	assert_string_equal(e.revert_name, "SessionTooShort");
	/* A fee cap under the base fee. */
	struct rc_secp_privkey k;
	assert_int_equal(rc_secp_privkey_from_hex(&k, anvil0_key, 64, NULL), RC_OK);
	struct rc_txm *capped;
	struct rc_txm_options o = {.chain_id = 31337, .max_fee_cap = u(1)};
	assert_int_equal(rc_txm_new(rpc, &k, &o, &capped), RC_OK);
	rc_secp_privkey_release(&k);
	struct rc_txm_fees f;
	assert_int_equal(rc_txm_estimate_fees(capped, &f, &e), RC_EUNDERPRICED);
	rc_txm_free(capped);
	rc_txm_free(NULL);
}

int main(void)
{
	const struct CMUnitTest pure[] = {
	        cmocka_unit_test(test_rc_txm__fee_rules),
	};
	const struct CMUnitTest live[] = {
	        cmocka_unit_test(test_rc_txm__transfer),
	        cmocka_unit_test(test_rc_txm__concurrent_nonces),
	        cmocka_unit_test(test_rc_txm__dropped_tx_recovers),
	        cmocka_unit_test(test_rc_txm__bump_stuck),
	        cmocka_unit_test(test_rc_txm__failed_tx_and_cap),
	};
	signal(SIGPIPE, SIG_IGN);
	int failed = cmocka_run_group_tests_name("rc_txm pure", pure, NULL, NULL);
	failed += cmocka_run_group_tests_name("rc_txm anvil", live, setup, teardown);
	return failed ? 1 : 0;
}
