/*
 * rc_pool without a chain: argument checks, names, a start that does not block when the RPC is
 * unreachable (the catalogue is then "not loaded": RC_POOL_CHAIN, never unknown_model), store
 * records loaded at start and listed, stats saying the chain is down, rc_session_close's
 * errors, and a prompt for a stored session whose provider is not there. The chain paths
 * (open, reuse, failover, close, recovery) run against anvil in
 * tests/integration/test_rc_pool.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <router-core/rc_pool.h>

#include "testutil.h"

#define USER_PRIV "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"

struct env {
	struct rc_rpc *rpc;
	struct rc_market *m;
	struct rc_txm *txm;
	struct rc_secp_privkey key;
	char url[64];
};

static void env_init(struct env *e)
{
	memset(e, 0, sizeof *e);
	int port = tu_free_port(); /* bound, then released: nothing listens there */
	assert_true(port > 0);
	snprintf(e->url, sizeof e->url, "http://127.0.0.1:%d", port);
	const char *urls[] = {e->url};
	struct rc_rpc_options ro = {.urls = urls,
	                            .nurls = 1,
	                            .connect_timeout_ms = 200,
	                            .timeout_ms = 500,
	                            .bad_url_ms = 1};
	assert_int_equal(rc_rpc_new(&ro, &e->rpc), RC_OK);
	uint8_t diamond[20] = {1}, mor[20] = {2};
	assert_int_equal(rc_market_new(e->rpc, diamond, mor, &e->m), RC_OK);
	assert_int_equal(rc_secp_privkey_from_hex(&e->key, USER_PRIV, strlen(USER_PRIV), NULL),
	                 RC_OK);
	struct rc_txm_options to = {.chain_id = 31337};
	assert_int_equal(rc_txm_new(e->rpc, &e->key, &to, &e->txm), RC_OK);
}

static void env_release(struct env *e)
{
	rc_txm_free(e->txm);
	rc_market_free(e->m);
	rc_rpc_free(e->rpc);
	rc_secp_privkey_release(&e->key);
}

static void test_rc_pool__names(void **state)
{
	(void)state;
	assert_string_equal(rc_pool_state_name(RC_POOL_S_OPENING), "opening");
	assert_string_equal(rc_pool_state_name(RC_POOL_S_CLOSED), "closed");
	assert_string_equal(rc_pool_state_name((enum rc_pool_state)99), "unknown");
	assert_string_equal(rc_pool_reason_name(RC_POOL_UNKNOWN_MODEL), "unknown_model");
	assert_string_equal(rc_pool_reason_name(RC_POOL_PROVIDER_ERROR), "provider_error");
	assert_string_equal(rc_pool_reason_name((enum rc_pool_reason)99), "unknown");
}

static void test_rc_pool__new_checks_arguments(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	struct rc_pool *p = (struct rc_pool *)1;
	struct rc_pool_opts o = {0};
	assert_int_equal(rc_pool_new(&o, &p), RC_EINVAL);
	assert_null(p);
	o.market = e.m;
	o.txm = e.txm;
	assert_int_equal(rc_pool_new(&o, &p), RC_EINVAL); /* no key */
	o.key = &e.key;
	o.session_s = 299; /* below the chain's minimum session */
	assert_int_equal(rc_pool_new(&o, &p), RC_EINVAL);
	o.session_s = 0;
	assert_int_equal(rc_pool_new(&o, &p), RC_OK);
	assert_non_null(p);
	rc_pool_free(p); /* never started */
	rc_pool_free(NULL);
	env_release(&e);
}

/* An in-memory store with one open session record. */
static struct rc_pool_session stored;
static int nsaves;

static int mem_save(void *ud, const struct rc_pool_session *s)
{
	(void)ud;
	nsaves++;
	if (s->local_id == stored.local_id)
		stored = *s;
	return 0;
}

static int mem_load(void *ud, int (*cb)(void *, const struct rc_pool_session *), void *cbud)
{
	(void)ud;
	return cb(cbud, &stored);
}

static const struct rc_pool_store_ops mem_ops = {mem_save, mem_load};

static void test_rc_pool__start_without_chain(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	memset(&stored, 0, sizeof stored);
	stored.local_id = 77;
	stored.id[0] = 0xab;
	stored.id[31] = 0xcd;
	snprintf(stored.model, sizeof stored.model, "m");
	snprintf(stored.endpoint, sizeof stored.endpoint, "127.0.0.1:1");
	stored.state = RC_POOL_S_OPEN;
	stored.ends_at = UINT64_MAX / 2;
	struct rc_pool_opts o = {.market = e.m,
	                         .txm = e.txm,
	                         .key = &e.key,
	                         .store = &mem_ops,
	                         .maintenance_ms = 50};
	struct rc_pool *p;
	assert_int_equal(rc_pool_new(&o, &p), RC_OK);
	int64_t t0 = tu_ms_now();
	assert_int_equal(rc_pool_start(p), RC_OK);
	assert_true(tu_ms_now() - t0 < 100); /* does not wait for the chain */
	assert_int_equal(rc_pool_start(p), RC_EINVAL);

	/* the request path does not touch the chain: the catalogue is simply not loaded */
	struct rc_pool_request rq = {.model = "m", .message = RC_STR_LIT("{}"), .cancel_fd = -1};
	struct rc_pool_result res;
	struct rc_pool_err err;
	t0 = tu_ms_now();
	assert_int_equal(rc_pool_prompt(p, &rq, &res, &err), RC_ENOTFOUND);
	assert_true(tu_ms_now() - t0 < 100);
	assert_int_equal(err.reason, RC_POOL_CHAIN);
	assert_non_null(strstr(err.text, "not loaded"));
	struct rc_pool_model md;
	assert_int_equal(rc_pool_model_find(p, "m", &md), RC_ENOTFOUND);

	/* the stored record is loaded and listed; the chain is seen down */
	struct rc_pool_stats st;
	struct rc_pool_session *ss = NULL;
	size_t n = 0;
	for (int i = 0; i < 100; i++) {
		rc_pool_get_stats(p, &st);
		free(ss);
		assert_int_equal(rc_pool_sessions(p, &ss, &n), RC_OK);
		if (!st.chain_ok && st.catalog_errors > 0 && n == 1)
			break;
		usleep(20000);
	}
	assert_false(st.chain_ok);
	assert_true(st.catalog_errors > 0);
	assert_int_equal(st.catalog_refreshes, 0);
	assert_int_equal(n, 1);
	assert_int_equal(ss[0].local_id, 77);
	assert_int_equal(ss[0].state, RC_POOL_S_OPEN); /* not judged until the chain answers */
	free(ss);
	struct rc_pool_model *cat;
	int64_t refreshed = -1;
	assert_int_equal(rc_pool_catalog(p, &cat, &n, &refreshed), RC_OK);
	assert_int_equal(n, 0);
	assert_null(cat);
	assert_int_equal(refreshed, 0);

	/* closing a session needs the chain: a chain error, the record stays */
	uint8_t id[32] = {0};
	id[0] = 0xab;
	id[31] = 0xcd;
	assert_true(rc_pool_close(p, id, true, &err) < 0);
	assert_int_equal(err.reason, RC_POOL_CHAIN);
	uint8_t other[32] = {9};
	assert_int_equal(rc_pool_close(p, other, true, &err), RC_ENOTFOUND);
	t0 = tu_ms_now();
	rc_pool_free(p);
	assert_true(tu_ms_now() - t0 < 3000);
	assert_true(nsaves >= 2); /* closing, then back to retired */
	assert_int_equal(stored.state, RC_POOL_S_RETIRED);
	env_release(&e);
}

static void test_rc_pool__session_close_errors(void **state)
{
	(void)state;
	struct env e;
	env_init(&e);
	struct rc_pool_session s = {0};
	struct rc_pool_err err;
	/* no session id */
	assert_int_equal(rc_session_close(e.m, e.txm, &e.key, NULL, &s, true, &err), RC_EINVAL);
	assert_int_equal(err.reason, RC_POOL_INTERNAL);
	s.id[5] = 1;
	int rc = rc_session_close(e.m, e.txm, &e.key, NULL, &s, true, &err);
	assert_true(rc < 0);
	assert_int_equal(err.reason, RC_POOL_CHAIN);
	assert_non_null(strstr(err.text, "cannot read session 0x0000..0000"));
	assert_int_equal(s.state, 0); /* untouched */
	env_release(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rc_pool__names),
	        cmocka_unit_test(test_rc_pool__new_checks_arguments),
	        cmocka_unit_test(test_rc_pool__start_without_chain),
	        cmocka_unit_test(test_rc_pool__session_close_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
