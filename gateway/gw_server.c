/*
 * The HTTP front end. `threads` workers, each one thread running a libmicrohttpd daemon in
 * external epoll mode (its own SO_REUSEPORT socket on the listen address) together with a
 * backend engine (gw_backend.h), so a request stays on the thread that accepted it. One
 * request's life (the MHD access handler is called repeatedly):
 *
 *   1st call   route, soft connection limit, auth (key checked before any body byte is read),
 *              Content-Length against the body limit.
 *   body calls append up to limits.max_body_bytes; beyond, discard and answer 413 at the end.
 *   last call  parse the few fields we need, model lookup (404), allow-list (403), then the rate
 *              limiter: decided at once (local), or the connection suspends while Redis decides;
 *              an admission then starts the call from the limiter's reply on the worker
 *              (admitted_on_worker) with the connection still suspended, a refusal resumes it
 *              for the 429. Admitted at once: hand the call to the engine and suspend.
 *   resumed    non-streaming: the whole upstream answer is there, queue it. Streaming: queue a
 *              chunked response whose reader takes bytes from the call as they arrive; when
 *              there are none it suspends and the engine writes the rest of the stream itself
 *              (direct streaming), resuming the connection once at the end for MHD to close
 *              the chunked body.
 *   completed  (MHD_OPTION_NOTIFY_COMPLETED) cancel the backend if it still runs (the client
 *              left), record usage, settle the rate limiter, metrics, the access log line.
 *
 * Every error body comes from respond_error(): OpenAI's {"error":{message,type,param,code}}.
 */
#include "gw_server.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "gw_backend.h"
#include "gw_market.h"
#include "gw_ratelimit.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_parse.h"

struct gw_server {
	/* Worker i runs daemon d[i] (external epoll mode) and engine i on one thread: a request is
	 * parsed, admitted, proxied and answered there. Each daemon has its own listening socket
	 * on the one address (SO_REUSEPORT): the kernel spreads new connections evenly, where one
	 * shared socket let whichever worker woke first take a whole burst of them. */
	struct MHD_Daemon *d[GW_MAX_ENGINES], *admin;
	pthread_mutex_t cfg_mu;
	struct gw_config *cfg;
	struct ks_store *ks;
	struct gw_engine *engines[GW_MAX_ENGINES];
	int n_engines;
	atomic_uint next_engine;
	struct gw_rl *rl;
	struct gw_market *market; /* borrowed; NULL: no marketplace */
	atomic_int connections, in_flight, draining;
	atomic_int admitting; /* connections suspended while the limiter decides */
	long created;
};

/* The calling worker's own engine (the request's connection lives on its daemon); round-robin
 * from any other thread. */
static struct gw_engine *pick_engine(struct gw_server *s)
{
	struct gw_engine *e = gw_engine_current();
	if (e)
		return e;
	return s->engines[atomic_fetch_add_explicit(&s->next_engine, 1, memory_order_relaxed) %
			  (unsigned)s->n_engines];
}

static int engines_in_flight(struct gw_server *s)
{
	int n = 0;
	for (int i = 0; i < s->n_engines; i++)
		n += atomic_load(&gw_engine_stats(s->engines[i])->in_flight);
	return n;
}

static void engines_cancel_all(struct gw_server *s)
{
	for (int i = 0; i < s->n_engines; i++)
		gw_engine_cancel_all(s->engines[i]);
}

enum phase { PH_NEW, PH_BODY, PH_ADMIT, PH_WAIT, PH_DONE };

/* The limiter's decision, as much of it as the answer needs (struct gw_rl_decision is 280 bytes;
 * the headers' states and the ticket are kept in the request beside it). */
struct admit_result {
	int outcome, refused, local;
	int64_t retry_after_s;
};

/* A marketplace model a request asked for: its on-chain name and a model entry naming it. */
struct mkt_model {
	char name[GW_MODEL_MAX + 1];
	struct gw_model_cfg cfg;
};

struct req {
	struct gw_server *s;
	struct gw_config *cfg;
	int route;
	int phase;
	int is_post;
	int http11;  /* HTTP/1.1: libmicrohttpd sends a stream chunked (also with Connection: close) */
	char method[8];
	char path[96];
	char rid[68];
	int64_t t0;
	struct rc_buf body;
	int too_large;
	int authed;
	/* the key's record, only until admission (a stream then holds just the two names below:
	 * the record is 1.2 KB and thousands of streams may be open) */
	struct ks_key_info *ki;
	char key_id[KS_KEY_ID_LEN + 1];
	char tenant[KS_NAME_MAX + 1];
	struct {      /* the parsed body's numbers (the model name is resolved into model below) */
		int stream;
		int64_t max_tokens;
		int include_usage;
		int64_t prompt_estimate;
	} info;
	const struct gw_model_cfg *model;
	int model_idx;
	struct mkt_model *mkt;       /* a marketplace model (allocated only for those) */
	struct gw_call *call;
	int status;
	uint64_t bytes;
	struct gw_rl_ticket ticket;
	int have_ticket;      /* admitted: settle and release at the end */
	int have_rl;          /* rate-limit headers below are valid */
	struct gw_rl_state rl_req, rl_tok;
	pthread_mutex_t amu;  /* admission: the limiter's callback vs the handler */
	pthread_t admit_thread;
	int admit_ready;
	struct admit_result dec;
	struct MHD_Connection *conn;
	struct gw_engine *engine; /* the worker whose daemon holds the connection (NULL: admin) */
	const char *model_param; /* /v1/models/{id} */
};

static struct gw_config *cfg_get(struct gw_server *s)
{
	pthread_mutex_lock(&s->cfg_mu);
	struct gw_config *c = gw_config_ref(s->cfg);
	pthread_mutex_unlock(&s->cfg_mu);
	return c;
}

/* --- responses ------------------------------------------------------------------------------- */

static void fmt_reset(char *v, size_t cap, int64_t ms)
{
	if (ms < 1000)
		snprintf(v, cap, "%lldms", (long long)(ms < 0 ? 0 : ms));
	else
		snprintf(v, cap, "%.3gs", (double)ms / 1000.0);
}

static void add_common_headers(struct req *r, struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "x-request-id", r->rid);
	if (r->have_rl) {
		char v[32];
		/* OpenAI's form: counts, and resets as durations ("6.5s", "120ms") */
		if (r->rl_req.limit > 0) {
			snprintf(v, sizeof v, "%lld", (long long)r->rl_req.limit);
			MHD_add_response_header(resp, "x-ratelimit-limit-requests", v);
			snprintf(v, sizeof v, "%lld", (long long)r->rl_req.remaining);
			MHD_add_response_header(resp, "x-ratelimit-remaining-requests", v);
			fmt_reset(v, sizeof v, r->rl_req.reset_ms);
			MHD_add_response_header(resp, "x-ratelimit-reset-requests", v);
		}
		if (r->rl_tok.limit > 0) {
			snprintf(v, sizeof v, "%lld", (long long)r->rl_tok.limit);
			MHD_add_response_header(resp, "x-ratelimit-limit-tokens", v);
			snprintf(v, sizeof v, "%lld", (long long)r->rl_tok.remaining);
			MHD_add_response_header(resp, "x-ratelimit-remaining-tokens", v);
			fmt_reset(v, sizeof v, r->rl_tok.reset_ms);
			MHD_add_response_header(resp, "x-ratelimit-reset-tokens", v);
		}
	}
}

static enum MHD_Result queue(struct req *r, struct MHD_Connection *conn, int status,
			     struct MHD_Response *resp)
{
	add_common_headers(r, resp);
	r->status = status;
	r->phase = PH_DONE;
	enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result respond(struct req *r, struct MHD_Connection *conn, int status,
			       const char *ctype, const char *body, size_t len)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", ctype);
	r->bytes = len;
	return queue(r, conn, status, resp);
}

/*
 * The one JSON error helper: OpenAI's shape, with the right status. extra_header (optional)
 * is "Name: value" for Retry-After and friends.
 */
static enum MHD_Result respond_error(struct req *r, struct MHD_Connection *conn, int status,
				     const char *type, const char *code, const char *param,
				     const char *extra_name, const char *extra_value, const char *fmt, ...)
	__attribute__((format(printf, 9, 10)));
static enum MHD_Result respond_error(struct req *r, struct MHD_Connection *conn, int status,
				     const char *type, const char *code, const char *param,
				     const char *extra_name, const char *extra_value, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_t *o = json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", msg, "type", type,
			      "param", param, "code", code);
	char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(o);
	if (!txt)
		return MHD_NO;
	size_t n = strlen(txt);
	struct MHD_Response *resp = MHD_create_response_from_buffer(n, txt, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(txt);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	if (extra_name)
		MHD_add_response_header(resp, extra_name, extra_value);
	if (status == 413 || status == 503)
		MHD_add_response_header(resp, "Connection", "close");
	r->bytes = n;
	return queue(r, conn, status, resp);
}

/* --- routing --------------------------------------------------------------------------------- */

static int route_of(const char *url, const char **model_id)
{
	*model_id = NULL;
	if (!strncmp(url, "/api/v1/", 8))
		url += 4;
	if (!strcmp(url, "/v1/chat/completions"))
		return GW_ROUTE_CHAT;
	if (!strcmp(url, "/v1/completions"))
		return GW_ROUTE_COMPLETIONS;
	if (!strcmp(url, "/v1/embeddings"))
		return GW_ROUTE_EMBEDDINGS;
	if (!strcmp(url, "/v1/models"))
		return GW_ROUTE_MODELS;
	if (!strncmp(url, "/v1/models/", 11) && url[11]) {
		*model_id = url + 11;
		return GW_ROUTE_MODEL;
	}
	if (!strcmp(url, "/healthz"))
		return GW_ROUTE_HEALTH;
	if (!strcmp(url, "/readyz"))
		return GW_ROUTE_READY;
	if (!strcmp(url, "/metrics"))
		return GW_ROUTE_METRICS;
	return GW_ROUTE_OTHER;
}

static int is_inference(int route)
{
	return route == GW_ROUTE_CHAT || route == GW_ROUTE_COMPLETIONS || route == GW_ROUTE_EMBEDDINGS;
}

static void copy_printable(char *dst, size_t cap, const char *src)
{
	size_t j = 0;
	for (size_t i = 0; src && src[i] && j + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[j++] = c > 0x20 && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
	}
	dst[j] = '\0';
}

/* --- health, readiness, metrics, models --------------------------------------------------------- */

static enum MHD_Result serve_admin(struct req *r, struct MHD_Connection *conn)
{
	struct gw_server *s = r->s;
	if (r->route == GW_ROUTE_HEALTH)
		return respond(r, conn, 200, "application/json", "{\"status\":\"ok\"}", 15);
	if (r->route == GW_ROUTE_READY) {
		char buf[1024];
		int degraded = gw_rl_degraded(s->rl);
		const char *redis = !gw_rl_has_redis(s->rl) ? "none" : degraded ? "degraded" : "ok";
		int draining = atomic_load(&s->draining);
		int usable = !(degraded && r->cfg->rl_fail_closed);
		/* the marketplace: "ok", "degraded" (chain unreachable, warm sessions serve), "down"
		 * (chain unreachable or on the wrong chain, no warm session), "loading" (no catalogue
		 * yet), "none" (not configured) */
		const char *market = "none", *chain = "none", *coord = "none";
		unsigned open_sessions = 0;
		long long cat_age = -1;
		if (s->market) {
			struct gw_market_status ms;
			gw_market_status(s->market, &ms);
			int chain_ok = ms.pool.chain_ok && ms.chain_id_state >= 0;
			open_sessions = ms.pool.sessions_open;
			cat_age = ms.catalog_age_ms;
			chain = ms.chain_id_state < 0 ? "wrong_chain" : ms.pool.chain_ok ? "ok" : "unreachable";
			coord = !ms.coordinated ? "in-process" : ms.pool.coordinated ? "redis" : "unavailable";
			market = ms.chain_id_state < 0 ? "down"
				 : !ms.catalog_loaded ? "loading"
				 : chain_ok ? "ok"
				 : open_sessions ? "degraded" : "down";
		}
		int market_usable = !strcmp(market, "ok") || !strcmp(market, "degraded");
		/* a gateway that serves only the marketplace (the demo model aside) is ready once the
		 * marketplace can serve; one with other backends is ready regardless, degraded */
		int market_only = s->market && r->cfg->n_models == 1 &&
				  r->cfg->backends[r->cfg->models[0].backend].kind == GW_BACKEND_DEMO;
		int ready = !draining && r->cfg->n_models > 0 && s->ks && usable && (!market_only || market_usable);
		const char *reason = draining ? "draining"
				     : !s->ks ? "key store not open"
				     : r->cfg->n_models == 0 ? "no backends configured"
				     : !usable ? "redis unavailable and ratelimit.fail_closed is set"
				     : !strcmp(market, "loading") ? "marketplace catalogue is loading"
				     : !strcmp(chain, "wrong_chain") ? "the marketplace RPC node is on another chain"
				     : !strcmp(market, "down") ? "the marketplace chain is unreachable"
				     : !strcmp(market, "degraded") ? "marketplace chain unreachable: warm sessions only (degraded)"
				     : degraded ? "redis unreachable: in-process limits (degraded)" : "";
		int n = snprintf(buf, sizeof buf,
				 "{\"status\":\"%s\",\"reason\":\"%s\",\"keystore\":\"%s\",\"redis\":\"%s\","
				 "\"backends\":%zu,\"models\":%zu,\"marketplace\":\"%s\",\"chain\":\"%s\","
				 "\"coordination\":\"%s\",\"sessions_open\":%u,\"catalog_age_ms\":%lld}",
				 ready ? "ready" : "not_ready", reason, s->ks ? "ok" : "closed", redis,
				 r->cfg->n_backends, r->cfg->n_models, market, chain, coord, open_sessions, cat_age);
		return respond(r, conn, ready ? 200 : 503, "application/json", buf, (size_t)n);
	}
	/* metrics */
	struct rc_buf b = RC_BUF_INIT;
	struct gw_rl_stats rs;
	gw_rl_stats(s->rl, &rs);
	struct gw_metrics_gauges g = {
		.connections = atomic_load(&s->connections),
		.redis_errors = (long)rs.redis_errors,
		.redis_roundtrips = (long)rs.redis_roundtrips,
		.redis_degraded = rs.degraded,
	};
	for (int i = 0; i < s->n_engines; i++) {
		struct gw_engine_stats *es = gw_engine_stats(s->engines[i]);
		g.open_streams += atomic_load(&es->open_streams);
		g.in_flight += atomic_load(&es->in_flight);
		g.backend_queued += atomic_load(&es->queued);
		g.backend_keepalives += (long)atomic_load(&es->keepalives);
		g.client_cancels += (long)atomic_load(&es->cancelled_by_client);
	}
	struct gw_market_status mst;
	if (s->market) {
		gw_market_status(s->market, &mst);
		g.market = &mst;
	}
	gw_metrics_render(&b, &g);
	enum MHD_Result rc = respond(r, conn, 200, "text/plain; version=0.0.4", b.ptr ? b.ptr : "", b.len);
	rc_buf_release(&b);
	return rc;
}

static int model_allowed(const struct req *r, const struct gw_model_cfg *m, const char *asked, size_t len)
{
	if (r->ki->models_len == 0)
		return 1;
	return ks_info_allows_model(r->ki, asked, len) ||
	       ks_info_allows_model(r->ki, m->name, strlen(m->name));
}

static void model_json(struct rc_buf *b, const struct gw_model_cfg *m, long created)
{
	char buf[600];
	int n = snprintf(buf, sizeof buf, "{\"id\":\"%s\",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"%s\"}",
			 m->name, created, m->owned_by ? m->owned_by : "morgate");
	rc_buf_append(b, buf, (size_t)n);
}

static int market_allowed(const struct req *r, const char *name, const char *alias_of)
{
	if (r->ki->models_len == 0)
		return 1;
	return ks_info_allows_model(r->ki, name, strlen(name)) ||
	       (alias_of && ks_info_allows_model(r->ki, alias_of, strlen(alias_of)));
}

static const struct rc_pool_model *catalog_find(const struct rc_pool_model *cat, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strncmp(cat[i].name, name, sizeof cat[i].name) && strlen(name) < sizeof cat[i].name)
			return &cat[i];
	return NULL;
}

/* The marketplace's part of /v1/models: catalogue entries not shadowed by a configured model,
 * then one entry per alias whose model is in the catalogue. */
static void market_models_json(struct req *r, struct rc_buf *b, const struct rc_pool_model *cat, size_t n,
			       int *first)
{
	for (size_t i = 0; i < n; i++) {
		const struct rc_pool_model *m = &cat[i];
		char name[sizeof m->name];
		snprintf(name, sizeof name, "%s", m->name);
		if (gw_config_find_model(r->cfg, name, strlen(name)) || !market_allowed(r, name, NULL))
			continue;
		if (!*first)
			rc_buf_putc(b, ',');
		*first = 0;
		if (gw_market_model_json(b, m, NULL))
			abort();
	}
	const struct gw_market_cfg *mc = &r->cfg->market;
	for (size_t i = 0; i < mc->n_aliases; i++) {
		const struct rc_pool_model *m = catalog_find(cat, n, mc->aliases[i].target);
		if (!m || !market_allowed(r, mc->aliases[i].alias, mc->aliases[i].target))
			continue;
		if (!*first)
			rc_buf_putc(b, ',');
		*first = 0;
		if (gw_market_model_json(b, m, mc->aliases[i].alias))
			abort();
	}
}

static enum MHD_Result serve_models(struct req *r, struct MHD_Connection *conn)
{
	struct rc_buf b = RC_BUF_INIT;
	enum MHD_Result rc;
	struct gw_market *mk = r->cfg->market.enabled ? r->s->market : NULL;
	struct rc_pool_model *cat = NULL;
	size_t ncat = 0;
	int loaded = mk && gw_market_catalog(mk, &cat, &ncat) == GW_MARKET_FOUND;
	if (r->route == GW_ROUTE_MODEL) {
		const char *id = r->model_param;
		const struct gw_model_cfg *m = gw_config_find_model(r->cfg, id, strlen(id));
		if (m && model_allowed(r, m, id, strlen(id))) {
			model_json(&b, m, r->s->created);
		} else if (!m && mk) {
			const char *target = gw_config_market_alias(r->cfg, id, strlen(id));
			const struct rc_pool_model *pm = catalog_find(cat, ncat, target ? target : id);
			if (pm && market_allowed(r, id, target)) {
				if (gw_market_model_json(&b, pm, target ? id : NULL))
					abort();
			} else if (!loaded) {
				free(cat);
				return respond_error(r, conn, 503, "server_error", "catalog_loading", NULL, "Retry-After",
						     "2", "marketplace catalogue is loading; retry shortly");
			}
		}
		if (!b.len) {
			char shown[80];
			free(cat);
			copy_printable(shown, sizeof shown, id);
			return respond_error(r, conn, 404, "invalid_request_error", "model_not_found", "model",
					     NULL, NULL, "the model '%s' does not exist", shown);
		}
	} else {
		rc_buf_append(&b, "{\"object\":\"list\",\"data\":[", 25);
		int first = 1;
		for (size_t i = 0; i < r->cfg->n_models; i++) {
			const struct gw_model_cfg *m = &r->cfg->models[i];
			if (!model_allowed(r, m, m->name, strlen(m->name)))
				continue;
			if (!first)
				rc_buf_putc(&b, ',');
			first = 0;
			model_json(&b, m, r->s->created);
		}
		if (loaded)
			market_models_json(r, &b, cat, ncat, &first);
		rc_buf_append(&b, "]}", 2);
	}
	free(cat);
	rc = respond(r, conn, 200, "application/json", b.ptr, b.len);
	rc_buf_release(&b);
	return rc;
}

/* --- auth ---------------------------------------------------------------------------------------- */

static enum MHD_Result check_auth(struct req *r, struct MHD_Connection *conn)
{
	const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	const char *xkey = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-api-key");
	const char *key;
	size_t len;
	int rc = gw_auth_parse(authz, xkey, &key, &len);
	if (rc == GW_AUTH_MISSING) {
		gw_metrics_keycheck(GW_KC_MISSING);
		return respond_error(r, conn, 401, "invalid_request_error", "missing_api_key", NULL,
				     "WWW-Authenticate", "Bearer",
				     "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'");
	}
	if (rc == GW_AUTH_MALFORMED) {
		gw_metrics_keycheck(GW_KC_MALFORMED);
		return respond_error(r, conn, 401, "invalid_request_error", "invalid_api_key", NULL,
				     "WWW-Authenticate", "Bearer",
				     "malformed credentials: expected 'Authorization: Bearer <key>'");
	}
	r->ki = malloc(sizeof *r->ki);
	if (!r->ki)
		abort();
	rc = ks_key_verify(r->s->ks, key, len, r->ki);
	switch (rc) {
	case KS_OK:
		gw_metrics_keycheck(GW_KC_OK);
		memcpy(r->key_id, r->ki->key_id, sizeof r->key_id);
		memcpy(r->tenant, r->ki->tenant, sizeof r->tenant);
		r->authed = 1;
		return MHD_YES;
	case KS_EMALFORMED:
		gw_metrics_keycheck(GW_KC_MALFORMED);
		return respond_error(r, conn, 401, "invalid_request_error", "invalid_api_key", NULL,
				     "WWW-Authenticate", "Bearer",
				     "malformed API key: not a morgate key (sk-mor-...), or mistyped");
	case KS_EUNKNOWN:
		gw_metrics_keycheck(GW_KC_UNKNOWN);
		return respond_error(r, conn, 401, "invalid_request_error", "invalid_api_key", NULL,
				     "WWW-Authenticate", "Bearer", "incorrect API key provided");
	case KS_EREVOKED:
		gw_metrics_keycheck(GW_KC_REVOKED);
		return respond_error(r, conn, 401, "invalid_request_error", "revoked_api_key", NULL,
				     "WWW-Authenticate", "Bearer", "this API key has been revoked");
	case KS_EEXPIRED:
		gw_metrics_keycheck(GW_KC_EXPIRED);
		return respond_error(r, conn, 401, "invalid_request_error", "expired_api_key", NULL,
				     "WWW-Authenticate", "Bearer", "this API key has expired");
	case KS_ETENANT_DISABLED:
		gw_metrics_keycheck(GW_KC_TENANT_DISABLED);
		return respond_error(r, conn, 401, "invalid_request_error", "account_disabled", NULL,
				     "WWW-Authenticate", "Bearer", "the account this API key belongs to is disabled");
	default:
		gw_metrics_keycheck(GW_KC_ERROR);
		gw_log_error("auth", "rid=%s key store error: %s", r->rid, ks_strerror(rc));
		return respond_error(r, conn, 503, "server_error", "keystore_unavailable", NULL, "Retry-After",
				     "1", "the key store is unavailable; retry shortly");
	}
}

/* --- backend responses ---------------------------------------------------------------------------- */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct req *r = cls;
	struct gw_call *c = r->call;
	(void)pos;
	pthread_mutex_lock(&c->mu);
	if (c->direct_broken) { /* the engine's write failed or timed out mid-stream: close */
		pthread_mutex_unlock(&c->mu);
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	size_t avail = c->out.len - c->out_off;
	if (avail) {
		size_t n = avail < max ? avail : max;
		memcpy(buf, c->out.ptr + c->out_off, n);
		c->out_off += n;
		pthread_mutex_unlock(&c->mu);
		r->bytes += n;
		return (ssize_t)n;
	}
	if (c->done) {
		int err = c->err;
		pthread_mutex_unlock(&c->mu);
		return err == GW_BE_ECANCELLED ? MHD_CONTENT_READER_END_WITH_ERROR
					       : MHD_CONTENT_READER_END_OF_STREAM;
	}
	c->waiting = 1;
	/* MHD calls this only once it has sent everything it had: from here the engine writes the
	 * body itself until the call is done (gw_backend.h, direct streaming) */
	if (c->direct_ok)
		c->direct = 1;
	MHD_suspend_connection(c->conn);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

/* Under c->mu, the call done and not streaming: answer with the upstream's result. */
static enum MHD_Result respond_backend(struct req *r, struct MHD_Connection *conn, struct gw_call *c)
{
	if (c->err != GW_BE_OK && c->err != GW_BE_ECANCELLED && c->be_err && c->be_err->status) {
		/* the backend's own words (the marketplace's reasons) */
		const struct gw_call_error *be = c->be_err;
		char ra[16];
		snprintf(ra, sizeof ra, "%d", be->retry_after_s);
		return respond_error(r, conn, be->status, be->type, be->code, NULL,
				     be->retry_after_s > 0 ? "Retry-After" : NULL, ra, "%s", be->message);
	}
	switch (c->err) {
	case GW_BE_OK:
		break;
	case GW_BE_ECONNECT:
		return respond_error(r, conn, 502, "server_error", "backend_unreachable", NULL, NULL, NULL,
				     "the backend for model '%s' could not be reached", r->model->name);
	case GW_BE_ETIMEOUT:
		return respond_error(r, conn, 504, "server_error", "backend_timeout", NULL, NULL, NULL,
				     "the backend for model '%s' did not answer in time", r->model->name);
	case GW_BE_EUNAVAILABLE:
		return respond_error(r, conn, 503, "server_error", "backend_unavailable", NULL, "Retry-After",
				     "1", "the backend for model '%s' is unavailable", r->model->name);
	case GW_BE_ECANCELLED:
		return MHD_NO;
	default:
		return respond_error(r, conn, 502, "server_error", "backend_error", NULL, NULL, NULL,
				     "the backend for model '%s' failed", r->model->name);
	}
	int st = c->status;
	if (st == 401 || st == 403 || st == 407 || (st >= 500 && st != 503 && st != 504) || st < 200 ||
	    (st >= 300 && st < 400)) {
		gw_log_warn("backend", "rid=%s upstream status %d for model '%s'", r->rid, st, r->model->name);
		return respond_error(r, conn, 502, "server_error", "backend_error", NULL, NULL, NULL,
				     "the backend for model '%s' answered with status %d", r->model->name, st);
	}
	if (st == 503 || st == 504)
		return respond_error(r, conn, st, "server_error", st == 503 ? "backend_unavailable" : "backend_timeout",
				     NULL, NULL, NULL, "the backend for model '%s' answered with status %d",
				     r->model->name, st);
	/* 2xx and the upstream's own 4xx (its words about the request) pass through */
	if (st >= 200 && st < 300) {
		int64_t p = 0, k = 0;
		if (gw_usage_from_json(c->out.ptr ? c->out.ptr : "", c->out.len, &p, &k)) {
			c->sse.have_usage = 1;
			c->sse.prompt_tokens = p;
			c->sse.completion_tokens = k;
		}
	}
	return respond(r, conn, st, c->content_type[0] ? c->content_type : "application/json",
		       c->out.ptr ? c->out.ptr : "", c->out.len);
}

static enum MHD_Result resume_wait(struct req *r, struct MHD_Connection *conn)
{
	struct gw_call *c = r->call;
	enum MHD_Result rc;
	pthread_mutex_lock(&c->mu);
	if (c->streaming && c->head_ready) {
		/* block size 512: a chunked response is read straight into the connection's own write
		 * buffer, so MHD's block (calloc'ed per response) only serves HTTP/1.0 clients; 4 KiB of
		 * it per stream was 20 MB at 5,000 open streams */
		struct MHD_Response *resp =
			MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 512, stream_reader, r, NULL);
		pthread_mutex_unlock(&c->mu);
		if (!resp)
			return MHD_NO;
		MHD_add_response_header(resp, "Content-Type",
					c->content_type[0] ? c->content_type : "text/event-stream");
		MHD_add_response_header(resp, "Cache-Control", "no-cache");
		MHD_add_response_header(resp, "X-Accel-Buffering", "no");
		return queue(r, conn, 200, resp);
	}
	if (c->done) {
		rc = respond_backend(r, conn, c);
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	c->waiting = 1;
	MHD_suspend_connection(conn);
	pthread_mutex_unlock(&c->mu);
	return MHD_YES;
}

static enum MHD_Result after_admit(struct req *r, struct MHD_Connection *conn, int suspended);

/* Worker thread, the connection suspended since admission began: start the call. */
static void admitted_on_worker(void *arg)
{
	struct req *r = arg;
	struct gw_server *s = r->s;
	after_admit(r, r->conn, 1);
	atomic_fetch_sub(&s->admitting, 1);
}

static void take_decision(struct req *r, const struct gw_rl_decision *d)
{
	r->dec.outcome = d->outcome;
	r->dec.refused = d->refused;
	r->dec.local = d->local;
	r->dec.retry_after_s = d->retry_after_s;
	r->ticket = d->ticket;
	r->rl_req = gw_rl_requests_state(d);
	r->rl_tok = gw_rl_tokens_state(d);
}

static void admit_cb(void *ctx, const struct gw_rl_decision *d)
{
	struct req *r = ctx;
	if (pthread_equal(r->admit_thread, pthread_self())) {
		take_decision(r, d); /* synchronous: the handler reads it when gw_rl_admit returns */
		r->admit_ready = 1;
		return;
	}
	pthread_mutex_lock(&r->amu); /* held by the handler only until it has suspended */
	take_decision(r, d);
	r->admit_ready = 1;
	if (d->outcome == GW_RL_ALLOWED && r->engine) {
		/* admitted: the worker starts the upstream call with the connection still suspended,
		 * which saves libmicrohttpd a resume and a suspend (two epoll_ctl and a recv) */
		gw_engine_post_fn(r->engine, admitted_on_worker, r);
	} else {
		gw_engine_resume(r->engine, r->conn);
	}
	pthread_mutex_unlock(&r->amu);
}

/*
 * A model that is not configured: a marketplace alias or an on-chain model of the catalogue.
 * Returns 1 with *rc when it answered (503 while the catalogue loads, or for an alias whose model
 * has no bids now); 0 otherwise, with r->model set when the marketplace serves the name.
 */
static int resolve_market(struct req *r, struct MHD_Connection *conn, const char *name, size_t len,
			  enum MHD_Result *rc)
{
	struct gw_server *s = r->s;
	const char *target = gw_config_market_alias(r->cfg, name, len);
	char asked[GW_MODEL_MAX + 1];
	if (!target) {
		if (len >= sizeof asked || memchr(name, '\0', len))
			return 0;
		memcpy(asked, name, len);
		asked[len] = '\0';
	}
	const char *chain_name = target ? target : asked;
	struct gw_market_status st;
	int lk = gw_market_lookup(s->market, chain_name, NULL);
	char shown[80];
	copy_printable(shown, sizeof shown, chain_name);
	if (lk == GW_MARKET_LOADING) {
		*rc = respond_error(r, conn, 503, "server_error", "catalog_loading", NULL, "Retry-After", "2",
				    "marketplace catalogue is loading; retry shortly");
		return 1;
	}
	if (lk == GW_MARKET_UNKNOWN && !target)
		return 0; /* 404 */
	if (lk == GW_MARKET_UNKNOWN) {
		*rc = respond_error(r, conn, 503, "server_error", "no_bids", NULL, "Retry-After", "5",
				    "no provider offers model %s right now", shown);
		return 1;
	}
	if (r->route != GW_ROUTE_CHAT) {
		/* a provider classifies a prompt by its shape (§2.5.3): only chat bodies go as they are */
		*rc = respond_error(r, conn, 400, "invalid_request_error", "unsupported_route", "model", NULL, NULL,
				    "model '%s' is served through the Morpheus marketplace, which this gateway "
				    "offers on /v1/chat/completions only", shown);
		return 1;
	}
	gw_market_status(s->market, &st);
	if (st.chain_id_state < 0) {
		*rc = respond_error(r, conn, 503, "server_error", "chain_mismatch", NULL, "Retry-After", "30",
				    "the marketplace RPC node is on chain %llu, not the configured chain %llu",
				    (unsigned long long)st.chain_id_actual,
				    (unsigned long long)r->cfg->market.chain_id);
		return 1;
	}
	if (!(r->mkt = calloc(1, sizeof *r->mkt)))
		abort();
	snprintf(r->mkt->name, sizeof r->mkt->name, "%s", chain_name);
	r->mkt->cfg.name = r->mkt->name;
	r->mkt->cfg.owned_by = (char *)"morpheus";
	r->model = &r->mkt->cfg;
	return 0;
}

static enum MHD_Result start_inference(struct req *r, struct MHD_Connection *conn)
{
	struct gw_server *s = r->s;
	if (r->too_large)
		return respond_error(r, conn, 413, "invalid_request_error", "request_too_large", NULL, NULL, NULL,
				     "request body larger than %ld bytes", r->cfg->max_body_bytes);
	struct gw_perr perr;
	struct gw_body_info bi;
	int prc = gw_body_parse(r->body.ptr ? r->body.ptr : "", r->body.len, 1, &bi, &perr);
	if (prc == GW_PARSE_ENOMEM)
		return MHD_NO;
	if (prc != GW_PARSE_OK)
		return respond_error(r, conn, 400, "invalid_request_error",
				     prc == GW_PARSE_EJSON ? "invalid_json" : "invalid_value",
				     perr.param[0] ? perr.param : NULL, NULL, NULL, "%s", perr.msg);
	if (r->route == GW_ROUTE_EMBEDDINGS)
		bi.stream = 0;
	r->info.stream = bi.stream;
	r->info.max_tokens = bi.max_tokens;
	r->info.include_usage = bi.include_usage;
	r->info.prompt_estimate = bi.prompt_estimate;
	r->model = gw_config_find_model(r->cfg, bi.model, bi.model_len);
	if (!r->model && s->market && r->cfg->market.enabled) {
		enum MHD_Result mrc;
		if (resolve_market(r, conn, bi.model, bi.model_len, &mrc))
			return mrc;
	}
	if (!r->model) {
		char shown[80];
		copy_printable(shown, sizeof shown, bi.model);
		return respond_error(r, conn, 404, "invalid_request_error", "model_not_found", "model", NULL, NULL,
				     "the model '%s' does not exist", shown);
	}
	r->model_idx = gw_metrics_model(r->model->name);
	if (!model_allowed(r, r->model, bi.model, bi.model_len))
		return respond_error(r, conn, 403, "permission_error", "model_not_allowed", "model", NULL, NULL,
				     "this API key may not use model '%s'", r->model->name);
	if (atomic_load(&s->draining))
		return respond_error(r, conn, 503, "server_error", "shutting_down", NULL, "Retry-After", "1",
				     "the gateway is shutting down; retry on another instance");
	/* Admission: the limiter may answer at once (local decision) or later from its I/O thread
	 * (Redis); in the second case the connection waits suspended, and admit_cb either has the
	 * worker start the call (admitted) or resumes the connection for the refusal. */
	struct gw_rl_request rq = {r->ki,
				   r->info.prompt_estimate + (r->info.max_tokens ? r->info.max_tokens : 256)};
	r->conn = conn;
	r->admit_thread = pthread_self();
	pthread_mutex_lock(&r->amu);
	int sync = gw_rl_admit(s->rl, &rq, admit_cb, r);
	if (!sync) {
		r->phase = PH_ADMIT;
		atomic_fetch_add(&s->admitting, 1);
		MHD_suspend_connection(conn);
		pthread_mutex_unlock(&r->amu);
		return MHD_YES;
	}
	pthread_mutex_unlock(&r->amu);
	return after_admit(r, conn, 0);
}

/* suspended: the connection is suspended already (admitted from the limiter's thread). */
static enum MHD_Result after_admit(struct req *r, struct MHD_Connection *conn, int suspended)
{
	struct gw_server *s = r->s;
	const struct admit_result *d = &r->dec;
	r->have_rl = 1;
	if (d->outcome != GW_RL_ALLOWED) {
		char ra[24];
		snprintf(ra, sizeof ra, "%lld", (long long)(d->retry_after_s < 1 ? 1 : d->retry_after_s));
		const char *dim = d->refused >= 0 ? gw_rl_dim_name((enum gw_rl_dim)d->refused) : "none";
		int tokens = d->refused == GW_RL_KEY_TPM || d->refused == GW_RL_TENANT_TPM ||
			     d->refused == GW_RL_TENANT_MONTHLY;
		switch (d->outcome) {
		case GW_RL_LIMITED:
			gw_metrics_ratelimit(GW_RL_M_LIMITED);
			return respond_error(r, conn, 429, tokens ? "tokens" : "requests", "rate_limit_exceeded", NULL,
					     "Retry-After", ra, "rate limit exceeded (%s); retry after %s seconds",
					     dim, ra);
		case GW_RL_QUOTA:
			gw_metrics_ratelimit(GW_RL_M_QUOTA);
			return respond_error(r, conn, 429, "insufficient_quota", "insufficient_quota", NULL,
					     "Retry-After", ra,
					     "the monthly token quota of this account is used up; retry after %s seconds",
					     ra);
		case GW_RL_TOO_LARGE:
			gw_metrics_ratelimit(GW_RL_M_LIMITED);
			return respond_error(r, conn, 429, "tokens", "tokens_exceed_limit", "max_tokens", NULL, NULL,
					     "this request asks for more tokens than the %s limit allows at all; "
					     "lower max_tokens or the prompt", dim);
		default:
			gw_metrics_ratelimit(GW_RL_M_UNAVAILABLE);
			return respond_error(r, conn, 503, "server_error", "ratelimit_unavailable", NULL, "Retry-After",
					     "1", "rate limiting is unavailable; retry shortly");
		}
	}
	r->have_ticket = 1;
	free(r->ki); /* admitted: nothing reads the record any more */
	r->ki = NULL;
	gw_metrics_ratelimit(d->local && gw_rl_has_redis(s->rl) ? GW_RL_M_DEGRADED : GW_RL_M_ALLOWED);

	struct gw_call *c = r->call = gw_call_new();
	c->route = r->route;
	memcpy(c->rid, r->rid, sizeof c->rid);
	c->body = r->body; /* moved */
	rc_buf_init(&r->body);
	c->info.stream = r->info.stream;
	c->info.max_tokens = r->info.max_tokens;
	c->info.include_usage = r->info.include_usage;
	c->info.prompt_estimate = r->info.prompt_estimate;
	c->conn = conn;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	c->client_fd = ci ? ci->connect_fd : -1;
	/* direct streaming where MHD frames the body as HTTP/1.1 chunks and the producer is the
	 * engine's own thread (not the marketplace's workers) */
	c->direct_ok = r->info.stream && !r->mkt && r->http11 && c->client_fd >= 0;
	c->cfg = gw_config_ref(r->cfg);
	if (r->mkt) {
		c->bcfg = gw_market_backend_cfg(s->market);
		c->backend = gw_market_backend(s->market);
		if (!(c->market_model = strdup(r->mkt->name)))
			abort();
	} else {
		c->bcfg = &r->cfg->backends[r->model->backend];
		c->backend = gw_backend_for(c->bcfg);
	}
	if (r->ticket.flags & (GW_RL_T_KEY_SLOT | GW_RL_T_TEN_SLOT)) {
		c->rl = s->rl;
		c->ticket = r->ticket;
		c->renew_every_ns = (int64_t)r->cfg->rl_lease_ms * 1000000 / 3;
	}
	r->phase = PH_WAIT;
	pthread_mutex_lock(&c->mu);
	c->waiting = 1;
	if (!suspended)
		MHD_suspend_connection(conn);
	pthread_mutex_unlock(&c->mu);
	gw_engine_start(c->engine = pick_engine(s), c);
	return MHD_YES;
}

/* --- the access handler ------------------------------------------------------------------------- */

static enum MHD_Result first_call(struct req *r, struct MHD_Connection *conn, const char *url,
				  const char *method)
{
	struct gw_server *s = r->s;
	copy_printable(r->method, sizeof r->method, method);
	copy_printable(r->path, sizeof r->path, url);
	const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-request-id");
	if (rid && gw_request_id_sane(rid, strlen(rid)))
		snprintf(r->rid, sizeof r->rid, "%s", rid);
	else
		gw_request_id_new(r->rid);
	r->route = route_of(url, &r->model_param);
	r->model_idx = -1;
	r->is_post = !strcmp(method, "POST");
	if (atomic_load(&s->connections) > r->cfg->soft_connections) {
		gw_metrics_conn_rejected();
		return respond_error(r, conn, 503, "server_error", "overloaded", NULL, "Retry-After", "1",
				     "too many connections; retry shortly");
	}
	if (r->route == GW_ROUTE_OTHER)
		return respond_error(r, conn, 404, "invalid_request_error", "unknown_url", NULL, NULL, NULL,
				     "unknown request URL: %s %s", r->method, r->path);
	int want_post = is_inference(r->route);
	if ((want_post && !r->is_post) || (!want_post && strcmp(method, "GET") && strcmp(method, "HEAD")))
		return respond_error(r, conn, 405, "invalid_request_error", "method_not_allowed", NULL, "Allow",
				     want_post ? "POST" : "GET", "method %s is not allowed on %s", r->method,
				     r->path);
	if (r->route == GW_ROUTE_HEALTH || r->route == GW_ROUTE_READY || r->route == GW_ROUTE_METRICS)
		return serve_admin(r, conn);
	if (check_auth(r, conn) != MHD_YES || !r->authed)
		return r->phase == PH_DONE ? MHD_YES : MHD_NO;
	if (!want_post)
		return serve_models(r, conn);
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
	if (cl && strtoll(cl, NULL, 10) > r->cfg->max_body_bytes)
		return respond_error(r, conn, 413, "invalid_request_error", "request_too_large", NULL, NULL, NULL,
				     "request body larger than %ld bytes", r->cfg->max_body_bytes);
	r->phase = PH_BODY;
	return MHD_YES;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version, const char *upload_data,
				      size_t *upload_data_size, void **req_cls)
{
	struct gw_server *s = cls;
	struct req *r = *req_cls;
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			abort();
		r->s = s;
		r->t0 = gw_now_ns();
		r->cfg = cfg_get(s);
		r->engine = gw_engine_current();
		pthread_mutex_init(&r->amu, NULL);
		*req_cls = r;
		atomic_fetch_add(&s->in_flight, 1);
		r->http11 = version && !strcmp(version, MHD_HTTP_VERSION_1_1);
		return first_call(r, conn, url, method);
	}
	if (r->phase == PH_BODY) {
		if (*upload_data_size) {
			if (!r->too_large && r->body.len + *upload_data_size <= (size_t)r->cfg->max_body_bytes) {
				if (rc_buf_append(&r->body, upload_data, *upload_data_size))
					abort();
			} else {
				r->too_large = 1;
				rc_buf_release(&r->body);
			}
			*upload_data_size = 0;
			return MHD_YES;
		}
		return start_inference(r, conn);
	}
	if (r->phase == PH_ADMIT) {
		pthread_mutex_lock(&r->amu);
		int ready = r->admit_ready;
		pthread_mutex_unlock(&r->amu);
		if (!ready)
			return MHD_YES; /* cannot happen: resumed only by admit_cb */
		atomic_fetch_sub(&s->admitting, 1);
		return after_admit(r, conn, 0);
	}
	if (r->phase == PH_WAIT)
		return resume_wait(r, conn);
	/* a response is queued already: discard any further body bytes */
	*upload_data_size = 0;
	return MHD_YES;
}

/* --- completion: usage, limiter, metrics, access log ----------------------------------------------- */

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct gw_server *s = cls;
	struct req *r = *req_cls;
	(void)conn;
	if (!r)
		return;
	*req_cls = NULL;
	int64_t now = gw_now_ns();
	int64_t backend_ns = 0, ttfb_ns = 0, prompt = 0, completion = 0;
	int have_usage = 0, cancelled = 0;
	struct gw_call *c = r->call;
	if (c) {
		pthread_mutex_lock(&c->mu);
		int done = c->done;
		if (c->sse.have_usage) {
			have_usage = 1;
			prompt = c->sse.prompt_tokens;
			completion = c->sse.completion_tokens;
		} else if (c->streaming) {
			/* no usage from the upstream: estimate (prompt bytes / 4, one token per event) */
			prompt = r->info.prompt_estimate;
			completion = c->sse.events;
		}
		backend_ns = (done ? c->t_done_ns : now) - c->t_start_ns;
		r->bytes += c->direct_bytes;
		if (c->t_first_byte_ns)
			ttfb_ns = c->t_first_byte_ns - c->t_start_ns;
		pthread_mutex_unlock(&c->mu);
		if (!done) {
			cancelled = 1;
			gw_engine_cancel(c->engine, c);
		}
		if (r->status == 0 && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
			r->status = 499; /* client closed the request (nginx's convention, logs only) */
		ks_usage_record(s->ks, r->key_id, r->model->name, prompt, completion);
	}
	if (r->have_ticket)
		gw_rl_finish(s->rl, &r->ticket, prompt + completion);
	if (r->status == 0)
		r->status = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? 200 : 499;
	if (c && r->status == 200 && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
		cancelled = 1;
	gw_metrics_request(r->route, r->status, r->model_idx, now - r->t0, backend_ns, ttfb_ns);
	if (gw_log_access_enabled && gw_log_min_level <= GW_LOG_INFO) {
		char line[1024];
		char model[80];
		copy_printable(model, sizeof model, r->model ? r->model->name : "-");
		int n = snprintf(line, sizeof line,
				 "rid=%s method=%s path=%s status=%d tenant=%s key=%s model=%s stream=%d bytes=%llu "
				 "upstream_ms=%.3f total_ms=%.3f tokens_in=%lld tokens_out=%lld usage=%s%s",
				 r->rid, r->method, r->path, r->status, r->authed ? r->tenant : "-",
				 r->authed ? r->key_id : "-", model, r->info.stream, (unsigned long long)r->bytes,
				 (double)backend_ns / 1e6, (double)(now - r->t0) / 1e6, (long long)prompt,
				 (long long)completion, have_usage ? "upstream" : c ? "estimated" : "none",
				 cancelled ? " cancelled=1" : "");
		gw_log_access(line, n < (int)sizeof line ? n : (int)sizeof line - 1);
	}
	gw_call_unref(c);
	free(r->ki);
	free(r->mkt);
	rc_buf_release(&r->body);
	gw_config_unref(r->cfg);
	pthread_mutex_destroy(&r->amu);
	free(r);
	atomic_fetch_sub(&s->in_flight, 1);
}

static void conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
			enum MHD_ConnectionNotificationCode toe)
{
	struct gw_server *s = cls;
	(void)conn;
	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		atomic_fetch_add(&s->connections, 1);
	else
		atomic_fetch_sub(&s->connections, 1);
}

/* libmicrohttpd's own messages: fmt comes from the library, so the non-literal format is safe. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	(void)cls;
	vsnprintf(buf, sizeof buf, fmt, ap);
	gw_log_debug("mhd", "%s", buf);
}
#pragma GCC diagnostic pop

/* --- lifecycle ------------------------------------------------------------------------------------ */

/* Whether another socket listens on sa already. SO_REUSEPORT would let our workers' sockets join
 * one of another process of ours (same user) without a word, so a plain bind tries first. */
static int address_taken(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	int taken = bind(fd, (const struct sockaddr *)sa, sizeof *sa) != 0;
	close(fd);
	return taken;
}

/* admin: the admin listener, on an internal thread of its own. Otherwise a worker's daemon in
 * external epoll mode on its own SO_REUSEPORT socket; *port (in/out) is the port to bind, 0 for
 * any: the first worker's pick is then given to the others. */
static struct MHD_Daemon *start_daemon(struct gw_server *s, const char *listen, unsigned *port,
				       unsigned max_conns, const struct gw_config *cfg, int admin,
				       char *errbuf, size_t errlen)
{
	char host[64];
	unsigned cfg_port;
	if (gw_config_split_listen(listen, host, &cfg_port)) {
		snprintf(errbuf, errlen, "invalid listen address '%s'", listen);
		return NULL;
	}
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)(admin || !*port ? cfg_port : *port));
	inet_pton(AF_INET, host, &sa.sin_addr);
	if (!admin && !*port && cfg_port && address_taken(&sa)) { /* the first worker's */
		snprintf(errbuf, errlen, "cannot listen on '%s' (address in use or not permitted)", listen);
		return NULL;
	}
	unsigned flags = (admin ? MHD_USE_EPOLL_INTERNAL_THREAD : MHD_USE_EPOLL) | MHD_ALLOW_SUSPEND_RESUME |
			 MHD_USE_ITC | MHD_USE_ERROR_LOG;
	struct MHD_Daemon *d = MHD_start_daemon(
		flags, ntohs(sa.sin_port), NULL, NULL, access_handler, s, MHD_OPTION_SOCK_ADDR, &sa,
		MHD_OPTION_LISTENING_ADDRESS_REUSE, admin ? 0u : 1u,
		MHD_OPTION_CONNECTION_LIMIT, admin ? 64u : max_conns, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)cfg->client_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)cfg->max_header_bytes + 2048, MHD_OPTION_NOTIFY_COMPLETED, completed, s,
		MHD_OPTION_NOTIFY_CONNECTION, conn_notify, s, MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u,
		MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (!d) {
		snprintf(errbuf, errlen, "cannot listen on '%s' (address in use or not permitted)", listen);
		return NULL;
	}
	if (!admin && !*port) { /* the others join the first worker's port (its pick for port 0) */
		const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
		struct sockaddr_in got = {0};
		socklen_t gl = sizeof got;
		if (di && getsockname(di->listen_fd, (struct sockaddr *)&got, &gl) == 0)
			*port = ntohs(got.sin_port);
	}
	return d;
}

static void rl_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	GW_LOG_AT(level, "ratelimit", "%s", msg);
}

int gw_server_new(struct gw_config *cfg, struct ks_store *ks, struct gw_market *market,
		  struct gw_server **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	struct gw_server *s = calloc(1, sizeof *s);
	if (!s)
		abort();
	pthread_mutex_init(&s->cfg_mu, NULL);
	s->cfg = gw_config_ref(cfg);
	s->ks = ks;
	s->market = market;
	s->created = (long)time(NULL);
	for (size_t i = 0; i < cfg->n_models; i++)
		gw_metrics_model(cfg->models[i].name);
	char lerr[256] = "";
	struct gw_rl_config rc = {0};
	rc.redis_url = cfg->redis_url[0] ? cfg->redis_url : NULL;
	rc.prefix = cfg->rl_prefix;
	rc.timeout_ms = (int)cfg->rl_timeout_ms;
	rc.connect_timeout_ms = (int)cfg->rl_connect_timeout_ms;
	rc.backoff_min_ms = (int)cfg->rl_backoff_min_ms;
	rc.backoff_max_ms = (int)cfg->rl_backoff_max_ms;
	rc.lease_ms = (int)cfg->rl_lease_ms;
	rc.fail_closed = cfg->rl_fail_closed;
	rc.max_pending = (unsigned)cfg->rl_max_pending;
	rc.log = rl_log;
	if (gw_rl_new(&rc, &s->rl, lerr, sizeof lerr)) {
		snprintf(errbuf, errlen, "rate limiter: %s", lerr);
		goto fail;
	}
	int n = cfg->threads < 1 ? 1 : cfg->threads > GW_MAX_ENGINES ? GW_MAX_ENGINES : (int)cfg->threads;
	unsigned per = (unsigned)((cfg->max_connections + n - 1) / n);
	unsigned port = 0; /* the first worker binds the configured port; the others join it */
	for (int i = 0; i < n; i++) {
		s->d[i] = start_daemon(s, cfg->listen, &port, per, cfg, 0, errbuf, errlen);
		if (!s->d[i])
			goto fail;
		if (gw_engine_new(cfg->keepalive_ms, s->d[i], &s->engines[i])) {
			snprintf(errbuf, errlen, "cannot start worker thread %d", i);
			goto fail;
		}
		s->n_engines = i + 1;
	}
	if (cfg->admin_listen[0]) {
		s->admin = start_daemon(s, cfg->admin_listen, NULL, 64, cfg, 1, errbuf, errlen);
		if (!s->admin)
			goto fail;
	}
	*out = s;
	return 0;
fail:
	gw_server_free(s);
	return -1;
}

void gw_server_reload(struct gw_server *s, struct gw_config *cfg)
{
	for (size_t i = 0; i < cfg->n_models; i++)
		gw_metrics_model(cfg->models[i].name);
	for (int i = 0; i < s->n_engines; i++)
		gw_engine_set_keepalive(s->engines[i], cfg->keepalive_ms);
	pthread_mutex_lock(&s->cfg_mu);
	struct gw_config *old = s->cfg;
	s->cfg = gw_config_ref(cfg);
	pthread_mutex_unlock(&s->cfg_mu);
	gw_config_unref(old);
}

void gw_server_flush_usage(struct gw_server *s)
{
	struct ks_err err;
	int rc = ks_flush(s->ks, &err);
	if (rc)
		gw_log_warn("usage", "cannot flush usage to the key store: %s (retried next time)", err.msg);
}

int gw_server_in_flight(struct gw_server *s)
{
	return atomic_load(&s->in_flight);
}

int gw_server_drain(struct gw_server *s, long deadline_ms)
{
	atomic_store(&s->draining, 1);
	/* every worker stops accepting and closes its socket: new connections are refused */
	for (int i = 0; i < s->n_engines; i++)
		if (gw_engine_quiesce(s->engines[i], 2000))
			gw_log_warn("drain", "worker %d did not stop accepting within 2 s", i);
	int64_t end = gw_now_ns() + (int64_t)deadline_ms * 1000000;
	while ((engines_in_flight(s) > 0 || atomic_load(&s->admitting) > 0) && gw_now_ns() < end)
		usleep(10000);
	int cut = engines_in_flight(s);
	engines_cancel_all(s);
	/* let MHD write the last bytes of finished streams and the cancelled ones close */
	int64_t end2 = gw_now_ns() + 2000000000LL;
	while (engines_in_flight(s) > 0 && gw_now_ns() < end2)
		usleep(5000);
	usleep(50000);
	return cut;
}

void gw_server_free(struct gw_server *s)
{
	if (!s)
		return;
	/* MHD_stop_daemon with suspended connections is an API violation: admissions still out come
	 * back (the limiter answers or times out), the engine resumes every waiting connection when
	 * it cancels the calls; give the workers a moment to see it. */
	int64_t end = gw_now_ns() + 3000000000LL;
	do {
		engines_cancel_all(s);
		usleep(2000);
	} while ((engines_in_flight(s) > 0 || atomic_load(&s->admitting) > 0) && gw_now_ns() < end);
	/* marketplace workers post to the engine: they stop (their calls were cancelled above, so
	 * they return at once) before the engine goes */
	gw_market_stop(s->market);
	if (s->admin)
		MHD_stop_daemon(s->admin);
	/* the threads stop running their daemons, then the daemons stop from here (their completion
	 * callbacks may still post cancels to the stopped engines, which gw_engine_free releases) */
	for (int i = 0; i < s->n_engines; i++)
		gw_engine_stop(s->engines[i]);
	for (int i = 0; i < GW_MAX_ENGINES; i++)
		if (s->d[i])
			MHD_stop_daemon(s->d[i]);
	for (int i = 0; i < s->n_engines; i++)
		gw_engine_free(s->engines[i]);
	gw_rl_free(s->rl);
	gw_config_unref(s->cfg);
	pthread_mutex_destroy(&s->cfg_mu);
	free(s);
}
