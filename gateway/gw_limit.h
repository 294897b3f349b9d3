/*
 * gateway admission: the front end's view of rate limiting. A thin adapter over the limiter
 * module (gw_ratelimit.h), so the server asks one question per request ("may this key run this
 * model with this many tokens reserved?") and settles the reservation at the end.
 *
 * The ticket carries what the response headers need (x-ratelimit-*, Retry-After) and the
 * limiter's reservation until gw_limit_settle(). Thread-safe.
 */
#ifndef GW_LIMIT_H
#define GW_LIMIT_H

#include <stdint.h>

#include <keystore/ks.h>

#include "gw_config.h"

enum { GW_LIMIT_OK = 0, GW_LIMIT_DENIED = 1 };

struct gw_limit;

struct gw_limit_ticket {
	int64_t limit_requests, remaining_requests, reset_requests_ms; /* limit 0: no header */
	int64_t limit_tokens, remaining_tokens, reset_tokens_ms;
	int64_t retry_after_ms; /* DENIED: when to retry */
	int degraded;           /* decided without Redis (in-process fallback) */
	const char *what;       /* DENIED: OpenAI error type, "requests" or "tokens" */
	char why[128];          /* DENIED: which limit, for the message */
	int64_t reserved;       /* tokens reserved at admission */
	int admitted;
	uint64_t opaque[64];    /* the limiter's reservation */
};

struct gw_limit_health {
	int usable;          /* requests can be admitted (Redis or the fallback) */
	const char *redis;   /* "none", "ok", "degraded" */
	long redis_errors;   /* -1 when the limiter does not count them */
};

int gw_limit_new(const struct gw_config *cfg, struct gw_limit **out, char *err, size_t errlen);
void gw_limit_reload(struct gw_limit *l, const struct gw_config *cfg);
void gw_limit_free(struct gw_limit *l);

/* Admit or deny; fills *t in both cases. */
int gw_limit_admit(struct gw_limit *l, const struct ks_key_info *ki, const char *model,
		   int64_t reserve_tokens, struct gw_limit_ticket *t);
/* The request ended having used actual_tokens: settle the reservation, release the slot. */
void gw_limit_settle(struct gw_limit *l, struct gw_limit_ticket *t, int64_t actual_tokens);
void gw_limit_health(struct gw_limit *l, struct gw_limit_health *h);

#endif
