/*
 * JSON-RPC client: the pure reply parser and error mapping first, then the libcurl edge.
 *
 * Why a handle pool rather than one handle per thread: callers are library users (gateway
 * workers, CLI, tests spawning threads) whose threads we do not own. A popped handle is used by
 * one thread at a time and pushed back afterwards, so its connection cache (keep-alive) survives
 * from call to call; under contention a new handle is made and the pool keeps up to POOL_MAX.
 *
 * Why failover is per request and not sticky: after a URL fails it is marked bad until
 * now + bad_url_ms, and every request starts at the first good URL in the configured order, so
 * the preferred node is used again as soon as its penalty expires.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include <router-core/rc_revert.h>
#include <router-core/rc_rpc.h>

#define POOL_MAX 16

const char *rc_rpc_strerror(int rc)
{
	switch (rc) {
	case RC_ERPC:
		return "node returned an error";
	case RC_EREVERT:
		return "execution reverted";
	case RC_ENONCE:
		return "nonce too low";
	case RC_EUNDERPRICED:
		return "transaction underpriced";
	case RC_EKNOWN:
		return "transaction already known";
	case RC_EFUNDS:
		return "insufficient funds";
	case RC_ECHAINID:
		return "chain id mismatch";
	case RC_ETXFAILED:
		return "transaction failed";
	}
	return rc_strerror(rc);
}

/* ---- error info ---------------------------------------------------------------------------- */

static void err_set(struct rc_rpc_error *err, int rc, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void err_set(struct rc_rpc_error *err, int rc, const char *fmt, ...)
{
	if (!err)
		return;
	err->rc = rc;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	/* Parts of the message (jansson's error text, a URL) may quote hostile bytes. */
	for (char *p = err->message; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
}

/* Copy untrusted text as one printable ASCII line. */
static void copy_printable(char *dst, size_t cap, const char *src)
{
	size_t j = 0;
	for (size_t i = 0; src && src[i] && j + 1 < cap; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[j++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	dst[j] = '\0';
}

static bool contains_ci(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (const char *p = hay; *p; p++)
		if (strncasecmp(p, needle, n) == 0)
			return true;
	return false;
}

static const char *hex_in(const json_t *data)
{
	if (json_is_string(data))
		return json_string_value(data);
	if (json_is_object(data)) {
		const json_t *d = json_object_get(data, "data");
		if (json_is_string(d))
			return json_string_value(d);
	}
	return NULL;
}

int rc_rpc_map_error(const json_t *error, struct rc_rpc_error *err)
{
	struct rc_rpc_error scratch;
	if (!err)
		err = &scratch;
	memset(err, 0, sizeof *err);
	if (!json_is_object(error)) {
		err_set(err, RC_EPROTO, "error member is not an object");
		return RC_EPROTO;
	}
	const json_t *code = json_object_get(error, "code");
	const json_t *msg = json_object_get(error, "message");
	err->code = json_is_integer(code) ? (long)json_integer_value(code) : 0;
	copy_printable(err->message, sizeof err->message,
	               json_is_string(msg) ? json_string_value(msg) : "");
	const char *m = err->message;
	const char *hex = hex_in(json_object_get(error, "data"));
	size_t hlen = hex ? strlen(hex) : 0;
	bool reverted = contains_ci(m, "revert") || err->code == 3;
	if (hex && hlen >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X') &&
	    (reverted || hlen >= 10)) {
		size_t blen = 0;
		if (rc_hex_decode(hex, hlen, err->revert_data, sizeof err->revert_data, &blen,
		                  NULL) == RC_OK) {
			struct rc_revert r;
			err->revert_len = blen;
			int drc = rc_revert_decode(err->revert_data, blen, &r, NULL);
			if (drc == RC_ENOMEM) {
				err->rc = RC_ENOMEM;
				return RC_ENOMEM;
			}
			err->has_revert = true;
			err->revert_selector = r.selector;
			err->revert_name = r.name;
			snprintf(err->revert_text, sizeof err->revert_text, "%s", r.text);
			err->rc = RC_EREVERT;
			return RC_EREVERT;
		}
	}
	int rc = RC_ERPC;
	if (reverted)
		rc = RC_EREVERT;
	else if (contains_ci(m, "nonce too low") || contains_ci(m, "nonce has already been used"))
		rc = RC_ENONCE;
	else if (contains_ci(m, "underpriced") || contains_ci(m, "fee too low") ||
	         contains_ci(m, "max fee per gas less than block base fee"))
		rc = RC_EUNDERPRICED;
	else if (contains_ci(m, "already known") || contains_ci(m, "known transaction") ||
	         contains_ci(m, "already imported"))
		rc = RC_EKNOWN;
	else if (contains_ci(m, "insufficient funds"))
		rc = RC_EFUNDS;
	if (rc == RC_EREVERT) {
		err->has_revert = true;
		snprintf(err->revert_text, sizeof err->revert_text, "%s", "reverted without data");
	}
	err->rc = rc;
	return rc;
}

/* ---- reply parsing -------------------------------------------------------------------------- */

/* One reply object; id must be checked by the caller. */
static int parse_one(const json_t *obj, json_t **result, struct rc_rpc_error *err)
{
	const json_t *e = json_object_get(obj, "error");
	if (e && !json_is_null(e))
		return rc_rpc_map_error(e, err);
	json_t *r = json_object_get(obj, "result");
	if (!r) {
		err_set(err, RC_EPROTO, "reply has neither result nor error");
		return RC_EPROTO;
	}
	*result = json_incref(r);
	return RC_OK;
}

static bool id_is(const json_t *id, uint64_t want)
{
	if (json_is_integer(id))
		return json_integer_value(id) >= 0 && (uint64_t)json_integer_value(id) == want;
	return false;
}

static json_t *load(const char *body, size_t len, struct rc_rpc_error *err)
{
	json_error_t je;
	json_t *j = json_loadb(body, len, JSON_DECODE_ANY, &je);
	if (!j)
		err_set(err, RC_EPROTO, "reply is not JSON: %.60s at %d", je.text, je.position);
	return j;
}

int rc_rpc_parse_reply(const char *body, size_t len, uint64_t id, json_t **result,
                       struct rc_rpc_error *err)
{
	*result = NULL;
	json_t *j = load(body, len, err);
	if (!j)
		return RC_EPROTO;
	int rc;
	if (!json_is_object(j)) {
		err_set(err, RC_EPROTO, "reply is not a JSON object");
		rc = RC_EPROTO;
	} else if (!id_is(json_object_get(j, "id"), id)) {
		/* Some nodes answer a malformed request with id null and an error: report it. */
		const json_t *e = json_object_get(j, "error");
		if (e && json_is_null(json_object_get(j, "id")))
			rc = rc_rpc_map_error(e, err);
		else {
			err_set(err, RC_EPROTO, "reply id does not match the request");
			rc = RC_EPROTO;
		}
	} else {
		rc = parse_one(j, result, err);
	}
	json_decref(j);
	return rc;
}

int rc_rpc_parse_batch(const char *body, size_t len, uint64_t first_id, struct rc_rpc_req *reqs,
                       size_t n, struct rc_rpc_error *err)
{
	for (size_t i = 0; i < n; i++) {
		if (reqs[i].result)
			json_decref(reqs[i].result);
		reqs[i].result = NULL;
		reqs[i].rc = RC_EPROTO;
		memset(&reqs[i].err, 0, sizeof reqs[i].err);
	}
	json_t *j = load(body, len, err);
	if (!j)
		return RC_EPROTO;
	int rc = RC_OK;
	if (!json_is_array(j)) {
		/* A node that rejects the whole batch answers with one error object. */
		const json_t *e = json_is_object(j) ? json_object_get(j, "error") : NULL;
		if (e) {
			rc = rc_rpc_map_error(e, err);
			if (rc == RC_OK)
				rc = RC_ERPC;
		} else {
			err_set(err, RC_EPROTO, "batch reply is not an array");
			rc = RC_EPROTO;
		}
		json_decref(j);
		for (size_t i = 0; i < n; i++)
			reqs[i].rc = rc;
		return rc;
	}
	bool *seen = calloc(n ? n : 1, sizeof *seen);
	if (!seen) {
		json_decref(j);
		return RC_ENOMEM;
	}
	size_t idx;
	json_t *o;
	json_array_foreach(j, idx, o)
	{
		if (!json_is_object(o))
			continue;
		const json_t *id = json_object_get(o, "id");
		if (!json_is_integer(id))
			continue;
		json_int_t v = json_integer_value(id);
		if (v < 0 || (uint64_t)v < first_id || (uint64_t)v - first_id >= n)
			continue;
		size_t k = (size_t)((uint64_t)v - first_id);
		if (seen[k])
			continue; /* a duplicate answer: the first one counts */
		seen[k] = true;
		reqs[k].rc = parse_one(o, &reqs[k].result, &reqs[k].err);
		reqs[k].err.rc = reqs[k].rc;
	}
	for (size_t i = 0; i < n; i++)
		if (!seen[i]) {
			err_set(&reqs[i].err, RC_EPROTO, "no answer in the batch reply");
			rc = RC_EPROTO;
		}
	if (rc != RC_OK)
		err_set(err, RC_EPROTO, "batch reply lacks some answers");
	free(seen);
	json_decref(j);
	return rc;
}

/* ---- result helpers ------------------------------------------------------------------------- */

int rc_rpc_result_u256(const json_t *result, struct rc_u256 *out)
{
	if (!json_is_string(result))
		return RC_EPARSE;
	return rc_u256_parse_hex(out, json_string_value(result), json_string_length(result), NULL);
}

int rc_rpc_result_u64(const json_t *result, uint64_t *out)
{
	struct rc_u256 v;
	int rc = rc_rpc_result_u256(result, &v);
	if (rc != RC_OK)
		return rc;
	return rc_u256_to_u64(&v, out);
}

int rc_rpc_result_bytes(const json_t *result, struct rc_buf *out)
{
	if (!json_is_string(result))
		return RC_EPARSE;
	const char *s = json_string_value(result);
	size_t len = json_string_length(result);
	if (len < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X'))
		return RC_EPARSE;
	int rc = rc_buf_grow(out, len / 2);
	if (rc != RC_OK)
		return rc;
	size_t n = 0;
	rc = rc_hex_decode(s, len, (uint8_t *)out->ptr + out->len, len / 2, &n, NULL);
	if (rc != RC_OK)
		return rc;
	rc_buf_setlen(out, out->len + n);
	return RC_OK;
}

static int hex_exact(const json_t *v, uint8_t *out, size_t n)
{
	if (!json_is_string(v))
		return RC_EPARSE;
	return rc_hex_decode_exact(json_string_value(v), json_string_length(v), out, n, NULL);
}

static int u64_member(const json_t *obj, const char *key, uint64_t *out)
{
	return rc_rpc_result_u64(json_object_get(obj, key), out);
}

int rc_rpc_parse_log(const json_t *obj, struct rc_rpc_log *l)
{
	memset(l, 0, sizeof *l);
	if (!json_is_object(obj))
		return RC_EPARSE;
	if (hex_exact(json_object_get(obj, "address"), l->address, 20) != RC_OK)
		return RC_EPARSE;
	const json_t *topics = json_object_get(obj, "topics");
	if (!json_is_array(topics) || json_array_size(topics) > 4)
		return RC_EPARSE;
	for (size_t i = 0; i < json_array_size(topics); i++)
		if (hex_exact(json_array_get(topics, i), l->topics[i], 32) != RC_OK)
			return RC_EPARSE;
	l->ntopics = json_array_size(topics);
	/* Pending logs have null block numbers and hashes: tolerate them. */
	(void)u64_member(obj, "blockNumber", &l->block_number);
	(void)u64_member(obj, "logIndex", &l->log_index);
	(void)hex_exact(json_object_get(obj, "transactionHash"), l->tx_hash, 32);
	struct rc_buf b = RC_BUF_INIT;
	const json_t *d = json_object_get(obj, "data");
	if (d) {
		int rc = rc_rpc_result_bytes(d, &b);
		if (rc != RC_OK) {
			rc_buf_release(&b);
			return rc == RC_ENOMEM ? rc : RC_EPARSE;
		}
	}
	l->data = (uint8_t *)b.ptr;
	l->data_len = b.len;
	return RC_OK;
}

void rc_rpc_logs_free(struct rc_rpc_log *logs, size_t n)
{
	for (size_t i = 0; logs && i < n; i++)
		free(logs[i].data);
	free(logs);
}

static int parse_logs(const json_t *arr, struct rc_rpc_log **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!json_is_array(arr))
		return RC_EPARSE;
	size_t cnt = json_array_size(arr);
	if (!cnt)
		return RC_OK;
	struct rc_rpc_log *logs = calloc(cnt, sizeof *logs);
	if (!logs)
		return RC_ENOMEM;
	for (size_t i = 0; i < cnt; i++) {
		int rc = rc_rpc_parse_log(json_array_get(arr, i), &logs[i]);
		if (rc != RC_OK) {
			rc_rpc_logs_free(logs, i);
			return rc;
		}
	}
	*out = logs;
	*n = cnt;
	return RC_OK;
}

void rc_rpc_receipt_release(struct rc_rpc_receipt *r)
{
	if (!r)
		return;
	rc_rpc_logs_free(r->logs, r->nlogs);
	memset(r, 0, sizeof *r);
}

int rc_rpc_parse_receipt(const json_t *obj, struct rc_rpc_receipt *r)
{
	memset(r, 0, sizeof *r);
	if (!json_is_object(obj))
		return RC_EPARSE;
	uint64_t status = 0;
	if (hex_exact(json_object_get(obj, "transactionHash"), r->tx_hash, 32) != RC_OK ||
	    u64_member(obj, "blockNumber", &r->block_number) != RC_OK ||
	    u64_member(obj, "status", &status) != RC_OK || status > 1)
		return RC_EPARSE;
	r->status = status == 1;
	(void)u64_member(obj, "gasUsed", &r->gas_used);
	(void)rc_rpc_result_u256(json_object_get(obj, "effectiveGasPrice"),
	                         &r->effective_gas_price);
	const json_t *logs = json_object_get(obj, "logs");
	if (logs)
		return parse_logs(logs, &r->logs, &r->nlogs);
	return RC_OK;
}

void rc_rpc_reqs_release(struct rc_rpc_req *reqs, size_t n)
{
	for (size_t i = 0; reqs && i < n; i++) {
		json_decref(reqs[i].result);
		json_decref(reqs[i].params);
		reqs[i].result = NULL;
		reqs[i].params = NULL;
	}
}

/* ---- the curl edge -------------------------------------------------------------------------- */

struct url_state {
	char *url;
	int64_t bad_until_ms;
};

struct rc_rpc {
	struct url_state *urls;
	size_t nurls;
	long connect_timeout_ms, timeout_ms, bad_url_ms;
	size_t max_reply;
	pthread_mutex_t mu;
	CURL *pool[POOL_MAX];
	size_t npool;
	atomic_uint_fast64_t next_id;
	atomic_uint_fast64_t round_trips;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int rc_rpc_new(const struct rc_rpc_options *o, struct rc_rpc **out)
{
	*out = NULL;
	if (!o || !o->urls || o->nurls == 0)
		return RC_EINVAL;
	for (size_t i = 0; i < o->nurls; i++)
		if (!o->urls[i] || (strncmp(o->urls[i], "http://", 7) != 0 &&
		                    strncmp(o->urls[i], "https://", 8) != 0))
			return RC_EINVAL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return RC_ENOMEM;
	struct rc_rpc *c = calloc(1, sizeof *c);
	if (!c)
		return RC_ENOMEM;
	c->urls = calloc(o->nurls, sizeof *c->urls);
	if (!c->urls) {
		free(c);
		return RC_ENOMEM;
	}
	c->nurls = o->nurls;
	for (size_t i = 0; i < o->nurls; i++)
		if (!(c->urls[i].url = strdup(o->urls[i]))) {
			rc_rpc_free(c);
			return RC_ENOMEM;
		}
	c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 3000;
	c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 15000;
	c->bad_url_ms = o->bad_url_ms > 0 ? o->bad_url_ms : 30000;
	c->max_reply = o->max_reply_bytes ? o->max_reply_bytes : (size_t)32 << 20;
	pthread_mutex_init(&c->mu, NULL);
	atomic_init(&c->next_id, 1);
	atomic_init(&c->round_trips, 0);
	*out = c;
	return RC_OK;
}

void rc_rpc_free(struct rc_rpc *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->npool; i++)
		curl_easy_cleanup(c->pool[i]);
	for (size_t i = 0; c->urls && i < c->nurls; i++)
		free(c->urls[i].url);
	free(c->urls);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

uint64_t rc_rpc_round_trips(const struct rc_rpc *c)
{
	return atomic_load(&((struct rc_rpc *)c)->round_trips);
}

static CURL *handle_get(struct rc_rpc *c)
{
	CURL *h = NULL;
	pthread_mutex_lock(&c->mu);
	if (c->npool)
		h = c->pool[--c->npool];
	pthread_mutex_unlock(&c->mu);
	return h ? h : curl_easy_init();
}

static void handle_put(struct rc_rpc *c, CURL *h)
{
	pthread_mutex_lock(&c->mu);
	if (c->npool < POOL_MAX) {
		c->pool[c->npool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	if (h)
		curl_easy_cleanup(h);
}

struct sink {
	struct rc_buf *b;
	size_t max;
	bool overflow;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
	struct sink *s = ud;
	size_t n = size * nmemb;
	if (s->b->len + n > s->max) {
		s->overflow = true;
		return 0;
	}
	if (rc_buf_append(s->b, p, n) != RC_OK)
		return 0;
	return n;
}

/*
 * The URL for error messages without what may be a secret: node URLs often carry an API key in
 * the path (".../v3/KEY") or user:password@ before the host. Keep scheme://host[:port].
 */
static void redact_url(char *dst, size_t cap, const char *url)
{
	const char *sep = strstr(url, "://");
	size_t slen = sep ? (size_t)(sep + 3 - url) : 0; /* "https://" */
	const char *host = url + slen;
	size_t hlen = strcspn(host, "/?#");
	const char *at = memchr(host, '@', hlen);
	if (at) {
		hlen -= (size_t)(at + 1 - host);
		host = at + 1;
	}
	char tmp[256];
	snprintf(tmp, sizeof tmp, "%.*s%.*s", (int)slen, url, (int)hlen, host);
	copy_printable(dst, cap, tmp);
}

/* POST body to one URL. RC_OK with a 2xx reply in *reply, or a transport error. */
static int post_one(struct rc_rpc *c, CURL *h, const char *url, const char *body, size_t blen,
                    struct rc_buf *reply, struct rc_rpc_error *err)
{
	struct sink s = {reply, c->max_reply, false};
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	if (!hdr)
		return RC_ENOMEM;
	rc_buf_reset(reply);
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)blen);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	CURLcode cc = curl_easy_perform(h);
	atomic_fetch_add(&c->round_trips, 1);
	curl_slist_free_all(hdr);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (err) {
		err->http_status = status;
		redact_url(err->url, sizeof err->url, url);
	}
	if (cc != CURLE_OK) {
		int rc = cc == CURLE_OPERATION_TIMEDOUT ? RC_ETIMEOUT
		         : s.overflow                   ? RC_EPROTO
		         : cc == CURLE_OUT_OF_MEMORY    ? RC_ENOMEM
		                                        : RC_EIO;
		err_set(err, rc, "%s", s.overflow ? "reply too large" : curl_easy_strerror(cc));
		return rc;
	}
	if (status < 200 || status > 299) {
		err_set(err, RC_EPROTO, "HTTP status %ld", status);
		return RC_EPROTO;
	}
	return RC_OK;
}

/*
 * Send body to the first healthy URL, failing over on transport errors. parse() decides whether
 * the reply is a JSON-RPC answer; RC_EPROTO from it also fails over (a proxy's error page).
 */
typedef int (*parse_fn)(void *ctx, const struct rc_buf *reply, struct rc_rpc_error *err);

static int send_failover(struct rc_rpc *c, const char *body, size_t blen, parse_fn parse, void *ctx,
                         struct rc_rpc_error *err)
{
	struct rc_rpc_error scratch; /* batch entries copy the URL from here */
	if (!err) {
		memset(&scratch, 0, sizeof scratch);
		err = &scratch;
	}
	CURL *h = handle_get(c);
	if (!h)
		return RC_ENOMEM;
	struct rc_buf reply = RC_BUF_INIT;
	int rc = RC_EIO;
	/* Pass 0: URLs not marked bad; pass 1: the bad ones too, if pass 0 tried none or failed. */
	bool *tried = calloc(c->nurls, sizeof *tried);
	if (!tried) {
		handle_put(c, h);
		return RC_ENOMEM;
	}
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < c->nurls; i++) {
			if (tried[i])
				continue;
			pthread_mutex_lock(&c->mu);
			bool bad = c->urls[i].bad_until_ms > rc_mono_ms();
			pthread_mutex_unlock(&c->mu);
			if (pass == 0 && bad)
				continue;
			tried[i] = true;
			rc = post_one(c, h, c->urls[i].url, body, blen, &reply, err);
			if (rc == RC_OK)
				rc = parse(ctx, &reply, err);
			if (rc == RC_ENOMEM)
				goto out;
			if (rc == RC_EIO || rc == RC_ETIMEOUT || rc == RC_EPROTO) {
				pthread_mutex_lock(&c->mu);
				c->urls[i].bad_until_ms = rc_mono_ms() + c->bad_url_ms;
				pthread_mutex_unlock(&c->mu);
				continue;
			}
			/* An answer (success or a node error): the URL is healthy. */
			pthread_mutex_lock(&c->mu);
			c->urls[i].bad_until_ms = 0;
			pthread_mutex_unlock(&c->mu);
			goto out;
		}
	}
out:
	free(tried);
	rc_buf_release(&reply);
	handle_put(c, h);
	if (err)
		err->rc = rc;
	return rc;
}

struct single_ctx {
	uint64_t id;
	json_t *result;
};

static int parse_single(void *ctx, const struct rc_buf *reply, struct rc_rpc_error *err)
{
	struct single_ctx *s = ctx;
	json_decref(s->result);
	s->result = NULL;
	/* The parser fills err from scratch; keep where the answer came from. */
	char url[sizeof err->url];
	long status = err ? err->http_status : 0;
	if (err)
		memcpy(url, err->url, sizeof url);
	int rc = rc_rpc_parse_reply(reply->ptr ? reply->ptr : "", reply->len, s->id, &s->result,
	                            err);
	if (err) {
		memcpy(err->url, url, sizeof url);
		err->http_status = status;
	}
	return rc;
}

int rc_rpc_call(struct rc_rpc *c, const char *method, json_t *params, json_t **result,
                struct rc_rpc_error *err)
{
	*result = NULL;
	if (err)
		memset(err, 0, sizeof *err);
	if (!params)
		params = json_array();
	uint64_t id = atomic_fetch_add(&c->next_id, 1);
	json_t *req = json_pack("{s:s, s:s, s:o, s:I}", "jsonrpc", "2.0", "method", method,
	                        "params", params, "id", (json_int_t)id);
	if (!req)
		return RC_ENOMEM;
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!body)
		return RC_ENOMEM;
	struct single_ctx s = {id, NULL};
	int rc = send_failover(c, body, strlen(body), parse_single, &s, err);
	free(body);
	if (rc == RC_OK)
		*result = s.result;
	else
		json_decref(s.result);
	return rc;
}

struct batch_ctx {
	uint64_t first_id;
	struct rc_rpc_req *reqs;
	size_t n;
};

static int parse_batch_cb(void *ctx, const struct rc_buf *reply, struct rc_rpc_error *err)
{
	struct batch_ctx *b = ctx;
	char url[sizeof err->url];
	long status = err ? err->http_status : 0;
	if (err)
		memcpy(url, err->url, sizeof url);
	int rc = rc_rpc_parse_batch(reply->ptr ? reply->ptr : "", reply->len, b->first_id, b->reqs,
	                            b->n, err);
	if (err) {
		memcpy(err->url, url, sizeof url);
		err->http_status = status;
	}
	for (size_t i = 0; err && i < b->n; i++) {
		memcpy(b->reqs[i].err.url, err->url, sizeof err->url);
		b->reqs[i].err.http_status = err->http_status;
	}
	return rc;
}

int rc_rpc_batch(struct rc_rpc *c, struct rc_rpc_req *reqs, size_t n, struct rc_rpc_error *err)
{
	if (err)
		memset(err, 0, sizeof *err);
	if (n == 0)
		return RC_OK;
	uint64_t first = atomic_fetch_add(&c->next_id, n);
	json_t *arr = json_array();
	int rc = arr ? RC_OK : RC_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *p = reqs[i].params ? reqs[i].params : json_array();
		reqs[i].params = NULL;
		reqs[i].result = NULL;
		if (rc == RC_OK &&
		    json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:I}", "jsonrpc", "2.0",
		                                         "method", reqs[i].method, "params", p,
		                                         "id", (json_int_t)(first + i))) != 0)
			rc = RC_ENOMEM;
		else if (rc != RC_OK)
			json_decref(p);
	}
	char *body = rc == RC_OK ? json_dumps(arr, JSON_COMPACT) : NULL;
	json_decref(arr);
	if (!body)
		rc = RC_ENOMEM;
	if (rc == RC_OK) {
		struct batch_ctx b = {first, reqs, n};
		rc = send_failover(c, body, strlen(body), parse_batch_cb, &b, err);
	}
	free(body);
	/* A node error for the whole batch (rc < RC_ERPC's block) is also every request's answer.
	 */
	if (rc != RC_OK)
		for (size_t i = 0; i < n; i++) {
			if (reqs[i].rc == RC_OK)
				continue;
			reqs[i].rc = rc;
			if (err)
				reqs[i].err = *err;
		}
	return rc;
}

/* ---- typed methods -------------------------------------------------------------------------- */

static json_t *hex_json(const void *p, size_t n, bool prefix)
{
	char *s = malloc(2 * n + 3);
	if (!s)
		return NULL;
	if (prefix)
		rc_hex_encode_0x(p, n, s, 2 * n + 3);
	else
		rc_hex_encode(p, n, s, 2 * n + 3);
	json_t *j = json_string(s);
	free(s);
	return j;
}

static json_t *qty_json(uint64_t v)
{
	char s[RC_U256_HEX_SIZE];
	struct rc_u256 u;
	rc_u256_from_u64(&u, v);
	rc_u256_format_hex(&u, s, sizeof s);
	return json_string(s);
}

static int call_u256(struct rc_rpc *c, const char *method, json_t *params, struct rc_u256 *out,
                     struct rc_rpc_error *err)
{
	json_t *r;
	int rc = rc_rpc_call(c, method, params, &r, err);
	if (rc != RC_OK)
		return rc;
	rc = rc_rpc_result_u256(r, out);
	json_decref(r);
	if (rc != RC_OK) {
		err_set(err, RC_EPROTO, "%s: result is not a quantity", method);
		rc = RC_EPROTO;
	}
	return rc;
}

static int call_u64(struct rc_rpc *c, const char *method, json_t *params, uint64_t *out,
                    struct rc_rpc_error *err)
{
	struct rc_u256 v;
	int rc = call_u256(c, method, params, &v, err);
	if (rc == RC_OK && rc_u256_to_u64(&v, out) != RC_OK) {
		err_set(err, RC_EPROTO, "%s: result does not fit 64 bits", method);
		rc = RC_EPROTO;
	}
	return rc;
}

int rc_rpc_chain_id(struct rc_rpc *c, uint64_t *out, struct rc_rpc_error *err)
{
	return call_u64(c, "eth_chainId", NULL, out, err);
}

int rc_rpc_block_number(struct rc_rpc *c, uint64_t *out, struct rc_rpc_error *err)
{
	return call_u64(c, "eth_blockNumber", NULL, out, err);
}

int rc_rpc_get_balance(struct rc_rpc *c, const uint8_t addr[20], struct rc_u256 *out,
                       struct rc_rpc_error *err)
{
	json_t *p = json_pack("[o,s]", hex_json(addr, 20, true), "latest");
	if (!p)
		return RC_ENOMEM;
	return call_u256(c, "eth_getBalance", p, out, err);
}

int rc_rpc_get_tx_count(struct rc_rpc *c, const uint8_t addr[20], bool pending, uint64_t *out,
                        struct rc_rpc_error *err)
{
	json_t *p = json_pack("[o,s]", hex_json(addr, 20, true), pending ? "pending" : "latest");
	if (!p)
		return RC_ENOMEM;
	return call_u64(c, "eth_getTransactionCount", p, out, err);
}

int rc_rpc_max_priority_fee(struct rc_rpc *c, struct rc_u256 *out, struct rc_rpc_error *err)
{
	return call_u256(c, "eth_maxPriorityFeePerGas", NULL, out, err);
}

static json_t *callmsg_json(const struct rc_rpc_callmsg *m)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int bad = 0;
	if (m->from)
		bad |= json_object_set_new(o, "from", hex_json(m->from, 20, true));
	if (m->to)
		bad |= json_object_set_new(o, "to", hex_json(m->to, 20, true));
	if (!rc_u256_is_zero(&m->value)) {
		char s[RC_U256_HEX_SIZE];
		rc_u256_format_hex(&m->value, s, sizeof s);
		bad |= json_object_set_new(o, "value", json_string(s));
	}
	bad |= json_object_set_new(o, "data", hex_json(m->data, m->data_len, true));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int rc_rpc_req_eth_call(struct rc_rpc_req *req, const uint8_t to[20], const uint8_t *data,
                        size_t len)
{
	struct rc_rpc_callmsg m = {.to = to, .data = data, .data_len = len};
	memset(req, 0, sizeof *req);
	req->method = "eth_call";
	req->params = json_pack("[o,s]", callmsg_json(&m), "latest");
	return req->params ? RC_OK : RC_ENOMEM;
}

int rc_rpc_eth_call(struct rc_rpc *c, const uint8_t *from, const uint8_t to[20],
                    const uint8_t *data, size_t len, struct rc_buf *out, struct rc_rpc_error *err)
{
	struct rc_rpc_callmsg m = {.from = from, .to = to, .data = data, .data_len = len};
	json_t *p = json_pack("[o,s]", callmsg_json(&m), "latest");
	if (!p)
		return RC_ENOMEM;
	json_t *r;
	int rc = rc_rpc_call(c, "eth_call", p, &r, err);
	if (rc != RC_OK)
		return rc;
	rc = rc_rpc_result_bytes(r, out);
	json_decref(r);
	if (rc == RC_EPARSE) {
		err_set(err, RC_EPROTO, "eth_call: result is not hex");
		rc = RC_EPROTO;
	}
	return rc;
}

int rc_rpc_estimate_gas(struct rc_rpc *c, const struct rc_rpc_callmsg *m, uint64_t *gas,
                        struct rc_rpc_error *err)
{
	json_t *p = json_pack("[o]", callmsg_json(m));
	if (!p)
		return RC_ENOMEM;
	return call_u64(c, "eth_estimateGas", p, gas, err);
}

int rc_rpc_send_raw(struct rc_rpc *c, const uint8_t *raw, size_t len, uint8_t hash[32],
                    struct rc_rpc_error *err)
{
	json_t *p = json_pack("[o]", hex_json(raw, len, true));
	if (!p)
		return RC_ENOMEM;
	json_t *r;
	int rc = rc_rpc_call(c, "eth_sendRawTransaction", p, &r, err);
	if (rc != RC_OK)
		return rc;
	if (hash && hex_exact(r, hash, 32) != RC_OK) {
		err_set(err, RC_EPROTO, "eth_sendRawTransaction: result is not a hash");
		rc = RC_EPROTO;
	}
	json_decref(r);
	return rc;
}

int rc_rpc_get_receipt(struct rc_rpc *c, const uint8_t hash[32], bool *found,
                       struct rc_rpc_receipt *r, struct rc_rpc_error *err)
{
	*found = false;
	memset(r, 0, sizeof *r);
	json_t *p = json_pack("[o]", hex_json(hash, 32, true));
	if (!p)
		return RC_ENOMEM;
	json_t *res;
	int rc = rc_rpc_call(c, "eth_getTransactionReceipt", p, &res, err);
	if (rc != RC_OK)
		return rc;
	if (!json_is_null(res)) {
		rc = rc_rpc_parse_receipt(res, r);
		if (rc == RC_OK)
			*found = true;
		else if (rc == RC_EPARSE) {
			err_set(err, RC_EPROTO, "malformed receipt");
			rc = RC_EPROTO;
		}
	}
	json_decref(res);
	return rc;
}

int rc_rpc_get_logs(struct rc_rpc *c, const struct rc_rpc_log_filter *f, struct rc_rpc_log **logs,
                    size_t *n, struct rc_rpc_error *err)
{
	*logs = NULL;
	*n = 0;
	json_t *o = json_object();
	json_t *topics = json_array();
	if (!o || !topics) {
		json_decref(o);
		json_decref(topics);
		return RC_ENOMEM;
	}
	json_object_set_new(o, "fromBlock", qty_json(f->from_block));
	json_object_set_new(o, "toBlock",
	                    f->to_block == UINT64_MAX ? json_string("latest")
	                                              : qty_json(f->to_block));
	if (f->address)
		json_object_set_new(o, "address", hex_json(f->address, 20, true));
	for (size_t i = 0; i < f->ntopics && i < 4; i++)
		json_array_append_new(topics, f->has_topic[i] ? hex_json(f->topics[i], 32, true)
		                                              : json_null());
	json_object_set_new(o, "topics", topics);
	json_t *p = json_pack("[o]", o);
	if (!p)
		return RC_ENOMEM;
	json_t *r;
	int rc = rc_rpc_call(c, "eth_getLogs", p, &r, err);
	if (rc != RC_OK)
		return rc;
	rc = parse_logs(r, logs, n);
	json_decref(r);
	if (rc == RC_EPARSE) {
		err_set(err, RC_EPROTO, "eth_getLogs: malformed log");
		rc = RC_EPROTO;
	}
	return rc;
}

int rc_rpc_fee_history(struct rc_rpc *c, unsigned blocks, double percentile,
                       struct rc_rpc_fee_history *out, struct rc_rpc_error *err)
{
	memset(out, 0, sizeof *out);
	json_t *p = json_pack("[o,s,[f]]", qty_json(blocks ? blocks : 1), "latest", percentile);
	if (!p)
		return RC_ENOMEM;
	json_t *r;
	int rc = rc_rpc_call(c, "eth_feeHistory", p, &r, err);
	if (rc != RC_OK)
		return rc;
	const json_t *base = json_object_get(r, "baseFeePerGas");
	const json_t *reward = json_object_get(r, "reward");
	rc = RC_EPROTO;
	if (json_is_array(base) && json_array_size(base) > 0 &&
	    rc_rpc_result_u256(json_array_get(base, json_array_size(base) - 1),
	                       &out->next_base_fee) == RC_OK) {
		rc = RC_OK;
		(void)u64_member(r, "oldestBlock", &out->oldest_block);
		struct rc_u256 sum = {{0}};
		size_t cnt = 0;
		for (size_t i = 0; json_is_array(reward) && i < json_array_size(reward); i++) {
			struct rc_u256 v;
			const json_t *row = json_array_get(reward, i);
			if (!json_is_array(row) ||
			    rc_rpc_result_u256(json_array_get(row, 0), &v) != RC_OK ||
			    rc_u256_add(&sum, &sum, &v) != RC_OK) {
				rc = RC_EPROTO;
				break;
			}
			cnt++;
		}
		out->blocks = cnt;
		if (rc == RC_OK && cnt)
			rc_u256_divmod_u64(&out->reward, NULL, &sum, cnt);
	}
	if (rc != RC_OK)
		err_set(err, rc, "eth_feeHistory: malformed result");
	json_decref(r);
	return rc;
}
