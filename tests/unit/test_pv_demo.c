/*
 * provider demo backend: the pure generator (pv_demo) and the backend adapter around it
 * (pv_backend_call with apiType "demo"): stream and whole answers in OpenAI's shapes, usage on
 * the final chunk, the prompt echoed, max_tokens, pacing, cancellation, the timeout, and bad
 * requests answered like an OpenAI backend (400 with an error object).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <time.h>

#include "pv_backend.h"
#include "pv_demo.h"
#include "testutil.h"

static json_t *load(const struct rc_buf *b)
{
	json_t *v = json_loadb(b->ptr, b->len, 0, NULL);
	assert_non_null(v);
	return v;
}

static void test_pv_demo__stream_chunks_then_usage(void **state)
{
	(void)state;
	static const char req[] =
	        "{\"model\":\"x\",\"stream\":true,\"messages\":["
	        "{\"role\":\"system\",\"content\":\"be nice\"},"
	        "{\"role\":\"user\",\"content\":\"  what is\\tthe \\\"answer\\\"?\"}]}";
	struct pv_demo d;
	struct rc_errinfo e;
	assert_int_equal(pv_demo_start(&d, req, sizeof req - 1, "morpheus-demo", "chatcmpl-1",
	                               1700000000, &e),
	                 RC_OK);
	struct rc_buf b = RC_BUF_INIT, text = RC_BUF_INIT;
	size_t n = 0;
	int last_was_final = 0;
	for (;;) {
		int word = pv_demo_next_is_word(&d);
		rc_buf_reset(&b);
		int r = pv_demo_next(&d, &b);
		if (r == 0)
			break;
		assert_int_equal(r, 1);
		json_t *v = load(&b);
		assert_string_equal(json_string_value(json_object_get(v, "object")),
		                    "chat.completion.chunk");
		assert_string_equal(json_string_value(json_object_get(v, "id")), "chatcmpl-1");
		assert_string_equal(json_string_value(json_object_get(v, "model")),
		                    "morpheus-demo");
		assert_int_equal(json_integer_value(json_object_get(v, "created")), 1700000000);
		json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
		json_t *delta = json_object_get(ch, "delta");
		assert_non_null(delta);
		if (word) {
			assert_true(json_is_null(json_object_get(ch, "finish_reason")));
			assert_null(json_object_get(v, "usage"));
			const char *t = json_string_value(json_object_get(delta, "content"));
			assert_non_null(t);
			rc_buf_append(&text, t, strlen(t));
			/* the role comes once, on the first chunk */
			assert_int_equal(json_object_get(delta, "role") != NULL, n == 0);
			n++;
		} else {
			assert_int_equal(json_object_size(delta), 0);
			assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")),
			                    "stop");
			json_t *u = json_object_get(v, "usage");
			assert_int_equal(
			        json_integer_value(json_object_get(u, "completion_tokens")), n);
			assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")),
			                 (sizeof req - 1) / 4 + 1);
			assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")),
			                 (sizeof req - 1) / 4 + 1 + n);
			last_was_final = 1;
		}
		json_decref(v);
	}
	assert_true(last_was_final);
	assert_true(n > 10);
	rc_buf_putc(&text, '\0');
	static const char want[] = "You said: what is the \"answer\"?. This answer came from the "
	                           "morgate-provider demo backend";
	assert_memory_equal(text.ptr, want, sizeof want - 1);
	assert_int_equal(pv_demo_next(&d, &b), 0); /* stays finished */
	pv_demo_release(&d);
	pv_demo_release(&d); /* twice is harmless */
	rc_buf_release(&b);
	rc_buf_release(&text);
}

static void test_pv_demo__whole_answer_and_max_tokens(void **state)
{
	(void)state;
	static const char req[] =
	        "{\"messages\":[{\"role\":\"user\",\"content\":["
	        "{\"type\":\"text\",\"text\":\"one two three four five six seven eight "
	        "nine ten eleven twelve thirteen\"}]}],\"max_tokens\":5}";
	struct pv_demo d;
	struct rc_buf b = RC_BUF_INIT;
	assert_int_equal(pv_demo_start(&d, req, sizeof req - 1, "m", "id1", 1, NULL), RC_OK);
	assert_false(pv_demo_next_is_word(&d));
	assert_int_equal(pv_demo_next(&d, &b), 1);
	json_t *v = load(&b);
	assert_string_equal(json_string_value(json_object_get(v, "object")), "chat.completion");
	json_t *ch = json_array_get(json_object_get(v, "choices"), 0);
	assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "length");
	json_t *msg = json_object_get(ch, "message");
	assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
	assert_string_equal(json_string_value(json_object_get(msg, "content")),
	                    "You said: one two three");
	assert_int_equal(json_integer_value(
	                         json_object_get(json_object_get(v, "usage"), "completion_tokens")),
	                 5);
	json_decref(v);
	rc_buf_reset(&b);
	assert_int_equal(pv_demo_next(&d, &b), 0);
	assert_int_equal(b.len, 0);
	pv_demo_release(&d);

	/* the echo stops after 12 words; max_completion_tokens wins over max_tokens */
	static const char req2[] =
	        "{\"messages\":[{\"role\":\"user\",\"content\":\"a b c d e f g h i j k l m n\"}],"
	        "\"max_completion_tokens\":14,\"max_tokens\":2}";
	assert_int_equal(pv_demo_start(&d, req2, sizeof req2 - 1, "m", "id2", 1, NULL), RC_OK);
	rc_buf_reset(&b);
	assert_int_equal(pv_demo_next(&d, &b), 1);
	v = load(&b);
	ch = json_array_get(json_object_get(v, "choices"), 0);
	assert_string_equal(
	        json_string_value(json_object_get(json_object_get(ch, "message"), "content")),
	        "You said: a b c d e f g h i j k l.");
	json_decref(v);
	pv_demo_release(&d);

	/* no user text: still an answer */
	static const char req3[] =
	        "{\"messages\":[{\"role\":\"system\",\"content\":\"x\"}],\"max_tokens\":3}";
	assert_int_equal(pv_demo_start(&d, req3, sizeof req3 - 1, "m", "id3", 1, NULL), RC_OK);
	rc_buf_reset(&b);
	assert_int_equal(pv_demo_next(&d, &b), 1);
	assert_non_null(strstr(b.ptr, "\"content\":\"You said: (nothing).\""));
	pv_demo_release(&d);
	rc_buf_release(&b);
}

static void test_pv_demo__bad_requests(void **state)
{
	(void)state;
	static const struct {
		const char *req;
		int rc;
		const char *text;
	} cases[] = {
	        {"[]", RC_EPARSE, "not a JSON object"},
	        {"{\"messages\":", RC_EPARSE, "not a JSON object"},
	        {"{}", RC_EPROTO, "'messages' must be a non-empty array"},
	        {"{\"messages\":[]}", RC_EPROTO, "'messages' must be a non-empty array"},
	        {"{\"messages\":{}}", RC_EPROTO, "'messages' must be a non-empty array"},
	        {"{\"messages\":[{}],\"max_tokens\":0}", RC_EPROTO,
	         "'max_tokens' must be a positive integer"},
	        {"{\"messages\":[{}],\"max_tokens\":\"5\"}", RC_EPROTO, "'max_tokens'"},
	        {"{\"messages\":[{}],\"max_completion_tokens\":-3}", RC_EPROTO,
	         "'max_completion_tokens'"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct pv_demo d;
		struct rc_errinfo e;
		memset(&e, 0, sizeof e);
		assert_int_equal(
		        pv_demo_start(&d, cases[i].req, strlen(cases[i].req), "m", "i", 1, &e),
		        cases[i].rc);
		if (!strstr(e.text, cases[i].text))
			fail_msg("case %zu: '%s' lacks '%s'", i, e.text, cases[i].text);
		assert_null(d.model);
		assert_null(d.echo);
	}
}

/* ---- through pv_backend_call ---- */

struct sink {
	struct rc_buf all;
	unsigned n;
	int cancel_after; /* cancelled() says yes once this many chunks arrived (0: never) */
	int fail_after;   /* chunk() fails on this chunk (0: never) */
	int64_t first_ms, last_ms;
};

static int on_chunk(void *ud, const char *json, size_t len)
{
	struct sink *s = ud;
	s->n++;
	s->last_ms = tu_ms_now();
	if (!s->first_ms)
		s->first_ms = s->last_ms;
	rc_buf_append(&s->all, json, len);
	rc_buf_putc(&s->all, '\n');
	return s->fail_after && (int)s->n >= s->fail_after ? -1 : 0;
}

static int on_cancelled(void *ud)
{
	struct sink *s = ud;
	return s->cancel_after && (int)s->n >= s->cancel_after;
}

static struct pv_model demo_model(unsigned chunk_ms)
{
	struct pv_model m;
	memset(&m, 0, sizeof m);
	m.name = "morpheus-demo";
	m.api = PV_API_DEMO;
	m.url = "";
	m.key = "";
	m.demo_chunk_ms = chunk_ms;
	return m;
}

static const char stream_req[] = "{\"model\":\"x\",\"stream\":true,\"messages\":[{\"role\":"
                                 "\"user\",\"content\":\"hi there\"}]}";

static void test_pv_demo__backend_streams_paced_with_usage_from_provider(void **state)
{
	(void)state;
	struct pv_model m = demo_model(10);
	struct sink s = {RC_BUF_INIT, 0, 0, 0, 0, 0};
	struct pv_backend_sink sk = {&s, on_chunk, on_cancelled};
	struct pv_backend_result res;
	int64_t t0 = tu_ms_now();
	assert_int_equal(pv_backend_call(&m, stream_req, sizeof stream_req - 1, 10000, &sk, &res),
	                 PV_BACKEND_OK);
	int64_t took = tu_ms_now() - t0;
	unsigned words = s.n - 1;
	assert_int_equal(res.chunks, s.n);
	assert_int_equal(res.status, 200);
	assert_int_equal(res.tokens_out, words);
	assert_int_equal(res.tokens_in, (sizeof stream_req - 1) / 4 + 1);
	/* paced: one pause per word, and the first chunk is not held back */
	assert_true(took >= (int64_t)words * 10);
	assert_true(s.first_ms - t0 < 200);
	rc_buf_putc(&s.all, '\0');
	assert_non_null(
	        strstr(s.all.ptr, "\"delta\":{\"role\":\"assistant\",\"content\":\"You\"}"));
	assert_non_null(strstr(s.all.ptr, "\"content\":\" there.\""));
	/* the final chunk gets usage_from_provider as every backend's does (§2.5.3) */
	char want[128];
	snprintf(want, sizeof want,
	         "\"usage_from_provider\":{\"completion_tokens\":%u,\"prompt_tokens\":%zu,", words,
	         (sizeof stream_req - 1) / 4 + 1);
	assert_non_null(strstr(s.all.ptr, want));
	assert_null(strstr(s.all.ptr, "[DONE]")); /* the end marker is not a chunk */
	pv_backend_result_release(&res);
	rc_buf_release(&s.all);
}

static void test_pv_demo__backend_whole_answer(void **state)
{
	(void)state;
	static const char req[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
	struct pv_model m = demo_model(1000); /* no pause without a stream */
	struct sink s = {RC_BUF_INIT, 0, 0, 0, 0, 0};
	struct pv_backend_sink sk = {&s, on_chunk, NULL};
	struct pv_backend_result res;
	int64_t t0 = tu_ms_now();
	assert_int_equal(pv_backend_call(&m, req, sizeof req - 1, 10000, &sk, &res), PV_BACKEND_OK);
	assert_true(tu_ms_now() - t0 < 500);
	assert_int_equal(s.n, 1);
	rc_buf_putc(&s.all, '\0');
	assert_non_null(strstr(s.all.ptr, "\"object\":\"chat.completion\""));
	assert_non_null(strstr(s.all.ptr, "\"content\":\"You said: hello. This answer came from"));
	assert_non_null(strstr(s.all.ptr, "\"usage_from_provider\":"));
	assert_true(res.tokens_out > 10);
	pv_backend_result_release(&res);
	rc_buf_release(&s.all);
}

static void test_pv_demo__backend_cancel_timeout_and_errors(void **state)
{
	(void)state;
	struct pv_model m = demo_model(50);
	struct pv_backend_result res;

	/* the consumer goes away after 3 chunks: noticed within one poll, no more chunks */
	struct sink s = {RC_BUF_INIT, 0, 3, 0, 0, 0};
	struct pv_backend_sink sk = {&s, on_chunk, on_cancelled};
	int64_t t0 = tu_ms_now();
	assert_int_equal(pv_backend_call(&m, stream_req, sizeof stream_req - 1, 10000, &sk, &res),
	                 PV_BACKEND_CANCELLED);
	assert_int_equal(s.n, 3);
	assert_true(tu_ms_now() - t0 < 3 * 50 + 300);
	pv_backend_result_release(&res);
	rc_buf_release(&s.all);

	/* the sink fails on chunk 2: cancelled at once */
	struct sink s2 = {RC_BUF_INIT, 0, 0, 2, 0, 0};
	struct pv_backend_sink sk2 = {&s2, on_chunk, NULL};
	assert_int_equal(pv_backend_call(&m, stream_req, sizeof stream_req - 1, 10000, &sk2, &res),
	                 PV_BACKEND_CANCELLED);
	assert_int_equal(s2.n, 2);
	pv_backend_result_release(&res);
	rc_buf_release(&s2.all);

	/* bounded by the timeout like a hanging backend */
	struct sink s3 = {RC_BUF_INIT, 0, 0, 0, 0, 0};
	struct pv_backend_sink sk3 = {&s3, on_chunk, on_cancelled};
	t0 = tu_ms_now();
	assert_int_equal(pv_backend_call(&m, stream_req, sizeof stream_req - 1, 120, &sk3, &res),
	                 PV_BACKEND_FAILED);
	assert_true(tu_ms_now() - t0 < 600);
	assert_non_null(strstr(res.text, "backend timed out"));
	assert_true(s3.n >= 2 && s3.n <= 5);
	pv_backend_result_release(&res);
	rc_buf_release(&s3.all);

	/* an invalid chat request: a 400 with OpenAI's error object, to be signed and sent */
	struct sink s4 = {RC_BUF_INIT, 0, 0, 0, 0, 0};
	struct pv_backend_sink sk4 = {&s4, on_chunk, NULL};
	assert_int_equal(pv_backend_call(&m, "{\"messages\":7}", 14, 1000, &sk4, &res),
	                 PV_BACKEND_HTTP_ERROR);
	assert_int_equal(res.status, 400);
	assert_int_equal(s4.n, 0);
	rc_buf_putc(&res.err_body, '\0');
	assert_string_equal(res.err_body.ptr,
	                    "{\"error\":{\"message\":\"'messages' must be a non-empty array\","
	                    "\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}");
	pv_backend_result_release(&res);

	assert_int_equal(pv_backend_call(&m, "nonsense", 8, 1000, &sk4, &res), PV_BACKEND_FAILED);
	assert_string_equal(res.text, "request is not a JSON object");
	pv_backend_result_release(&res);
	rc_buf_release(&s4.all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pv_demo__stream_chunks_then_usage),
	        cmocka_unit_test(test_pv_demo__whole_answer_and_max_tokens),
	        cmocka_unit_test(test_pv_demo__bad_requests),
	        cmocka_unit_test(test_pv_demo__backend_streams_paced_with_usage_from_provider),
	        cmocka_unit_test(test_pv_demo__backend_whole_answer),
	        cmocka_unit_test(test_pv_demo__backend_cancel_timeout_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
