/*
 * gateway metrics: lock-free counters and histograms rendered as Prometheus text.
 *
 * Labels are bounded: routes and status classes are fixed sets; model labels come only from the
 * config (at most GW_METRICS_MODELS names, interned on first use; anything else is "other").
 * No key, tenant secret or free-form client string ever becomes a label.
 * Every function is thread-safe.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdint.h>

#include <router-core/rc_buf.h>

struct gw_market_status;

#define GW_METRICS_MODELS 64

enum gw_keycheck {
	GW_KC_OK,
	GW_KC_MISSING,
	GW_KC_MALFORMED,
	GW_KC_UNKNOWN,
	GW_KC_REVOKED,
	GW_KC_EXPIRED,
	GW_KC_TENANT_DISABLED,
	GW_KC_ERROR,
	GW_KC_COUNT
};

enum gw_rl_metric { GW_RL_M_ALLOWED, GW_RL_M_LIMITED, GW_RL_M_QUOTA, GW_RL_M_DEGRADED, GW_RL_M_UNAVAILABLE, GW_RL_M_COUNT };

/* Intern a configured model name; returns its label index (GW_METRICS_MODELS - 1 = "other"). */
int gw_metrics_model(const char *name);

/* One finished request. model: index from gw_metrics_model, or -1 (no model). Times in ns;
 * backend_ns / ttfb_ns 0 when there was no backend call. */
void gw_metrics_request(int route, int status, int model, int64_t total_ns, int64_t backend_ns,
			int64_t ttfb_ns);
void gw_metrics_keycheck(int outcome);
void gw_metrics_ratelimit(int outcome);
void gw_metrics_redis_error(void);
void gw_metrics_conn_rejected(void);

/* Gauges supplied at render time. */
struct gw_metrics_gauges {
	long open_streams, in_flight, connections, backend_keepalives, client_cancels;
	long backend_queued; /* direct transfers waiting for a backend connection slot */
	long redis_errors; /* from the limiter, when it counts them itself; -1: use ours */
	long redis_roundtrips;
	int redis_degraded;
	const struct gw_market_status *market; /* NULL: no marketplace */
};

/* Append the Prometheus text exposition to b. */
void gw_metrics_render(struct rc_buf *b, const struct gw_metrics_gauges *g);

#endif
