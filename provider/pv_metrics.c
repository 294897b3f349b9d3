/* provider: counters and their Prometheus rendering. */
#include <stdio.h>
#include <string.h>

#include "pv_metrics.h"

struct pv_metrics pv_metrics;

static int line(struct rc_buf *out, const char *name, const char *labels, unsigned long v)
{
	char b[256];
	int n = snprintf(b, sizeof b, "%s%s %lu\n", name, labels, v);
	return rc_buf_append(out, b, (size_t)n);
}

int pv_metrics_render(struct rc_buf *out)
{
	struct pv_metrics *m = &pv_metrics;
	int rc = 0;
	rc |= rc_buf_append(out, "# TYPE morgate_provider_requests_total counter\n", 47);
	rc |= line(out, "morgate_provider_requests_total", "{method=\"network.ping\"}",
	           atomic_load(&m->req_ping));
	rc |= line(out, "morgate_provider_requests_total", "{method=\"session.request\"}",
	           atomic_load(&m->req_session));
	rc |= line(out, "morgate_provider_requests_total", "{method=\"session.prompt\"}",
	           atomic_load(&m->req_prompt));
	rc |= line(out, "morgate_provider_requests_total", "{method=\"session.report\"}",
	           atomic_load(&m->req_report));
	rc |= line(out, "morgate_provider_requests_total", "{method=\"unknown\"}",
	           atomic_load(&m->req_unknown));
	rc |= line(out, "morgate_provider_requests_total", "{method=\"malformed\"}",
	           atomic_load(&m->req_bad));
	rc |= rc_buf_append(out, "# TYPE morgate_provider_sessions_total counter\n", 47);
	rc |= line(out, "morgate_provider_sessions_total", "{outcome=\"approved\"}",
	           atomic_load(&m->approvals));
	rc |= line(out, "morgate_provider_sessions_total", "{outcome=\"refused\"}",
	           atomic_load(&m->refusals));
	rc |= line(out, "morgate_provider_sessions_total", "{outcome=\"no_capacity\"}",
	           atomic_load(&m->no_capacity));
	rc |= rc_buf_append(out, "# TYPE morgate_provider_prompts_total counter\n", 46);
	rc |= line(out, "morgate_provider_prompts_total", "{outcome=\"ok\"}",
	           atomic_load(&m->prompts_ok));
	rc |= line(out, "morgate_provider_prompts_total", "{outcome=\"backend_error\"}",
	           atomic_load(&m->prompts_backend_error));
	rc |= line(out, "morgate_provider_prompts_total", "{outcome=\"failed\"}",
	           atomic_load(&m->prompts_failed));
	rc |= line(out, "morgate_provider_prompts_total", "{outcome=\"cancelled\"}",
	           atomic_load(&m->prompts_cancelled));
	rc |= rc_buf_append(out, "# TYPE morgate_provider_chunks_total counter\n", 45);
	rc |= line(out, "morgate_provider_chunks_total", "", atomic_load(&m->chunks));
	rc |= rc_buf_append(out, "# TYPE morgate_provider_chunk_bytes_total counter\n", 50);
	rc |= line(out, "morgate_provider_chunk_bytes_total", "", atomic_load(&m->chunk_bytes));
	rc |= rc_buf_append(out, "# TYPE morgate_provider_connections_active gauge\n", 49);
	long a = atomic_load(&m->conns_active);
	rc |= line(out, "morgate_provider_connections_active", "", a < 0 ? 0 : (unsigned long)a);
	rc |= rc_buf_append(out, "# TYPE morgate_provider_connections_total counter\n", 50);
	rc |= line(out, "morgate_provider_connections_total", "{outcome=\"accepted\"}",
	           atomic_load(&m->conns_total));
	rc |= line(out, "morgate_provider_connections_total", "{outcome=\"refused\"}",
	           atomic_load(&m->conns_refused));
	rc |= rc_buf_append(out, "# TYPE morgate_provider_draining gauge\n", 39);
	rc |= line(out, "morgate_provider_draining", "", (unsigned long)atomic_load(&m->draining));
	return rc ? RC_ENOMEM : RC_OK;
}
