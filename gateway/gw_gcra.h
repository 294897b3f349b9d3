/*
 * Rate-limit arithmetic, pure: GCRA for requests and tokens per period, and calendar-month
 * helpers for the monthly quota. No I/O, no clock, no allocation: the caller passes "now".
 * The Lua script in gw_ratelimit.c performs the same operations in the same order on the same
 * IEEE doubles, so Redis and the in-process limiter decide alike.
 *
 * GCRA (generic cell rate algorithm, a leaky bucket kept as one number): a limit of L per period
 * P has an emission interval T = P / L and a "theoretical arrival time" tat. A request of cost c
 * is admitted when max(tat, now) + c*T - now <= P, i.e. when the debt it would leave, in cost
 * units, is at most L; admitting moves tat there. A full bucket admits a burst of L and refills
 * at L per P continuously; a refused request changes nothing.
 * Representation: tat is kept as (debt, ts), tat = ts + debt*T, with debt in cost units and ts in
 * microseconds since GW_GCRA_EPOCH_S. An absolute tat as a double would lose ~0.004 us per
 * addition at today's magnitudes, which accumulates over a burst of a large limit into a wrong
 * decision; debt stays exact for integer costs and the drain (now - ts) / T is one correctly
 * rounded division of an exact integer difference.
 *
 * Thread-safety: every function is pure and reentrant.
 */
#ifndef GW_GCRA_H
#define GW_GCRA_H

#include <stdint.h>

#define GW_GCRA_EPOCH_S 1735689600LL /* 2025-01-01T00:00:00Z */
#define GW_GCRA_MINUTE_US 60000000.0
/* Slack, in cost units, absorbing rounding in (P / L) * L versus P. */
#define GW_GCRA_EPS 1e-6

/* A stored GCRA state; {0, 0} (or any debt <= 0) is a full bucket. */
struct gw_gcra_state {
	double debt; /* cost units owed at ts */
	double ts;   /* us since GW_GCRA_EPOCH_S */
};

struct gw_gcra_result {
	int allowed;                /* 1: admitted, state is the new state to store */
	int too_large;              /* cost > limit: can never be admitted (allowed is 0) */
	struct gw_gcra_state state; /* allowed: the new state; refused: the drained old one */
	int64_t remaining;          /* cost units left after the decision (>= 0) */
	int64_t reset_us;           /* until the bucket is full again (ceil) */
	int64_t retry_us;           /* refused: until this cost would be admitted (ceil); else 0 */
};

/*
 * Decide one GCRA admission against state s at now_us. limit > 0, period_us > 0, cost >= 0.
 * Fills *out; never fails.
 */
void gw_gcra_check(struct gw_gcra_state s, double now_us, int64_t limit, double period_us,
                   int64_t cost, struct gw_gcra_result *out);

/*
 * Settle a reservation: move the state by delta cost units (negative refunds, positive charges
 * even past the limit, so the next admissions wait). The debt never goes below 0 (a full bucket
 * stays full).
 */
struct gw_gcra_state gw_gcra_adjust(struct gw_gcra_state s, double now_us, int64_t limit,
                                    double period_us, int64_t delta);

/* Microseconds until state s is fully refilled (ceil, >= 0). */
int64_t gw_gcra_reset_us(struct gw_gcra_state s, double now_us, int64_t limit, double period_us);

/* Wall clock seconds (unix) -> microseconds since GW_GCRA_EPOCH_S. */
double gw_gcra_time_us(int64_t unix_s, int64_t usec);

/* The UTC calendar month containing unix second t, as yyyymm (e.g. 202611). */
int32_t gw_month_of(int64_t unix_s);

/* Unix second at which the month containing t ends (the first second of the next month). */
int64_t gw_month_end(int64_t unix_s);

/*
 * Monthly quota: used tokens so far, cost to reserve, quota > 0. Returns 1 when admitted
 * (*remaining = quota - used - cost), 0 when refused (*remaining = max(0, quota - used)), -1 when
 * cost > quota (too large: never admissible).
 */
int gw_quota_check(int64_t used, int64_t cost, int64_t quota, int64_t *remaining);

#endif
