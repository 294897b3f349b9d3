/*
 * router-core: provider ranking (morpheus-protocol §3.8) and the pool's own health score.
 *
 * The reference score is reproduced operation for operation from proxy-router's default scorer
 * (internal/rating/scorer_default.go, common.go), because a consumer that ranks the same bid list
 * differently from the reference would be a surprise to providers reading the on-chain stats:
 *   - z-indices take int64 differences (wrapping, as Go's int64 arithmetic does) over a float64
 *     standard deviation; a variance from a negative sqSum is taken as 0 (§3.8);
 *   - stakes are big.Int.Int64() truncations: the low 64 bits read as a signed integer, so a
 *     stake above ~9.22 MOR wraps (possibly negative), and 10 x min wraps the same way;
 *   - the price is big.Int.Float64() (correctly rounded) divided by 1e18;
 *   - NaN and infinite scores are dropped.
 * Every addition is a separate statement so a compiler may not contract it into an FMA, which
 * would round differently from Go.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <router-core/rc_common.h>
#include <router-core/rc_rank.h>

const struct rc_rank_weights rc_rank_default_weights = {
        .tps = 0.24, .ttft = 0.08, .duration = 0.24, .success = 0.32, .stake = 0.12};

/* ---- the reference score ------------------------------------------------------------------- */

/* Go's int64(a - b) with wrap-around (signed overflow is undefined in C, not in Go). */
static int64_t wrap_sub(int64_t a, int64_t b)
{
	return (int64_t)((uint64_t)a - (uint64_t)b);
}

/* big.Int.Int64() of a non-negative value: the low 64 bits, as two's complement. */
static int64_t go_int64(const struct rc_u256 *v)
{
	return (int64_t)v->w[0];
}

/* big.Int.Float64(): the nearest double (ties to even). Above 64 bits, the top 64 bits with a
 * sticky bit for everything below round exactly as the full value would (64 > 53 + 2). */
static double u256_to_double(const struct rc_u256 *v)
{
	int top = 3;
	while (top > 0 && v->w[top] == 0)
		top--;
	if (top == 0)
		return (double)v->w[0];
	int lz = __builtin_clzll(v->w[top]);
	int shift = top * 64 - lz; /* bits below the top 64 */
	uint64_t m = v->w[top] << lz;
	if (lz)
		m |= v->w[top - 1] >> (64 - lz);
	/* sticky: any bit below the 64 kept */
	bool sticky = lz ? (v->w[top - 1] << lz) != 0 : false;
	for (int i = top - 2; i >= 0 && !sticky; i--)
		sticky = v->w[i] != 0;
	if (sticky)
		m |= 1;
	return ldexp((double)m, shift);
}

static double sd_of(const struct rc_sd *sd, int64_t n)
{
	if (n <= 1)
		return 0;
	double var = (double)sd->sq_sum / (double)(n - 1);
	if (var < 0)
		var = 0;
	return sqrt(var);
}

static double z_index(int64_t x, const struct rc_sd *sd, int64_t n)
{
	double s = sd_of(sd, n);
	if (s == 0)
		return 0;
	return (double)wrap_sub(x, sd->mean) / s;
}

static double cut01(double v)
{
	if (v > 1)
		return 1;
	if (v < 0)
		return 0;
	return v; /* NaN passes through, as in Go */
}

static double norm_range3(double z)
{
	return cut01((z + 3.0) / (2.0 * 3.0));
}

static double norm_min_max(int64_t val, int64_t lo, int64_t hi)
{
	if (hi == lo)
		return 0;
	if (val < lo)
		return 0;
	if (val > hi)
		return 1;
	return (double)wrap_sub(val, lo) / (double)wrap_sub(hi, lo);
}

double rc_rank_reference_score(const struct rc_rank_weights *w, const struct rc_model_stats *ms,
                               const struct rc_market_offer *o,
                               const struct rc_u256 *provider_min_stake)
{
	if (!w)
		w = &rc_rank_default_weights;
	int64_t n = (int64_t)ms->count;
	const struct rc_provider_model_stats *pm = &o->stats;

	double s_tps = norm_range3(z_index(pm->tps_scaled1000.mean, &ms->tps_scaled1000, n));
	double s_ttft = norm_range3(-z_index(pm->ttft_ms.mean, &ms->ttft_ms, n));
	double s_dur = norm_range3(z_index((int64_t)pm->total_duration, &ms->total_duration, n));
	double ratio =
	        pm->total_count == 0 ? 0 : (double)pm->success_count / (double)pm->total_count;
	double s_succ = ratio * ratio;
	int64_t min = go_int64(provider_min_stake);
	int64_t max = (int64_t)((uint64_t)min * 10u);
	double s_stake = norm_min_max(go_int64(&o->provider.stake), min, max);

	double t_tps = w->tps * s_tps;
	double t_ttft = w->ttft * s_ttft;
	double t_dur = w->duration * s_dur;
	double t_succ = w->success * s_succ;
	double t_stake = w->stake * s_stake;
	double total = t_tps + t_ttft;
	total = total + t_dur;
	total = total + t_succ;
	total = total + t_stake;

	double price = u256_to_double(&o->bid.price_per_second) / 1e18;
	return total / price;
}

/* ---- health ---------------------------------------------------------------------------------- */

void rc_health_init(struct rc_health *h, int64_t bench_ms)
{
	memset(h, 0, sizeof *h);
	pthread_mutex_init(&h->mu, NULL);
	h->bench_ms = bench_ms > 0 ? bench_ms : 30000;
}

void rc_health_destroy(struct rc_health *h)
{
	if (h)
		pthread_mutex_destroy(&h->mu);
}

static struct rc_health_entry *find(struct rc_health *h, const uint8_t p[20])
{
	for (size_t i = 0; i < h->n; i++)
		if (memcmp(h->e[i].provider, p, 20) == 0)
			return &h->e[i];
	return NULL;
}

/* The entry for p, created (evicting the least recently seen one when full). */
static struct rc_health_entry *get(struct rc_health *h, const uint8_t p[20])
{
	struct rc_health_entry *e = find(h, p);
	if (e)
		return e;
	if (h->n < RC_HEALTH_MAX) {
		e = &h->e[h->n++];
	} else {
		e = &h->e[0];
		for (size_t i = 1; i < h->n; i++)
			if (h->e[i].last_seen_ms < e->last_seen_ms)
				e = &h->e[i];
	}
	memset(e, 0, sizeof *e);
	memcpy(e->provider, p, 20);
	return e;
}

static void decay(struct rc_health_entry *e)
{
	if ((uint64_t)e->successes + e->failures >= 32) {
		e->successes = (e->successes + 1) / 2;
		e->failures = (e->failures + 1) / 2;
	}
}

static double ewma(double old, double v)
{
	return old == 0 ? v : 0.7 * old + 0.3 * v;
}

void rc_health_success(struct rc_health *h, const uint8_t provider[20], double ttft_ms, double tps,
                       int64_t now_ms)
{
	pthread_mutex_lock(&h->mu);
	struct rc_health_entry *e = get(h, provider);
	decay(e);
	e->successes++;
	e->consecutive_failures = 0;
	e->failing_since_ms = 0;
	if (!e->abandoned)
		e->benched_until_ms = 0;
	if (ttft_ms >= 0)
		e->ttft_ms_ewma = ewma(e->ttft_ms_ewma, ttft_ms > 0 ? ttft_ms : 0.001);
	if (tps > 0)
		e->tps_ewma = ewma(e->tps_ewma, tps);
	e->last_seen_ms = now_ms;
	pthread_mutex_unlock(&h->mu);
}

void rc_health_failure(struct rc_health *h, const uint8_t provider[20], int64_t now_ms)
{
	pthread_mutex_lock(&h->mu);
	struct rc_health_entry *e = get(h, provider);
	decay(e);
	e->failures++;
	if (e->consecutive_failures < UINT32_MAX)
		e->consecutive_failures++;
	if (!e->failing_since_ms)
		e->failing_since_ms = now_ms;
	unsigned k = e->consecutive_failures - 1;
	if (k > 4)
		k = 4; /* at most 16 x bench_ms */
	int64_t until = now_ms + (h->bench_ms << k);
	if (until > e->benched_until_ms)
		e->benched_until_ms = until;
	e->last_seen_ms = now_ms;
	pthread_mutex_unlock(&h->mu);
}

void rc_health_abandon(struct rc_health *h, const uint8_t provider[20], int64_t now_ms)
{
	pthread_mutex_lock(&h->mu);
	struct rc_health_entry *e = get(h, provider);
	e->failures++;
	e->abandoned = true;
	e->benched_until_ms = INT64_MAX;
	if (!e->failing_since_ms)
		e->failing_since_ms = now_ms;
	e->last_seen_ms = now_ms;
	pthread_mutex_unlock(&h->mu);
}

bool rc_health_gone(struct rc_health *h, const uint8_t provider[20], int64_t gone_after_ms,
                    int64_t now_ms)
{
	pthread_mutex_lock(&h->mu);
	struct rc_health_entry *e = find(h, provider);
	bool gone = e && (e->abandoned ||
	                  (e->failing_since_ms && now_ms - e->failing_since_ms >= gone_after_ms));
	pthread_mutex_unlock(&h->mu);
	return gone;
}

bool rc_health_get(struct rc_health *h, const uint8_t provider[20], struct rc_health_entry *out)
{
	pthread_mutex_lock(&h->mu);
	struct rc_health_entry *e = find(h, provider);
	if (e)
		*out = *e;
	pthread_mutex_unlock(&h->mu);
	return e != NULL;
}

double rc_health_factor(const struct rc_health_entry *e)
{
	if (!e)
		return 1;
	double rel = ((double)e->successes + 1) / ((double)e->successes + e->failures + 1);
	if (rel < 0.05)
		rel = 0.05;
	double f_ttft = 1;
	if (e->ttft_ms_ewma > 0) {
		f_ttft = 2000.0 / e->ttft_ms_ewma;
		f_ttft = f_ttft > 1 ? 1 : f_ttft < 0.25 ? 0.25 : f_ttft;
	}
	double f_tps = 1;
	if (e->tps_ewma > 0) {
		f_tps = e->tps_ewma / 5.0;
		f_tps = f_tps > 1 ? 1 : f_tps < 0.5 ? 0.5 : f_tps;
	}
	return rel * f_ttft * f_tps;
}

/* ---- ranking ----------------------------------------------------------------------------------
 */

static bool in_list(const uint8_t (*list)[20], size_t n, const uint8_t a[20])
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(list[i], a, 20) == 0)
			return true;
	return false;
}

static bool weights_zero(const struct rc_rank_weights *w)
{
	return w->tps == 0 && w->ttft == 0 && w->duration == 0 && w->success == 0 && w->stake == 0;
}

/* qsort context: the offers, for the bid-id tie break (qsort has no user pointer). */
static _Thread_local const struct rc_market_discovery *sort_d;

static int cmp_entry(const void *pa, const void *pb)
{
	const struct rc_rank_entry *a = pa, *b = pb;
	bool ka = a->drop == RC_RANK_KEPT, kb = b->drop == RC_RANK_KEPT;
	if (ka != kb)
		return ka ? -1 : 1;
	if (!ka) /* dropped: keep the offer order */
		return a->offer < b->offer ? -1 : a->offer > b->offer;
	if (a->benched != b->benched)
		return a->benched ? 1 : -1;
	if (a->score != b->score)
		return a->score > b->score ? -1 : 1;
	int c = memcmp(sort_d->offers[a->offer].bid.id, sort_d->offers[b->offer].bid.id, 32);
	if (c)
		return c;
	return a->offer < b->offer ? -1 : a->offer > b->offer;
}

int rc_rank(const struct rc_market_discovery *d, const struct rc_rank_opts *o, struct rc_health *h,
            int64_t now_ms, struct rc_rank_entry **out, size_t *nkept)
{
	*out = NULL;
	*nkept = 0;
	static const struct rc_rank_opts none;
	if (!o)
		o = &none;
	const struct rc_rank_weights *w =
	        weights_zero(&o->weights) ? &rc_rank_default_weights : &o->weights;
	struct rc_rank_entry *r = calloc(d->noffers ? d->noffers : 1, sizeof *r);
	if (!r)
		return RC_ENOMEM;
	size_t kept = 0;
	for (size_t i = 0; i < d->noffers; i++) {
		const struct rc_market_offer *of = &d->offers[i];
		struct rc_rank_entry *e = &r[i];
		e->offer = i;
		e->reference =
		        rc_rank_reference_score(w, &d->model_stats, of, &d->provider_min_stake);
		e->score = e->reference;
		const uint8_t *p = of->bid.provider;
		struct rc_health_entry he;
		bool seen = h && rc_health_get(h, p, &he);
		if (of->bid.created_at == 0 || of->bid.deleted_at != 0 || of->provider.is_deleted)
			e->drop = RC_RANK_DROP_INACTIVE;
		else if (o->self && memcmp(o->self, p, 20) == 0)
			e->drop = RC_RANK_DROP_SELF;
		else if (in_list(o->deny, o->ndeny, p))
			e->drop = RC_RANK_DROP_DENY;
		else if (o->nallow && !in_list(o->allow, o->nallow, p))
			e->drop = RC_RANK_DROP_ALLOW;
		else if (!rc_u256_is_zero(&o->max_price_per_second) &&
		         rc_u256_cmp(&of->bid.price_per_second, &o->max_price_per_second) > 0)
			e->drop = RC_RANK_DROP_PRICE;
		else if (isnan(e->reference) || isinf(e->reference))
			e->drop = RC_RANK_DROP_SCORE;
		else if (seen && he.abandoned)
			e->drop = RC_RANK_DROP_ABANDONED;
		if (e->drop != RC_RANK_KEPT)
			continue;
		if (seen) {
			e->score = e->reference * rc_health_factor(&he);
			e->benched = he.benched_until_ms > now_ms;
		}
		kept++;
	}
	sort_d = d;
	qsort(r, d->noffers, sizeof *r, cmp_entry);
	sort_d = NULL;
	*out = r;
	*nkept = kept;
	return RC_OK;
}
