/*
 * Rate limiter benchmark: admissions per second and latency (p50/p99) through a real
 * redis-server on loopback with 1, 8 and 64 admissions in flight (the pipelining effect), the
 * blocking wrapper from 8 threads, and the in-process limiter alone; Redis round trips and
 * commands per admission by our counters and by Redis's INFO commandstats, and Redis's CPU time
 * per admission (INFO cpu: independent of what else loads the machine). Every admission
 * checks all dimensions (key rpm/tpm/concurrency, tenant rpm/tpm/concurrency, monthly quota) and
 * is followed by gw_rl_finish (settle + release, fire-and-forget). Prints figures; never fails on
 * time.
 *
 * usage: bench_gw_ratelimit [SECONDS_PER_RUN]   (default 1)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "gw_ratelimit.h"

#define NKEYS 64
#define MAXLAT 4000000

static struct ks_key_info keys[NKEYS];
static unsigned nkeys_used = NKEYS; /* admissions cycle over this many keys */
static double secs = 1.0;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void make_keys(void)
{
	for (unsigned i = 0; i < NKEYS; i++) {
		struct ks_key_info *k = &keys[i];
		memset(k, 0, sizeof *k);
		snprintf(k->key_id, sizeof k->key_id, "bench%07u", i % 10000000u);
		k->tenant_id = 1000 + i % 8;
		k->limits = (struct ks_limits){100000000, 10000000000LL, 100000, 0};
		k->tenant_limits =
		        (struct ks_limits){100000000, 10000000000LL, 1000000, 900000000000000LL};
	}
}

/* ---- latency samples ----------------------------------------------------------------------- */

static uint32_t *lat; /* ns / 100 */
static atomic_long nlat;

static void record(uint64_t ns)
{
	long i = atomic_fetch_add(&nlat, 1);
	if (i < MAXLAT)
		lat[i] = (uint32_t)(ns / 100 > UINT32_MAX ? UINT32_MAX : ns / 100);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void percentiles(double *p50, double *p99)
{
	long n = atomic_load(&nlat);
	if (n > MAXLAT)
		n = MAXLAT;
	if (n == 0) {
		*p50 = *p99 = 0;
		return;
	}
	qsort(lat, (size_t)n, sizeof *lat, cmp_u32);
	*p50 = lat[n / 2] / 10.0;
	*p99 = lat[(long)(n * 0.99)] / 10.0;
}

/* ---- async driver: `inflight` admissions kept in flight from the callbacks ----------------- */

struct drv;
struct slot {
	struct drv *d;
	uint64_t t0;
	int i, depth;
};
struct drv {
	struct gw_rl *rl;
	uint64_t stop_at;
	atomic_int active;
	atomic_long done, allowed;
};

static void issue(struct slot *s);

static void slot_cb(void *ctx, const struct gw_rl_decision *dec)
{
	struct slot *s = ctx;
	record(now_ns() - s->t0);
	atomic_fetch_add(&s->d->done, 1);
	if (dec->outcome == GW_RL_ALLOWED) {
		struct gw_rl_ticket t = dec->ticket;
		atomic_fetch_add(&s->d->allowed, 1);
		gw_rl_finish(s->d->rl, &t, 10);
	}
	if (now_ns() < s->d->stop_at && s->depth < 64)
		issue(s);
	else
		atomic_fetch_sub(&s->d->active, 1);
}

static void issue(struct slot *s)
{
	struct gw_rl_request req = {&keys[(unsigned)s->i++ % nkeys_used], 20};
	s->t0 = now_ns();
	s->depth++; /* an inline (local) decision recurses: bounded */
	gw_rl_admit(s->d->rl, &req, slot_cb, s);
	s->depth--;
}

static double run_async(struct gw_rl *rl, int inflight, long *done)
{
	struct drv d = {.rl = rl};
	struct slot *slots = calloc((size_t)inflight, sizeof *slots);
	atomic_store(&nlat, 0);
	uint64_t t0 = now_ns();
	d.stop_at = t0 + (uint64_t)(secs * 1e9);
	atomic_store(&d.active, inflight);
	for (int i = 0; i < inflight; i++) {
		slots[i] = (struct slot){&d, 0, i * 7, 0};
		issue(&slots[i]);
	}
	while (atomic_load(&d.active) > 0)
		usleep(1000);
	double el = (double)(now_ns() - t0) / 1e9;
	*done = atomic_load(&d.done);
	free(slots);
	return (double)*done / el;
}

/* ---- blocking wrapper from threads --------------------------------------------------------- */

struct tw {
	struct gw_rl *rl;
	uint64_t stop_at;
	long done;
	int seed;
};

static void *thread_main(void *arg)
{
	struct tw *w = arg;
	int i = w->seed;
	while (now_ns() < w->stop_at) {
		struct gw_rl_request req = {&keys[(unsigned)i++ % nkeys_used], 20};
		struct gw_rl_decision d;
		uint64_t t0 = now_ns();
		gw_rl_admit_wait(w->rl, &req, &d);
		record(now_ns() - t0);
		if (d.outcome == GW_RL_ALLOWED)
			gw_rl_finish(w->rl, &d.ticket, 10);
		w->done++;
	}
	return NULL;
}

static double run_threads(struct gw_rl *rl, int n, long *done)
{
	pthread_t th[64];
	struct tw w[64];
	atomic_store(&nlat, 0);
	uint64_t t0 = now_ns();
	for (int i = 0; i < n; i++) {
		w[i] = (struct tw){rl, t0 + (uint64_t)(secs * 1e9), 0, i * 13};
		pthread_create(&th[i], NULL, thread_main, &w[i]);
	}
	*done = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		*done += w[i].done;
	}
	return (double)*done / ((double)(now_ns() - t0) / 1e9);
}

/* ---- redis-server ---------------------------------------------------------------------------- */

static pid_t redis_pid = -1;
static int redis_port;

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		return -1;
	close(fd);
	return ntohs(a.sin_port);
}

static int start_redis(void)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		char port[16];
		redis_port = free_port();
		snprintf(port, sizeof port, "%d", redis_port);
		fflush(stdout); /* the child must not flush our buffered lines again */
		pid_t pid = fork();
		if (pid == 0) {
			if (!freopen("/dev/null", "w", stdout))
				_exit(127);
			execlp("redis-server", "redis-server", "--port", port, "--bind",
			       "127.0.0.1", "--save", "", "--appendonly", "no", (char *)NULL);
			_exit(127);
		}
		for (int i = 0; i < 200; i++) {
			struct timeval tv = {0, 200000};
			redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
			int ok = c && !c->err;
			redisFree(c);
			if (ok) {
				redis_pid = pid;
				return 0;
			}
			if (waitpid(pid, NULL, WNOHANG) == pid)
				break;
			usleep(20000);
		}
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return -1;
}

static double script_usec; /* INFO commandstats: microseconds spent running EVALSHA, total */

/* Redis's own count of EVALSHA calls, and its CPU seconds (user + sys) in *cpu. */
static long long evalsha_calls(double *cpu)
{
	struct timeval tv = {1, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
	long long v = -1;
	*cpu = 0;
	if (c && !c->err) {
		redisReply *r = redisCommand(c, "INFO commandstats");
		const char *p = r && r->str ? strstr(r->str, "cmdstat_evalsha:calls=") : NULL;
		v = p ? atoll(p + 22) : 0;
		const char *u = p ? strstr(p, "usec=") : NULL;
		script_usec = u ? atof(u + 5) : 0;
		freeReplyObject(r);
		r = redisCommand(c, "INFO cpu");
		if (r && r->str) {
			p = strstr(r->str, "used_cpu_sys:");
			*cpu += p ? atof(p + 13) : 0;
			p = strstr(r->str, "used_cpu_user:");
			*cpu += p ? atof(p + 14) : 0;
		}
		freeReplyObject(r);
	}
	redisFree(c);
	return v;
}

static void line(const char *what, double rate, long done, struct gw_rl *rl,
                 const struct gw_rl_stats *s0, long long ev0, double cpu0)
{
	double p50, p99;
	struct gw_rl_stats s1;
	percentiles(&p50, &p99);
	printf("%-36s %10.0f adm/s  p50 %8.1f us  p99 %8.1f us", what, rate, p50, p99);
	if (rl && gw_rl_has_redis(rl)) {
		usleep(100000); /* let the fire-and-forget settlements land before counting */
		gw_rl_stats(rl, &s1);
		double cpu1, us0 = script_usec;
		long long ev1 = evalsha_calls(&cpu1);
		printf("  rt/adm %.3f  cmds/adm %.2f  evalsha/adm %.3f (admit+finish)  redis "
		       "cpu/adm %.1f us (admit+finish; running the script %.1f us)"
		       "  local %llu",
		       (double)(s1.redis_roundtrips - s0->redis_roundtrips) / (double)done,
		       (double)(s1.redis_commands - s0->redis_commands) / (double)done,
		       (double)(ev1 - ev0) / (double)done, (cpu1 - cpu0) * 1e6 / (double)done,
		       (script_usec - us0) / (double)done,
		       (unsigned long long)(s1.local_decisions - s0->local_decisions));
	}
	printf("\n");
}

int main(int argc, char **argv)
{
	if (argc > 1)
		secs = atof(argv[1]);
	if (secs <= 0)
		secs = 1;
	lat = malloc(sizeof *lat * MAXLAT);
	if (!lat)
		return 1;
	make_keys();
	printf("rate limiter: every admission checks 7 dimensions, then finish (settle+release,"
	       " fire-and-forget); rt/adm counts admission round trips, cmds/adm every command; "
	       "%.1f s per run\n",
	       secs);

	struct gw_rl *local;
	struct gw_rl_config lcfg = {0};
	gw_rl_new(&lcfg, &local, NULL, 0);
	long done;
	double r;
	struct gw_rl_stats s0;
	r = run_threads(local, 1, &done);
	line("local limiter, 1 thread", r, done, NULL, NULL, 0, 0);
	r = run_threads(local, 2, &done);
	line("local limiter, 2 threads", r, done, NULL, NULL, 0, 0);
	gw_rl_free(local);

	if (start_redis() != 0) {
		printf("redis-server did not start: Redis figures skipped\n");
		free(lat);
		return 0;
	}
	char url[64];
	snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", redis_port);
	struct gw_rl_config cfg = {.redis_url = url, .timeout_ms = 1000};
	struct gw_rl *rl;
	char err[200];
	if (gw_rl_new(&cfg, &rl, err, sizeof err) != GW_RL_OK || gw_rl_wait_ready(rl, 3000)) {
		printf("limiter not ready: %s\n", err);
	} else {
		/* 64 keys of 8 tenants (every admission of a batch on other keys), then one key
		 * (what a gateway benchmark with one API key does) */
		int inflight[] = {1, 8, 64, 8, 64};
		unsigned nk[] = {NKEYS, NKEYS, NKEYS, 1, 1};
		for (size_t i = 0; i < sizeof inflight / sizeof inflight[0]; i++) {
			char what[64];
			nkeys_used = nk[i];
			gw_rl_stats(rl, &s0);
			double cpu0;
			long long ev0 = evalsha_calls(&cpu0);
			r = run_async(rl, inflight[i], &done);
			snprintf(what, sizeof what, "redis, %d in flight, %u key%s", inflight[i],
			         nk[i], nk[i] > 1 ? "s" : "");
			line(what, r, done, rl, &s0, ev0, cpu0);
		}
		nkeys_used = NKEYS;
		gw_rl_stats(rl, &s0);
		double cpu0;
		long long ev0 = evalsha_calls(&cpu0);
		r = run_threads(rl, 8, &done);
		line("redis, 8 threads blocking wrapper", r, done, rl, &s0, ev0, cpu0);
		struct gw_rl_stats s;
		gw_rl_stats(rl, &s);
		printf("totals: %llu round trips, %llu commands, %llu errors, %llu local "
		       "decisions\n",
		       (unsigned long long)s.redis_roundtrips, (unsigned long long)s.redis_commands,
		       (unsigned long long)s.redis_errors, (unsigned long long)s.local_decisions);
	}
	gw_rl_free(rl);
	kill(redis_pid, SIGTERM);
	waitpid(redis_pid, NULL, 0);
	free(lat);
	return 0;
}
