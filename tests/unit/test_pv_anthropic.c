/* provider OpenAI <-> Anthropic mapping: requests, stream events, whole replies, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pv_anthropic.h"

static void map_req(const char *in, const char *want, bool want_stream)
{
	struct rc_buf out = RC_BUF_INIT;
	struct rc_errinfo e;
	bool stream = !want_stream;
	assert_int_equal(pv_anthropic_map_request(in, strlen(in), "claude-x", &out, &stream, &e),
	                 RC_OK);
	assert_string_equal(out.ptr, want);
	assert_int_equal(stream, want_stream);
	rc_buf_release(&out);
}

static void test_pv_anthropic__request_mapping(void **state)
{
	(void)state;
	/* system prompts (both kinds) joined, defaults: max_tokens 1024, no stream */
	map_req("{\"model\":\"gpt\",\"messages\":[{\"role\":\"system\",\"content\":\"A\"},"
	        "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"B\"}]},"
	        "{\"role\":\"user\",\"content\":\"hi <&>\"}]}",
	        "{\"model\":\"claude-x\",\"system\":\"A\\n\\nB\",\"messages\":[{\"role\":\"user\","
	        "\"content\":\"hi <&>\"}],\"max_tokens\":1024}",
	        false);
	/* max_completion_tokens wins over max_tokens; stop string; sampling; stream; parts */
	map_req("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q\"}]"
	        "},"
	        "{\"role\":\"assistant\",\"content\":\"a\"}],\"max_tokens\":5,"
	        "\"max_completion_tokens\":9,\"stop\":\"END\",\"temperature\":0.5,\"top_p\":1,"
	        "\"stream\":true,\"n\":1}",
	        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
	        "\"text\",\"text\":\"q\"}]},{\"role\":\"assistant\",\"content\":\"a\"}],"
	        "\"max_tokens\":9,\"stop_sequences\":[\"END\"],\"temperature\":0.5,\"top_p\":1,"
	        "\"stream\":true}",
	        true);
	/* stop array */
	map_req("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\"],"
	        "\"max_tokens\":3}",
	        "{\"model\":\"claude-x\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
	        "\"max_tokens\":3,\"stop_sequences\":[\"a\",\"b\"]}",
	        false);
}

static void req_err(const char *in, int rc, const char *text)
{
	struct rc_buf out = RC_BUF_INIT;
	struct rc_errinfo e;
	bool stream;
	memset(&e, 0, sizeof e);
	assert_int_equal(pv_anthropic_map_request(in, strlen(in), "m", &out, &stream, &e), rc);
	if (text && !strstr(e.text, text))
		fail_msg("error '%s' lacks '%s'", e.text, text);
	rc_buf_release(&out);
}

static void test_pv_anthropic__request_errors(void **state)
{
	(void)state;
	req_err("{", RC_EPARSE, NULL);
	req_err("[]", RC_EPROTO, "request: not an object");
	req_err("{\"messages\":[]}", RC_EPROTO, "messages: not a non-empty array");
	req_err("{\"messages\":[{\"content\":\"x\"}]}", RC_EPROTO, "messages[0].role: missing");
	req_err("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", RC_EPROTO,
	        "messages[0].role: 'tool' not supported");
	req_err("{\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", RC_EPROTO,
	        "no user or assistant message");
	req_err("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
	        RC_EPROTO, "only text parts");
	req_err("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}",
	        RC_EPROTO, "max_tokens");
	req_err("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", RC_EPROTO,
	        "stop[0]");
}

static void event(struct pv_anthropic_stream *st, const char *data, const char *want, int want_done)
{
	struct rc_buf out = RC_BUF_INIT;
	struct rc_errinfo e;
	int done = 0;
	assert_int_equal(pv_anthropic_stream_event(st, data, strlen(data), &out, &done, &e), RC_OK);
	if (want)
		assert_string_equal(out.ptr, want);
	else
		assert_int_equal(out.len, 0);
	assert_int_equal(done, want_done);
	rc_buf_release(&out);
}

static void test_pv_anthropic__stream_mapping(void **state)
{
	(void)state;
	struct pv_anthropic_stream st;
	pv_anthropic_stream_init(&st, 1700000000);
	event(&st,
	      "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x\","
	      "\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}",
	      "{\"id\":\"msg_1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
	      "\"model\":\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
	      "\"content\":\"\"},\"finish_reason\":null}]}",
	      0);
	event(&st, "{\"type\":\"content_block_start\",\"index\":0}", NULL, 0);
	event(&st, "{\"type\":\"ping\"}", NULL, 0);
	event(&st,
	      "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
	      "\"text\":\"Hi\"}}",
	      "{\"id\":\"msg_1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
	      "\"model\":\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},"
	      "\"finish_reason\":null}]}",
	      0);
	event(&st,
	      "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\","
	      "\"partial_json\":\"{\"}}",
	      NULL, 0);
	event(&st,
	      "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},"
	      "\"usage\":{\"output_tokens\":7}}",
	      "{\"id\":\"msg_1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
	      "\"model\":\"claude-x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
	      "\"length\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,"
	      "\"total_tokens\":19}}",
	      0);
	event(&st, "{\"type\":\"message_stop\"}", NULL, 1);
	assert_int_equal(st.tokens_in, 12);
	assert_int_equal(st.tokens_out, 7);
}

static void test_pv_anthropic__stream_errors(void **state)
{
	(void)state;
	struct pv_anthropic_stream st;
	struct rc_buf out = RC_BUF_INIT;
	struct rc_errinfo e;
	int done = 0;
	const char *ev = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
	                 "\"Overloaded\"}}";
	pv_anthropic_stream_init(&st, 1);
	assert_int_equal(pv_anthropic_stream_event(&st, ev, strlen(ev), &out, &done, &e),
	                 RC_EPROTO);
	assert_string_equal(
	        out.ptr, "{\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}");
	rc_buf_reset(&out);
	assert_int_equal(pv_anthropic_stream_event(&st, "nope", 4, &out, &done, &e), RC_EPARSE);
	assert_int_equal(pv_anthropic_stream_event(&st, "{}", 2, &out, &done, &e), RC_EPROTO);
	assert_int_equal(out.len, 0);
	rc_buf_release(&out);
}

static void test_pv_anthropic__whole_reply_and_stop_reasons(void **state)
{
	(void)state;
	struct rc_buf out = RC_BUF_INIT;
	struct rc_errinfo e;
	uint64_t in = 0, ot = 0;
	const char *r =
	        "{\"id\":\"msg_2\",\"type\":\"message\",\"model\":\"claude-x\",\"content\":["
	        "{\"type\":\"text\",\"text\":\"Hel\"},{\"type\":\"text\",\"text\":\"lo\"}],"
	        "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":3,"
	        "\"output_tokens\":2}}";
	assert_int_equal(pv_anthropic_map_response(r, strlen(r), 5, &out, &in, &ot, &e), RC_OK);
	assert_string_equal(
	        out.ptr, "{\"id\":\"msg_2\",\"object\":\"chat.completion\",\"created\":5,\"model\":"
	                 "\"claude-x\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
	                 "\"assistant\",\"content\":\"Hello\"},\"finish_reason\":\"stop\"}],"
	                 "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"
	                 "\"total_tokens\":5}}");
	assert_int_equal(in, 3);
	assert_int_equal(ot, 2);
	rc_buf_reset(&out);
	assert_int_equal(pv_anthropic_map_response("{}", 2, 5, &out, NULL, NULL, &e), RC_EPROTO);
	rc_buf_release(&out);
	assert_string_equal(pv_anthropic_finish_reason("end_turn"), "stop");
	assert_string_equal(pv_anthropic_finish_reason("stop_sequence"), "stop");
	assert_string_equal(pv_anthropic_finish_reason("max_tokens"), "length");
	assert_string_equal(pv_anthropic_finish_reason("tool_use"), "tool_calls");
	assert_string_equal(pv_anthropic_finish_reason(NULL), "stop");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pv_anthropic__request_mapping),
	        cmocka_unit_test(test_pv_anthropic__request_errors),
	        cmocka_unit_test(test_pv_anthropic__stream_mapping),
	        cmocka_unit_test(test_pv_anthropic__stream_errors),
	        cmocka_unit_test(test_pv_anthropic__whole_reply_and_stop_reasons),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
