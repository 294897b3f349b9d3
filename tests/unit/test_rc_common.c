/* router-core shared vocabulary: every error code has a distinct, non-empty name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_common.h>

static void test_rc_common__every_code_named_distinctly(void **state)
{
	(void)state;
	for (int a = RC_ENOTSUP; a <= RC_OK; a++) {
		assert_string_not_equal(rc_strerror(a), "unknown error");
		for (int b = RC_ENOTSUP; b < a; b++)
			assert_string_not_equal(rc_strerror(a), rc_strerror(b));
	}
	assert_string_equal(rc_strerror(12345), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rc_common__every_code_named_distinctly),
	};
	return cmocka_run_group_tests_name("rc_common", tests, NULL, NULL);
}
