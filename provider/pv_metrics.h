/*
 * provider: process-wide counters for /metrics (Prometheus text). Atomics only; labels are
 * fixed method names and outcome classes, never ids, keys or free text.
 */
#ifndef PV_METRICS_H
#define PV_METRICS_H

#include <stdatomic.h>

#include <router-core/rc_buf.h>

struct pv_metrics {
	atomic_ulong req_ping, req_session, req_prompt, req_report, req_unknown, req_bad;
	atomic_ulong approvals, refusals, no_capacity;
	atomic_ulong prompts_ok, prompts_backend_error, prompts_failed, prompts_cancelled;
	atomic_ulong chunks, chunk_bytes;
	atomic_long conns_active;
	atomic_ulong conns_total, conns_refused;
	atomic_int draining;
};

extern struct pv_metrics pv_metrics;

/* Append the Prometheus text exposition of every counter to out. RC_OK or RC_ENOMEM. */
int pv_metrics_render(struct rc_buf *out);

#endif
