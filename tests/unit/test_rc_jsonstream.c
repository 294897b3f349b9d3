/*
 * rc_jsonstream: splitting back-to-back JSON values (morpheus-protocol §2.1) fed in arbitrary
 * pieces. The messages are the wire lines of ../shared/vectors/morpheus-vectors.txt, embedded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <router-core/rc_jsonstream.h>

/* ---- §2.9.2 wire lines ---------------------------------------------------------------------- */
static const char W_REQ[] =
        "{\"id\":\"a1b2c3d4\",\"method\":\"session.request\",\"params\":{\"signature\":\"0xf9e83a"
        "046c91764cd4131e7240cfb3c8df877b7e66d2faee8fe88b3271f3234335db05953663c97d8a203cd2f8b0f4"
        "e194e724e7010a67cd1eb634c3e42ae64f00\",\"user\":\"0xf39fd6e51aad88f6f4ce6ab8827279cfffb9"
        "2266\",\"key\":\"0x048318535b54105d4a7aae60c08fc45f9687181b4fdfc625bd1a753fa7397fed75354"
        "7f11ca8696646f2f3acb08e31016afac23e630c5d11f59f61fef57b0d2aa5\",\"spend\":\"100000000000"
        "0000000\",\"timestamp\":1735689600000,\"bidid\":\"0x694714f934f06307cb2d0b3af993c376110b"
        "fad4c9ab5958be519c937b59ab50\"}}";
static const char W_RES[] =
        "{\"id\":\"a1b2c3d4\",\"result\":{\"message\":\"0x04ba5734d8f7091719471e7f7ed6b9df170dc70"
        "cc661ca05e688601ad984f068b0d67351e5f06073092499336ab0839ef8a521afd334e53807205fa2f08eec7"
        "4f4\",\"approval\":\"0x694714f934f06307cb2d0b3af993c376110bfad4c9ab5958be519c937b59ab500"
        "00000000000000000000000000000000000000000000000000000000000a4b1000000000000000000000000f"
        "39fd6e51aad88f6f4ce6ab8827279cfffb922660000000000000000000000000000000000000000000000000"
        "00001941f297c7b\",\"approvalSig\":\"0xde027f31a46fa22de0015994cf8f1b994d5540d7fd05fad33a"
        "1ce8c04208625763ef5b2d9272d636e76f02ce321c56fa146806c8d56f49eab8b76e1181bcb8891c\",\"use"
        "r\":\"0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266\",\"timestamp\":1735689600123,\"signatu"
        "re\":\"0x06cd90927db17242250976dc7b244c2452ae707dc0ade1e36f52352697e911fc2795abf995ee8d4"
        "25c10f05b32239465b5aa2222e8ff1f8cd7caf3b29cc4559f01\"}}";
static const char W_PROMPT[] =
        "{\"id\":\"0badf00d\",\"method\":\"session.prompt\",\"params\":{\"signature\":\"0xa9d7447"
        "105b99fc949162d2e10bccf972270e9769e7a6c283b71ce5d899a77963e9d93b0dd0479af0aefb2ca4c2da53"
        "d193071f7a59c0da3cd8d22029d79bd1600\",\"sessionid\":\"0x266cda2d5d32f8441832085391c68dc8"
        "e788c9235cee5d46ae47b57e75f1c4b8\",\"message\":\"{\\\"messages\\\":[{\\\"content\\\":\\\""
        "hi\\\",\\\"role\\\":\\\"user\\\"}],\\\"model\\\":\\\"\\\",\\\"stream\\\":true}\",\"times"
        "tamp\":1735689700000}}";
static const char W_PROMPTRES[] =
        "{\"id\":\"0badf00d\",\"result\":{\"message\":\"044f355bdcb7cc0af728ef3cceb9615d90684bb5b"
        "2ca5f859ab0f0b704075871aa385b6b1b8ead809ca67454d9683fcf2ba03456d6fe2c4abe2b07f0fbdbb2f1c"
        "1000102030405060708090a0b0c0d0e0fb70fac3c35028fbed321021c8dbd8f010fc57527d3bfb83537276fa"
        "d526d4df39e76131d73a2dbaa854c178c30d22027e8a03fd13184531fcb97137eb62a82834fc210ace238cd4"
        "7e25ed528a77b2331c928e0dcc4bd9e2a8ba302dcc4874eb28c3df38da94ea272e125b87296eb85aaa971fbf"
        "b3c7997658d79900a1c001ccd53be7c375e6693e94d587148141732a8261f1120824bdf96918fb4ab00729cf"
        "f5decc77035a1eb7e6fd0f3dd80e83ac888579b7d02f1239c2ba027cbe11b6e5b0fba3c34f338d123\",\"si"
        "gnature\":\"0x1c3b126fbc6914efc69896edaa7f371eb5005d833ff5233245f1285aa6032f88184c58f86b"
        "6240c8e0d55b64b7564aba58635a394cb2523f53625dc7206e505001\",\"timestamp\":1735689700500}}"
        "";
static const char W_ERR[] =
        "{\"id\":\"0badf00d\",\"result\":null,\"error\":{\"message\":\"045421b3fc2cca1f6a36f85817"
        "0c23fa18f6525b1c95ce31e4fcdb6628ae7e20e309ad404484172f30c1b0031c02368c30b069d02a4c774260"
        "f9e9169d41151990000102030405060708090a0b0c0d0e0f34cadc980c04c909a318ca1800c01d85166fca4f"
        "7561bd56e8ee1dc0c03443ca4da19aa1aff20e588e5dc2252f4847418ebbcfb845d762302153c7e55bfbe39a"
        "4d65269d8298d91b7dea02f4c0e063bc47bc61ca21c274273c8a39f6b158d34149550b86a31674d6ad854777"
        "3ce423dd53b3cb\",\"code\":400,\"data\":{\"timestamp\":1735689700600,\"signature\":\"0x50"
        "2e93462d8de40fbd2e92b4a4c453782ff0166e1fbc4a22d25710ab75fc95b24bb8c6e5ef151cdb04b91ebad6"
        "7e0e8ceb8049191310dc2859f19cd0f45727d900\"}}}";
static const char W_INFRA[] =
        "{\"id\":\"a1b2c3d4\",\"result\":null,\"error\":{\"message\":\"no capacity\",\"code\":400"
        ",\"data\":{\"timestamp\":1735689600123,\"signature\":\"0x00\"}}}";
static const char W_REPORTREQ[] =
        "{\"id\":\"c0ffee00\",\"method\":\"session.report\",\"params\":{\"signature\":\"0x78f25ce"
        "edccee2740c072c88a565492002a32d1d0c9f4874788f9c937df0e5b84ebe96819a978cc2627c5903b26c0af"
        "9d39aa492516fddec07b22bda7b63af3100\",\"message\":\"0x266cda2d5d32f8441832085391c68dc8e7"
        "88c9235cee5d46ae47b57e75f1c4b8\",\"timestamp\":1735690000000}}";
static const char W_REPORTRES[] =
        "{\"id\":\"c0ffee00\",\"result\":{\"message\":\"0x266cda2d5d32f8441832085391c68dc8e788c92"
        "35cee5d46ae47b57e75f1c4b8000000000000000000000000000000000000000000000000000000000000a4b"
        "1000000000000000000000000000000000000000000000000000001941f2f977a00000000000000000000000"
        "0000000000000000000000000000000000000a60400000000000000000000000000000000000000000000000"
        "0000000000000015e00000000000000000000000000000000000000000000000000000000000000780000000"
        "000000000000000000000000000000000000000000000000000000320\",\"signedReport\":\"0x0c98fb3"
        "7b7c47f9538ec2ec50baa0eef9f70afb5a5def91540e79d24a44c2c11326637683965fbbc534b8adf5394e08"
        "0c35ad24d81d444969afef39a338bde2b1b\",\"signature\":\"0x5e152519db97a5b7892a22b9fe306093"
        "ac4774741fe6e7a106143370204bf1b536521aa58c66cb8088ecf2d0a9b2c992760138acf9e36a3c3080d5b2"
        "f7f2796b01\",\"timestamp\":1735690000250}}";
static const char W_PING[] =
        "{\"id\":\"0\",\"method\":\"network.ping\",\"params\":{\"nonce\":\"0x0102030405060708\",\""
        "signature\":\"0xfa242abd931d07462b4c8652986a98b791491e9e9c43d70bcccfe6669c46c5f76ac71d0c"
        "cf0f0d10963af48c673cc2abdc8a7e33324dd8a250b9483d50efbcd301\"}}";
static const char W_PONG[] =
        "{\"id\":\"0\",\"result\":{\"nonce\":\"0x0102030405060708\",\"version\":\"v7.0.0\",\"sign"
        "ature\":\"0x651a804ab53fa27b9a84facd6c6869fac73ade49c1c52acb3f740b97d99e094732521a99ecd5"
        "26d204f2716c238280561dee7dddbbe3830cd6c946cb58a4923700\"}}";

static const struct rc_str wires[] = {
        RC_STR_LIT(W_REQ),  RC_STR_LIT(W_RES),   RC_STR_LIT(W_PROMPT),    RC_STR_LIT(W_PROMPTRES),
        RC_STR_LIT(W_ERR),  RC_STR_LIT(W_INFRA), RC_STR_LIT(W_REPORTREQ), RC_STR_LIT(W_REPORTRES),
        RC_STR_LIT(W_PING), RC_STR_LIT(W_PONG),
};
#define NWIRES (sizeof wires / sizeof wires[0])

/* Values collected from a stream, each copied out (the stream's pointers are short-lived). */
struct got {
	char *v[64];
	size_t len[64];
	size_t n;
};

static void got_free(struct got *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->v[i]);
	g->n = 0;
}

/* Feed one piece, collecting every value that completes; returns the first error. */
static int feed_all(struct rc_jsonstream *js, const char *p, size_t len, struct got *g,
                    struct rc_errinfo *ei)
{
	while (len > 0) {
		size_t used;
		struct rc_str v;
		int rc = rc_jsonstream_feed(js, p, len, &used, &v, ei);
		if (rc != RC_OK)
			return rc;
		assert_true(used <= len);
		if (v.ptr) {
			assert_true(g->n < 64);
			g->v[g->n] = malloc(v.len + 1);
			assert_non_null(g->v[g->n]);
			memcpy(g->v[g->n], v.ptr, v.len);
			g->v[g->n][v.len] = '\0';
			g->len[g->n++] = v.len;
		} else {
			assert_int_equal(used, len); /* no value: everything was consumed */
		}
		p += used;
		len -= used;
	}
	return RC_OK;
}

static void assert_value(const struct got *g, size_t i, struct rc_str want)
{
	assert_true(i < g->n);
	assert_int_equal(g->len[i], want.len);
	assert_memory_equal(g->v[i], want.ptr, want.len);
}

static void test_rc_jsonstream__every_vector_split_at_every_byte(void **state)
{
	(void)state;
	for (size_t w = 0; w < NWIRES; w++) {
		struct rc_str m = wires[w];
		for (size_t cut = 0; cut <= m.len; cut++) {
			struct rc_jsonstream js;
			struct got g = {0};
			assert_int_equal(rc_jsonstream_init(&js, 1 << 16, 32), RC_OK);
			assert_int_equal(feed_all(&js, m.ptr, cut, &g, NULL), RC_OK);
			assert_int_equal(g.n, cut == m.len ? 1 : 0);
			assert_int_equal(feed_all(&js, m.ptr + cut, m.len - cut, &g, NULL), RC_OK);
			assert_int_equal(g.n, 1);
			assert_value(&g, 0, m);
			struct rc_str v;
			assert_int_equal(rc_jsonstream_end(&js, &v, NULL), RC_OK);
			assert_null(v.ptr);
			got_free(&g);
			rc_jsonstream_release(&js);
		}
	}
}

/* All messages back to back (as a provider writes a stream), split at every byte pair. */
static void test_rc_jsonstream__concatenated_stream_any_split(void **state)
{
	(void)state;
	char all[16384];
	size_t len = 0;
	for (size_t w = 0; w < NWIRES; w++) {
		memcpy(all + len, wires[w].ptr, wires[w].len);
		len += wires[w].len;
		if (w % 3 == 1) /* Go's decoder tolerates whitespace between values */
			all[len++] = w % 2 ? '\n' : ' ';
	}
	for (size_t cut = 0; cut <= len; cut += 7) {
		for (size_t cut2 = cut; cut2 <= len; cut2 += 211) {
			struct rc_jsonstream js;
			struct got g = {0};
			assert_int_equal(rc_jsonstream_init(&js, 4096, 8), RC_OK);
			assert_int_equal(feed_all(&js, all, cut, &g, NULL), RC_OK);
			assert_int_equal(feed_all(&js, all + cut, cut2 - cut, &g, NULL), RC_OK);
			assert_int_equal(feed_all(&js, all + cut2, len - cut2, &g, NULL), RC_OK);
			assert_int_equal(g.n, NWIRES);
			for (size_t w = 0; w < NWIRES; w++)
				assert_value(&g, w, wires[w]);
			assert_int_equal(rc_jsonstream_offset(&js), len);
			got_free(&g);
			rc_jsonstream_release(&js);
		}
	}
}

static void test_rc_jsonstream__byte_at_a_time(void **state)
{
	(void)state;
	struct rc_jsonstream js;
	struct got g = {0};
	assert_int_equal(rc_jsonstream_init(&js, 4096, 8), RC_OK);
	for (size_t w = 0; w < NWIRES; w++)
		for (size_t i = 0; i < wires[w].len; i++)
			assert_int_equal(feed_all(&js, wires[w].ptr + i, 1, &g, NULL), RC_OK);
	assert_int_equal(g.n, NWIRES);
	for (size_t w = 0; w < NWIRES; w++)
		assert_value(&g, w, wires[w]);
	got_free(&g);
	rc_jsonstream_release(&js);
}

/* A value that arrives whole is returned in place, not copied. */
static void test_rc_jsonstream__whole_value_is_zero_copy(void **state)
{
	(void)state;
	struct rc_jsonstream js;
	assert_int_equal(rc_jsonstream_init(&js, 4096, 8), RC_OK);
	char buf[] = "  \n{\"a\":1}[2]";
	size_t used;
	struct rc_str v;
	assert_int_equal(rc_jsonstream_feed(&js, buf, sizeof buf - 1, &used, &v, NULL), RC_OK);
	assert_ptr_equal(v.ptr, buf + 3);
	assert_int_equal(v.len, 7);
	assert_int_equal(used, 10);
	assert_int_equal(rc_jsonstream_feed(&js, buf + used, 3, &used, &v, NULL), RC_OK);
	assert_ptr_equal(v.ptr, buf + 10);
	assert_int_equal(v.len, 3);
	assert_null(js.part.ptr); /* nothing was ever buffered */
	rc_jsonstream_release(&js);
}

/* Braces, brackets and escaped quotes inside strings do not end or open anything. */
static void test_rc_jsonstream__strings_hide_structure(void **state)
{
	(void)state;
	static const char in[] = "{\"k}\":\"}]\\\"{[\\\\\",\"u\":\"\\u007d\\\"\"}"
	                         "\"}\"[\"]\\\\\",\"{\"]";
	struct rc_jsonstream js;
	struct got g = {0};
	assert_int_equal(rc_jsonstream_init(&js, 4096, 8), RC_OK);
	for (size_t cut = 0; cut <= sizeof in - 1; cut++) {
		assert_int_equal(feed_all(&js, in, cut, &g, NULL), RC_OK);
		assert_int_equal(feed_all(&js, in + cut, sizeof in - 1 - cut, &g, NULL), RC_OK);
		assert_int_equal(g.n, 3);
		assert_value(&g, 0, RC_STR_LIT("{\"k}\":\"}]\\\"{[\\\\\",\"u\":\"\\u007d\\\"\"}"));
		assert_value(&g, 1, RC_STR_LIT("\"}\""));
		assert_value(&g, 2, RC_STR_LIT("[\"]\\\\\",\"{\"]"));
		got_free(&g);
	}
	rc_jsonstream_release(&js);
}

/* Top-level scalars; a number ends at the next byte that is not part of it, or at end(). */
static void test_rc_jsonstream__top_level_scalars(void **state)
{
	(void)state;
	static const char in[] = " 1 0\t\"x\"true null-3.5e+2 0.25E7[]{}01";
	static const char *const want[] = {"1",      "0",  "\"x\"", "true", "null", "-3.5e+2",
	                                   "0.25E7", "[]", "{}",    "0",    "1"};
	for (size_t cut = 0; cut <= sizeof in - 1; cut++) {
		struct rc_jsonstream js;
		struct got g = {0};
		assert_int_equal(rc_jsonstream_init(&js, 64, 4), RC_OK);
		assert_int_equal(feed_all(&js, in, cut, &g, NULL), RC_OK);
		assert_int_equal(feed_all(&js, in + cut, sizeof in - 1 - cut, &g, NULL), RC_OK);
		assert_int_equal(g.n, 10); /* the final "1" is still pending */
		struct rc_str v;
		assert_int_equal(rc_jsonstream_end(&js, &v, NULL), RC_OK);
		assert_int_equal(v.len, 1);
		assert_memory_equal(v.ptr, "1", 1);
		for (size_t i = 0; i < 10; i++)
			assert_value(&g, i, (struct rc_str){want[i], strlen(want[i])});
		got_free(&g);
		rc_jsonstream_release(&js);
	}
}

struct bad_case {
	const char *in;
	int rc;
	size_t offset;
	const char *text;
};

static const struct bad_case bad_cases[] = {
        {"x", RC_EPARSE, 0, "invalid character 'x' looking for beginning of value"},
        {"{}}", RC_EPARSE, 2, "invalid character '}' looking for beginning of value"},
        {"{\"a\" 1}", RC_EPARSE, 5, "invalid character '1' after object key"},
        {"{\"a\":1 \"b\":2}", RC_EPARSE, 7, "invalid character '\"' after object key:value pair"},
        {"[1 2]", RC_EPARSE, 3, "invalid character '2' after array element"},
        {"[1}", RC_EPARSE, 2, "invalid character '}' after array element"},
        {"{\"a\":1]", RC_EPARSE, 6, "invalid character ']' after object key:value pair"},
        {"{1:2}", RC_EPARSE, 1, "invalid character '1' looking for beginning of object key string"},
        {"{\"a\":1,}", RC_EPARSE, 7,
         "invalid character '}' looking for beginning of object key string"},
        {"[1,]", RC_EPARSE, 3, "invalid character ']' looking for beginning of value"},
        {"\"a\x01\"", RC_EPARSE, 2, "invalid character '\\x01' in string literal"},
        {"\"a\nb\"", RC_EPARSE, 2, "invalid character '\\x0a' in string literal"},
        {"\"\\q\"", RC_EPARSE, 2, "invalid character 'q' in string escape code"},
        {"\"\\u12g4\"", RC_EPARSE, 5, "invalid character 'g' in \\u hexadecimal character escape"},
        {"tru e", RC_EPARSE, 3, "invalid character ' ' in literal true (expecting 'e')"},
        {"nul", RC_ETRUNC, 3, "unexpected end of JSON input"},
        {"-a", RC_EPARSE, 1, "invalid character 'a' in numeric literal"},
        {"1.e5", RC_EPARSE, 2, "invalid character 'e' after decimal point in numeric literal"},
        {"1e+", RC_ETRUNC, 3, "unexpected end of JSON input"},
        {"[1e+x]", RC_EPARSE, 4, "invalid character 'x' in exponent of numeric literal"},
        {"{\"id\":'0'}", RC_EPARSE, 6, "invalid character '\\'' looking for beginning of value"},
        {"\xef\xbb\xbf{}", RC_EPARSE, 0,
         "invalid character '\\xef' looking for beginning of value"},
        {"{\"a\":\"unterminated", RC_ETRUNC, 18, "unexpected end of JSON input"},
        {"[[[", RC_ETRUNC, 3, "unexpected end of JSON input"},
};

static void test_rc_jsonstream__garbage_reported_precisely(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const struct bad_case *c = &bad_cases[i];
		size_t len = strlen(c->in);
		for (size_t cut = 0; cut <= len; cut++) {
			struct rc_jsonstream js;
			struct got g = {0};
			struct rc_errinfo ei = {0};
			assert_int_equal(rc_jsonstream_init(&js, 64, 4), RC_OK);
			int rc = feed_all(&js, c->in, cut, &g, &ei);
			if (rc == RC_OK)
				rc = feed_all(&js, c->in + cut, len - cut, &g, &ei);
			if (rc == RC_OK) {
				struct rc_str v;
				rc = rc_jsonstream_end(&js, &v, &ei);
			}
			if (rc != c->rc || ei.offset != c->offset || strcmp(ei.text, c->text) != 0)
				fail_msg("case %zu cut %zu: rc %d offset %zu [%s]", i, cut, rc,
				         ei.offset, ei.text);
			/* sticky */
			size_t used;
			struct rc_str v;
			assert_int_equal(rc_jsonstream_feed(&js, "{}", 2, &used, &v, NULL), c->rc);
			assert_null(v.ptr);
			got_free(&g);
			rc_jsonstream_release(&js);
		}
	}
}

static void test_rc_jsonstream__oversize_value_is_an_error(void **state)
{
	(void)state;
	char in[300];
	/* {"a":"xxx...x"} of exactly 100 bytes, then one of 101 bytes */
	memcpy(in, "{\"a\":\"", 6);
	memset(in + 6, 'x', 92);
	memcpy(in + 98, "\"}", 2);
	memcpy(in + 100, "  {\"a\":\"", 8);
	memset(in + 108, 'y', 93);
	memcpy(in + 201, "\"}", 2);
	for (size_t cut = 0; cut <= 203; cut++) {
		struct rc_jsonstream js;
		struct got g = {0};
		struct rc_errinfo ei = {0};
		assert_int_equal(rc_jsonstream_init(&js, 100, 4), RC_OK);
		int rc = feed_all(&js, in, cut, &g, &ei);
		if (rc == RC_OK)
			rc = feed_all(&js, in + cut, 203 - cut, &g, &ei);
		assert_int_equal(rc, RC_ERANGE);
		assert_int_equal(g.n, 1);
		assert_int_equal(g.len[0], 100);
		assert_int_equal(ei.offset, 102 + 100); /* the 101st byte of the second value */
		assert_string_equal(ei.text, "value exceeds 100 bytes");
		/* never buffered more than the limit */
		assert_true(js.part.cap <= 256);
		got_free(&g);
		rc_jsonstream_release(&js);
	}
	/* a huge value in one feed stops being scanned at the limit */
	size_t big = 1 << 20;
	char *p = malloc(big);
	assert_non_null(p);
	memset(p, ' ', big);
	p[10] = '"';
	struct rc_jsonstream js;
	size_t used;
	struct rc_str v;
	assert_int_equal(rc_jsonstream_init(&js, 1000, 4), RC_OK);
	assert_int_equal(rc_jsonstream_feed(&js, p, big, &used, &v, NULL), RC_ERANGE);
	assert_int_equal(used, 10 + 1000 + 1);
	rc_jsonstream_release(&js);
	free(p);
}

static void test_rc_jsonstream__depth_bombs_rejected(void **state)
{
	(void)state;
	size_t n = 100000;
	char *p = malloc(n * 5);
	assert_non_null(p);
	for (int kind = 0; kind < 3; kind++) {
		size_t len = 0;
		for (size_t i = 0; i < n; i++) {
			if (kind == 0) {
				p[len++] = '[';
			} else if (kind == 1) {
				memcpy(p + len, "{\"a\":", 5);
				len += 5;
			} else {
				p[len++] = i % 2 ? '[' : ' ';
			}
		}
		struct rc_jsonstream js;
		struct got g = {0};
		struct rc_errinfo ei;
		assert_int_equal(rc_jsonstream_init(&js, n * 5, 64), RC_OK);
		assert_int_equal(feed_all(&js, p, len, &g, &ei), RC_ERANGE);
		assert_string_equal(ei.text, "exceeded max depth 64");
		assert_int_equal(ei.offset, kind == 0 ? 64 : kind == 1 ? 64 * 5 : 129);
		rc_jsonstream_release(&js);
	}
	/* exactly max_depth is fine */
	struct rc_jsonstream js;
	struct got g = {0};
	size_t len = 0;
	for (int i = 0; i < 64; i++)
		p[len++] = '[';
	for (int i = 0; i < 64; i++)
		p[len++] = ']';
	assert_int_equal(rc_jsonstream_init(&js, 1000, 64), RC_OK);
	assert_int_equal(feed_all(&js, p, len, &g, NULL), RC_OK);
	assert_int_equal(g.n, 1);
	got_free(&g);
	rc_jsonstream_release(&js);
	free(p);
	assert_int_equal(rc_jsonstream_init(&js, 10, 0), RC_EINVAL);
	assert_int_equal(rc_jsonstream_init(&js, 10, RC_JSONSTREAM_DEPTH_LIMIT + 1), RC_EINVAL);
	assert_int_equal(rc_jsonstream_init(&js, 0, 4), RC_EINVAL);
}

/* Objects nested 1024 deep alternate with arrays: every bit of the kind stack is exercised. */
static void test_rc_jsonstream__deepest_mixed_nesting(void **state)
{
	(void)state;
	size_t d = RC_JSONSTREAM_DEPTH_LIMIT;
	char *p = malloc(d * 8 + 8);
	assert_non_null(p);
	size_t len = 0;
	for (size_t i = 0; i < d; i++) {
		if (i % 3 == 0) {
			memcpy(p + len, "{\"k\":", 5);
			len += 5;
		} else {
			p[len++] = '[';
		}
	}
	p[len++] = '0';
	for (size_t i = d; i-- > 0;)
		p[len++] = i % 3 == 0 ? '}' : ']';
	struct rc_jsonstream js;
	struct got g = {0};
	assert_int_equal(rc_jsonstream_init(&js, len, RC_JSONSTREAM_DEPTH_LIMIT), RC_OK);
	for (size_t cut = 0; cut < len; cut += 997) {
		assert_int_equal(feed_all(&js, p, cut, &g, NULL), RC_OK);
		assert_int_equal(feed_all(&js, p + cut, len - cut, &g, NULL), RC_OK);
		assert_int_equal(g.n, 1);
		assert_int_equal(g.len[0], len);
		got_free(&g);
	}
	/* closing with the wrong bracket at depth 500 is caught */
	p[len - 500] = p[len - 500] == '}' ? ']' : '}';
	assert_int_equal(feed_all(&js, p, len, &g, NULL), RC_EPARSE);
	rc_jsonstream_release(&js);
	free(p);
}

/* Feeding a 4 MiB value one byte at a time finishes quickly only if the work is linear. */
static void test_rc_jsonstream__linear_in_input(void **state)
{
	(void)state;
	size_t n = 4u << 20;
	char *p = malloc(n);
	assert_non_null(p);
	p[0] = '"';
	memset(p + 1, 'a', n - 2);
	p[n - 1] = '"';
	struct rc_jsonstream js;
	assert_int_equal(rc_jsonstream_init(&js, n, 4), RC_OK);
	size_t used;
	struct rc_str v = {NULL, 0};
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(rc_jsonstream_feed(&js, p + i, 1, &used, &v, NULL), RC_OK);
		assert_int_equal(used, 1);
		assert_true(v.ptr == NULL || i == n - 1);
	}
	assert_int_equal(v.len, n);
	assert_memory_equal(v.ptr, p, n);
	rc_jsonstream_release(&js);
	free(p);
}

static void test_rc_jsonstream__end_states(void **state)
{
	(void)state;
	struct rc_jsonstream js;
	struct rc_str v;
	struct rc_errinfo ei;
	size_t used;
	assert_int_equal(rc_jsonstream_init(&js, 64, 4), RC_OK);
	assert_int_equal(rc_jsonstream_end(&js, &v, &ei), RC_OK); /* empty stream */
	assert_null(v.ptr);
	assert_int_equal(rc_jsonstream_feed(&js, "{}", 2, &used, &v, &ei), RC_EINVAL);
	assert_string_equal(ei.text, "stream already ended");
	rc_jsonstream_release(&js);

	assert_int_equal(rc_jsonstream_init(&js, 64, 4), RC_OK);
	assert_int_equal(rc_jsonstream_feed(&js, "{\"a\":[1,", 8, &used, &v, NULL), RC_OK);
	assert_int_equal(rc_jsonstream_end(&js, &v, &ei), RC_ETRUNC);
	assert_int_equal(ei.offset, 8);
	rc_jsonstream_release(&js);
	rc_jsonstream_release(NULL);

	assert_int_equal(rc_jsonstream_init(&js, 64, 4), RC_OK);
	assert_int_equal(rc_jsonstream_feed(NULL, "x", 1, &used, &v, NULL), RC_EINVAL);
	assert_int_equal(rc_jsonstream_feed(&js, NULL, 1, &used, &v, NULL), RC_EINVAL);
	assert_int_equal(rc_jsonstream_feed(&js, NULL, 0, &used, &v, NULL), RC_OK);
	rc_jsonstream_release(&js);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rc_jsonstream__every_vector_split_at_every_byte),
	        cmocka_unit_test(test_rc_jsonstream__concatenated_stream_any_split),
	        cmocka_unit_test(test_rc_jsonstream__byte_at_a_time),
	        cmocka_unit_test(test_rc_jsonstream__whole_value_is_zero_copy),
	        cmocka_unit_test(test_rc_jsonstream__strings_hide_structure),
	        cmocka_unit_test(test_rc_jsonstream__top_level_scalars),
	        cmocka_unit_test(test_rc_jsonstream__garbage_reported_precisely),
	        cmocka_unit_test(test_rc_jsonstream__oversize_value_is_an_error),
	        cmocka_unit_test(test_rc_jsonstream__depth_bombs_rejected),
	        cmocka_unit_test(test_rc_jsonstream__deepest_mixed_nesting),
	        cmocka_unit_test(test_rc_jsonstream__linear_in_input),
	        cmocka_unit_test(test_rc_jsonstream__end_states),
	};
	return cmocka_run_group_tests_name("rc_jsonstream", tests, NULL, NULL);
}
