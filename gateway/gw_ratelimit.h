/*
 * gateway rate limiter: per key and per tenant requests per minute, tokens per minute and
 * concurrent requests, plus the tenant's monthly token quota, enforced across every gateway
 * instance that shares one Redis.
 *
 * Model. An admission checks every dimension at once and either takes from all of them or from
 * none (a refused request consumes nothing):
 *   rpm, tpm     GCRA (a leaky bucket kept as one "theoretical arrival time" per key): a limit L
 *                per minute admits a burst of L, then refills continuously at L/60 per second.
 *                The tpm cost is the caller's estimate (prompt size + max_tokens); the real usage
 *                settles it afterwards (gw_rl_settle), refunding or charging the difference.
 *   concurrency  a slot with a lease (default 60 s). The slot is freed by gw_rl_release, or by
 *                itself when the lease runs out (a dead gateway never leaks slots); a long stream
 *                renews it with gw_rl_renew.
 *   monthly      the tenant's tokens per calendar month (UTC): the estimate is reserved at
 *                admission and the settlement corrects it. A refusal here is "quota exceeded",
 *                distinct from a rate limit.
 * A limit of 0 means "no limit" for that dimension (as in struct ks_limits).
 *
 * With Redis: every dimension of an admission is decided by one Lua script run (one round trip
 * on one connection run by the limiter's I/O thread). Admissions that arrive while a run is out
 * are decided together by the next run, one after the other, atomically, so concurrent requests
 * share a round trip and Redis's per-script cost while limits stay exact across processes;
 * settlement, release and renewal are fire-and-forget and ride in the same runs. Redis keys are
 * "<prefix>{t<tenant_id>}:..." (hash tag per tenant), name the public key id, never a secret,
 * and expire by themselves. One run may touch several tenants' keys: a single Redis (or a
 * replicated primary), not Redis Cluster.
 * A key (or tenant) that Redis has just refused on requests per minute is refused in process until
 * its Retry-After has passed, without a round trip (exact: such a refusal cannot end early).
 * Without Redis (none configured, unreachable, or slower than timeout_ms) the in-process limiter
 * decides with the same arithmetic, per instance; gw_rl_degraded() says so. Redis is retried in
 * the background with backoff; decisions return to it once it answers again. With fail_closed
 * set, requests are refused (GW_RL_UNAVAILABLE) instead while Redis is unavailable.
 *
 * Threading: a struct gw_rl is shared by all threads; every function is thread-safe. Callbacks
 * run either on the calling thread before gw_rl_admit returns, or on the limiter's single I/O
 * thread (see gw_rl_admit). Nothing here blocks except gw_rl_admit_wait, gw_rl_wait_ready and
 * gw_rl_free.
 *
 * Errors: functions returning int return GW_RL_OK (0) or a negative GW_RL_E* code.
 */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include <keystore/ks.h>

enum gw_rl_error {
	GW_RL_OK = 0,
	GW_RL_ENOMEM = -1,
	GW_RL_EINVAL = -2,  /* bad config or argument (the message says which) */
	GW_RL_EURL = -3,    /* the Redis URL does not parse */
	GW_RL_ESYS = -4,    /* thread, eventfd or socket creation failed */
	GW_RL_ETIMEOUT = -5 /* gw_rl_wait_ready: Redis did not become ready in time */
};

/* Name of a GW_RL_E* code; never NULL. */
const char *gw_rl_strerror(int rc);

/* The dimensions, in the order of the arrays below. */
enum gw_rl_dim {
	GW_RL_KEY_RPM = 0,
	GW_RL_KEY_TPM,
	GW_RL_KEY_CONC,
	GW_RL_TENANT_RPM,
	GW_RL_TENANT_TPM,
	GW_RL_TENANT_CONC,
	GW_RL_TENANT_MONTHLY,
	GW_RL_NDIM
};

/* Short stable name of a dimension ("key_rpm", "tenant_monthly", ...), for logs and metric
 * labels; never NULL. */
const char *gw_rl_dim_name(enum gw_rl_dim d);

enum gw_rl_outcome {
	GW_RL_ALLOWED = 0,
	GW_RL_LIMITED = 1, /* a rate or concurrency limit: HTTP 429 rate_limit_exceeded */
	GW_RL_QUOTA = 2,   /* the tenant's monthly tokens are spent: HTTP 429 insufficient_quota */
	GW_RL_TOO_LARGE = 3,  /* the token estimate exceeds a tpm or monthly limit outright: it can
	                         never be admitted (HTTP 429, do not advise a retry) */
	GW_RL_UNAVAILABLE = 4 /* fail_closed and Redis unavailable: HTTP 503 */
};

/* Short stable name of an outcome ("allowed", "limited", "quota", "too_large", "unavailable"). */
const char *gw_rl_outcome_name(enum gw_rl_outcome o);

struct gw_rl_config {
	/* "redis://[[user]:password@]host[:port][/db]" or "unix:///path[?db=N][&password=P]".
	 * NULL or "": no Redis, the in-process limiter is the only one. */
	const char *redis_url;
	const char *redis_password; /* optional; overrides a password in the URL */
	const char *prefix;         /* Redis key prefix; NULL: "mg:rl:" */
	int timeout_ms;             /* per admission: past it the local limiter decides; 0: 50 */
	int connect_timeout_ms;     /* 0: 500 */
	int backoff_min_ms;         /* first reconnect delay, doubled per failure; 0: 100 */
	int backoff_max_ms;         /* 0: 5000 */
	int lease_ms;               /* concurrency slot lease; 0: 60000 */
	int fail_closed;            /* 1: refuse (GW_RL_UNAVAILABLE) while Redis is unavailable;
	                               0 (default): decide with in-process limits */
	unsigned max_pending; /* admissions waiting for Redis; beyond, decide locally; 0: 65536 */
	/* Optional log sink (level: 0 debug, 1 info, 2 warn, 3 error; msg has no newline). Called
	 * from any thread. NULL: warnings and errors go to stderr. */
	void (*log)(void *log_ctx, int level, const char *msg);
	void *log_ctx;
};

/* What one admission asks for. */
struct gw_rl_request {
	/* Borrowed for the call only: key_id, tenant_id, limits (the key's effective limits) and
	 * tenant_limits are read; everything is copied before gw_rl_admit returns. */
	const struct ks_key_info *key;
	int64_t tokens; /* tpm and monthly reservation: prompt estimate + max_tokens; >= 0 */
};

/* One dimension's state after the decision, for x-ratelimit-* headers. */
struct gw_rl_state {
	int64_t limit;     /* 0: the dimension is not limited (then remaining and reset are 0) */
	int64_t remaining; /* what is left now (after this admission, if admitted) */
	int64_t reset_ms;  /* until fully refilled (rpm/tpm), until the month ends (monthly); 0 for
	                      concurrency */
};

enum gw_rl_ticket_flags {
	GW_RL_T_LOCAL = 1 << 0,    /* admitted by the in-process limiter */
	GW_RL_T_KEY_SLOT = 1 << 1, /* holds a key concurrency slot */
	GW_RL_T_TEN_SLOT = 1 << 2, /* holds a tenant concurrency slot */
	GW_RL_T_SETTLED = 1 << 3,  /* set by gw_rl_settle */
	GW_RL_T_RELEASED = 1 << 4  /* set by gw_rl_release */
};

/*
 * What an admitted request holds: plain data, copied freely, owned by the caller (keep it in the
 * request's arena). Pass it to gw_rl_settle / gw_rl_renew / gw_rl_release. Holds no secret.
 */
struct gw_rl_ticket {
	char key_id[KS_KEY_ID_LEN + 1];
	int64_t tenant_id;
	int64_t reserved;                     /* tokens reserved at admission */
	int64_t key_tpm, tenant_tpm, monthly; /* the limits the reservation was made under */
	int32_t month;                        /* yyyymm (UTC) the monthly reservation went to */
	uint32_t flags;                       /* enum gw_rl_ticket_flags */
	char slot[24]; /* concurrency slot id, unique across instances; "" when none */
};

struct gw_rl_decision {
	int outcome;           /* enum gw_rl_outcome */
	int refused;           /* enum gw_rl_dim that refused (the one that waits longest); -1 when
	                          admitted or unavailable */
	int64_t retry_after_s; /* on GW_RL_LIMITED / GW_RL_QUOTA: seconds (>= 1) for Retry-After;
	                          0 otherwise */
	int local; /* 1: decided by the in-process limiter (no Redis, degraded, timeout) */
	struct gw_rl_state dim[GW_RL_NDIM];
	struct gw_rl_ticket ticket; /* valid when outcome is GW_RL_ALLOWED */
};

/*
 * OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens}: the binding one of the key's
 * and the tenant's rpm (requests) or tpm (tokens) state, i.e. the one with less remaining; a
 * state with limit 0 when neither is limited. Pure.
 */
struct gw_rl_state gw_rl_requests_state(const struct gw_rl_decision *d);
struct gw_rl_state gw_rl_tokens_state(const struct gw_rl_decision *d);

struct gw_rl;

/*
 * Create a limiter. With a Redis URL it starts the I/O thread, which connects in the background
 * (until then decisions are local, see gw_rl_wait_ready). errbuf (optional) receives a one-line
 * message on failure. *out owns the limiter: free it with gw_rl_free.
 */
int gw_rl_new(const struct gw_rl_config *cfg, struct gw_rl **out, char *errbuf, size_t errlen);

/*
 * Stop the I/O thread, then free. Admissions still waiting for Redis are decided locally first,
 * so every callback has run when this returns. Callers must not call other gw_rl_* functions on
 * rl concurrently with or after gw_rl_free. NULL is a no-op.
 */
void gw_rl_free(struct gw_rl *rl);

/*
 * Called exactly once per gw_rl_admit with the decision. d is borrowed for the call: copy what
 * you need (the ticket). It runs either on the thread that called gw_rl_admit, before gw_rl_admit
 * returns (return value 1), or later on the limiter's I/O thread (return value 0). It must be
 * quick and must not block: it runs on the thread that serves every other request's Redis
 * replies. It may call gw_rl_settle / gw_rl_release / gw_rl_renew / gw_rl_admit (never
 * gw_rl_admit_wait or gw_rl_free).
 */
typedef void gw_rl_admit_cb(void *ctx, const struct gw_rl_decision *d);

/*
 * Admit one request, asynchronously. Returns 1 when cb has already run on this thread (a local
 * decision: no Redis configured, Redis unavailable, too many pending, nothing to limit), 0 when
 * cb will run later on the I/O thread (within about timeout_ms: if Redis has not answered by
 * then, the local limiter decides).
 * With libmicrohttpd: suspend the connection *before* calling, and resume it from cb; or look at
 * the return value and skip the suspension when it is 1.
 * A request with key == NULL or tokens < 0 is a caller bug: it is admitted with nothing limited
 * and counted nowhere (asserted in debug builds).
 */
int gw_rl_admit(struct gw_rl *rl, const struct gw_rl_request *req, gw_rl_admit_cb *cb, void *ctx);

/*
 * Event-loop threads that admit and finish requests in bursts: between gw_rl_defer_begin() and
 * gw_rl_defer_end() on one thread, the work this thread queues (admissions, settlements,
 * renewals) does not wake the I/O thread; gw_rl_defer_end() wakes it once if anything was
 * queued. A burst of N requests then costs one wake-up and goes out as one script run, instead
 * of one wake-up and a small batch each. Keep the bracket short (one turn of the loop): queued
 * work waits for its end. Not nestable.
 */
void gw_rl_defer_begin(void);
void gw_rl_defer_end(void);

/* Blocking convenience wrapper around gw_rl_admit, for simple callers and tests: waits at most
 * about timeout_ms (then decides locally). Never call it from a callback. */
void gw_rl_admit_wait(struct gw_rl *rl, const struct gw_rl_request *req,
                      struct gw_rl_decision *out);

/*
 * Settle the tpm and monthly reservation with the real usage: the difference actual - reserved is
 * refunded (negative) or charged (positive, possibly past the limit: the next admissions wait).
 * Fire-and-forget (pipelined, no reply awaited; lost if Redis is down then). Idempotent: a
 * second call on the same ticket does nothing. Marks the ticket settled.
 */
void gw_rl_settle(struct gw_rl *rl, struct gw_rl_ticket *t, int64_t actual_tokens);

/* Free the ticket's concurrency slots. Fire-and-forget, idempotent, marks the ticket released.
 * A ticket that held no slot is only marked. */
void gw_rl_release(struct gw_rl *rl, struct gw_rl_ticket *t);

/* settle + release in one Redis command: what the end of a request normally calls. */
void gw_rl_finish(struct gw_rl *rl, struct gw_rl_ticket *t, int64_t actual_tokens);

/* Extend the ticket's slots to a full lease from now (a long stream calls this every lease_ms/3
 * or so). Fire-and-forget. A slot whose lease already ran out is not taken again. */
void gw_rl_renew(struct gw_rl *rl, const struct gw_rl_ticket *t);

/* 1 when Redis is configured but not currently answering (decisions are local or refused),
 * 0 otherwise (including when no Redis is configured). For readiness endpoints and metrics. */
int gw_rl_degraded(const struct gw_rl *rl);

/* 1 when Redis is configured. */
int gw_rl_has_redis(const struct gw_rl *rl);

/* Wait until Redis answers (connected and script loaded), at most timeout_ms. GW_RL_OK at once
 * when no Redis is configured; GW_RL_ETIMEOUT otherwise. */
int gw_rl_wait_ready(struct gw_rl *rl, int timeout_ms);

/* Counters since gw_rl_new, for metrics; monotonic except degraded and pending. */
struct gw_rl_stats {
	uint64_t allowed;
	uint64_t limited[GW_RL_NDIM]; /* refusals by the refusing dimension (rate/concurrency) */
	uint64_t quota;               /* GW_RL_QUOTA refusals */
	uint64_t too_large;           /* GW_RL_TOO_LARGE refusals */
	uint64_t unavailable;         /* GW_RL_UNAVAILABLE refusals (fail_closed) */
	uint64_t local_decisions;     /* decisions made by the in-process limiter (any outcome) */
	uint64_t timeouts;            /* admissions Redis did not answer within timeout_ms */
	uint64_t redis_roundtrips;    /* admission scripts sent to Redis (one per batch of
	                                 admissions, see redis_admissions) */
	uint64_t redis_commands;  /* every script sent (with admissions, or only settlements...) */
	uint64_t redis_errors;    /* error replies, connection failures, lost connections */
	uint64_t reconnects;      /* successful (re)connections */
	uint64_t fire_dropped;    /* settle/release/renew lost because Redis was unavailable */
	uint64_t pending;         /* admissions waiting for Redis now */
	int degraded;             /* as gw_rl_degraded() */
	uint64_t cached_refusals; /* rpm refusals answered from the over-limit cache (also in
	                             limited[]), without a Redis round trip */
	uint64_t redis_admissions; /* admissions sent to Redis (redis_roundtrips counts the batched
	                              scripts that carried them) */
};

/* Snapshot of the counters (each read atomically; the set is not one instant). */
void gw_rl_stats(const struct gw_rl *rl, struct gw_rl_stats *out);

#endif
