/*
 * gateway rate limiter: the in-process limiter on its own, then the Redis path against a real
 * redis-server started here on a free loopback port (stopped by PID at the end): exact limits
 * under concurrency, two limiters sharing one Redis, token reservation and settlement, monthly
 * quota, concurrency slots and leases, batched scripts (one run answering many requests, each
 * exactly; a run cut by Redis dying failing each request over to the local limiter), NOSCRIPT,
 * Redis killed and restarted, Redis stalled, fail-closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "gw_gcra.h"
#include "gw_ratelimit.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static struct ks_key_info key_info(int64_t tenant_id, const char *key_id)
{
	struct ks_key_info k;
	memset(&k, 0, sizeof k);
	snprintf(k.key_id, sizeof k.key_id, "%s", key_id);
	k.tenant_id = tenant_id;
	snprintf(k.tenant, sizeof k.tenant, "t%lld", (long long)tenant_id);
	return k;
}

static struct gw_rl_decision admit(struct gw_rl *rl, const struct ks_key_info *k, int64_t tokens)
{
	struct gw_rl_request req = {k, tokens};
	struct gw_rl_decision d;
	gw_rl_admit_wait(rl, &req, &d);
	return d;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int quiet_log_calls;
static void quiet_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)level;
	(void)msg;
	__atomic_add_fetch(&quiet_log_calls, 1, __ATOMIC_RELAXED);
}

/* ---- the in-process limiter ----------------------------------------------------------------- */

static void test_gw_ratelimit__local_rpm_is_exact_and_refusals_say_why(void **state)
{
	(void)state;
	struct gw_rl *rl;
	assert_int_equal(gw_rl_new(NULL, &rl, NULL, 0), GW_RL_OK);
	assert_false(gw_rl_has_redis(rl));
	assert_false(gw_rl_degraded(rl));
	assert_int_equal(gw_rl_wait_ready(rl, 0), GW_RL_OK);
	struct ks_key_info k = key_info(1, "AAAAAAAAAAAA");
	k.limits.rpm = 5;
	k.tenant_limits.rpm = 50;
	for (int i = 0; i < 5; i++) {
		struct gw_rl_decision d = admit(rl, &k, 0);
		assert_int_equal(d.outcome, GW_RL_ALLOWED);
		assert_true(d.local);
		assert_int_equal(d.dim[GW_RL_KEY_RPM].remaining, 4 - i);
		assert_int_equal(d.dim[GW_RL_TENANT_RPM].remaining, 49 - i);
		struct gw_rl_state s = gw_rl_requests_state(&d);
		assert_int_equal(s.limit, 5);
		assert_int_equal(s.remaining, 4 - i);
	}
	struct gw_rl_decision d = admit(rl, &k, 0);
	assert_int_equal(d.outcome, GW_RL_LIMITED);
	assert_int_equal(d.refused, GW_RL_KEY_RPM);
	assert_int_equal(d.retry_after_s, 12);                   /* one request per 12 s */
	assert_int_equal(d.dim[GW_RL_TENANT_RPM].remaining, 45); /* a refusal took nothing */
	assert_string_equal(gw_rl_dim_name((enum gw_rl_dim)d.refused), "key_rpm");
	assert_string_equal(gw_rl_outcome_name((enum gw_rl_outcome)d.outcome), "limited");
	struct gw_rl_stats st;
	gw_rl_stats(rl, &st);
	assert_int_equal(st.allowed, 5);
	assert_int_equal(st.limited[GW_RL_KEY_RPM], 1);
	assert_int_equal(st.local_decisions, 6);
	assert_int_equal(st.redis_roundtrips, 0);
	gw_rl_free(rl);
}

static int inline_calls;
static void count_cb(void *ctx, const struct gw_rl_decision *d)
{
	(void)d;
	(*(int *)ctx)++;
}

static void test_gw_ratelimit__nothing_limited_is_admitted_inline(void **state)
{
	(void)state;
	struct gw_rl *rl;
	assert_int_equal(gw_rl_new(NULL, &rl, NULL, 0), GW_RL_OK);
	struct ks_key_info k = key_info(2, "BBBBBBBBBBBB");
	struct gw_rl_request req = {&k, 100};
	inline_calls = 0;
	assert_int_equal(gw_rl_admit(rl, &req, count_cb, &inline_calls), 1);
	assert_int_equal(inline_calls, 1);
	struct gw_rl_decision d = admit(rl, &k, 100);
	assert_int_equal(d.outcome, GW_RL_ALLOWED);
	assert_int_equal(gw_rl_tokens_state(&d).limit, 0);
	assert_string_equal(d.ticket.slot, "");
	gw_rl_finish(rl, &d.ticket, 10); /* nothing held: a no-op */
	gw_rl_free(rl);
	gw_rl_free(NULL);
}

static void test_gw_ratelimit__local_tokens_reserve_then_settle(void **state)
{
	(void)state;
	struct gw_rl *rl;
	assert_int_equal(gw_rl_new(NULL, &rl, NULL, 0), GW_RL_OK);
	struct ks_key_info k = key_info(3, "CCCCCCCCCCCC");
	k.limits.tpm = 1000;
	struct gw_rl_decision a = admit(rl, &k, 600);
	assert_int_equal(a.outcome, GW_RL_ALLOWED);
	assert_int_equal(gw_rl_tokens_state(&a).remaining, 400);
	struct gw_rl_decision b = admit(rl, &k, 500);
	assert_int_equal(b.outcome, GW_RL_LIMITED);
	assert_int_equal(b.refused, GW_RL_KEY_TPM);
	assert_int_equal(b.retry_after_s, 6); /* 100 tokens at 1000/min */
	gw_rl_settle(rl, &a.ticket, 100);
	gw_rl_settle(rl, &a.ticket, 0); /* idempotent */
	b = admit(rl, &k, 500);
	assert_int_equal(b.outcome, GW_RL_ALLOWED);
	assert_true(gw_rl_tokens_state(&b).remaining >= 399);
	assert_true(gw_rl_tokens_state(&b).remaining <= 400);
	struct gw_rl_decision c = admit(rl, &k, 1001);
	assert_int_equal(c.outcome, GW_RL_TOO_LARGE);
	assert_int_equal(c.retry_after_s, 0);
	gw_rl_free(rl);
}

static void test_gw_ratelimit__local_concurrency_and_monthly_quota(void **state)
{
	(void)state;
	struct gw_rl *rl;
	assert_int_equal(gw_rl_new(NULL, &rl, NULL, 0), GW_RL_OK);
	struct ks_key_info k = key_info(4, "DDDDDDDDDDDD");
	k.limits.concurrency = 2;
	k.tenant_limits.monthly_tokens = 1000;
	struct gw_rl_decision a = admit(rl, &k, 400), b = admit(rl, &k, 400);
	assert_int_equal(a.outcome, GW_RL_ALLOWED);
	assert_int_equal(b.outcome, GW_RL_ALLOWED);
	assert_string_not_equal(a.ticket.slot, b.ticket.slot);
	struct gw_rl_decision c = admit(rl, &k, 100);
	assert_int_equal(c.outcome, GW_RL_LIMITED);
	assert_int_equal(c.refused, GW_RL_KEY_CONC);
	assert_int_equal(c.retry_after_s, 1);
	gw_rl_finish(rl, &a.ticket, 100); /* frees a slot, refunds 300 tokens */
	gw_rl_release(rl, &a.ticket);     /* idempotent */
	c = admit(rl, &k, 400);
	assert_int_equal(c.outcome, GW_RL_ALLOWED);
	assert_int_equal(c.dim[GW_RL_TENANT_MONTHLY].remaining, 1000 - 100 - 400 - 400);
	gw_rl_release(rl, &b.ticket);
	struct gw_rl_decision q = admit(rl, &k, 200);
	assert_int_equal(q.outcome, GW_RL_QUOTA);
	assert_int_equal(q.refused, GW_RL_TENANT_MONTHLY);
	time_t now = time(NULL);
	int64_t to_end = gw_month_end(now) - now;
	assert_true(q.retry_after_s >= to_end - 2 && q.retry_after_s <= to_end + 2);
	assert_true(q.dim[GW_RL_TENANT_MONTHLY].reset_ms / 1000 >= to_end - 2);
	struct gw_rl_stats st;
	gw_rl_stats(rl, &st);
	assert_int_equal(st.quota, 1);
	gw_rl_free(rl);
}

static void test_gw_ratelimit__bad_config_is_refused_with_a_message(void **state)
{
	(void)state;
	struct gw_rl *rl = (struct gw_rl *)1;
	char err[200];
	struct gw_rl_config cfg = {.redis_url = "rediss://host:1"};
	assert_int_equal(gw_rl_new(&cfg, &rl, err, sizeof err), GW_RL_EURL);
	assert_null(rl);
	assert_non_null(strstr(err, "TLS"));
	cfg.redis_url = NULL;
	cfg.prefix = "a{b}";
	assert_int_equal(gw_rl_new(&cfg, &rl, err, sizeof err), GW_RL_EINVAL);
	assert_string_equal(gw_rl_strerror(GW_RL_EURL), "bad redis url");
}

/* ---- a real redis-server -------------------------------------------------------------------- */

static pid_t redis_pid = -1;
static int redis_port;
static char redis_url[64];
static char redis_sock[128];

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

static redisContext *sync_conn(void)
{
	struct timeval tv = {1, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
	if (c && c->err) {
		redisFree(c);
		return NULL;
	}
	if (c)
		redisSetTimeout(c, tv);
	return c;
}

/* Start redis-server on redis_port; 0 when it answers PING. */
static int spawn_redis(void)
{
	char port[16];
	snprintf(port, sizeof port, "%d", redis_port);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (!freopen("/dev/null", "w", stdout))
			_exit(126);
		execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", "--protected-mode", "no", "--unixsocket",
		       redis_sock, "--unixsocketperm", "700", (char *)NULL);
		_exit(127);
	}
	redis_pid = pid;
	for (int i = 0; i < 250; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			redis_pid = -1;
			return -1;
		}
		redisContext *c = sync_conn();
		if (c) {
			redisReply *r = redisCommand(c, "PING");
			int ok = r && r->type == REDIS_REPLY_STATUS;
			freeReplyObject(r);
			redisFree(c);
			if (ok)
				return 0;
		}
		sleep_ms(20);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	redis_pid = -1;
	return -1;
}

/* SIGSTOP redis-server and wait until it is stopped (the signal is asynchronous: until then it
 * may still answer). */
static void pause_redis(void)
{
	char path[64], buf[256];
	kill(redis_pid, SIGSTOP);
	snprintf(path, sizeof path, "/proc/%d/stat", (int)redis_pid);
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(path, "r");
		size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
		if (f)
			fclose(f);
		buf[n] = '\0';
		const char *p = strrchr(buf, ')'); /* "pid (comm) S ..." */
		if (p && (p[2] == 'T' || p[2] == 't'))
			return;
		sleep_ms(2);
	}
	fail_msg("redis-server did not stop");
}

static void stop_redis(int sig)
{
	if (redis_pid <= 0)
		return;
	kill(redis_pid, SIGCONT);
	kill(redis_pid, sig);
	waitpid(redis_pid, NULL, 0);
	redis_pid = -1;
}

static int redis_setup(void **state)
{
	(void)state;
	snprintf(redis_sock, sizeof redis_sock, "%s/gw-rl-test-%d.sock",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
	for (int attempt = 0; attempt < 5; attempt++) {
		redis_port = free_port();
		if (redis_port > 0 && spawn_redis() == 0) {
			snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d/0", redis_port);
			return 0;
		}
	}
	fprintf(stderr, "cannot start redis-server\n");
	return -1;
}

static int redis_teardown(void **state)
{
	(void)state;
	stop_redis(SIGTERM);
	unlink(redis_sock);
	return 0;
}

static long long redis_int(const char *fmt, const char *arg)
{
	redisContext *c = sync_conn();
	assert_non_null(c);
	redisReply *r = redisCommand(c, fmt, arg);
	assert_non_null(r);
	long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
	              : r->type == REDIS_REPLY_STRING ? atoll(r->str)
	                                              : -999;
	freeReplyObject(r);
	redisFree(c);
	return v;
}

/* calls of one command in INFO commandstats */
static long long command_calls(const char *cmd)
{
	redisContext *c = sync_conn();
	assert_non_null(c);
	redisReply *r = redisCommand(c, "INFO commandstats");
	assert_non_null(r);
	char pat[64];
	snprintf(pat, sizeof pat, "cmdstat_%s:calls=", cmd);
	const char *p = strstr(r->str, pat);
	long long v = p ? atoll(p + strlen(pat)) : 0;
	freeReplyObject(r);
	redisFree(c);
	return v;
}

static void redis_cmd(const char *cmd)
{
	redisContext *c = sync_conn();
	assert_non_null(c);
	redisReply *r = redisCommand(c, cmd);
	assert_non_null(r);
	freeReplyObject(r);
	redisFree(c);
}

static struct gw_rl *redis_limiter(const char *prefix, int timeout_ms, int lease_ms)
{
	struct gw_rl_config cfg = {.redis_url = redis_url,
	                           .prefix = prefix,
	                           .timeout_ms = timeout_ms,
	                           .lease_ms = lease_ms,
	                           .connect_timeout_ms =
	                                   2000, /* a stall shorter than this is ridden out */
	                           .backoff_min_ms = 20,
	                           .backoff_max_ms = 200,
	                           .log = quiet_log};
	struct gw_rl *rl;
	char err[200];
	assert_int_equal(gw_rl_new(&cfg, &rl, err, sizeof err), GW_RL_OK);
	assert_int_equal(gw_rl_wait_ready(rl, 3000), GW_RL_OK);
	assert_false(gw_rl_degraded(rl));
	return rl;
}

struct hammer {
	struct gw_rl *rl;
	const struct ks_key_info *k;
	int n, allowed, local;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	for (int i = 0; i < h->n; i++) {
		struct gw_rl_decision d = admit(h->rl, h->k, 0);
		h->allowed += d.outcome == GW_RL_ALLOWED;
		h->local += d.local;
	}
	return NULL;
}

/* threads per limiter, over nl limiters; returns the number admitted. */
static int hammer(struct gw_rl **rls, int nl, const struct ks_key_info *k, int threads, int per,
                  int *local)
{
	pthread_t th[64];
	struct hammer h[64];
	int total = 0;
	*local = 0;
	for (int i = 0; i < threads * nl; i++) {
		h[i] = (struct hammer){rls[i % nl], k, per, 0, 0};
		pthread_create(&th[i], NULL, hammer_main, &h[i]);
	}
	for (int i = 0; i < threads * nl; i++) {
		pthread_join(th[i], NULL);
		total += h[i].allowed;
		*local += h[i].local;
	}
	return total;
}

static void test_gw_ratelimit__redis_exact_limit_under_concurrency(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t1:", 1000, 0);
	struct ks_key_info k = key_info(10, "EEEEEEEEEEEE");
	k.limits.rpm = 100;
	long long evalsha0 = command_calls("evalsha");
	struct gw_rl_stats s0;
	gw_rl_stats(rl, &s0);
	int local;
	int64_t t0 = now_ms();
	int got = hammer(&rl, 1, &k, 8, 50, &local);
	int64_t el = now_ms() - t0;
	assert_int_equal(local, 0);
	/* GCRA refills one request per 600 ms: exactly 100 unless the run took that long */
	if (el < 550)
		assert_int_equal(got, 100);
	else
		assert_true(got >= 100 && got <= 100 + el / 600 + 1);
	struct gw_rl_stats s1;
	gw_rl_stats(rl, &s1);
	/* every admission went to Redis, except refusals the over-limit cache answered; 8
	 * threads in flight share batched scripts: at most one script per admission, by our
	 * count and by Redis's */
	uint64_t rt = s1.redis_roundtrips - s0.redis_roundtrips;
	uint64_t sent = s1.redis_admissions - s0.redis_admissions;
	assert_int_equal(sent + (s1.cached_refusals - s0.cached_refusals), 400);
	assert_true(sent >= 100 + 1);
	assert_true(rt >= 1 && rt <= sent);
	assert_int_equal(command_calls("evalsha") - evalsha0, (long long)rt);
	assert_int_equal(s1.allowed - s0.allowed, (uint64_t)got);
	assert_int_equal(s1.limited[GW_RL_KEY_RPM] - s0.limited[GW_RL_KEY_RPM], 400 - got);
	assert_int_equal(s1.local_decisions, 0);
	assert_int_equal(s1.redis_errors, 0);
	gw_rl_free(rl);
}

static void test_gw_ratelimit__two_limiters_share_one_limit(void **state)
{
	(void)state;
	struct gw_rl *rls[2] = {redis_limiter("t2:", 1000, 0), redis_limiter("t2:", 1000, 0)};
	struct ks_key_info k = key_info(11, "FFFFFFFFFFFF");
	k.tenant_limits.rpm = 60; /* tenant-wide, via two keys of the tenant */
	struct ks_key_info k2 = key_info(11, "GGGGGGGGGGGG");
	k2.tenant_limits.rpm = 60;
	int local;
	int64_t t0 = now_ms();
	int got = hammer(rls, 2, &k, 4, 25, &local) + hammer(rls, 2, &k2, 4, 25, &local);
	int64_t el = now_ms() - t0;
	assert_int_equal(local, 0);
	assert_true(got >= 60 && got <= 60 + el / 1000 + 1); /* 1 per second refill */
	gw_rl_free(rls[0]);
	gw_rl_free(rls[1]);
}

static void test_gw_ratelimit__redis_tokens_reserve_then_settle(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t3:", 1000, 0);
	struct ks_key_info k = key_info(12, "HHHHHHHHHHHH");
	k.limits.tpm = 1000;
	k.tenant_limits.tpm = 100000;
	struct gw_rl_decision a = admit(rl, &k, 600);
	assert_int_equal(a.outcome, GW_RL_ALLOWED);
	assert_false(a.local);
	struct gw_rl_state ts = gw_rl_tokens_state(&a);
	assert_int_equal(ts.limit, 1000);
	assert_int_equal(ts.remaining, 400);
	assert_true(ts.reset_ms > 35000 && ts.reset_ms <= 36000);
	struct gw_rl_decision b = admit(rl, &k, 500);
	assert_int_equal(b.outcome, GW_RL_LIMITED);
	assert_int_equal(b.refused, GW_RL_KEY_TPM);
	assert_int_equal(b.retry_after_s, 6);
	gw_rl_settle(rl, &a.ticket, 100); /* refund 500, fire-and-forget on the same pipeline */
	b = admit(rl, &k, 500);           /* queued after the settlement: sees it */
	assert_int_equal(b.outcome, GW_RL_ALLOWED);
	assert_true(gw_rl_tokens_state(&b).remaining >= 399);
	/* actual above the estimate: charged past the limit, the next admission waits */
	gw_rl_settle(rl, &b.ticket, 1500);
	struct gw_rl_decision c = admit(rl, &k, 1);
	assert_int_equal(c.outcome, GW_RL_LIMITED);
	assert_true(c.retry_after_s >= 35 && c.retry_after_s <= 37);
	assert_int_equal(admit(rl, &k, 1001).outcome, GW_RL_TOO_LARGE);
	gw_rl_free(rl);
}

static void test_gw_ratelimit__redis_monthly_quota(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t4:", 1000, 0);
	struct ks_key_info k = key_info(13, "IIIIIIIIIIII");
	k.tenant_limits.monthly_tokens = 1000;
	struct gw_rl_decision a = admit(rl, &k, 600);
	assert_int_equal(a.outcome, GW_RL_ALLOWED);
	assert_int_equal(a.dim[GW_RL_TENANT_MONTHLY].remaining, 400);
	struct gw_rl_decision q = admit(rl, &k, 600);
	assert_int_equal(q.outcome, GW_RL_QUOTA);
	assert_int_equal(q.refused, GW_RL_TENANT_MONTHLY);
	time_t now = time(NULL);
	int64_t to_end = gw_month_end(now) - now;
	assert_true(q.retry_after_s >= to_end - 2 && q.retry_after_s <= to_end + 2);
	assert_int_equal(admit(rl, &k, 1001).outcome, GW_RL_TOO_LARGE);
	gw_rl_finish(rl, &a.ticket, 300);
	q = admit(rl, &k, 600);
	assert_int_equal(q.outcome, GW_RL_ALLOWED);
	assert_int_equal(q.dim[GW_RL_TENANT_MONTHLY].remaining, 100);
	char key[64];
	snprintf(key, sizeof key, "t4:{t13}:mq:%d", gw_month_of(now));
	assert_int_equal(redis_int("GET %s", key), 900);
	assert_true(redis_int("PTTL %s", key) > to_end * 1000);
	gw_rl_free(rl);
}

static void test_gw_ratelimit__redis_slots_release_renew_and_expire(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t5:", 1000, 600);
	struct ks_key_info k = key_info(14, "JJJJJJJJJJJJ");
	k.limits.concurrency = 2;
	k.tenant_limits.concurrency = 10;
	struct gw_rl_decision a = admit(rl, &k, 0), b = admit(rl, &k, 0);
	assert_int_equal(a.outcome, GW_RL_ALLOWED);
	assert_int_equal(b.outcome, GW_RL_ALLOWED);
	assert_int_equal(b.dim[GW_RL_KEY_CONC].remaining, 0);
	assert_int_equal(b.dim[GW_RL_TENANT_CONC].remaining, 8);
	struct gw_rl_decision c = admit(rl, &k, 0);
	assert_int_equal(c.outcome, GW_RL_LIMITED);
	assert_int_equal(c.refused, GW_RL_KEY_CONC);
	gw_rl_release(rl, &a.ticket);
	c = admit(rl, &k, 0);
	assert_int_equal(c.outcome, GW_RL_ALLOWED);
	/* b is renewed (a long stream), c is abandoned: after the lease only c's slot is free */
	for (int i = 0; i < 8; i++) {
		sleep_ms(100);
		gw_rl_renew(rl, &b.ticket);
	}
	struct gw_rl_decision d = admit(rl, &k, 0);
	assert_int_equal(d.outcome, GW_RL_ALLOWED);
	assert_int_equal(admit(rl, &k, 0).outcome, GW_RL_LIMITED);
	gw_rl_release(rl, &b.ticket);
	gw_rl_release(rl, &d.ticket);
	assert_int_equal(admit(rl, &k, 0).outcome, GW_RL_ALLOWED);
	gw_rl_free(rl);
}

static void test_gw_ratelimit__redis_keys_are_namespaced_and_expire(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t6:", 1000, 0);
	struct ks_key_info k = key_info(15, "KKKKKKKKKKKK");
	k.limits = (struct ks_limits){10, 1000, 5, 0};
	k.tenant_limits = (struct ks_limits){100, 10000, 50, 100000};
	assert_int_equal(admit(rl, &k, 50).outcome, GW_RL_ALLOWED);
	redisContext *c = sync_conn();
	redisReply *r = redisCommand(c, "KEYS t6:*");
	assert_int_equal(r->type, REDIS_REPLY_ARRAY);
	assert_int_equal(r->elements, 5); /* rpm+tpm of the key, of the tenant; 2 slot sets; month */
	for (size_t i = 0; i < r->elements; i++) {
		const char *key = r->element[i]->str;
		assert_memory_equal(key, "t6:{t15}:", 9);
		redisReply *t = redisCommand(c, "PTTL %s", key);
		assert_true(t->integer > 0);
		freeReplyObject(t);
	}
	freeReplyObject(r);
	redisFree(c);
	gw_rl_free(rl);
}

static void test_gw_ratelimit__noscript_after_a_script_flush(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t7:", 1000, 0);
	struct ks_key_info k = key_info(16, "LLLLLLLLLLLL");
	k.limits.rpm = 3;
	assert_int_equal(admit(rl, &k, 0).outcome, GW_RL_ALLOWED);
	redis_cmd("SCRIPT FLUSH");
	struct gw_rl_decision d = admit(rl, &k, 0);
	assert_int_equal(d.outcome, GW_RL_ALLOWED);
	assert_false(d.local);
	assert_int_equal(d.dim[GW_RL_KEY_RPM].remaining, 1);
	gw_rl_free(rl);
}

static void test_gw_ratelimit__redis_killed_then_restarted(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t8:", 100, 0);
	struct ks_key_info k = key_info(17, "MMMMMMMMMMMM");
	k.limits.rpm = 1000000;
	struct gw_rl_stats s;
	assert_false(admit(rl, &k, 0).local);
	/* killed while 4 threads hammer it: every admission still gets its answer */
	struct hammer h[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		h[i] = (struct hammer){rl, &k, 400, 0, 0};
		pthread_create(&th[i], NULL, hammer_main, &h[i]);
	}
	sleep_ms(20);
	stop_redis(SIGKILL);
	int hl = 0, ha = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		hl += h[i].local;
		ha += h[i].allowed;
	}
	assert_int_equal(ha, 1600);
	assert_true(hl > 0);
	int64_t t0 = now_ms();
	int local = 0;
	for (int i = 0; i < 2000; i++) {
		struct gw_rl_decision d = admit(rl, &k, 0);
		assert_int_equal(d.outcome, GW_RL_ALLOWED);
		local += d.local;
	}
	assert_true(now_ms() - t0 < 3000); /* no connect timeout paid per request (2000 of them) */
	assert_true(local >= 1999);
	assert_true(gw_rl_degraded(rl));
	gw_rl_stats(rl, &s);
	assert_true(s.degraded);
	assert_true(s.redis_errors >= 1);
	assert_true(s.local_decisions >= 1999);
	/* local limits still hold while degraded */
	struct ks_key_info k2 = key_info(17, "NNNNNNNNNNNN");
	k2.limits.rpm = 3;
	for (int i = 0; i < 3; i++)
		assert_int_equal(admit(rl, &k2, 0).outcome, GW_RL_ALLOWED);
	assert_int_equal(admit(rl, &k2, 0).outcome, GW_RL_LIMITED);

	assert_int_equal(spawn_redis(), 0);
	assert_int_equal(gw_rl_wait_ready(rl, 3000), GW_RL_OK);
	assert_false(gw_rl_degraded(rl));
	struct gw_rl_decision d = admit(rl, &k, 0);
	assert_false(d.local);
	assert_int_equal(d.outcome, GW_RL_ALLOWED);
	gw_rl_stats(rl, &s);
	assert_true(s.reconnects >= 2);
	gw_rl_free(rl);
}

static void test_gw_ratelimit__redis_stalled_falls_back_within_the_timeout(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t9:", 60, 0);
	struct ks_key_info k = key_info(18, "OOOOOOOOOOOO");
	k.limits.rpm = 1000000;
	k.limits.concurrency = 100;
	assert_false(admit(rl, &k, 0).local);
	kill(redis_pid, SIGSTOP);
	int64_t t0 = now_ms();
	struct gw_rl_decision d = admit(rl, &k, 0);
	int64_t el = now_ms() - t0;
	assert_true(d.local);
	assert_int_equal(d.outcome, GW_RL_ALLOWED);
	assert_true(el >= 50 && el < 1000);
	/* then degraded: decided at once, without waiting for the stalled server */
	t0 = now_ms();
	for (int i = 0; i < 100; i++)
		assert_true(admit(rl, &k, 0).local);
	assert_true(now_ms() - t0 < 1000);
	assert_true(gw_rl_degraded(rl));
	struct gw_rl_stats s;
	gw_rl_stats(rl, &s);
	assert_int_equal(s.timeouts, 1);
	kill(redis_pid, SIGCONT);
	assert_int_equal(gw_rl_wait_ready(rl, 3000), GW_RL_OK);
	assert_false(admit(rl, &k, 0).local);
	/* the admission that timed out was applied late by Redis: its slot was handed back */
	sleep_ms(50);
	char key[64];
	snprintf(key, sizeof key, "t9:{t18}:k:%s:conc", k.key_id);
	assert_int_equal(redis_int("ZCARD %s", key), 2); /* the two Redis-admitted ones */
	gw_rl_free(rl);
}

static void test_gw_ratelimit__fail_closed_refuses_while_redis_is_down(void **state)
{
	(void)state;
	struct gw_rl_config cfg = {.redis_url = redis_url,
	                           .prefix = "t10:",
	                           .fail_closed = 1,
	                           .backoff_min_ms = 20,
	                           .backoff_max_ms = 100,
	                           .log = quiet_log};
	struct gw_rl *rl;
	assert_int_equal(gw_rl_new(&cfg, &rl, NULL, 0), GW_RL_OK);
	assert_int_equal(gw_rl_wait_ready(rl, 3000), GW_RL_OK);
	struct ks_key_info k = key_info(19, "PPPPPPPPPPPP");
	k.limits.rpm = 10;
	assert_int_equal(admit(rl, &k, 0).outcome, GW_RL_ALLOWED);
	stop_redis(SIGKILL);
	struct gw_rl_decision d = admit(rl, &k, 0);
	int tries = 0;
	while (d.outcome == GW_RL_ALLOWED && tries++ < 5) /* the loss is noticed on first use */
		d = admit(rl, &k, 0);
	assert_int_equal(d.outcome, GW_RL_UNAVAILABLE);
	assert_int_equal(admit(rl, &k, 0).outcome, GW_RL_UNAVAILABLE);
	struct gw_rl_stats s;
	gw_rl_stats(rl, &s);
	assert_true(s.unavailable >= 2);
	assert_int_equal(spawn_redis(), 0);
	assert_int_equal(gw_rl_wait_ready(rl, 3000), GW_RL_OK);
	assert_int_equal(admit(rl, &k, 0).outcome, GW_RL_ALLOWED);
	gw_rl_free(rl);
}

static void test_gw_ratelimit__password_db_and_unix_socket_urls(void **state)
{
	(void)state;
	struct ks_key_info k = key_info(21, "RRRRRRRRRRRR");
	k.limits.rpm = 10;
	char url[256];
	struct gw_rl *rl;
	struct gw_rl_config cfg = {.prefix = "t12:",
	                           .connect_timeout_ms = 300,
	                           .log = quiet_log,
	                           .backoff_min_ms = 20,
	                           .backoff_max_ms = 50};

	/* unix socket, db 2 */
	snprintf(url, sizeof url, "unix://%s?db=2", redis_sock);
	cfg.redis_url = url;
	assert_int_equal(gw_rl_new(&cfg, &rl, NULL, 0), GW_RL_OK);
	assert_int_equal(gw_rl_wait_ready(rl, 3000), GW_RL_OK);
	assert_int_equal(admit(rl, &k, 0).outcome, GW_RL_ALLOWED);
	gw_rl_free(rl);
	redisContext *c = sync_conn();
	redisReply *r = redisCommand(c, "SELECT 2");
	freeReplyObject(r);
	r = redisCommand(c, "EXISTS t12:{t21}:k:RRRRRRRRRRRR:g");
	assert_int_equal(r->integer, 1);
	freeReplyObject(r);

	/* a password (percent-encoded in the URL), db 3; a wrong one never becomes ready */
	r = redisCommand(c, "CONFIG SET requirepass %s", "p@ss word");
	freeReplyObject(r);
	snprintf(url, sizeof url, "redis://:p%%40ss%%20word@127.0.0.1:%d/3", redis_port);
	assert_int_equal(gw_rl_new(&cfg, &rl, NULL, 0), GW_RL_OK);
	assert_int_equal(gw_rl_wait_ready(rl, 3000), GW_RL_OK);
	struct gw_rl_decision d = admit(rl, &k, 0);
	assert_int_equal(d.outcome, GW_RL_ALLOWED);
	assert_false(d.local);
	gw_rl_free(rl);
	snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d/3", redis_port);
	assert_int_equal(gw_rl_new(&cfg, &rl, NULL, 0), GW_RL_OK);
	assert_int_equal(gw_rl_wait_ready(rl, 300), GW_RL_ETIMEOUT);
	assert_true(gw_rl_degraded(rl));
	d = admit(rl, &k, 0);
	assert_true(d.local);
	struct gw_rl_stats st;
	gw_rl_stats(rl, &st);
	assert_true(st.redis_errors >= 1);
	/* the config's password overrides the URL's */
	gw_rl_free(rl);
	cfg.redis_password = "p@ss word";
	assert_int_equal(gw_rl_new(&cfg, &rl, NULL, 0), GW_RL_OK);
	assert_int_equal(gw_rl_wait_ready(rl, 3000), GW_RL_OK);
	gw_rl_free(rl);
	r = redisCommand(c, "CONFIG SET requirepass %s", "");
	freeReplyObject(r);
	r = redisCommand(c, "SELECT 3");
	freeReplyObject(r);
	r = redisCommand(c, "GET t12:{t21}:k:RRRRRRRRRRRR:g");
	assert_int_equal(r->type, REDIS_REPLY_STRING);
	freeReplyObject(r);
	redisFree(c);
}

static void test_gw_ratelimit__rpm_refusals_are_cached_until_their_retry_after(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t14:", 1000, 0);
	struct ks_key_info k = key_info(23, "TTTTTTTTTTTT");
	k.limits.rpm = 2;
	k.tenant_limits.rpm = 1000;
	struct gw_rl_stats s0, s1;
	assert_int_equal(admit(rl, &k, 0).outcome, GW_RL_ALLOWED);
	assert_int_equal(admit(rl, &k, 0).outcome, GW_RL_ALLOWED);
	struct gw_rl_decision a = admit(rl, &k, 0); /* Redis refuses: 30 s to wait */
	assert_int_equal(a.outcome, GW_RL_LIMITED);
	assert_int_equal(a.refused, GW_RL_KEY_RPM);
	gw_rl_stats(rl, &s0);
	struct gw_rl_decision b = admit(rl, &k, 0);
	gw_rl_stats(rl, &s1);
	assert_int_equal(b.outcome, GW_RL_LIMITED);
	assert_int_equal(b.refused, GW_RL_KEY_RPM);
	assert_true(b.retry_after_s >= 29 && b.retry_after_s <= 30);
	assert_int_equal(b.dim[GW_RL_TENANT_RPM].remaining, a.dim[GW_RL_TENANT_RPM].remaining);
	assert_int_equal(s1.redis_roundtrips, s0.redis_roundtrips);
	assert_int_equal(s1.cached_refusals, s0.cached_refusals + 1);
	assert_int_equal(s1.limited[GW_RL_KEY_RPM], s0.limited[GW_RL_KEY_RPM] + 1);
	/* another key of the tenant is not blocked by this key's block */
	struct ks_key_info k2 = key_info(23, "UUUUUUUUUUUU");
	k2.limits.rpm = 2;
	k2.tenant_limits.rpm = 1000;
	assert_int_equal(admit(rl, &k2, 0).outcome, GW_RL_ALLOWED);
	/* a raised limit is not held back by a block learnt under the old one */
	k.limits.rpm = 10;
	struct gw_rl_decision c = admit(rl, &k, 0);
	assert_int_equal(c.outcome, GW_RL_ALLOWED);
	assert_false(c.local);
	/* a tenant-wide refusal blocks every key of the tenant */
	struct ks_key_info t1 = key_info(24, "VVVVVVVVVVVV"), t2 = key_info(24, "WWWWWWWWWWWW");
	t1.tenant_limits.rpm = t2.tenant_limits.rpm = 1;
	assert_int_equal(admit(rl, &t1, 0).outcome, GW_RL_ALLOWED);
	assert_int_equal(admit(rl, &t2, 0).refused, GW_RL_TENANT_RPM); /* Redis */
	gw_rl_stats(rl, &s0);
	struct gw_rl_decision d = admit(rl, &t1, 0); /* cache */
	gw_rl_stats(rl, &s1);
	assert_int_equal(d.refused, GW_RL_TENANT_RPM);
	assert_true(d.retry_after_s >= 59 && d.retry_after_s <= 60);
	assert_int_equal(s1.redis_roundtrips, s0.redis_roundtrips);
	/* a short block ends on time: rpm 600 waits 100 ms */
	struct ks_key_info f = key_info(25, "XXXXXXXXXXXX");
	f.limits.rpm = 600;
	int n = 0;
	while (admit(rl, &f, 0).outcome == GW_RL_ALLOWED)
		n++;
	assert_true(n >= 600);
	sleep_ms(150);
	assert_int_equal(admit(rl, &f, 0).outcome, GW_RL_ALLOWED);
	gw_rl_free(rl);
}

/* The Lua script and the in-process limiter must decide alike, step by step. */
static void test_gw_ratelimit__redis_and_local_decide_alike(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t13:", 1000, 0), *lo;
	assert_int_equal(gw_rl_new(NULL, &lo, NULL, 0), GW_RL_OK);
	struct ks_key_info k = key_info(22, "SSSSSSSSSSSS");
	/* small token limits: one token refills every 400-600 ms, so the few microseconds between
	 * the two limiters' clocks never move a remaining count */
	k.limits = (struct ks_limits){7, 100, 3, 0};
	k.tenant_limits = (struct ks_limits){9, 150, 4, 250};
	static const int64_t tokens[] = {30, 30, 50, 20, 0, 200, 10, 70, 5, 40, 1, 100};
	struct gw_rl_ticket held[2][16];
	int nheld = 0;
	for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
		struct gw_rl_decision a = admit(rl, &k, tokens[i]), b = admit(lo, &k, tokens[i]);
		assert_false(a.local);
		assert_true(b.local);
		if (a.outcome != b.outcome || a.refused != b.refused ||
		    a.retry_after_s != b.retry_after_s)
			fail_msg("step %zu: redis %s/%d/%lld, local %s/%d/%lld", i,
			         gw_rl_outcome_name(a.outcome), a.refused,
			         (long long)a.retry_after_s, gw_rl_outcome_name(b.outcome),
			         b.refused, (long long)b.retry_after_s);
		for (int d = 0; d < GW_RL_NDIM; d++) {
			assert_int_equal(a.dim[d].limit, b.dim[d].limit);
			if (a.dim[d].remaining != b.dim[d].remaining)
				fail_msg("step %zu %s: remaining redis %lld local %lld", i,
				         gw_rl_dim_name(d), (long long)a.dim[d].remaining,
				         (long long)b.dim[d].remaining);
			assert_true(llabs(a.dim[d].reset_ms - b.dim[d].reset_ms) <= 1000);
		}
		if (a.outcome == GW_RL_ALLOWED) {
			held[0][nheld] = a.ticket;
			held[1][nheld] = b.ticket;
			nheld++;
		}
		if (nheld == 3 || i % 4 == 3) { /* settle and release the oldest */
			gw_rl_finish(rl, &held[0][0], tokens[i] / 2);
			gw_rl_finish(lo, &held[1][0], tokens[i] / 2);
			memmove(held[0], held[0] + 1, sizeof held[0][0] * (size_t)(nheld - 1));
			memmove(held[1], held[1] + 1, sizeof held[1][0] * (size_t)(nheld - 1));
			nheld--;
		}
	}
	gw_rl_free(rl);
	gw_rl_free(lo);
}

/* Async API: many admissions in flight from one thread, callbacks on the I/O thread. */
struct async_count {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, allowed, on_caller;
	pthread_t caller;
};

static void async_cb(void *ctx, const struct gw_rl_decision *d)
{
	struct async_count *a = ctx;
	pthread_mutex_lock(&a->mu);
	a->done++;
	a->allowed += d->outcome == GW_RL_ALLOWED;
	a->on_caller += pthread_equal(pthread_self(), a->caller) != 0;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

static void test_gw_ratelimit__async_admissions_are_pipelined(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t11:", 1000, 0);
	struct ks_key_info k = key_info(20, "QQQQQQQQQQQQ");
	k.limits.rpm = 500;
	struct async_count a = {
	        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, pthread_self()};
	struct gw_rl_request req = {&k, 0};
	int inline_n = 0;
	for (int i = 0; i < 1000; i++)
		inline_n += gw_rl_admit(rl, &req, async_cb, &a);
	pthread_mutex_lock(&a.mu);
	while (a.done < 1000)
		pthread_cond_wait(&a.cv, &a.mu);
	pthread_mutex_unlock(&a.mu);
	assert_int_equal(inline_n, 0);
	assert_int_equal(a.on_caller, 0);
	assert_true(a.allowed >= 500 && a.allowed <= 502);
	gw_rl_free(rl);
}

/* Decisions collected from the I/O thread, in callback order. */
struct collected {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n;
	struct gw_rl_decision d[64];
	int tag[64];
};

struct collect_ctx {
	struct collected *c;
	int tag;
};

static void collect_cb(void *ctx, const struct gw_rl_decision *d)
{
	struct collect_ctx *x = ctx;
	struct collected *c = x->c;
	pthread_mutex_lock(&c->mu);
	c->d[c->n] = *d;
	c->tag[c->n] = x->tag;
	c->n++;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static void collect_wait(struct collected *c, int n)
{
	pthread_mutex_lock(&c->mu);
	while (c->n < n)
		pthread_cond_wait(&c->cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

/* One script run decides many requests: each gets its own exact answer, as if alone. */
static void test_gw_ratelimit__a_batch_mixing_admitted_and_refused_answers_each(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t15:", 3000, 0);
	struct ks_key_info a = key_info(26, "AAAAAAAAAAAB"), b = key_info(26, "BBBBBBBBBBBA");
	a.limits.rpm = 5;
	a.limits.tpm = 1000;
	a.limits.concurrency = 4;
	b.limits.rpm = 100;
	b.tenant_limits.monthly_tokens = 10000;
	static struct collected c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {{0}},
	                             {0}};
	struct collect_ctx ctx[16];
	struct gw_rl_stats s0, s1;
	/* the first admission goes alone; Redis is paused before its reply, so the next 12 queue
	 * up behind it and go together as one batch when it answers */
	struct gw_rl_request first = {&b, 1};
	ctx[0] = (struct collect_ctx){&c, 0};
	pause_redis();
	gw_rl_stats(rl, &s0);
	assert_int_equal(gw_rl_admit(rl, &first, collect_cb, &ctx[0]), 0);
	sleep_ms(30);
	for (int i = 1; i <= 12; i++) {
		/* tags 1..9 on key a (tag 7 asks for 2000 tokens: too large), 10..12 on key b */
		struct gw_rl_request r = {i <= 9 ? &a : &b, i == 7 ? 2000 : 10};
		ctx[i] = (struct collect_ctx){&c, i};
		assert_int_equal(gw_rl_admit(rl, &r, collect_cb, &ctx[i]), 0);
	}
	sleep_ms(30);
	kill(redis_pid, SIGCONT);
	collect_wait(&c, 13);
	gw_rl_stats(rl, &s1);
	assert_int_equal(s1.redis_admissions - s0.redis_admissions, 13);
	assert_int_equal(s1.redis_roundtrips - s0.redis_roundtrips, 2); /* 1, then 12 at once */
	assert_int_equal(s1.local_decisions - s0.local_decisions, 0);
	int admitted_a = 0, slots_a = 0;
	int64_t seen_rem = 0;
	for (int i = 0; i < 13; i++) {
		const struct gw_rl_decision *d = &c.d[i];
		int tag = c.tag[i];
		assert_int_equal(tag, i); /* answered in the order asked */
		assert_false(d->local);
		if (tag == 0 || tag >= 10) { /* key b: all admitted, its monthly quota counted */
			assert_int_equal(d->outcome, GW_RL_ALLOWED);
			assert_int_equal(d->dim[GW_RL_TENANT_MONTHLY].remaining,
			                 10000 - 1 - 10 * (tag == 0 ? 0 : tag - 9));
			continue;
		}
		if (tag == 7) { /* can never fit: refused alone, takes nothing */
			assert_int_equal(d->outcome, GW_RL_TOO_LARGE);
			assert_int_equal(d->refused, GW_RL_KEY_TPM);
			continue;
		}
		if (d->outcome == GW_RL_ALLOWED) {
			/* the k-th admitted request of key a sees rpm 5-k, and a fourth slot is
			 * refused on concurrency before rpm runs out */
			admitted_a++;
			slots_a++;
			assert_int_equal(d->dim[GW_RL_KEY_RPM].remaining, 5 - admitted_a);
			assert_int_equal(d->dim[GW_RL_KEY_CONC].remaining, 4 - slots_a);
			assert_int_equal(d->dim[GW_RL_KEY_TPM].remaining, 1000 - 10 * admitted_a);
			seen_rem |= (int64_t)1 << d->dim[GW_RL_KEY_RPM].remaining;
		} else {
			assert_int_equal(d->outcome, GW_RL_LIMITED);
			assert_true(d->retry_after_s >= 1);
			/* a refusal reports the state as it stands: nothing taken */
			assert_int_equal(d->dim[GW_RL_KEY_TPM].remaining, 1000 - 10 * admitted_a);
			if (admitted_a == 4)
				assert_int_equal(d->refused, GW_RL_KEY_CONC);
		}
	}
	assert_int_equal(admitted_a, 4); /* concurrency 4 binds before rpm 5 */
	assert_int_equal(seen_rem, 0x1e);
	/* the same state as Redis keeps it: a fifth request of key a is still refused on slots */
	assert_int_equal(admit(rl, &a, 10).refused, GW_RL_KEY_CONC);
	gw_rl_free(rl);
}

/* A settlement with no admission to ride with is held only briefly, then sent alone. */
static void test_gw_ratelimit__a_lone_release_reaches_redis_promptly(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t17:", 1000, 0);
	struct ks_key_info k = key_info(28, "EEEEEEEEEEEF");
	k.limits.concurrency = 1;
	k.limits.tpm = 1000;
	struct gw_rl_decision d = admit(rl, &k, 500);
	assert_int_equal(d.outcome, GW_RL_ALLOWED);
	char key[64];
	snprintf(key, sizeof key, "t17:{t28}:k:%s:conc", k.key_id);
	assert_int_equal(redis_int("ZCARD %s", key), 1);
	int64_t t0 = now_ms();
	gw_rl_finish(rl, &d.ticket, 100);
	while (redis_int("ZCARD %s", key) != 0 && now_ms() - t0 < 1000)
		sleep_ms(1);
	int64_t el = now_ms() - t0;
	assert_true(el < 200);
	/* the refund went with it: 900 of 1000 tokens left */
	d = admit(rl, &k, 0);
	assert_int_equal(d.outcome, GW_RL_ALLOWED);
	assert_true(d.dim[GW_RL_KEY_TPM].remaining >= 899);
	gw_rl_free(rl);
}

/* A worker's burst between gw_rl_defer_begin and gw_rl_defer_end goes out as one script run
 * when the bracket closes (not one wake-up and small batch per admission), and every request in
 * it still gets its own exact answer. */
static void test_gw_ratelimit__a_deferred_burst_goes_out_as_one_run(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t19:", 1000, 0);
	struct ks_key_info k = key_info(31, "DDDDDDDDDDDD");
	k.limits.rpm = 15;
	struct collected c = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	struct collect_ctx x[20];
	struct gw_rl_request req = {&k, 0};
	struct gw_rl_stats s0, s1;
	/* an admission just answered: the I/O thread's 100 ms idle timer restarts now, so it cannot
	 * fire (and take the queue on its own) inside the burst below */
	struct ks_key_info k2 = key_info(32, "DDDDDDDDDDDE");
	k2.limits.rpm = 100;
	assert_int_equal(admit(rl, &k2, 0).outcome, GW_RL_ALLOWED);
	gw_rl_stats(rl, &s0);
	gw_rl_defer_begin();
	for (int i = 0; i < 20; i++) {
		x[i] = (struct collect_ctx){&c, i};
		assert_int_equal(gw_rl_admit(rl, &req, collect_cb, &x[i]), 0);
	}
	gw_rl_defer_end();
	collect_wait(&c, 20);
	gw_rl_stats(rl, &s1);
	/* one run for the twenty (without the bracket: one for the first, one for the rest) */
	assert_int_equal(s1.redis_roundtrips - s0.redis_roundtrips, 1);
	int allowed = 0;
	for (int i = 0; i < 20; i++)
		allowed += c.d[i].outcome == GW_RL_ALLOWED;
	assert_int_equal(allowed, 15);
	gw_rl_free(rl);
}

/* Redis dies while a batch is out: each of its requests is decided by the local limiter at once
 * (not after timeout_ms), exactly. */
static void test_gw_ratelimit__a_batch_cut_by_redis_dying_fails_over_locally(void **state)
{
	(void)state;
	struct gw_rl *rl = redis_limiter("t16:", 5000, 0);
	struct ks_key_info k = key_info(27, "CCCCCCCCCCCD");
	k.limits.rpm = 3; /* the local limiter starts empty: 3 of the batch are admitted */
	static struct collected c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {{0}},
	                             {0}};
	struct collect_ctx ctx[10];
	struct gw_rl_stats s0, s1;
	gw_rl_stats(rl, &s0);
	pause_redis();
	for (int i = 0; i < 10; i++) {
		struct gw_rl_request r = {&k, 0};
		ctx[i] = (struct collect_ctx){&c, i};
		assert_int_equal(gw_rl_admit(rl, &r, collect_cb, &ctx[i]), 0);
	}
	sleep_ms(30);
	int64_t t0 = now_ms();
	kill(redis_pid, SIGKILL); /* still stopped: never runs again (stop_redis would resume it) */
	waitpid(redis_pid, NULL, 0);
	redis_pid = -1;
	collect_wait(&c, 10);
	int64_t el = now_ms() - t0;
	gw_rl_stats(rl, &s1);
	/* the callbacks of the cut batch run as hiredis drops the context, just before the
	 * limiter marks itself degraded */
	int degraded = 0;
	for (int i = 0; i < 500 && !(degraded = gw_rl_degraded(rl)); i++)
		sleep_ms(2);
	assert_int_equal(spawn_redis(), 0); /* first: a failure below must not leave it dead */
	assert_true(el < 2000); /* the lost connection, not the 5 s timeout */
	assert_int_equal(s1.timeouts - s0.timeouts, 0);
	assert_true(degraded);
	int allowed = 0;
	for (int i = 0; i < 10; i++) {
		if (!c.d[i].local)
			fail_msg("decision %d (request %d) by redis: %s", i, c.tag[i],
			         gw_rl_outcome_name(c.d[i].outcome));
		allowed += c.d[i].outcome == GW_RL_ALLOWED;
		if (c.d[i].outcome != GW_RL_ALLOWED)
			assert_int_equal(c.d[i].refused, GW_RL_KEY_RPM);
	}
	assert_int_equal(allowed, 3);
	assert_int_equal(gw_rl_wait_ready(rl, 3000), GW_RL_OK);
	struct ks_key_info k2 = key_info(27, "DDDDDDDDDDDE");
	k2.limits.rpm = 3;
	assert_false(admit(rl, &k2, 0).local);
	gw_rl_free(rl);
}

int main(void)
{
	const struct CMUnitTest local_tests[] = {
	        cmocka_unit_test(test_gw_ratelimit__local_rpm_is_exact_and_refusals_say_why),
	        cmocka_unit_test(test_gw_ratelimit__nothing_limited_is_admitted_inline),
	        cmocka_unit_test(test_gw_ratelimit__local_tokens_reserve_then_settle),
	        cmocka_unit_test(test_gw_ratelimit__local_concurrency_and_monthly_quota),
	        cmocka_unit_test(test_gw_ratelimit__bad_config_is_refused_with_a_message),
	};
	const struct CMUnitTest redis_tests[] = {
	        cmocka_unit_test(test_gw_ratelimit__redis_exact_limit_under_concurrency),
	        cmocka_unit_test(test_gw_ratelimit__two_limiters_share_one_limit),
	        cmocka_unit_test(test_gw_ratelimit__redis_tokens_reserve_then_settle),
	        cmocka_unit_test(test_gw_ratelimit__redis_monthly_quota),
	        cmocka_unit_test(test_gw_ratelimit__redis_slots_release_renew_and_expire),
	        cmocka_unit_test(test_gw_ratelimit__redis_keys_are_namespaced_and_expire),
	        cmocka_unit_test(test_gw_ratelimit__noscript_after_a_script_flush),
	        cmocka_unit_test(
	                test_gw_ratelimit__rpm_refusals_are_cached_until_their_retry_after),
	        cmocka_unit_test(test_gw_ratelimit__redis_and_local_decide_alike),
	        cmocka_unit_test(test_gw_ratelimit__async_admissions_are_pipelined),
	        cmocka_unit_test(
	                test_gw_ratelimit__a_batch_mixing_admitted_and_refused_answers_each),
	        cmocka_unit_test(test_gw_ratelimit__a_lone_release_reaches_redis_promptly),
	        cmocka_unit_test(test_gw_ratelimit__a_batch_cut_by_redis_dying_fails_over_locally),
	        cmocka_unit_test(test_gw_ratelimit__password_db_and_unix_socket_urls),
	        cmocka_unit_test(test_gw_ratelimit__redis_stalled_falls_back_within_the_timeout),
	        cmocka_unit_test(test_gw_ratelimit__redis_killed_then_restarted),
	        cmocka_unit_test(test_gw_ratelimit__a_deferred_burst_goes_out_as_one_run),
	        cmocka_unit_test(test_gw_ratelimit__fail_closed_refuses_while_redis_is_down),
	};
	int rc = cmocka_run_group_tests_name("local", local_tests, NULL, NULL);
	rc |= cmocka_run_group_tests_name("redis", redis_tests, redis_setup, redis_teardown);
	return rc;
}
