/*
 * Redis coordination for the session pool. Why synchronous hiredis here when the rate limiter
 * pipelines asynchronously: these calls are rare (a lock per on-chain write or session opening,
 * a lease per request on a session shared between processes, the table on state changes) and
 * the pool's threads already block on chain and provider I/O far longer than a Redis round trip.
 */
#include "gw_coord.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <keystore/ks.h>
#include <router-core/rc_addr.h>
#include <router-core/rc_hex.h>

#include "gw_log.h"
#include "gw_market.h"
#include "gw_redisurl.h"

#define IDLE_MAX 8
#define RETRY_MS 1000
#define TABLE_TTL_MS 86400000LL

/* compare-and-delete: only the owner's token frees the lock */
static const char unlock_lua[] =
	"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

struct gw_coord {
	struct gw_redis_url url;
	struct timeval timeout;
	char token[33];
	char prefix[96];   /* "morgate:lock:<wallet>:" */
	char table[96];    /* "morgate:sessions:<wallet>" */
	pthread_mutex_t mu;
	redisContext *idle[IDLE_MAX];
	int nidle;
	int64_t retry_after_ms; /* no connection attempt before this (monotonic) */
	atomic_int ok;
	int warned;
};

int gw_coord_new(const char *redis_url, const uint8_t wallet[20], long timeout_ms, struct gw_coord **out,
		 char *errbuf, size_t errlen)
{
	*out = NULL;
	struct gw_coord *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	struct gw_redisurl_err ue = {0, NULL};
	if (gw_redisurl_parse(redis_url, strlen(redis_url), &c->url, &ue)) {
		snprintf(errbuf, errlen, "invalid redis_url: %s at offset %zu", ue.msg ? ue.msg : "?", ue.offset);
		sodium_memzero(&c->url, sizeof c->url);
		free(c);
		return -1;
	}
	if (timeout_ms <= 0)
		timeout_ms = 500;
	c->timeout.tv_sec = timeout_ms / 1000;
	c->timeout.tv_usec = (timeout_ms % 1000) * 1000;
	uint8_t rnd[16];
	randombytes_buf(rnd, sizeof rnd);
	rc_hex_encode(rnd, sizeof rnd, c->token, sizeof c->token);
	char addr[RC_ADDR_STR_SIZE];
	rc_addr_format(wallet, addr);
	snprintf(c->prefix, sizeof c->prefix, "morgate:lock:%s:", addr);
	snprintf(c->table, sizeof c->table, "morgate:sessions:%s", addr);
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return 0;
}

void gw_coord_free(struct gw_coord *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->nidle; i++)
		redisFree(c->idle[i]);
	sodium_memzero(&c->url, sizeof c->url);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int gw_coord_ok(struct gw_coord *c)
{
	return atomic_load(&c->ok);
}

static void note_failure(struct gw_coord *c, const char *what, const char *detail)
{
	pthread_mutex_lock(&c->mu);
	c->retry_after_ms = rc_mono_ms() + RETRY_MS;
	int warn = !c->warned;
	c->warned = 1;
	pthread_mutex_unlock(&c->mu);
	if (atomic_exchange(&c->ok, 0) || warn)
		gw_log_warn("coord", "redis coordination unavailable (%s: %s): sessions are coordinated in-process only",
			    what, detail ? detail : "?");
}

/* A connection: an idle one, or a new one (AUTH, SELECT). NULL while Redis is away. */
static redisContext *take(struct gw_coord *c)
{
	pthread_mutex_lock(&c->mu);
	if (c->nidle) {
		redisContext *ctx = c->idle[--c->nidle];
		pthread_mutex_unlock(&c->mu);
		return ctx;
	}
	int wait = rc_mono_ms() < c->retry_after_ms;
	pthread_mutex_unlock(&c->mu);
	if (wait)
		return NULL;
	redisContext *ctx = c->url.is_unix ? redisConnectUnixWithTimeout(c->url.path, c->timeout)
					   : redisConnectWithTimeout(c->url.host, c->url.port, c->timeout);
	if (!ctx || ctx->err) {
		note_failure(c, "connect", ctx ? ctx->errstr : "out of memory");
		if (ctx)
			redisFree(ctx);
		return NULL;
	}
	redisSetTimeout(ctx, c->timeout);
	if (c->url.password[0]) {
		redisReply *r = c->url.username[0]
					? redisCommand(ctx, "AUTH %s %s", c->url.username, c->url.password)
					: redisCommand(ctx, "AUTH %s", c->url.password);
		int bad = !r || r->type == REDIS_REPLY_ERROR;
		if (r)
			freeReplyObject(r);
		if (bad) {
			note_failure(c, "auth", "refused");
			redisFree(ctx);
			return NULL;
		}
	}
	if (c->url.db) {
		redisReply *r = redisCommand(ctx, "SELECT %d", c->url.db);
		int bad = !r || r->type == REDIS_REPLY_ERROR;
		if (r)
			freeReplyObject(r);
		if (bad) {
			note_failure(c, "select", "refused");
			redisFree(ctx);
			return NULL;
		}
	}
	return ctx;
}

/* Give a connection back; a failed one (err set) is dropped. */
static void give(struct gw_coord *c, redisContext *ctx, int failed)
{
	if (failed || ctx->err) {
		note_failure(c, "command", ctx->err ? ctx->errstr : "unexpected reply");
		redisFree(ctx);
		return;
	}
	if (!atomic_exchange(&c->ok, 1))
		gw_log_info("coord", "redis coordination available");
	pthread_mutex_lock(&c->mu);
	if (c->nidle < IDLE_MAX) {
		c->idle[c->nidle++] = ctx;
		ctx = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	if (ctx)
		redisFree(ctx);
}

static int coord_trylock(void *ud, const char *name, int64_t ttl_ms)
{
	struct gw_coord *c = ud;
	redisContext *ctx = take(c);
	if (!ctx)
		return -1;
	char key[256];
	snprintf(key, sizeof key, "%s%s", c->prefix, name);
	redisReply *r = redisCommand(ctx, "SET %s %s NX PX %lld", key, c->token,
				     (long long)(ttl_ms > 0 ? ttl_ms : 1));
	int rc;
	if (!r || r->type == REDIS_REPLY_ERROR)
		rc = -1;
	else if (r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "OK"))
		rc = 1;
	else
		rc = r->type == REDIS_REPLY_NIL ? 0 : -1;
	if (r)
		freeReplyObject(r);
	give(c, ctx, rc < 0);
	return rc;
}

static void coord_unlock(void *ud, const char *name)
{
	struct gw_coord *c = ud;
	redisContext *ctx = take(c);
	if (!ctx)
		return; /* the lock expires by itself */
	char key[256];
	snprintf(key, sizeof key, "%s%s", c->prefix, name);
	redisReply *r = redisCommand(ctx, "EVAL %s 1 %s %s", unlock_lua, key, c->token);
	int bad = !r || r->type == REDIS_REPLY_ERROR;
	if (r)
		freeReplyObject(r);
	give(c, ctx, bad);
}

/* ---- the shared table: JSON records -------------------------------------------------------------- */

char *gw_coord_session_json(const struct rc_pool_session *s)
{
	struct ks_session k;
	gw_market_session_to_ks(s, &k);
	json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:b, "
			      "s:I, s:I, s:s, s:s, s:I}",
			      "local_id", (json_int_t)k.local_id, "id", k.id, "model", k.model, "model_id",
			      k.model_id, "bid_id", k.bid_id, "provider", k.provider, "endpoint", k.endpoint,
			      "provider_key", k.provider_key, "stake", k.stake, "price", k.price, "opened_at",
			      (json_int_t)k.opened_at, "ends_at", (json_int_t)k.ends_at, "closed_at",
			      (json_int_t)k.closed_at, "state", k.state, "dispute", k.dispute, "requests",
			      (json_int_t)k.requests, "failures", (json_int_t)k.failures, "open_tx", k.open_tx,
			      "close_tx", k.close_tx, "updated_at", (json_int_t)k.updated_at);
	char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return txt;
}

static int get_str(json_t *o, const char *key, char *dst, size_t cap)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v) || json_string_length(v) >= cap)
		return -1;
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int get_int(json_t *o, const char *key, int64_t *dst)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v))
		return -1;
	*dst = (int64_t)json_integer_value(v);
	return 0;
}

int gw_coord_session_parse(const char *json, size_t len, struct rc_pool_session *out)
{
	json_t *o = json_loadb(json, len, 0, NULL);
	struct ks_session k;
	memset(&k, 0, sizeof k);
	int64_t dispute = 0;
	json_t *d = json_is_object(o) ? json_object_get(o, "dispute") : NULL;
	if (json_is_boolean(d))
		dispute = json_is_true(d);
	int bad = !json_is_object(o) || get_int(o, "local_id", &k.local_id) || get_str(o, "id", k.id, sizeof k.id) ||
		  get_str(o, "model", k.model, sizeof k.model) ||
		  get_str(o, "model_id", k.model_id, sizeof k.model_id) ||
		  get_str(o, "bid_id", k.bid_id, sizeof k.bid_id) ||
		  get_str(o, "provider", k.provider, sizeof k.provider) ||
		  get_str(o, "endpoint", k.endpoint, sizeof k.endpoint) ||
		  get_str(o, "provider_key", k.provider_key, sizeof k.provider_key) ||
		  get_str(o, "stake", k.stake, sizeof k.stake) || get_str(o, "price", k.price, sizeof k.price) ||
		  get_int(o, "opened_at", &k.opened_at) || get_int(o, "ends_at", &k.ends_at) ||
		  get_int(o, "closed_at", &k.closed_at) || get_str(o, "state", k.state, sizeof k.state) ||
		  get_int(o, "requests", &k.requests) || get_int(o, "failures", &k.failures) ||
		  get_str(o, "open_tx", k.open_tx, sizeof k.open_tx) ||
		  get_str(o, "close_tx", k.close_tx, sizeof k.close_tx) ||
		  get_int(o, "updated_at", &k.updated_at);
	json_decref(o);
	k.dispute = (int)dispute;
	if (bad)
		return -1;
	return gw_market_session_from_ks(&k, out);
}

static void id_field(const uint8_t id[32], char out[67])
{
	rc_hex_encode_0x(id, 32, out, 67);
}

static int coord_put(void *ud, const struct rc_pool_session *s)
{
	struct gw_coord *c = ud;
	char *txt = gw_coord_session_json(s);
	if (!txt)
		return -1;
	redisContext *ctx = take(c);
	if (!ctx) {
		free(txt);
		return -1;
	}
	char field[67];
	id_field(s->id, field);
	int bad = 0;
	redisAppendCommand(ctx, "HSET %s %s %s", c->table, field, txt);
	redisAppendCommand(ctx, "PEXPIRE %s %lld", c->table, (long long)TABLE_TTL_MS);
	for (int i = 0; i < 2; i++) {
		redisReply *r = NULL;
		if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r || r->type == REDIS_REPLY_ERROR)
			bad = 1;
		if (r)
			freeReplyObject(r);
		if (bad && ctx->err)
			break;
	}
	free(txt);
	give(c, ctx, bad);
	return bad ? -1 : 0;
}

static int coord_list(void *ud, struct rc_pool_session **out, size_t *n)
{
	struct gw_coord *c = ud;
	*out = NULL;
	*n = 0;
	redisContext *ctx = take(c);
	if (!ctx)
		return -1;
	redisReply *r = redisCommand(ctx, "HGETALL %s", c->table);
	int bad = !r || r->type != REDIS_REPLY_ARRAY;
	if (!bad && r->elements >= 2) {
		*out = calloc(r->elements / 2, sizeof **out);
		if (!*out)
			bad = 1;
		for (size_t i = 0; !bad && i + 1 < r->elements; i += 2) {
			redisReply *v = r->element[i + 1];
			if (v->type != REDIS_REPLY_STRING)
				continue;
			if (gw_coord_session_parse(v->str, v->len, &(*out)[*n]) == 0)
				(*n)++;
			else
				gw_log_warn("coord", "a record of the shared session table does not parse: skipped");
		}
	}
	if (r)
		freeReplyObject(r);
	give(c, ctx, bad);
	if (bad) {
		free(*out);
		*out = NULL;
		*n = 0;
		return -1;
	}
	return 0;
}

static int coord_del(void *ud, const uint8_t id[32])
{
	struct gw_coord *c = ud;
	redisContext *ctx = take(c);
	if (!ctx)
		return -1;
	char field[67];
	id_field(id, field);
	redisReply *r = redisCommand(ctx, "HDEL %s %s", c->table, field);
	int bad = !r || r->type == REDIS_REPLY_ERROR;
	if (r)
		freeReplyObject(r);
	give(c, ctx, bad);
	return bad ? -1 : 0;
}

const struct rc_pool_coord_ops gw_coord_ops = {coord_trylock, coord_unlock, coord_put, coord_list, coord_del};
