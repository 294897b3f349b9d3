/*
 * Rate-limit arithmetic (see gw_gcra.h). Keep every operation here in step with the Lua script
 * in gw_ratelimit.c: the two must agree on each decision, to the last rounding.
 */
#include "gw_gcra.h"

#include <math.h>

static int64_t ceil_us(double x)
{
	if (x <= 0)
		return 0;
	return (int64_t)ceil(x);
}

/* The debt left at now: what was owed at ts, minus what drained since. */
static double drained(struct gw_gcra_state s, double now_us, double T)
{
	double d = s.debt;
	if (now_us > s.ts)
		d -= (now_us - s.ts) / T;
	return d > 0 ? d : 0;
}

void gw_gcra_check(struct gw_gcra_state s, double now_us, int64_t limit, double period_us,
                   int64_t cost, struct gw_gcra_result *out)
{
	double L = (double)limit;
	double T = period_us / L;
	double d0 = drained(s, now_us, T);
	double used = d0 + (double)cost; /* debt in cost units, this request included */
	double ts = now_us > s.ts ? now_us : s.ts;

	out->too_large = 0;
	out->retry_us = 0;
	if (cost <= limit && used <= L + GW_GCRA_EPS) {
		out->allowed = 1;
		out->state.debt = used;
		out->state.ts = ts;
		out->remaining = (int64_t)floor(L - used + GW_GCRA_EPS);
		out->reset_us = ceil_us(used * T);
		return;
	}
	out->allowed = 0;
	if (cost > limit)
		out->too_large = 1;
	else
		out->retry_us = ceil_us((used - L) * T);
	out->state.debt = d0;
	out->state.ts = ts;
	out->remaining = (int64_t)floor(L - d0 + GW_GCRA_EPS);
	if (out->remaining < 0)
		out->remaining = 0;
	out->reset_us = ceil_us(d0 * T);
}

struct gw_gcra_state gw_gcra_adjust(struct gw_gcra_state s, double now_us, int64_t limit,
                                    double period_us, int64_t delta)
{
	double T = period_us / (double)limit;
	struct gw_gcra_state n;
	n.debt = drained(s, now_us, T) + (double)delta;
	if (n.debt < 0)
		n.debt = 0;
	n.ts = now_us > s.ts ? now_us : s.ts;
	return n;
}

int64_t gw_gcra_reset_us(struct gw_gcra_state s, double now_us, int64_t limit, double period_us)
{
	double T = period_us / (double)limit;
	return ceil_us(drained(s, now_us, T) * T);
}

double gw_gcra_time_us(int64_t unix_s, int64_t usec)
{
	return (double)(unix_s - GW_GCRA_EPOCH_S) * 1e6 + (double)usec;
}

/* Howard Hinnant's civil_from_days / days_from_civil: exact for the proleptic Gregorian calendar,
 * no time zone database, no locale. */
static void civil_from_days(int64_t z, int64_t *y, int *m)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int64_t days_from_civil(int64_t y, int m)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int32_t gw_month_of(int64_t unix_s)
{
	int64_t y;
	int m;
	civil_from_days(floor_div(unix_s, 86400), &y, &m);
	return (int32_t)(y * 100 + m);
}

int64_t gw_month_end(int64_t unix_s)
{
	int64_t y;
	int m;
	civil_from_days(floor_div(unix_s, 86400), &y, &m);
	if (++m > 12) {
		m = 1;
		y++;
	}
	return days_from_civil(y, m) * 86400;
}

int gw_quota_check(int64_t used, int64_t cost, int64_t quota, int64_t *remaining)
{
	if (cost > quota) {
		*remaining = used < quota ? quota - used : 0;
		return -1;
	}
	if (used <= quota - cost) {
		*remaining = quota - used - cost;
		return 1;
	}
	*remaining = used < quota ? quota - used : 0;
	return 0;
}
