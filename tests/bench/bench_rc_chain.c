/*
 * Chain-client benchmark: a full provider discovery for one model with 50 bids (50 providers,
 * each with its record and provider-model stats) on the Morpheus test Diamond under anvil
 * (scripts/devnet), batched (rc_market_discover) against the same reads made one eth_call at a
 * time. Prints round trips and milliseconds; no pass/fail.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_addr.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_market.h>

#include "testutil.h"

#define NBIDS 50
#define ROUNDS 20

static double ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void die(const char *what, int rc, const struct rc_rpc_error *e)
{
	fprintf(stderr, "bench_rc_chain: %s: %s %s\n", what, rc_rpc_strerror(rc),
	        e ? e->message : "");
	exit(1);
}

static struct rc_u256 u(uint64_t v)
{
	struct rc_u256 x;
	rc_u256_from_u64(&x, v);
	return x;
}

int main(void)
{
	char dir[] = "/tmp/bench_rc_chain_XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	json_t *j = tu_devnet_start(dir);
	if (!j) {
		fprintf(stderr, "bench_rc_chain: scripts/devnet did not start\n");
		return 1;
	}
	char url[128];
	uint8_t diamond[20], mor[20];
	snprintf(url, sizeof url, "%s", json_string_value(json_object_get(j, "rpcUrl")));
	const char *ds = json_string_value(json_object_get(j, "diamond"));
	const char *ms = json_string_value(json_object_get(j, "mor"));
	const char *k0 = json_string_value(
	        json_object_get(json_array_get(json_object_get(j, "accounts"), 0), "privateKey"));
	rc_addr_parse(diamond, ds, strlen(ds), NULL);
	rc_addr_parse(mor, ms, strlen(ms), NULL);
	const char *urls[] = {url};
	struct rc_rpc_options ro = {urls, 1, 1000, 10000, 1000, 0};
	struct rc_rpc *rpc;
	struct rc_market *m;
	struct rc_rpc_error e;
	int rc;
	if (rc_rpc_new(&ro, &rpc) != RC_OK || rc_market_new(rpc, diamond, mor, &m) != RC_OK)
		return 1;
	struct rc_txm_options to = {.chain_id = 31337, .poll_interval_ms = 5};
	struct rc_secp_privkey key0;
	struct rc_txm *t0;
	rc_secp_privkey_from_hex(&key0, k0, strlen(k0), NULL);
	rc_txm_new(rpc, &key0, &to, &t0);
	rc_secp_privkey_release(&key0);
	json_decref(j);

	/* Set-up: a model owned by account 0, then 50 fresh providers, each with one bid. */
	double t_setup = ms_now();
	uint8_t a0[20], model[32];
	rc_txm_address(t0, a0);
	struct rc_market_model_reg reg = {
	        .owner = a0, .stake = u(100000000000000000ull), .name = "bench-model"};
	const char *tags[] = {"llm"};
	reg.tags = tags;
	reg.ntags = 1;
	rc_keccak256("bench-model", 11, reg.base_model_id);
	if ((rc = rc_market_model_register(m, t0, &reg, model, &e)) != RC_OK)
		die("model register", rc, &e);
	for (int i = 0; i < NBIDS; i++) {
		struct rc_secp_privkey k;
		struct rc_txm *t;
		uint8_t a[20];
		rc_secp_privkey_generate(&k);
		rc_txm_new(rpc, &k, &to, &t);
		rc_secp_privkey_release(&k);
		rc_txm_address(t, a);
		char as[RC_ADDR_STR_SIZE];
		rc_addr_format(a, as);
		json_t *r;
		if ((rc = rc_rpc_call(rpc, "anvil_setBalance",
		                      json_pack("[s,s]", as, "0x56bc75e2d63100000"), &r, &e)) !=
		    RC_OK)
			die("anvil_setBalance", rc, &e);
		json_decref(r);
		struct rc_abi_value args[2];
		struct rc_u256 amt = u(1000000000000000000ull);
		rc_abi_set_address(&args[0], a);
		rc_abi_set_u256(&args[1], &amt);
		struct rc_buf data = RC_BUF_INIT;
		rc_abi_encode_call(RC_STR_LIT("transfer(address,uint256)"), args, 2, &data, NULL);
		struct rc_txm_call call = {
		        .to = mor, .data = (const uint8_t *)data.ptr, .data_len = data.len};
		struct rc_rpc_receipt rec;
		if ((rc = rc_txm_send_wait(t0, &call, &rec, &e)) != RC_OK)
			die("MOR transfer", rc, &e);
		rc_rpc_receipt_release(&rec);
		rc_buf_release(&data);
		char ep[32];
		snprintf(ep, sizeof ep, "10.0.%d.%d:3333", i / 250, i % 250);
		struct rc_u256 stake = u(100000000000000000ull),
		               price = u(10000000000000ull + (uint64_t)i);
		if ((rc = rc_market_provider_register(m, t, a, &stake, ep, &e)) != RC_OK)
			die("provider register", rc, &e);
		if ((rc = rc_market_post_bid(m, t, a, model, &price, NULL, &e)) != RC_OK)
			die("post bid", rc, &e);
		rc_txm_free(t);
	}
	t_setup = ms_now() - t_setup;

	/* Batched discovery. */
	double times[ROUNDS];
	uint64_t trips = 0;
	size_t offers = 0;
	for (int r = 0; r < ROUNDS; r++) {
		struct rc_market_discovery d;
		double t = ms_now();
		if ((rc = rc_market_discover(m, model, 0, &d, &e)) != RC_OK)
			die("discover", rc, &e);
		times[r] = ms_now() - t;
		trips = d.round_trips;
		offers = d.noffers;
		rc_market_discovery_release(&d);
	}
	qsort(times, ROUNDS, sizeof *times, cmp_double);

	/* The same reads one call at a time. */
	double seq[ROUNDS / 4];
	uint64_t seq_trips = 0;
	for (int r = 0; r < ROUNDS / 4; r++) {
		uint64_t before = rc_rpc_round_trips(rpc);
		double t = ms_now();
		uint8_t(*ids)[32];
		size_t n;
		uint64_t total;
		struct rc_model md;
		struct rc_model_stats mst;
		struct rc_u256 v;
		rc_market_get_model(m, model, &md, &e);
		rc_market_get_model_stats(m, model, &mst, &e);
		rc_market_total_mor_supply(m, (uint64_t)time(NULL), &v, &e);
		rc_market_todays_budget(m, (uint64_t)time(NULL), &v, &e);
		rc_market_provider_min_stake(m, &v, &e);
		if ((rc = rc_market_model_active_bids(m, model, 0, 255, &ids, &n, &total, &e)) !=
		    RC_OK)
			die("active bids", rc, &e);
		for (size_t i = 0; i < n; i++) {
			struct rc_bid b;
			struct rc_provider pv;
			struct rc_provider_model_stats ps;
			rc_market_get_bid(m, ids[i], &b, &e);
			rc_market_get_provider(m, b.provider, &pv, &e);
			rc_market_get_provider_model_stats(m, model, b.provider, &ps, &e);
		}
		free(ids);
		seq[r] = ms_now() - t;
		seq_trips = rc_rpc_round_trips(rpc) - before;
	}
	qsort(seq, ROUNDS / 4, sizeof *seq, cmp_double);

	printf("set-up: 1 model, %d providers, %d bids registered in %.0f ms (%d transactions)\n",
	       NBIDS, NBIDS, t_setup, 1 + 4 * NBIDS + 1);
	printf("discovery, batched:    %zu offers  %3llu round trips  median %7.2f ms  "
	       "min %7.2f ms  (%d runs)\n",
	       offers, (unsigned long long)trips, times[ROUNDS / 2], times[0], ROUNDS);
	printf("discovery, one by one: %zu offers  %3llu round trips  median %7.2f ms  "
	       "min %7.2f ms  (%d runs)\n",
	       offers, (unsigned long long)seq_trips, seq[ROUNDS / 8], seq[0], ROUNDS / 4);
	printf("batched / one by one: %.2fx the speed, %.1fx fewer round trips\n",
	       seq[ROUNDS / 8] / times[ROUNDS / 2], (double)seq_trips / (double)trips);

	rc_txm_free(t0);
	rc_market_free(m);
	rc_rpc_free(rpc);
	return tu_devnet_stop(dir) == 0 ? 0 : 1;
}
