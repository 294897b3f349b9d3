/* gateway rate-limit arithmetic: GCRA admission, refill, settlement, month boundaries, quota. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gw_gcra.h"

#define MIN GW_GCRA_MINUTE_US
static const struct gw_gcra_state FULL = {0, 0};

static void test_gw_gcra__full_bucket_admits_exactly_the_limit_at_once(void **state)
{
	(void)state;
	int64_t limits[] = {1, 3, 7, 60, 100, 999, 1000000};
	for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
		int64_t L = limits[k];
		struct gw_gcra_state tat = FULL;
		double now = 5e9;
		int64_t admitted = 0;
		for (int64_t i = 0; i < L + 5 && i < 2000005; i++) {
			struct gw_gcra_result r;
			gw_gcra_check(tat, now, L, MIN, 1, &r);
			if (r.allowed) {
				assert_int_equal(r.remaining, L - admitted - 1);
				tat = r.state;
				admitted++;
			} else {
				assert_int_equal(r.remaining, 0);
				assert_true(r.retry_us > 0);
			}
		}
		assert_int_equal(admitted, L);
	}
}

static void test_gw_gcra__refills_one_per_emission_interval(void **state)
{
	(void)state;
	struct gw_gcra_state tat = FULL;
	double now = 1e9;
	struct gw_gcra_result r;
	for (int i = 0; i < 100; i++) { /* rpm 100: T = 600 ms */
		gw_gcra_check(tat, now, 100, MIN, 1, &r);
		assert_true(r.allowed);
		tat = r.state;
	}
	assert_int_equal(r.reset_us, 60000000);
	gw_gcra_check(tat, now, 100, MIN, 1, &r);
	assert_false(r.allowed);
	assert_int_equal(r.retry_us, 600000);
	/* one microsecond early: still refused; on time: admitted, and nothing more */
	gw_gcra_check(tat, now + 599999, 100, MIN, 1, &r);
	assert_false(r.allowed);
	assert_int_equal(r.retry_us, 1);
	gw_gcra_check(tat, now + 600000, 100, MIN, 1, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 0);
	tat = r.state;
	gw_gcra_check(tat, now + 600000, 100, MIN, 1, &r);
	assert_false(r.allowed);
	/* after a whole idle minute the bucket is full again */
	gw_gcra_check(tat, now + 60600000, 100, MIN, 1, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 99);
}

static void test_gw_gcra__weighted_cost_for_tokens(void **state)
{
	(void)state;
	struct gw_gcra_state tat = FULL;
	double now = 1e9;
	struct gw_gcra_result r;
	gw_gcra_check(tat, now, 1000, MIN, 600, &r); /* tpm 1000 */
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 400);
	assert_int_equal(r.reset_us, 36000000);
	tat = r.state;
	gw_gcra_check(tat, now, 1000, MIN, 401, &r);
	assert_false(r.allowed);
	assert_false(r.too_large);
	assert_int_equal(r.remaining, 400);  /* a refusal takes nothing */
	assert_int_equal(r.retry_us, 60000); /* one token's worth of refill */
	gw_gcra_check(tat, now, 1000, MIN, 400, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 0);
	/* a cost larger than the limit can never pass */
	gw_gcra_check(FULL, now, 1000, MIN, 1001, &r);
	assert_false(r.allowed);
	assert_true(r.too_large);
	/* zero cost always passes and takes nothing */
	gw_gcra_check(r.state, now, 1000, MIN, 0, &r);
	assert_true(r.allowed);
}

static void test_gw_gcra__settlement_refunds_and_charges(void **state)
{
	(void)state;
	double now = 1e9;
	struct gw_gcra_result r;
	gw_gcra_check(FULL, now, 1000, MIN, 800, &r); /* reserve 800 */
	struct gw_gcra_state tat = r.state;
	tat = gw_gcra_adjust(tat, now, 1000, MIN, 100 - 800); /* actual 100 */
	gw_gcra_check(tat, now, 1000, MIN, 900, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 0);
	/* charge beyond the limit: the debt must be waited out */
	tat = gw_gcra_adjust(r.state, now, 1000, MIN, 500);
	assert_int_equal(gw_gcra_reset_us(tat, now, 1000, MIN), 90000000);
	gw_gcra_check(tat, now, 1000, MIN, 1, &r);
	assert_false(r.allowed);
	assert_int_equal(r.retry_us, 30000000 + 60000);
	/* a refund never makes a bucket fuller than full */
	tat = gw_gcra_adjust(FULL, now, 1000, MIN, -5000);
	assert_true(tat.debt == 0);
	assert_int_equal(gw_gcra_reset_us(tat, now, 1000, MIN), 0);
}

static void test_gw_gcra__odd_limits_do_not_lose_the_last_unit_to_rounding(void **state)
{
	(void)state;
	/* 60e6 / 7 is not exact: 7 * T may exceed the period by an ulp */
	int64_t limits[] = {1, 7, 13, 499, 9973, 100003, 1000000};
	for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
		int64_t L = limits[k];
		struct gw_gcra_state tat = FULL;
		double now = 3.3e13 + 0.5;
		struct gw_gcra_result r;
		for (int64_t i = 0; i < L; i++) {
			gw_gcra_check(tat, now, L, MIN, 1, &r);
			assert_true(r.allowed);
			tat = r.state;
		}
		gw_gcra_check(tat, now, L, MIN, 1, &r);
		assert_false(r.allowed);
	}
	/* tokens: a tpm near the maximum, spent in uneven chunks, to the last token */
	struct gw_gcra_state tat = FULL;
	struct gw_gcra_result r;
	int64_t L = 99999989, spent = 0;
	double now = 3.3e13 + 0.25;
	while (spent + 999983 <= L) {
		gw_gcra_check(tat, now, L, MIN, 999983, &r);
		assert_true(r.allowed);
		tat = r.state;
		spent += 999983;
		assert_int_equal(r.remaining, L - spent);
	}
	gw_gcra_check(tat, now, L, MIN, L - spent + 1, &r);
	assert_false(r.allowed);
	gw_gcra_check(tat, now, L, MIN, L - spent, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 0);
}

static void test_gw_gcra__months_in_utc(void **state)
{
	(void)state;
	assert_int_equal(gw_month_of(0), 197001);
	assert_int_equal(gw_month_end(0), 2678400);             /* 1970-02-01 */
	assert_int_equal(gw_month_of(1798761599), 202612);      /* 2026-12-31T23:59:59Z */
	assert_int_equal(gw_month_end(1798761599), 1798761600); /* 2027-01-01 */
	assert_int_equal(gw_month_of(1798761600), 202701);
	assert_int_equal(gw_month_of(1709164800), 202402);      /* 2024-02-29 leap day */
	assert_int_equal(gw_month_end(1709164800), 1709251200); /* 2024-03-01 */
	assert_int_equal(gw_month_end(1709251199), 1709251200);
	assert_int_equal(gw_month_of(1709251200), 202403);
	assert_int_equal(gw_month_of(-1), 196912);
	assert_int_equal(gw_gcra_time_us(GW_GCRA_EPOCH_S + 2, 5), 2000005.0);
}

static void test_gw_gcra__monthly_quota(void **state)
{
	(void)state;
	int64_t rem;
	assert_int_equal(gw_quota_check(0, 100, 1000, &rem), 1);
	assert_int_equal(rem, 900);
	assert_int_equal(gw_quota_check(900, 100, 1000, &rem), 1);
	assert_int_equal(rem, 0);
	assert_int_equal(gw_quota_check(901, 100, 1000, &rem), 0);
	assert_int_equal(rem, 99);
	assert_int_equal(gw_quota_check(1200, 0, 1000, &rem), 0); /* overspent by settlement */
	assert_int_equal(rem, 0);
	assert_int_equal(gw_quota_check(0, 1001, 1000, &rem), -1);
	assert_int_equal(gw_quota_check(INT64_MAX - 5, 10, INT64_MAX, &rem), 0); /* no overflow */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_gw_gcra__full_bucket_admits_exactly_the_limit_at_once),
	        cmocka_unit_test(test_gw_gcra__refills_one_per_emission_interval),
	        cmocka_unit_test(test_gw_gcra__weighted_cost_for_tokens),
	        cmocka_unit_test(test_gw_gcra__settlement_refunds_and_charges),
	        cmocka_unit_test(test_gw_gcra__odd_limits_do_not_lose_the_last_unit_to_rounding),
	        cmocka_unit_test(test_gw_gcra__months_in_utc),
	        cmocka_unit_test(test_gw_gcra__monthly_quota),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
