/*
 * Rate-limit arithmetic, pure: GCRA for requests and tokens per period, and calendar-month
 * helpers for the monthly quota. No I/O, no clock, no allocation: the caller passes "now".
 * The Lua script in gw_ratelimit.c performs the same operations in the same order on the same
 * IEEE doubles, so Redis and the in-process limiter decide alike.
 *
 * GCRA (generic cell rate algorithm, a leaky bucket kept as one number): a limit of L per period
 * P has an emission interval T = P / L. The state is the "theoretical arrival time" tat. A
 * request of cost c is admitted when max(tat, now) + c*T - now <= P, i.e. when the debt it would
 * leave, measured in cost units, is at most L; admitting sets tat to that value. So a full bucket
 * admits a burst of L, and it refills at L per P continuously. A refused request changes nothing.
 * Times are microseconds since GW_GCRA_EPOCH_S, as doubles: small enough (about 1e14 after three
 * years) that their resolution stays below 0.02 us.
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

struct gw_gcra_result {
	int allowed;       /* 1: admitted, tat is the new state to store */
	int too_large;     /* cost > limit: can never be admitted (allowed is 0) */
	double tat;        /* allowed: the new tat; refused: the unchanged max(tat, now) */
	int64_t remaining; /* cost units left after the decision (>= 0) */
	int64_t reset_us;  /* until the bucket is full again (ceil) */
	int64_t retry_us;  /* refused: until this cost would be admitted (ceil); else 0 */
};

/*
 * Decide one GCRA admission. tat: the stored state, or any value <= now when none is stored.
 * limit > 0, period_us > 0, cost >= 0. Fills *out; never fails.
 */
void gw_gcra_check(double tat, double now_us, int64_t limit, double period_us, int64_t cost,
		   struct gw_gcra_result *out);

/*
 * Settle a reservation: move the state by delta cost units (negative refunds, positive charges
 * even past the limit). Returns the new tat, never earlier than now_us (a full bucket stays full).
 */
double gw_gcra_adjust(double tat, double now_us, int64_t limit, double period_us, int64_t delta);

/* Microseconds until a state is fully refilled (ceil, >= 0). */
int64_t gw_gcra_reset_us(double tat, double now_us);

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
