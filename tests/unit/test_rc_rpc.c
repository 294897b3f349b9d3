/*
 * rc_rpc: the pure reply parser and error mapping on fixed inputs, then the client against a
 * real anvil started for this binary on a free loopback port (chain id, balance, batches in one
 * round trip, failover past a dead URL, a hung server hitting the timeout, node errors and a
 * decoded custom-error revert).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <router-core/rc_addr.h>
#include <router-core/rc_rpc.h>

#include "testutil.h"

/* ---- a private anvil ---------------------------------------------------------------------- */

static pid_t anvil_pid;
static char anvil_url[64];
static const char anvil0_addr[] = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

static int anvil_start(void **state)
{
	(void)state;
	anvil_pid = tu_anvil_start(anvil_url, sizeof anvil_url);
	return anvil_pid > 0 ? 0 : -1;
}

static int anvil_stop(void **state)
{
	(void)state;
	tu_anvil_stop(anvil_pid);
	return 0;
}

static struct rc_rpc *client(const char *const *urls, size_t n, long timeout_ms)
{
	struct rc_rpc *c;
	struct rc_rpc_options o = {urls, n, 500, timeout_ms, 60000, 0};
	assert_int_equal(rc_rpc_new(&o, &c), RC_OK);
	return c;
}

/* ---- pure parsing -------------------------------------------------------------------------- */

static void test_rc_rpc__parse_result(void **state)
{
	json_t *r;
	const char *ok = "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":\"0x7a69\"}";
	assert_int_equal(rc_rpc_parse_reply(ok, strlen(ok), 7, &r, NULL), RC_OK);
	uint64_t v;
	assert_int_equal(rc_rpc_result_u64(r, &v), RC_OK);
	assert_int_equal(v, 31337);
	json_decref(r);
	struct rc_rpc_error e;
	assert_int_equal(rc_rpc_parse_reply(ok, strlen(ok), 8, &r, &e), RC_EPROTO);
	assert_non_null(strstr(e.message, "id"));
	assert_int_equal(rc_rpc_parse_reply("nope", 4, 7, &r, &e), RC_EPROTO);
	assert_int_equal(rc_rpc_parse_reply("[]", 2, 7, &r, &e), RC_EPROTO);
	const char *nores = "{\"jsonrpc\":\"2.0\",\"id\":7}";
	assert_int_equal(rc_rpc_parse_reply(nores, strlen(nores), 7, &r, &e), RC_EPROTO);
	const char *null = "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":null}";
	assert_int_equal(rc_rpc_parse_reply(null, strlen(null), 7, &r, &e), RC_OK);
	assert_true(json_is_null(r));
	json_decref(r);
}

static void test_rc_rpc__error_mapping(void **state)
{
	static const struct {
		const char *body;
		int rc;
	} cases[] = {
	        {"{\"id\":1,\"error\":{\"code\":-32000,\"message\":\"nonce too low\"}}", RC_ENONCE},
	        {"{\"id\":1,\"error\":{\"code\":-32000,\"message\":\"replacement transaction "
	         "underpriced\"}}",
	         RC_EUNDERPRICED},
	        {"{\"id\":1,\"error\":{\"code\":-32000,\"message\":\"already known\"}}", RC_EKNOWN},
	        {"{\"id\":1,\"error\":{\"code\":-32003,\"message\":\"Insufficient funds for gas * "
	         "price + value\"}}",
	         RC_EFUNDS},
	        {"{\"id\":1,\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}",
	         RC_ERPC},
	        {"{\"id\":1,\"error\":{\"code\":3,\"message\":\"execution reverted\"}}",
	         RC_EREVERT},
	        {"{\"id\":null,\"error\":{\"code\":-32700,\"message\":\"parse error\"}}", RC_ERPC},
	        {"{\"id\":1,\"error\":\"x\"}", RC_EPROTO},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		json_t *r = NULL;
		struct rc_rpc_error e;
		int rc = rc_rpc_parse_reply(cases[i].body, strlen(cases[i].body), 1, &r, &e);
		assert_int_equal(rc, cases[i].rc);
		assert_int_equal(e.rc, cases[i].rc);
		assert_null(r);
	}
	/* A custom error in data, as anvil and geth send it. */
	const char *rev =
	        "{\"id\":1,\"error\":{\"code\":3,\"message\":\"execution reverted: custom "
	        "error 0xf4d7eed5\",\"data\":\"0xf4d7eed5\"}}";
	json_t *r;
	struct rc_rpc_error e;
	assert_int_equal(rc_rpc_parse_reply(rev, strlen(rev), 1, &r, &e), RC_EREVERT);
	assert_true(e.has_revert);
	assert_string_equal(e.revert_name, "SessionTooShort");
	assert_int_equal(e.revert_selector, 0xf4d7eed5);
	assert_int_equal(e.code, 3);
	/* Nested data object (some providers), Error(string). */
	const char *nested =
	        "{\"id\":1,\"error\":{\"code\":-32000,\"message\":\"x\",\"data\":{\"data\":"
	        "\"0x08c379a00000000000000000000000000000000000000000000000000000000000000020000000"
	        "000000000000000000000000000000000000000000000000000000000268690000000000000000000"
	        "000000000000000000000000000000000000000\"}}}";
	assert_int_equal(rc_rpc_parse_reply(nested, strlen(nested), 1, &r, &e), RC_EREVERT);
	assert_string_equal(e.revert_name, "Error");
	assert_non_null(strstr(e.revert_text, "hi"));
	assert_string_equal(rc_rpc_strerror(RC_EREVERT), "execution reverted");
	assert_string_equal(rc_rpc_strerror(RC_ENOMEM), "out of memory");
}

static void test_rc_rpc__parse_batch(void **state)
{
	struct rc_rpc_req reqs[3];
	memset(reqs, 0, sizeof reqs);
	const char *b = "[{\"id\":12,\"result\":\"0x2\"},{\"id\":10,\"result\":\"0x0\"},"
	                "{\"id\":11,\"error\":{\"code\":-1,\"message\":\"nonce too low\"}},"
	                "{\"id\":99,\"result\":1},{\"id\":10,\"result\":\"0x5\"}]";
	assert_int_equal(rc_rpc_parse_batch(b, strlen(b), 10, reqs, 3, NULL), RC_OK);
	uint64_t v;
	assert_int_equal(reqs[0].rc, RC_OK);
	assert_int_equal(rc_rpc_result_u64(reqs[0].result, &v), RC_OK);
	assert_int_equal(v, 0); /* the first answer for a duplicated id counts */
	assert_int_equal(reqs[1].rc, RC_ENONCE);
	assert_int_equal(reqs[2].rc, RC_OK);
	rc_rpc_reqs_release(reqs, 3);
	const char *missing = "[{\"id\":10,\"result\":\"0x0\"}]";
	assert_int_equal(rc_rpc_parse_batch(missing, strlen(missing), 10, reqs, 3, NULL),
	                 RC_EPROTO);
	assert_int_equal(reqs[0].rc, RC_OK);
	assert_int_equal(reqs[1].rc, RC_EPROTO);
	rc_rpc_reqs_release(reqs, 3);
	const char *whole =
	        "{\"id\":null,\"error\":{\"code\":-32600,\"message\":\"batch too big\"}}";
	assert_int_equal(rc_rpc_parse_batch(whole, strlen(whole), 10, reqs, 3, NULL), RC_ERPC);
	assert_int_equal(reqs[2].rc, RC_ERPC);
}

static void test_rc_rpc__parse_receipt(void **state)
{
	const char *s = "{\"transactionHash\":\"0x"
	                "1111111111111111111111111111111111111111111111111111111111111111"
	                "\",\"blockNumber\":\"0x10\",\"status\":\"0x1\",\"gasUsed\":\"0x5208\","
	                "\"effectiveGasPrice\":\"0x3b9aca00\",\"logs\":[{\"address\":"
	                "\"0x6abe1d282f72b474e54527d93b979a4f64d3030a\",\"topics\":[\"0x"
	                "2bd7c890baf595977d256a6e784512c873ac58ba612b4895dbb7f784bfbf4839\"],"
	                "\"data\":\"0x0102\",\"blockNumber\":\"0x10\",\"logIndex\":\"0x0\"}]}";
	json_t *j = json_loads(s, 0, NULL);
	assert_non_null(j);
	struct rc_rpc_receipt r;
	assert_int_equal(rc_rpc_parse_receipt(j, &r), RC_OK);
	assert_true(r.status);
	assert_int_equal(r.block_number, 16);
	assert_int_equal(r.gas_used, 21000);
	assert_int_equal(r.nlogs, 1);
	assert_int_equal(r.logs[0].ntopics, 1);
	assert_int_equal(r.logs[0].data_len, 2);
	assert_int_equal(r.logs[0].topics[0][0], 0x2b);
	rc_rpc_receipt_release(&r);
	json_object_set_new(j, "status", json_string("0x2"));
	assert_int_equal(rc_rpc_parse_receipt(j, &r), RC_EPARSE);
	json_decref(j);
}

/* ---- live, against anvil --------------------------------------------------------------------- */

static void test_rc_rpc__chain_id_and_balance(void **state)
{
	const char *urls[] = {anvil_url};
	struct rc_rpc *c = client(urls, 1, 5000);
	uint64_t id, bn;
	assert_int_equal(rc_rpc_chain_id(c, &id, NULL), RC_OK);
	assert_int_equal(id, 31337);
	assert_int_equal(rc_rpc_block_number(c, &bn, NULL), RC_OK);
	uint8_t a[20];
	assert_int_equal(rc_addr_parse(a, anvil0_addr, strlen(anvil0_addr), NULL), RC_OK);
	struct rc_u256 bal, want;
	assert_int_equal(rc_rpc_get_balance(c, a, &bal, NULL), RC_OK);
	assert_int_equal(rc_u256_parse_dec(&want, "9000000000000000000000", 22, NULL), RC_OK);
	assert_true(rc_u256_cmp(&bal, &want) > 0); /* 10000 ETH minus what other tests spent */
	uint64_t n;
	assert_int_equal(rc_rpc_get_tx_count(c, a, true, &n, NULL), RC_OK);
	struct rc_u256 tip;
	assert_int_equal(rc_rpc_max_priority_fee(c, &tip, NULL), RC_OK);
	struct rc_rpc_fee_history fh;
	assert_int_equal(rc_rpc_fee_history(c, 4, 50, &fh, NULL), RC_OK);
	assert_false(rc_u256_is_zero(&fh.next_base_fee));
	/* Keep-alive: many calls, one pooled handle. */
	for (int i = 0; i < 20; i++)
		assert_int_equal(rc_rpc_chain_id(c, &id, NULL), RC_OK);
	rc_rpc_free(c);
}

static void test_rc_rpc__batch_one_round_trip(void **state)
{
	const char *urls[] = {anvil_url};
	struct rc_rpc *c = client(urls, 1, 5000);
	struct rc_rpc_req reqs[5];
	memset(reqs, 0, sizeof reqs);
	for (int i = 0; i < 4; i++)
		reqs[i].method = i % 2 ? "eth_blockNumber" : "eth_chainId";
	reqs[4].method = "no_such_method";
	uint64_t before = rc_rpc_round_trips(c);
	assert_int_equal(rc_rpc_batch(c, reqs, 5, NULL), RC_OK);
	assert_int_equal(rc_rpc_round_trips(c) - before, 1);
	uint64_t v;
	assert_int_equal(reqs[0].rc, RC_OK);
	assert_int_equal(rc_rpc_result_u64(reqs[0].result, &v), RC_OK);
	assert_int_equal(v, 31337);
	assert_int_equal(reqs[1].rc, RC_OK);
	assert_int_equal(reqs[4].rc, RC_ERPC);
	assert_int_equal(reqs[4].err.code, -32601);
	assert_string_equal(reqs[4].err.url, anvil_url);
	rc_rpc_reqs_release(reqs, 5);
	rc_rpc_free(c);
}

static void test_rc_rpc__failover_dead_url_first(void **state)
{
	char dead[64];
	snprintf(dead, sizeof dead, "http://127.0.0.1:%d", tu_free_port());
	const char *urls[] = {dead, anvil_url};
	struct rc_rpc *c = client(urls, 2, 5000);
	uint64_t id;
	struct rc_rpc_error e;
	assert_int_equal(rc_rpc_chain_id(c, &id, &e), RC_OK);
	assert_int_equal(id, 31337);
	assert_int_equal(rc_rpc_round_trips(c), 2);
	assert_string_equal(e.url, anvil_url);
	rc_rpc_free(c);
	/* A key in the path or user:password@ never reaches the error text. */
	char keyed[128];
	snprintf(keyed, sizeof keyed, "http://user:secret@%s/?apikey=SECRETKEY", anvil_url + 7);
	const char *k1[] = {keyed};
	c = client(k1, 1, 5000);
	assert_int_equal(rc_rpc_call(c, "eth_noSuchThing", NULL, &(json_t *){NULL}, &e), RC_ERPC);
	assert_string_equal(e.url, anvil_url);
	assert_null(strstr(e.url, "SECRET"));
	rc_rpc_free(c);
	c = client(urls, 2, 5000);
	assert_int_equal(rc_rpc_chain_id(c, &id, &e), RC_OK);
	assert_int_equal(rc_rpc_round_trips(c), 2);
	/* The dead URL is remembered: the next call goes straight to anvil. */
	assert_int_equal(rc_rpc_chain_id(c, &id, NULL), RC_OK);
	assert_int_equal(rc_rpc_round_trips(c), 3);
	rc_rpc_free(c);
	/* Only dead URLs: a connection error, tried once per URL per call. */
	const char *only[] = {dead};
	c = client(only, 1, 5000);
	assert_int_equal(rc_rpc_chain_id(c, &id, &e), RC_EIO);
	assert_int_equal(e.rc, RC_EIO);
	rc_rpc_free(c);
}

static int hung_fd;
static void *hung_server(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(hung_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		/* Never answer; the client's timeout ends it. */
	}
}

static void test_rc_rpc__hung_server_times_out(void **state)
{
	hung_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	assert_int_equal(bind(hung_fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(hung_fd, 16), 0);
	assert_int_equal(getsockname(hung_fd, (struct sockaddr *)&a, &l), 0);
	pthread_t th;
	pthread_create(&th, NULL, hung_server, NULL);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
	const char *urls[] = {url};
	struct rc_rpc *c = client(urls, 1, 300);
	uint64_t id;
	struct rc_rpc_error e;
	int64_t t0 = tu_ms_now();
	assert_int_equal(rc_rpc_chain_id(c, &id, &e), RC_ETIMEOUT);
	int64_t dt = tu_ms_now() - t0;
	assert_true(dt >= 250 && dt < 2000);
	rc_rpc_free(c);
	/* Hung first, anvil second: the timeout fails over. */
	const char *two[] = {url, anvil_url};
	c = client(two, 2, 300);
	assert_int_equal(rc_rpc_chain_id(c, &id, &e), RC_OK);
	assert_int_equal(id, 31337);
	rc_rpc_free(c);
	shutdown(hung_fd, SHUT_RDWR);
	close(hung_fd);
	pthread_join(th, NULL);
}

static void test_rc_rpc__revert_decoded(void **state)
{
	const char *urls[] = {anvil_url};
	struct rc_rpc *c = client(urls, 1, 5000);
	/* Init code that reverts with SessionTooShort(): PUSH4 sel PUSH1 0xe0 SHL PUSH1 0 MSTORE
	 * PUSH1 4 PUSH1 0 REVERT. */
	static const uint8_t code[] = {0x63, 0xf4, 0xd7, 0xee, 0xd5, 0x60, 0xe0, 0x1b,
	                               0x60, 0x00, 0x52, 0x60, 0x04, 0x60, 0x00, 0xfd};
	struct rc_rpc_callmsg m = {.data = code, .data_len = sizeof code};
	uint64_t gas;
	struct rc_rpc_error e;
	assert_int_equal(rc_rpc_estimate_gas(c, &m, &gas, &e), RC_EREVERT);
	assert_true(e.has_revert);
	assert_non_null(e.revert_name);
	assert_string_equal(e.revert_name, "SessionTooShort");
	/* Unknown method: the node's code and message. */
	json_t *r;
	assert_int_equal(rc_rpc_call(c, "eth_noSuchThing", NULL, &r, &e), RC_ERPC);
	assert_int_equal(e.code, -32601);
	assert_null(r);
	/* Bad params: a node error, not a failover. */
	assert_int_equal(rc_rpc_call(c, "eth_getBalance", json_pack("[s]", "zz"), &r, &e), RC_ERPC);
	assert_int_equal(rc_rpc_round_trips(c), 3);
	rc_rpc_free(c);
}

static void test_rc_rpc__options(void **state)
{
	struct rc_rpc *c;
	const char *bad[] = {"ftp://x"};
	struct rc_rpc_options o = {bad, 1, 0, 0, 0, 0};
	assert_int_equal(rc_rpc_new(&o, &c), RC_EINVAL);
	o.nurls = 0;
	assert_int_equal(rc_rpc_new(&o, &c), RC_EINVAL);
	rc_rpc_free(NULL);
}

int main(void)
{
	const struct CMUnitTest pure[] = {
	        cmocka_unit_test(test_rc_rpc__parse_result),
	        cmocka_unit_test(test_rc_rpc__error_mapping),
	        cmocka_unit_test(test_rc_rpc__parse_batch),
	        cmocka_unit_test(test_rc_rpc__parse_receipt),
	        cmocka_unit_test(test_rc_rpc__options),
	};
	const struct CMUnitTest live[] = {
	        cmocka_unit_test(test_rc_rpc__chain_id_and_balance),
	        cmocka_unit_test(test_rc_rpc__batch_one_round_trip),
	        cmocka_unit_test(test_rc_rpc__failover_dead_url_first),
	        cmocka_unit_test(test_rc_rpc__hung_server_times_out),
	        cmocka_unit_test(test_rc_rpc__revert_decoded),
	};
	signal(SIGPIPE, SIG_IGN);
	int failed = cmocka_run_group_tests_name("rc_rpc pure", pure, NULL, NULL);
	failed += cmocka_run_group_tests_name("rc_rpc anvil", live, anvil_start, anvil_stop);
	return failed ? 1 : 0;
}
