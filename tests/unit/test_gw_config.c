/* gateway config: defaults, parsing, precise errors with field paths, environment overrides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gw_config.h"

#include <router-core/rc_addr.h>

static int parse(const char *s, struct gw_config **c, struct gw_config_err *e)
{
	return gw_config_parse(s, strlen(s), c, e);
}

static void test_gw_config__defaults_run_the_demo(void **state)
{
	(void)state;
	struct gw_config *c;
	assert_int_equal(gw_config_default(&c), GW_CONFIG_OK);
	assert_string_equal(c->listen, "127.0.0.1:8080");
	assert_string_equal(c->keystore_path, "./var/morgate.db");
	assert_string_equal(c->redis_url, "");
	assert_int_equal(c->n_models, 1);
	assert_string_equal(c->models[0].name, "demo");
	assert_int_equal(c->backends[0].kind, GW_BACKEND_DEMO);
	assert_int_equal(c->keepalive_ms, 15000);
	/* a stream holds its upstream connection: the default gate must not cap the thousands of
	 * concurrent streams the gateway is built to hold (512 queued the 513th stream) */
	assert_true(c->backends[0].max_connections >= c->max_connections);
	gw_config_unref(c);
	struct gw_config_err e;
	assert_int_equal(parse("{}", &c, &e), GW_CONFIG_OK);
	assert_int_equal(c->n_models, 1);
	gw_config_unref(c);
}

static void test_gw_config__a_full_config(void **state)
{
	(void)state;
	struct gw_config *c;
	struct gw_config_err e;
	const char *doc = "{\"_doc\":\"x\",\"listen\":\"127.0.0.1:9\",\"limits\":{\"max_body_bytes\":2048},"
			  "\"streaming\":{\"keepalive_ms\":1000},\"redis_url\":\"redis://127.0.0.1:6379/2\","
			  "\"ratelimit\":{\"fail_closed\":true,\"lease_ms\":5000},"
			  "\"backends\":[{\"name\":\"up\",\"base_url\":\"http://h:1/v1/\",\"api_key_env\":\"K\"}],"
			  "\"models\":[{\"name\":\"m\",\"aliases\":[\"a1\",\"a2\"],\"backend\":\"up\"}]}";
	assert_int_equal(parse(doc, &c, &e), GW_CONFIG_OK);
	assert_int_equal(c->max_body_bytes, 2048);
	assert_int_equal(c->rl_fail_closed, 1);
	assert_int_equal(c->rl_lease_ms, 5000);
	assert_string_equal(c->backends[0].base_url, "http://h:1/v1"); /* trailing slash dropped */
	assert_ptr_equal(gw_config_find_model(c, "a2", 2), &c->models[0]);
	assert_ptr_equal(gw_config_find_model(c, "m", 1), &c->models[0]);
	assert_null(gw_config_find_model(c, "a", 1));
	struct gw_config *r = gw_config_ref(c);
	gw_config_unref(c);
	assert_string_equal(r->models[0].owned_by, "up");
	gw_config_unref(r);
}

static void test_gw_config__errors_name_the_field(void **state)
{
	(void)state;
	static const struct {
		const char *doc, *path, *msg;
	} cases[] = {
		{"[]", "", "JSON object"},
		{"{\"listen\":5}", "listen", "string"},
		{"{\"listen\":\"nowhere\"}", "listen", "HOST:PORT"},
		{"{\"listne\":\"x\"}", "listne", "unknown option"},
		{"{\"limits\":{\"max_body_bytes\":1}}", "limits.max_body_bytes", "out of range"},
		{"{\"limits\":{\"bogus\":1}}", "limits.bogus", "unknown"},
		{"{\"streaming\":[]}", "streaming", "object"},
		{"{\"access_log\":1}", "access_log", "true or false"},
		{"{\"log_level\":\"loud\"}", "log_level", "debug"},
		{"{\"redis_url\":\"http://x\"}", "redis_url", "offset"},
		{"{\"limits\":{\"soft_connections\":50,\"max_connections\":40}}", "limits.soft_connections", "below"},
		{"{\"backends\":[{\"name\":\"b\",\"base_url\":\"ftp://x\"}],\"models\":[{\"name\":\"m\",\"backend\":\"b\"}]}",
		 "backends[0].base_url", "http"},
		{"{\"backends\":[{\"name\":\"b\",\"type\":\"magic\"}],\"models\":[]}", "backends[0].type", "unknown backend"},
		{"{\"backends\":[{\"name\":\"b\",\"type\":\"demo\"}],\"models\":[{\"name\":\"m\",\"backend\":\"c\"}]}",
		 "models[0].backend", "no backend named 'c'"},
		{"{\"backends\":[{\"name\":\"b\",\"type\":\"demo\"}],\"models\":[{\"name\":\"m\",\"backend\":\"b\"},"
		 "{\"name\":\"n\",\"aliases\":[\"m\"],\"backend\":\"b\"}]}",
		 "models[1].aliases[0]", "used twice"},
		{"{\"backends\":[{\"name\":\"b\",\"type\":\"demo\"},{\"name\":\"b\",\"type\":\"demo\"}],"
		 "\"models\":[{\"name\":\"m\",\"backend\":\"b\"}]}",
		 "backends[1].name", "duplicate"},
		{"{\"backends\":[{\"name\":\"b\",\"type\":\"demo\"}],\"models\":[{\"name\":\"a b\",\"backend\":\"b\"}]}",
		 "models[0].name", "model names"},
		{"{\"backends\":[{\"name\":\"b\",\"type\":\"demo\",\"connect_timeout_ms\":0}],\"models\":[{\"name\":\"m\",\"backend\":\"b\"}]}",
		 "backends[0].connect_timeout_ms", "out of range"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct gw_config *c = (struct gw_config *)1;
		struct gw_config_err e;
		memset(&e, 0, sizeof e);
		assert_int_equal(parse(cases[i].doc, &c, &e), GW_CONFIG_EINVAL);
		assert_null(c);
		assert_string_equal(e.path, cases[i].path);
		if (!strstr(e.msg, cases[i].msg))
			fail_msg("case %zu: message '%s' lacks '%s'", i, e.msg, cases[i].msg);
	}
	struct gw_config *c;
	struct gw_config_err e;
	assert_int_equal(parse("{\n \"listen\": ,\n}", &c, &e), GW_CONFIG_EINVAL);
	assert_int_equal(e.line, 2);
}

static const char *fake_env(const char *name)
{
	if (!strcmp(name, "MORGATE_LISTEN"))
		return "127.0.0.1:7777";
	if (!strcmp(name, "MORGATE_KEEPALIVE_MS"))
		return "250";
	return NULL;
}

static const char *bad_env(const char *name)
{
	return !strcmp(name, "MORGATE_THREADS") ? "lots" : NULL;
}

static void test_gw_config__environment_overrides(void **state)
{
	(void)state;
	struct gw_config *c;
	struct gw_config_err e;
	assert_int_equal(gw_config_default(&c), GW_CONFIG_OK);
	assert_int_equal(gw_config_apply_env(c, fake_env, &e), GW_CONFIG_OK);
	assert_string_equal(c->listen, "127.0.0.1:7777");
	assert_int_equal(c->keepalive_ms, 250);
	assert_int_equal(gw_config_apply_env(c, bad_env, &e), GW_CONFIG_EINVAL);
	assert_string_equal(e.path, "MORGATE_THREADS");
	gw_config_unref(c);
}

#define MK(extra)                                                                                  \
	"{\"marketplace\":{\"rpc\":[\"http://127.0.0.1:8545\"],\"wallet\":\"/w.key\"" extra "}}"

static void test_gw_config__marketplace_section(void **state)
{
	(void)state;
	struct gw_config *c;
	struct gw_config_err e;
	/* absent: no marketplace */
	assert_int_equal(parse("{}", &c, &e), GW_CONFIG_OK);
	assert_int_equal(c->market.enabled, 0);
	gw_config_unref(c);
	/* a preset fills chain id and addresses; defaults for the rest */
	assert_int_equal(parse(MK(",\"network\":\"base\""), &c, &e), GW_CONFIG_OK);
	assert_int_equal(c->market.enabled, 1);
	assert_int_equal(c->market.chain_id, 8453);
	char a[RC_ADDR_STR_SIZE];
	rc_addr_format(c->market.diamond, a);
	assert_string_equal(a, "0x6abe1d282f72b474e54527d93b979a4f64d3030a");
	assert_int_equal(c->market.session_seconds, 600);
	assert_int_equal(c->market.direct_payment, 0);
	assert_int_equal(c->market.request_deadline_ms, 60000);
	assert_int_equal(c->market.catalog_refresh_ms, 30000);
	assert_int_equal(c->market.bench_ms, 30000);
	assert_int_equal(c->market.workers, 64);
	assert_true(rc_u256_is_zero(&c->market.max_price));
	assert_string_equal(c->market.passphrase_file, "");
	assert_int_equal(c->n_models, 1); /* the demo model is still the default */
	gw_config_unref(c);
	/* everything explicit: overrides win over the preset */
	const char *doc =
		"{\"backends\":[{\"name\":\"d\",\"type\":\"demo\"}],\"models\":[{\"name\":\"local\",\"backend\":\"d\"}],"
		"\"marketplace\":{\"_doc\":\"x\",\"network\":\"arbitrum\",\"rpc\":[\"http://a:1\",\"https://b/x\"],"
		"\"chain_id\":31337,\"diamond\":\"0x00000000000000000000000000000000000000aa\","
		"\"mor\":\"0x00000000000000000000000000000000000000BB\",\"wallet\":\"w.key\","
		"\"wallet_passphrase_file\":\"p\",\"session_seconds\":900,\"direct_payment\":true,"
		"\"max_price_per_second\":\"123456789012345678901234567890\","
		"\"allow_providers\":[\"0x0000000000000000000000000000000000000001\"],"
		"\"deny_providers\":[\"0x0000000000000000000000000000000000000002\",\"0x0000000000000000000000000000000000000003\"],"
		"\"models\":{\"llama-3\":{\"min_idle\":2,\"max_price_per_second\":\"5\"},\"qwen\":{}},"
		"\"aliases\":{\"llama\":\"llama-3\"},\"request_deadline_ms\":5000,\"catalog_refresh_ms\":1000,"
		"\"bench_ms\":2000,\"workers\":8}}";
	assert_int_equal(parse(doc, &c, &e), GW_CONFIG_OK);
	const struct gw_market_cfg *m = &c->market;
	assert_int_equal(m->chain_id, 31337);
	assert_int_equal(m->diamond[19], 0xaa);
	assert_int_equal(m->mor[19], 0xbb);
	assert_int_equal(m->n_rpc, 2);
	assert_string_equal(m->rpc[1], "https://b/x");
	assert_int_equal(m->session_seconds, 900);
	assert_int_equal(m->direct_payment, 1);
	char dec[RC_U256_DEC_SIZE];
	rc_u256_format_dec(&m->max_price, dec, sizeof dec);
	assert_string_equal(dec, "123456789012345678901234567890");
	assert_int_equal(m->n_allow, 1);
	assert_int_equal(m->allow[0][19], 1);
	assert_int_equal(m->n_deny, 2);
	assert_int_equal(m->n_models, 2);
	assert_string_equal(m->models[0].name, "llama-3");
	assert_int_equal(m->models[0].min_idle, 2);
	uint64_t v = 0;
	assert_int_equal(rc_u256_to_u64(&m->models[0].max_price, &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(m->models[1].min_idle, 0);
	assert_string_equal(gw_config_market_alias(c, "llama", 5), "llama-3");
	assert_null(gw_config_market_alias(c, "llama-3", 7));
	assert_int_equal(m->workers, 8);
	gw_config_unref(c);
}

static void test_gw_config__marketplace_errors_name_the_field(void **state)
{
	(void)state;
	static const struct {
		const char *doc, *path, *msg;
	} cases[] = {
		{"{\"marketplace\":[]}", "marketplace", "object"},
		{"{\"marketplace\":{\"wallet\":\"w\",\"network\":\"base\"}}", "marketplace.rpc", "RPC URL"},
		{"{\"marketplace\":{\"rpc\":[],\"wallet\":\"w\",\"network\":\"base\"}}", "marketplace.rpc", "array of 1..16"},
		{"{\"marketplace\":{\"rpc\":[\"http://a:1\",\"ftp://x\"],\"wallet\":\"w\",\"network\":\"base\"}}",
		 "marketplace.rpc[1]", "http"},
		{MK(",\"network\":\"mainnet\""), "marketplace.network", "unknown network 'mainnet'"},
		{MK(""), "marketplace.chain_id", "set network"},
		{MK(",\"chain_id\":5"), "marketplace.diamond", "Diamond"},
		{MK(",\"chain_id\":5,\"diamond\":\"0x00000000000000000000000000000000000000aa\""), "marketplace.mor", "MOR"},
		{MK(",\"chain_id\":-5"), "marketplace.chain_id", "positive"},
		{MK(",\"network\":\"base\",\"diamond\":\"0x12\""), "marketplace.diamond", "40 hex"},
		{MK(",\"network\":\"base\",\"mor\":\"0x6aBE1d282f72B474E54527D93b979A4f64d3030A\""), "marketplace.mor", "checksum"},
		{"{\"marketplace\":{\"rpc\":[\"http://a:1\"],\"network\":\"base\"}}", "marketplace.wallet", "wallet"},
		{MK(",\"network\":\"base\",\"session_seconds\":60"), "marketplace.session_seconds", "out of range"},
		{MK(",\"network\":\"base\",\"direct_payment\":\"yes\""), "marketplace.direct_payment", "true or false"},
		{MK(",\"network\":\"base\",\"max_price_per_second\":100"), "marketplace.max_price_per_second", "decimal string"},
		{MK(",\"network\":\"base\",\"max_price_per_second\":\"1e9\""), "marketplace.max_price_per_second", "offset 1"},
		{MK(",\"network\":\"base\",\"allow_providers\":[\"0x0000000000000000000000000000000000000001\",7]"),
		 "marketplace.allow_providers[1]", "address"},
		{MK(",\"network\":\"base\",\"deny_providers\":\"0x1\""), "marketplace.deny_providers", "array"},
		{MK(",\"network\":\"base\",\"models\":{\"m\":{\"min_idle\":-1}}"), "marketplace.models.m.min_idle", "0..64"},
		{MK(",\"network\":\"base\",\"models\":{\"m\":{\"warm\":1}}"), "marketplace.models.m.warm", "unknown option"},
		{MK(",\"network\":\"base\",\"models\":{\"a b\":{}}"), "marketplace.models.a b", "model names"},
		{MK(",\"network\":\"base\",\"models\":[]"), "marketplace.models", "object"},
		{MK(",\"network\":\"base\",\"aliases\":{\"x\":5}"), "marketplace.aliases.x", "on-chain model name"},
		{MK(",\"network\":\"base\",\"aliases\":{\"demo\":\"llama\"}"), "marketplace.aliases.demo", "configured model"},
		{MK(",\"network\":\"base\",\"aliases\":{\"a\":\"b\",\"b\":\"c\"}"), "marketplace.aliases.a", "alias itself"},
		{MK(",\"network\":\"base\",\"workers\":0"), "marketplace.workers", "out of range"},
		{MK(",\"network\":\"base\",\"request_deadline_ms\":10"), "marketplace.request_deadline_ms", "out of range"},
		{MK(",\"network\":\"base\",\"wallet_passphrase\":\"secret\""), "marketplace.wallet_passphrase", "unknown option"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct gw_config *c = (struct gw_config *)1;
		struct gw_config_err e;
		memset(&e, 0, sizeof e);
		if (parse(cases[i].doc, &c, &e) != GW_CONFIG_EINVAL)
			fail_msg("case %zu: accepted", i);
		assert_null(c);
		if (strcmp(e.path, cases[i].path))
			fail_msg("case %zu: path '%s', expected '%s' (%s)", i, e.path, cases[i].path, e.msg);
		if (!strstr(e.msg, cases[i].msg))
			fail_msg("case %zu: message '%s' lacks '%s'", i, e.msg, cases[i].msg);
	}
}

static const char *market_env(const char *name)
{
	if (!strcmp(name, "MORGATE_RPC"))
		return "http://n1:8545, https://n2/key";
	if (!strcmp(name, "MORGATE_NETWORK"))
		return "arbitrum";
	if (!strcmp(name, "MORGATE_MOR"))
		return "0x00000000000000000000000000000000000000cc";
	if (!strcmp(name, "MORGATE_WALLET"))
		return "/etc/morgate/wallet.key";
	return NULL;
}

static const char *bad_market_env(const char *name)
{
	return !strcmp(name, "MORGATE_DIAMOND") ? "0xnope" : NULL;
}

static const char *bad_network_env(const char *name)
{
	return !strcmp(name, "MORGATE_NETWORK") ? "basee" : NULL;
}

static void test_gw_config__marketplace_environment_overrides(void **state)
{
	(void)state;
	struct gw_config *c;
	struct gw_config_err e;
	/* no section: the variables change nothing */
	assert_int_equal(parse("{}", &c, &e), GW_CONFIG_OK);
	assert_int_equal(gw_config_apply_env(c, market_env, &e), GW_CONFIG_OK);
	assert_int_equal(c->market.enabled, 0);
	gw_config_unref(c);
	/* section on base, explicit diamond: the environment switches the preset but the explicit
	 * diamond stays; MORGATE_MOR overrides the preset */
	assert_int_equal(parse(MK(",\"network\":\"base\",\"diamond\":\"0x00000000000000000000000000000000000000aa\""),
			       &c, &e),
			 GW_CONFIG_OK);
	assert_int_equal(gw_config_apply_env(c, market_env, &e), GW_CONFIG_OK);
	assert_int_equal(c->market.chain_id, 42161);
	assert_int_equal(c->market.diamond[19], 0xaa);
	assert_int_equal(c->market.mor[19], 0xcc);
	assert_int_equal(c->market.n_rpc, 2);
	assert_string_equal(c->market.rpc[0], "http://n1:8545");
	assert_string_equal(c->market.rpc[1], "https://n2/key");
	assert_string_equal(c->market.wallet, "/etc/morgate/wallet.key");
	assert_int_equal(gw_config_apply_env(c, bad_market_env, &e), GW_CONFIG_EINVAL);
	assert_string_equal(e.path, "MORGATE_DIAMOND");
	assert_int_equal(gw_config_apply_env(c, bad_network_env, &e), GW_CONFIG_EINVAL);
	assert_string_equal(e.path, "MORGATE_NETWORK");
	gw_config_unref(c);
	/* the environment can supply what the file lacks */
	assert_int_equal(parse("{\"marketplace\":{\"chain_id\":42161,\"diamond\":\"0x00000000000000000000000000000000000000aa\","
			       "\"mor\":\"0x00000000000000000000000000000000000000bb\"}}",
			       &c, &e),
			 GW_CONFIG_EINVAL);
	assert_string_equal(e.path, "marketplace.rpc");
}

/* SIGHUP: start-up-only options keep their running values and are named; the rest applies. */
static void test_gw_config__reload_keeps_start_up_options(void **state)
{
	(void)state;
	struct gw_config *run, *n;
	struct gw_config_err e;
	char changed[256];
	assert_int_equal(parse("{\"listen\":\"127.0.0.1:9001\",\"threads\":2,\"redis_url\":\"\","
			       "\"limits\":{\"max_body_bytes\":2048},"
			       "\"ratelimit\":{\"timeout_ms\":50}}",
			       &run, &e),
			 GW_CONFIG_OK);
	/* the same file again: nothing to report */
	assert_int_equal(parse("{\"listen\":\"127.0.0.1:9001\",\"threads\":2,\"redis_url\":\"\","
			       "\"limits\":{\"max_body_bytes\":2048},"
			       "\"ratelimit\":{\"timeout_ms\":50}}",
			       &n, &e),
			 GW_CONFIG_OK);
	assert_int_equal(gw_config_keep_running(n, run, changed, sizeof changed), 0);
	assert_string_equal(changed, "");
	gw_config_unref(n);
	/* listener, threads, Redis and a limiter timeout changed; the body limit applies live */
	assert_int_equal(parse("{\"listen\":\"127.0.0.1:9002\",\"threads\":4,"
			       "\"redis_url\":\"redis://127.0.0.1:1/0\","
			       "\"limits\":{\"max_body_bytes\":4096},"
			       "\"ratelimit\":{\"timeout_ms\":70}}",
			       &n, &e),
			 GW_CONFIG_OK);
	assert_int_equal(gw_config_keep_running(n, run, changed, sizeof changed), 4);
	assert_string_equal(changed, "listen, threads, redis_url, ratelimit.timeout_ms");
	assert_string_equal(n->listen, "127.0.0.1:9001");
	assert_int_equal(n->threads, 2);
	assert_string_equal(n->redis_url, "");
	assert_int_equal(n->rl_timeout_ms, 50);
	assert_int_equal(n->max_body_bytes, 4096);
	gw_config_unref(n);
	/* a marketplace appearing is named; its aliases alone are not */
	assert_int_equal(parse(MK(",\"network\":\"base\""), &n, &e), GW_CONFIG_OK);
	/* (listen differs from the default too; the list is cut to the buffer) */
	assert_int_equal(gw_config_keep_running(n, run, changed, 16), 2);
	assert_string_equal(changed, "listen, marketp");
	gw_config_unref(n);
	struct gw_config *m1, *m2;
	assert_int_equal(parse(MK(",\"network\":\"base\",\"aliases\":{\"a\":\"x\"}"), &m1, &e),
			 GW_CONFIG_OK);
	assert_int_equal(parse(MK(",\"network\":\"base\",\"aliases\":{\"b\":\"y\"}"), &m2, &e),
			 GW_CONFIG_OK);
	assert_int_equal(gw_config_keep_running(m2, m1, changed, sizeof changed), 0);
	gw_config_unref(m2);
	assert_int_equal(parse(MK(",\"network\":\"base\",\"session_seconds\":900"), &m2, &e),
			 GW_CONFIG_OK);
	assert_int_equal(gw_config_keep_running(m2, m1, changed, sizeof changed), 1);
	assert_string_equal(changed, "marketplace (only its aliases reload)");
	gw_config_unref(m2);
	gw_config_unref(m1);
	gw_config_unref(run);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gw_config__defaults_run_the_demo),
		cmocka_unit_test(test_gw_config__a_full_config),
		cmocka_unit_test(test_gw_config__errors_name_the_field),
		cmocka_unit_test(test_gw_config__environment_overrides),
		cmocka_unit_test(test_gw_config__marketplace_section),
		cmocka_unit_test(test_gw_config__marketplace_errors_name_the_field),
		cmocka_unit_test(test_gw_config__marketplace_environment_overrides),
		cmocka_unit_test(test_gw_config__reload_keeps_start_up_options),
	};
	return cmocka_run_group_tests_name("gw_config", tests, NULL, NULL);
}
