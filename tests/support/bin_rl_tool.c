/*
 * rl_tool: drive the gateway rate limiter from the integration tests (tests/integration/
 * test_ratelimit.sh), so several processes can share one Redis and one can be killed.
 *
 *   rl_tool freeport
 *       print a free TCP port on 127.0.0.1
 *   rl_tool admit URL|- PREFIX TENANT KEYID [rpm=N] [tpm=N] [conc=N] [tconc=N] [lease=MS]
 *                 [tokens=N] [count=N] [threads=N] [hold=1] [wait=MS]
 *       make count admissions per thread (default 1 x 1) for a key with those limits; print
 *       "allowed=A limited=L local=X roundtrips=R sent=S" (R: scripts sent, S: admissions
 *       they carried; concurrent admissions share scripts); with hold=1, print then keep the slots
 *       (never release) and sleep until killed. URL "-" means no Redis. wait: how long to wait
 *       for Redis to be ready first (default 3000).
 * Exit 0, or 2 on a usage error, 1 when Redis is not ready in time.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "gw_ratelimit.h"

struct worker {
	struct gw_rl *rl;
	const struct ks_key_info *k;
	long count, tokens;
	long allowed, limited, local;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (long i = 0; i < w->count; i++) {
		struct gw_rl_request req = {w->k, w->tokens};
		struct gw_rl_decision d;
		gw_rl_admit_wait(w->rl, &req, &d);
		w->allowed += d.outcome == GW_RL_ALLOWED;
		w->limited += d.outcome != GW_RL_ALLOWED;
		w->local += d.local;
	}
	return NULL;
}

static int freeport(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		return 1;
	close(fd);
	printf("%d\n", ntohs(a.sin_port));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "freeport") == 0)
		return freeport();
	if (argc < 6 || strcmp(argv[1], "admit") != 0) {
		fprintf(stderr,
		        "usage: rl_tool freeport | admit URL|- PREFIX TENANT KEYID [k=v]...\n");
		return 2;
	}
	struct ks_key_info k;
	memset(&k, 0, sizeof k);
	k.tenant_id = atoll(argv[4]);
	snprintf(k.key_id, sizeof k.key_id, "%s", argv[5]);
	long count = 1, threads = 1, tokens = 0, hold = 0, lease = 0, wait = 3000;
	for (int i = 6; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		if (!eq) {
			fprintf(stderr, "rl_tool: bad option '%s'\n", argv[i]);
			return 2;
		}
		long long v = atoll(eq + 1);
		size_t n = (size_t)(eq - argv[i]);
		if (n == 3 && !strncmp(argv[i], "rpm", n))
			k.limits.rpm = v;
		else if (n == 3 && !strncmp(argv[i], "tpm", n))
			k.limits.tpm = v;
		else if (n == 4 && !strncmp(argv[i], "conc", n))
			k.limits.concurrency = v;
		else if (n == 5 && !strncmp(argv[i], "tconc", n))
			k.tenant_limits.concurrency = v;
		else if (n == 5 && !strncmp(argv[i], "lease", n))
			lease = (long)v;
		else if (n == 6 && !strncmp(argv[i], "tokens", n))
			tokens = (long)v;
		else if (n == 5 && !strncmp(argv[i], "count", n))
			count = (long)v;
		else if (n == 7 && !strncmp(argv[i], "threads", n))
			threads = (long)v;
		else if (n == 4 && !strncmp(argv[i], "hold", n))
			hold = (long)v;
		else if (n == 4 && !strncmp(argv[i], "wait", n))
			wait = (long)v;
		else {
			fprintf(stderr, "rl_tool: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	if (threads < 1 || threads > 64) {
		fprintf(stderr, "rl_tool: threads must be 1..64\n");
		return 2;
	}
	struct gw_rl_config cfg = {.redis_url = strcmp(argv[2], "-") ? argv[2] : NULL,
	                           .prefix = argv[3],
	                           .timeout_ms = 1000,
	                           .lease_ms = (int)lease};
	struct gw_rl *rl;
	char err[256];
	int rc = gw_rl_new(&cfg, &rl, err, sizeof err);
	if (rc != GW_RL_OK) {
		fprintf(stderr, "rl_tool: %s\n", err);
		return 2;
	}
	if (gw_rl_wait_ready(rl, (int)wait) != GW_RL_OK) {
		fprintf(stderr, "rl_tool: redis not ready\n");
		gw_rl_free(rl);
		return 1;
	}
	pthread_t th[64];
	struct worker w[64];
	for (long i = 0; i < threads; i++) {
		w[i] = (struct worker){rl, &k, count, tokens, 0, 0, 0};
		pthread_create(&th[i], NULL, work, &w[i]);
	}
	long allowed = 0, limited = 0, local = 0;
	for (long i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		allowed += w[i].allowed;
		limited += w[i].limited;
		local += w[i].local;
	}
	struct gw_rl_stats st;
	gw_rl_stats(rl, &st);
	printf("allowed=%ld limited=%ld local=%ld roundtrips=%llu sent=%llu\n", allowed, limited,
	       local, (unsigned long long)st.redis_roundtrips,
	       (unsigned long long)st.redis_admissions);
	fflush(stdout);
	if (hold)
		for (;;)
			pause(); /* killed by the test, slots never released */
	gw_rl_free(rl);
	return 0;
}
