/* provider models-config.json and node config: both shapes, defaults, precise errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <stdio.h>

#include "pv_config.h"
#include "pv_models.h"

#define ID_LOWER "0x00000000000000000000000000000000000000000000000000000000000000ab"
#define ID_UPPER "0x00000000000000000000000000000000000000000000000000000000000000AB"
#define ID2 "0x1111111111111111111111111111111111111111111111111111111111111111"

static int parse(const char *s, struct pv_models **m, struct rc_errinfo *e)
{
	return pv_models_parse(s, strlen(s), m, e);
}

static void test_pv_models__v2_full_entry(void **state)
{
	(void)state;
	struct pv_models *m;
	struct rc_errinfo e;
	const char *s =
	        "{\"$schema\":\"x\",\"models\":[{\"modelId\":\"" ID_UPPER "\","
	        "\"modelName\":\"gpt-4o-mini\",\"apiType\":\"openai\","
	        "\"apiUrl\":\"https://api.openai.com/v1/chat/completions/\","
	        "\"apiKey\":\"sk-1\",\"concurrentSlots\":8,\"capacityPolicy\":\"idle_timeout\","
	        "\"parameters\":{\"steps\":\"20\"},\"extra\":1},"
	        "{\"modelId\":\"" ID2 "\",\"modelName\":\"claude-3-5-haiku-latest\","
	        "\"apiType\":\"claudeai\",\"apiUrl\":\"https://api.anthropic.com/v1/messages\"}]}";
	assert_int_equal(parse(s, &m, &e), RC_OK);
	assert_int_equal(m->n, 2);
	assert_string_equal(m->models[0].id_hex, ID_LOWER);
	assert_string_equal(m->models[0].name, "gpt-4o-mini");
	assert_int_equal(m->models[0].api, PV_API_OPENAI);
	assert_string_equal(m->models[0].url, "https://api.openai.com/v1/chat/completions");
	assert_string_equal(m->models[0].key, "sk-1");
	assert_int_equal(m->models[0].slots, 8);
	assert_int_equal(m->models[0].policy, PV_CAP_IDLE_TIMEOUT);
	assert_int_equal(m->models[1].api, PV_API_CLAUDEAI);
	assert_string_equal(m->models[1].key, "");
	assert_int_equal(m->models[1].slots, 0);
	assert_int_equal(m->models[1].policy, PV_CAP_SIMPLE);
	uint8_t id[32] = {0};
	id[31] = 0xab;
	assert_ptr_equal(pv_models_find(m, id), &m->models[0]);
	assert_int_equal(pv_models_index(m, &m->models[1]), 1);
	id[31] = 0xac;
	assert_null(pv_models_find(m, id));
	pv_models_free(m);
}

static void test_pv_models__legacy_shape(void **state)
{
	(void)state;
	struct pv_models *m;
	struct rc_errinfo e;
	const char *s = "{\"" ID_LOWER "\":{\"modelName\":\"m\",\"apiType\":\"openai\","
	                "\"apiUrl\":\"http://127.0.0.1:8080/v1/chat/completions\"}}";
	assert_int_equal(parse(s, &m, &e), RC_OK);
	assert_int_equal(m->n, 1);
	assert_string_equal(m->models[0].id_hex, ID_LOWER);
	pv_models_free(m);
}

static void expect_err(const char *s, int rc, const char *text)
{
	struct pv_models *m = (struct pv_models *)1;
	struct rc_errinfo e;
	memset(&e, 0, sizeof e);
	assert_int_equal(parse(s, &m, &e), rc);
	assert_null(m);
	if (!strstr(e.text, text))
		fail_msg("error '%s' lacks '%s'", e.text, text);
}

#define ENTRY(fields) "{\"models\":[{\"modelId\":\"" ID_LOWER "\"," fields "}]}"
#define OK_FIELDS "\"modelName\":\"m\",\"apiType\":\"openai\",\"apiUrl\":\"http://h/v1\""

static void test_pv_models__errors_name_the_field(void **state)
{
	(void)state;
	expect_err("{\"models\":[", RC_EPARSE, "line 1");
	expect_err("[]", RC_EPROTO, "top level: not an object");
	expect_err("{\"models\":{}}", RC_EPROTO, "models: not an array");
	expect_err("{\"models\":[]}", RC_EPROTO, "no model configured");
	expect_err("{\"models\":[{\"modelId\":\"0x12\"," OK_FIELDS "}]}", RC_EPROTO,
	           "models[0].modelId: not 0x and 64 hex digits");
	expect_err("{\"models\":[{" OK_FIELDS "}]}", RC_EPROTO, "models[0].modelId: missing");
	expect_err(ENTRY("\"modelName\":\"\",\"apiType\":\"openai\",\"apiUrl\":\"http://h\""),
	           RC_EPROTO, "models[0].modelName: missing or empty");
	expect_err(ENTRY("\"modelName\":\"m\",\"apiType\":\"prodia-v2\",\"apiUrl\":\"http://h\""),
	           RC_EPROTO, "models[0].apiType: unsupported 'prodia-v2'");
	expect_err(ENTRY("\"modelName\":\"m\",\"apiType\":\"openai\",\"apiUrl\":\"ftp://h\""),
	           RC_EPROTO, "models[0].apiUrl: not an http:// or https:// URL");
	expect_err(ENTRY(OK_FIELDS ",\"concurrentSlots\":-1"), RC_EPROTO,
	           "models[0].concurrentSlots");
	expect_err(ENTRY(OK_FIELDS ",\"concurrentSlots\":1.5"), RC_EPROTO,
	           "models[0].concurrentSlots");
	expect_err(ENTRY(OK_FIELDS ",\"capacityPolicy\":\"greedy\""), RC_EPROTO,
	           "models[0].capacityPolicy: unknown 'greedy'");
	expect_err(ENTRY(OK_FIELDS ",\"parameters\":{\"a\":1}"), RC_EPROTO,
	           "models[0].parameters.a: not a string");
	expect_err(ENTRY(OK_FIELDS ",\"apiKey\":\"a\\nb\""), RC_EPROTO, "models[0].apiKey");
	expect_err("{\"models\":[{\"modelId\":\"" ID_LOWER "\"," OK_FIELDS
	           "},{\"modelId\":\"" ID_UPPER "\"," OK_FIELDS "}]}",
	           RC_EPROTO, "models[1].modelId: duplicate of models[0]");
	expect_err("{\"models\":[], \"models\":[]}", RC_EPARSE, "duplicate");
}

static void test_pv_models__demo_backend(void **state)
{
	(void)state;
	struct pv_models *m;
	struct rc_errinfo e;
	/* no apiUrl needed; chunkMs from parameters; the default pace otherwise */
	const char *s = "{\"models\":[{\"modelId\":\"" ID_LOWER "\",\"modelName\":\"morpheus-demo\","
	                "\"apiType\":\"demo\",\"parameters\":{\"chunkMs\":\"5\"}},"
	                "{\"modelId\":\"" ID2 "\",\"modelName\":\"d2\",\"apiType\":\"demo\","
	                "\"apiUrl\":\"http://unused/\"}]}";
	assert_int_equal(parse(s, &m, &e), RC_OK);
	assert_int_equal(m->models[0].api, PV_API_DEMO);
	assert_string_equal(pv_api_type_name(m->models[0].api), "demo");
	assert_string_equal(m->models[0].url, "");
	assert_string_equal(m->models[0].key, "");
	assert_int_equal(m->models[0].demo_chunk_ms, 5);
	assert_int_equal(m->models[1].demo_chunk_ms, PV_DEMO_CHUNK_MS_DEFAULT);
	assert_string_equal(m->models[1].url, "http://unused");
	pv_models_free(m);

	expect_err(ENTRY("\"modelName\":\"m\",\"apiType\":\"openai\""), RC_EPROTO,
	           "models[0].apiUrl: missing"); /* only demo may omit it */
	expect_err(ENTRY("\"modelName\":\"m\",\"apiType\":\"demo\",\"apiUrl\":\"ftp://x\""),
	           RC_EPROTO, "models[0].apiUrl: not an http:// or https:// URL");
	static const char *const bad_ms[] = {"-1", "", "10001", "5ms", "99999999999999999999", " 5"};
	for (size_t i = 0; i < sizeof bad_ms / sizeof bad_ms[0]; i++) {
		char buf[512];
		snprintf(buf, sizeof buf,
		         "{\"models\":[{\"modelId\":\"" ID_LOWER "\",\"modelName\":\"m\","
		         "\"apiType\":\"demo\",\"parameters\":{\"chunkMs\":\"%s\"}}]}",
		         bad_ms[i]);
		expect_err(buf, RC_EPROTO, "models[0].parameters.chunkMs: not a number of ms 0..10000");
	}
	/* chunkMs means nothing to other adapters and is left alone there */
	s = "{\"models\":[{\"modelId\":\"" ID_LOWER "\",\"modelName\":\"m\",\"apiType\":\"openai\","
	    "\"apiUrl\":\"http://h/v1\",\"parameters\":{\"chunkMs\":\"x\"}}]}";
	assert_int_equal(parse(s, &m, &e), RC_OK);
	pv_models_free(m);
}

static void test_pv_config__defaults_and_overrides(void **state)
{
	(void)state;
	struct pv_config c;
	struct rc_errinfo e;
	const char *s = "{\"models_config\":\"m.json\",\"wallet\":\"w.key\",\"rpc\":\"http://r\","
	                "\"network\":\"base\"}";
	assert_int_equal(pv_config_parse(s, strlen(s), &c, &e), RC_OK);
	assert_string_equal(c.listen, "0.0.0.0:3333");
	assert_string_equal(c.admin_listen, "127.0.0.1:9334");
	assert_int_equal(c.chain_id, 8453);
	assert_int_equal(c.nrpc, 1);
	assert_int_equal(c.backend_timeout_ms, 240000);
	pv_config_release(&c);
	s = "{\"models_config\":\"m.json\",\"wallet\":\"w.key\",\"rpc\":[\"http://a\",\"https://"
	    "b\"],"
	    "\"diamond\":\"0x0000000000000000000000000000000000000001\","
	    "\"mor\":\"0x0000000000000000000000000000000000000002\",\"listen\":\"127.0.0.1:4000\","
	    "\"chain_id\":31337,\"max_connections\":5}";
	assert_int_equal(pv_config_parse(s, strlen(s), &c, &e), RC_OK);
	assert_int_equal(c.nrpc, 2);
	assert_int_equal(c.diamond[19], 1);
	assert_int_equal(c.mor[19], 2);
	assert_int_equal(c.max_connections, 5);
	pv_config_release(&c);

	char host[64], buf[64];
	unsigned port;
	assert_int_equal(pv_config_split_hostport("[::1]:80", host, sizeof host, &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 80);
	assert_int_equal(pv_config_split_hostport(":3333", host, sizeof host, &port), 0);
	assert_string_equal(host, "");
	assert_int_equal(pv_config_split_hostport("h:99999", host, sizeof host, &port), -1);
	assert_int_equal(pv_config_split_hostport("h", host, sizeof host, &port), -1);
	assert_string_equal(pv_config_path("/etc/p/provider.json", "m.json", buf, sizeof buf),
	                    "/etc/p/m.json");
	assert_string_equal(pv_config_path("/etc/p/provider.json", "/x", buf, sizeof buf), "/x");
	assert_string_equal(pv_config_path("provider.json", "m.json", buf, sizeof buf), "m.json");
}

static void config_err(const char *s, const char *text)
{
	struct pv_config c;
	struct rc_errinfo e;
	memset(&e, 0, sizeof e);
	assert_int_not_equal(pv_config_parse(s, strlen(s), &c, &e), RC_OK);
	if (!strstr(e.text, text))
		fail_msg("error '%s' lacks '%s'", e.text, text);
}

static void test_pv_config__errors_name_the_member(void **state)
{
	(void)state;
	config_err("{\"wallet\":\"w\",\"rpc\":\"http://r\",\"network\":\"base\"}",
	           "models_config: missing");
	config_err("{\"models_config\":\"m\",\"wallet\":\"w\",\"rpc\":\"http://r\"}",
	           "diamond: missing");
	config_err("{\"models_config\":\"m\",\"wallet\":\"w\",\"rpc\":\"ws://"
	           "r\",\"network\":\"base\"}",
	           "rpc: 'ws://r' is not http");
	config_err(
	        "{\"models_config\":\"m\",\"wallet\":\"w\",\"rpc\":\"http://r\",\"network\":\"x\"}",
	        "network: not one of");
	config_err("{\"models_config\":\"m\",\"wallet\":\"w\",\"rpc\":\"http://"
	           "r\",\"network\":\"base\","
	           "\"lisen\":\"x\"}",
	           "lisen: unknown member");
	config_err("{\"models_config\":\"m\",\"wallet\":\"w\",\"rpc\":\"http://"
	           "r\",\"network\":\"base\","
	           "\"listen\":\"nowhere\"}",
	           "listen: not host:port");
	config_err("{\"models_config\":\"m\",\"wallet\":\"w\",\"rpc\":\"http://"
	           "r\",\"network\":\"base\","
	           "\"diamond\":\"0x12\"}",
	           "diamond: not a 0x address");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pv_models__v2_full_entry),
	        cmocka_unit_test(test_pv_models__legacy_shape),
	        cmocka_unit_test(test_pv_models__errors_name_the_field),
	        cmocka_unit_test(test_pv_models__demo_backend),
	        cmocka_unit_test(test_pv_config__defaults_and_overrides),
	        cmocka_unit_test(test_pv_config__errors_name_the_member),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
