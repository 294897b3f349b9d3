/*
 * provider: libcurl backend adapters. One easy handle per call (calls are long streams; the
 * handshake cost is noise against a model's time to first token). The write callback cuts SSE
 * lines incrementally and hands each event on at once: no answer is buffered whole unless the
 * backend answered without streaming.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "pv_anthropic.h"
#include "pv_backend.h"
#include "pv_demo.h"

#define SSE_LINE_MAX (1u << 20)  /* longer SSE lines are a failure (the reference: 64 KiB) */
#define BODY_MAX (8u << 20)      /* whole non-streamed replies */
#define ERR_BODY_MAX (64u << 10) /* error bodies kept for the consumer */

struct call {
	const struct pv_model *m;
	const struct pv_backend_sink *sink;
	struct pv_backend_result *res;
	CURL *h;
	int checked;   /* status and content type looked at */
	int ok_status; /* 2xx */
	int sse;
	int done;            /* [DONE] / message_stop seen */
	int failed;          /* the callback stopped the transfer; res says why */
	struct rc_buf line;  /* partial SSE line */
	struct rc_buf body;  /* non-streamed reply or error body */
	struct rc_buf chunk; /* mapped chunk scratch */
	struct pv_anthropic_stream ast;
	int usage_seen;
};

/*
 * One connection cache for every call (a curl share handle): keep-alive connections to the
 * backend are reused across prompts and threads, which takes the TCP (and TLS) handshake out of
 * the time to first token. libcurl locks the shared data through these callbacks.
 */
static CURLSH *share;
static pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *u)
{
	pthread_mutex_lock(&share_mu[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *u)
{
	pthread_mutex_unlock(&share_mu[d]);
}

void pv_backend_global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&share_mu[i], NULL);
	share = curl_share_init();
	if (share && (curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock) ||
	              curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
	              curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) ||
	              curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
	              curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION))) {
		curl_share_cleanup(share);
		share = NULL; /* every call then opens its own connection: slower, still correct */
	}
}

void pv_backend_result_release(struct pv_backend_result *res)
{
	if (res)
		rc_buf_release(&res->err_body);
}

static void set_failed(struct call *c, enum pv_backend_outcome o, const char *text)
{
	if (c->failed)
		return;
	c->failed = 1;
	c->res->outcome = o;
	snprintf(c->res->text, sizeof c->res->text, "%s", text);
}

static int deliver(struct call *c, const char *json, size_t len)
{
	c->res->chunks++;
	if (c->sink->chunk(c->sink->ud, json, len)) {
		set_failed(c, PV_BACKEND_CANCELLED, "consumer went away");
		return -1;
	}
	return 0;
}

/*
 * An OpenAI chunk or whole reply: take the token counts (the backend's usage when present,
 * else one per content delta), and, like the reference (§2.5.3), add "usage_from_provider" to
 * the final chunk (non-empty finish_reason or a usage object). Chunks that are not JSON objects
 * go through untouched; the consumer decides what to make of them.
 */
static int deliver_openai(struct call *c, const char *p, size_t n, int count_content)
{
	json_t *v = json_loadb(p, n, 0, NULL);
	if (!json_is_object(v)) {
		json_decref(v);
		return deliver(c, p, n);
	}
	const json_t *u = json_object_get(v, "usage");
	const json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
	json_int_t pt = json_integer_value(json_object_get(u, "prompt_tokens"));
	json_int_t ct = json_integer_value(json_object_get(u, "completion_tokens"));
	if (json_is_object(u) && (pt > 0 || ct > 0)) {
		c->usage_seen = 1;
		c->res->tokens_in = (uint64_t)(pt > 0 ? pt : 0);
		c->res->tokens_out = (uint64_t)(ct > 0 ? ct : 0);
	} else if (count_content && !c->usage_seen) {
		const char *t =
		        json_string_value(json_object_get(json_object_get(ch, "delta"), "content"));
		if (t && *t)
			c->res->tokens_out++;
	}
	const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
	int rc;
	if ((fr && *fr) || json_is_object(u)) {
		uint64_t in = c->res->tokens_in, out = c->res->tokens_out;
		json_object_set_new(v, "usage_from_provider",
		                    json_pack("{s:I,s:I,s:I}", "completion_tokens", (json_int_t)out,
		                              "prompt_tokens", (json_int_t)in, "total_tokens",
		                              (json_int_t)(in + out)));
		char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
		rc = s ? deliver(c, s, strlen(s)) : deliver(c, p, n);
		free(s);
	} else
		rc = deliver(c, p, n);
	json_decref(v);
	return rc;
}

/* One complete SSE line (no line terminator). */
static int sse_line(struct call *c, const char *p, size_t n)
{
	if (n < 5 || memcmp(p, "data:", 5))
		return 0; /* event:, id:, comments, blank lines */
	p += 5;
	n -= 5;
	if (n && *p == ' ') {
		p++;
		n--;
	}
	if (c->m->api == PV_API_OPENAI) {
		/* trap 21: the reference stops at a data line that merely contains [DONE]. */
		if (memmem(p, n, "[DONE]", 6)) {
			c->done = 1;
			return 0;
		}
		return deliver_openai(c, p, n, 1);
	}
	int done = 0;
	struct rc_errinfo e;
	rc_buf_reset(&c->chunk);
	int rc = pv_anthropic_stream_event(&c->ast, p, n, &c->chunk, &done, &e);
	if (rc == RC_EPROTO && c->chunk.len) {
		c->res->outcome = PV_BACKEND_HTTP_ERROR;
		c->failed = 1;
		rc_buf_reset(&c->res->err_body);
		rc_buf_append(&c->res->err_body, c->chunk.ptr, c->chunk.len);
		return -1;
	}
	if (rc) {
		set_failed(c, PV_BACKEND_FAILED, "backend sent an event that is not JSON");
		return -1;
	}
	if (done)
		c->done = 1;
	if (c->chunk.len)
		return deliver_openai(c, c->chunk.ptr, c->chunk.len, 1);
	return 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
	struct call *c = ud;
	size_t n = size * nmemb;
	if (!c->checked) {
		long status = 0;
		const char *ct = NULL;
		curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(c->h, CURLINFO_CONTENT_TYPE, &ct);
		c->res->status = status;
		c->ok_status = status >= 200 && status < 300;
		c->sse = ct && !strncasecmp(ct, "text/event-stream", 17);
		c->checked = 1;
	}
	if (c->sink->cancelled && c->sink->cancelled(c->sink->ud)) {
		set_failed(c, PV_BACKEND_CANCELLED, "consumer went away");
		return 0;
	}
	if (!c->ok_status || !c->sse) {
		size_t cap = c->ok_status ? BODY_MAX : ERR_BODY_MAX;
		if (c->body.len + n > cap) {
			if (c->ok_status) {
				set_failed(c, PV_BACKEND_FAILED, "backend reply too large");
				return 0;
			}
			n = cap - c->body.len; /* keep the head of a huge error body */
			rc_buf_append(&c->body, data, n);
			return size * nmemb;
		}
		return rc_buf_append(&c->body, data, n) ? 0 : size * nmemb;
	}
	for (size_t i = 0; i < n && !c->done; i++) {
		if (data[i] != '\n') {
			if (c->line.len >= SSE_LINE_MAX) {
				set_failed(c, PV_BACKEND_FAILED,
				           "backend sent an SSE line over 1 MiB");
				return 0;
			}
			if (rc_buf_putc(&c->line, data[i]))
				return 0;
			continue;
		}
		size_t ll = c->line.len;
		if (ll && c->line.ptr[ll - 1] == '\r')
			ll--;
		int rc = sse_line(c, c->line.ptr ? c->line.ptr : "", ll);
		rc_buf_reset(&c->line);
		if (rc)
			return 0;
	}
	return size * nmemb;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct call *c = ud;
	if (c->sink->cancelled && c->sink->cancelled(c->sink->ud)) {
		set_failed(c, PV_BACKEND_CANCELLED, "consumer went away");
		return 1;
	}
	return 0;
}

/* ---- the demo backend (pv_demo.h): no HTTP, but paced, cancellable and bounded like one ---- */

/* Wait ms, polling the sink every 100 ms at most (as curl's progress callback does); -1 when the
 * consumer went away or the deadline passed (res says which). */
static int demo_pause(struct call *c, long ms, int64_t deadline)
{
	int64_t until = rc_mono_ms() + ms;
	for (;;) {
		if (c->sink->cancelled && c->sink->cancelled(c->sink->ud)) {
			set_failed(c, PV_BACKEND_CANCELLED, "consumer went away");
			return -1;
		}
		int64_t now = rc_mono_ms();
		if (now >= deadline) {
			set_failed(c, PV_BACKEND_FAILED,
			           "backend timed out: the demo answer ran past the backend timeout");
			return -1;
		}
		if (now >= until)
			return 0;
		int64_t step = until - now < 100 ? until - now : 100;
		struct timespec ts = {0, (long)step * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static void demo_call(struct call *c, const char *req, size_t len, long timeout_ms)
{
	struct pv_demo d;
	struct rc_errinfo e = {0};
	char id[48];
	unsigned char rnd[12];
	randombytes_buf(rnd, sizeof rnd);
	memcpy(id, "chatcmpl-demo-", 14);
	sodium_bin2hex(id + 14, sizeof id - 14, rnd, sizeof rnd);
	int rc = pv_demo_start(&d, req, len, c->m->name, id, (int64_t)time(NULL), &e);
	if (rc == RC_EPARSE) {
		set_failed(c, PV_BACKEND_FAILED, "request is not a JSON object");
		return;
	}
	if (rc == RC_EPROTO) { /* what an OpenAI backend answers: 400 with an error object */
		c->res->outcome = PV_BACKEND_HTTP_ERROR;
		c->res->status = 400;
		c->failed = 1;
		json_t *w = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", e.text, "type",
		                      "invalid_request_error", "param", "code");
		char *t = w ? json_dumps(w, JSON_COMPACT) : NULL;
		if (t)
			rc_buf_append(&c->res->err_body, t, strlen(t));
		free(t);
		json_decref(w);
		return;
	}
	if (rc != RC_OK) {
		set_failed(c, PV_BACKEND_FAILED, "out of memory");
		return;
	}
	int64_t deadline = rc_mono_ms() + timeout_ms;
	c->res->status = 200;
	for (;;) {
		int word = pv_demo_next_is_word(&d);
		rc_buf_reset(&c->chunk);
		int r = pv_demo_next(&d, &c->chunk);
		if (r == 0)
			break;
		if (r < 0) {
			set_failed(c, PV_BACKEND_FAILED, "out of memory");
			break;
		}
		if (deliver_openai(c, c->chunk.ptr, c->chunk.len, d.stream))
			break;
		if (word && demo_pause(c, (long)c->m->demo_chunk_ms, deadline))
			break;
	}
	if (!c->failed)
		c->res->outcome = PV_BACKEND_OK;
	pv_demo_release(&d);
}

/* OpenAI body: the consumer's request with "model" set to modelName, unknown keys kept. */
static int openai_body(const struct pv_model *m, const char *req, size_t len, struct rc_buf *out,
                       int *stream, char *why, size_t whycap)
{
	json_error_t je;
	json_t *v = json_loadb(req, len, 0, &je);
	if (!v || !json_is_object(v)) {
		snprintf(why, whycap, "request is not a JSON object");
		json_decref(v);
		return -1;
	}
	json_object_set_new(v, "model", json_string(m->name));
	*stream = json_is_true(json_object_get(v, "stream"));
	char *s = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	if (!s)
		return -1;
	int rc = rc_buf_append(out, s, strlen(s));
	free(s);
	return rc ? -1 : 0;
}

int pv_backend_call(const struct pv_model *m, const char *req, size_t len, long timeout_ms,
                    const struct pv_backend_sink *sink, struct pv_backend_result *res)
{
	struct call c;
	struct rc_buf body = RC_BUF_INIT, hdr = RC_BUF_INIT;
	struct curl_slist *h = NULL;
	int stream = 0;
	char why[256];

	memset(res, 0, sizeof *res);
	memset(&c, 0, sizeof c);
	c.m = m;
	c.sink = sink;
	c.res = res;
	res->tokens_in = len / 4 + 1; /* estimate until the backend says */
	pv_anthropic_stream_init(&c.ast, (int64_t)time(NULL));

	if (m->api == PV_API_DEMO) {
		demo_call(&c, req, len, timeout_ms);
		goto out;
	}
	if (m->api == PV_API_OPENAI) {
		if (openai_body(m, req, len, &body, &stream, why, sizeof why)) {
			set_failed(&c, PV_BACKEND_FAILED, why);
			goto out;
		}
	} else {
		struct rc_errinfo e = {0};
		bool st = false;
		if (pv_anthropic_map_request(req, len, m->name, &body, &st, &e)) {
			snprintf(why, sizeof why, "cannot map request to the messages api: %.90s",
			         e.text);
			set_failed(&c, PV_BACKEND_FAILED, why);
			goto out;
		}
		stream = st;
	}

	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	if (stream)
		h = curl_slist_append(h, "Accept: text/event-stream");
	if (m->api == PV_API_OPENAI && m->key[0]) {
		rc_buf_append(&hdr, "Authorization: Bearer ", 22);
		rc_buf_append(&hdr, m->key, strlen(m->key));
		h = curl_slist_append(h, hdr.ptr);
	} else if (m->api == PV_API_CLAUDEAI) {
		rc_buf_append(&hdr, "x-api-key: ", 11);
		rc_buf_append(&hdr, m->key, strlen(m->key));
		h = curl_slist_append(h, hdr.ptr);
		h = curl_slist_append(h, "anthropic-version: 2023-06-01");
	}
	if (!h || !(c.h = curl_easy_init())) {
		set_failed(&c, PV_BACKEND_FAILED, "out of memory");
		goto out;
	}
	if (share)
		curl_easy_setopt(c.h, CURLOPT_SHARE, share);
	curl_easy_setopt(c.h, CURLOPT_URL, m->url);
	curl_easy_setopt(c.h, CURLOPT_POST, 1L);
	curl_easy_setopt(c.h, CURLOPT_POSTFIELDS, body.ptr);
	curl_easy_setopt(c.h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
	curl_easy_setopt(c.h, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c.h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(c.h, CURLOPT_WRITEDATA, &c);
	curl_easy_setopt(c.h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c.h, CURLOPT_XFERINFODATA, &c);
	curl_easy_setopt(c.h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c.h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c.h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c.h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 10000 ? timeout_ms : 10000L);
	curl_easy_setopt(c.h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c.h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c.h, CURLOPT_ACCEPT_ENCODING, "");

	CURLcode cc = curl_easy_perform(c.h);
	if (c.failed)
		goto out;
	if (cc != CURLE_OK) {
		snprintf(why, sizeof why, "backend %s: %s",
		         cc == CURLE_OPERATION_TIMEDOUT ? "timed out" : "call failed",
		         curl_easy_strerror(cc));
		set_failed(&c, PV_BACKEND_FAILED, why);
		goto out;
	}
	curl_easy_getinfo(c.h, CURLINFO_RESPONSE_CODE, &res->status);
	if (res->status < 200 || res->status >= 300) {
		/* §4.2: the body as JSON, else wrapped as an upstream_error. */
		json_t *v = json_loadb(c.body.ptr ? c.body.ptr : "", c.body.len, 0, NULL);
		res->outcome = PV_BACKEND_HTTP_ERROR;
		if (v) {
			rc_buf_append(&res->err_body, c.body.ptr, c.body.len);
		} else {
			json_t *w = json_pack("{s:{s:s%,s:s}}", "error", "message",
			                      c.body.ptr ? c.body.ptr : "", c.body.len, "type",
			                      "upstream_error");
			char *s = w ? json_dumps(w, JSON_COMPACT) : NULL;
			if (s)
				rc_buf_append(&res->err_body, s, strlen(s));
			free(s);
			json_decref(w);
		}
		json_decref(v);
		goto out;
	}
	if (!c.sse) {
		if (m->api == PV_API_OPENAI) {
			json_t *v = json_loadb(c.body.ptr ? c.body.ptr : "", c.body.len, 0, NULL);
			if (!json_is_object(v)) {
				json_decref(v);
				set_failed(&c, PV_BACKEND_FAILED,
				           "backend reply is not a JSON object");
				goto out;
			}
			json_decref(v);
			deliver_openai(&c, c.body.ptr, c.body.len, 0);
		} else {
			struct rc_errinfo e;
			rc_buf_reset(&c.chunk);
			if (pv_anthropic_map_response(c.body.ptr ? c.body.ptr : "", c.body.len,
			                              (int64_t)time(NULL), &c.chunk,
			                              &res->tokens_in, &res->tokens_out, &e)) {
				set_failed(&c, PV_BACKEND_FAILED, "backend reply is not a message");
				goto out;
			}
			deliver_openai(&c, c.chunk.ptr, c.chunk.len, 0);
		}
		if (!c.failed)
			res->outcome = PV_BACKEND_OK;
		goto out;
	}
	if (!c.done) {
		set_failed(&c, PV_BACKEND_FAILED, "backend stream ended before its end marker");
		goto out;
	}
	res->outcome = PV_BACKEND_OK;
out:
	curl_easy_cleanup(c.h);
	curl_slist_free_all(h);
	rc_buf_release_wipe(&hdr);
	rc_buf_release(&body);
	rc_buf_release(&c.line);
	rc_buf_release(&c.body);
	rc_buf_release(&c.chunk);
	return res->outcome;
}
