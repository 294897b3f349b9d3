/*
 * gateway rate limiter (contract in gw_ratelimit.h): the Lua script that decides all dimensions
 * in one Redis round trip, the I/O thread that pipelines every caller's scripts on one hiredis
 * async connection through a small poll(2) loop, and the in-process limiter that decides with
 * the same arithmetic (gw_gcra.c) when there is no Redis, or it is down or slow.
 *
 * Why one I/O thread and one connection: a loopback round trip costs 70-100 us here, a whole HTTP
 * request about 8 us of CPU. Blocking a worker per check would cap a thread near 10k checks/s;
 * instead callers enqueue, the I/O thread writes everything queued in one write(2) and reads the
 * replies as they come, so N concurrent admissions cost about one round trip of latency and 1/N
 * of a round trip of syscalls each. Redis is single-threaded, so more connections buy nothing.
 *
 * Why the clock comes from Redis (TIME inside the script): gateways' clocks differ by
 * milliseconds; GCRA states written by one and read by another must share one time base.
 * Scripts replicate by effects (Redis >= 5 default, 7 always), so TIME in a writing script is
 * allowed.
 *
 * Failure handling. A command that is not answered within timeout_ms is decided locally and the
 * connection is considered stalled: it is freed (hiredis 0.14: a context that failed is never
 * reused) and reopened after a backoff (backoff_min_ms doubling to backoff_max_ms). Until a new
 * connection has authenticated, selected its db, loaded the script and answered, admissions are
 * decided inline by the local limiter (or refused with fail_closed). A reply that arrives after
 * its admission timed out, and that admitted, is compensated: its slots are released and its
 * token reservation refunded, so a stall leaks nothing.
 */
#include "gw_ratelimit.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "gw_gcra.h"
#include "gw_redisurl.h"

#define PREFIX_MAX 40
#define KEYNAME_MAX (PREFIX_MAX + 64)

/* clang-format off */
/*
 * The script.
 * op 'A' (admit):
 *   KEYS  1 key rpm, 2 key tpm, 3 key conc, 4 tenant rpm, 5 tenant tpm, 6 tenant conc, 7 month
 *   ARGV  1 'A', 2..8 the limits of dimensions 1..7 (0 = none), 9 token cost, 10 slot id,
 *         11 lease ms, 12 ms until the month ends
 *   returns {outcome, refusing dimension (1..7, 0 none), wait us,
 *            then per dimension: remaining, reset us}
 *   Every dimension is evaluated before anything is written: a refusal writes nothing and
 *   reports every dimension as it stands (an admission: as it stands after it).
 *   GCRA states are stored as "<debt> <ts>" (gw_gcra.h; %.17g, an exact round trip) with a TTL
 *   of the time to refill, so idle keys vanish. Concurrency is a ZSET of slot ids scored by
 *   lease expiry (ms): live ones counted with ZCOUNT, stale ones dropped when a slot is added,
 *   the key expiring with its longest lease. The month counter expires 71 days after its month.
 *   About 15 Redis calls with every dimension limited (MGET reads all GCRA states and the
 *   month); measured inside Redis: ~32 us without concurrency limits, ~47 us with them.
 * op 'S' (settle/release):
 *   KEYS  1 key tpm, 2 tenant tpm, 3 month, 4 key conc, 5 tenant conc
 *   ARGV  1 'S', 2 delta tokens, 3 key tpm, 4 tenant tpm, 5 monthly, 6 slot,
 *         7 release mask (1 key slot, 2 tenant slot)
 * op 'R' (renew): KEYS 1 key conc, 2 tenant conc; ARGV 1 'R', 2 slot, 3 lease ms.
 * The arithmetic mirrors gw_gcra.c operation for operation.
 */
static const char LUA_SCRIPT[] =
	"local P=60000000 local EPS=1e-6\n"
	"local floor,ceil,find,sub,fmt,call=math.floor,math.ceil,string.find,string.sub,string.format,redis.call\n"
	"local t=call('TIME')\n"
	"local now=(tonumber(t[1])-1735689600)*1000000+tonumber(t[2])\n"
	"local now_ms=floor(now/1000)\n"
	"local function cl(x) if x<=0 then return 0 end return ceil(x) end\n"
	"local function parse(v) if v then local p=find(v,' ',1,true)\n"
	" if p then return tonumber(sub(v,1,p-1)),tonumber(sub(v,p+1)) end end return 0,now end\n"
	"local function setst(k,debt,ts,T) if debt>0 then\n"
	" call('SET',k,fmt('%.17g %.17g',debt,ts),'PX',ceil(debt*T/1000)+1000)\n"
	" else call('DEL',k) end end\n"
	"local function drain(debt,ts,T) local d=debt if now>ts then d=d-(now-ts)/T end\n"
	" if d>0 then return d end return 0 end\n"
	"local op=ARGV[1]\n"
	"if op=='A' then\n"
	" local cost=tonumber(ARGV[9]) local lease=tonumber(ARGV[11]) local me=tonumber(ARGV[12])\n"
	" local outcome,refused,wait=0,0,-1\n"
	" local ar,at,br,bt={0,0,0,0,0,0,0},{0,0,0,0,0,0,0},{0,0,0,0,0,0,0},{0,0,0,0,0,0,0}\n"
	" local nd,ns,nT={},{},{}\n"
	" local mg=call('MGET',KEYS[1],KEYS[2],KEYS[4],KEYS[5],KEYS[7])\n"
	" local cur={mg[1],mg[2],false,mg[3],mg[4],false,mg[5]}\n"
	" for i=1,7 do\n"
	"  local L=tonumber(ARGV[i+1])\n"
	"  if L>0 then\n"
	"   local code,w=0,0\n"
	"   if i==3 or i==6 then\n"
	"    local n=call('ZCOUNT',KEYS[i],'('..now_ms,'+inf')\n"
	"    br[i]=L-n if br[i]<0 then br[i]=0 end\n"
	"    if n<L then ar[i]=L-n-1 else code=1 w=1000000 end\n"
	"   elseif i==7 then\n"
	"    local used=tonumber(cur[7] or '0')\n"
	"    br[i]=L-used if br[i]<0 then br[i]=0 end bt[i]=me*1000 at[i]=me*1000\n"
	"    if cost>L then code=3\n"
	"    elseif used<=L-cost then ar[i]=L-used-cost\n"
	"    else code=2 w=me*1000 end\n"
	"   else\n"
	"    local c=1 if i==2 or i==5 then c=cost end\n"
	"    local T=P/L local debt,ts=parse(cur[i]) local d0=drain(debt,ts,T)\n"
	"    local used=d0+c if now>ts then ts=now end\n"
	"    local r0=floor(L-d0+EPS) if r0<0 then r0=0 end br[i]=r0 bt[i]=cl(d0*T)\n"
	"    if c<=L and used<=L+EPS then nd[i]=used ns[i]=ts nT[i]=T\n"
	"     ar[i]=floor(L-used+EPS) at[i]=cl(used*T)\n"
	"    elseif c>L then code=3 else code=1 w=cl((used-L)*T) end\n"
	"   end\n"
	"   if code>outcome or (code>0 and code==outcome and w>wait) then\n"
	"    outcome=code refused=i wait=w end\n"
	"  end\n"
	" end\n"
	" if outcome==0 then\n"
	"  for i,d in pairs(nd) do setst(KEYS[i],d,ns[i],nT[i]) end\n"
	"  for i=3,6,3 do if tonumber(ARGV[i+1])>0 then\n"
	"   call('ZADD',KEYS[i],now_ms+lease,ARGV[10])\n"
	"   call('ZREMRANGEBYSCORE',KEYS[i],'-inf',now_ms)\n"
	"   call('PEXPIRE',KEYS[i],lease+1000) end end\n"
	"  if tonumber(ARGV[8])>0 and cost>0 then call('INCRBY',KEYS[7],cost)\n"
	"   if not cur[7] then call('PEXPIRE',KEYS[7],me+71*86400000) end end\n"
	" else ar=br at=bt end\n"
	" if wait<0 then wait=0 end\n"
	" return {outcome,refused,wait,ar[1],at[1],ar[2],at[2],ar[3],at[3],ar[4],at[4],ar[5],at[5],\n"
	"  ar[6],at[6],ar[7],at[7]}\n"
	"elseif op=='S' then\n"
	" local delta=tonumber(ARGV[2])\n"
	" if delta~=0 then\n"
	"  local mg=call('MGET',KEYS[1],KEYS[2])\n"
	"  for j=1,2 do local L=tonumber(ARGV[j+2]) if L>0 then\n"
	"   local T=P/L local debt,ts=parse(mg[j]) local d=drain(debt,ts,T)+delta\n"
	"   if d<0 then d=0 end if now>ts then ts=now end setst(KEYS[j],d,ts,T) end end\n"
	"  if tonumber(ARGV[5])>0 then\n"
	"   if call('INCRBY',KEYS[3],delta)==delta and call('PTTL',KEYS[3])<0 then\n"
	"    call('PEXPIRE',KEYS[3],71*86400000) end end\n"
	" end\n"
	" local m=tonumber(ARGV[7])\n"
	" if m%2==1 then call('ZREM',KEYS[4],ARGV[6]) end\n"
	" if m>=2 then call('ZREM',KEYS[5],ARGV[6]) end\n"
	" return 1\n"
	"elseif op=='R' then\n"
	" local lease=tonumber(ARGV[3]) local n=0\n"
	" for j=1,2 do local sc=call('ZSCORE',KEYS[j],ARGV[2])\n"
	"  if sc and tonumber(sc)>now_ms then call('ZADD',KEYS[j],'XX',now_ms+lease,ARGV[2])\n"
	"   call('PEXPIRE',KEYS[j],lease+1000) n=n+1 end end\n"
	" return n\n"
	"end\n"
	"return redis.error_reply('morgate rate limiter: unknown op')\n";
/* clang-format on */

/* ---- the in-process limiter ------------------------------------------------------------------ */

struct lentry {
	struct lentry *next;
	struct gw_gcra_state g; /* rpm/tpm */
	int64_t n;              /* slots held, or tokens used this month */
	double expires;         /* us: the entry may be dropped after this (and n == 0 for slots) */
	char name[];
};

struct ltable {
	pthread_mutex_t mu;
	struct lentry **b;
	size_t nb, count;
	uint64_t ops;
	double last_sweep;
};

/* What an admission needs, copied from the caller. */
struct admit_in {
	char key_id[KS_KEY_ID_LEN + 1];
	int64_t tenant_id;
	int64_t lim[GW_RL_NDIM];
	int64_t cost;
	int32_t month;
	int64_t month_end_s;
	char slot[24];
};

/* ---- the limiter ---------------------------------------------------------------------------- */

enum job_kind { JOB_ADMIT, JOB_SETTLE, JOB_RENEW };

struct job {
	struct job *next;          /* submission queue */
	struct job *fprev, *fnext; /* timeout FIFO (I/O thread only) */
	int kind;
	int in_fifo;
	int answered;         /* the callback ran (timeout): a late reply is compensated */
	uint64_t deadline_us; /* monotonic */
	uint64_t sent_us;     /* monotonic, when the script was queued for Redis */
	struct admit_in in;   /* JOB_ADMIT */
	gw_rl_admit_cb *cb;
	void *ctx;
	struct gw_rl_ticket t; /* JOB_SETTLE / JOB_RENEW */
	int64_t delta;
	int release_mask;
};

struct gw_rl {
	struct gw_rl_config cfg;
	char prefix[PREFIX_MAX + 1];
	struct gw_redis_url url;
	int has_redis;
	char sha[41];
	uint32_t instance;
	_Atomic uint64_t slot_seq;

	struct ltable local;

	/* requests-per-minute refusals Redis gave recently (see block_*) */
	pthread_mutex_t bmu;
	atomic_int nblocks;
	struct block *blocks; /* BLOCKS entries, direct-mapped */

	/* submission queue */
	pthread_mutex_t qmu;
	struct job *qhead, *qtail;
	int efd;
	int thread_started;
	pthread_t thread;
	atomic_int stop;
	atomic_int ready;

	/* I/O thread state */
	redisAsyncContext *ac;
	int want_write;
	int conn_ready; /* I/O thread's view of ready */
	int probing;    /* a PING is out to tell a slow connection from a dead one */
	int need_reset;
	uint64_t connect_deadline_us, next_connect_us;
	int backoff_ms;
	struct job *fhead, *ftail; /* admissions in flight, oldest first */

	/* counters */
	_Atomic uint64_t c_allowed, c_limited[GW_RL_NDIM], c_quota, c_too_large, c_unavailable,
	        c_local, c_timeouts, c_roundtrips, c_commands, c_errors, c_reconnects, c_dropped,
	        c_pending, c_cached;
};

static const char *const DIM_NAMES[GW_RL_NDIM] = {"key_rpm",         "key_tpm",
                                                  "key_concurrency", "tenant_rpm",
                                                  "tenant_tpm",      "tenant_concurrency",
                                                  "tenant_monthly"};

const char *gw_rl_dim_name(enum gw_rl_dim d)
{
	return (unsigned)d < GW_RL_NDIM ? DIM_NAMES[d] : "unknown";
}

const char *gw_rl_outcome_name(enum gw_rl_outcome o)
{
	switch (o) {
	case GW_RL_ALLOWED:
		return "allowed";
	case GW_RL_LIMITED:
		return "limited";
	case GW_RL_QUOTA:
		return "quota";
	case GW_RL_TOO_LARGE:
		return "too_large";
	case GW_RL_UNAVAILABLE:
		return "unavailable";
	}
	return "unknown";
}

const char *gw_rl_strerror(int rc)
{
	switch (rc) {
	case GW_RL_OK:
		return "ok";
	case GW_RL_ENOMEM:
		return "out of memory";
	case GW_RL_EINVAL:
		return "invalid argument";
	case GW_RL_EURL:
		return "bad redis url";
	case GW_RL_ESYS:
		return "system error";
	case GW_RL_ETIMEOUT:
		return "timed out";
	}
	return "unknown error";
}

__attribute__((format(printf, 3, 4))) static void rl_log(struct gw_rl *rl, int level,
                                                         const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	if (!rl->cfg.log && level < 2)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (rl->cfg.log)
		rl->cfg.log(rl->cfg.log_ctx, level, msg);
	else
		fprintf(stderr, "ratelimit: %s\n", msg);
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void wall_now(int64_t *sec, int64_t *usec)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	*sec = ts.tv_sec;
	*usec = ts.tv_nsec / 1000;
}

/* ---- Redis key names --------------------------------------------------------------------------
 */

/* Dimension d's key (d in 0..6) for tenant/key; month used for the monthly counter. */
static void key_name(const struct gw_rl *rl, char out[KEYNAME_MAX], int d, int64_t tenant_id,
                     const char *key_id, int32_t month)
{
	static const char *const suffix[GW_RL_NDIM] = {"rpm", "tpm",  "conc", "rpm",
	                                               "tpm", "conc", "mq"};
	if (d <= GW_RL_KEY_CONC)
		snprintf(out, KEYNAME_MAX, "%s{t%" PRId64 "}:k:%.12s:%s", rl->prefix, tenant_id,
		         key_id, suffix[d]);
	else if (d < GW_RL_TENANT_MONTHLY)
		snprintf(out, KEYNAME_MAX, "%s{t%" PRId64 "}:%s", rl->prefix, tenant_id, suffix[d]);
	else
		snprintf(out, KEYNAME_MAX, "%s{t%" PRId64 "}:mq:%" PRId32, rl->prefix, tenant_id,
		         month);
}

/* ---- the in-process limiter ------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int ltable_init(struct ltable *t)
{
	t->nb = 1024;
	t->b = calloc(t->nb, sizeof *t->b);
	if (!t->b)
		return GW_RL_ENOMEM;
	pthread_mutex_init(&t->mu, NULL);
	return GW_RL_OK;
}

static void ltable_release(struct ltable *t)
{
	if (!t->b)
		return;
	for (size_t i = 0; i < t->nb; i++) {
		struct lentry *e = t->b[i];
		while (e) {
			struct lentry *n = e->next;
			free(e);
			e = n;
		}
	}
	free(t->b);
	t->b = NULL;
	pthread_mutex_destroy(&t->mu);
}

static void ltable_grow(struct ltable *t)
{
	size_t nb = t->nb * 2;
	struct lentry **b = calloc(nb, sizeof *b);
	if (!b)
		return; /* keep the longer chains */
	for (size_t i = 0; i < t->nb; i++) {
		struct lentry *e = t->b[i];
		while (e) {
			struct lentry *n = e->next;
			size_t j = fnv1a(e->name) & (nb - 1);
			e->next = b[j];
			b[j] = e;
			e = n;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

/* Drop entries that hold nothing: refilled buckets, free slot counters, months long gone. */
static void ltable_sweep(struct ltable *t, double now)
{
	for (size_t i = 0; i < t->nb; i++) {
		struct lentry **pp = &t->b[i];
		while (*pp) {
			struct lentry *e = *pp;
			if (e->expires <= now) {
				*pp = e->next;
				free(e);
				t->count--;
			} else {
				pp = &e->next;
			}
		}
	}
	t->last_sweep = now;
}

/* Find or (create) an entry; NULL only when create fails. Caller holds mu. */
static struct lentry *ltable_get(struct ltable *t, const char *name, int create)
{
	size_t i = fnv1a(name) & (t->nb - 1);
	for (struct lentry *e = t->b[i]; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	if (!create)
		return NULL;
	size_t n = strlen(name);
	struct lentry *e = malloc(sizeof *e + n + 1);
	if (!e)
		return NULL;
	memcpy(e->name, name, n + 1);
	e->g.debt = 0;
	e->g.ts = 0;
	e->n = 0;
	e->expires = 0;
	e->next = t->b[i];
	t->b[i] = e;
	if (++t->count > t->nb)
		ltable_grow(t);
	return e;
}

static double now_gcra_us(void)
{
	int64_t s, us;
	wall_now(&s, &us);
	return gw_gcra_time_us(s, us);
}

/* Raw per-dimension result, shared by the Lua reply parser and the local limiter. */
struct raw {
	int outcome, refused; /* refused: 1..7, 0 none */
	int64_t wait_us;
	int64_t rem[GW_RL_NDIM], reset_us[GW_RL_NDIM];
};

static void refuse(struct raw *r, int code, int d, int64_t w)
{
	if (code > r->outcome || (code == r->outcome && w > r->wait_us)) {
		r->outcome = code;
		r->refused = d;
		r->wait_us = w;
	}
}

/* The Lua script's op 'A', in process. Names carry no prefix: the table is this process's. */
static void local_admit(struct gw_rl *rl, const struct admit_in *in, int64_t lease_ms,
                        struct raw *r)
{
	struct ltable *t = &rl->local;
	char names[GW_RL_NDIM][KEYNAME_MAX];
	struct lentry *e[GW_RL_NDIM] = {0};
	struct gw_gcra_state nts[GW_RL_NDIM];
	int64_t bef_rem[GW_RL_NDIM] = {0}, bef_reset[GW_RL_NDIM] = {0};
	int64_t sec, usec;
	wall_now(&sec, &usec);
	double now = gw_gcra_time_us(sec, usec);
	int64_t me_ms = (in->month_end_s - sec) * 1000 - usec / 1000;
	if (me_ms < 0)
		me_ms = 0;

	memset(r, 0, sizeof *r);
	r->wait_us = -1;
	pthread_mutex_lock(&t->mu);
	for (int d = 0; d < GW_RL_NDIM; d++) {
		int64_t L = in->lim[d];
		if (L <= 0)
			continue;
		key_name(rl, names[d], d, in->tenant_id, in->key_id, in->month);
		e[d] = ltable_get(t, names[d] + strlen(rl->prefix), 1);
		if (!e[d]) { /* out of memory: this dimension is not enforced for now */
			continue;
		}
		if (d == GW_RL_KEY_CONC || d == GW_RL_TENANT_CONC) {
			bef_rem[d] = e[d]->n < L ? L - e[d]->n : 0;
			if (e[d]->n < L)
				r->rem[d] = L - e[d]->n - 1;
			else
				refuse(r, GW_RL_LIMITED, d + 1, 1000000);
		} else if (d == GW_RL_TENANT_MONTHLY) {
			int q = gw_quota_check(e[d]->n, in->cost, L, &r->rem[d]);
			bef_rem[d] = e[d]->n < L ? L - e[d]->n : 0;
			r->reset_us[d] = bef_reset[d] = me_ms * 1000;
			if (q < 0)
				refuse(r, GW_RL_TOO_LARGE, d + 1, 0);
			else if (q == 0)
				refuse(r, GW_RL_QUOTA, d + 1, me_ms * 1000);
		} else {
			int64_t c = (d == GW_RL_KEY_RPM || d == GW_RL_TENANT_RPM) ? 1 : in->cost;
			struct gw_gcra_result g, g0;
			gw_gcra_check(e[d]->g, now, L, GW_GCRA_MINUTE_US, c, &g);
			gw_gcra_check(e[d]->g, now, L, GW_GCRA_MINUTE_US, L + 1,
			              &g0); /* state as is */
			bef_rem[d] = g0.remaining;
			bef_reset[d] = g0.reset_us;
			r->rem[d] = g.remaining;
			r->reset_us[d] = g.reset_us;
			if (g.allowed)
				nts[d] = g.state;
			else if (g.too_large)
				refuse(r, GW_RL_TOO_LARGE, d + 1, 0);
			else
				refuse(r, GW_RL_LIMITED, d + 1, g.retry_us);
		}
	}
	if (r->outcome != GW_RL_ALLOWED) { /* a refusal takes nothing: report the state as is */
		memcpy(r->rem, bef_rem, sizeof r->rem);
		memcpy(r->reset_us, bef_reset, sizeof r->reset_us);
	}
	if (r->outcome == GW_RL_ALLOWED) {
		for (int d = 0; d < GW_RL_NDIM; d++) {
			if (!e[d])
				continue;
			if (d == GW_RL_KEY_CONC || d == GW_RL_TENANT_CONC) {
				e[d]->n++;
				e[d]->expires = INFINITY;
			} else if (d == GW_RL_TENANT_MONTHLY) {
				e[d]->n += in->cost;
				e[d]->expires = now + (double)(me_ms + 71 * 86400000LL) * 1000.0;
			} else {
				e[d]->g = nts[d];
				e[d]->expires = now + (double)r->reset_us[d];
			}
		}
	}
	/* Sweep at most once a second, and only once enough has happened to make it worthwhile. */
	if (++t->ops % 1024 == 0 && now - t->last_sweep > 1e6)
		ltable_sweep(t, now);
	pthread_mutex_unlock(&t->mu);
	(void)lease_ms;
	if (r->wait_us < 0)
		r->wait_us = 0;
}

static void local_settle(struct gw_rl *rl, const struct gw_rl_ticket *tk, int64_t delta, int mask)
{
	struct ltable *t = &rl->local;
	char name[KEYNAME_MAX];
	double now = now_gcra_us();
	size_t pl = strlen(rl->prefix);
	pthread_mutex_lock(&t->mu);
	if (delta != 0) {
		int64_t lims[2] = {tk->key_tpm, tk->tenant_tpm};
		int dims[2] = {GW_RL_KEY_TPM, GW_RL_TENANT_TPM};
		for (int j = 0; j < 2; j++) {
			if (lims[j] <= 0)
				continue;
			key_name(rl, name, dims[j], tk->tenant_id, tk->key_id, tk->month);
			struct lentry *e = ltable_get(t, name + pl, 1);
			if (!e)
				continue;
			e->g = gw_gcra_adjust(e->g, now, lims[j], GW_GCRA_MINUTE_US, delta);
			e->expires = now + (double)gw_gcra_reset_us(e->g, now, lims[j],
			                                            GW_GCRA_MINUTE_US);
		}
		if (tk->monthly > 0) {
			key_name(rl, name, GW_RL_TENANT_MONTHLY, tk->tenant_id, tk->key_id,
			         tk->month);
			struct lentry *e = ltable_get(t, name + pl, 0);
			if (e)
				e->n += delta;
		}
	}
	for (int j = 0; j < 2; j++) {
		if (!(mask & (1 << j)))
			continue;
		key_name(rl, name, j ? GW_RL_TENANT_CONC : GW_RL_KEY_CONC, tk->tenant_id,
		         tk->key_id, tk->month);
		struct lentry *e = ltable_get(t, name + pl, 0);
		if (e && e->n > 0 && --e->n == 0)
			e->expires = 0;
	}
	pthread_mutex_unlock(&t->mu);
}

/* ---- the over-limit cache ----------------------------------------------------------------- */

/*
 * Envoy's good idea (anchor-peers §4): a client hammering past its requests-per-minute limit
 * should not cost a Redis round trip per refused request. When Redis refuses on key_rpm or
 * tenant_rpm, the refusal holds until its wait has passed: GCRA's next admissible time for a
 * cost of 1 only moves later (other instances' admissions), never earlier (requests per minute
 * are never refunded). So for that long the same key (key_rpm) or every key of the tenant
 * (tenant_rpm) is refused here, with the decision Redis gave and its times counted down. The
 * wait is counted from when the script was sent, which is no later than Redis's clock read: the
 * cache can only end a block early (Redis then decides), never late. A block applies only to
 * requests with the same limit it was learnt under (an admin may raise it). Token, concurrency
 * and quota refusals are not cached: settlements and releases can end them at any time.
 */
#define BLOCKS 1024

struct block {
	int64_t tenant_id;
	char key_id[KS_KEY_ID_LEN + 1]; /* "" for a tenant-wide block */
	int64_t limit;
	uint64_t until_us, learnt_us; /* monotonic */
	struct gw_rl_decision d;
};

static size_t block_slot(int64_t tenant_id, const char *key_id)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)tenant_id;
	for (const char *p = key_id; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return (size_t)(h * 0x9E3779B97F4A7C15ull >> 54) & (BLOCKS - 1);
}

static void block_learn(struct gw_rl *rl, const struct admit_in *in, const struct gw_rl_decision *d,
                        uint64_t sent_us, int64_t wait_us)
{
	if (d->outcome != GW_RL_LIMITED || wait_us < 1000 || !rl->blocks)
		return;
	const char *kid = d->refused == GW_RL_KEY_RPM ? in->key_id : "";
	if (d->refused != GW_RL_KEY_RPM && d->refused != GW_RL_TENANT_RPM)
		return;
	struct block *b = &rl->blocks[block_slot(in->tenant_id, kid)];
	pthread_mutex_lock(&rl->bmu);
	if (b->until_us == 0)
		atomic_fetch_add(&rl->nblocks, 1);
	b->tenant_id = in->tenant_id;
	snprintf(b->key_id, sizeof b->key_id, "%s", kid);
	b->limit = in->lim[d->refused];
	b->until_us = sent_us + (uint64_t)wait_us;
	b->learnt_us = sent_us;
	b->d = *d;
	pthread_mutex_unlock(&rl->bmu);
}

/* 1 and *out filled when a cached refusal applies to this request. */
static int block_check(struct gw_rl *rl, const struct admit_in *in, struct gw_rl_decision *out)
{
	if (!rl->blocks || atomic_load(&rl->nblocks) == 0)
		return 0;
	uint64_t now = mono_us();
	int hit = 0;
	pthread_mutex_lock(&rl->bmu);
	for (int pass = 0; pass < 2 && !hit; pass++) {
		const char *kid = pass == 0 ? in->key_id : "";
		int dim = pass == 0 ? GW_RL_KEY_RPM : GW_RL_TENANT_RPM;
		struct block *b = &rl->blocks[block_slot(in->tenant_id, kid)];
		if (b->until_us == 0)
			continue;
		if (b->until_us <= now) { /* over: forget it */
			b->until_us = 0;
			atomic_fetch_sub(&rl->nblocks, 1);
			continue;
		}
		if (b->tenant_id != in->tenant_id || strcmp(b->key_id, kid) != 0 ||
		    b->limit != in->lim[dim])
			continue;
		*out = b->d;
		int64_t gone_ms = (int64_t)(now - b->learnt_us) / 1000;
		out->retry_after_s = (int64_t)(b->until_us - now + 999999) / 1000000;
		if (out->retry_after_s < 1)
			out->retry_after_s = 1;
		for (int i = 0; i < GW_RL_NDIM; i++) {
			out->dim[i].limit = in->lim[i] > 0 ? in->lim[i] : 0;
			out->dim[i].reset_ms -= gone_ms;
			if (out->dim[i].reset_ms < 0)
				out->dim[i].reset_ms = 0;
		}
		hit = 1;
	}
	pthread_mutex_unlock(&rl->bmu);
	return hit;
}

/* ---- decisions ------------------------------------------------------------------------------- */

static void fill_decision(struct gw_rl *rl, const struct admit_in *in, const struct raw *r,
                          int local, struct gw_rl_decision *d)
{
	memset(d, 0, sizeof *d);
	d->outcome = r->outcome;
	d->refused = r->outcome == GW_RL_ALLOWED ? -1 : r->refused - 1;
	d->local = local;
	for (int i = 0; i < GW_RL_NDIM; i++) {
		d->dim[i].limit = in->lim[i] > 0 ? in->lim[i] : 0;
		if (in->lim[i] > 0) {
			d->dim[i].remaining = r->rem[i] > 0 ? r->rem[i] : 0;
			d->dim[i].reset_ms = (r->reset_us[i] + 999) / 1000;
		}
	}
	if (r->outcome == GW_RL_LIMITED || r->outcome == GW_RL_QUOTA) {
		d->retry_after_s = (r->wait_us + 999999) / 1000000;
		if (d->retry_after_s < 1)
			d->retry_after_s = 1;
	}
	if (r->outcome == GW_RL_ALLOWED) {
		struct gw_rl_ticket *t = &d->ticket;
		memcpy(t->key_id, in->key_id, sizeof t->key_id);
		t->tenant_id = in->tenant_id;
		t->reserved = in->cost;
		t->key_tpm = in->lim[GW_RL_KEY_TPM];
		t->tenant_tpm = in->lim[GW_RL_TENANT_TPM];
		t->monthly = in->lim[GW_RL_TENANT_MONTHLY];
		t->month = in->month;
		t->flags = (local ? GW_RL_T_LOCAL : 0) |
		           (in->lim[GW_RL_KEY_CONC] > 0 ? GW_RL_T_KEY_SLOT : 0) |
		           (in->lim[GW_RL_TENANT_CONC] > 0 ? GW_RL_T_TEN_SLOT : 0);
		if (t->flags & (GW_RL_T_KEY_SLOT | GW_RL_T_TEN_SLOT))
			memcpy(t->slot, in->slot, sizeof t->slot);
	}
	(void)rl;
}

static void count_decision(struct gw_rl *rl, const struct gw_rl_decision *d)
{
	switch (d->outcome) {
	case GW_RL_ALLOWED:
		atomic_fetch_add(&rl->c_allowed, 1);
		break;
	case GW_RL_LIMITED:
		if (d->refused >= 0 && d->refused < GW_RL_NDIM)
			atomic_fetch_add(&rl->c_limited[d->refused], 1);
		break;
	case GW_RL_QUOTA:
		atomic_fetch_add(&rl->c_quota, 1);
		break;
	case GW_RL_TOO_LARGE:
		atomic_fetch_add(&rl->c_too_large, 1);
		break;
	case GW_RL_UNAVAILABLE:
		atomic_fetch_add(&rl->c_unavailable, 1);
		break;
	}
	if (d->local)
		atomic_fetch_add(&rl->c_local, 1);
}

/* Decide without Redis: the local limiter, or a refusal when failing closed (redis_failed). */
static void decide_local(struct gw_rl *rl, const struct admit_in *in, int redis_failed,
                         struct gw_rl_decision *d)
{
	struct raw r;
	if (redis_failed && rl->cfg.fail_closed) {
		memset(d, 0, sizeof *d);
		d->outcome = GW_RL_UNAVAILABLE;
		d->refused = -1;
		d->local = 1;
		for (int i = 0; i < GW_RL_NDIM; i++)
			d->dim[i].limit = in->lim[i] > 0 ? in->lim[i] : 0;
	} else {
		local_admit(rl, in, rl->cfg.lease_ms, &r);
		fill_decision(rl, in, &r, 1, d);
	}
	count_decision(rl, d);
}

struct gw_rl_state gw_rl_requests_state(const struct gw_rl_decision *d)
{
	const struct gw_rl_state *k = &d->dim[GW_RL_KEY_RPM], *t = &d->dim[GW_RL_TENANT_RPM];
	if (k->limit > 0 && (t->limit <= 0 || k->remaining <= t->remaining))
		return *k;
	if (t->limit > 0)
		return *t;
	struct gw_rl_state none = {0, 0, 0};
	return none;
}

struct gw_rl_state gw_rl_tokens_state(const struct gw_rl_decision *d)
{
	const struct gw_rl_state *k = &d->dim[GW_RL_KEY_TPM], *t = &d->dim[GW_RL_TENANT_TPM];
	if (k->limit > 0 && (t->limit <= 0 || k->remaining <= t->remaining))
		return *k;
	if (t->limit > 0)
		return *t;
	struct gw_rl_state none = {0, 0, 0};
	return none;
}

/* ---- the I/O thread: hiredis async adapter -------------------------------------------------- */

static void ev_add_read(void *p)
{
	(void)p; /* the loop always polls for reading while a context exists */
}
static void ev_del_read(void *p)
{
	(void)p;
}
static void ev_add_write(void *p)
{
	((struct gw_rl *)p)->want_write = 1;
}
static void ev_del_write(void *p)
{
	((struct gw_rl *)p)->want_write = 0;
}
/* hiredis calls cleanup from __redisAsyncFree, whoever started it (us, a connect failure, a
 * lost connection): the one place where the context's end is seen. */
static void ev_cleanup(void *p)
{
	struct gw_rl *rl = p;
	rl->ac = NULL;
	rl->want_write = 0;
	if (rl->conn_ready)
		rl_log(rl, 2, "redis connection lost: deciding locally until it is back");
	rl->conn_ready = 0;
	rl->probing = 0;
	atomic_store(&rl->ready, 0);
	rl->next_connect_us = mono_us() + (uint64_t)rl->backoff_ms * 1000u;
	rl->backoff_ms *= 2;
	if (rl->backoff_ms > rl->cfg.backoff_max_ms)
		rl->backoff_ms = rl->cfg.backoff_max_ms;
}

static void fifo_remove(struct gw_rl *rl, struct job *j)
{
	if (!j->in_fifo)
		return;
	if (j->fprev)
		j->fprev->fnext = j->fnext;
	else
		rl->fhead = j->fnext;
	if (j->fnext)
		j->fnext->fprev = j->fprev;
	else
		rl->ftail = j->fprev;
	j->fprev = j->fnext = NULL;
	j->in_fifo = 0;
}

static void fifo_push(struct gw_rl *rl, struct job *j)
{
	j->fnext = NULL;
	j->fprev = rl->ftail;
	if (rl->ftail)
		rl->ftail->fnext = j;
	else
		rl->fhead = j;
	rl->ftail = j;
	j->in_fifo = 1;
}

/* The connection can carry commands (maybe while a probe decides whether it is healthy). */
static int conn_alive(const struct gw_rl *rl)
{
	return rl->ac && !rl->need_reset &&
	       !(rl->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING));
}

/* The connection is healthy: admissions go to Redis. */
static int redis_usable(const struct gw_rl *rl)
{
	return conn_alive(rl) && rl->conn_ready;
}

static void on_admit_reply(redisAsyncContext *ac, void *reply, void *priv);
static void on_fire_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Argument storage for one command: at most 21 arguments. */
struct argv_buf {
	const char *argv[24];
	size_t len[24];
	int argc;
	char keys[GW_RL_NDIM][KEYNAME_MAX];
	char nums[16][24];
	int nn;
};

static void arg(struct argv_buf *a, const char *s)
{
	a->argv[a->argc] = s;
	a->len[a->argc] = strlen(s);
	a->argc++;
}

static void arg_i(struct argv_buf *a, int64_t v)
{
	char *p = a->nums[a->nn++];
	snprintf(p, 24, "%" PRId64, v);
	arg(a, p);
}

static void arg_head(struct gw_rl *rl, struct argv_buf *a, int use_eval, int nkeys)
{
	a->argc = 0;
	a->nn = 0;
	arg(a, use_eval ? "EVAL" : "EVALSHA");
	if (use_eval) {
		a->argv[a->argc] = LUA_SCRIPT;
		a->len[a->argc] = sizeof LUA_SCRIPT - 1;
		a->argc++;
	} else {
		arg(a, rl->sha);
	}
	arg_i(a, nkeys);
}

static void build_admit(struct gw_rl *rl, const struct admit_in *in, int use_eval,
                        struct argv_buf *a)
{
	int64_t sec, usec;
	wall_now(&sec, &usec);
	int64_t me_ms = (in->month_end_s - sec) * 1000 - usec / 1000;
	arg_head(rl, a, use_eval, GW_RL_NDIM);
	for (int d = 0; d < GW_RL_NDIM; d++) {
		key_name(rl, a->keys[d], d, in->tenant_id, in->key_id, in->month);
		arg(a, a->keys[d]);
	}
	arg(a, "A");
	for (int d = 0; d < GW_RL_NDIM; d++)
		arg_i(a, in->lim[d] > 0 ? in->lim[d] : 0);
	arg_i(a, in->cost);
	arg(a, in->slot[0] ? in->slot : "-");
	arg_i(a, rl->cfg.lease_ms);
	arg_i(a, me_ms > 0 ? me_ms : 0);
}

static void build_settle(struct gw_rl *rl, const struct gw_rl_ticket *t, int64_t delta, int mask,
                         int use_eval, struct argv_buf *a)
{
	static const int dims[5] = {GW_RL_KEY_TPM, GW_RL_TENANT_TPM, GW_RL_TENANT_MONTHLY,
	                            GW_RL_KEY_CONC, GW_RL_TENANT_CONC};
	arg_head(rl, a, use_eval, 5);
	for (int i = 0; i < 5; i++) {
		key_name(rl, a->keys[i], dims[i], t->tenant_id, t->key_id, t->month);
		arg(a, a->keys[i]);
	}
	arg(a, "S");
	arg_i(a, delta);
	arg_i(a, t->key_tpm);
	arg_i(a, t->tenant_tpm);
	arg_i(a, t->monthly);
	arg(a, t->slot[0] ? t->slot : "-");
	arg_i(a, mask);
}

static void build_renew(struct gw_rl *rl, const struct gw_rl_ticket *t, int use_eval,
                        struct argv_buf *a)
{
	arg_head(rl, a, use_eval, 2);
	key_name(rl, a->keys[0], GW_RL_KEY_CONC, t->tenant_id, t->key_id, t->month);
	key_name(rl, a->keys[1], GW_RL_TENANT_CONC, t->tenant_id, t->key_id, t->month);
	arg(a, a->keys[0]);
	arg(a, a->keys[1]);
	arg(a, "R");
	arg(a, t->slot);
	arg_i(a, rl->cfg.lease_ms);
}

static int send_argv(struct gw_rl *rl, struct argv_buf *a, redisCallbackFn *fn, void *priv)
{
	if (!conn_alive(rl))
		return -1;
	if (redisAsyncCommandArgv(rl->ac, fn, priv, a->argc, a->argv, a->len) != REDIS_OK)
		return -1;
	atomic_fetch_add(&rl->c_commands, 1);
	return 0;
}

/* Send a fire-and-forget job (JOB_SETTLE / JOB_RENEW); takes j (freed by the reply callback). */
static void send_fire(struct gw_rl *rl, struct job *j, int use_eval)
{
	struct argv_buf a;
	if (j->kind == JOB_SETTLE)
		build_settle(rl, &j->t, j->delta, j->release_mask, use_eval, &a);
	else
		build_renew(rl, &j->t, use_eval, &a);
	if (send_argv(rl, &a, on_fire_reply, j) != 0) {
		atomic_fetch_add(&rl->c_dropped, 1);
		free(j);
	}
}

static int is_noscript(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

static void on_fire_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct gw_rl *rl = ac->ev.data;
	struct job *j = priv;
	redisReply *r = reply;
	if (is_noscript(r) && conn_alive(rl)) {
		send_fire(rl, j, 1); /* the script cache was flushed: send the text this once */
		return;
	}
	if (!r) {
		atomic_fetch_add(&rl->c_dropped, 1);
	} else if (r->type == REDIS_REPLY_ERROR) {
		atomic_fetch_add(&rl->c_errors, 1);
		rl_log(rl, 2, "redis refused a settlement: %s", r->str ? r->str : "?");
	}
	free(j);
}

/* Parse the 'A' reply; -1 when it does not have the expected shape. */
static int parse_admit(const redisReply *r, struct raw *out)
{
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 + 2 * GW_RL_NDIM)
		return -1;
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type != REDIS_REPLY_INTEGER)
			return -1;
	out->outcome = (int)r->element[0]->integer;
	out->refused = (int)r->element[1]->integer;
	out->wait_us = r->element[2]->integer;
	if (out->outcome < GW_RL_ALLOWED || out->outcome > GW_RL_TOO_LARGE || out->refused < 0 ||
	    out->refused > GW_RL_NDIM)
		return -1;
	for (int d = 0; d < GW_RL_NDIM; d++) {
		out->rem[d] = r->element[3 + 2 * d]->integer;
		out->reset_us[d] = r->element[4 + 2 * d]->integer;
	}
	return 0;
}

static void send_admit(struct gw_rl *rl, struct job *j, int use_eval);

static void on_admit_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct gw_rl *rl = ac->ev.data;
	struct job *j = priv;
	redisReply *r = reply;
	struct raw raw;
	struct gw_rl_decision d;

	if (is_noscript(r) && conn_alive(rl) && !j->answered) {
		fifo_remove(rl, j);
		send_admit(rl, j, 1);
		return;
	}
	int ok = r && parse_admit(r, &raw) == 0;
	if (r && !ok) {
		atomic_fetch_add(&rl->c_errors, 1);
		rl_log(rl, 2, "redis admission failed: %s",
		       r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply");
	}
	if (j->answered) {
		/* Timed out and decided locally already. If Redis admitted it after all, give back
		 * what it took: the slots and the token reservation (the request count stays). */
		if (ok && raw.outcome == GW_RL_ALLOWED && conn_alive(rl)) {
			fill_decision(rl, &j->in, &raw, 0, &d);
			int mask = ((d.ticket.flags & GW_RL_T_KEY_SLOT) ? 1 : 0) |
			           ((d.ticket.flags & GW_RL_T_TEN_SLOT) ? 2 : 0);
			if (mask || j->in.cost) {
				j->kind = JOB_SETTLE;
				j->t = d.ticket;
				j->delta = -j->in.cost;
				j->release_mask = mask;
				send_fire(rl, j, 0);
				return;
			}
		}
		free(j);
		return;
	}
	fifo_remove(rl, j);
	atomic_fetch_sub(&rl->c_pending, 1);
	if (ok) {
		fill_decision(rl, &j->in, &raw, 0, &d);
		count_decision(rl, &d);
		block_learn(rl, &j->in, &d, j->sent_us, raw.wait_us);
	} else {
		if (!r)
			rl->need_reset = 1; /* the connection went away under us */
		decide_local(rl, &j->in, 1, &d);
	}
	j->cb(j->ctx, &d);
	free(j);
}

static void send_admit(struct gw_rl *rl, struct job *j, int use_eval)
{
	struct argv_buf a;
	build_admit(rl, &j->in, use_eval, &a);
	if (send_argv(rl, &a, on_admit_reply, j) == 0) {
		j->sent_us = mono_us();
		if (!use_eval)
			atomic_fetch_add(&rl->c_roundtrips, 1);
		fifo_push(rl, j);
		return;
	}
	struct gw_rl_decision d;
	atomic_fetch_sub(&rl->c_pending, 1);
	decide_local(rl, &j->in, 1, &d);
	j->cb(j->ctx, &d);
	free(j);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct gw_rl *rl = ac->ev.data;
	redisReply *r = reply;
	const char *what = priv;
	if (!r)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		atomic_fetch_add(&rl->c_errors, 1);
		rl_log(rl, 3, "redis %s failed: %s", what, r->str ? r->str : "?");
		rl->need_reset = 1;
		return;
	}
	if (strcmp(what, "probe") == 0 && !rl->need_reset) {
		rl->probing = 0;
		rl->conn_ready = 1;
		atomic_store(&rl->ready, 1);
		rl_log(rl, 1, "redis answers again");
	} else if (strcmp(what, "ping") == 0 && !rl->need_reset) {
		rl->conn_ready = 1;
		rl->backoff_ms = rl->cfg.backoff_min_ms;
		atomic_fetch_add(&rl->c_reconnects, 1);
		atomic_store(&rl->ready, 1);
		rl_log(rl, 1, "redis ready");
	}
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct gw_rl *rl = ac->ev.data;
	if (status != REDIS_OK) {
		atomic_fetch_add(&rl->c_errors, 1);
		rl_log(rl, 2, "cannot connect to redis: %s", ac->errstr);
	}
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct gw_rl *rl = ac->ev.data;
	if (status != REDIS_OK) {
		atomic_fetch_add(&rl->c_errors, 1);
		rl_log(rl, 2, "redis connection error: %s", ac->errstr);
	}
}

static void start_connect(struct gw_rl *rl)
{
	redisAsyncContext *ac;
	if (rl->url.is_unix)
		ac = redisAsyncConnectUnix(rl->url.path);
	else
		ac = redisAsyncConnect(rl->url.host, rl->url.port);
	if (!ac || ac->err) {
		atomic_fetch_add(&rl->c_errors, 1);
		rl_log(rl, 2, "cannot connect to redis: %s", ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		ev_cleanup(rl);
		return;
	}
	rl->ac = ac;
	rl->need_reset = 0;
	rl->conn_ready = 0;
	rl->probing = 0;
	ac->ev.data = rl;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	rl->connect_deadline_us = mono_us() + (uint64_t)rl->cfg.connect_timeout_ms * 1000u;

	const char *pw = rl->cfg.redis_password && rl->cfg.redis_password[0]
	                         ? rl->cfg.redis_password
	                         : rl->url.password;
	if (pw[0]) {
		const char *argv[3] = {"AUTH", rl->url.username, pw};
		size_t len[3] = {4, strlen(rl->url.username), strlen(pw)};
		if (rl->url.username[0])
			redisAsyncCommandArgv(ac, on_setup_reply, "auth", 3, argv, len);
		else {
			argv[1] = pw;
			len[1] = len[2];
			redisAsyncCommandArgv(ac, on_setup_reply, "auth", 2, argv, len);
		}
	}
	if (rl->url.db) {
		char db[16];
		snprintf(db, sizeof db, "%d", rl->url.db);
		const char *argv[2] = {"SELECT", db};
		size_t len[2] = {6, strlen(db)};
		redisAsyncCommandArgv(ac, on_setup_reply, "select", 2, argv, len);
	}
	const char *argv[3] = {"SCRIPT", "LOAD", LUA_SCRIPT};
	size_t len[3] = {6, 4, sizeof LUA_SCRIPT - 1};
	redisAsyncCommandArgv(ac, on_setup_reply, "script load", 3, argv, len);
	const char *ping[1] = {"PING"};
	size_t plen[1] = {4};
	redisAsyncCommandArgv(ac, on_setup_reply, "ping", 1, ping, plen);
}

/* Free the context (never from inside a hiredis callback): pending replies come back NULL. */
static void reset_conn(struct gw_rl *rl)
{
	rl->need_reset = 0;
	if (rl->ac)
		redisAsyncFree(rl->ac); /* ev_cleanup clears rl->ac and schedules the reconnect */
}

static void dispatch(struct gw_rl *rl, struct job *j)
{
	if (j->kind == JOB_ADMIT) {
		if (redis_usable(rl)) {
			send_admit(rl, j, 0);
		} else {
			struct gw_rl_decision d;
			atomic_fetch_sub(&rl->c_pending, 1);
			decide_local(rl, &j->in, 1, &d);
			j->cb(j->ctx, &d);
			free(j);
		}
	} else if (conn_alive(rl)) {
		send_fire(rl, j, 0);
	} else {
		atomic_fetch_add(&rl->c_dropped, 1);
		free(j);
	}
}

static void expire_admissions(struct gw_rl *rl, uint64_t now)
{
	int expired = 0;
	while (rl->fhead && rl->fhead->deadline_us <= now) {
		struct job *j = rl->fhead;
		struct gw_rl_decision d;
		fifo_remove(rl, j);
		j->answered = 1; /* the reply callback frees it, and compensates */
		atomic_fetch_sub(&rl->c_pending, 1);
		atomic_fetch_add(&rl->c_timeouts, 1);
		decide_local(rl, &j->in, 1, &d);
		j->cb(j->ctx, &d);
		expired++;
	}
	/* Slow is not dead: stop sending admissions (they would wait too) and probe with a PING
	 * on the same connection. Replies arrive in order, so the late admissions come back before
	 * the PONG and are compensated; no answer within connect_timeout_ms and the connection is
	 * dropped (leases of anything it admitted meanwhile expire by themselves). */
	if (expired && conn_alive(rl) && !rl->probing) {
		const char *ping[1] = {"PING"};
		size_t plen[1] = {4};
		atomic_fetch_add(&rl->c_errors, 1);
		rl_log(rl, 2, "redis did not answer %d admission(s) within %d ms: deciding locally",
		       expired, rl->cfg.timeout_ms);
		rl->conn_ready = 0;
		atomic_store(&rl->ready, 0);
		rl->probing = 1;
		rl->connect_deadline_us = now + (uint64_t)rl->cfg.connect_timeout_ms * 1000u;
		if (redisAsyncCommandArgv(rl->ac, on_setup_reply, "probe", 1, ping, plen) !=
		    REDIS_OK)
			rl->need_reset = 1;
	}
}

static struct job *take_queue(struct gw_rl *rl)
{
	pthread_mutex_lock(&rl->qmu);
	struct job *j = rl->qhead;
	rl->qhead = rl->qtail = NULL;
	pthread_mutex_unlock(&rl->qmu);
	return j;
}

static void *io_main(void *arg)
{
	struct gw_rl *rl = arg;
	while (!atomic_load(&rl->stop)) {
		uint64_t now = mono_us();
		if (!rl->ac && now >= rl->next_connect_us)
			start_connect(rl);
		for (struct job *j = take_queue(rl), *n; j; j = n) {
			n = j->next;
			dispatch(rl, j);
		}
		if (rl->ac && rl->want_write && (rl->ac->c.flags & REDIS_CONNECTED))
			redisAsyncHandleWrite(rl->ac); /* flush the pipeline now, no poll round */

		int timeout = 100;
		now = mono_us();
		if (rl->fhead) {
			int64_t t = ((int64_t)rl->fhead->deadline_us - (int64_t)now + 999) / 1000;
			if (t < timeout)
				timeout = t < 0 ? 0 : (int)t;
		}
		if (rl->ac && !rl->conn_ready) {
			int64_t t = ((int64_t)rl->connect_deadline_us - (int64_t)now + 999) / 1000;
			if (t < timeout)
				timeout = t < 0 ? 0 : (int)t;
		}
		if (!rl->ac) {
			int64_t t = ((int64_t)rl->next_connect_us - (int64_t)now + 999) / 1000;
			if (t < timeout)
				timeout = t < 0 ? 0 : (int)t;
		}
		struct pollfd pf[2] = {{.fd = rl->efd, .events = POLLIN}, {.fd = -1}};
		redisAsyncContext *ac = rl->ac;
		if (ac && ac->c.fd >= 0) {
			pf[1].fd = ac->c.fd;
			pf[1].events = POLLIN;
			if (rl->want_write || !(ac->c.flags & REDIS_CONNECTED))
				pf[1].events |= POLLOUT;
		}
		int n = poll(pf, pf[1].fd >= 0 ? 2 : 1, timeout);
		if (n < 0 && errno != EINTR) {
			rl_log(rl, 3, "poll failed: %s", strerror(errno));
			usleep(1000);
		}
		if (n > 0 && (pf[0].revents & POLLIN)) {
			uint64_t v;
			ssize_t rd = read(rl->efd, &v, sizeof v);
			(void)rd;
		}
		if (n > 0 && pf[1].fd >= 0 && rl->ac == ac) {
			if (pf[1].revents & (POLLIN | POLLERR | POLLHUP))
				redisAsyncHandleRead(ac);
			if (rl->ac == ac && (pf[1].revents & POLLOUT))
				redisAsyncHandleWrite(ac);
		}
		now = mono_us();
		expire_admissions(rl, now);
		if (rl->ac && !rl->conn_ready && now >= rl->connect_deadline_us) {
			atomic_fetch_add(&rl->c_errors, 1);
			rl_log(rl, 2, "redis did not become ready within %d ms",
			       rl->cfg.connect_timeout_ms);
			rl->need_reset = 1;
		}
		if (rl->need_reset)
			reset_conn(rl);
	}
	/* Shutdown: every waiting admission gets its callback. */
	for (struct job *j = take_queue(rl), *n; j; j = n) {
		n = j->next;
		rl->conn_ready = 0;
		dispatch(rl, j);
	}
	rl->conn_ready = 0;
	if (rl->ac)
		redisAsyncFree(rl->ac);
	return NULL;
}

/* ---- public API ------------------------------------------------------------------------------ */

int gw_rl_new(const struct gw_rl_config *cfg, struct gw_rl **out, char *errbuf, size_t errlen)
{
	struct gw_rl_config defaults = {0};
	struct gw_rl *rl;
	int rc;
	*out = NULL;
	if (!cfg)
		cfg = &defaults;
	if (errbuf && errlen)
		errbuf[0] = '\0';
	rl = calloc(1, sizeof *rl);
	if (!rl)
		return GW_RL_ENOMEM;
	rl->efd = -1;
	pthread_mutex_init(&rl->qmu, NULL);
	pthread_mutex_init(&rl->bmu, NULL);
	rl->cfg = *cfg;
	rl->cfg.redis_url = NULL; /* not kept: the parsed form is */
	if (rl->cfg.timeout_ms <= 0)
		rl->cfg.timeout_ms = 50;
	if (rl->cfg.connect_timeout_ms <= 0)
		rl->cfg.connect_timeout_ms = 500;
	if (rl->cfg.backoff_min_ms <= 0)
		rl->cfg.backoff_min_ms = 100;
	if (rl->cfg.backoff_max_ms <= 0)
		rl->cfg.backoff_max_ms = 5000;
	if (rl->cfg.backoff_max_ms < rl->cfg.backoff_min_ms)
		rl->cfg.backoff_max_ms = rl->cfg.backoff_min_ms;
	if (rl->cfg.lease_ms <= 0)
		rl->cfg.lease_ms = 60000;
	if (rl->cfg.max_pending == 0)
		rl->cfg.max_pending = 65536;
	rl->backoff_ms = rl->cfg.backoff_min_ms;
	const char *prefix = cfg->prefix ? cfg->prefix : "mg:rl:";
	if (strlen(prefix) > PREFIX_MAX || strpbrk(prefix, "{} \r\n")) {
		if (errbuf)
			snprintf(errbuf, errlen, "bad redis key prefix '%s'", prefix);
		rc = GW_RL_EINVAL;
		goto fail;
	}
	memcpy(rl->prefix, prefix, strlen(prefix) + 1);
	if ((rc = ltable_init(&rl->local)) != GW_RL_OK)
		goto fail;
	if (getrandom(&rl->instance, sizeof rl->instance, 0) != sizeof rl->instance)
		rl->instance = (uint32_t)getpid() ^ (uint32_t)mono_us();

	if (cfg->redis_url && cfg->redis_url[0]) {
		struct gw_redisurl_err e = {0, NULL};
		if (gw_redisurl_parse(cfg->redis_url, strlen(cfg->redis_url), &rl->url, &e) != 0) {
			if (errbuf)
				snprintf(errbuf, errlen, "bad redis url at offset %zu: %s",
				         e.offset, e.msg);
			rc = GW_RL_EURL;
			goto fail;
		}
		rl->has_redis = 1;
		rl->blocks = calloc(BLOCKS, sizeof *rl->blocks);
		if (!rl->blocks) {
			rc = GW_RL_ENOMEM;
			goto fail;
		}
		unsigned char md[SHA_DIGEST_LENGTH];
		SHA1((const unsigned char *)LUA_SCRIPT, sizeof LUA_SCRIPT - 1, md);
		for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
			snprintf(rl->sha + 2 * i, 3, "%02x", md[i]);
		rl->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (rl->efd < 0) {
			if (errbuf)
				snprintf(errbuf, errlen, "eventfd: %s", strerror(errno));
			rc = GW_RL_ESYS;
			goto fail;
		}
		if (pthread_create(&rl->thread, NULL, io_main, rl) != 0) {
			if (errbuf)
				snprintf(errbuf, errlen, "cannot start the rate limiter thread");
			rc = GW_RL_ESYS;
			goto fail;
		}
		rl->thread_started = 1;
	}
	*out = rl;
	return GW_RL_OK;
fail:
	gw_rl_free(rl);
	return rc;
}

void gw_rl_free(struct gw_rl *rl)
{
	if (!rl)
		return;
	if (rl->thread_started) {
		atomic_store(&rl->stop, 1);
		uint64_t one = 1;
		ssize_t w = write(rl->efd, &one, sizeof one);
		(void)w;
		pthread_join(rl->thread, NULL);
	}
	if (rl->efd >= 0)
		close(rl->efd);
	ltable_release(&rl->local);
	pthread_mutex_destroy(&rl->qmu);
	pthread_mutex_destroy(&rl->bmu);
	free(rl->blocks);
	memset(rl->url.password, 0, sizeof rl->url.password);
	free(rl);
}

static void enqueue(struct gw_rl *rl, struct job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&rl->qmu);
	int was_empty = rl->qhead == NULL;
	if (rl->qtail)
		rl->qtail->next = j;
	else
		rl->qhead = j;
	rl->qtail = j;
	pthread_mutex_unlock(&rl->qmu);
	if (was_empty) { /* the I/O thread drains everything queued when it wakes */
		uint64_t one = 1;
		ssize_t w = write(rl->efd, &one, sizeof one);
		(void)w;
	}
}

int gw_rl_admit(struct gw_rl *rl, const struct gw_rl_request *req, gw_rl_admit_cb *cb, void *ctx)
{
	struct admit_in in;
	struct gw_rl_decision d;
	int any = 0;

	memset(&in, 0, sizeof in);
	if (req && req->key && req->tokens >= 0) {
		const struct ks_key_info *k = req->key;
		memcpy(in.key_id, k->key_id, KS_KEY_ID_LEN);
		in.tenant_id = k->tenant_id;
		in.lim[GW_RL_KEY_RPM] = k->limits.rpm;
		in.lim[GW_RL_KEY_TPM] = k->limits.tpm;
		in.lim[GW_RL_KEY_CONC] = k->limits.concurrency;
		in.lim[GW_RL_TENANT_RPM] = k->tenant_limits.rpm;
		in.lim[GW_RL_TENANT_TPM] = k->tenant_limits.tpm;
		in.lim[GW_RL_TENANT_CONC] = k->tenant_limits.concurrency;
		in.lim[GW_RL_TENANT_MONTHLY] = k->tenant_limits.monthly_tokens;
		in.cost = req->tokens;
		for (int i = 0; i < GW_RL_NDIM; i++) {
			if (in.lim[i] < 0)
				in.lim[i] = 0;
			any |= in.lim[i] > 0;
		}
	}
	if (!any) { /* nothing to limit (or a caller bug): admitted, nothing held */
		struct raw r;
		memset(&r, 0, sizeof r);
		fill_decision(rl, &in, &r, 1, &d);
		d.local = 0;
		atomic_fetch_add(&rl->c_allowed, 1);
		cb(ctx, &d);
		return 1;
	}
	int64_t sec, usec;
	wall_now(&sec, &usec);
	in.month = gw_month_of(sec);
	in.month_end_s = gw_month_end(sec);
	if (in.lim[GW_RL_KEY_CONC] > 0 || in.lim[GW_RL_TENANT_CONC] > 0)
		snprintf(in.slot, sizeof in.slot, "%08" PRIx32 "-%" PRIx64, rl->instance,
		         (uint64_t)(atomic_fetch_add(&rl->slot_seq, 1) & 0xffffffffffffffull));

	if (!rl->has_redis || !atomic_load(&rl->ready) ||
	    atomic_load(&rl->c_pending) >= rl->cfg.max_pending) {
		decide_local(rl, &in, rl->has_redis, &d);
		cb(ctx, &d);
		return 1;
	}
	if (block_check(rl, &in, &d)) { /* refused by Redis a moment ago, still refused */
		atomic_fetch_add(&rl->c_cached, 1);
		count_decision(rl, &d);
		cb(ctx, &d);
		return 1;
	}
	struct job *j = calloc(1, sizeof *j);
	if (!j) {
		decide_local(rl, &in, 1, &d);
		cb(ctx, &d);
		return 1;
	}
	j->kind = JOB_ADMIT;
	j->in = in;
	j->cb = cb;
	j->ctx = ctx;
	j->deadline_us = mono_us() + (uint64_t)rl->cfg.timeout_ms * 1000u;
	atomic_fetch_add(&rl->c_pending, 1);
	enqueue(rl, j);
	return 0;
}

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	struct gw_rl_decision *out;
};

static void wait_cb(void *ctx, const struct gw_rl_decision *d)
{
	struct waiter *w = ctx;
	pthread_mutex_lock(&w->mu);
	*w->out = *d;
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void gw_rl_admit_wait(struct gw_rl *rl, const struct gw_rl_request *req, struct gw_rl_decision *out)
{
	struct waiter w = {.done = 0, .out = out};
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	gw_rl_admit(rl, req, wait_cb, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
}

static void fire(struct gw_rl *rl, const struct gw_rl_ticket *t, int kind, int64_t delta, int mask)
{
	if (t->flags & GW_RL_T_LOCAL) {
		if (kind == JOB_SETTLE)
			local_settle(rl, t, delta, mask);
		return; /* local slots have no lease: the process that holds them is this one */
	}
	if (!rl->has_redis)
		return;
	/* Queued even while degraded: a slow connection may still carry it; the I/O thread drops
	 * it (counted) when there is no connection, and the leases then expire by themselves. */
	struct job *j = calloc(1, sizeof *j);
	if (!j) {
		atomic_fetch_add(&rl->c_dropped, 1);
		return;
	}
	j->kind = kind;
	j->t = *t;
	j->delta = delta;
	j->release_mask = mask;
	enqueue(rl, j);
}

static int64_t settle_delta(const struct gw_rl_ticket *t, int64_t actual)
{
	if (actual < 0)
		actual = 0;
	if (t->key_tpm <= 0 && t->tenant_tpm <= 0 && t->monthly <= 0)
		return 0;
	return actual - t->reserved;
}

static int slot_mask(const struct gw_rl_ticket *t)
{
	return ((t->flags & GW_RL_T_KEY_SLOT) ? 1 : 0) | ((t->flags & GW_RL_T_TEN_SLOT) ? 2 : 0);
}

void gw_rl_finish(struct gw_rl *rl, struct gw_rl_ticket *t, int64_t actual_tokens)
{
	int64_t delta = 0;
	int mask = 0;
	if (!(t->flags & GW_RL_T_SETTLED))
		delta = settle_delta(t, actual_tokens);
	if (!(t->flags & GW_RL_T_RELEASED))
		mask = slot_mask(t);
	t->flags |= GW_RL_T_SETTLED | GW_RL_T_RELEASED;
	if (delta != 0 || mask != 0)
		fire(rl, t, JOB_SETTLE, delta, mask);
}

void gw_rl_settle(struct gw_rl *rl, struct gw_rl_ticket *t, int64_t actual_tokens)
{
	if (t->flags & GW_RL_T_SETTLED)
		return;
	t->flags |= GW_RL_T_SETTLED;
	int64_t delta = settle_delta(t, actual_tokens);
	if (delta != 0)
		fire(rl, t, JOB_SETTLE, delta, 0);
}

void gw_rl_release(struct gw_rl *rl, struct gw_rl_ticket *t)
{
	if (t->flags & GW_RL_T_RELEASED)
		return;
	t->flags |= GW_RL_T_RELEASED;
	int mask = slot_mask(t);
	if (mask)
		fire(rl, t, JOB_SETTLE, 0, mask);
}

void gw_rl_renew(struct gw_rl *rl, const struct gw_rl_ticket *t)
{
	if (slot_mask(t) && !(t->flags & GW_RL_T_RELEASED))
		fire(rl, t, JOB_RENEW, 0, 0);
}

int gw_rl_degraded(const struct gw_rl *rl)
{
	return rl->has_redis && !atomic_load(&rl->ready);
}

int gw_rl_has_redis(const struct gw_rl *rl)
{
	return rl->has_redis;
}

int gw_rl_wait_ready(struct gw_rl *rl, int timeout_ms)
{
	if (!rl->has_redis)
		return GW_RL_OK;
	uint64_t end = mono_us() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000u;
	while (!atomic_load(&rl->ready)) {
		if (mono_us() >= end)
			return GW_RL_ETIMEOUT;
		usleep(2000);
	}
	return GW_RL_OK;
}

void gw_rl_stats(const struct gw_rl *rl, struct gw_rl_stats *out)
{
	struct gw_rl *m = (struct gw_rl *)rl; /* atomic loads of const objects */
	memset(out, 0, sizeof *out);
	out->allowed = atomic_load(&m->c_allowed);
	for (int i = 0; i < GW_RL_NDIM; i++)
		out->limited[i] = atomic_load(&m->c_limited[i]);
	out->quota = atomic_load(&m->c_quota);
	out->too_large = atomic_load(&m->c_too_large);
	out->unavailable = atomic_load(&m->c_unavailable);
	out->local_decisions = atomic_load(&m->c_local);
	out->timeouts = atomic_load(&m->c_timeouts);
	out->redis_roundtrips = atomic_load(&m->c_roundtrips);
	out->redis_commands = atomic_load(&m->c_commands);
	out->redis_errors = atomic_load(&m->c_errors);
	out->reconnects = atomic_load(&m->c_reconnects);
	out->fire_dropped = atomic_load(&m->c_dropped);
	out->pending = atomic_load(&m->c_pending);
	out->cached_refusals = atomic_load(&m->c_cached);
	out->degraded = gw_rl_degraded(rl);
}
