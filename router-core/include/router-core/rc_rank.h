/*
 * router-core: provider ranking for one model (morpheus-protocol §3.8) plus our own filters and
 * health score.
 *
 * The reference score is computed exactly as the reference consumer does (float64, int64
 * truncated stakes, default weights {tps .24, ttft .08, duration .24, success .32, stake .12}),
 * so a bid list ranks the same way here as in proxy-router. On top of it:
 *
 *   - filters: a price ceiling (wei per second; zero = none), an allow-list (non-empty: only
 *     those providers) and a deny-list, the consumer's own address, and bids whose score is NaN
 *     or infinite (as the reference);
 *   - health: what this process saw of each provider (struct rc_health): recent failures bench
 *     a provider for a while (it is tried only when nobody else is left), and the observed time
 *     to first token and throughput scale its score, so a provider that is slow for us is
 *     matched less even when its on-chain stats look good.
 *
 * Pure and thread-safe except struct rc_health, which has its own mutex.
 */
#ifndef RC_RANK_H
#define RC_RANK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_market.h>

struct rc_rank_weights {
	double tps, ttft, duration, success, stake;
};

/* The reference defaults (§3.8). */
extern const struct rc_rank_weights rc_rank_default_weights;

/* The reference score of one offer (may be NaN/Inf, which callers drop). */
double rc_rank_reference_score(const struct rc_rank_weights *w, const struct rc_model_stats *ms,
                               const struct rc_market_offer *o,
                               const struct rc_u256 *provider_min_stake);

/* ---- health: what this process observed of each provider ----------------------------------- */

#define RC_HEALTH_MAX 256 /* providers tracked; the least recently seen is forgotten */

struct rc_health_entry {
	uint8_t provider[20];
	uint32_t successes, failures; /* decayed counts (recent weight more) */
	uint32_t consecutive_failures;
	int64_t benched_until_ms; /* 0: not benched */
	double ttft_ms_ewma;      /* 0: unknown */
	double tps_ewma;          /* chunks per second; 0: unknown */
	int64_t last_seen_ms;
	int64_t failing_since_ms; /* first failure of the current run of failures; 0: none */
	bool abandoned;           /* rc_health_abandon(): never ranked again (until forgotten) */
};

struct rc_health {
	pthread_mutex_t mu;
	int64_t bench_ms; /* first bench length; doubles per consecutive failure, max 16x */
	size_t n;
	struct rc_health_entry e[RC_HEALTH_MAX];
};

void rc_health_init(struct rc_health *h, int64_t bench_ms);
void rc_health_destroy(struct rc_health *h);
/* A request (or handshake) to provider succeeded; ttft_ms/tps < 0 when not measured. */
void rc_health_success(struct rc_health *h, const uint8_t provider[20], double ttft_ms, double tps,
                       int64_t now_ms);
/* A failure attributable to the provider (refused, timed out, bad signature, closed early). */
void rc_health_failure(struct rc_health *h, const uint8_t provider[20], int64_t now_ms);
/* The provider lied (bad signature, bad ciphertext, a mismatched answer): benched for good and
 * flagged abandoned; a later success does not clear it. */
void rc_health_abandon(struct rc_health *h, const uint8_t provider[20], int64_t now_ms);
/* True when the provider has failed without a success for at least gone_after_ms, or was
 * abandoned: the pool then closes its sessions early (§3.7). */
bool rc_health_gone(struct rc_health *h, const uint8_t provider[20], int64_t gone_after_ms,
                    int64_t now_ms);
/* Copy of the entry; false when the provider was never seen. */
bool rc_health_get(struct rc_health *h, const uint8_t provider[20], struct rc_health_entry *out);
/*
 * Factor in (0, 1] the reference score is multiplied by (1 for an unknown provider): the product
 * of reliability (successes + 1) / (successes + failures + 1) (floor 0.05), time to first token
 * min(1, 2000 / ttft_ms) (floor 0.25; 1 when unknown) and throughput min(1, tps / 5) (floor 0.5;
 * 1 when unknown). The counts are halved once their sum reaches 32, so recent events weigh more.
 */
double rc_health_factor(const struct rc_health_entry *e);

/* ---- ranking ----------------------------------------------------------------------------------
 */

struct rc_rank_opts {
	struct rc_rank_weights weights;      /* all zero: the defaults */
	struct rc_u256 max_price_per_second; /* zero: no ceiling */
	const uint8_t (*allow)[20];
	size_t nallow;
	const uint8_t (*deny)[20];
	size_t ndeny;
	const uint8_t *self; /* 20 bytes, or NULL: the consumer's own address is skipped */
};

enum rc_rank_drop {
	RC_RANK_KEPT = 0,
	RC_RANK_DROP_PRICE,    /* above the price ceiling */
	RC_RANK_DROP_ALLOW,    /* not in the allow-list */
	RC_RANK_DROP_DENY,     /* in the deny-list */
	RC_RANK_DROP_SELF,     /* our own address */
	RC_RANK_DROP_SCORE,    /* NaN or infinite score */
	RC_RANK_DROP_INACTIVE, /* bid deleted or provider deleted */
	RC_RANK_DROP_ABANDONED /* health says the provider lied to us (rc_health_abandon) */
};

struct rc_rank_entry {
	size_t offer;     /* index into discovery->offers */
	double reference; /* §3.8 score */
	double score;     /* reference x health factor */
	bool benched;     /* health says benched now: sorted after every non-benched entry */
	enum rc_rank_drop drop;
};

/*
 * Rank d's offers. *out (owned, free()) gets one entry per offer, kept ones first in the order
 * to try (not benched before benched, then score descending, ties by bid id), dropped ones after
 * them, in offer order; *nkept how many are kept. A dropped entry names the first rule it broke,
 * checked in this order: inactive, self, deny, allow, price, score, abandoned. o may be NULL (no
 * filters, default weights); health may be NULL; now_ms is on the clock the health record was
 * fed with. RC_OK or RC_ENOMEM.
 */
int rc_rank(const struct rc_market_discovery *d, const struct rc_rank_opts *o, struct rc_health *h,
            int64_t now_ms, struct rc_rank_entry **out, size_t *nkept);

#endif
