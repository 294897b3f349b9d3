/* gateway config: defaults, parsing, precise errors with field paths, environment overrides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gw_config.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gw_config__defaults_run_the_demo),
		cmocka_unit_test(test_gw_config__a_full_config),
		cmocka_unit_test(test_gw_config__errors_name_the_field),
		cmocka_unit_test(test_gw_config__environment_overrides),
	};
	return cmocka_run_group_tests_name("gw_config", tests, NULL, NULL);
}
