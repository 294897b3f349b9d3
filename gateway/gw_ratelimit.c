/*
 * gateway rate limiter (contract in gw_ratelimit.h): the Lua script that decides all dimensions
 * in one Redis round trip, the I/O thread that pipelines every caller's scripts on one hiredis
 * async connection through a small poll(2) loop, and the in-process limiter that decides with
 * the same arithmetic (gw_gcra.c) when there is no Redis, or it is down or slow.
 *
 * Why one I/O thread and one connection: a loopback round trip costs 70-100 us here, a whole HTTP
 * request about 8 us of CPU. Blocking a worker per check would cap a thread near 10k checks/s;
 * instead callers enqueue, and the I/O thread sends everything queued as one script run (see
 * "batches"), so N concurrent admissions cost about one round trip of latency and 1/N of a
 * round trip of syscalls and of Redis's per-script cost each (a script run costs Redis ~5 us
 * before it does anything, each redis.call 1-4 us). Redis is single-threaded, so more
 * connections buy nothing.
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
 * The script: one run decides a whole batch (every admission and settlement the I/O thread had
 * queued), atomically, so N gateways sharing one Redis still enforce one exact limit: within a
 * run the items are applied one after the other, exactly as N single-item runs would be.
 *   KEYS  the distinct Redis keys the batch touches (each once)
 *   ARGV  1 'B', 2 lease ms, 3 the type of each KEYS entry, one character per key:
 *         'g' GCRA state, 'c' concurrency set, 'm' month counter; 4 the number of groups G;
 *         then G groups of 15: the KEYS index of each dimension (0: not involved), the seven
 *         limits, ms until the month ends. A group is one key of one tenant under one set of
 *         limits: its items below name it instead of repeating 15 numbers each.
 *         then the items, settlements and renewals first, admissions last:
 *     'A' g cost slot         admit, with that token cost and slot id
 *     'S' g delta mask slot   settle the tpm and monthly dimensions of group g by delta tokens,
 *                             release the slot from the key's (mask 1) and tenant's (2) set
 *     'R' g slot              renew the slot (never taken again once its lease ran out)
 *   returns, per admission in order: outcome, refusing dimension (1..7, 0 none), wait us, then
 *   per dimension remaining and reset us (17 integers).
 * Every state is read once (one MGET for every GCRA state and month counter, one ZCOUNT per slot
 * set), decided on in Lua, and written once at the end (SET .. PX per changed GCRA state, one
 * INCRBY per month counter, one ZADD of every new slot per set), so a batch of N costs about the
 * Redis calls of one single admission plus a few microseconds of Lua per item.
 * A refused admission takes nothing and reports every dimension as it stands; an admitted one
 * as it stands after it. A key's rpm and tpm GCRA states are one string (redis_key_name), each
 * state "<debt> <ts> <refilled at>" (gw_gcra.h; debts %.17g, an exact round trip; times in
 * integer us), with a TTL of the longer time to refill; slot sets are ZSETs of slot ids scored by lease expiry (ms),
 * live ones counted with ZCOUNT, stale ones dropped when slots are added, the key expiring with
 * its longest lease; a month counter expires 71 days after its month. The arithmetic mirrors
 * gw_gcra.c operation for operation.
 */
static const char LUA_SCRIPT[] =
	"local P=60000000 local EPS=1e-6\n"
	"local floor,ceil,find,sub,fmt,call,num=math.floor,math.ceil,string.find,string.sub,string.format,redis.call,tonumber\n"
	"local A,K=ARGV,KEYS\n"
	"if A[1]~='B' then return redis.error_reply('morgate rate limiter: unknown op') end\n"
	"local t=call('TIME')\n"
	"local now=(num(t[1])-1735689600)*1000000+num(t[2])\n"
	"local now_ms=floor(now/1000)\n"
	"local live='('..now_ms\n"
	"local function cl(x) if x<=0 then return 0 end return ceil(x) end\n"
	"local function drain(debt,ts,T) local d=debt if now>ts then d=d-(now-ts)/T end\n"
	" if d>0 then return d end return 0 end\n"
	"local lease,ty=num(A[2]),A[3]\n"
	"local until_ms=now_ms+lease local ttl=lease+1000\n"
	"local D,S,RF,E,F,RG,M,M0,ME,dirty,C,zadd,rel={},{},{},{},{},{},{},{},{},{},{},{},{}\n"
	"local gk,gi={},{}\n"
	"for i=1,#K do if sub(ty,i,i)~='c' then gk[#gk+1]=K[i] gi[#gi+1]=i end end\n"
	"if #gk>0 then local mg=call('MGET',unpack(gk))\n"
	" for j=1,#gi do local i,v=gi[j],mg[j]\n"
	"  if sub(ty,i,i)=='m' then M[i]=num(v or '0') M0[i]=M[i] if not v then ME[i]=0 end\n"
	"  else local a=v and find(v,' ',1,true) local b=a and find(v,' ',a+1,true)\n"
	"   local c=b and find(v,' ',b+1,true) local e=c and find(v,' ',c+1,true)\n"
	"   local f=e and find(v,' ',e+1,true)\n"
	"   if f then D[i]=num(sub(v,1,a-1)) S[i]=num(sub(v,a+1,b-1)) RF[i]=num(sub(v,b+1,c-1))\n"
	"    E[i]=num(sub(v,c+1,e-1)) F[i]=num(sub(v,e+1,f-1)) RG[i]=num(sub(v,f+1))\n"
	"   else D[i]=0 S[i]=now RF[i]=0 E[i]=0 F[i]=now RG[i]=0 end end end end\n"
	"local G,GL={},{}\n"
	"local p=5\n"
	"for g=1,num(A[4]) do local ix,l={},{}\n"
	" for d=1,7 do ix[d]=num(A[p+d-1]) l[d]=num(A[p+6+d]) end l[8]=num(A[p+14])\n"
	" G[g]=ix GL[g]=l p=p+15 end\n"
	"local reldone=false\n"
	"local function flushrel() for i,r in pairs(rel) do call('ZREM',K[i],unpack(r)) C[i]=nil end\n"
	" rel={} end\n"
	"local out,no={},0\n"
	"local ar,at,br,bt,nd,ns,nT={},{},{},{},{},{},{}\n"
	"local n=#A\n"
	"while p<=n do local op=A[p]\n"
	" if op=='A' then\n"
	"  if not reldone then flushrel() reldone=true end\n"
	"  local g=num(A[p+1]) local ki,L,cost,slot=G[g],GL[g],num(A[p+2]),A[p+3]\n"
	"  local me=L[8]\n"
	"  local outcome,refused,wait=0,0,-1\n"
	"  for d=1,7 do\n"
	"   ar[d]=0 at[d]=0 br[d]=0 bt[d]=0\n"
	"   local k=ki[d]\n"
	"   if k>0 then\n"
	"    local Ld,code,w=L[d],0,0\n"
	"    if d==3 or d==6 then\n"
	"     local c=C[k] if not c then c=call('ZCOUNT',K[k],live,'+inf') C[k]=c end\n"
	"     br[d]=Ld-c if br[d]<0 then br[d]=0 end\n"
	"     if c<Ld then ar[d]=Ld-c-1 else code=1 w=1000000 end\n"
	"    elseif d==7 then\n"
	"     local used=M[k]\n"
	"     br[d]=Ld-used if br[d]<0 then br[d]=0 end bt[d]=me*1000 at[d]=me*1000\n"
	"     if cost>Ld then code=3\n"
	"     elseif used<=Ld-cost then ar[d]=Ld-used-cost\n"
	"     else code=2 w=me*1000 end\n"
	"    else\n"
	"     local c,debt,ts=1,D[k],S[k] if d==2 or d==5 then c=cost debt=E[k] ts=F[k] end\n"
	"     local T=P/Ld local d0=drain(debt,ts,T)\n"
	"     local used=d0+c if now>ts then ts=now end\n"
	"     local r0=floor(Ld-d0+EPS) if r0<0 then r0=0 end br[d]=r0 bt[d]=cl(d0*T)\n"
	"     if c<=Ld and used<=Ld+EPS then nd[d]=used ns[d]=ts nT[d]=T\n"
	"      ar[d]=floor(Ld-used+EPS) at[d]=cl(used*T)\n"
	"     elseif c>Ld then code=3 else code=1 w=cl((used-Ld)*T) end\n"
	"    end\n"
	"    if code>outcome or (code>0 and code==outcome and w>wait) then\n"
	"     outcome=code refused=d wait=w end\n"
	"   end\n"
	"  end\n"
	"  local rr,rt=ar,at\n"
	"  if outcome==0 then\n"
	"   for d=1,7 do local k=ki[d] if k>0 then\n"
	"    if d==3 or d==6 then C[k]=C[k]+1 local z=zadd[k] if not z then z={} zadd[k]=z end\n"
	"     z[#z+1]=until_ms z[#z+1]=slot\n"
	"    elseif d==7 then if cost>0 then M[k]=M[k]+cost dirty[k]=true\n"
	"     if ME[k] and ME[k]<me+71*86400000 then ME[k]=me+71*86400000 end end\n"
	"    elseif d==2 or d==5 then E[k]=nd[d] F[k]=ns[d] RG[k]=ns[d]+nd[d]*nT[d] dirty[k]=true\n"
	"    else D[k]=nd[d] S[k]=ns[d] RF[k]=ns[d]+nd[d]*nT[d] dirty[k]=true end end end\n"
	"  else rr,rt=br,bt end\n"
	"  if wait<0 then wait=0 end\n"
	"  out[no+1]=outcome out[no+2]=refused out[no+3]=wait no=no+3\n"
	"  for d=1,7 do out[no+1]=rr[d] out[no+2]=rt[d] no=no+2 end\n"
	"  p=p+4\n"
	" elseif op=='S' then\n"
	"  local g=num(A[p+1]) local ki,L,delta,mask=G[g],GL[g],num(A[p+2]),num(A[p+3])\n"
	"  if delta~=0 then\n"
	"   for d=2,5,3 do local i=ki[d] if i>0 then local T=P/L[d]\n"
	"    local x=drain(E[i],F[i],T)+delta if x<0 then x=0 end\n"
	"    E[i]=x if now>F[i] then F[i]=now end RG[i]=F[i]+x*T dirty[i]=true end end\n"
	"   local i=ki[7] if i>0 then M[i]=M[i]+delta dirty[i]=true\n"
	"    if ME[i] and ME[i]<71*86400000 then ME[i]=71*86400000 end end\n"
	"  end\n"
	"  for d=3,6,3 do local i=ki[d] if i>0 and (mask==3 or mask==d/3) then\n"
	"   local r=rel[i] if not r then r={} rel[i]=r end r[#r+1]=A[p+4] end end\n"
	"  if reldone then flushrel() end\n"
	"  p=p+5\n"
	" elseif op=='R' then\n"
	"  local ki,slot=G[num(A[p+1])],A[p+2]\n"
	"  for d=3,6,3 do local i=ki[d] if i>0 then local sc=call('ZSCORE',K[i],slot)\n"
	"   if sc and num(sc)>now_ms then call('ZADD',K[i],'XX',until_ms,slot)\n"
	"    call('PEXPIRE',K[i],ttl) end end end\n"
	"  p=p+3\n"
	" else return redis.error_reply('morgate rate limiter: bad item') end\n"
	"end\n"
	"flushrel()\n"
	"for i in pairs(dirty) do\n"
	" if sub(ty,i,i)=='g' then\n"
	"  local r1,r2=RF[i],RG[i] if D[i]<=0 then r1=0 end if E[i]<=0 then r2=0 end\n"
	"  if r2>r1 then r1=r2 end\n"
	"  if r1>now then call('SET',K[i],fmt('%.17g %d %d %.17g %d %d',D[i],S[i],ceil(RF[i]),E[i],\n"
	"    F[i],ceil(RG[i])),'PX',ceil((r1-now)/1000)+1000)\n"
	"  else call('DEL',K[i]) end\n"
	" else local net=M[i]-M0[i]\n"
	"  if net~=0 then call('INCRBY',K[i],net) if ME[i] then call('PEXPIRE',K[i],ME[i]) end end end\n"
	"end\n"
	"for i,z in pairs(zadd) do call('ZADD',K[i],unpack(z))\n"
	" call('ZREMRANGEBYSCORE',K[i],'-inf',now_ms) call('PEXPIRE',K[i],ttl) end\n"
	"return out\n";
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

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

struct khent {
	uint32_t gen, idx;
};

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
	/* 1 while a batch with admissions is out and no other may be sent: the I/O thread takes
	 * the queue when its reply comes (or its deadline passes), so enqueue need not wake it */
	atomic_int io_busy;

	/* I/O thread state */
	redisAsyncContext *ac;
	int want_write;
	int conn_ready; /* I/O thread's view of ready */
	int probing;    /* a PING is out to tell a slow connection from a dead one */
	int need_reset;
	uint64_t connect_deadline_us, next_connect_us;
	int backoff_ms;
	struct job *fhead, *ftail; /* admissions in flight, oldest first */
	struct job *pa_head, *pa_tail; /* admissions waiting for the next batch, oldest first */
	struct job *pf_head, *pf_tail; /* settlements/renewals waiting for the next batch */
	uint64_t pf_since;             /* when the oldest of them was queued (monotonic us) */
	int inflight;                  /* batches sent, not answered */
	int inflight_adm;              /* of which carry admissions */
	/* batch building (see build_batch): key names (RESP), items (RESP), the command */
	struct sbuf kb, gb, ab, cmd;
	int nkeys, ngroups, nargs;
	uint32_t kgen;
	struct khent *kh; /* KHASH_SIZE entries: name -> KEYS index, valid when gen == kgen */
	struct khent *gh; /* GHASH_SIZE entries: group key -> group number */
	struct gkey *groups; /* by group number */
	uint32_t *koff, *klen; /* per KEYS index: where the name is in kb, its length */
	char *ktype;           /* per KEYS index: 'g', 'c' or 'm' */

	/* counters */
	_Atomic uint64_t c_allowed, c_limited[GW_RL_NDIM], c_quota, c_too_large, c_unavailable,
	        c_local, c_timeouts, c_roundtrips, c_commands, c_errors, c_reconnects, c_dropped,
	        c_pending, c_cached, c_remote;
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

/* Dimension d's Redis key: as key_name, except that a key's (and a tenant's) rpm and tpm GCRA
 * states share one key, "<prefix>{t<tenant>}[:k:<key>]:g" = "<rpm debt> <ts> <refilled at>
 * <tpm debt> <ts> <refilled at>", read and written together (one MGET slot, one SET). */
static void redis_key_name(const struct gw_rl *rl, char out[KEYNAME_MAX], int d,
                           int64_t tenant_id, const char *key_id, int32_t month)
{
	if (d == GW_RL_KEY_RPM || d == GW_RL_KEY_TPM)
		snprintf(out, KEYNAME_MAX, "%s{t%" PRId64 "}:k:%.12s:g", rl->prefix, tenant_id,
		         key_id);
	else if (d == GW_RL_TENANT_RPM || d == GW_RL_TENANT_TPM)
		snprintf(out, KEYNAME_MAX, "%s{t%" PRId64 "}:g", rl->prefix, tenant_id);
	else
		key_name(rl, out, d, tenant_id, key_id, month);
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

static void on_batch_reply(redisAsyncContext *ac, void *reply, void *priv);

/* ---- batches ----------------------------------------------------------------------------------
 * The I/O thread sends everything queued since its last send as one script run (LUA_SCRIPT):
 * settlements and renewals first, then admissions, at most INFLIGHT_MAX runs with admissions
 * outstanding (see flush). While a run is out, new work waits for its reply, so the batch size follows the load by itself: one
 * admission alone is sent at once (no added latency), 50 concurrent ones share a few runs.
 * Redis's cost per run (command parsing, script setup, the TIME/MGET/SET calls) is then paid
 * once per batch instead of once per request.
 */
#define BATCH_ADMIT_MAX 128
#define BATCH_FIRE_MAX 256
#define BATCH_KEYS_MAX (BATCH_ADMIT_MAX * GW_RL_NDIM + BATCH_FIRE_MAX * 5)
#define KHASH_SIZE 8192 /* power of two, > 2 * BATCH_KEYS_MAX */
#define GROUPS_MAX (BATCH_ADMIT_MAX + BATCH_FIRE_MAX)
#define GHASH_SIZE 1024 /* power of two, > 2 * GROUPS_MAX */
#define INFLIGHT_MAX 1
/* A settlement waits at most this long for an admission to ride with (then goes alone). */
#define FIRE_HOLD_US 2000
#define ADMIT_REPLY_LEN (3 + 2 * GW_RL_NDIM)

struct batch {
	int nadmit, nfire;
	struct job *adm[BATCH_ADMIT_MAX];
	struct job *fire[BATCH_FIRE_MAX];
};

static int sb_reserve(struct sbuf *b, size_t n)
{
	if (b->oom)
		return -1;
	if (b->len + n <= b->cap)
		return 0;
	size_t c = b->cap ? b->cap * 2 : 8192;
	while (c < b->len + n)
		c *= 2;
	char *p = realloc(b->p, c);
	if (!p) {
		b->oom = 1;
		return -1;
	}
	b->p = p;
	b->cap = c;
	return 0;
}

static void sb_raw(struct sbuf *b, const char *s, size_t n)
{
	if (sb_reserve(b, n) == 0) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

/* Decimal digits of v into out (at least 21 bytes); returns the length. */
static size_t fmt_i64(char *out, int64_t v)
{
	char tmp[24];
	size_t n = 0, k = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		out[k++] = '-';
	while (n)
		out[k++] = tmp[--n];
	return k;
}

/* One RESP bulk string. */
static void sb_bulk(struct sbuf *b, const char *s, size_t n)
{
	char h[32];
	size_t k = 0;
	h[k++] = '$';
	k += fmt_i64(h + k, (int64_t)n);
	h[k++] = '\r';
	h[k++] = '\n';
	if (sb_reserve(b, k + n + 2) != 0)
		return;
	memcpy(b->p + b->len, h, k);
	memcpy(b->p + b->len + k, s, n);
	memcpy(b->p + b->len + k + n, "\r\n", 2);
	b->len += k + n + 2;
}

static void sb_int(struct sbuf *b, int64_t v)
{
	char d[24];
	sb_bulk(b, d, fmt_i64(d, v));
}

/* The batch's KEYS index (1-based) of name, added with its type when new; 0 when full. */
static int key_add(struct gw_rl *rl, const char *name, char type)
{
	size_t len = strlen(name);
	uint32_t h = (uint32_t)fnv1a(name) & (KHASH_SIZE - 1);
	for (;;) {
		struct khent *e = &rl->kh[h];
		if (e->gen != rl->kgen) {
			if (rl->nkeys >= BATCH_KEYS_MAX)
				return 0;
			int idx = ++rl->nkeys;
			e->gen = rl->kgen;
			e->idx = (uint32_t)idx;
			sb_bulk(&rl->kb, name, len);
			rl->koff[idx] = (uint32_t)(rl->kb.len - len - 2);
			rl->klen[idx] = (uint32_t)len;
			rl->ktype[idx - 1] = type;
			return idx;
		}
		if (rl->klen[e->idx] == len && !rl->kb.oom &&
		    memcmp(rl->kb.p + rl->koff[e->idx], name, len) == 0)
			return (int)e->idx;
		h = (h + 1) & (KHASH_SIZE - 1);
	}
}

/* What makes two items share a group: the same key of the same tenant, month and limits. */
struct gkey {
	int64_t tenant_id;
	int64_t lim[GW_RL_NDIM];
	int32_t month;
	int32_t kind; /* 0 admission, 1 settlement/renewal (no month end) */
	char key_id[KS_KEY_ID_LEN + 1];
};

/* The group number (1-based) of gk, described in rl->gb when new; 0 when full. */
static int group_of(struct gw_rl *rl, const struct gkey *gk, int64_t me_ms)
{
	const unsigned char *p = (const unsigned char *)gk;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < sizeof *gk; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	uint32_t slot = (uint32_t)(h ^ (h >> 29)) & (GHASH_SIZE - 1);
	for (;;) {
		struct khent *e = &rl->gh[slot];
		if (e->gen != rl->kgen) {
			if (rl->ngroups >= GROUPS_MAX)
				return 0;
			int g = ++rl->ngroups;
			e->gen = rl->kgen;
			e->idx = (uint32_t)g;
			memcpy(&rl->groups[g], gk, sizeof *gk); /* padding too */
			static const char type[GW_RL_NDIM] = {'g', 'g', 'c', 'g', 'g', 'c', 'm'};
			for (int d = 0; d < GW_RL_NDIM; d++) {
				int idx = 0;
				if (gk->lim[d] > 0) {
					char name[KEYNAME_MAX];
					redis_key_name(rl, name, d, gk->tenant_id, gk->key_id,
					               gk->month);
					idx = key_add(rl, name, type[d]);
				}
				sb_int(&rl->gb, idx);
			}
			for (int d = 0; d < GW_RL_NDIM; d++)
				sb_int(&rl->gb, gk->lim[d]);
			sb_int(&rl->gb, me_ms > 0 ? me_ms : 0);
			return g;
		}
		if (memcmp(&rl->groups[e->idx], gk, sizeof *gk) == 0)
			return (int)e->idx;
		slot = (slot + 1) & (GHASH_SIZE - 1);
	}
}

static void gkey_init(struct gkey *gk, int64_t tenant_id, const char *key_id, int32_t month,
                      int kind)
{
	memset(gk, 0, sizeof *gk); /* padding too: the key is hashed and compared as bytes */
	gk->tenant_id = tenant_id;
	gk->month = month;
	gk->kind = kind;
	memcpy(gk->key_id, key_id, KS_KEY_ID_LEN);
}

static void sb_slot(struct sbuf *a, const char *slot)
{
	if (slot[0])
		sb_bulk(a, slot, strlen(slot));
	else
		sb_bulk(a, "-", 1);
}

static void item_settle(struct gw_rl *rl, const struct job *j)
{
	const struct gw_rl_ticket *t = &j->t;
	struct sbuf *a = &rl->ab;
	struct gkey gk;
	int64_t d = j->kind == JOB_SETTLE ? j->delta : 0;
	int mask = j->kind == JOB_SETTLE ? j->release_mask
	                                 : ((t->flags & GW_RL_T_KEY_SLOT) ? 1 : 0) |
	                                           ((t->flags & GW_RL_T_TEN_SLOT) ? 2 : 0);
	gkey_init(&gk, t->tenant_id, t->key_id, t->month, 1);
	if (d) {
		gk.lim[GW_RL_KEY_TPM] = t->key_tpm > 0 ? t->key_tpm : 0;
		gk.lim[GW_RL_TENANT_TPM] = t->tenant_tpm > 0 ? t->tenant_tpm : 0;
		gk.lim[GW_RL_TENANT_MONTHLY] = t->monthly > 0 ? t->monthly : 0;
	}
	gk.lim[GW_RL_KEY_CONC] = mask & 1;
	gk.lim[GW_RL_TENANT_CONC] = (mask & 2) ? 1 : 0;
	int g = group_of(rl, &gk, 0);
	if (j->kind == JOB_RENEW) {
		sb_bulk(a, "R", 1);
		sb_int(a, g);
		sb_slot(a, t->slot);
		rl->nargs += 3;
	} else {
		sb_bulk(a, "S", 1);
		sb_int(a, g);
		sb_int(a, d);
		sb_int(a, mask);
		sb_slot(a, t->slot);
		rl->nargs += 5;
	}
}

static void item_admit(struct gw_rl *rl, const struct admit_in *in, int64_t sec, int64_t usec)
{
	struct sbuf *a = &rl->ab;
	struct gkey gk;
	gkey_init(&gk, in->tenant_id, in->key_id, in->month, 0);
	memcpy(gk.lim, in->lim, sizeof gk.lim);
	int g = group_of(rl, &gk, (in->month_end_s - sec) * 1000 - usec / 1000);
	sb_bulk(a, "A", 1);
	sb_int(a, g);
	sb_int(a, in->cost);
	sb_slot(a, in->slot);
	rl->nargs += 4;
}

/* The whole command for batch b in rl->cmd; -1 when out of memory or a table is full (a batch
 * is sized so that they never are). */
static int build_batch(struct gw_rl *rl, const struct batch *b, int use_eval)
{
	if (++rl->kgen == 0) { /* wrapped: forget every stamp */
		memset(rl->kh, 0, sizeof *rl->kh * KHASH_SIZE);
		memset(rl->gh, 0, sizeof *rl->gh * GHASH_SIZE);
		rl->kgen = 1;
	}
	rl->nkeys = rl->ngroups = rl->nargs = 0;
	rl->kb.len = rl->gb.len = rl->ab.len = rl->cmd.len = 0;
	rl->kb.oom = rl->gb.oom = rl->ab.oom = rl->cmd.oom = 0;
	for (int i = 0; i < b->nfire; i++)
		item_settle(rl, b->fire[i]);
	int64_t sec, usec;
	wall_now(&sec, &usec);
	for (int i = 0; i < b->nadmit; i++)
		item_admit(rl, &b->adm[i]->in, sec, usec);
	char h[32];
	size_t k = 0;
	h[k++] = '*';
	k += fmt_i64(h + k, 3 + rl->nkeys + 4 + 15 * rl->ngroups + rl->nargs);
	h[k++] = '\r';
	h[k++] = '\n';
	sb_raw(&rl->cmd, h, k);
	if (use_eval) {
		sb_bulk(&rl->cmd, "EVAL", 4);
		sb_bulk(&rl->cmd, LUA_SCRIPT, sizeof LUA_SCRIPT - 1);
	} else {
		sb_bulk(&rl->cmd, "EVALSHA", 7);
		sb_bulk(&rl->cmd, rl->sha, 40);
	}
	sb_int(&rl->cmd, rl->nkeys);
	sb_raw(&rl->cmd, rl->kb.p, rl->kb.len);
	sb_bulk(&rl->cmd, "B", 1);
	sb_int(&rl->cmd, rl->cfg.lease_ms);
	sb_bulk(&rl->cmd, rl->ktype, (size_t)rl->nkeys);
	sb_int(&rl->cmd, rl->ngroups);
	sb_raw(&rl->cmd, rl->gb.p, rl->gb.len);
	sb_raw(&rl->cmd, rl->ab.p, rl->ab.len);
	return rl->kb.oom || rl->gb.oom || rl->ab.oom || rl->cmd.oom ? -1 : 0;
}

/* Answer every admission of b locally and drop its settlements (b could not be sent, or its
 * run failed). Frees b. */
static void batch_fail(struct gw_rl *rl, struct batch *b)
{
	for (int i = 0; i < b->nadmit; i++) {
		struct job *j = b->adm[i];
		if (!j->answered) {
			struct gw_rl_decision d;
			fifo_remove(rl, j);
			atomic_fetch_sub(&rl->c_pending, 1);
			decide_local(rl, &j->in, 1, &d);
			j->cb(j->ctx, &d);
		}
		free(j);
	}
	for (int i = 0; i < b->nfire; i++)
		free(b->fire[i]);
	if (b->nfire)
		atomic_fetch_add(&rl->c_dropped, (uint64_t)b->nfire);
	free(b);
}

static void send_batch(struct gw_rl *rl, struct batch *b, int use_eval)
{
	if (!conn_alive(rl) || build_batch(rl, b, use_eval) != 0 ||
	    redisAsyncFormattedCommand(rl->ac, on_batch_reply, b, rl->cmd.p, rl->cmd.len) !=
	            REDIS_OK) {
		batch_fail(rl, b);
		return;
	}
	rl->inflight++;
	rl->inflight_adm += b->nadmit > 0;
	atomic_fetch_add(&rl->c_commands, 1);
	if (b->nadmit) {
		if (!use_eval)
			atomic_fetch_add(&rl->c_roundtrips, 1);
		atomic_fetch_add(&rl->c_remote, (uint64_t)b->nadmit);
	}
	uint64_t now = mono_us();
	for (int i = 0; i < b->nadmit; i++) {
		struct job *j = b->adm[i];
		j->sent_us = now;
		if (!j->answered && !j->in_fifo)
			fifo_push(rl, j);
	}
}

static int is_noscript(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_ERROR && r->str && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Parse one admission's 17 integers; -1 when they do not have the expected shape. */
static int parse_admit(redisReply *const *e, struct raw *out)
{
	for (int i = 0; i < ADMIT_REPLY_LEN; i++)
		if (e[i]->type != REDIS_REPLY_INTEGER)
			return -1;
	out->outcome = (int)e[0]->integer;
	out->refused = (int)e[1]->integer;
	out->wait_us = e[2]->integer;
	if (out->outcome < GW_RL_ALLOWED || out->outcome > GW_RL_TOO_LARGE || out->refused < 0 ||
	    out->refused > GW_RL_NDIM)
		return -1;
	for (int d = 0; d < GW_RL_NDIM; d++) {
		out->rem[d] = e[3 + 2 * d]->integer;
		out->reset_us[d] = e[4 + 2 * d]->integer;
	}
	return 0;
}

static void pf_push(struct gw_rl *rl, struct job *j)
{
	j->next = NULL;
	if (!rl->pf_head)
		rl->pf_since = mono_us();
	if (rl->pf_tail)
		rl->pf_tail->next = j;
	else
		rl->pf_head = j;
	rl->pf_tail = j;
}

static void on_batch_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct gw_rl *rl = ac->ev.data;
	struct batch *b = priv;
	redisReply *r = reply;

	if (rl->inflight > 0)
		rl->inflight--;
	if (b->nadmit && rl->inflight_adm > 0)
		rl->inflight_adm--;
	if (is_noscript(r) && conn_alive(rl)) {
		send_batch(rl, b, 1); /* the script cache was flushed: send the text this once */
		return;
	}
	int shape = r && r->type == REDIS_REPLY_ARRAY &&
	            r->elements == (size_t)b->nadmit * ADMIT_REPLY_LEN;
	if (!r) {
		rl->need_reset = 1; /* the connection went away under us */
		if (b->nfire)
			atomic_fetch_add(&rl->c_dropped, (uint64_t)b->nfire);
	} else if (!shape) {
		atomic_fetch_add(&rl->c_errors, 1);
		rl_log(rl, 2, "redis rate-limit script failed: %s",
		       r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply");
	}
	for (int i = 0; i < b->nfire; i++)
		free(b->fire[i]);
	for (int i = 0; i < b->nadmit; i++) {
		struct job *j = b->adm[i];
		struct raw raw;
		struct gw_rl_decision d;
		int ok = shape && parse_admit(r->element + (size_t)i * ADMIT_REPLY_LEN, &raw) == 0;
		if (j->answered) {
			/* Timed out and decided locally already. If Redis admitted it after all, give
			 * back what it took: the slots and the token reservation (the request count
			 * stays), in the next batch. */
			if (ok && raw.outcome == GW_RL_ALLOWED && conn_alive(rl)) {
				fill_decision(rl, &j->in, &raw, 0, &d);
				int mask = ((d.ticket.flags & GW_RL_T_KEY_SLOT) ? 1 : 0) |
				           ((d.ticket.flags & GW_RL_T_TEN_SLOT) ? 2 : 0);
				if (mask || j->in.cost) {
					j->kind = JOB_SETTLE;
					j->t = d.ticket;
					j->delta = -j->in.cost;
					j->release_mask = mask;
					pf_push(rl, j);
					continue;
				}
			}
			free(j);
			continue;
		}
		fifo_remove(rl, j);
		atomic_fetch_sub(&rl->c_pending, 1);
		if (ok) {
			fill_decision(rl, &j->in, &raw, 0, &d);
			count_decision(rl, &d);
			block_learn(rl, &j->in, &d, j->sent_us, raw.wait_us);
		} else {
			if (shape) { /* one malformed item in a well-formed reply */
				atomic_fetch_add(&rl->c_errors, 1);
				rl_log(rl, 2, "redis rate-limit script: malformed answer");
			}
			decide_local(rl, &j->in, 1, &d);
		}
		j->cb(j->ctx, &d);
		free(j);
	}
	free(b);
}

/* Send what is waiting, as batches: admissions (with the settlements waiting) while fewer than
 * INFLIGHT_MAX batches of admissions are out; settlements alone only when nothing is out and
 * they have waited FIRE_HOLD_US (or force) for admissions to ride with: one run per request
 * even at one request at a time, and a settlement never delays an admission by a round trip. */
static void flush_(struct gw_rl *rl, int force)
{
	if (!redis_usable(rl)) {
		while (rl->pa_head) {
			struct job *j = rl->pa_head;
			struct gw_rl_decision d;
			rl->pa_head = j->next;
			atomic_fetch_sub(&rl->c_pending, 1);
			decide_local(rl, &j->in, 1, &d);
			j->cb(j->ctx, &d);
			free(j);
		}
		rl->pa_tail = NULL;
	}
	if (!conn_alive(rl)) {
		while (rl->pf_head) {
			struct job *j = rl->pf_head;
			rl->pf_head = j->next;
			atomic_fetch_add(&rl->c_dropped, 1);
			free(j);
		}
		rl->pf_tail = NULL;
		return;
	}
	for (;;) {
		int adm = rl->pa_head && rl->inflight_adm < INFLIGHT_MAX;
		int fire = !rl->pa_head && rl->pf_head && !rl->inflight &&
		           (force || mono_us() - rl->pf_since >= FIRE_HOLD_US);
		if (!conn_alive(rl) || !(adm || fire))
			break;
		struct batch *b = malloc(sizeof *b);
		if (!b)
			return; /* retried on the next loop; admissions time out meanwhile */
		b->nadmit = b->nfire = 0;
		while (rl->pf_head && b->nfire < BATCH_FIRE_MAX) {
			b->fire[b->nfire++] = rl->pf_head;
			rl->pf_head = rl->pf_head->next;
		}
		if (!rl->pf_head)
			rl->pf_tail = NULL;
		else
			rl->pf_since = mono_us();
		while (adm && rl->pa_head && b->nadmit < BATCH_ADMIT_MAX) {
			b->adm[b->nadmit++] = rl->pa_head;
			rl->pa_head = rl->pa_head->next;
		}
		if (!rl->pa_head)
			rl->pa_tail = NULL;
		send_batch(rl, b, 0);
	}
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
	rl->inflight = rl->inflight_adm = 0;
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

static void flush(struct gw_rl *rl)
{
	flush_(rl, 0);
}

static void dispatch(struct gw_rl *rl, struct job *j)
{
	j->next = NULL;
	if (j->kind == JOB_ADMIT) {
		if (redis_usable(rl)) {
			if (rl->pa_tail)
				rl->pa_tail->next = j;
			else
				rl->pa_head = j;
			rl->pa_tail = j;
		} else {
			struct gw_rl_decision d;
			atomic_fetch_sub(&rl->c_pending, 1);
			decide_local(rl, &j->in, 1, &d);
			j->cb(j->ctx, &d);
			free(j);
		}
	} else if (conn_alive(rl)) {
		pf_push(rl, j);
	} else {
		atomic_fetch_add(&rl->c_dropped, 1);
		free(j);
	}
}

static void expire_admissions(struct gw_rl *rl, uint64_t now)
{
	int expired = 0;
	/* waiting for a batch behind a run that has not come back: never sent, nothing to undo */
	while (rl->pa_head && rl->pa_head->deadline_us <= now) {
		struct job *j = rl->pa_head;
		struct gw_rl_decision d;
		rl->pa_head = j->next;
		if (!rl->pa_head)
			rl->pa_tail = NULL;
		atomic_fetch_sub(&rl->c_pending, 1);
		atomic_fetch_add(&rl->c_timeouts, 1);
		decide_local(rl, &j->in, 1, &d);
		j->cb(j->ctx, &d);
		free(j);
		expired++;
	}
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
		atomic_store(&rl->io_busy, 0); /* before taking the queue: see enqueue */
		for (struct job *j = take_queue(rl), *n; j; j = n) {
			n = j->next;
			dispatch(rl, j);
		}
		flush(rl);
		/* Anything queued from now on waits for this batch's reply, which wakes this
		 * thread anyway; an admission's deadline bounds that wait (it is later than the
		 * in-flight one's, which poll's timeout watches). */
		atomic_store(&rl->io_busy, rl->inflight_adm >= INFLIGHT_MAX && rl->fhead != NULL &&
		                                   !rl->need_reset);
		if (rl->ac && rl->want_write && (rl->ac->c.flags & REDIS_CONNECTED))
			redisAsyncHandleWrite(rl->ac); /* flush the pipeline now, no poll round */

		int timeout = 100;
		now = mono_us();
		for (int q = 0; q < 2; q++) {
			struct job *h = q ? rl->pa_head : rl->fhead;
			if (!h)
				continue;
			int64_t t = ((int64_t)h->deadline_us - (int64_t)now + 999) / 1000;
			if (t < timeout)
				timeout = t < 0 ? 0 : (int)t;
		}
		if (rl->pf_head && !rl->pa_head && !rl->inflight) { /* a settlement on hold */
			int64_t t = ((int64_t)(rl->pf_since + FIRE_HOLD_US) - (int64_t)now + 999) /
			            1000;
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
	flush_(rl, 1); /* waiting admissions: decided locally; settlements: sent if possible */
	if (rl->ac && rl->want_write && (rl->ac->c.flags & REDIS_CONNECTED))
		redisAsyncHandleWrite(rl->ac); /* best effort: they are fire-and-forget */
	if (rl->ac)
		redisAsyncFree(rl->ac); /* batches out: answered locally by their callbacks */
	flush(rl);                  /* compensations queued by late replies: dropped */
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
		rl->kh = calloc(KHASH_SIZE, sizeof *rl->kh);
		rl->koff = calloc(BATCH_KEYS_MAX + 1, sizeof *rl->koff);
		rl->klen = calloc(BATCH_KEYS_MAX + 1, sizeof *rl->klen);
		rl->ktype = calloc(BATCH_KEYS_MAX + 1, 1);
		rl->gh = calloc(GHASH_SIZE, sizeof *rl->gh);
		rl->groups = calloc(GROUPS_MAX + 1, sizeof *rl->groups);
		if (!rl->kh || !rl->koff || !rl->klen || !rl->ktype || !rl->gh || !rl->groups) {
			rc = GW_RL_ENOMEM;
			goto fail;
		}
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
	free(rl->kh);
	free(rl->koff);
	free(rl->klen);
	free(rl->ktype);
	free(rl->gh);
	free(rl->groups);
	free(rl->kb.p);
	free(rl->gb.p);
	free(rl->ab.p);
	free(rl->cmd.p);
	memset(rl->url.password, 0, sizeof rl->url.password);
	free(rl);
}

/* gw_rl_defer_begin/end: this thread holds its wake-ups; the limiter it queued to, if any. */
static __thread int tl_defer;
static __thread struct gw_rl *tl_deferred;

static void wake_io(struct gw_rl *rl)
{
	uint64_t one = 1;
	ssize_t w = write(rl->efd, &one, sizeof one);
	(void)w;
}

void gw_rl_defer_begin(void)
{
	tl_defer = 1;
}

void gw_rl_defer_end(void)
{
	struct gw_rl *rl = tl_deferred;
	tl_defer = 0;
	tl_deferred = NULL;
	/* as in enqueue: an I/O thread marked busy takes the queue after clearing the mark */
	if (rl && !atomic_load(&rl->io_busy))
		wake_io(rl);
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
	/* The I/O thread drains everything queued when it wakes. While it is busy (a batch out),
	 * it takes the queue after clearing io_busy, so a job pushed before that clear is seen
	 * without a wake-up, and one pushed after it reads io_busy == 0 here and wakes it. */
	if (tl_defer && (!tl_deferred || tl_deferred == rl)) {
		/* woken at gw_rl_defer_end, whether or not the queue was empty: another deferring
		 * thread that found it empty may still be in its bracket */
		tl_deferred = rl;
		return;
	}
	if (was_empty && !atomic_load(&rl->io_busy))
		wake_io(rl);
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
	out->redis_admissions = atomic_load(&m->c_remote);
	out->degraded = gw_rl_degraded(rl);
}
