/*
 * Admission adapter. Until the limiter module lands this admits everything and sends no
 * rate-limit headers; the server code around it does not change when it does.
 */
#include "gw_limit.h"

#include <stdlib.h>
#include <string.h>

struct gw_limit {
	int unused;
};

int gw_limit_new(const struct gw_config *cfg, struct gw_limit **out, char *err, size_t errlen)
{
	(void)cfg;
	(void)err;
	(void)errlen;
	*out = calloc(1, sizeof **out);
	return *out ? 0 : -1;
}

void gw_limit_reload(struct gw_limit *l, const struct gw_config *cfg)
{
	(void)l;
	(void)cfg;
}

void gw_limit_free(struct gw_limit *l)
{
	free(l);
}

int gw_limit_admit(struct gw_limit *l, const struct ks_key_info *ki, const char *model,
		   int64_t reserve_tokens, struct gw_limit_ticket *t)
{
	(void)l;
	(void)ki;
	(void)model;
	memset(t, 0, sizeof *t);
	t->reserved = reserve_tokens;
	t->admitted = 1;
	return GW_LIMIT_OK;
}

void gw_limit_settle(struct gw_limit *l, struct gw_limit_ticket *t, int64_t actual_tokens)
{
	(void)l;
	(void)actual_tokens;
	t->admitted = 0;
}

void gw_limit_health(struct gw_limit *l, struct gw_limit_health *h)
{
	(void)l;
	h->usable = 1;
	h->redis = "none";
	h->redis_errors = -1;
}
