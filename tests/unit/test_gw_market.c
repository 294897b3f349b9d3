/* gateway marketplace backend, pure parts: chunk framing, usage, error mapping, model JSON,
 * session records (key store and the Redis table). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "gw_coord.h"
#include "gw_market.h"

static void test_gw_market__chunks_frame_as_one_sse_event(void **state)
{
	(void)state;
	struct rc_buf b = RC_BUF_INIT;
	const char *chunk = "{\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}";
	assert_int_equal(gw_market_frame_chunk(&b, chunk, strlen(chunk)), RC_OK);
	assert_int_equal(b.len, strlen(chunk) + 8);
	assert_memory_equal(b.ptr, "data: {", 7);
	assert_memory_equal(b.ptr + b.len - 3, "}\n\n", 3);
	/* appended after what is there; line breaks inside never split the event */
	const char *pretty = "{\n\"a\":\r\n1}";
	assert_int_equal(gw_market_frame_chunk(&b, pretty, strlen(pretty)), RC_OK);
	assert_string_equal(b.ptr + strlen(chunk) + 8, "data: { \"a\":  1}\n\n");
	rc_buf_release(&b);
	/* an empty chunk is still one event */
	assert_int_equal(gw_market_frame_chunk(&b, "", 0), RC_OK);
	assert_string_equal(b.ptr, "data: \n\n");
	rc_buf_release(&b);
}

static void test_gw_market__finish_reason_marks_the_end(void **state)
{
	(void)state;
	static const struct {
		const char *chunk;
		int want;
	} cases[] = {
		{"{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}", 1},
		{"{\"choices\":[{\"finish_reason\" :\n \"length\"}]}", 1},
		{"{\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}", 0},
		{"{\"choices\":[{\"delta\":{\"content\":\"finish_reason\"},\"finish_reason\":null}]}", 0},
		{"{\"a\":\"\\\"finish_reason\\\"\",\"choices\":[{\"finish_reason\":\"stop\"}]}", 1},
		{"\"finish_reason\"", 0},
		{"", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (gw_market_has_finish(cases[i].chunk, strlen(cases[i].chunk)) != cases[i].want)
			fail_msg("case %zu: %s", i, cases[i].chunk);
}

static void test_gw_market__usage_prefers_the_upstream_count(void **state)
{
	(void)state;
	int64_t p = -1, c = -1;
	const char *none = "{\"choices\":[{\"delta\":{\"content\":\"usage\"}}]}";
	assert_int_equal(gw_market_usage(none, strlen(none), &p, &c), 0);
	assert_int_equal(p, -1);
	const char *ufp = "{\"choices\":[],\"usage_from_provider\":{\"prompt_tokens\":7,\"completion_tokens\":3,"
			  "\"total_tokens\":10}}";
	assert_int_equal(gw_market_usage(ufp, strlen(ufp), &p, &c), 2);
	assert_int_equal(p, 7);
	assert_int_equal(c, 3);
	const char *both = "{\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":5},"
			   "\"usage_from_provider\":{\"prompt_tokens\":7,\"completion_tokens\":3}}";
	assert_int_equal(gw_market_usage(both, strlen(both), &p, &c), 1);
	assert_int_equal(p, 11);
	assert_int_equal(c, 5);
	/* null usage (OpenAI streams send "usage":null on content chunks) falls back */
	const char *nul = "{\"usage\":null,\"usage_from_provider\":{\"prompt_tokens\":2,\"completion_tokens\":1}}";
	assert_int_equal(gw_market_usage(nul, strlen(nul), &p, &c), 2);
	assert_int_equal(p, 2);
	/* negative counts are clamped, broken JSON is no usage */
	const char *neg = "{\"usage\":{\"prompt_tokens\":-4,\"completion_tokens\":9}}";
	assert_int_equal(gw_market_usage(neg, strlen(neg), &p, &c), 1);
	assert_int_equal(p, 0);
	assert_int_equal(c, 9);
	const char *bad = "{\"usage\":{\"prompt_tokens\":1";
	assert_int_equal(gw_market_usage(bad, strlen(bad), &p, &c), 0);
}

static void test_gw_market__errors_map_to_statuses(void **state)
{
	(void)state;
	static const struct {
		enum rc_pool_reason r;
		const char *text;
		int status, be;
		const char *code, *msg;
	} cases[] = {
		{RC_POOL_UNKNOWN_MODEL, "", 404, GW_BE_EUNAVAILABLE, "model_not_found", "the model 'llama' does not exist"},
		{RC_POOL_NO_BIDS, "", 503, GW_BE_EUNAVAILABLE, "no_bids", "no provider offers model llama right now"},
		{RC_POOL_NO_PROVIDER, "0xabc…: dial: connection refused; 0xdef: no capacity", 503, GW_BE_EUNAVAILABLE,
		 "no_provider", "0xabc???: dial: connection refused; 0xdef: no capacity"},
		{RC_POOL_CHAIN, "rpc: timeout at http://user:pw@node", 503, GW_BE_EUNAVAILABLE, "chain_unreachable",
		 "the marketplace chain is unreachable: cannot open a session"},
		{RC_POOL_FUNDS, "", 503, GW_BE_EUNAVAILABLE, "marketplace_funds", "cannot pay"},
		{RC_POOL_TIMEOUT, "", 504, GW_BE_ETIMEOUT, "marketplace_timeout", "in time"},
		{RC_POOL_PROVIDER, "recv: reset", 502, GW_BE_EUPSTREAM, "upstream_failed", "recv: reset"},
		{RC_POOL_PROVIDER_ERROR, "{\"providerModelError\":\"quota\"}", 502, GW_BE_EUPSTREAM, "provider_error",
		 "the provider answered with an error: {\"providerModelError\":\"quota\"}"},
		{RC_POOL_INTERNAL, "", 502, GW_BE_EUPSTREAM, "marketplace_error", "failed"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct rc_pool_err err;
		memset(&err, 0, sizeof err);
		err.reason = cases[i].r;
		snprintf(err.text, sizeof err.text, "%s", cases[i].text);
		struct gw_call_error ce;
		int be = 99;
		gw_market_map_error(&err, "llama", &ce, &be);
		if (ce.status != cases[i].status || be != cases[i].be || strcmp(ce.code, cases[i].code) ||
		    !strstr(ce.message, cases[i].msg))
			fail_msg("case %zu (%s): %d %d %s '%s'", i, rc_pool_reason_name(cases[i].r), ce.status, be,
				 ce.code, ce.message);
		/* the chain's error text (which may hold an RPC URL) never reaches the client */
		assert_null(strstr(ce.message, "pw@"));
		if (ce.status == 503)
			assert_true(ce.retry_after_s > 0);
	}
	struct rc_pool_err err;
	memset(&err, 0, sizeof err);
	struct gw_call_error ce;
	int be;
	err.reason = RC_POOL_CANCELLED;
	gw_market_map_error(&err, "m", &ce, &be);
	assert_int_equal(ce.status, 0);
	assert_int_equal(be, GW_BE_ECANCELLED);
	err.reason = RC_POOL_OK;
	gw_market_map_error(&err, "m", &ce, &be);
	assert_int_equal(ce.status, 0);
	assert_int_equal(be, GW_BE_OK);
	/* a provider's text with control bytes and a long model name stay printable and bounded */
	err.reason = RC_POOL_PROVIDER_ERROR;
	memset(err.text, 'x', sizeof err.text - 1);
	err.text[3] = '\n';
	err.text[4] = (char)0xff;
	char model[300];
	memset(model, 'm', sizeof model - 1);
	model[sizeof model - 1] = '\0';
	gw_market_map_error(&err, model, &ce, &be);
	assert_true(strlen(ce.message) < sizeof ce.message);
	for (const char *q = ce.message; *q; q++)
		assert_true(*q >= 0x20 && *q < 0x7f);
}

static void test_gw_market__error_event_is_openai_shape(void **state)
{
	(void)state;
	struct gw_call_error ce;
	struct rc_pool_err err;
	memset(&err, 0, sizeof err);
	err.reason = RC_POOL_PROVIDER_ERROR;
	snprintf(err.text, sizeof err.text, "bad \"quote\" \\ here");
	int be;
	gw_market_map_error(&err, "m", &ce, &be);
	struct rc_buf b = RC_BUF_INIT;
	assert_int_equal(gw_market_error_event(&b, &ce), RC_OK);
	assert_memory_equal(b.ptr, "data: ", 6);
	assert_memory_equal(b.ptr + b.len - 2, "\n\n", 2);
	json_error_t je;
	json_t *o = json_loadb(b.ptr + 6, b.len - 8, 0, &je);
	assert_non_null(o);
	json_t *e = json_object_get(o, "error");
	assert_string_equal(json_string_value(json_object_get(e, "code")), "provider_error");
	assert_string_equal(json_string_value(json_object_get(e, "type")), "upstream_error");
	assert_true(json_is_null(json_object_get(e, "param")));
	assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "bad \"quote\" \\ here"));
	json_decref(o);
	rc_buf_release(&b);
}

static void test_gw_market__model_entries_escape_chain_strings(void **state)
{
	(void)state;
	struct rc_pool_model m;
	memset(&m, 0, sizeof m);
	snprintf(m.name, sizeof m.name, "llama\"3");
	m.id[0] = 0xab;
	m.id[31] = 0x01;
	m.ntags = 2;
	snprintf(m.tags[0], sizeof m.tags[0], "llm");
	snprintf(m.tags[1], sizeof m.tags[1], "bad\xff<tag>");
	m.active_bids = 3;
	m.created_at = 1735689600;
	struct rc_buf b = RC_BUF_INIT;
	assert_int_equal(gw_market_model_json(&b, &m, NULL), RC_OK);
	json_t *o = json_loadb(b.ptr, b.len, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "id")), "llama\"3");
	assert_string_equal(json_string_value(json_object_get(o, "object")), "model");
	assert_string_equal(json_string_value(json_object_get(o, "owned_by")), "morpheus");
	assert_int_equal(json_integer_value(json_object_get(o, "created")), 1735689600);
	json_t *mo = json_object_get(o, "morpheus");
	assert_string_equal(json_string_value(json_object_get(mo, "model_id")),
			    "0xab00000000000000000000000000000000000000000000000000000000000001");
	assert_int_equal(json_integer_value(json_object_get(mo, "active_bids")), 3);
	json_t *tags = json_object_get(mo, "tags");
	assert_int_equal(json_array_size(tags), 2);
	assert_string_equal(json_string_value(json_array_get(tags, 1)), "bad\xef\xbf\xbd<tag>");
	assert_null(json_object_get(mo, "alias_of"));
	json_decref(o);
	rc_buf_reset(&b);
	assert_int_equal(gw_market_model_json(&b, &m, "llama"), RC_OK);
	o = json_loadb(b.ptr, b.len, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "id")), "llama");
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "morpheus"), "alias_of")), "llama\"3");
	json_decref(o);
	rc_buf_release(&b);
}

static void sample_session(struct rc_pool_session *s)
{
	memset(s, 0, sizeof *s);
	s->local_id = 0x8000000000000123ull;
	for (int i = 0; i < 32; i++) {
		s->id[i] = (uint8_t)(i + 1);
		s->model_id[i] = (uint8_t)(0xa0 + i);
		s->bid_id[i] = (uint8_t)(0x10 + i);
		s->open_tx[i] = (uint8_t)(0x40 + i);
	}
	snprintf(s->model, sizeof s->model, "m-chat");
	for (int i = 0; i < 20; i++)
		s->provider[i] = (uint8_t)(0x70 + i);
	snprintf(s->endpoint, sizeof s->endpoint, "127.0.0.1:3333");
	s->provider_key[0] = 0x04;
	s->provider_key[64] = 0x99;
	rc_u256_parse_dec(&s->stake, "123456789012345678901234567890", 30, NULL);
	rc_u256_from_u64(&s->price_per_second, 10000000000ull);
	s->opened_at = 1735689600;
	s->ends_at = 1735690200;
	s->state = RC_POOL_S_OPEN;
	s->requests = 7;
	s->failures = 1;
	s->updated_ms = 1735689601234;
}

static void test_gw_market__session_records_round_trip(void **state)
{
	(void)state;
	struct rc_pool_session s, back;
	sample_session(&s);
	struct ks_session k;
	gw_market_session_to_ks(&s, &k);
	assert_string_equal(k.id, "0x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
	assert_string_equal(k.provider, "0x707172737475767778797a7b7c7d7e7f80818283");
	assert_string_equal(k.state, "open");
	assert_string_equal(k.stake, "123456789012345678901234567890");
	assert_string_equal(k.price, "10000000000");
	assert_string_equal(k.close_tx, ""); /* zero: unknown */
	assert_int_equal(k.updated_at, 1735689601234);
	assert_int_equal(gw_market_session_from_ks(&k, &back), 0);
	assert_memory_equal(&back.id, &s.id, 32);
	assert_memory_equal(&back.provider_key, &s.provider_key, sizeof s.provider_key);
	assert_int_equal(back.local_id, s.local_id);
	assert_int_equal(rc_u256_cmp(&back.stake, &s.stake), 0);
	assert_int_equal(back.state, RC_POOL_S_OPEN);
	assert_int_equal(back.ends_at, s.ends_at);
	assert_int_equal(back.requests, 7);
	assert_string_equal(back.endpoint, "127.0.0.1:3333");
	/* an opening record: no session id, no provider key yet */
	s.state = RC_POOL_S_OPENING;
	memset(s.id, 0, 32);
	memset(s.provider_key, 0, sizeof s.provider_key);
	gw_market_session_to_ks(&s, &k);
	assert_string_equal(k.id, "");
	assert_string_equal(k.provider_key, "");
	assert_int_equal(gw_market_session_from_ks(&k, &back), 0);
	assert_int_equal(back.state, RC_POOL_S_OPENING);
	/* chain strings the key store refuses: an unknown (empty) model is named by its id, control
	 * bytes in a registered endpoint become '?' */
	s.model[0] = '\0';
	snprintf(s.endpoint, sizeof s.endpoint, "evil\r\nhost:1\x7f");
	gw_market_session_to_ks(&s, &k);
	assert_string_equal(k.model, k.model_id);
	assert_string_equal(k.endpoint, "evil??host:1?");
	/* damaged records are refused */
	struct ks_session bad = k;
	snprintf(bad.state, sizeof bad.state, "weird");
	assert_int_equal(gw_market_session_from_ks(&bad, &back), -1);
	bad = k;
	snprintf(bad.bid_id, sizeof bad.bid_id, "0x12");
	assert_int_equal(gw_market_session_from_ks(&bad, &back), -1);
	bad = k;
	snprintf(bad.stake, sizeof bad.stake, "12a");
	assert_int_equal(gw_market_session_from_ks(&bad, &back), -1);
}

static void test_gw_market__shared_table_json_round_trips(void **state)
{
	(void)state;
	struct rc_pool_session s, back;
	sample_session(&s);
	s.dispute = true;
	char *txt = gw_coord_session_json(&s);
	assert_non_null(txt);
	assert_int_equal(gw_coord_session_parse(txt, strlen(txt), &back), 0);
	assert_memory_equal(back.id, s.id, 32);
	assert_memory_equal(back.bid_id, s.bid_id, 32);
	assert_memory_equal(back.provider, s.provider, 20);
	assert_memory_equal(back.provider_key, s.provider_key, sizeof s.provider_key);
	assert_int_equal(back.local_id, s.local_id);
	assert_true(back.dispute);
	assert_int_equal(rc_u256_cmp(&back.price_per_second, &s.price_per_second), 0);
	free(txt);
	assert_int_equal(gw_coord_session_parse("{}", 2, &back), -1);
	assert_int_equal(gw_coord_session_parse("not json", 8, &back), -1);
	const char *wrong = "{\"local_id\":\"1\"}";
	assert_int_equal(gw_coord_session_parse(wrong, strlen(wrong), &back), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gw_market__chunks_frame_as_one_sse_event),
		cmocka_unit_test(test_gw_market__finish_reason_marks_the_end),
		cmocka_unit_test(test_gw_market__usage_prefers_the_upstream_count),
		cmocka_unit_test(test_gw_market__errors_map_to_statuses),
		cmocka_unit_test(test_gw_market__error_event_is_openai_shape),
		cmocka_unit_test(test_gw_market__model_entries_escape_chain_strings),
		cmocka_unit_test(test_gw_market__session_records_round_trip),
		cmocka_unit_test(test_gw_market__shared_table_json_round_trips),
	};
	return cmocka_run_group_tests_name("gw_market", tests, NULL, NULL);
}
