/*
 * Consumer link (morpheus-protocol §2.1-§2.5): one TCP connection per request, one signed
 * request written, back-to-back JSON responses read and checked as they arrive.
 *
 * Two layers. struct rc_link_reader is pure: response bytes in, verified events out (chunks to a
 * callback, the handshake/report/pong results into the reader), built on rc_jsonstream (which
 * cuts values at any read boundary and bounds their size) and rc_morrpc (which owns every
 * message rule). The socket loop below only dials, writes, polls and feeds it; that is what the
 * fuzzer and the unit tests exercise without a network.
 *
 * Why the per-chunk path is cheap: rc_morrpc_open_chunk_bytes() recognizes the canonical form
 * a Go or morgate provider writes and hashes the signed bytes in place, checks r||s with a plain
 * ECDSA verify against the key learned at the handshake, and decrypts into a plaintext buffer
 * reused for the whole stream; no JSON tree, no allocation after the first chunks.
 *
 * Where we are stricter than the reference consumer (§7 item 17), on purpose: the response id
 * must echo the request id (the reference does not look), the handshake's echoed user and the
 * approval's bid/user must be ours, and a pong must echo the nonce. An honest provider always
 * satisfies these; a lying one is stopped before the gateway spends gas on its approval.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <router-core/rc_link.h>
#include <router-core/rc_morpheus.h>

#define DEFAULT_MAX_VALUE (16u << 20)
#define DEFAULT_DIAL_MS 3000
#define DEFAULT_FIRST_MS 90000
#define DEFAULT_IDLE_MS 90000
#define READ_BUF 65536

/* ---- errors -----------------------------------------------------------------------------------
 */

static const char *const reason_names[] = {
        [RC_LINK_OK] = "ok",
        [RC_LINK_BAD_ARGS] = "bad_args",
        [RC_LINK_BAD_ENDPOINT] = "bad_endpoint",
        [RC_LINK_RESOLVE] = "resolve",
        [RC_LINK_DIAL] = "dial",
        [RC_LINK_DIAL_TIMEOUT] = "dial_timeout",
        [RC_LINK_SEND] = "send",
        [RC_LINK_FIRST_TIMEOUT] = "first_response_timeout",
        [RC_LINK_IDLE_TIMEOUT] = "idle_timeout",
        [RC_LINK_RECV] = "recv",
        [RC_LINK_CANCELLED] = "cancelled",
        [RC_LINK_CLOSED_EARLY] = "closed_early",
        [RC_LINK_TRUNCATED] = "truncated",
        [RC_LINK_GARBAGE] = "garbage",
        [RC_LINK_OVERSIZE] = "oversize",
        [RC_LINK_BAD_MESSAGE] = "bad_message",
        [RC_LINK_WRONG_ID] = "wrong_id",
        [RC_LINK_BAD_KEY] = "bad_key",
        [RC_LINK_BAD_SIGNATURE] = "bad_signature",
        [RC_LINK_BAD_CIPHERTEXT] = "bad_ciphertext",
        [RC_LINK_MISMATCH] = "mismatch",
        [RC_LINK_PROVIDER_ERROR] = "provider_error",
        [RC_LINK_NOMEM] = "nomem",
};

const char *rc_link_reason_name(enum rc_link_reason r)
{
	if ((int)r < 0 || (size_t)r >= sizeof reason_names / sizeof reason_names[0] ||
	    !reason_names[r])
		return "unknown";
	return reason_names[r];
}

__attribute__((format(printf, 5, 6))) static int fail(struct rc_link_err *err, int rc,
                                                      enum rc_link_reason reason, uint64_t off,
                                                      const char *fmt, ...)
{
	if (err) {
		va_list ap;
		err->rc = rc;
		err->reason = reason;
		err->offset = off;
		err->signed_error = 0;
		va_start(ap, fmt);
		vsnprintf(err->text, sizeof err->text, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static void ok_err(struct rc_link_err *err)
{
	if (err) {
		memset(err, 0, sizeof *err);
	}
}

/* ---- the pure reader --------------------------------------------------------------------------
 */

int rc_link_reader_init(struct rc_link_reader *r, const struct rc_link_expect *x)
{
	if (!r || !x)
		return RC_EINVAL;
	memset(r, 0, sizeof *r);
	switch (x->op) {
	case RC_LINK_OP_PING:
		if (!x->nonce || x->nonce_len == 0 || x->nonce_len > RC_MORRPC_NONCE_MAX)
			return RC_EINVAL;
		break;
	case RC_LINK_OP_HANDSHAKE:
		break;
	case RC_LINK_OP_PROMPT:
		if (!x->user || !x->provider_pub)
			return RC_EINVAL;
		break;
	case RC_LINK_OP_REPORT:
		if (!x->provider_pub)
			return RC_EINVAL;
		break;
	default:
		return RC_EINVAL;
	}
	r->x = *x;
	/* Envelopes nest 3 deep; chunk payloads are strings, so 64 is generous. */
	return rc_jsonstream_init(&r->js, x->max_value ? x->max_value : DEFAULT_MAX_VALUE, 64);
}

void rc_link_reader_release(struct rc_link_reader *r)
{
	if (!r)
		return;
	rc_jsonstream_release(&r->js);
	rc_buf_release(&r->scratch);
	rc_buf_release_wipe(&r->plain);
}

/* Sticky failure of the reader: remember it whole (later calls repeat it), copy it to err. */
#define RFAIL(r, err, rc, reason, ...)                                                             \
	remember(r, err, fail(&(r)->last, rc, reason, rc_jsonstream_offset(&(r)->js), __VA_ARGS__))

static int remember(struct rc_link_reader *r, struct rc_link_err *err, int rc)
{
	r->err_rc = rc;
	if (err)
		*err = r->last;
	return rc;
}

/* Cut printable text for err->text. */
static void clip(char *dst, size_t cap, const char *src, size_t len)
{
	size_t n = len < cap - 1 ? len : cap - 1;
	for (size_t i = 0; i < n; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[n] = '\0';
}

static int provider_error(struct rc_link_reader *r, struct rc_link_err *err, int is_signed,
                          const char *msg, size_t len)
{
	char t[200];
	clip(t, sizeof t, msg, len);
	fail(&r->last, RC_EPROTO, RC_LINK_PROVIDER_ERROR, rc_jsonstream_offset(&r->js),
	     "provider error: %s", t);
	r->last.signed_error = is_signed;
	return remember(r, err, RC_EPROTO);
}

static int handle_chunk(struct rc_link_reader *r, struct rc_str v, struct rc_link_err *err)
{
	struct rc_morrpc_chunk_info info;
	struct rc_errinfo ei = {0};
	int rc = rc_morrpc_open_chunk_bytes(v.ptr, v.len, r->x.id, r->x.provider_pub, r->x.user,
	                                    &r->scratch, &r->plain, &info, &ei);
	if (rc != RC_OK) {
		enum rc_link_reason why = RC_LINK_BAD_MESSAGE;
		if (rc == RC_ENOMEM)
			why = RC_LINK_NOMEM;
		else if (info.stage == RC_MORRPC_AT_ID)
			why = RC_LINK_WRONG_ID;
		else if (info.stage == RC_MORRPC_AT_VERIFY)
			why = RC_LINK_BAD_SIGNATURE;
		else if (info.stage == RC_MORRPC_AT_DECRYPT)
			why = RC_LINK_BAD_CIPHERTEXT;
		return RFAIL(r, err, rc, why, "response %llu: %s", (unsigned long long)r->values,
		             ei.text[0] ? ei.text : rc_strerror(rc));
	}
	const uint8_t *p = (const uint8_t *)r->plain.ptr;
	size_t n = r->plain.len;
	if (info.type == RC_MORRPC_ERROR) {
		if (info.is_signed && r->x.on_chunk)
			r->x.on_chunk(r->x.ud, RC_LINK_CHUNK_ERROR, p, n);
		return provider_error(r, err, info.is_signed, r->plain.ptr ? r->plain.ptr : "", n);
	}
	if (rc_morrpc_is_done(rc_buf_str(&r->plain))) {
		r->done = 1;
		r->stream.done = 1;
		return RC_OK;
	}
	r->stream.chunks++;
	r->stream.bytes += n;
	if (r->x.on_chunk &&
	    r->x.on_chunk(r->x.ud, RC_LINK_CHUNK_DATA, p ? p : (const uint8_t *)"", n) != 0)
		return RFAIL(r, err, RC_EIO, RC_LINK_CANCELLED, "%s",
		             "stopped by the chunk callback");
	return RC_OK;
}

/* The key a SessionRes carries must be 65 bytes, 0x04, on the curve (§2.5.2, §7 item 5). */
static int check_res_key(const json_t *result, uint8_t key[RC_SECP_PUBKEY_LEN])
{
	uint8_t raw[RC_SECP_PUBKEY_LEN + 1];
	size_t n = 0;
	const json_t *msg = json_object_get(result, "message");
	const char *s = json_string_value(msg);
	if (!s)
		return RC_EPROTO; /* the decoder names the problem */
	if (rc_hex_decode(s, json_string_length(msg), raw, sizeof raw, &n, NULL) != RC_OK)
		return RC_EPROTO;
	if (n != RC_SECP_PUBKEY_LEN || raw[0] != 4 ||
	    rc_secp_pubkey_parse(raw, RC_SECP_PUBKEY_LEN, key) != RC_OK)
		return RC_ECRYPTO;
	return RC_OK;
}

static int handle_single(struct rc_link_reader *r, struct rc_str v, struct rc_link_err *err)
{
	struct rc_morrpc_msg m;
	struct rc_morrpc_body b;
	struct rc_errinfo ei = {0};
	int rc = rc_morrpc_parse_response(&m, v.ptr, v.len, &ei);
	if (rc != RC_OK)
		return RFAIL(r, err, rc, rc == RC_ENOMEM ? RC_LINK_NOMEM : RC_LINK_BAD_MESSAGE,
		             "%s", ei.text);
	if (r->x.id.ptr &&
	    (m.id.len != r->x.id.len || memcmp(m.id.ptr, r->x.id.ptr, m.id.len) != 0)) {
		rc = RFAIL(r, err, RC_EPROTO, RC_LINK_WRONG_ID, "%s",
		           "response id does not match the request");
		goto out;
	}
	if (m.error) {
		/* §2.5.4: errors to session.request/report/ping are not verified by the reference.
		 */
		if ((rc = rc_morrpc_decode(&b, RC_MORRPC_ERROR, m.error, &ei)) != RC_OK) {
			rc = RFAIL(r, err, rc, RC_LINK_BAD_MESSAGE, "%s", ei.text);
			goto out;
		}
		rc = provider_error(r, err, 0, b.u.error.message.ptr, b.u.error.message.len);
		goto out;
	}
	switch (r->x.op) {
	case RC_LINK_OP_HANDSHAKE: {
		uint8_t key[RC_SECP_PUBKEY_LEN];
		struct rc_morpheus_approval a;
		if (check_res_key(m.result, key) == RC_ECRYPTO) {
			rc = RFAIL(r, err, RC_ECRYPTO, RC_LINK_BAD_KEY, "%s",
			           "provider key is not an uncompressed secp256k1 point");
			goto out;
		}
		if ((rc = rc_morrpc_decode(&b, RC_MORRPC_SESSION_RES, m.result, &ei)) != RC_OK) {
			rc = RFAIL(r, err, rc, RC_LINK_BAD_MESSAGE, "%s", ei.text);
			goto out;
		}
		if (rc_secp_pubkey_parse(b.u.session_res.provider_key, RC_SECP_PUBKEY_LEN, key) !=
		    RC_OK) {
			rc = RFAIL(r, err, RC_ECRYPTO, RC_LINK_BAD_KEY, "%s",
			           "provider key is not an uncompressed secp256k1 point");
			goto out;
		}
		if ((rc = rc_morrpc_verify(&b, key, &r->scratch)) != RC_OK) {
			rc = RFAIL(r, err, rc,
			           rc == RC_ENOMEM ? RC_LINK_NOMEM : RC_LINK_BAD_SIGNATURE, "%s",
			           "invalid signature from provider");
			goto out;
		}
		if (rc_morpheus_approval_decode(b.u.session_res.approval, RC_MORRPC_APPROVAL_LEN,
		                                &a, &ei) != RC_OK) {
			rc = RFAIL(r, err, RC_EPROTO, RC_LINK_BAD_MESSAGE, "approval: %s", ei.text);
			goto out;
		}
		if (r->x.user_addr &&
		    (memcmp(b.u.session_res.user, r->x.user_addr, RC_SECP_ADDR_LEN) != 0 ||
		     memcmp(a.user, r->x.user_addr, RC_SECP_ADDR_LEN) != 0)) {
			rc = RFAIL(r, err, RC_EPROTO, RC_LINK_MISMATCH, "%s",
			           "provider approved another user");
			goto out;
		}
		if (r->x.bid_id && memcmp(a.bid_id, r->x.bid_id, 32) != 0) {
			rc = RFAIL(r, err, RC_EPROTO, RC_LINK_MISMATCH, "%s",
			           "provider approved another bid");
			goto out;
		}
		memcpy(r->session.provider_key, key, sizeof key);
		memcpy(r->session.approval, b.u.session_res.approval, RC_MORRPC_APPROVAL_LEN);
		memcpy(r->session.approval_sig, b.u.session_res.approval_sig, RC_SECP_SIG_LEN);
		memcpy(r->session.user, b.u.session_res.user, RC_SECP_ADDR_LEN);
		r->session.timestamp = b.u.session_res.timestamp;
		break;
	}
	case RC_LINK_OP_REPORT:
		if ((rc = rc_morrpc_decode(&b, RC_MORRPC_REPORT_RES, m.result, &ei)) != RC_OK) {
			rc = RFAIL(r, err, rc, RC_LINK_BAD_MESSAGE, "%s", ei.text);
			goto out;
		}
		if ((rc = rc_morrpc_verify(&b, r->x.provider_pub, &r->scratch)) != RC_OK) {
			rc = RFAIL(r, err, rc,
			           rc == RC_ENOMEM ? RC_LINK_NOMEM : RC_LINK_BAD_SIGNATURE, "%s",
			           "invalid signature from provider");
			goto out;
		}
		memcpy(r->receipt.receipt, b.u.report_res.receipt, RC_MORRPC_RECEIPT_LEN);
		memcpy(r->receipt.signed_report, b.u.report_res.signed_report, RC_SECP_SIG_LEN);
		r->receipt.timestamp = b.u.report_res.timestamp;
		break;
	case RC_LINK_OP_PING:
		if ((rc = rc_morrpc_decode(&b, RC_MORRPC_PONG_RES, m.result, &ei)) != RC_OK) {
			rc = RFAIL(r, err, rc, RC_LINK_BAD_MESSAGE, "%s", ei.text);
			goto out;
		}
		if (b.u.ping.nonce_len != r->x.nonce_len ||
		    memcmp(b.u.ping.nonce, r->x.nonce, r->x.nonce_len) != 0) {
			rc = RFAIL(r, err, RC_EPROTO, RC_LINK_MISMATCH, "%s",
			           "pong does not echo the nonce");
			goto out;
		}
		if (r->x.provider_addr &&
		    (rc = rc_morrpc_verify_address(&b, r->x.provider_addr, &r->scratch)) != RC_OK) {
			rc = RFAIL(r, err, rc,
			           rc == RC_ENOMEM ? RC_LINK_NOMEM : RC_LINK_BAD_SIGNATURE, "%s",
			           "pong not signed by the provider address");
			goto out;
		}
		clip(r->version, sizeof r->version,
		     b.u.ping.version.ptr ? b.u.ping.version.ptr : "", b.u.ping.version.len);
		break;
	default:
		rc = RFAIL(r, err, RC_EINVAL, RC_LINK_BAD_ARGS, "%s", "reader not initialized");
		goto out;
	}
	r->done = 1;
	rc = RC_OK;
out:
	rc_morrpc_msg_release(&m);
	return rc;
}

static int handle_value(struct rc_link_reader *r, struct rc_str v, struct rc_link_err *err)
{
	r->values++;
	if (r->x.op == RC_LINK_OP_PROMPT)
		return handle_chunk(r, v, err);
	return handle_single(r, v, err);
}

static int sticky(struct rc_link_reader *r, struct rc_link_err *err)
{
	return remember(r, err, r->err_rc);
}

int rc_link_reader_feed(struct rc_link_reader *r, const char *data, size_t len,
                        struct rc_link_err *err)
{
	if (!r || (!data && len))
		return fail(err, RC_EINVAL, RC_LINK_BAD_ARGS, 0, "%s", "invalid arguments");
	if (r->err_rc)
		return sticky(r, err);
	while (len > 0 && !r->done) {
		size_t used = 0;
		struct rc_str v = {NULL, 0};
		struct rc_errinfo ei = {0};
		int rc = rc_jsonstream_feed(&r->js, data, len, &used, &v, &ei);
		if (rc != RC_OK) {
			fail(&r->last, rc,
			     rc == RC_ERANGE   ? RC_LINK_OVERSIZE
			     : rc == RC_ENOMEM ? RC_LINK_NOMEM
			                       : RC_LINK_GARBAGE,
			     ei.offset, "%s", ei.text[0] ? ei.text : rc_strerror(rc));
			return remember(r, err, rc);
		}
		data += used;
		len -= used;
		if (v.ptr && (rc = handle_value(r, v, err)) != RC_OK)
			return rc;
	}
	return RC_OK;
}

int rc_link_reader_end(struct rc_link_reader *r, struct rc_link_err *err)
{
	if (!r)
		return fail(err, RC_EINVAL, RC_LINK_BAD_ARGS, 0, "%s", "invalid arguments");
	if (r->err_rc)
		return sticky(r, err);
	if (!r->done) {
		struct rc_str v = {NULL, 0};
		struct rc_errinfo ei = {0};
		int rc = rc_jsonstream_end(&r->js, &v, &ei);
		if (rc != RC_OK) {
			fail(&r->last, rc, rc == RC_ETRUNC ? RC_LINK_TRUNCATED : RC_LINK_GARBAGE,
			     ei.offset, "provider closed the connection mid-response: %s", ei.text);
			return remember(r, err, rc);
		}
		if (v.ptr && (rc = handle_value(r, v, err)) != RC_OK)
			return rc;
	}
	if (r->done || (r->x.op == RC_LINK_OP_PROMPT && r->stream.chunks > 0)) {
		ok_err(err);
		return RC_OK;
	}
	return RFAIL(r, err, RC_EPROTO, RC_LINK_CLOSED_EARLY, "%s",
	             "provider closed connection without sending any data");
}

/* ---- the link ---------------------------------------------------------------------------------
 */

struct rc_link {
	pthread_mutex_t mu;
	char host[256];
	char port[8];
	struct rc_link_opts o;
	int efd; /* eventfd: readable while cancelled */
	struct rc_secp_privkey user;
	uint8_t user_pub[RC_SECP_PUBKEY_LEN];
	uint8_t user_addr[RC_SECP_ADDR_LEN];
	uint8_t provider_pub[RC_SECP_PUBKEY_LEN];
	int have_provider;
	struct rc_buf req, scratch;
	char *in; /* READ_BUF bytes */
};

/* "host:port" or "[v6]:port" into host and port; 0 on success. */
static int split_endpoint(const char *ep, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *h = ep, *hend, *p;
	if (*ep == '[') {
		h = ep + 1;
		hend = strchr(h, ']');
		if (!hend || hend[1] != ':')
			return -1;
		p = hend + 2;
	} else {
		hend = strrchr(ep, ':');
		if (!hend || memchr(ep, ':', (size_t)(hend - ep)))
			return -1; /* none, or a bare IPv6 address: brackets are required */
		p = hend + 1;
	}
	size_t hl = (size_t)(hend - h), pl = strlen(p);
	if (hl == 0 || hl >= hcap || pl == 0 || pl >= pcap)
		return -1;
	unsigned long v = 0;
	for (size_t i = 0; i < pl; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(p[i] - '0');
		if (v > 65535)
			return -1;
	}
	if (v == 0)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	memcpy(port, p, pl + 1);
	return 0;
}

struct rc_link *rc_link_new(const char *endpoint, const struct rc_secp_privkey *k,
                            const struct rc_link_opts *opts)
{
	if (!endpoint || !k)
		return NULL;
	struct rc_link *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	l->efd = -1;
	if (split_endpoint(endpoint, l->host, sizeof l->host, l->port, sizeof l->port) != 0)
		goto fail;
	if (opts)
		l->o = *opts;
	if (l->o.dial_timeout_ms <= 0)
		l->o.dial_timeout_ms = DEFAULT_DIAL_MS;
	if (l->o.first_timeout_ms <= 0)
		l->o.first_timeout_ms = DEFAULT_FIRST_MS;
	if (l->o.idle_timeout_ms == 0)
		l->o.idle_timeout_ms = DEFAULT_IDLE_MS;
	if (l->o.max_value == 0)
		l->o.max_value = DEFAULT_MAX_VALUE;
	if (l->o.cancel_fd <= 0)
		l->o.cancel_fd = -1;
	if (rc_secp_privkey_from_bytes(&l->user, k->d) != RC_OK ||
	    rc_secp_pubkey(&l->user, l->user_pub) != RC_OK ||
	    rc_secp_pubkey_to_address(l->user_pub, l->user_addr) != RC_OK)
		goto fail;
	if ((l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		goto fail;
	if (!(l->in = malloc(READ_BUF)))
		goto fail;
	if (pthread_mutex_init(&l->mu, NULL) != 0)
		goto fail;
	return l;
fail:
	if (l->efd >= 0)
		close(l->efd);
	free(l->in);
	rc_secp_privkey_release(&l->user);
	free(l);
	return NULL;
}

void rc_link_free(struct rc_link *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->mu);
	close(l->efd);
	free(l->in);
	rc_buf_release(&l->req);
	rc_buf_release(&l->scratch);
	rc_secp_privkey_release(&l->user);
	free(l);
}

int rc_link_set_provider_key(struct rc_link *l, const uint8_t pub[RC_SECP_PUBKEY_LEN])
{
	uint8_t k[RC_SECP_PUBKEY_LEN];
	if (!l || !pub)
		return RC_EINVAL;
	if (pub[0] != 4 || rc_secp_pubkey_parse(pub, RC_SECP_PUBKEY_LEN, k) != RC_OK)
		return RC_ECRYPTO;
	pthread_mutex_lock(&l->mu);
	memcpy(l->provider_pub, k, sizeof k);
	l->have_provider = 1;
	pthread_mutex_unlock(&l->mu);
	return RC_OK;
}

void rc_link_cancel(struct rc_link *l)
{
	uint64_t one = 1;
	if (l) {
		/* write(2) is async-signal-safe; a full counter (EAGAIN) is still readable. */
		ssize_t n = write(l->efd, &one, sizeof one);
		(void)n;
	}
}

void rc_link_uncancel(struct rc_link *l)
{
	uint64_t v;
	if (l) {
		ssize_t n = read(l->efd, &v, sizeof v);
		(void)n;
	}
}

/* poll() on fd (events) plus the cancel fds, up to deadline (monotonic ms; -1 = none).
 * Returns 1 ready, 0 timed out, -1 cancelled, -2 poll error. */
static int wait_fd(struct rc_link *l, int fd, short events, int64_t deadline)
{
	struct pollfd p[3] = {{fd, events, 0}, {l->efd, POLLIN, 0}, {l->o.cancel_fd, POLLIN, 0}};
	nfds_t n = l->o.cancel_fd >= 0 ? 3 : 2;
	for (;;) {
		int t = -1;
		if (deadline >= 0) {
			int64_t left = deadline - rc_mono_ms();
			t = left <= 0 ? 0 : left > 0x7fffffff ? 0x7fffffff : (int)left;
		}
		int rc = poll(p, n, t);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			return -2;
		}
		if (p[1].revents || (n == 3 && p[2].revents))
			return -1;
		if (rc == 0)
			return 0;
		return 1;
	}
}

static int cancelled_now(struct rc_link *l)
{
	return wait_fd(l, -1, 0, 0) == -1;
}

static int dial(struct rc_link *l, int *out, struct rc_link_err *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int64_t deadline = rc_mono_ms() + l->o.dial_timeout_ms;
	int g = getaddrinfo(l->host, l->port, &hints, &res);
	if (g != 0)
		return fail(err, RC_ENOTFOUND, RC_LINK_RESOLVE, 0, "cannot resolve '%s': %s",
		            l->host, gai_strerror(g));
	int rc = fail(err, RC_EIO, RC_LINK_DIAL, 0, "cannot connect to '%s:%s'", l->host, l->port);
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		                ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
			rc = fail(err, RC_EIO, RC_LINK_DIAL, 0, "cannot connect to '%s:%s': %s",
			          l->host, l->port, strerror(errno));
			close(fd);
			continue;
		}
		int w = wait_fd(l, fd, POLLOUT, deadline);
		if (w == -1) {
			close(fd);
			rc = fail(err, RC_EIO, RC_LINK_CANCELLED, 0, "%s",
			          "cancelled while dialing");
			break;
		}
		if (w == 0) {
			close(fd);
			rc = fail(err, RC_ETIMEOUT, RC_LINK_DIAL_TIMEOUT, 0,
			          "connect to '%s:%s' timed out after %d ms", l->host, l->port,
			          l->o.dial_timeout_ms);
			break;
		}
		int soerr = 0;
		socklen_t sl = sizeof soerr;
		if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
			rc = fail(err, RC_EIO, RC_LINK_DIAL, 0, "cannot connect to '%s:%s': %s",
			          l->host, l->port, strerror(soerr ? soerr : errno));
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		*out = fd;
		rc = RC_OK;
		break;
	}
	freeaddrinfo(res);
	return rc;
}

/* §2.1: the reference consumer keeps prompt connections alive with a 10 s period. */
static void keepalive(int fd)
{
	int one = 1, period = 10;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &period, sizeof period);
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &period, sizeof period);
}

/* Dial, write l->req, feed every byte back to r until it is done or the peer closes. */
static int exchange(struct rc_link *l, struct rc_link_reader *r, int keep, struct rc_link_err *err)
{
	int fd = -1, rc;
	if (cancelled_now(l))
		return fail(err, RC_EIO, RC_LINK_CANCELLED, 0, "%s", "link is cancelled");
	if ((rc = dial(l, &fd, err)) != RC_OK)
		return rc;
	if (keep)
		keepalive(fd);
	int64_t t0 = rc_mono_ms(), deadline = t0 + l->o.first_timeout_ms;
	size_t off = 0;
	while (off < l->req.len) {
		ssize_t n = send(fd, l->req.ptr + off, l->req.len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = fail(err, RC_EIO, RC_LINK_SEND, 0, "cannot send request: %s",
			          strerror(errno));
			goto out;
		}
		int w = wait_fd(l, fd, POLLOUT, deadline);
		if (w <= 0) {
			rc = w == -1 ? fail(err, RC_EIO, RC_LINK_CANCELLED, 0, "%s", "cancelled")
			             : fail(err, RC_ETIMEOUT, RC_LINK_FIRST_TIMEOUT, 0, "%s",
			                    "request could not be written in time");
			goto out;
		}
	}
	int got_any = 0;
	for (;;) {
		int w = wait_fd(l, fd, POLLIN, deadline);
		if (w == -1) {
			rc = fail(err, RC_EIO, RC_LINK_CANCELLED, 0, "%s", "cancelled");
			goto out;
		}
		if (w == 0) {
			rc = got_any ? fail(err, RC_ETIMEOUT, RC_LINK_IDLE_TIMEOUT,
			                    rc_jsonstream_offset(&r->js),
			                    "provider stalled for %d ms mid-response",
			                    l->o.idle_timeout_ms)
			             : fail(err, RC_ETIMEOUT, RC_LINK_FIRST_TIMEOUT, 0,
			                    "no response from provider within %d ms",
			                    l->o.first_timeout_ms);
			goto out;
		}
		ssize_t n = recv(fd, l->in, READ_BUF, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			rc = fail(err, RC_EIO, RC_LINK_RECV, rc_jsonstream_offset(&r->js),
			          "cannot read from provider: %s", strerror(errno));
			goto out;
		}
		if (n == 0) {
			rc = rc_link_reader_end(r, err);
			goto out;
		}
		got_any = 1;
		deadline = l->o.idle_timeout_ms < 0 ? -1 : rc_mono_ms() + l->o.idle_timeout_ms;
		uint64_t before = r->stream.chunks;
		if ((rc = rc_link_reader_feed(r, l->in, (size_t)n, err)) != RC_OK)
			goto out;
		if (before == 0 && r->stream.chunks > 0)
			r->stream.first_ms = (uint64_t)(rc_mono_ms() - t0);
		if (r->done) {
			ok_err(err);
			rc = RC_OK;
			goto out;
		}
	}
out:
	close(fd);
	return rc;
}

static void make_id(char buf[9], struct rc_str *id)
{
	uint8_t b[4];
	if (id->len)
		return;
	randombytes_buf(b, sizeof b);
	rc_hex_encode(b, sizeof b, buf, 9);
	*id = (struct rc_str){buf, 8};
}

/* Sign body with the user key and encode it into l->req. */
static int build_request(struct rc_link *l, struct rc_morrpc_body *b, struct rc_str id,
                         struct rc_link_err *err)
{
	rc_buf_reset(&l->req);
	rc_buf_reset(&l->scratch);
	int rc = rc_morrpc_sign(b, &l->user, &l->scratch);
	if (rc == RC_OK)
		rc = rc_morrpc_encode_request(b, id, &l->req);
	if (rc != RC_OK)
		return fail(err, rc, rc == RC_ENOMEM ? RC_LINK_NOMEM : RC_LINK_BAD_ARGS, 0,
		            "cannot build request: %s", rc_strerror(rc));
	return RC_OK;
}

int rc_link_handshake(struct rc_link *l, struct rc_str id, const uint8_t bid_id[32],
                      const struct rc_u256 *spend, uint64_t ts_ms, struct rc_link_session *out,
                      struct rc_link_err *err)
{
	struct rc_morrpc_body b;
	struct rc_link_reader r;
	char idbuf[9];
	if (!l || !bid_id || !out || (!id.ptr && id.len))
		return fail(err, RC_EINVAL, RC_LINK_BAD_ARGS, 0, "%s", "invalid arguments");
	pthread_mutex_lock(&l->mu);
	make_id(idbuf, &id);
	memset(&b, 0, sizeof b);
	b.type = RC_MORRPC_SESSION_REQ;
	memcpy(b.u.session_req.user, l->user_addr, RC_SECP_ADDR_LEN);
	memcpy(b.u.session_req.key, l->user_pub, RC_SECP_PUBKEY_LEN);
	if (spend)
		b.u.session_req.spend = *spend;
	b.u.session_req.timestamp = ts_ms ? ts_ms : (uint64_t)rc_wall_ms();
	memcpy(b.u.session_req.bid_id, bid_id, 32);
	struct rc_link_expect x = {.op = RC_LINK_OP_HANDSHAKE,
	                           .id = id,
	                           .user_addr = l->user_addr,
	                           .bid_id = bid_id,
	                           .max_value = l->o.max_value};
	int rc = build_request(l, &b, id, err);
	if (rc == RC_OK && (rc = rc_link_reader_init(&r, &x)) != RC_OK)
		fail(err, rc, RC_LINK_BAD_ARGS, 0, "%s", "invalid arguments");
	else if (rc == RC_OK) {
		rc = exchange(l, &r, 0, err);
		if (rc == RC_OK) {
			*out = r.session;
			memcpy(l->provider_pub, r.session.provider_key, RC_SECP_PUBKEY_LEN);
			l->have_provider = 1;
		}
		rc_link_reader_release(&r);
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int rc_link_prompt(struct rc_link *l, struct rc_str id, const uint8_t session_id[32],
                   struct rc_str message, uint64_t ts_ms, rc_link_chunk_fn cb, void *ud,
                   struct rc_link_stream *out, struct rc_link_err *err)
{
	struct rc_morrpc_body b;
	struct rc_link_reader r;
	char idbuf[9];
	if (!l || !session_id || (!id.ptr && id.len) || (!message.ptr && message.len))
		return fail(err, RC_EINVAL, RC_LINK_BAD_ARGS, 0, "%s", "invalid arguments");
	pthread_mutex_lock(&l->mu);
	int rc;
	if (!l->have_provider) {
		rc = fail(err, RC_EINVAL, RC_LINK_BAD_ARGS, 0, "%s",
		          "no provider key: handshake first");
		goto out;
	}
	make_id(idbuf, &id);
	memset(&b, 0, sizeof b);
	b.type = RC_MORRPC_PROMPT_REQ;
	memcpy(b.u.prompt_req.session_id, session_id, 32);
	b.u.prompt_req.message = message.ptr ? message : (struct rc_str){"", 0};
	b.u.prompt_req.timestamp = ts_ms ? ts_ms : (uint64_t)rc_wall_ms();
	struct rc_link_expect x = {.op = RC_LINK_OP_PROMPT,
	                           .id = id,
	                           .user = &l->user,
	                           .provider_pub = l->provider_pub,
	                           .max_value = l->o.max_value,
	                           .on_chunk = cb,
	                           .ud = ud};
	if ((rc = build_request(l, &b, id, err)) != RC_OK)
		goto out;
	if ((rc = rc_link_reader_init(&r, &x)) != RC_OK) {
		fail(err, rc, RC_LINK_BAD_ARGS, 0, "%s", "invalid arguments");
		goto out;
	}
	rc = exchange(l, &r, 1, err);
	if (out)
		*out = r.stream;
	rc_link_reader_release(&r);
out:
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int rc_link_report(struct rc_link *l, struct rc_str id, const uint8_t session_id[32],
                   uint64_t ts_ms, struct rc_link_receipt *out, struct rc_link_err *err)
{
	struct rc_morrpc_body b;
	struct rc_link_reader r;
	char idbuf[9], sid[67];
	if (!l || !session_id || !out || (!id.ptr && id.len))
		return fail(err, RC_EINVAL, RC_LINK_BAD_ARGS, 0, "%s", "invalid arguments");
	pthread_mutex_lock(&l->mu);
	int rc;
	if (!l->have_provider) {
		rc = fail(err, RC_EINVAL, RC_LINK_BAD_ARGS, 0, "%s",
		          "no provider key: handshake first");
		goto out;
	}
	make_id(idbuf, &id);
	rc_hex_encode_0x(session_id, 32, sid, sizeof sid);
	memset(&b, 0, sizeof b);
	b.type = RC_MORRPC_REPORT_REQ;
	b.u.report_req.message = (struct rc_str){sid, 66};
	b.u.report_req.timestamp = ts_ms ? ts_ms : (uint64_t)rc_wall_ms();
	struct rc_link_expect x = {.op = RC_LINK_OP_REPORT,
	                           .id = id,
	                           .provider_pub = l->provider_pub,
	                           .max_value = l->o.max_value};
	if ((rc = build_request(l, &b, id, err)) != RC_OK)
		goto out;
	if ((rc = rc_link_reader_init(&r, &x)) != RC_OK) {
		fail(err, rc, RC_LINK_BAD_ARGS, 0, "%s", "invalid arguments");
		goto out;
	}
	rc = exchange(l, &r, 0, err);
	if (rc == RC_OK)
		*out = r.receipt;
	rc_link_reader_release(&r);
out:
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int rc_link_ping(struct rc_link *l, const uint8_t provider_addr[RC_SECP_ADDR_LEN], char *version,
                 size_t cap, struct rc_link_err *err)
{
	struct rc_morrpc_body b;
	struct rc_link_reader r;
	if (!l || (!version && cap))
		return fail(err, RC_EINVAL, RC_LINK_BAD_ARGS, 0, "%s", "invalid arguments");
	pthread_mutex_lock(&l->mu);
	memset(&b, 0, sizeof b);
	b.type = RC_MORRPC_PING_REQ;
	b.u.ping.nonce_len = 8;
	randombytes_buf(b.u.ping.nonce, 8);
	/* §2.1: ping uses id "0". */
	struct rc_link_expect x = {.op = RC_LINK_OP_PING,
	                           .id = RC_STR_LIT("0"),
	                           .provider_addr = provider_addr,
	                           .nonce = b.u.ping.nonce,
	                           .nonce_len = 8,
	                           .max_value = l->o.max_value};
	int rc = build_request(l, &b, RC_STR_LIT("0"), err);
	if (rc == RC_OK && (rc = rc_link_reader_init(&r, &x)) != RC_OK)
		fail(err, rc, RC_LINK_BAD_ARGS, 0, "%s", "invalid arguments");
	else if (rc == RC_OK) {
		rc = exchange(l, &r, 0, err);
		if (rc == RC_OK && version && cap)
			clip(version, cap, r.version, strlen(r.version));
		rc_link_reader_release(&r);
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}
