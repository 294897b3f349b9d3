/* gateway SSE reader: [DONE], usage, event counts, whatever the split of the bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gw_sse.h"

static const char stream[] =
	": comment\r\n\r\n"
	"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n"
	"event: x\nid: 1\ndata: {\"choices\":[]}\ndata: {\"more\":1}\n\n"
	"data:{\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3}}\r\r"
	"data: [DONE]\n\n";

static void feed_split(struct gw_sse *s, const char *p, size_t n, size_t step)
{
	for (size_t i = 0; i < n; i += step)
		assert_int_equal(gw_sse_feed(s, p + i, i + step <= n ? step : n - i), 0);
}

static void test_gw_sse__results_do_not_depend_on_the_split(void **state)
{
	(void)state;
	for (size_t step = 1; step <= sizeof stream; step++) {
		struct gw_sse s;
		gw_sse_init(&s);
		feed_split(&s, stream, sizeof stream - 1, step);
		assert_int_equal(s.saw_done, 1);
		assert_int_equal(s.events, 3);
		assert_int_equal(s.have_usage, 1);
		assert_int_equal(s.prompt_tokens, 11);
		assert_int_equal(s.completion_tokens, 3);
		assert_int_equal(s.saw_error, 0);
		gw_sse_release(&s);
	}
}

static void test_gw_sse__errors_and_no_done(void **state)
{
	(void)state;
	struct gw_sse s;
	gw_sse_init(&s);
	const char t[] = "data: {\"error\":{\"message\":\"x\"}}\n\ndata: [DONE]x\n\n";
	feed_split(&s, t, sizeof t - 1, 5);
	assert_int_equal(s.saw_error, 1);
	assert_int_equal(s.saw_done, 0); /* "[DONE]x" is not the terminator */
	assert_int_equal(s.events, 2);
	gw_sse_release(&s);
}

static void test_gw_sse__usage_from_json(void **state)
{
	(void)state;
	int64_t p = -1, c = -1;
	const char a[] = "{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9,\"total_tokens\":14}}";
	assert_int_equal(gw_usage_from_json(a, sizeof a - 1, &p, &c), 1);
	assert_int_equal(p, 5);
	assert_int_equal(c, 9);
	const char b[] = "{\"usage\":null}";
	assert_int_equal(gw_usage_from_json(b, sizeof b - 1, &p, &c), 0);
	assert_int_equal(gw_usage_from_json("junk", 4, &p, &c), 0);
	const char d[] = "{\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":2}}";
	assert_int_equal(gw_usage_from_json(d, sizeof d - 1, &p, &c), 1);
	assert_int_equal(p, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gw_sse__results_do_not_depend_on_the_split),
		cmocka_unit_test(test_gw_sse__errors_and_no_done),
		cmocka_unit_test(test_gw_sse__usage_from_json),
	};
	return cmocka_run_group_tests_name("gw_sse", tests, NULL, NULL);
}
