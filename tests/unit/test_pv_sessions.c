/* provider session table: capacity policies (simple, idle_timeout), per-session turns, stats. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pv_sessions.h"

static void sid(uint8_t id[32], int n)
{
	memset(id, 0, 32);
	id[31] = (uint8_t)n;
}

static void test_pv_sessions__simple_counts_unexpired_sessions(void **state)
{
	(void)state;
	struct pv_sessions *s;
	uint8_t a[32], b[32];
	const uint64_t now = 1000000;
	assert_int_equal(pv_sessions_new(&s), RC_OK);
	assert_true(pv_sessions_admit(s, 0, 2, PV_CAP_SIMPLE, now));
	sid(a, 1);
	sid(b, 2);
	assert_int_equal(pv_sessions_acquire(s, a, 0, now + 600, 1000), RC_OK);
	pv_sessions_release(s, a, NULL, now);
	assert_true(pv_sessions_admit(s, 0, 2, PV_CAP_SIMPLE, now));
	assert_int_equal(pv_sessions_acquire(s, b, 0, now + 60, 1000), RC_OK);
	pv_sessions_release(s, b, NULL, now);
	assert_false(pv_sessions_admit(s, 0, 2, PV_CAP_SIMPLE, now));
	assert_true(pv_sessions_admit(s, 1, 2, PV_CAP_SIMPLE, now)); /* other model */
	assert_true(pv_sessions_admit(s, 0, 0, PV_CAP_SIMPLE, now)); /* 0 = unlimited */
	/* b ends: a slot frees up */
	assert_true(pv_sessions_admit(s, 0, 2, PV_CAP_SIMPLE, now + 60));
	assert_int_equal(pv_sessions_active(s, 0, PV_CAP_SIMPLE, now + 60), 1);
	/* a closed on chain: forgotten */
	pv_sessions_forget(s, a);
	assert_int_equal(pv_sessions_active(s, 0, PV_CAP_SIMPLE, now), 1);
	pv_sessions_free(s);
}

static void test_pv_sessions__idle_timeout_counts_recent_prompts(void **state)
{
	(void)state;
	struct pv_sessions *s;
	uint8_t a[32];
	const uint64_t now = 1000000;
	struct pv_prompt_stats st = {100, 2000, 10, 20};
	assert_int_equal(pv_sessions_new(&s), RC_OK);
	sid(a, 1);
	/* a session that exists but never prompted does not count */
	assert_int_equal(pv_sessions_acquire(s, a, 0, now + 7200, 1000), RC_OK);
	pv_sessions_release(s, a, NULL, now);
	assert_true(pv_sessions_admit(s, 0, 1, PV_CAP_IDLE_TIMEOUT, now));
	/* two prompts of the same session count twice (as in the reference) */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pv_sessions_acquire(s, a, 0, now + 7200, 1000), RC_OK);
		pv_sessions_release(s, a, &st, now);
	}
	assert_int_equal(pv_sessions_active(s, 0, PV_CAP_IDLE_TIMEOUT, now), 2);
	assert_false(pv_sessions_admit(s, 0, 2, PV_CAP_IDLE_TIMEOUT, now));
	/* idle for more than 15 min: free again */
	assert_true(pv_sessions_admit(s, 0, 2, PV_CAP_IDLE_TIMEOUT, now + PV_IDLE_WINDOW_S + 1));
	assert_int_equal(pv_sessions_active(s, 0, PV_CAP_IDLE_TIMEOUT, now + PV_IDLE_PURGE_S + 1),
	                 0);
	pv_sessions_free(s);
}

static void test_pv_sessions__stats_are_means_and_sums(void **state)
{
	(void)state;
	struct pv_sessions *s;
	uint8_t a[32];
	struct pv_session_stats ss;
	struct pv_prompt_stats p1 = {100, 3000, 10, 30}, p2 = {301, 1000, 5, 7};
	assert_int_equal(pv_sessions_new(&s), RC_OK);
	sid(a, 9);
	assert_int_equal(pv_sessions_stats(s, a, &ss), RC_ENOTFOUND);
	assert_int_equal(pv_sessions_acquire(s, a, 0, 10, 1000), RC_OK);
	pv_sessions_release(s, a, &p1, 1);
	assert_int_equal(pv_sessions_acquire(s, a, 0, 10, 1000), RC_OK);
	pv_sessions_release(s, a, &p2, 1);
	assert_int_equal(pv_sessions_stats(s, a, &ss), RC_OK);
	assert_int_equal(ss.prompts, 2);
	assert_int_equal(ss.ttft_ms, 200);
	assert_int_equal(ss.tps_scaled1000, 2000);
	assert_int_equal(ss.tokens_in, 15);
	assert_int_equal(ss.tokens_out, 37);
	pv_sessions_free(s);
}

static void test_pv_sessions__one_prompt_at_a_time_per_session(void **state)
{
	(void)state;
	struct pv_sessions *s;
	uint8_t a[32], b[32];
	assert_int_equal(pv_sessions_new(&s), RC_OK);
	sid(a, 1);
	sid(b, 2);
	assert_int_equal(pv_sessions_acquire(s, a, 0, 10, 1000), RC_OK);
	/* same session waits and times out; another session goes at once */
	assert_int_equal(pv_sessions_acquire(s, a, 0, 10, 50), RC_ETIMEOUT);
	assert_int_equal(pv_sessions_acquire(s, b, 0, 10, 50), RC_OK);
	pv_sessions_release(s, a, NULL, 1);
	assert_int_equal(pv_sessions_acquire(s, a, 0, 10, 50), RC_OK);
	pv_sessions_release(s, a, NULL, 1);
	pv_sessions_release(s, b, NULL, 1);
	pv_sessions_free(s);
}

struct waiter {
	struct pv_sessions *s;
	uint8_t id[32];
	int rc;
};

static void *wait_turn(void *arg)
{
	struct waiter *w = arg;
	w->rc = pv_sessions_acquire(w->s, w->id, 0, 10, 5000);
	if (w->rc == RC_OK)
		pv_sessions_release(w->s, w->id, NULL, 1);
	return NULL;
}

static void test_pv_sessions__waiter_gets_the_turn_on_release(void **state)
{
	(void)state;
	struct waiter w;
	pthread_t t;
	assert_int_equal(pv_sessions_new(&w.s), RC_OK);
	sid(w.id, 3);
	w.rc = -99;
	assert_int_equal(pv_sessions_acquire(w.s, w.id, 0, 10, 1000), RC_OK);
	pthread_create(&t, NULL, wait_turn, &w);
	/* many other sessions join meanwhile (the array grows and moves) */
	for (int i = 10; i < 200; i++) {
		uint8_t o[32];
		sid(o, i);
		o[0] = (uint8_t)(i >> 8) | 0x80;
		assert_int_equal(pv_sessions_acquire(w.s, o, 0, 10, 100), RC_OK);
		pv_sessions_release(w.s, o, NULL, 1);
	}
	pv_sessions_release(w.s, w.id, NULL, 1);
	pthread_join(t, NULL);
	assert_int_equal(w.rc, RC_OK);
	pv_sessions_free(w.s);
}

static void test_pv_sessions__ended_sessions_are_purged(void **state)
{
	(void)state;
	struct pv_sessions *s;
	struct pv_session_stats ss;
	uint8_t id[32];
	assert_int_equal(pv_sessions_new(&s), RC_OK);
	for (int i = 0; i < PV_SESSIONS_PURGE_AT; i++) {
		sid(id, i & 0xff);
		id[0] = (uint8_t)(i >> 8);
		/* even sessions ended long ago, odd ones are live */
		assert_int_equal(pv_sessions_acquire(s, id, 0, i % 2 ? 10000000 : 10, 100), RC_OK);
		pv_sessions_release(s, id, NULL, 1);
	}
	sid(id, 1);
	assert_int_equal(pv_sessions_acquire(s, id, 0, 10000000, 100), RC_OK);
	pv_sessions_release(s, id, NULL, 10 + PV_SESSION_KEEP_S + 1); /* triggers the purge */
	assert_int_equal(pv_sessions_stats(s, id, &ss), RC_OK);
	sid(id, 0);
	assert_int_equal(pv_sessions_stats(s, id, &ss), RC_ENOTFOUND);
	assert_int_equal(pv_sessions_active(s, 0, PV_CAP_SIMPLE, 20), PV_SESSIONS_PURGE_AT / 2);
	pv_sessions_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pv_sessions__simple_counts_unexpired_sessions),
	        cmocka_unit_test(test_pv_sessions__idle_timeout_counts_recent_prompts),
	        cmocka_unit_test(test_pv_sessions__stats_are_means_and_sums),
	        cmocka_unit_test(test_pv_sessions__one_prompt_at_a_time_per_session),
	        cmocka_unit_test(test_pv_sessions__waiter_gets_the_turn_on_release),
	        cmocka_unit_test(test_pv_sessions__ended_sessions_are_purged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
