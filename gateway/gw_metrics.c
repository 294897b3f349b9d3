/*
 * Metrics. Counters are relaxed atomics in fixed arrays indexed by bounded label values, so the
 * hot path is a handful of atomic adds and rendering walks the arrays.
 */
#include "gw_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "gw_backend.h"
#include "gw_market.h"

static const char *const route_names[GW_ROUTE_COUNT] = {
	"chat_completions", "completions", "embeddings", "models", "model",
	"healthz", "readyz", "metrics", "other"};
static const char *const kc_names[GW_KC_COUNT] = {"ok", "missing", "malformed", "unknown",
						 "revoked", "expired", "tenant_disabled", "error"};
static const char *const rl_names[GW_RL_M_COUNT] = {"allowed", "limited", "quota", "allowed_degraded", "unavailable"};

/* latency buckets in seconds */
static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
				 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define NB (sizeof buckets / sizeof buckets[0])

struct hist {
	atomic_ullong b[NB + 1];
	atomic_ullong sum_us, count;
};

static char model_names[GW_METRICS_MODELS][201];
static atomic_int n_models;
static pthread_mutex_t model_mu = PTHREAD_MUTEX_INITIALIZER;

#define NM GW_METRICS_MODELS
static atomic_ullong requests[GW_ROUTE_COUNT][6][NM + 1]; /* status class 0..5; model or none */
static struct hist h_total[GW_ROUTE_COUNT], h_backend[GW_ROUTE_COUNT], h_ttfb[GW_ROUTE_COUNT];
static atomic_ullong keychecks[GW_KC_COUNT], rl[GW_RL_M_COUNT], redis_errors, conn_rejected;

int gw_metrics_model(const char *name)
{
	int n = atomic_load(&n_models);
	for (int i = 0; i < n; i++)
		if (!strcmp(model_names[i], name))
			return i;
	pthread_mutex_lock(&model_mu);
	n = atomic_load(&n_models);
	int idx = NM - 1;
	for (int i = 0; i < n; i++)
		if (!strcmp(model_names[i], name)) {
			idx = i;
			goto out;
		}
	if (n < NM - 1 && strlen(name) <= 200) {
		snprintf(model_names[n], sizeof model_names[n], "%s", name);
		atomic_store(&n_models, n + 1);
		idx = n;
	}
out:
	pthread_mutex_unlock(&model_mu);
	return idx;
}

static void observe(struct hist *h, int64_t ns)
{
	double s = (double)ns / 1e9;
	size_t i = 0;
	while (i < NB && s > buckets[i])
		i++;
	atomic_fetch_add_explicit(&h->b[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)(ns / 1000), memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void gw_metrics_request(int route, int status, int model, int64_t total_ns, int64_t backend_ns,
			int64_t ttfb_ns)
{
	if (route < 0 || route >= GW_ROUTE_COUNT)
		route = GW_ROUTE_OTHER;
	int cls = status / 100;
	if (cls < 1 || cls > 5)
		cls = 0;
	int m = model < 0 || model >= NM ? NM : model;
	atomic_fetch_add_explicit(&requests[route][cls][m], 1, memory_order_relaxed);
	observe(&h_total[route], total_ns);
	if (backend_ns > 0)
		observe(&h_backend[route], backend_ns);
	if (ttfb_ns > 0)
		observe(&h_ttfb[route], ttfb_ns);
}

void gw_metrics_keycheck(int o)
{
	if (o >= 0 && o < GW_KC_COUNT)
		atomic_fetch_add_explicit(&keychecks[o], 1, memory_order_relaxed);
}

void gw_metrics_ratelimit(int o)
{
	if (o >= 0 && o < GW_RL_M_COUNT)
		atomic_fetch_add_explicit(&rl[o], 1, memory_order_relaxed);
}

void gw_metrics_redis_error(void)
{
	atomic_fetch_add_explicit(&redis_errors, 1, memory_order_relaxed);
}

void gw_metrics_conn_rejected(void)
{
	atomic_fetch_add_explicit(&conn_rejected, 1, memory_order_relaxed);
}

static void printfb(struct rc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void printfb(struct rc_buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n > 0)
		rc_buf_append(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void render_hist(struct rc_buf *b, const char *name, const char *help, struct hist *hs)
{
	printfb(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (int r = 0; r < GW_ROUTE_COUNT; r++) {
		struct hist *h = &hs[r];
		unsigned long long count = atomic_load(&h->count);
		if (!count)
			continue;
		unsigned long long cum = 0;
		for (size_t i = 0; i < NB; i++) {
			cum += atomic_load(&h->b[i]);
			printfb(b, "%s_bucket{route=\"%s\",le=\"%g\"} %llu\n", name, route_names[r], buckets[i], cum);
		}
		cum += atomic_load(&h->b[NB]);
		printfb(b, "%s_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", name, route_names[r], cum);
		printfb(b, "%s_sum{route=\"%s\"} %.6f\n", name, route_names[r],
			(double)atomic_load(&h->sum_us) / 1e6);
		printfb(b, "%s_count{route=\"%s\"} %llu\n", name, route_names[r], count);
	}
}

/* The marketplace pool: gauges and counters with bounded labels (session states, the fixed
 * set of request outcomes). */
static void render_market(struct rc_buf *b, const struct gw_market_status *m)
{
	const struct rc_pool_stats *p = &m->pool;
	printfb(b, "# HELP morgate_market_sessions Marketplace sessions known to this process, by state.\n"
		   "# TYPE morgate_market_sessions gauge\n"
		   "morgate_market_sessions{state=\"open\"} %u\nmorgate_market_sessions{state=\"busy\"} %u\n"
		   "morgate_market_sessions{state=\"opening\"} %u\n",
		p->sessions_open, p->sessions_busy, p->sessions_opening);
	static const struct {
		const char *name, *help;
		size_t off;
	} ctr[] = {
		{"morgate_market_sessions_opened_total", "Sessions opened on chain.", offsetof(struct rc_pool_stats, opened)},
		{"morgate_market_session_open_failures_total", "Session openings that failed.", offsetof(struct rc_pool_stats, open_failed)},
		{"morgate_market_sessions_closed_total", "Sessions closed on chain.", offsetof(struct rc_pool_stats, closed)},
		{"morgate_market_disputes_total", "Sessions closed with a user-signed receipt (provider gone).", offsetof(struct rc_pool_stats, disputes)},
		{"morgate_market_sessions_reused_total", "Requests served by a session that was already open.", offsetof(struct rc_pool_stats, reused)},
		{"morgate_market_failovers_total", "Requests moved to another session or provider before the first chunk.", offsetof(struct rc_pool_stats, failovers)},
		{"morgate_market_prompts_total", "Prompts sent to providers.", offsetof(struct rc_pool_stats, prompts)},
		{"morgate_market_prompt_errors_total", "Prompts that failed.", offsetof(struct rc_pool_stats, prompt_errors)},
		{"morgate_market_catalog_refreshes_total", "Successful catalogue refreshes.", offsetof(struct rc_pool_stats, catalog_refreshes)},
		{"morgate_market_catalog_errors_total", "Failed catalogue refreshes.", offsetof(struct rc_pool_stats, catalog_errors)},
	};
	for (size_t i = 0; i < sizeof ctr / sizeof ctr[0]; i++)
		printfb(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", ctr[i].name, ctr[i].help, ctr[i].name,
			ctr[i].name, (unsigned long long)*(const uint64_t *)((const char *)p + ctr[i].off));
	printfb(b, "# HELP morgate_market_requests_total Marketplace requests by outcome.\n"
		   "# TYPE morgate_market_requests_total counter\n");
	for (int r = 0; r <= RC_POOL_INTERNAL; r++)
		printfb(b, "morgate_market_requests_total{outcome=\"%s\"} %llu\n",
			rc_pool_reason_name((enum rc_pool_reason)r), m->errors[r]);
	printfb(b, "# HELP morgate_market_catalog_age_seconds Time since the last successful catalogue refresh (-1: none yet).\n"
		   "# TYPE morgate_market_catalog_age_seconds gauge\nmorgate_market_catalog_age_seconds %.3f\n",
		m->catalog_age_ms < 0 ? -1.0 : (double)m->catalog_age_ms / 1000.0);
	printfb(b, "# HELP morgate_market_chain_ok 1 when the last chain call succeeded and the node is on the configured chain.\n"
		   "# TYPE morgate_market_chain_ok gauge\nmorgate_market_chain_ok %d\n",
		p->chain_ok && m->chain_id_state >= 0);
	printfb(b, "# HELP morgate_market_coordinated 1 while sessions are coordinated through Redis.\n"
		   "# TYPE morgate_market_coordinated gauge\nmorgate_market_coordinated %d\n",
		m->coordinated && p->coordinated);
	printfb(b, "# HELP morgate_market_queued Marketplace requests waiting for a worker.\n"
		   "# TYPE morgate_market_queued gauge\nmorgate_market_queued %ld\n"
		   "# HELP morgate_market_running Marketplace requests on a worker.\n"
		   "# TYPE morgate_market_running gauge\nmorgate_market_running %ld\n",
		m->queued, m->running);
}

void gw_metrics_render(struct rc_buf *b, const struct gw_metrics_gauges *g)
{
	static const char *const cls_names[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
	printfb(b, "# HELP morgate_requests_total Requests by route, status class and model.\n"
		   "# TYPE morgate_requests_total counter\n");
	int n = atomic_load(&n_models);
	for (int r = 0; r < GW_ROUTE_COUNT; r++)
		for (int c = 0; c < 6; c++)
			for (int m = 0; m <= NM; m++) {
				unsigned long long v = atomic_load(&requests[r][c][m]);
				if (!v)
					continue;
				const char *mn = m == NM ? "" : m < n ? model_names[m] : "other";
				printfb(b, "morgate_requests_total{route=\"%s\",status=\"%s\",model=\"%s\"} %llu\n",
					route_names[r], cls_names[c], mn, v);
			}
	render_hist(b, "morgate_request_duration_seconds", "Total request time.", h_total);
	render_hist(b, "morgate_backend_duration_seconds", "Time spent on the backend request.", h_backend);
	render_hist(b, "morgate_time_to_first_byte_seconds", "Time to the backend's first body byte.", h_ttfb);
	printfb(b, "# HELP morgate_key_checks_total API key verification outcomes.\n"
		   "# TYPE morgate_key_checks_total counter\n");
	for (int i = 0; i < GW_KC_COUNT; i++)
		printfb(b, "morgate_key_checks_total{outcome=\"%s\"} %llu\n", kc_names[i],
			atomic_load(&keychecks[i]));
	printfb(b, "# HELP morgate_ratelimit_decisions_total Rate-limit decisions.\n"
		   "# TYPE morgate_ratelimit_decisions_total counter\n");
	for (int i = 0; i < GW_RL_M_COUNT; i++)
		printfb(b, "morgate_ratelimit_decisions_total{decision=\"%s\"} %llu\n", rl_names[i],
			atomic_load(&rl[i]));
	printfb(b, "# HELP morgate_redis_errors_total Redis errors seen by the rate limiter.\n"
		   "# TYPE morgate_redis_errors_total counter\nmorgate_redis_errors_total %lld\n",
		g->redis_errors >= 0 ? (long long)g->redis_errors : (long long)atomic_load(&redis_errors));
	printfb(b, "# HELP morgate_redis_roundtrips_total Admission scripts sent to Redis.\n"
		   "# TYPE morgate_redis_roundtrips_total counter\nmorgate_redis_roundtrips_total %ld\n"
		   "# HELP morgate_redis_degraded 1 while Redis is configured but not answering.\n"
		   "# TYPE morgate_redis_degraded gauge\nmorgate_redis_degraded %d\n",
		g->redis_roundtrips, g->redis_degraded);
	printfb(b, "# HELP morgate_connections_rejected_total Connections answered 503 over the soft limit.\n"
		   "# TYPE morgate_connections_rejected_total counter\nmorgate_connections_rejected_total %llu\n",
		atomic_load(&conn_rejected));
	printfb(b, "# HELP morgate_open_streams Streaming responses in progress.\n"
		   "# TYPE morgate_open_streams gauge\nmorgate_open_streams %ld\n", g->open_streams);
	printfb(b, "# HELP morgate_backend_in_flight Backend requests in progress.\n"
		   "# TYPE morgate_backend_in_flight gauge\nmorgate_backend_in_flight %ld\n", g->in_flight);
	printfb(b, "# HELP morgate_backend_queued Backend requests waiting for a connection slot "
		   "(backend max_connections).\n"
		   "# TYPE morgate_backend_queued gauge\nmorgate_backend_queued %ld\n", g->backend_queued);
	printfb(b, "# HELP morgate_connections Open client connections.\n"
		   "# TYPE morgate_connections gauge\nmorgate_connections %ld\n", g->connections);
	printfb(b, "# HELP morgate_stream_keepalives_total SSE keep-alive comments sent.\n"
		   "# TYPE morgate_stream_keepalives_total counter\nmorgate_stream_keepalives_total %ld\n",
		g->backend_keepalives);
	printfb(b, "# HELP morgate_client_disconnects_total Backend requests cancelled because the client left.\n"
		   "# TYPE morgate_client_disconnects_total counter\nmorgate_client_disconnects_total %ld\n",
		g->client_cancels);
	if (g->market)
		render_market(b, g->market);
}
