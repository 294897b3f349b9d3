/*
 * rc_market and rc_network: presets and the pure stake rule, then the bindings on the Morpheus
 * test Diamond (tests/chain, started with scripts/devnet for this binary): register a provider, a
 * model and a bid, read them back, discover the model's providers in 3 batched round trips, open
 * a session with an approval signed by the provider (EIP-191), read it and its events, close it,
 * and check that each documented revert comes back decoded to its name.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <router-core/rc_abi.h>
#include <router-core/rc_addr.h>
#include <router-core/rc_keccak.h>
#include <router-core/rc_market.h>

#include "testutil.h"
#include <router-core/rc_morpheus.h>
#include <router-core/rc_network.h>

static char state_dir[256];
static char rpc_url[128];
static uint8_t diamond[20], mor[20];
static char keys[4][67];
static uint8_t addrs[4][20];
static struct rc_rpc *rpc;
static struct rc_market *mkt;
static struct rc_txm *txm[4];

static struct rc_u256 u(uint64_t v)
{
	struct rc_u256 x;
	rc_u256_from_u64(&x, v);
	return x;
}

static struct rc_u256 dec(const char *s)
{
	struct rc_u256 x;
	assert_int_equal(rc_u256_parse_dec(&x, s, strlen(s), NULL), RC_OK);
	return x;
}

static int parse_addr(uint8_t out[20], const json_t *v)
{
	return json_is_string(v)
	               ? rc_addr_parse(out, json_string_value(v), json_string_length(v), NULL)
	               : RC_EPARSE;
}

static int devnet_start(void **state)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(state_dir, sizeof state_dir, "%s/rc_market_XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(state_dir))
		return -1;
	json_t *j = tu_devnet_start(state_dir);
	if (!j)
		return -1;
	snprintf(rpc_url, sizeof rpc_url, "%s", json_string_value(json_object_get(j, "rpcUrl")));
	int rc = parse_addr(diamond, json_object_get(j, "diamond")) |
	         parse_addr(mor, json_object_get(j, "mor"));
	const json_t *acc = json_object_get(j, "accounts");
	for (size_t i = 0; i < 4; i++) {
		const json_t *a = json_array_get(acc, i);
		rc |= parse_addr(addrs[i], json_object_get(a, "address"));
		snprintf(keys[i], sizeof keys[i], "%s",
		         json_string_value(json_object_get(a, "privateKey")));
	}
	json_decref(j);
	if (rc != RC_OK)
		return -1;
	const char *urls[] = {rpc_url};
	struct rc_rpc_options o = {urls, 1, 1000, 10000, 1000, 0};
	if (rc_rpc_new(&o, &rpc) != RC_OK || rc_market_new(rpc, diamond, mor, &mkt) != RC_OK)
		return -1;
	for (int i = 0; i < 4; i++) {
		struct rc_secp_privkey k;
		struct rc_txm_options to = {.chain_id = 31337, .poll_interval_ms = 20};
		if (rc_secp_privkey_from_hex(&k, keys[i], strlen(keys[i]), NULL) != RC_OK ||
		    rc_txm_new(rpc, &k, &to, &txm[i]) != RC_OK)
			return -1;
		rc_secp_privkey_release(&k);
	}
	return 0;
}

static int devnet_stop(void **state)
{
	for (int i = 0; i < 4; i++)
		rc_txm_free(txm[i]);
	rc_market_free(mkt);
	rc_rpc_free(rpc);
	return tu_devnet_stop(state_dir);
}

/* ---- pure ----------------------------------------------------------------------------------- */

static void test_rc_network__presets(void **state)
{
	struct rc_network n;
	char s[RC_ADDR_STR_SIZE];
	assert_int_equal(rc_network_find("base", &n), RC_OK);
	assert_int_equal(n.chain_id, 8453);
	rc_addr_format_checksum(n.diamond, s);
	assert_string_equal(s, "0x6aBE1d282f72B474E54527D93b979A4f64d3030a");
	rc_addr_format_checksum(n.mor, s);
	assert_string_equal(s, "0x7431aDa8a591C955a994a21710752EF9b882b8e3");
	assert_int_equal(rc_network_find("base-sepolia", &n), RC_OK);
	assert_int_equal(n.chain_id, 84532);
	assert_int_equal(rc_network_find("arbitrum", &n), RC_OK);
	assert_int_equal(n.chain_id, 42161);
	rc_addr_format_checksum(n.diamond, s);
	assert_string_equal(s, "0xDE819AaEE474626E3f34Ef0263373357e5a6C71b");
	assert_int_equal(rc_network_find("arbitrum-sepolia", &n), RC_OK);
	assert_int_equal(n.chain_id, 421614);
	rc_addr_format_checksum(n.mor, s);
	assert_string_equal(s, "0x34a285A1B1C166420Df5b6630132542923B5b27E");
	assert_int_equal(rc_network_find("Base", &n), RC_ENOTFOUND);
	assert_int_equal(rc_network_find(NULL, &n), RC_ENOTFOUND);
	assert_int_equal(rc_network_by_chain_id(84532, &n), RC_OK);
	assert_string_equal(n.name, "base-sepolia");
	assert_int_equal(rc_network_by_chain_id(1, &n), RC_ENOTFOUND);
}

static void test_rc_market__stake_rule(void **state)
{
	/* §3.6.1: supply 10M MOR, budget 30k MOR, 1e13 wei/s for 600 s: cost 6e15, stake 2e18. */
	struct rc_u256 supply = dec("10000000000000000000000000"),
	               budget = dec("30000000000000000000000");
	struct rc_u256 price = u(10000000000000ull), out;
	assert_int_equal(rc_market_stake_amount(&supply, &budget, &price, 600, false, &out), RC_OK);
	char s[RC_U256_DEC_SIZE];
	rc_u256_format_dec(&out, s, sizeof s);
	assert_string_equal(s, "2000000000000000000");
	assert_int_equal(rc_market_stake_amount(&supply, &budget, &price, 600, true, &out), RC_OK);
	rc_u256_format_dec(&out, s, sizeof s);
	assert_string_equal(s, "6000000000000000");
	/* Truncating division. */
	struct rc_u256 b3 = u(3), s1 = u(1), p1 = u(1);
	assert_int_equal(rc_market_stake_amount(&s1, &b3, &p1, 5, false, &out), RC_OK);
	assert_int_equal(out.w[0], 1);
	struct rc_u256 zero = u(0);
	assert_int_equal(rc_market_stake_amount(&supply, &zero, &price, 600, false, &out),
	                 RC_ERANGE);
	struct rc_u256 max;
	memset(&max, 0xff, sizeof max);
	assert_int_equal(rc_market_stake_amount(&supply, &budget, &max, 2, true, &out), RC_ERANGE);
}

static void test_rc_market__decode_event(void **state)
{
	struct rc_rpc_log l;
	memset(&l, 0, sizeof l);
	l.ntopics = 4;
	assert_int_equal(rc_hex_decode_exact(
	                         "2bd7c890baf595977d256a6e784512c873ac58ba612b4895dbb7f784bfbf4839",
	                         64, l.topics[0], 32, NULL),
	                 RC_OK);
	memset(l.topics[1] + 12, 0x11, 20);
	memset(l.topics[2], 0x22, 32);
	memset(l.topics[3] + 12, 0x33, 20);
	struct rc_market_session_event ev;
	assert_int_equal(rc_market_decode_session_event(&l, &ev), RC_OK);
	assert_true(ev.opened);
	assert_int_equal(ev.user[0], 0x11);
	assert_int_equal(ev.provider[19], 0x33);
	l.topics[1][0] = 1; /* dirty address word */
	assert_int_equal(rc_market_decode_session_event(&l, &ev), RC_EPARSE);
	l.topics[1][0] = 0;
	l.ntopics = 3;
	assert_int_equal(rc_market_decode_session_event(&l, &ev), RC_EPARSE);
	l.topics[0][0] ^= 1;
	assert_int_equal(rc_market_decode_session_event(&l, &ev), RC_ENOTFOUND);
}

/* ---- on the test Diamond -------------------------------------------------------------------- */

static uint8_t model_id[32], bid_id[32], session_id[32];
static const uint64_t PRICE = 10000000000000ull; /* 1e13 wei/s */

static void expect_revert(int rc, const struct rc_rpc_error *e, const char *name)
{
	if (rc != RC_EREVERT || !e->revert_name || strcmp(e->revert_name, name) != 0)
		fail_msg("wanted revert %s, got %s (%s / %s)", name, rc_rpc_strerror(rc),
		         e->revert_name ? e->revert_name : "-", e->message);
}

static void test_rc_network__chain_id_check(void **state)
{
	uint64_t actual;
	struct rc_rpc_error e;
	assert_int_equal(rc_network_check_chain_id(rpc, 31337, &actual, &e), RC_OK);
	assert_int_equal(rc_network_check_chain_id(rpc, 8453, &actual, &e), RC_ECHAINID);
	assert_int_equal(actual, 31337);
	assert_non_null(strstr(e.message, "is on chain 31337, expected 8453"));
}

static void test_rc_market__register_and_read(void **state)
{
	struct rc_rpc_error e;
	/* Provider: account 1 needs MOR first (account 0 holds the supply). */
	struct rc_abi_value a[2];
	struct rc_u256 amount = dec("100000000000000000000"); /* 100 MOR */
	for (int i = 1; i <= 3; i++) {
		struct rc_buf data = RC_BUF_INIT;
		rc_abi_set_address(&a[0], addrs[i]);
		rc_abi_set_u256(&a[1], &amount);
		assert_int_equal(rc_abi_encode_call(RC_STR_LIT("transfer(address,uint256)"), a, 2,
		                                    &data, NULL),
		                 RC_OK);
		struct rc_txm_call call = {
		        .to = mor, .data = (const uint8_t *)data.ptr, .data_len = data.len};
		struct rc_rpc_receipt r;
		assert_int_equal(rc_txm_send_wait(txm[0], &call, &r, &e), RC_OK);
		rc_rpc_receipt_release(&r);
		rc_buf_release(&data);
	}
	struct rc_u256 bal;
	assert_int_equal(rc_market_mor_balance(mkt, addrs[1], &bal, &e), RC_OK);
	assert_int_equal(rc_u256_cmp(&bal, &amount), 0);

	struct rc_u256 min;
	assert_int_equal(rc_market_provider_min_stake(mkt, &min, &e), RC_OK);
	assert_int_equal(min.w[0], 100000000000000000ull);
	/* Too little stake: ProviderStakeTooLow(1, 1e17), decoded with its arguments. */
	struct rc_u256 one = u(1);
	int rc = rc_market_provider_register(mkt, txm[3], addrs[3], &one, "h:1", &e);
	expect_revert(rc, &e, "ProviderStakeTooLow");
	assert_non_null(strstr(e.revert_text, "ProviderStakeTooLow(1, 100000000000000000)"));

	assert_int_equal(
	        rc_market_provider_register(mkt, txm[1], addrs[1], &min, "127.0.0.1:3333", &e),
	        RC_OK);
	struct rc_provider p;
	assert_int_equal(rc_market_get_provider(mkt, addrs[1], &p, &e), RC_OK);
	assert_string_equal(p.endpoint, "127.0.0.1:3333");
	assert_int_equal(rc_u256_cmp(&p.stake, &min), 0);
	assert_false(p.is_deleted);
	assert_true(p.created_at > 0);

	const char *tags[] = {"llm", "tee"};
	struct rc_market_model_reg reg = {.owner = addrs[1],
	                                  .fee = u(0),
	                                  .stake = min,
	                                  .name = "llama-test",
	                                  .tags = tags,
	                                  .ntags = 2};
	rc_keccak256("llama-test", 10, reg.base_model_id);
	memset(reg.ipfs_cid, 0xab, 32);
	assert_int_equal(rc_market_model_register(mkt, txm[1], &reg, model_id, &e), RC_OK);
	struct rc_model md;
	assert_int_equal(rc_market_get_model(mkt, model_id, &md, &e), RC_OK);
	assert_string_equal(md.name, "llama-test");
	assert_int_equal(md.ntags, 2);
	assert_string_equal(md.tags[1], "tee");
	assert_memory_equal(md.owner, addrs[1], 20);
	assert_int_equal(md.ipfs_cid[0], 0xab);

	/* Bid price out of range, then a good one. */
	struct rc_u256 low = u(1), price = u(PRICE);
	rc = rc_market_post_bid(mkt, txm[1], addrs[1], model_id, &low, bid_id, &e);
	expect_revert(rc, &e, "MarketplaceBidPricePerSecondInvalid");
	uint8_t nomodel[32] = {1};
	rc = rc_market_post_bid(mkt, txm[1], addrs[1], nomodel, &price, bid_id, &e);
	expect_revert(rc, &e, "MarketplaceModelNotFound");
	assert_int_equal(rc_market_post_bid(mkt, txm[1], addrs[1], model_id, &price, bid_id, &e),
	                 RC_OK);
	uint8_t want[32];
	struct rc_u256 zero = u(0);
	rc_morpheus_bid_id(addrs[1], model_id, &zero, want);
	assert_memory_equal(bid_id, want, 32);
	struct rc_bid b;
	assert_int_equal(rc_market_get_bid(mkt, bid_id, &b, &e), RC_OK);
	assert_memory_equal(b.provider, addrs[1], 20);
	assert_memory_equal(b.model_id, model_id, 32);
	assert_int_equal(b.price_per_second.w[0], PRICE);
	assert_true(b.created_at > 0 && b.deleted_at == 0);
	uint8_t(*ids)[32];
	size_t n;
	uint64_t total;
	assert_int_equal(rc_market_model_active_bids(mkt, model_id, 0, 255, &ids, &n, &total, &e),
	                 RC_OK);
	assert_int_equal(n, 1);
	assert_int_equal(total, 1);
	assert_memory_equal(ids[0], bid_id, 32);
	free(ids);
	/* An unknown bid reads as zeros (trap 12). */
	assert_int_equal(rc_market_get_bid(mkt, nomodel, &b, &e), RC_OK);
	assert_true(rc_addr_is_zero(b.provider));

	/* A second provider on the same model, then discovery in 3 round trips. */
	assert_int_equal(rc_market_provider_register(mkt, txm[3], addrs[3], &min, "10.0.0.3:1", &e),
	                 RC_OK);
	uint8_t bid2[32];
	struct rc_u256 price2 = u(2 * PRICE);
	assert_int_equal(rc_market_post_bid(mkt, txm[3], addrs[3], model_id, &price2, bid2, &e),
	                 RC_OK);
	struct rc_market_discovery d;
	assert_int_equal(rc_market_discover(mkt, model_id, 0, &d, &e), RC_OK);
	assert_int_equal(d.noffers, 2);
	assert_int_equal(d.total_bids, 2);
	assert_int_equal(d.round_trips, 3);
	assert_string_equal(d.model.name, "llama-test");
	assert_string_equal(d.offers[0].provider.endpoint, "127.0.0.1:3333");
	assert_string_equal(d.offers[1].provider.endpoint, "10.0.0.3:1");
	assert_int_equal(d.offers[1].bid.price_per_second.w[0], 2 * PRICE);
	assert_int_equal(rc_u256_cmp(&d.provider_min_stake, &min), 0);
	rc_market_discovery_release(&d);
	struct rc_model *models;
	assert_int_equal(rc_market_list_models(mkt, &models, &n, &e), RC_OK);
	assert_int_equal(n, 1);
	assert_string_equal(models[0].name, "llama-test");
	free(models);
	/* Delete bid 2, and again: MarketplaceActiveBidNotFound. */
	assert_int_equal(rc_market_delete_bid(mkt, txm[3], bid2, &e), RC_OK);
	assert_int_equal(rc_market_get_bid(mkt, bid2, &b, &e), RC_OK);
	assert_true(b.deleted_at > 0);
	rc = rc_market_delete_bid(mkt, txm[3], bid2, &e);
	expect_revert(rc, &e, "MarketplaceActiveBidNotFound");
}

static uint64_t chain_id_of_approval = 31337;

static void make_approval(uint8_t appr[128], uint8_t sig[65], const uint8_t bid[32],
                          uint64_t chain_id, const char *signer_key, uint64_t ts_ms)
{
	struct rc_morpheus_approval a = {.chain_id = chain_id, .timestamp_ms = ts_ms};
	memcpy(a.bid_id, bid, 32);
	memcpy(a.user, addrs[2], 20);
	rc_morpheus_approval_encode(&a, appr);
	struct rc_secp_privkey k;
	assert_int_equal(rc_secp_privkey_from_hex(&k, signer_key, strlen(signer_key), NULL), RC_OK);
	assert_int_equal(rc_secp_sign_eth_message(&k, appr, 128, sig), RC_OK);
	rc_secp_privkey_release(&k);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_rc_market__open_read_close(void **state)
{
	struct rc_rpc_error e;
	struct rc_u256 price = u(PRICE), stake, supply, budget;
	/* The stake of §3.6.1 from live views, checked against the views read one by one. */
	assert_int_equal(rc_market_session_stake(mkt, &price, 600, false, 0, &stake, &e), RC_OK);
	assert_int_equal(rc_market_total_mor_supply(mkt, (uint64_t)time(NULL), &supply, &e), RC_OK);
	assert_int_equal(rc_market_todays_budget(mkt, (uint64_t)time(NULL), &budget, &e), RC_OK);
	struct rc_u256 want;
	assert_int_equal(rc_market_stake_amount(&supply, &budget, &price, 600, false, &want),
	                 RC_OK);
	assert_int_equal(rc_u256_cmp(&stake, &want), 0);
	char s[RC_U256_DEC_SIZE];
	rc_u256_format_dec(&stake, s, sizeof s);
	assert_string_equal(s, "2000000000000000000"); /* cost 6e15 x 1000/3 */

	uint8_t appr[128], sig[65];
	uint64_t bn0;
	assert_int_equal(rc_rpc_block_number(rpc, &bn0, &e), RC_OK);
	/* Signed by the wrong key. */
	make_approval(appr, sig, bid_id, chain_id_of_approval, keys[3], now_ms());
	int rc = rc_market_open_session(mkt, txm[2], &stake, false, appr, 128, sig, 65, session_id,
	                                &e);
	expect_revert(rc, &e, "SessionProviderSignatureMismatch");
	/* For another chain. */
	make_approval(appr, sig, bid_id, 1, keys[1], now_ms());
	rc = rc_market_open_session(mkt, txm[2], &stake, false, appr, 128, sig, 65, session_id, &e);
	expect_revert(rc, &e, "SessionApprovedForAnotherChainId");
	/* Too little for MIN_SESSION_DURATION. */
	make_approval(appr, sig, bid_id, 31337, keys[1], now_ms());
	struct rc_u256 small;
	rc_u256_divmod_u64(&small, NULL, &stake, 4);
	rc = rc_market_open_session(mkt, txm[2], &small, false, appr, 128, sig, 65, session_id, &e);
	expect_revert(rc, &e, "SessionTooShort");
	/* Expired (a seconds timestamp 20 minutes old: the 600 s TTL applies). */
	make_approval(appr, sig, bid_id, 31337, keys[1], (uint64_t)time(NULL) - 1200);
	rc = rc_market_open_session(mkt, txm[2], &stake, false, appr, 128, sig, 65, session_id, &e);
	expect_revert(rc, &e, "SessionApproveExpired");
	/* Unknown bid. */
	uint8_t nobid[32] = {9};
	make_approval(appr, sig, nobid, 31337, keys[1], now_ms());
	rc = rc_market_open_session(mkt, txm[2], &stake, false, appr, 128, sig, 65, session_id, &e);
	expect_revert(rc, &e, "SessionBidNotFound");

	/* The real one. */
	make_approval(appr, sig, bid_id, 31337, keys[1], now_ms());
	assert_int_equal(rc_market_open_session(mkt, txm[2], &stake, false, appr, 128, sig, 65,
	                                        session_id, &e),
	                 RC_OK);
	rc = rc_market_open_session(mkt, txm[2], &stake, false, appr, 128, sig, 65, session_id, &e);
	expect_revert(rc, &e, "SessionDuplicateApproval");
	struct rc_session_info si;
	assert_int_equal(rc_market_get_session(mkt, session_id, &si, &e), RC_OK);
	assert_true(si.found);
	assert_true(si.is_active);
	assert_memory_equal(si.user, addrs[2], 20);
	assert_memory_equal(si.bid_id, bid_id, 32);
	assert_int_equal(rc_u256_cmp(&si.stake, &stake), 0);
	/* On-chain duration: requested 600 s, slightly less after truncation (§3.6.1). */
	assert_true(si.ends_at - si.opened_at <= 600 && si.ends_at - si.opened_at >= 598);
	uint8_t(*ids)[32];
	size_t n;
	uint64_t total;
	assert_int_equal(rc_market_user_sessions(mkt, addrs[2], 0, 10, &ids, &n, &total, &e),
	                 RC_OK);
	assert_int_equal(n, 1);
	assert_memory_equal(ids[0], session_id, 32);
	free(ids);
	uint8_t none[32] = {7};
	assert_int_equal(rc_market_get_session(mkt, none, &si, &e), RC_OK);
	assert_false(si.found);

	/* Close with the provider's receipt; closing twice is SessionAlreadyClosed. */
	struct rc_morpheus_receipt rcpt = {.chain_id = 31337,
	                                   .timestamp_ms = now_ms(),
	                                   .tps_scaled1000 = 42500,
	                                   .ttft_ms = 350,
	                                   .tokens_in = 120,
	                                   .tokens_out = 800};
	memcpy(rcpt.session_id, session_id, 32);
	uint8_t rb[RC_MORPHEUS_RECEIPT_LEN], rsig[65];
	rc_morpheus_receipt_encode(&rcpt, rb);
	struct rc_secp_privkey pk;
	assert_int_equal(rc_secp_privkey_from_hex(&pk, keys[1], strlen(keys[1]), NULL), RC_OK);
	assert_int_equal(rc_secp_sign_eth_message(&pk, rb, sizeof rb, rsig), RC_OK);
	rc_secp_privkey_release(&pk);
	/* Only the user may close. */
	rc = rc_market_close_session(mkt, txm[3], rb, sizeof rb, rsig, 65, &e);
	expect_revert(rc, &e, "InsufficientRightsForOperation");
	assert_int_equal(rc_market_close_session(mkt, txm[2], rb, sizeof rb, rsig, 65, &e), RC_OK);
	rc = rc_market_close_session(mkt, txm[2], rb, sizeof rb, rsig, 65, &e);
	expect_revert(rc, &e, "SessionAlreadyClosed");
	assert_int_equal(rc_market_get_session(mkt, session_id, &si, &e), RC_OK);
	assert_false(si.is_active);
	assert_true(si.closed_at > 0);
	assert_int_equal(si.closeout_type, 0);
	assert_int_equal(si.closeout_receipt_len, RC_MORPHEUS_RECEIPT_LEN);
	struct rc_provider_model_stats st;
	assert_int_equal(rc_market_get_provider_model_stats(mkt, model_id, addrs[1], &st, &e),
	                 RC_OK);
	assert_int_equal(st.total_count, 1);
	assert_int_equal(st.success_count, 1);
	struct rc_model_stats ms;
	assert_int_equal(rc_market_get_model_stats(mkt, model_id, &ms, &e), RC_OK);

	/* Both events, filtered by user. */
	struct rc_market_session_event *ev;
	assert_int_equal(
	        rc_market_session_events(mkt, bn0, UINT64_MAX, addrs[2], NULL, &ev, &n, &e), RC_OK);
	assert_int_equal(n, 2);
	assert_true(ev[0].opened);
	assert_false(ev[1].opened);
	assert_memory_equal(ev[0].session_id, session_id, 32);
	assert_memory_equal(ev[1].provider, addrs[1], 20);
	free(ev);
	assert_int_equal(
	        rc_market_session_events(mkt, bn0, UINT64_MAX, addrs[3], NULL, &ev, &n, &e), RC_OK);
	assert_int_equal(n, 0);
	free(ev);
	/* Allowance was topped up to 3 x stake (§3.6.2), minus what the session took. */
	struct rc_u256 al;
	assert_int_equal(rc_market_mor_allowance(mkt, addrs[2], diamond, &al, &e), RC_OK);
	assert_false(rc_u256_is_zero(&al));
}

/* A raw transaction from txm t: sig(args) to the Diamond. */
static int diamond_tx(struct rc_txm *t, const char *sig, const struct rc_abi_value *args, size_t n,
                      struct rc_rpc_error *e)
{
	struct rc_buf data = RC_BUF_INIT;
	assert_int_equal(
	        rc_abi_encode_call((struct rc_str){sig, strlen(sig)}, args, n, &data, NULL), RC_OK);
	struct rc_txm_call call = {
	        .to = diamond, .data = (const uint8_t *)data.ptr, .data_len = data.len};
	struct rc_rpc_receipt r;
	int rc = rc_txm_send_wait(t, &call, &r, e);
	rc_rpc_receipt_release(&r);
	rc_buf_release(&data);
	return rc;
}

static void test_rc_market__more_reverts(void **state)
{
	struct rc_rpc_error e;
	struct rc_u256 price = u(PRICE), one = u(1), stake;
	assert_int_equal(rc_market_session_stake(mkt, &price, 600, false, 0, &stake, &e), RC_OK);
	uint8_t appr[128], sig[65];
	/* The Nov-2024 spelling, switched on by the Diamond's owner (§3.5, trap 18). */
	struct rc_abi_value a[2];
	rc_abi_set_bool(&a[0], true);
	assert_int_equal(diamond_tx(txm[0], "setLegacyErrorSpelling(bool)", a, 1, &e), RC_OK);
	make_approval(appr, sig, bid_id, 5, keys[1], now_ms());
	int rc = rc_market_open_session(mkt, txm[2], &stake, false, appr, 128, sig, 65, NULL, &e);
	expect_revert(rc, &e, "SesssionApprovedForAnotherChainId");
	rc_abi_set_bool(&a[0], false);
	assert_int_equal(diamond_tx(txm[0], "setLegacyErrorSpelling(bool)", a, 1, &e), RC_OK);
	/* Only the owner may change parameters. */
	rc_abi_set_u256(&a[0], &one);
	rc = diamond_tx(txm[1], "setMarketplaceBidFee(uint256)", a, 1, &e);
	expect_revert(rc, &e, "OwnableUnauthorizedAccount");
	/* A 64-byte signature: OpenZeppelin's Error(string). */
	make_approval(appr, sig, bid_id, 31337, keys[1], now_ms());
	rc = rc_market_open_session(mkt, txm[2], &stake, false, appr, 128, sig, 64, NULL, &e);
	expect_revert(rc, &e, "Error");
	assert_non_null(strstr(e.revert_text, "ECDSA: invalid signature length"));
	/* Receipts for another chain, and expired (a seconds timestamp). */
	struct rc_morpheus_receipt rcpt = {.chain_id = 1, .timestamp_ms = now_ms()};
	memcpy(rcpt.session_id, session_id, 32);
	uint8_t rb[RC_MORPHEUS_RECEIPT_LEN];
	rc_morpheus_receipt_encode(&rcpt, rb);
	rc = rc_market_close_session(mkt, txm[2], rb, sizeof rb, sig, 65, &e);
	expect_revert(rc, &e, "SessionReceiptForAnotherChainId");
	rcpt.chain_id = 31337;
	rcpt.timestamp_ms = (uint64_t)time(NULL) - 1200;
	rc_morpheus_receipt_encode(&rcpt, rb);
	rc = rc_market_close_session(mkt, txm[2], rb, sizeof rb, sig, 65, &e);
	expect_revert(rc, &e, "SessionReceiptExpired");
	/* Model stake too low; a bid by a wallet that is no provider. */
	struct rc_market_model_reg reg = {.owner = addrs[3], .stake = one, .name = "x"};
	rc = rc_market_model_register(mkt, txm[3], &reg, NULL, &e);
	expect_revert(rc, &e, "ModelStakeTooLow");
	assert_non_null(strstr(e.revert_text, "ModelStakeTooLow(1, 100000000000000000)"));
	rc = rc_market_post_bid(mkt, txm[2], addrs[2], model_id, &price, NULL, &e);
	expect_revert(rc, &e, "MarketplaceProviderNotFound");
	/* A provider with an active bid cannot leave. */
	struct rc_abi_value pa[1];
	rc_abi_set_address(&pa[0], addrs[1]);
	rc = diamond_tx(txm[1], "providerDeregister(address)", pa, 1, &e);
	expect_revert(rc, &e, "ProviderHasActiveBids");
}

#define NOPEN 20 /* the issue: 20 sessions opened concurrently from one wallet */
struct opener {
	int idx, rc;
	uint8_t session[32];
	struct rc_rpc_error err;
};

static void *opener_main(void *arg)
{
	struct opener *o = arg;
	struct rc_u256 price = u(PRICE), stake;
	uint8_t appr[128], sig[65];
	/* Distinct timestamps make distinct (single-use) approvals. */
	make_approval(appr, sig, bid_id, 31337, keys[1], 2000000000000ull + (uint64_t)o->idx);
	o->rc = rc_market_session_stake(mkt, &price, 900, false, 0, &stake, &o->err);
	if (o->rc == RC_OK)
		o->rc = rc_market_open_session(mkt, txm[0], &stake, false, appr, 128, sig, 65,
		                               o->session, &o->err);
	return NULL;
}

/* Many sessions opened at once from one wallet (account 0, whose allowance starts at 0): no
 * nonce error, no allowance race, every session on chain. */
static void test_rc_market__concurrent_opens(void **state)
{
	pthread_t th[NOPEN];
	static struct opener op[NOPEN];
	for (int i = 0; i < NOPEN; i++) {
		op[i].idx = i;
		pthread_create(&th[i], NULL, opener_main, &op[i]);
	}
	for (int i = 0; i < NOPEN; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NOPEN; i++) {
		if (op[i].rc != RC_OK)
			fail_msg("opener %d: %s: %s %s", i, rc_rpc_strerror(op[i].rc),
			         op[i].err.message, op[i].err.revert_text);
		struct rc_session_info si;
		struct rc_rpc_error e;
		assert_int_equal(rc_market_get_session(mkt, op[i].session, &si, &e), RC_OK);
		assert_true(si.found && si.is_active);
	}
	uint8_t(*ids)[32];
	size_t n;
	uint64_t total;
	struct rc_rpc_error e;
	assert_int_equal(rc_market_user_sessions(mkt, addrs[0], 0, 255, &ids, &n, &total, &e),
	                 RC_OK);
	assert_int_equal(n, NOPEN);
	free(ids);
}

int main(void)
{
	const struct CMUnitTest pure[] = {
	        cmocka_unit_test(test_rc_network__presets),
	        cmocka_unit_test(test_rc_market__stake_rule),
	        cmocka_unit_test(test_rc_market__decode_event),
	};
	const struct CMUnitTest live[] = {
	        cmocka_unit_test(test_rc_network__chain_id_check),
	        cmocka_unit_test(test_rc_market__register_and_read),
	        cmocka_unit_test(test_rc_market__open_read_close),
	        cmocka_unit_test(test_rc_market__more_reverts),
	        cmocka_unit_test(test_rc_market__concurrent_opens),
	};
	int failed = cmocka_run_group_tests_name("rc_market pure", pure, NULL, NULL);
	failed += cmocka_run_group_tests_name("rc_market devnet", live, devnet_start, devnet_stop);
	return failed ? 1 : 0;
}
