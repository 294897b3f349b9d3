/*
 * The marketplace backend: worker threads running rc_pool_prompt() for engine calls.
 *
 * Ownership of a request's state (struct mcall): the worker owns it from start() to the end of
 * the request; the call points at it (c->priv) only while the worker runs, under c->mu, so the
 * engine's cancel() can write its cancel eventfd and never touch freed memory: the worker
 * detaches (c->priv = NULL under c->mu) before it closes the fd and frees the state, and only
 * then posts the end of the call to the engine (gw_engine_post_done). A call cancelled by the
 * engine is finished by the engine at once (the client sees the end right away); the worker
 * learns it from the eventfd or the flag and its late deliveries are ignored by the engine
 * (gw_engine_on_* do nothing on a finished call).
 */
#include "gw_market.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <router-core/rc_addr.h>
#include <router-core/rc_gojson.h>
#include <router-core/rc_hex.h>
#include <router-core/rc_network.h>

#include "gw_log.h"

struct mcall {
	struct gw_market *mk;
	struct gw_engine *e;
	struct gw_call *c;
	int cancel_fd;
	int cancelled;       /* under c->mu */
	int got_chunk;       /* under c->mu: the first chunk arrived */
	int timed_out;       /* under c->mu: market_tick answered 504 (and counted it) */
	int stream;
	int64_t deadline_ms; /* CLOCK_MONOTONIC ms */
	uint64_t chunks;
	int saw_finish;      /* a chunk with a non-null finish_reason */
	int have_ufp;        /* usage_from_provider seen */
	int64_t ufp_prompt, ufp_completion;
	struct rc_buf frame; /* the SSE event being built (reused per chunk) */
	struct mcall *next;
};

struct gw_market {
	struct rc_pool *pool;
	struct rc_rpc *rpc;
	uint64_t chain_id;
	long nworkers, deadline_ms, max_queue;
	int coordinated;
	struct gw_backend backend;
	struct gw_backend_cfg bcfg;
	pthread_t *threads;
	long nthreads;
	pthread_t check_thread;
	int have_check;
	pthread_mutex_t mu;
	pthread_cond_t cond;      /* work for the workers */
	pthread_cond_t stop_cond; /* the check thread's sleep */
	struct mcall *head, *tail;
	long queued;
	atomic_long running;
	int stopping, stopped;
	int abandoned;         /* stop gave up waiting: workers no longer touch the engine */
	atomic_int chain_id_state;
	atomic_ullong chain_id_actual;
	atomic_ullong errors[RC_POOL_INTERNAL + 1];
};

/* ---- pure parts ------------------------------------------------------------------------------ */

int gw_market_frame_chunk(struct rc_buf *out, const char *p, size_t n)
{
	size_t start = out->len;
	if (rc_buf_grow(out, n + 8))
		return RC_ENOMEM;
	memcpy(out->ptr + start, "data: ", 6);
	char *d = out->ptr + start + 6;
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		/* an SSE line ends at CR or LF: keep the event one line */
		d[i] = ch == '\n' || ch == '\r' ? ' ' : ch;
	}
	d[n] = '\n';
	d[n + 1] = '\n';
	rc_buf_setlen(out, start + n + 8);
	return RC_OK;
}

static int usage_of(json_t *u, int64_t *prompt, int64_t *completion)
{
	if (!json_is_object(u))
		return 0;
	json_t *pt = json_object_get(u, "prompt_tokens"), *ct = json_object_get(u, "completion_tokens");
	if (!json_is_integer(pt) && !json_is_integer(ct))
		return 0;
	int64_t pv = json_is_integer(pt) ? json_integer_value(pt) : 0;
	int64_t cv = json_is_integer(ct) ? json_integer_value(ct) : 0;
	*prompt = pv > 0 ? pv : 0;
	*completion = cv > 0 ? cv : 0;
	return 1;
}

int gw_market_usage(const char *p, size_t n, int64_t *prompt, int64_t *completion)
{
	/* most chunks carry neither word: parse only the ones that can matter */
	if (!memmem(p, n, "\"usage", 6))
		return 0;
	json_t *root = json_loadb(p, n, 0, NULL);
	int rc = 0;
	if (json_is_object(root)) {
		if (usage_of(json_object_get(root, "usage"), prompt, completion))
			rc = 1;
		else if (usage_of(json_object_get(root, "usage_from_provider"), prompt, completion))
			rc = 2;
	}
	json_decref(root);
	return rc;
}

int gw_market_has_finish(const char *p, size_t n)
{
	static const char key[] = "\"finish_reason\"";
	const char *end = p + n;
	while (p < end) {
		const char *k = memmem(p, (size_t)(end - p), key, sizeof key - 1);
		if (!k)
			return 0;
		const char *q = k + sizeof key - 1;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q < end && *q == ':') {
			q++;
			while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
				q++;
			if (q < end && *q == '"')
				return 1;
		}
		p = k + 1;
	}
	return 0;
}

/* Printable ASCII only (a provider's text is untrusted bytes), cut to fit. */
static void sanitize(char *dst, size_t cap, const char *src)
{
	size_t j = 0;
	for (size_t i = 0; src && src[i] && j + 1 < cap; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[j++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	dst[j] = '\0';
}

#define SET_ERR(o, st, ty, co, ra)                                                                 \
	do {                                                                                       \
		(o)->status = (st);                                                                \
		(o)->retry_after_s = (ra);                                                         \
		snprintf((o)->type, sizeof (o)->type, "%s", (ty));                                 \
		snprintf((o)->code, sizeof (o)->code, "%s", (co));                                 \
	} while (0)

void gw_market_map_error(const struct rc_pool_err *err, const char *model, struct gw_call_error *out,
			 int *be_err)
{
	char name[136], text[300];
	sanitize(name, sizeof name, model);
	sanitize(text, sizeof text, err->text);
	memset(out, 0, sizeof *out);
	*be_err = GW_BE_EUNAVAILABLE;
	switch (err->reason) {
	case RC_POOL_OK:
		*be_err = GW_BE_OK;
		return;
	case RC_POOL_CANCELLED:
		*be_err = GW_BE_ECANCELLED;
		return;
	case RC_POOL_UNKNOWN_MODEL:
		SET_ERR(out, 404, "invalid_request_error", "model_not_found", 0);
		snprintf(out->message, sizeof out->message, "the model '%s' does not exist", name);
		return;
	case RC_POOL_NO_BIDS:
		SET_ERR(out, 503, "server_error", "no_bids", 5);
		snprintf(out->message, sizeof out->message, "no provider offers model %s right now", name);
		return;
	case RC_POOL_NO_PROVIDER:
		SET_ERR(out, 503, "server_error", "no_provider", 1);
		snprintf(out->message, sizeof out->message, "no provider could serve model %s right now%s%s",
			 name, text[0] ? ": " : "", text);
		return;
	case RC_POOL_CHAIN:
		SET_ERR(out, 503, "server_error", "chain_unreachable", 5);
		snprintf(out->message, sizeof out->message,
			 "the marketplace chain is unreachable: cannot open a session");
		return;
	case RC_POOL_FUNDS:
		SET_ERR(out, 503, "server_error", "marketplace_funds", 30);
		snprintf(out->message, sizeof out->message,
			 "the gateway's marketplace wallet cannot pay for a session for model %s right now",
			 name);
		return;
	case RC_POOL_TIMEOUT:
		*be_err = GW_BE_ETIMEOUT;
		SET_ERR(out, 504, "timeout_error", "marketplace_timeout", 0);
		snprintf(out->message, sizeof out->message,
			 "no provider answered for model %s in time", name);
		return;
	case RC_POOL_PROVIDER:
		*be_err = GW_BE_EUPSTREAM;
		SET_ERR(out, 502, "upstream_error", "upstream_failed", 0);
		snprintf(out->message, sizeof out->message, "the provider failed during the response%s%s",
			 text[0] ? ": " : "", text);
		return;
	case RC_POOL_PROVIDER_ERROR:
		*be_err = GW_BE_EUPSTREAM;
		SET_ERR(out, 502, "upstream_error", "provider_error", 0);
		snprintf(out->message, sizeof out->message, "the provider answered with an error: %s",
			 text[0] ? text : "(no text)");
		return;
	default:
		*be_err = GW_BE_EUPSTREAM;
		SET_ERR(out, 502, "server_error", "marketplace_error", 0);
		snprintf(out->message, sizeof out->message, "the marketplace request for model %s failed",
			 name);
		return;
	}
}

int gw_market_error_event(struct rc_buf *out, const struct gw_call_error *e)
{
	json_t *o = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", e->message, "type", e->type,
			      "param", "code", e->code);
	char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(o);
	if (!txt)
		return RC_ENOMEM;
	int rc = rc_buf_append(out, "data: ", 6);
	if (!rc)
		rc = rc_buf_append(out, txt, strlen(txt));
	if (!rc)
		rc = rc_buf_append(out, "\n\n", 2);
	free(txt);
	return rc;
}

#define STOP_WAIT_S 5
#define DEADLINE_GRACE_MS 2000

#define LIT(s) s, sizeof(s) - 1 /* a string literal and its length */

int gw_market_model_json(struct rc_buf *b, const struct rc_pool_model *m, const char *alias)
{
	int rc = rc_buf_append(b, LIT("{\"id\":"));
	size_t nl = strnlen(m->name, sizeof m->name);
	if (!rc)
		rc = alias ? rc_gojson_append_string(b, alias, strlen(alias)) : rc_gojson_append_string(b, m->name, nl);
	if (!rc)
		rc = rc_buf_append(b, LIT(",\"object\":\"model\",\"created\":"));
	if (!rc)
		rc = rc_buf_append_u64(b, m->created_at);
	if (!rc)
		rc = rc_buf_append(b, LIT(",\"owned_by\":\"morpheus\",\"morpheus\":{\"model_id\":\"0x"));
	if (!rc)
		rc = rc_buf_append_hex(b, m->id, 32);
	if (!rc)
		rc = rc_buf_append(b, LIT("\",\"tags\":["));
	for (size_t i = 0; !rc && i < m->ntags && i < RC_MARKET_MAX_TAGS; i++) {
		if (i)
			rc = rc_buf_putc(b, ',');
		if (!rc)
			rc = rc_gojson_append_string(b, m->tags[i], strnlen(m->tags[i], sizeof m->tags[i]));
	}
	if (!rc)
		rc = rc_buf_append(b, LIT("],\"active_bids\":"));
	if (!rc)
		rc = rc_buf_append_u64(b, m->active_bids);
	if (!rc && alias) {
		rc = rc_buf_append(b, LIT(",\"alias_of\":"));
		if (!rc)
			rc = rc_gojson_append_string(b, m->name, nl);
	}
	if (!rc)
		rc = rc_buf_append(b, LIT("}}"));
	return rc;
}

/* ---- session records ------------------------------------------------------------------------- */

static void copy_cut(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void hex_or_empty(char *dst, size_t cap, const uint8_t *p, size_t n)
{
	if (all_zero(p, n))
		dst[0] = '\0';
	else
		rc_hex_encode_0x(p, n, dst, cap);
}

/* Chain strings (model name, endpoint) are untrusted bytes; the key store takes printable text
 * only, so control bytes become '?' (the row must still be written: it is the restart record). */
static void printable_copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
	for (char *q = dst; *q; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f)
			*q = '?';
}

void gw_market_session_to_ks(const struct rc_pool_session *s, struct ks_session *o)
{
	memset(o, 0, sizeof *o);
	o->local_id = (int64_t)s->local_id;
	hex_or_empty(o->id, sizeof o->id, s->id, 32);
	rc_hex_encode_0x(s->model_id, 32, o->model_id, sizeof o->model_id);
	/* a session adopted from the chain whose model is not in the catalogue: its id names it */
	printable_copy(o->model, sizeof o->model, s->model[0] ? s->model : o->model_id);
	rc_hex_encode_0x(s->bid_id, 32, o->bid_id, sizeof o->bid_id);
	rc_addr_format(s->provider, o->provider);
	printable_copy(o->endpoint, sizeof o->endpoint, s->endpoint);
	hex_or_empty(o->provider_key, sizeof o->provider_key, s->provider_key, RC_SECP_PUBKEY_LEN);
	rc_u256_format_dec(&s->stake, o->stake, sizeof o->stake);
	rc_u256_format_dec(&s->price_per_second, o->price, sizeof o->price);
	o->opened_at = (int64_t)s->opened_at;
	o->ends_at = (int64_t)s->ends_at;
	o->closed_at = (int64_t)s->closed_at;
	snprintf(o->state, sizeof o->state, "%s", rc_pool_state_name(s->state));
	o->dispute = s->dispute;
	o->requests = (int64_t)s->requests;
	o->failures = (int64_t)s->failures;
	hex_or_empty(o->open_tx, sizeof o->open_tx, s->open_tx, 32);
	hex_or_empty(o->close_tx, sizeof o->close_tx, s->close_tx, 32);
	o->updated_at = s->updated_ms;
}

static int hex_field(const char *s, uint8_t *out, size_t n)
{
	if (!s[0]) {
		memset(out, 0, n);
		return 0;
	}
	return rc_hex_decode_exact(s, strlen(s), out, n, NULL) == RC_OK ? 0 : -1;
}

int gw_market_session_from_ks(const struct ks_session *in, struct rc_pool_session *o)
{
	memset(o, 0, sizeof *o);
	o->local_id = (uint64_t)in->local_id;
	if (hex_field(in->id, o->id, 32) || hex_field(in->model_id, o->model_id, 32) ||
	    hex_field(in->bid_id, o->bid_id, 32) || hex_field(in->provider_key, o->provider_key, RC_SECP_PUBKEY_LEN) ||
	    hex_field(in->open_tx, o->open_tx, 32) || hex_field(in->close_tx, o->close_tx, 32))
		return -1;
	if (!in->provider[0] || rc_addr_parse(o->provider, in->provider, strlen(in->provider), NULL) != RC_OK)
		return -1;
	if ((in->stake[0] && rc_u256_parse_dec(&o->stake, in->stake, strlen(in->stake), NULL) != RC_OK) ||
	    (in->price[0] && rc_u256_parse_dec(&o->price_per_second, in->price, strlen(in->price), NULL) != RC_OK))
		return -1;
	copy_cut(o->model, sizeof o->model, in->model);
	copy_cut(o->endpoint, sizeof o->endpoint, in->endpoint);
	o->opened_at = in->opened_at > 0 ? (uint64_t)in->opened_at : 0;
	o->ends_at = in->ends_at > 0 ? (uint64_t)in->ends_at : 0;
	o->closed_at = in->closed_at > 0 ? (uint64_t)in->closed_at : 0;
	int st = 0;
	for (int i = RC_POOL_S_OPENING; i <= RC_POOL_S_FAILED; i++)
		if (!strcmp(in->state, rc_pool_state_name((enum rc_pool_state)i)))
			st = i;
	if (!st)
		return -1;
	o->state = (enum rc_pool_state)st;
	o->dispute = in->dispute != 0;
	o->requests = in->requests > 0 ? (uint64_t)in->requests : 0;
	o->failures = in->failures > 0 ? (uint64_t)in->failures : 0;
	o->updated_ms = in->updated_at;
	return 0;
}

static int store_save(void *ud, const struct rc_pool_session *s)
{
	struct ks_session k;
	struct ks_err err;
	gw_market_session_to_ks(s, &k);
	int rc = ks_session_put(ud, &k, &err);
	if (rc)
		gw_log_error("market", "cannot record session %llu in the key store: %s",
			     (unsigned long long)s->local_id, err.msg);
	return rc;
}

struct load_ctx {
	int (*cb)(void *cbud, const struct rc_pool_session *s);
	void *cbud;
};

static int store_load_one(void *ctx, const struct ks_session *k)
{
	struct load_ctx *l = ctx;
	struct rc_pool_session s;
	if (gw_market_session_from_ks(k, &s)) {
		gw_log_warn("market", "session record %lld in the key store does not parse: skipped",
			    (long long)k->local_id);
		return 0;
	}
	return l->cb(l->cbud, &s);
}

static int store_load(void *ud, int (*cb)(void *cbud, const struct rc_pool_session *s), void *cbud)
{
	struct load_ctx l = {cb, cbud};
	struct ks_err err;
	int rc = ks_session_list(ud, NULL, store_load_one, &l, &err);
	if (rc < 0)
		gw_log_error("market", "cannot read the session records: %s", err.msg);
	return rc;
}

const struct rc_pool_store_ops gw_market_store_ops = {store_save, store_load};

/* ---- the backend ----------------------------------------------------------------------------- */

static void mcall_free(struct mcall *m)
{
	if (!m)
		return;
	if (m->cancel_fd >= 0)
		close(m->cancel_fd);
	rc_buf_release(&m->frame);
	free(m);
}

static int market_start(struct gw_engine *e, struct gw_call *c)
{
	struct gw_market *mk = c->backend->ud;
	struct mcall *m = calloc(1, sizeof *m);
	if (!m)
		abort();
	m->mk = mk;
	m->e = e;
	m->c = c;
	m->stream = c->info.stream;
	m->deadline_ms = rc_mono_ms() + mk->deadline_ms;
	m->cancel_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (m->cancel_fd < 0) {
		mcall_free(m);
		return GW_BE_EUNAVAILABLE;
	}
	pthread_mutex_lock(&mk->mu);
	if (mk->stopping || mk->queued >= mk->max_queue) {
		pthread_mutex_unlock(&mk->mu);
		mcall_free(m);
		pthread_mutex_lock(&c->mu);
		struct gw_call_error *ce = gw_call_error_of(c);
		snprintf(ce->type, sizeof ce->type, "server_error");
		snprintf(ce->code, sizeof ce->code, "overloaded");
		snprintf(ce->message, sizeof ce->message,
			 "too many marketplace requests are waiting; retry shortly");
		ce->retry_after_s = 1;
		ce->status = 503;
		pthread_mutex_unlock(&c->mu);
		return GW_BE_EUNAVAILABLE;
	}
	pthread_mutex_lock(&c->mu);
	c->priv = m;
	/* what the client hears if the engine's backstop timer ends the call before the pool
	 * answers (the worker replaces it with the pool's own reason when it has one) */
	struct rc_pool_err te;
	memset(&te, 0, sizeof te);
	te.reason = RC_POOL_TIMEOUT;
	int be;
	gw_market_map_error(&te, c->market_model, gw_call_error_of(c), &be);
	pthread_mutex_unlock(&c->mu);
	atomic_fetch_add(&c->refs, 1); /* the worker's */
	if (mk->tail)
		mk->tail->next = m;
	else
		mk->head = m;
	mk->tail = m;
	mk->queued++;
	pthread_cond_signal(&mk->cond);
	pthread_mutex_unlock(&mk->mu);
	return GW_BE_OK;
}

/* Engine thread: the client left, the drain deadline passed, or the engine stops. */
static void market_cancel(struct gw_engine *e, struct gw_call *c)
{
	(void)e;
	pthread_mutex_lock(&c->mu);
	struct mcall *m = c->priv;
	if (m) {
		m->cancelled = 1;
		uint64_t one = 1;
		ssize_t w = write(m->cancel_fd, &one, sizeof one);
		(void)w;
	}
	pthread_mutex_unlock(&c->mu);
}

/*
 * Engine thread, every scan: a request the pool has not answered by its deadline (plus a grace
 * for a transaction in flight) ends here with the pool's 504 words. The pool watches cancel_fd
 * on links and between steps, but a chain write waiting for a lock or a receipt may not: the
 * client must not wait for it. The worker, cancelled, finishes on its own later.
 */
static void market_tick(struct gw_engine *e, struct gw_call *c, int64_t now_ns)
{
	(void)now_ns;
	pthread_mutex_lock(&c->mu);
	struct mcall *m = c->priv;
	int expired = m && !m->got_chunk && !m->cancelled && rc_mono_ms() > m->deadline_ms + DEADLINE_GRACE_MS;
	char model[GW_MODEL_MAX + 1];
	if (expired) {
		m->cancelled = 1;
		m->timed_out = 1;
		uint64_t one = 1;
		ssize_t w = write(m->cancel_fd, &one, sizeof one);
		(void)w;
		snprintf(model, sizeof model, "%s", c->market_model ? c->market_model : "");
	}
	pthread_mutex_unlock(&c->mu);
	if (!expired)
		return;
	struct gw_market *mk = c->backend->ud;
	atomic_fetch_add(&mk->errors[RC_POOL_TIMEOUT], 1);
	struct rc_pool_err te;
	memset(&te, 0, sizeof te);
	te.reason = RC_POOL_TIMEOUT;
	struct gw_call_error ce;
	int be;
	gw_market_map_error(&te, model, &ce, &be);
	struct rc_buf ev = RC_BUF_INIT;
	if (gw_market_error_event(&ev, &ce) == RC_OK)
		gw_call_stream_error(c, ev.ptr, ev.len); /* a stream started by the cold start */
	rc_buf_release(&ev);
	gw_log_warn("market", "rid=%s model=%s: no first chunk by the request deadline: answered 504", c->rid,
		    model);
	gw_engine_on_done(e, c, GW_BE_ETIMEOUT, "marketplace deadline passed");
}

static const struct gw_backend_ops market_ops = {"marketplace", market_start, market_cancel, market_tick};

static int is_cancelled(struct mcall *m)
{
	pthread_mutex_lock(&m->c->mu);
	int x = m->cancelled;
	pthread_mutex_unlock(&m->c->mu);
	return x;
}

/* Worker: a chunk arrived; 1 when the call was cancelled (stop the stream). */
static int chunk_gate(struct mcall *m)
{
	pthread_mutex_lock(&m->c->mu);
	int x = m->cancelled;
	m->got_chunk = 1;
	pthread_mutex_unlock(&m->c->mu);
	return x;
}

/* Worker thread: one verified, decrypted chunk. */
static int on_chunk(void *ud, enum rc_link_chunk kind, const uint8_t *data, size_t len)
{
	struct mcall *m = ud;
	if (kind != RC_LINK_CHUNK_DATA)
		return 0; /* a signed provider error: the pool returns PROVIDER_ERROR with its text */
	if (chunk_gate(m))
		return 1;
	const char *p = (const char *)data;
	m->chunks++;
	int64_t pt = 0, ct = 0;
	if (gw_market_usage(p, len, &pt, &ct) == 2) {
		/* the provider's count; the last one wins. A real "usage" is read by the SSE reader
		 * (streams) or the front end (one object) and takes precedence at the end. */
		m->have_ufp = 1;
		m->ufp_prompt = pt;
		m->ufp_completion = ct;
	}
	if (m->stream) {
		if (!m->saw_finish)
			m->saw_finish = gw_market_has_finish(p, len);
		if (m->chunks == 1)
			gw_engine_on_head(m->e, m->c, 200, "text/event-stream");
		rc_buf_reset(&m->frame);
		if (gw_market_frame_chunk(&m->frame, p, len))
			abort();
		gw_engine_on_data(m->e, m->c, m->frame.ptr, m->frame.len);
	} else if (m->chunks == 1) {
		/* §2.5.3: a non-streaming answer is one chat.completion object */
		gw_engine_on_head(m->e, m->c, 200, "application/json");
		gw_engine_on_data(m->e, m->c, p, len);
	}
	return 0;
}

/* Worker thread: the pool has to open or wait for a session (cold start). */
static void on_wait(void *ud)
{
	struct mcall *m = ud;
	gw_call_start_stream(m->c, ": opening a marketplace session\n\n", GW_MARKET_OPEN_KEEPALIVE_MS);
}

static void run_call(struct gw_market *mk, struct mcall *m)
{
	struct gw_call *c = m->c;
	struct rc_pool_result res;
	struct rc_pool_err err;
	memset(&res, 0, sizeof res);
	memset(&err, 0, sizeof err);
	int rc;
	int64_t t0 = rc_mono_ms();
	if (is_cancelled(m)) {
		err.reason = RC_POOL_CANCELLED;
		rc = RC_EIO;
	} else {
		/* §2.3 / trap 1: the provider verifies its own re-encoding of the message, so invalid
		 * UTF-8 is replaced as Go does before it is signed */
		struct rc_buf msg = RC_BUF_INIT;
		if (rc_gojson_append_valid_utf8(&msg, c->body.ptr ? c->body.ptr : "", c->body.len))
			abort();
		struct rc_pool_request rq = {0};
		rq.model = c->market_model;
		rq.message = rc_buf_str(&msg);
		rq.on_chunk = on_chunk;
		rq.ud = m;
		rq.deadline_ms = m->deadline_ms;
		rq.cancel_fd = m->cancel_fd;
		rq.on_wait = m->stream ? on_wait : NULL;
		rc = rc_pool_prompt(mk->pool, &rq, &res, &err);
		rc_buf_release(&msg);
		if (rc == RC_OK)
			err.reason = RC_POOL_OK;
		else if (err.reason == RC_POOL_OK)
			err.reason = RC_POOL_INTERNAL;
		if (err.reason != RC_POOL_CANCELLED && is_cancelled(m))
			err.reason = RC_POOL_CANCELLED;
	}
	if (!m->stream && err.reason == RC_POOL_OK && m->chunks == 0) {
		err.reason = RC_POOL_PROVIDER;
		snprintf(err.text, sizeof err.text, "no answer");
	}
	if (m->stream && err.reason == RC_POOL_OK && !res.stream.done && !m->saw_finish) {
		/* EOF after a chunk is a valid end for the link (§2.5.3), but a chat stream that
		 * stopped before its finish_reason and without [DONE] was cut: say so to the client
		 * instead of a [DONE] that would pass a truncated answer off as complete */
		err.reason = RC_POOL_PROVIDER;
		snprintf(err.text, sizeof err.text, "the provider closed the stream before its end");
	}
	pthread_mutex_lock(&c->mu);
	int timed_out = m->timed_out;
	pthread_mutex_unlock(&c->mu);
	if (!timed_out)
		atomic_fetch_add(&mk->errors[err.reason <= RC_POOL_INTERNAL ? err.reason : RC_POOL_INTERNAL], 1);

	struct gw_call_error ce;
	int be;
	gw_market_map_error(&err, c->market_model, &ce, &be);
	char logmsg[160];
	char prov[RC_ADDR_STR_SIZE] = "-";
	if (!all_zero(res.provider, 20))
		rc_addr_format(res.provider, prov);
	snprintf(logmsg, sizeof logmsg, "marketplace: %s", rc_pool_reason_name(err.reason));
	if (err.reason == RC_POOL_OK) {
		gw_log_debug("market", "rid=%s model=%s provider=%s attempts=%u opened=%d session_wait_ms=%lld "
			     "chunks=%llu ms=%lld",
			     c->rid, c->market_model, prov, res.attempts, res.opened, (long long)res.session_wait_ms,
			     (unsigned long long)m->chunks, (long long)(rc_mono_ms() - t0));
	} else if (err.reason != RC_POOL_CANCELLED) {
		char text[300];
		sanitize(text, sizeof text, err.text);
		gw_log_warn("market", "rid=%s model=%s provider=%s attempts=%u reason=%s: %s", c->rid,
			    c->market_model, prov, res.attempts, rc_pool_reason_name(err.reason), text);
	}
	if (err.reason == RC_POOL_OK) {
		pthread_mutex_lock(&c->mu);
		if (!c->sse.have_usage && m->have_ufp) {
			c->sse.have_usage = 1;
			c->sse.prompt_tokens = m->ufp_prompt;
			c->sse.completion_tokens = m->ufp_completion;
		}
		pthread_mutex_unlock(&c->mu);
	} else if (err.reason != RC_POOL_CANCELLED) {
		int sent = 0;
		if (m->stream) {
			rc_buf_reset(&m->frame);
			if (gw_market_error_event(&m->frame, &ce) == RC_OK)
				sent = gw_call_stream_error(c, m->frame.ptr, m->frame.len);
		}
		if (!sent) {
			pthread_mutex_lock(&c->mu);
			*gw_call_error_of(c) = ce;
			pthread_mutex_unlock(&c->mu);
		}
	}
	/* detach before the state goes away: cancel() only sees c->priv under c->mu */
	pthread_mutex_lock(&c->mu);
	c->priv = NULL;
	pthread_mutex_unlock(&c->mu);
	struct gw_engine *e = m->e;
	mcall_free(m);
	/* under mk->mu: once gw_market_stop() has given up on us the engine may be gone */
	pthread_mutex_lock(&mk->mu);
	if (!mk->abandoned)
		gw_engine_post_done(e, c, be, logmsg);
	pthread_mutex_unlock(&mk->mu);
	gw_call_unref(c); /* the worker's reference */
}

static void *worker_main(void *arg)
{
	struct gw_market *mk = arg;
	for (;;) {
		pthread_mutex_lock(&mk->mu);
		while (!mk->head && !mk->stopping)
			pthread_cond_wait(&mk->cond, &mk->mu);
		struct mcall *m = mk->head;
		if (!m) {
			pthread_mutex_unlock(&mk->mu);
			break;
		}
		mk->head = m->next;
		if (!mk->head)
			mk->tail = NULL;
		mk->queued--;
		if (mk->stopping) {
			/* shutting down: whatever still waits is cancelled without touching the pool */
			pthread_mutex_lock(&m->c->mu);
			m->cancelled = 1;
			pthread_mutex_unlock(&m->c->mu);
		}
		pthread_mutex_unlock(&mk->mu);
		atomic_fetch_add(&mk->running, 1);
		run_call(mk, m);
		atomic_fetch_sub(&mk->running, 1);
	}
	return NULL;
}

/* The start-up check of the node's chain id, in the background: retried while the node is
 * unreachable, never blocking start-up or requests (a warm session needs no chain call). */
static void *check_main(void *arg)
{
	struct gw_market *mk = arg;
	int warned = 0;
	for (;;) {
		struct rc_rpc_error err;
		memset(&err, 0, sizeof err);
		uint64_t actual = 0;
		int rc = rc_network_check_chain_id(mk->rpc, mk->chain_id, &actual, &err);
		if (rc == RC_OK) {
			atomic_store(&mk->chain_id_state, 1);
			gw_log_info("market", "chain id %llu confirmed by the RPC node", (unsigned long long)actual);
			return NULL;
		}
		if (rc == RC_ECHAINID) {
			atomic_store(&mk->chain_id_actual, actual);
			atomic_store(&mk->chain_id_state, -1);
			gw_log_error("market",
				     "the RPC node is on chain %llu, but the marketplace is configured for chain %llu: "
				     "marketplace requests are refused",
				     (unsigned long long)actual, (unsigned long long)mk->chain_id);
			return NULL;
		}
		if (!warned) {
			gw_log_warn("market", "cannot check the chain id yet (%s: %s); retrying in the background",
				    rc_rpc_strerror(rc), err.url[0] ? err.url : "rpc");
			warned = 1;
		}
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		pthread_mutex_lock(&mk->mu);
		while (!mk->stopping) {
			if (pthread_cond_timedwait(&mk->stop_cond, &mk->mu, &until) == ETIMEDOUT)
				break;
		}
		int stop = mk->stopping;
		pthread_mutex_unlock(&mk->mu);
		if (stop)
			return NULL;
	}
}

int gw_market_new(const struct gw_market_opts *o, struct gw_market **out)
{
	*out = NULL;
	if (!o->pool || o->workers < 1)
		return -1;
	struct gw_market *mk = calloc(1, sizeof *mk);
	if (!mk)
		return -1;
	mk->pool = o->pool;
	mk->rpc = o->rpc;
	mk->chain_id = o->chain_id;
	mk->nworkers = o->workers;
	mk->deadline_ms = o->request_deadline_ms > 0 ? o->request_deadline_ms : 60000;
	mk->max_queue = o->max_queue > 0 ? o->max_queue : o->workers * 64;
	mk->coordinated = o->coordinated;
	mk->backend.ops = &market_ops;
	mk->backend.ud = mk;
	mk->bcfg.name = (char *)"marketplace";
	mk->bcfg.kind = GW_BACKEND_DIRECT;
	/* the pool times a request out itself (504 with its own words); the engine's first-byte
	 * timer is only a backstop after it (a transaction in flight at the deadline may finish) */
	mk->bcfg.first_byte_timeout_ms = mk->deadline_ms + 10000;
	mk->bcfg.connect_timeout_ms = mk->deadline_ms;
	mk->bcfg.idle_timeout_ms = 300000;
	mk->bcfg.total_timeout_ms = 1800000;
	pthread_mutex_init(&mk->mu, NULL);
	pthread_cond_init(&mk->cond, NULL);
	pthread_cond_init(&mk->stop_cond, NULL);
	mk->threads = calloc((size_t)o->workers, sizeof *mk->threads);
	if (!mk->threads)
		goto fail;
	for (long i = 0; i < o->workers; i++) {
		if (pthread_create(&mk->threads[i], NULL, worker_main, mk) != 0)
			goto fail;
		mk->nthreads++;
	}
	if (mk->rpc) {
		if (pthread_create(&mk->check_thread, NULL, check_main, mk) != 0)
			goto fail;
		mk->have_check = 1;
	}
	*out = mk;
	return 0;
fail:
	gw_market_free(mk);
	return -1;
}

int gw_market_stop(struct gw_market *mk)
{
	if (!mk)
		return 0;
	pthread_mutex_lock(&mk->mu);
	if (mk->stopped) {
		int rc = mk->abandoned ? -1 : 0;
		pthread_mutex_unlock(&mk->mu);
		return rc;
	}
	mk->stopping = 1;
	pthread_cond_broadcast(&mk->cond);
	pthread_cond_broadcast(&mk->stop_cond);
	pthread_mutex_unlock(&mk->mu);
	/* Workers whose calls were cancelled return at once, but one may be inside a chain write
	 * (a receipt wait is not interruptible): wait a bounded time, then leave it be. */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += STOP_WAIT_S;
	long left = 0;
	for (long i = 0; i < mk->nthreads; i++)
		if (pthread_timedjoin_np(mk->threads[i], NULL, &until) != 0)
			mk->threads[left++] = mk->threads[i];
	if (mk->have_check && pthread_timedjoin_np(mk->check_thread, NULL, &until) == 0)
		mk->have_check = 0;
	mk->nthreads = left;
	pthread_mutex_lock(&mk->mu);
	mk->stopped = 1;
	mk->abandoned = left > 0 || mk->have_check;
	int rc = mk->abandoned ? -1 : 0;
	pthread_mutex_unlock(&mk->mu);
	if (rc)
		gw_log_warn("market", "%ld marketplace worker(s) still busy with the chain after %d s: not waiting",
			    left, STOP_WAIT_S);
	return rc;
}

void gw_market_free(struct gw_market *mk)
{
	if (!mk)
		return;
	if (gw_market_stop(mk))
		return; /* a worker still runs: it owns mk until the process exits */
	free(mk->threads);
	pthread_cond_destroy(&mk->cond);
	pthread_cond_destroy(&mk->stop_cond);
	pthread_mutex_destroy(&mk->mu);
	free(mk);
}

struct gw_backend *gw_market_backend(struct gw_market *mk)
{
	return &mk->backend;
}

const struct gw_backend_cfg *gw_market_backend_cfg(struct gw_market *mk)
{
	return &mk->bcfg;
}

int gw_market_lookup(struct gw_market *mk, const char *name, struct rc_pool_model *out)
{
	struct rc_pool_model tmp;
	if (rc_pool_model_find(mk->pool, name, out ? out : &tmp) == RC_OK)
		return GW_MARKET_FOUND;
	struct rc_pool_stats st;
	rc_pool_get_stats(mk->pool, &st);
	return st.catalog_refreshed_ms ? GW_MARKET_UNKNOWN : GW_MARKET_LOADING;
}

int gw_market_catalog(struct gw_market *mk, struct rc_pool_model **out, size_t *n)
{
	int64_t refreshed = 0;
	*out = NULL;
	*n = 0;
	if (rc_pool_catalog(mk->pool, out, n, &refreshed) != RC_OK) {
		free(*out);
		*out = NULL;
		*n = 0;
		return GW_MARKET_LOADING;
	}
	if (!refreshed) {
		free(*out);
		*out = NULL;
		*n = 0;
		return GW_MARKET_LOADING;
	}
	return GW_MARKET_FOUND;
}

void gw_market_status(struct gw_market *mk, struct gw_market_status *o)
{
	memset(o, 0, sizeof *o);
	rc_pool_get_stats(mk->pool, &o->pool);
	o->catalog_loaded = o->pool.catalog_refreshed_ms != 0;
	if (o->catalog_loaded) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		o->catalog_age_ms = now > o->pool.catalog_refreshed_ms ? now - o->pool.catalog_refreshed_ms : 0;
	} else {
		o->catalog_age_ms = -1;
	}
	o->chain_id_state = atomic_load(&mk->chain_id_state);
	o->chain_id_actual = atomic_load(&mk->chain_id_actual);
	o->coordinated = mk->coordinated;
	pthread_mutex_lock(&mk->mu);
	o->queued = mk->queued;
	pthread_mutex_unlock(&mk->mu);
	o->running = atomic_load(&mk->running);
	for (int i = 0; i <= RC_POOL_INTERNAL; i++)
		o->errors[i] = atomic_load(&mk->errors[i]);
}
