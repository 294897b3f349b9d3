/* gateway Redis URL parser: accepted forms, refusals with offsets, and the format round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "gw_redisurl.h"

static int parse(const char *s, struct gw_redis_url *u, struct gw_redisurl_err *e)
{
	return gw_redisurl_parse(s, strlen(s), u, e);
}

static void test_gw_redisurl__tcp_forms(void **state)
{
	(void)state;
	struct gw_redis_url u;
	assert_int_equal(parse("redis://127.0.0.1", &u, NULL), 0);
	assert_false(u.is_unix);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6379);
	assert_int_equal(u.db, 0);
	assert_string_equal(u.password, "");

	assert_int_equal(parse("redis://:s3cret@cache.internal:6380/4", &u, NULL), 0);
	assert_string_equal(u.host, "cache.internal");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 4);
	assert_string_equal(u.username, "");
	assert_string_equal(u.password, "s3cret");

	assert_int_equal(parse("REDIS://bob:p%40ss%3Aw@[::1]:7000/", &u, NULL), 0);
	assert_string_equal(u.username, "bob");
	assert_string_equal(u.password, "p@ss:w");
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 7000);
	assert_int_equal(u.db, 0);

	/* an unescaped '@' in a password: the last '@' ends the credentials */
	assert_int_equal(parse("redis://:a@b@h", &u, NULL), 0);
	assert_string_equal(u.password, "a@b");
	assert_string_equal(u.host, "h");
}

static void test_gw_redisurl__unix_forms(void **state)
{
	(void)state;
	struct gw_redis_url u;
	assert_int_equal(parse("unix:///run/redis/redis.sock", &u, NULL), 0);
	assert_true(u.is_unix);
	assert_string_equal(u.path, "/run/redis/redis.sock");
	assert_int_equal(u.db, 0);
	assert_int_equal(parse("unix:///tmp/r.sock?db=3&password=x%20y", &u, NULL), 0);
	assert_string_equal(u.path, "/tmp/r.sock");
	assert_int_equal(u.db, 3);
	assert_string_equal(u.password, "x y");
	assert_int_equal(parse("unix:///tmp/r.sock?password=pw&db=12", &u, NULL), 0);
	assert_int_equal(u.db, 12);
}

static void test_gw_redisurl__refusals_point_at_the_problem(void **state)
{
	(void)state;
	static const struct {
		const char *url;
		size_t offset;
	} bad[] = {
	        {"", 0},
	        {"http://x", 0},
	        {"rediss://host", 0},
	        {"redis://", 8},
	        {"redis://:pw@", 12},
	        {"redis://host:0", 13},
	        {"redis://host:65536", 13},
	        {"redis://host:12a", 13},
	        {"redis://host:", 13},
	        {"redis://ho st", 10},
	        {"redis://host/x", 13},
	        {"redis://host/1000000", 13},
	        {"redis://host?db=1", 12},
	        {"redis://[::1", 8},
	        {"redis://[]:1", 8},
	        {"redis://[::1]x", 13},
	        {"redis://:%4@h", 9},
	        {"redis://:%zz@h", 9},
	        {"redis://:%00@h", 9},
	        {"unix://relative", 7},
	        {"unix:///p?db=1&db=2", 15},
	        {"unix:///p?x=1", 10},
	        {"unix:///p\n", 9},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct gw_redis_url u;
		struct gw_redisurl_err e = {999, NULL};
		if (parse(bad[i].url, &u, &e) != -1)
			fail_msg("accepted '%s'", bad[i].url);
		assert_non_null(e.msg);
		if (e.offset != bad[i].offset)
			fail_msg("'%s': offset %zu, wanted %zu (%s)", bad[i].url, e.offset,
			         bad[i].offset, e.msg);
	}
	/* a NUL byte inside the slice, and a long path */
	struct gw_redis_url u;
	assert_int_equal(gw_redisurl_parse("redis://h\0st", 12, &u, NULL), -1);
	char longp[200] = "unix:///";
	memset(longp + 8, 'a', 150);
	assert_int_equal(parse(longp, &u, NULL), -1);
}

static void test_gw_redisurl__format_round_trips_and_redacts(void **state)
{
	(void)state;
	const char *urls[] = {"redis://127.0.0.1", "redis://u:p%2F%3A%40@[fe80::1]:1/9",
	                      "unix:///tmp/x.sock?db=2&password=%26%3F", "redis://:pw@h:2"};
	for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
		struct gw_redis_url a, b;
		char buf[512];
		assert_int_equal(parse(urls[i], &a, NULL), 0);
		int n = gw_redisurl_format(&a, 0, buf, sizeof buf);
		assert_true(n > 0);
		assert_int_equal(gw_redisurl_parse(buf, (size_t)n, &b, NULL), 0);
		assert_memory_equal(&a, &b, sizeof a);
	}
	struct gw_redis_url u;
	char buf[64];
	assert_int_equal(parse("redis://:topsecret@h:2/1", &u, NULL), 0);
	assert_true(gw_redisurl_format(&u, 1, buf, sizeof buf) > 0);
	assert_string_equal(buf, "redis://:***@h:2/1");
	assert_int_equal(gw_redisurl_format(&u, 0, buf, 5), -1);
	assert_string_equal(buf, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_gw_redisurl__tcp_forms),
	        cmocka_unit_test(test_gw_redisurl__unix_forms),
	        cmocka_unit_test(test_gw_redisurl__refusals_point_at_the_problem),
	        cmocka_unit_test(test_gw_redisurl__format_round_trips_and_redacts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
