/*
 * pv_consumer: a minimal MOR-RPC consumer for the provider's integration tests, built on
 * rc_morrpc directly (the consumer link, rc_link, is not there yet). One command per run:
 *
 *   pv_consumer ping HOST:PORT
 *       prints "pong version=V" after checking the pong signature recovers to PROVIDER_ADDR
 *       if $PV_PROVIDER_ADDR is set
 *   pv_consumer request HOST:PORT USER_KEY BIDID
 *       session.request signed by USER_KEY; verifies the reply signature with the key it
 *       carries and the approval's EIP-191 signature against that key's address; prints
 *       "provider_pub=0x.. provider_addr=0x.. approval=0x.. approval_sig=0x.."
 *   pv_consumer prompt HOST:PORT USER_KEY PROVIDER_PUB SESSIONID REQUEST_FILE
 *              [--sign-key KEY] [--ts MS] [--stop-after N] [--half-close 1]
 *       session.prompt with the file's bytes as message (signed by --sign-key, default
 *       USER_KEY; timestamp --ts, default now); every response is verified and decrypted and
 *       printed on its own line ("CHUNK <plaintext>"), then "DONE" (exit 0) or
 *       "ERROR <text>" (signed errors: "ERROR signed <plaintext>") (exit 1). --stop-after N
 *       closes the connection after N chunks (exit 0) to test cancellation; --half-close 1
 *       shuts down the sending side after the request (the answer must still come).
 *   pv_consumer report HOST:PORT USER_KEY PROVIDER_PUB SESSIONID
 *       session.report; verifies the reply and the receipt's EIP-191 signature; prints
 *       "tps=N ttft=N in=N out=N chain=N"
 *   pv_consumer raw HOST:PORT FILE
 *       sends the file's bytes and prints whatever comes back (for malformed-request tests)
 * Exit: 0 ok, 1 refused / error response, 2 usage, 3 transport or verification failure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <router-core/rc_gojson.h>
#include <router-core/rc_hex.h>
#include <router-core/rc_jsonstream.h>
#include <router-core/rc_morpheus.h>
#include <router-core/rc_morrpc.h>
#include <router-core/rc_secp.h>

static int die(int code, const char *what)
{
	fprintf(stderr, "pv_consumer: %s\n", what);
	return code;
}

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static int dial(const char *hp)
{
	char host[256];
	const char *colon = strrchr(hp, ':');
	if (!colon || (size_t)(colon - hp) >= sizeof host)
		return -1;
	memcpy(host, hp, (size_t)(colon - hp));
	host[colon - hp] = '\0';
	struct addrinfo hints = {0}, *ai;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, colon + 1, &hints, &ai))
		return -1;
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen)) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	struct timeval tv = {30, 0};
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

/* Length of the valid UTF-8 sequence at p (Go's utf8.DecodeRune rules), 0 if invalid. */
/*
 * What a Go consumer's message holds: the request body went through json.Marshal, which turns
 * every invalid UTF-8 byte into U+FFFD. A message with raw invalid bytes could not verify on a
 * Go provider either (the signer would sign "\ufffd" and the verifier re-encode the decoded
 * rune verbatim), so the consumer sanitizes first, as the reference does implicitly.
 */
static void go_sanitize(struct rc_buf *b)
{
	struct rc_buf o = RC_BUF_INIT;
	if (b->ptr && rc_gojson_append_valid_utf8(&o, b->ptr, b->len) != RC_OK)
		abort();
	rc_buf_release(b);
	*b = o;
}

static int read_file(const char *path, struct rc_buf *out)
{
	FILE *f = fopen(path, "rb");
	char b[4096];
	size_t n;
	if (!f)
		return -1;
	while ((n = fread(b, 1, sizeof b, f)) > 0)
		rc_buf_append(out, b, n);
	fclose(f);
	return 0;
}

/* Reader of back-to-back responses. */
struct rd {
	int fd;
	struct rc_jsonstream js;
	char buf[16384];
	size_t off, len;
	int eof;
};

/* Next value into *v (valid until the next call); 1 = got one, 0 = EOF, -1 = error. */
static int next_value(struct rd *r, struct rc_str *v)
{
	struct rc_errinfo e;
	for (;;) {
		if (r->off < r->len) {
			size_t used = 0;
			if (rc_jsonstream_feed(&r->js, r->buf + r->off, r->len - r->off, &used, v,
			                       &e))
				return -1;
			r->off += used;
			if (v->ptr)
				return 1;
			continue;
		}
		if (r->eof) {
			if (rc_jsonstream_end(&r->js, v, &e))
				return -1;
			return v->ptr ? 1 : 0;
		}
		ssize_t n = recv(r->fd, r->buf, sizeof r->buf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			r->eof = 1;
		r->off = 0;
		r->len = (size_t)n;
	}
}

static int send_req(int fd, struct rc_morrpc_body *b, const struct rc_secp_privkey *k)
{
	struct rc_buf out = RC_BUF_INIT, scratch = RC_BUF_INIT;
	int rc = 0;
	if (k && rc_morrpc_sign(b, k, &scratch))
		rc = -1;
	if (!rc && rc_morrpc_encode_request(b, RC_STR_LIT("a1b2c3d4"), &out))
		rc = -1;
	if (!rc && send(fd, out.ptr, out.len, MSG_NOSIGNAL) != (ssize_t)out.len)
		rc = -1;
	rc_buf_release(&out);
	rc_buf_release(&scratch);
	return rc;
}

static int load_key(const char *hex, struct rc_secp_privkey *k)
{
	return rc_secp_privkey_from_hex(k, hex, strlen(hex), NULL);
}

static void print_hex0x(const char *label, const uint8_t *b, size_t n)
{
	char *s = malloc(2 * n + 3);
	rc_hex_encode_0x(b, n, s, 2 * n + 3);
	printf("%s=%s", label, s);
	free(s);
}

/* A single response: returns its parsed message (caller releases) or exits on an error. */
static int one_response(int fd, struct rc_morrpc_msg *m)
{
	struct rd r;
	struct rc_str v;
	struct rc_errinfo e;
	memset(&r, 0, sizeof r);
	r.fd = fd;
	rc_jsonstream_init(&r.js, 1 << 22, 64);
	int got = next_value(&r, &v);
	int rc = 3;
	if (got == 1 && rc_morrpc_parse_response(m, v.ptr, v.len, &e) == RC_OK)
		rc = 0;
	rc_jsonstream_release(&r.js);
	return rc;
}

static int print_error(const struct rc_morrpc_msg *m)
{
	struct rc_morrpc_body b;
	struct rc_errinfo e;
	if (rc_morrpc_decode(&b, RC_MORRPC_ERROR, m->error, &e))
		return die(3, "undecodable error response");
	printf("ERROR %.*s\n", (int)b.u.error.message.len, b.u.error.message.ptr);
	return 1;
}

static int cmd_ping(int fd)
{
	struct rc_morrpc_body b = {.type = RC_MORRPC_PING_REQ};
	struct rc_morrpc_msg m;
	struct rc_errinfo e;
	struct rc_secp_privkey k;
	memcpy(b.u.ping.nonce, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	b.u.ping.nonce_len = 8;
	rc_secp_privkey_generate(&k); /* the provider does not verify ping signatures */
	int src = send_req(fd, &b, &k);
	rc_secp_privkey_release(&k);
	if (src || one_response(fd, &m))
		return die(3, "no pong");
	if (m.error) {
		int rc = print_error(&m);
		rc_morrpc_msg_release(&m);
		return rc;
	}
	struct rc_morrpc_body p;
	int rc = 0;
	if (rc_morrpc_decode(&p, RC_MORRPC_PONG_RES, m.result, &e) ||
	    memcmp(p.u.ping.nonce, b.u.ping.nonce, 8))
		rc = die(3, "bad pong");
	const char *want = getenv("PV_PROVIDER_ADDR");
	if (!rc && want) {
		uint8_t addr[20];
		struct rc_buf s = RC_BUF_INIT;
		if (rc_hex_decode_exact(want, strlen(want), addr, 20, NULL) ||
		    rc_morrpc_verify_address(&p, addr, &s))
			rc = die(3, "pong signature does not recover to the provider");
		rc_buf_release(&s);
	}
	if (!rc)
		printf("pong version=%.*s\n", (int)p.u.ping.version.len, p.u.ping.version.ptr);
	rc_morrpc_msg_release(&m);
	return rc;
}

static int cmd_request(int fd, const char *ukey, const char *bid)
{
	struct rc_secp_privkey k;
	struct rc_morrpc_body b = {.type = RC_MORRPC_SESSION_REQ}, res;
	struct rc_morrpc_msg m;
	struct rc_errinfo e;
	struct rc_buf s = RC_BUF_INIT;
	int rc = 0;
	if (load_key(ukey, &k) ||
	    rc_hex_decode_exact(bid, strlen(bid), b.u.session_req.bid_id, 32, NULL))
		return die(2, "bad key or bid id");
	rc_secp_privkey_to_address(&k, b.u.session_req.user);
	rc_secp_pubkey(&k, b.u.session_req.key);
	rc_u256_from_u64(&b.u.session_req.spend, 1000000000000000000ull);
	b.u.session_req.timestamp = now_ms();
	if (send_req(fd, &b, &k) || one_response(fd, &m))
		return die(3, "no answer to session.request");
	if (m.error) {
		rc = print_error(&m);
		goto out;
	}
	if (rc_morrpc_decode(&res, RC_MORRPC_SESSION_RES, m.result, &e)) {
		rc = die(3, "bad SessionRes");
		goto out;
	}
	if (rc_morrpc_verify(&res, res.u.session_res.provider_key, &s)) {
		rc = die(3, "SessionRes signature does not verify");
		goto out;
	}
	uint8_t paddr[20];
	struct rc_morpheus_approval ap;
	rc_secp_pubkey_to_address(res.u.session_res.provider_key, paddr);
	if (rc_morpheus_verify_blob(res.u.session_res.approval, RC_MORRPC_APPROVAL_LEN,
	                            res.u.session_res.approval_sig, paddr) ||
	    rc_morpheus_approval_decode(res.u.session_res.approval, RC_MORRPC_APPROVAL_LEN, &ap,
	                                &e) ||
	    memcmp(ap.bid_id, b.u.session_req.bid_id, 32) ||
	    memcmp(ap.user, b.u.session_req.user, 20) || res.u.session_res.approval_sig[64] < 27) {
		rc = die(3, "approval does not verify");
		goto out;
	}
	print_hex0x("provider_pub", res.u.session_res.provider_key, 65);
	print_hex0x(" provider_addr", paddr, 20);
	print_hex0x(" approval", res.u.session_res.approval, 128);
	print_hex0x(" approval_sig", res.u.session_res.approval_sig, 65);
	printf(" chain_id=%llu\n", (unsigned long long)ap.chain_id);
out:
	rc_buf_release(&s);
	rc_morrpc_msg_release(&m);
	rc_secp_privkey_release(&k);
	return rc;
}

static int cmd_prompt(int fd, const char *ukey, const char *ppub, const char *sid, const char *file,
                      const char *sign_key, uint64_t ts, long stop_after, int half_close)
{
	struct rc_secp_privkey k, sk;
	uint8_t pub[65];
	struct rc_morrpc_body b = {.type = RC_MORRPC_PROMPT_REQ};
	struct rc_buf body = RC_BUF_INIT, scratch = RC_BUF_INIT, plain = RC_BUF_INIT;
	struct rd r;
	int rc = 3;
	long chunks = 0;
	if (load_key(ukey, &k) || load_key(sign_key ? sign_key : ukey, &sk) ||
	    rc_hex_decode_exact(ppub, strlen(ppub), pub, 65, NULL) ||
	    rc_hex_decode_exact(sid, strlen(sid), b.u.prompt_req.session_id, 32, NULL) ||
	    read_file(file, &body))
		return die(2, "bad prompt arguments");
	go_sanitize(&body);
	b.u.prompt_req.message = rc_buf_str(&body);
	b.u.prompt_req.timestamp = ts ? ts : now_ms();
	if (send_req(fd, &b, &sk))
		return die(3, "cannot send the prompt");
	if (half_close)
		shutdown(fd, SHUT_WR);
	memset(&r, 0, sizeof r);
	r.fd = fd;
	rc_jsonstream_init(&r.js, 1 << 22, 64);
	for (;;) {
		struct rc_str v;
		struct rc_morrpc_msg m;
		struct rc_morrpc_body d;
		struct rc_errinfo e = {0};
		int got = next_value(&r, &v);
		if (got <= 0) {
			rc = die(3, got == 0 ? "EOF before [DONE]" : "garbage from the provider");
			break;
		}
		if (rc_morrpc_parse_response(&m, v.ptr, v.len, &e)) {
			rc = die(3, "unparsable response");
			break;
		}
		int orc = rc_morrpc_open_chunk(&m, pub, &k, &scratch, &plain, &d, &e);
		rc_morrpc_msg_release(&m);
		if (orc) {
			fprintf(stderr, "pv_consumer: open_chunk: %s %s\n", rc_strerror(orc),
			        e.text);
			rc = 3;
			break;
		}
		if (d.type == RC_MORRPC_ERROR) {
			printf("ERROR %s%.*s\n", d.sig_len == 65 ? "signed " : "", (int)plain.len,
			       plain.ptr ? plain.ptr : "");
			rc = 1;
			break;
		}
		if (rc_morrpc_is_done(rc_buf_str(&plain))) {
			printf("DONE\n");
			rc = 0;
			break;
		}
		printf("CHUNK %.*s\n", (int)plain.len, plain.ptr);
		fflush(stdout);
		if (stop_after > 0 && ++chunks >= stop_after) {
			printf("STOPPED\n");
			rc = 0;
			break;
		}
	}
	rc_jsonstream_release(&r.js);
	rc_buf_release(&body);
	rc_buf_release(&scratch);
	rc_buf_release(&plain);
	rc_secp_privkey_release(&k);
	rc_secp_privkey_release(&sk);
	return rc;
}

static uint32_t word_u32(const uint8_t *blob, int i)
{
	const uint8_t *w = blob + 32 * i + 28;
	return (uint32_t)w[0] << 24 | (uint32_t)w[1] << 16 | (uint32_t)w[2] << 8 | w[3];
}

static int cmd_report(int fd, const char *ukey, const char *ppub, const char *sid)
{
	struct rc_secp_privkey k;
	uint8_t pub[65], paddr[20];
	struct rc_morrpc_body b = {.type = RC_MORRPC_REPORT_REQ}, res;
	struct rc_morrpc_msg m;
	struct rc_errinfo e;
	struct rc_buf s = RC_BUF_INIT;
	char sidtext[67];
	int rc = 0;
	if (load_key(ukey, &k) || rc_hex_decode_exact(ppub, strlen(ppub), pub, 65, NULL) ||
	    strlen(sid) != 66)
		return die(2, "bad report arguments");
	snprintf(sidtext, sizeof sidtext, "%s", sid);
	for (char *p = sidtext; *p; p++)
		if (*p >= 'A' && *p <= 'F')
			*p = (char)(*p - 'A' + 'a');
	b.u.report_req.message = (struct rc_str){sidtext, 66};
	b.u.report_req.timestamp = now_ms();
	if (send_req(fd, &b, &k) || one_response(fd, &m))
		return die(3, "no answer to session.report");
	if (m.error) {
		rc = print_error(&m);
		goto out;
	}
	rc_secp_pubkey_to_address(pub, paddr);
	if (rc_morrpc_decode(&res, RC_MORRPC_REPORT_RES, m.result, &e) ||
	    rc_morrpc_verify(&res, pub, &s) ||
	    rc_morpheus_verify_blob(res.u.report_res.receipt, RC_MORRPC_RECEIPT_LEN,
	                            res.u.report_res.signed_report, paddr)) {
		rc = die(3, "report does not verify");
		goto out;
	}
	const uint8_t *rb = res.u.report_res.receipt;
	printf("tps=%u ttft=%u in=%u out=%u chain=%u\n", word_u32(rb, 3), word_u32(rb, 4),
	       word_u32(rb, 5), word_u32(rb, 6), word_u32(rb, 1));
out:
	rc_buf_release(&s);
	rc_morrpc_msg_release(&m);
	rc_secp_privkey_release(&k);
	return rc;
}

static int cmd_raw(int fd, const char *file)
{
	struct rc_buf body = RC_BUF_INIT;
	char b[4096];
	ssize_t n;
	if (read_file(file, &body))
		return die(2, "cannot read file");
	if (send(fd, body.ptr, body.len, MSG_NOSIGNAL) < 0)
		return die(3, "send failed");
	shutdown(fd, SHUT_WR);
	while ((n = recv(fd, b, sizeof b, 0)) > 0)
		fwrite(b, 1, (size_t)n, stdout);
	rc_buf_release(&body);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return die(2, "usage: pv_consumer ping|request|prompt|report|raw HOST:PORT ...");
	const char *cmd = argv[1];
	int fd = dial(argv[2]);
	if (fd < 0)
		return die(3, "cannot connect");
	int rc = 2;
	if (!strcmp(cmd, "ping"))
		rc = cmd_ping(fd);
	else if (!strcmp(cmd, "request") && argc == 5)
		rc = cmd_request(fd, argv[3], argv[4]);
	else if (!strcmp(cmd, "prompt") && argc >= 7) {
		const char *sk = NULL;
		uint64_t ts = 0;
		long stop = 0;
		int half = 0;
		for (int i = 7; i + 1 < argc; i += 2) {
			if (!strcmp(argv[i], "--sign-key"))
				sk = argv[i + 1];
			else if (!strcmp(argv[i], "--ts"))
				ts = strtoull(argv[i + 1], NULL, 10);
			else if (!strcmp(argv[i], "--stop-after"))
				stop = strtol(argv[i + 1], NULL, 10);
			else if (!strcmp(argv[i], "--half-close"))
				half = argv[i + 1][0] == '1';
		}
		rc = cmd_prompt(fd, argv[3], argv[4], argv[5], argv[6], sk, ts, stop, half);
	} else if (!strcmp(cmd, "report") && argc == 6)
		rc = cmd_report(fd, argv[3], argv[4], argv[5]);
	else if (!strcmp(cmd, "raw") && argc == 4)
		rc = cmd_raw(fd, argv[3]);
	else
		fprintf(stderr, "pv_consumer: bad command line\n");
	close(fd);
	return rc;
}
