/*
 * morgate-provider through the consumer link, on loopback, all on this machine (the figures of
 * issue 5's performance section):
 *
 *   1. added time to first token: rc_link prompt (request written -> first verified, decrypted
 *      chunk) through the node, against the time to first byte of the same streamed request
 *      sent straight to the backend (mock_openai "mock-instant", keep-alive), medians of 50;
 *   2. chunks per second through one node with N concurrent streams (default 200,
 *      $PV_BENCH_STREAMS), one session each, every stream looping prompts against the
 *      Anthropic mock's "claude-flood" (200 deltas per answer, no pause) for 10 s.
 * The chain part (anvil devnet, provider, models, bids, N sessions opened on chain) is set up by
 * an embedded bash script using tests/support/chain.sh, which then runs this program again in
 * "run" mode. The load generator shares the 2 cores with the node, anvil and the mocks: the
 * consumer's verify+decrypt costs about what the node's encrypt+sign does. Figures only.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include <router-core/rc_hex.h>
#include <router-core/rc_link.h>

static const char setup[] =
        "set -u\n"
        "SELF=$1; N=${PV_BENCH_STREAMS:-200}\n"
        "export MORGATE_ROOT=$PWD MORGATE_BUILD=${MORGATE_BUILD:-build/release}\n"
        "source tests/support/lib.sh; source tests/support/chain.sh\n"
        "free_port() { node -e 'const s=require(\"net\").createServer();s.listen(0,\"127.0.0.1\","
        "()=>{console.log(s.address().port);s.close()})'; }\n"
        "L=$T_BUILD/tests/pv_link; OPORT=$(free_port); APORT=$(free_port); PPORT=$(free_port);"
        " MPORT=$(free_port); EP=127.0.0.1:$PPORT\n"
        "t_bg openai \"$T_BUILD/tests/mock_openai\" \"$OPORT\"\n"
        "t_bg anthropic \"$T_BUILD/tests/pv_mock_anthropic\" \"$APORT\"\n"
        "chain_start >/dev/null || exit 1\n"
        "chain_seed_provider \"$EP\" --model pv-bench-instant >/dev/null || exit 1\n"
        "M1=$SEED_MODEL; B1=$SEED_BID\n"
        "chain_seed_provider \"$EP\" --model pv-bench-flood >/dev/null || exit 1\n"
        "M2=$SEED_MODEL; B2=$SEED_BID\n"
        "printf "
        "'{\"models\":[{\"modelId\":\"%s\",\"modelName\":\"mock-instant\",\"apiType\":\"openai\","
        "\"apiUrl\":\"http://127.0.0.1:%s/v1/chat/completions\"},{\"modelId\":\"%s\",\"modelName\":"
        "\"claude-flood\",\"apiType\":\"claudeai\",\"apiUrl\":\"http://127.0.0.1:%s/v1/messages\","
        "\"apiKey\":\"test-anthropic-key\"}]}' \"$M1\" \"$OPORT\" \"$M2\" \"$APORT\" "
        ">\"$T_DIR/models.json\"\n"
        "echo pw >\"$T_DIR/pass\"\n"
        "printf '%s\\n' \"$CHAIN_KEY1\" | MORGATE_WALLET_PASSPHRASE=pw \"$T_BUILD/bin/morgatectl\" "
        "wallet"
        " import --wallet \"$T_DIR/wallet.key\" --weak-kdf >/dev/null || exit 1\n"
        "printf "
        "'{\"listen\":\"%s\",\"admin_listen\":\"127.0.0.1:%s\",\"models_config\":\"models.json\","
        "\"wallet\":\"wallet.key\",\"passphrase_file\":\"pass\",\"rpc\":\"%s\",\"diamond\":\"%s\","
        "\"mor\":\"%s\",\"db\":\"provider.db\",\"log_level\":\"warn\",\"max_connections\":2000}' "
        "\"$EP\""
        " \"$MPORT\" \"$CHAIN_RPC\" \"$DIAMOND\" \"$MOR\" >\"$T_DIR/provider.json\"\n"
        "t_bg provider \"$T_BUILD/bin/morgate-provider\" --config \"$T_DIR/provider.json\"\n"
        "for i in $(seq 1 100); do \"$L\" ping \"$EP\" >/dev/null 2>&1 && break; sleep 0.05; done\n"
        "PPUB=$(\"$L\" request \"$EP\" \"$CHAIN_KEY2\" \"$B1\" | sed -E "
        "'s/.*provider_pub=(0x[0-9a-f]+).*/\\1/')\n"
        "STAKE=$(chain_stake_for 600 \"$SEED_PRICE\")\n"
        "chain_open_session \"$CHAIN_KEY2\" \"$CHAIN_KEY1\" \"$B1\" \"$STAKE\" >\"$T_DIR/sid1\" || "
        "exit 1\n"
        "echo \"opening $N sessions on chain...\"\n"
        ": >\"$T_DIR/sids\"\n"
        "for i in $(seq 1 \"$N\"); do chain_open_session \"$CHAIN_KEY2\" \"$CHAIN_KEY1\" \"$B2\" "
        "\"$STAKE\""
        " >>\"$T_DIR/sids\" || break; done\n"
        "\"$SELF\" run \"$EP\" \"$CHAIN_KEY2\" \"$PPUB\" \"$(cat \"$T_DIR/sid1\")\" "
        "\"$T_DIR/sids\" \"$OPORT\"\n";

static const char REQ[] = "{\"model\":\"x\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                          "\"content\":\"hi\"}]}";

static const char *ep, *ukey, *ppub;
static double t_end;
static atomic_ulong n_chunks, n_prompts, n_errors;

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct first {
	double t0, t1;
};

static int on_chunk(void *ud, enum rc_link_chunk k, const uint8_t *d, size_t n)
{
	struct first *f = ud;
	if (f && f->t1 == 0)
		f->t1 = now_s();
	return 0;
}

static struct rc_link *link_new(const char *sid_hex, uint8_t sid[32])
{
	struct rc_secp_privkey k;
	uint8_t pub[65];
	rc_secp_privkey_from_hex(&k, ukey, strlen(ukey), NULL);
	struct rc_link *l = rc_link_new(ep, &k, NULL);
	rc_secp_privkey_release(&k);
	if (!l || rc_hex_decode_exact(ppub, strlen(ppub), pub, 65, NULL) ||
	    rc_hex_decode_exact(sid_hex, strlen(sid_hex), sid, 32, NULL) ||
	    rc_link_set_provider_key(l, pub)) {
		fprintf(stderr, "bench_pv_node: bad link arguments\n");
		exit(1);
	}
	return l;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static size_t discard(char *p, size_t s, size_t n, void *u)
{
	return s * n;
}

static void *load(void *arg)
{
	uint8_t sid[32];
	struct rc_link *l = link_new(arg, sid);
	while (now_s() < t_end) {
		struct rc_link_stream out;
		struct rc_link_err e;
		if (rc_link_prompt(l, RC_STR_LIT(""), sid, RC_STR_LIT(REQ), 0, on_chunk, NULL, &out,
		                   &e)) {
			if (atomic_fetch_add(&n_errors, 1) < 3)
				fprintf(stderr, "stream error: %s %s\n",
				        rc_link_reason_name(e.reason), e.text);
		} else {
			atomic_fetch_add(&n_prompts, 1);
			atomic_fetch_add(&n_chunks, out.chunks);
		}
	}
	rc_link_free(l);
	return NULL;
}

static int run(char **argv)
{
	enum { ROUNDS = 50 };
	double node[ROUNDS], direct[ROUNDS];
	uint8_t sid[32];
	char url[128];
	ep = argv[2];
	ukey = argv[3];
	ppub = argv[4];
	snprintf(url, sizeof url, "http://127.0.0.1:%s/v1/chat/completions", argv[7]);

	/* 1. time to first token, through the node and straight to the backend */
	struct rc_link *l = link_new(argv[5], sid);
	CURL *h = curl_easy_init();
	struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS,
	                 "{\"model\":\"mock-instant\",\"stream\":true,\"messages\":[{\"role\":"
	                 "\"user\",\"content\":\"hi\"}]}");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	for (int i = -5; i < ROUNDS; i++) {
		struct first f = {now_s(), 0};
		struct rc_link_err e;
		if (rc_link_prompt(l, RC_STR_LIT(""), sid, RC_STR_LIT(REQ), 0, on_chunk, &f, NULL,
		                   &e)) {
			fprintf(stderr, "prompt failed: %s\n", e.text);
			return 1;
		}
		curl_off_t tt = 0;
		curl_easy_perform(h);
		curl_easy_getinfo(h, CURLINFO_STARTTRANSFER_TIME_T, &tt);
		if (i >= 0) {
			node[i] = (f.t1 - f.t0) * 1e3;
			direct[i] = (double)tt / 1e3;
		}
	}
	curl_easy_cleanup(h);
	curl_slist_free_all(hd);
	rc_link_free(l);
	qsort(node, ROUNDS, sizeof *node, cmp_d);
	qsort(direct, ROUNDS, sizeof *direct, cmp_d);
	printf("time to first token, median of %d (p90):\n", ROUNDS);
	printf("  through morgate-provider (dial + request + chain read + backend + seal + verify)"
	       "  %.2f ms (%.2f)\n",
	       node[ROUNDS / 2], node[ROUNDS * 9 / 10]);
	printf("  backend directly (keep-alive, first byte)                                      "
	       "  %.2f ms (%.2f)\n",
	       direct[ROUNDS / 2], direct[ROUNDS * 9 / 10]);
	printf("  added by the node                                                              "
	       "  %.2f ms (target <= 2 ms)\n",
	       node[ROUNDS / 2] - direct[ROUNDS / 2]);

	/* 2. throughput with N concurrent streams */
	FILE *f = fopen(argv[6], "r");
	char line[128], *sids[4096];
	int n = 0;
	while (f && n < 4096 && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0])
			sids[n++] = strdup(line);
	}
	if (f)
		fclose(f);
	pthread_t *t = calloc((size_t)n, sizeof *t);
	double t0 = now_s();
	t_end = t0 + 10;
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, load, sids[i]);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	double dt = now_s() - t0;
	printf("%d concurrent streams for %.1f s: %lu answers, %lu chunks, %lu errors -> %.0f "
	       "chunks/s"
	       " through one node\n",
	       n, dt, atomic_load(&n_prompts), atomic_load(&n_chunks), atomic_load(&n_errors),
	       (double)atomic_load(&n_chunks) / dt);
	for (int i = 0; i < n; i++)
		free(sids[i]);
	free(t);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 8 && !strcmp(argv[1], "run"))
		return run(argv);
	char self[4096];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
	if (sl <= 0)
		return 1;
	self[sl] = '\0';
	execlp("bash", "bash", "-c", setup, "bench_pv_node", self, (char *)NULL);
	perror("bench_pv_node: bash");
	return 1;
}
