/*
 * rc_rank: the reference score of morpheus-protocol §3.8 on hand-computed cases (z-indices,
 * success ratio, the int64 stake truncation that wraps above ~9.22 MOR, the price division,
 * NaN/Inf drops), the filters (price ceiling, allow-list, deny-list, our own address, inactive
 * bids), the health record (bench doubling, reset on success, abandon, gone, the factor, LRU
 * eviction) and the resulting order (benched providers after the others, ties by bid id).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_rank.h>

static void u256_dec(struct rc_u256 *out, const char *s)
{
	assert_int_equal(rc_u256_parse_dec(out, s, strlen(s), NULL), RC_OK);
}

static void addr(uint8_t a[20], uint8_t b)
{
	memset(a, 0, 20);
	a[19] = b;
}

/*
 * Model: count 3; tps mean 1000 sqSum 800 (sd 20); ttft mean 500 sqSum 20000 (sd 100);
 * duration mean 1000 sqSum 180000 (sd 300). Provider min stake 0.1 MOR.
 * Offer: tps 1030 (z 1.5 -> 0.75), ttft 400 (-z 1 -> 4/6), duration 1600 (z 2 -> 5/6),
 * success 3/4 (0.5625), stake 0.55 MOR ((0.55-0.1)/(1-0.1) = 0.5), price 1e13 wei/s (1e-5).
 * Sum .24*.75 + .08*4/6 + .24*5/6 + .32*.5625 + .12*.5 = 0.673333..., score 67333.33...
 */
static struct rc_model_stats model_stats(void)
{
	struct rc_model_stats ms = {0};
	ms.count = 3;
	ms.tps_scaled1000 = (struct rc_sd){1000, 800};
	ms.ttft_ms = (struct rc_sd){500, 20000};
	ms.total_duration = (struct rc_sd){1000, 180000};
	return ms;
}

static void offer_init(struct rc_market_offer *o, uint8_t who)
{
	memset(o, 0, sizeof *o);
	addr(o->bid.provider, who);
	memcpy(o->provider.address, o->bid.provider, 20);
	o->bid.id[31] = who;
	o->bid.created_at = 1000;
	o->provider.created_at = 1000;
	rc_u256_from_u64(&o->bid.price_per_second, 10000000000000ULL);
	rc_u256_from_u64(&o->provider.stake, 550000000000000000ULL);
	o->stats.tps_scaled1000.mean = 1030;
	o->stats.ttft_ms.mean = 400;
	o->stats.total_duration = 1600;
	o->stats.success_count = 3;
	o->stats.total_count = 4;
}

static struct rc_u256 min_stake(void)
{
	struct rc_u256 m;
	rc_u256_from_u64(&m, 100000000000000000ULL);
	return m;
}

static void near(double got, double want)
{
	if (!(fabs(got - want) <= 1e-9 * fabs(want)))
		fail_msg("score %.12g, wanted %.12g", got, want);
}

static void test_rc_rank__reference_score_hand_computed(void **state)
{
	(void)state;
	struct rc_model_stats ms = model_stats();
	struct rc_market_offer o;
	offer_init(&o, 1);
	struct rc_u256 min = min_stake();
	double want =
	        (0.24 * 0.75 + 0.08 * (4.0 / 6) + 0.24 * (5.0 / 6) + 0.32 * 0.5625 + 0.12 * 0.5) /
	        1e-5;
	near(rc_rank_reference_score(NULL, &ms, &o, &min), want);
	near(rc_rank_reference_score(&rc_rank_default_weights, &ms, &o, &min), want);

	/* z beyond +-3 is clamped: tps 10x the sd above -> S_tps 1; ttft far above -> S_ttft 0 */
	o.stats.tps_scaled1000.mean = 1000 + 20 * 10;
	o.stats.ttft_ms.mean = 500 + 100 * 10;
	want = (0.24 * 1 + 0.08 * 0 + 0.24 * (5.0 / 6) + 0.32 * 0.5625 + 0.12 * 0.5) / 1e-5;
	near(rc_rank_reference_score(NULL, &ms, &o, &min), want);

	/* n <= 1: every z is 0 (S = 0.5); no sessions at all: success 0; stake below min: 0 */
	ms.count = 1;
	o.stats.total_count = 0;
	o.stats.success_count = 0;
	rc_u256_from_u64(&o.provider.stake, 1);
	want = (0.24 * 0.5 + 0.08 * 0.5 + 0.24 * 0.5) / 1e-5;
	near(rc_rank_reference_score(NULL, &ms, &o, &min), want);

	/* a negative sqSum is a variance of 0 (§3.8), so z = 0 */
	ms = model_stats();
	ms.tps_scaled1000.sq_sum = -800;
	offer_init(&o, 1);
	want = (0.24 * 0.5 + 0.08 * (4.0 / 6) + 0.24 * (5.0 / 6) + 0.32 * 0.5625 + 0.12 * 0.5) /
	       1e-5;
	near(rc_rank_reference_score(NULL, &ms, &o, &min), want);

	/* the price is divided as a float of wei / 1e18: 2x the price, half the score */
	ms = model_stats();
	rc_u256_from_u64(&o.bid.price_per_second, 20000000000000ULL);
	want = (0.24 * 0.75 + 0.08 * (4.0 / 6) + 0.24 * (5.0 / 6) + 0.32 * 0.5625 + 0.12 * 0.5) /
	       2e-5;
	near(rc_rank_reference_score(NULL, &ms, &o, &min), want);
	/* a price above 64 bits converts to the nearest double (3e30 wei/s) */
	u256_dec(&o.bid.price_per_second, "3000000000000000000000000000000");
	double got = rc_rank_reference_score(NULL, &ms, &o, &min);
	double w = (0.24 * 0.75 + 0.08 * (4.0 / 6) + 0.24 * (5.0 / 6) + 0.32 * 0.5625 + 0.12 * 0.5);
	near(got, w / (3e30 / 1e18));
}

static void test_rc_rank__stake_int64_truncation_wraps(void **state)
{
	(void)state;
	struct rc_model_stats ms = model_stats();
	struct rc_u256 min = min_stake();
	struct rc_market_offer o;
	offer_init(&o, 1);
	double base = (0.24 * 0.75 + 0.08 * (4.0 / 6) + 0.24 * (5.0 / 6) + 0.32 * 0.5625) / 1e-5;

	/* 1 MOR = 10 x min: S_stake 1 */
	rc_u256_from_u64(&o.provider.stake, 1000000000000000000ULL);
	near(rc_rank_reference_score(NULL, &ms, &o, &min), base + 0.12 / 1e-5);
	/* 10 MOR = 1e19 > 2^63: Int64() is negative, so below min: S_stake 0 */
	u256_dec(&o.provider.stake, "10000000000000000000");
	near(rc_rank_reference_score(NULL, &ms, &o, &min), base);
	/* 2^64 + 0.55 MOR: the low 64 bits are 0.55 MOR, S_stake 0.5 as for 0.55 MOR */
	u256_dec(&o.provider.stake, "18996744073709551616");
	near(rc_rank_reference_score(NULL, &ms, &o, &min), base + 0.12 * 0.5 / 1e-5);
	/* min stake of 1 MOR: 10 x min = 1e19 wraps negative, so max < min and any stake >= min
	 * is above max: S_stake 1 */
	rc_u256_from_u64(&min, 1000000000000000000ULL);
	rc_u256_from_u64(&o.provider.stake, 2000000000000000000ULL);
	near(rc_rank_reference_score(NULL, &ms, &o, &min), base + 0.12 / 1e-5);
	/* min stake 0: max == min, S_stake 0 */
	rc_u256_from_u64(&min, 0);
	near(rc_rank_reference_score(NULL, &ms, &o, &min), base);
}

static struct rc_market_discovery disc(struct rc_market_offer *offers, size_t n)
{
	struct rc_market_discovery d;
	memset(&d, 0, sizeof d);
	d.model_stats = model_stats();
	d.provider_min_stake = min_stake();
	d.offers = offers;
	d.noffers = n;
	return d;
}

static void test_rc_rank__drops_nan_inf_and_filters(void **state)
{
	(void)state;
	struct rc_market_offer of[8];
	for (int i = 0; i < 8; i++)
		offer_init(&of[i], (uint8_t)(i + 1));
	rc_u256_from_u64(&of[0].bid.price_per_second, 0);                 /* Inf: dropped */
	rc_u256_from_u64(&of[1].bid.price_per_second, 50000000000000ULL); /* over the ceiling */
	of[2].bid.deleted_at = 5;                                         /* inactive */
	of[3].provider.is_deleted = true;                                 /* inactive */
	/* of[4]: ours; of[5]: denied; of[6]: not in the allow-list; of[7]: kept */
	uint8_t self[20], deny[1][20], allow[2][20];
	addr(self, 5);
	addr(deny[0], 6);
	addr(allow[0], 8);
	addr(allow[1], 1);
	struct rc_rank_opts o = {0};
	rc_u256_from_u64(&o.max_price_per_second, 20000000000000ULL);
	o.self = self;
	o.deny = (const uint8_t(*)[20])deny;
	o.ndeny = 1;
	o.allow = (const uint8_t(*)[20])allow;
	o.nallow = 2;
	/* of[1] is in no allow-list either: the ceiling is what counts after the allow-list */
	addr(allow[1], 2);
	struct rc_market_discovery d = disc(of, 8);
	struct rc_rank_entry *r;
	size_t kept;
	assert_int_equal(rc_rank(&d, &o, NULL, 0, &r, &kept), RC_OK);
	assert_int_equal(kept, 1);
	assert_int_equal(r[0].offer, 7);
	assert_int_equal(r[0].drop, RC_RANK_KEPT);
	enum rc_rank_drop want[8] = {RC_RANK_DROP_ALLOW,    RC_RANK_DROP_PRICE,
	                             RC_RANK_DROP_INACTIVE, RC_RANK_DROP_INACTIVE,
	                             RC_RANK_DROP_SELF,     RC_RANK_DROP_DENY,
	                             RC_RANK_DROP_ALLOW,    RC_RANK_KEPT};
	for (size_t i = 1; i < 8; i++) {
		assert_int_equal(r[i].offer, i - 1); /* dropped ones after, in offer order */
		assert_int_equal(r[i].drop, want[i - 1]);
	}
	free(r);

	/* without filters: the zero price is dropped for its infinite score, a NaN weight drops
	 * every bid (NaN score) */
	struct rc_rank_opts none = {0};
	assert_int_equal(rc_rank(&d, &none, NULL, 0, &r, &kept), RC_OK);
	assert_int_equal(kept, 5);
	assert_int_equal(r[5].drop, RC_RANK_DROP_SCORE);
	assert_int_equal(r[5].offer, 0);
	assert_true(isinf(r[5].reference));
	assert_int_equal(r[6].offer, 2);
	assert_int_equal(r[7].offer, 3);
	free(r);
	none.weights = rc_rank_default_weights;
	none.weights.tps = NAN;
	assert_int_equal(rc_rank(&d, &none, NULL, 0, &r, &kept), RC_OK);
	assert_int_equal(kept, 0);
	for (size_t i = 0; i < 8; i++)
		if (r[i].offer != 2 && r[i].offer != 3) {
			assert_int_equal(r[i].drop, RC_RANK_DROP_SCORE);
			assert_true(isnan(r[i].reference));
		}
	free(r);
}

static void test_rc_rank__order_score_ties_and_bench(void **state)
{
	(void)state;
	struct rc_market_offer of[4];
	for (int i = 0; i < 4; i++)
		offer_init(&of[i], (uint8_t)(10 - i));                    /* bid ids 10, 9, 8, 7 */
	rc_u256_from_u64(&of[0].bid.price_per_second, 40000000000000ULL); /* cheapest wins */
	rc_u256_from_u64(&of[1].bid.price_per_second, 10000000000000ULL);
	rc_u256_from_u64(&of[2].bid.price_per_second, 20000000000000ULL);
	rc_u256_from_u64(&of[3].bid.price_per_second, 20000000000000ULL); /* ties with of[2] */
	struct rc_market_discovery d = disc(of, 4);
	struct rc_rank_entry *r;
	size_t kept;
	assert_int_equal(rc_rank(&d, NULL, NULL, 0, &r, &kept), RC_OK);
	assert_int_equal(kept, 4);
	size_t order[4] = {1, 3, 2, 0}; /* tie: bid id 7 (of[3]) before bid id 8 (of[2]) */
	for (int i = 0; i < 4; i++)
		assert_int_equal(r[i].offer, order[i]);
	free(r);

	/* the best provider fails: benched, tried last; its factor lowers its score */
	struct rc_health h;
	rc_health_init(&h, 1000);
	rc_health_failure(&h, of[1].bid.provider, 5000);
	assert_int_equal(rc_rank(&d, NULL, &h, 5500, &r, &kept), RC_OK);
	assert_int_equal(kept, 4);
	assert_int_equal(r[3].offer, 1);
	assert_true(r[3].benched);
	near(r[3].score, r[3].reference * 0.5);
	assert_int_equal(r[0].offer, 3);
	free(r);
	/* after the bench it ranks by its lowered score among the others again */
	assert_int_equal(rc_rank(&d, NULL, &h, 6001, &r, &kept), RC_OK);
	for (int i = 0; i < 4; i++) {
		assert_false(r[i].benched);
		if (i)
			assert_true(r[i - 1].score >= r[i].score);
	}
	assert_int_equal(r[3].offer, 0);
	free(r);
	/* abandoned: dropped for good, even after a success */
	rc_health_abandon(&h, of[3].bid.provider, 7000);
	rc_health_success(&h, of[3].bid.provider, 10, 10, 7001);
	assert_int_equal(rc_rank(&d, NULL, &h, 100000, &r, &kept), RC_OK);
	assert_int_equal(kept, 3);
	assert_int_equal(r[3].offer, 3);
	assert_int_equal(r[3].drop, RC_RANK_DROP_ABANDONED);
	free(r);
	rc_health_destroy(&h);
}

static void test_rc_rank__health_bench_doubling_and_reset(void **state)
{
	(void)state;
	struct rc_health h;
	rc_health_init(&h, 1000);
	uint8_t p[20], q[20];
	addr(p, 1);
	addr(q, 2);
	struct rc_health_entry e;
	assert_false(rc_health_get(&h, p, &e));
	assert_true(rc_health_factor(NULL) == 1);
	int64_t want[6] = {1000, 2000, 4000, 8000, 16000, 16000};
	for (int i = 0; i < 6; i++) {
		rc_health_failure(&h, p, 100);
		assert_true(rc_health_get(&h, p, &e));
		assert_int_equal(e.consecutive_failures, i + 1);
		assert_int_equal(e.benched_until_ms, 100 + want[i]);
	}
	assert_int_equal(e.failing_since_ms, 100);
	assert_false(rc_health_gone(&h, p, 5000, 5099));
	assert_true(rc_health_gone(&h, p, 5000, 5100));
	assert_false(rc_health_gone(&h, q, 0, 5100)); /* never seen */
	near(rc_health_factor(&e), 1.0 / 7);
	rc_health_success(&h, p, 4000, 2.5, 200);
	assert_true(rc_health_get(&h, p, &e));
	assert_int_equal(e.consecutive_failures, 0);
	assert_int_equal(e.benched_until_ms, 0);
	assert_int_equal(e.failing_since_ms, 0);
	assert_false(rc_health_gone(&h, p, 5000, 100000));
	/* reliability 2/8, ttft 2000/4000, tps 2.5/5 */
	near(rc_health_factor(&e), 0.25 * 0.5 * 0.5);
	/* ewma of ttft */
	rc_health_success(&h, p, 1000, -1, 300);
	assert_true(rc_health_get(&h, p, &e));
	near(e.ttft_ms_ewma, 0.7 * 4000 + 0.3 * 1000);
	/* decay: counts halve when they reach 32 */
	for (int i = 0; i < 40; i++)
		rc_health_success(&h, q, -1, -1, 400);
	assert_true(rc_health_get(&h, q, &e));
	assert_true(e.successes < 32 && e.successes >= 16);
	/* floors */
	struct rc_health_entry bad = {.failures = 1000, .ttft_ms_ewma = 1e9, .tps_ewma = 0.001};
	near(rc_health_factor(&bad), 0.05 * 0.25 * 0.5);
	rc_health_destroy(&h);
}

static void test_rc_rank__health_forgets_least_recently_seen(void **state)
{
	(void)state;
	struct rc_health *h = malloc(sizeof *h);
	assert_non_null(h);
	rc_health_init(h, 1000);
	uint8_t p[20] = {0};
	for (int i = 0; i < RC_HEALTH_MAX; i++) {
		p[0] = (uint8_t)(i >> 8);
		p[1] = (uint8_t)i;
		rc_health_failure(h, p, 1000 + i);
	}
	p[0] = 0;
	p[1] = 0;
	rc_health_success(h, p, -1, -1, 5000); /* provider 0 is fresh again; 1 is the oldest */
	p[0] = 0xff;
	rc_health_failure(h, p, 6000); /* a new one evicts provider 1 */
	struct rc_health_entry e;
	assert_int_equal(h->n, RC_HEALTH_MAX);
	assert_true(rc_health_get(h, p, &e));
	p[0] = 0;
	assert_true(rc_health_get(h, p, &e));
	p[1] = 1;
	assert_false(rc_health_get(h, p, &e));
	p[1] = 2;
	assert_true(rc_health_get(h, p, &e));
	rc_health_destroy(h);
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rc_rank__reference_score_hand_computed),
	        cmocka_unit_test(test_rc_rank__stake_int64_truncation_wraps),
	        cmocka_unit_test(test_rc_rank__drops_nan_inf_and_filters),
	        cmocka_unit_test(test_rc_rank__order_score_ties_and_bench),
	        cmocka_unit_test(test_rc_rank__health_bench_doubling_and_reset),
	        cmocka_unit_test(test_rc_rank__health_forgets_least_recently_seen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
