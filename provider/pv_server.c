/*
 * provider: MOR-RPC server. A thread per connection keeps every handler a straight line of
 * blocking calls (read one value, check the chain, call the backend, write chunks); the cap on
 * connections bounds memory. Why not epoll: each prompt is a long libcurl transfer whose
 * chunks must be sealed and written in order, which a thread does naturally.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <router-core/rc_jsonstream.h>
#include <router-core/rc_morpheus.h>
#include <router-core/rc_morrpc.h>

#include "pv_backend.h"
#include "pv_log.h"
#include "pv_metrics.h"
#include "pv_server.h"

#define REQ_MAX (4u << 20)
#define READ_TIMEOUT_S 30
#define WRITE_TIMEOUT_S 30

struct pv_server {
	struct pv_node *node;
	int fd;
	unsigned port;
	pthread_t thr;
	atomic_int stop;
};

struct conn {
	struct pv_node *node;
	int fd;
	char peer[80];
	char idbuf[128];
	struct rc_str id;
	struct rc_buf out, scratch, plain;
	uint8_t user_pub[RC_SECP_PUBKEY_LEN];
	/* prompt timing */
	struct timespec t0;
	long ttft_ms;
	int write_failed;
	long probe_ms; /* last EOF probe, ms since t0 (0: none yet) */
};

static uint64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/*
 * The approval timestamp (pv_server.h): the clock in ms, but strictly increasing. The
 * contract accepts an approval's exact bytes once (§3.6 step 5, trap 14); two handshakes by one
 * user for one bid in the same millisecond would otherwise get identical approvals and the
 * second openSession would revert with SessionDuplicateApproval.
 */
uint64_t pv_approval_ms(void)
{
	static _Atomic uint64_t last;
	uint64_t now = now_ms(), prev = atomic_load(&last), next;
	do
		next = now > prev ? now : prev + 1;
	while (!atomic_compare_exchange_weak(&last, &prev, next));
	return next;
}

static long mono_ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)((t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000);
}

static int write_all(struct conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			c->write_failed = 1;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int send_out(struct conn *c)
{
	int rc = write_all(c, c->out.ptr, c->out.len);
	rc_buf_reset(&c->out);
	return rc;
}

/* Unsigned infrastructure error (§2.5.4): plain text, "signature":"0x00". */
static void send_error(struct conn *c, const char *text)
{
	struct rc_morrpc_body b;
	memset(&b, 0, sizeof b);
	b.type = RC_MORRPC_ERROR;
	b.sig_len = 1;
	b.u.error.message = (struct rc_str){text, strlen(text)};
	b.u.error.code = RC_MORRPC_ERROR_CODE;
	b.u.error.timestamp = now_ms();
	rc_buf_reset(&c->out);
	if (rc_morrpc_encode_response(&b, c->id, &c->out) == RC_OK)
		send_out(c);
	pv_log_info("rpc", "peer=%s id=%.*s refused: %s", c->peer, (int)c->id.len, c->id.ptr, text);
}

static int sign_and_send(struct conn *c, struct rc_morrpc_body *b)
{
	rc_buf_reset(&c->out);
	if (rc_morrpc_sign(b, &c->node->key, &c->scratch) ||
	    rc_morrpc_encode_response(b, c->id, &c->out)) {
		send_error(c, "internal error");
		return -1;
	}
	return send_out(c);
}

static void hex_of(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	out[0] = '0';
	out[1] = 'x';
	for (size_t i = 0; i < n; i++) {
		out[2 + 2 * i] = d[b[i] >> 4];
		out[3 + 2 * i] = d[b[i] & 15];
	}
	out[2 + 2 * n] = '\0';
}

/* ---- network.ping ------------------------------------------------------------------------ */

static void on_ping(struct conn *c, const struct rc_morrpc_msg *m)
{
	struct rc_morrpc_body req, res;
	struct rc_errinfo e = {0};
	char t[160];
	atomic_fetch_add(&pv_metrics.req_ping, 1);
	if (rc_morrpc_decode(&req, RC_MORRPC_PING_REQ, m->params, &e)) {
		snprintf(t, sizeof t, "request validation failed: %s", e.text);
		send_error(c, t);
		return;
	}
	memset(&res, 0, sizeof res);
	res.type = RC_MORRPC_PONG_RES;
	memcpy(res.u.ping.nonce, req.u.ping.nonce, req.u.ping.nonce_len);
	res.u.ping.nonce_len = req.u.ping.nonce_len;
	res.u.ping.version = (struct rc_str){c->node->version, strlen(c->node->version)};
	sign_and_send(c, &res);
}

/* ---- session.request --------------------------------------------------------------------- */

static void on_session_request(struct conn *c, const struct rc_morrpc_msg *m)
{
	struct pv_node *n = c->node;
	struct rc_morrpc_body req, res;
	struct rc_errinfo e = {0};
	struct rc_rpc_error re;
	struct rc_bid bid;
	uint8_t pub[RC_SECP_PUBKEY_LEN], addr[RC_SECP_ADDR_LEN];
	char t[360], bidhex[67];

	atomic_fetch_add(&pv_metrics.req_session, 1);
	if (rc_morrpc_decode(&req, RC_MORRPC_SESSION_REQ, m->params, &e)) {
		snprintf(t, sizeof t, "request validation failed: %s", e.text);
		goto refuse;
	}
	/* trap 5: the key must be a valid uncompressed point, or every later chunk is lost. */
	if (rc_secp_pubkey_parse(req.u.session_req.key, RC_SECP_PUBKEY_LEN, pub) ||
	    rc_morrpc_verify(&req, req.u.session_req.key, &c->scratch)) {
		snprintf(t, sizeof t, "invalid signature");
		goto refuse;
	}
	rc_secp_pubkey_to_address(pub, addr);
	if (memcmp(addr, req.u.session_req.user, RC_SECP_ADDR_LEN)) {
		snprintf(t, sizeof t, "key does not belong to user");
		goto refuse;
	}
	hex_of(req.u.session_req.bid_id, 32, bidhex);
	memset(&re, 0, sizeof re);
	int rc = rc_market_get_bid(n->market, req.u.session_req.bid_id, &bid, &re);
	if (rc) {
		pv_log_warn("chain", "getBid %s: %s (%s)", bidhex, rc_rpc_strerror(rc), re.message);
		snprintf(t, sizeof t, "failed to get bid: %s", rc_rpc_strerror(rc));
		goto refuse;
	}
	if (bid.created_at == 0) {
		snprintf(t, sizeof t, "bid not found");
		goto refuse;
	}
	if (memcmp(bid.provider, n->addr, 20)) {
		snprintf(t, sizeof t, "bid belongs to another provider");
		goto refuse;
	}
	if (bid.deleted_at != 0) {
		snprintf(t, sizeof t, "bid is not active");
		goto refuse;
	}
	const struct pv_model *model = pv_models_find(n->models, bid.model_id);
	if (!model) {
		snprintf(t, sizeof t, "model not served by this provider");
		goto refuse;
	}
	uint64_t now = now_ms();
	if (!pv_sessions_admit(n->sessions, pv_models_index(n->models, model), model->slots,
	                       model->policy, now / 1000)) {
		atomic_fetch_add(&pv_metrics.no_capacity, 1);
		send_error(c, "no capacity");
		return;
	}
	if (pv_store_put_user(n->store, req.u.session_req.user, pub, now)) {
		snprintf(t, sizeof t, "cannot store user key");
		goto refuse;
	}
	struct rc_morpheus_approval ap;
	memcpy(ap.bid_id, req.u.session_req.bid_id, 32);
	ap.chain_id = n->chain_id;
	memcpy(ap.user, req.u.session_req.user, 20);
	ap.timestamp_ms = pv_approval_ms();
	memset(&res, 0, sizeof res);
	res.type = RC_MORRPC_SESSION_RES;
	memcpy(res.u.session_res.provider_key, n->pub, RC_SECP_PUBKEY_LEN);
	rc_morpheus_approval_encode(&ap, res.u.session_res.approval);
	if (rc_secp_sign_eth_message(&n->key, res.u.session_res.approval, RC_MORRPC_APPROVAL_LEN,
	                             res.u.session_res.approval_sig)) {
		snprintf(t, sizeof t, "internal error");
		goto refuse;
	}
	memcpy(res.u.session_res.user, req.u.session_req.user, 20);
	res.u.session_res.timestamp = now;
	if (sign_and_send(c, &res) == 0) {
		atomic_fetch_add(&pv_metrics.approvals, 1);
		char uhex[43];
		hex_of(req.u.session_req.user, 20, uhex);
		pv_log_info("rpc", "peer=%s approved bid=%s user=%s model=%s", c->peer, bidhex,
		            uhex, model->id_hex);
	}
	return;
refuse:
	atomic_fetch_add(&pv_metrics.refusals, 1);
	send_error(c, t);
}

/* ---- session.prompt ---------------------------------------------------------------------- */

static int sink_chunk(void *ud, const char *json, size_t len)
{
	struct conn *c = ud;
	if (c->ttft_ms < 0)
		c->ttft_ms = mono_ms_since(&c->t0);
	rc_buf_reset(&c->out);
	if (rc_morrpc_seal_chunk(&c->out, &c->scratch, c->id, c->user_pub, (const uint8_t *)json,
	                         len, now_ms(), &c->node->key, NULL, NULL))
		return -1;
	atomic_fetch_add(&pv_metrics.chunks, 1);
	atomic_fetch_add(&pv_metrics.chunk_bytes, len);
	return send_out(c);
}

/*
 * Did the consumer go away? A reset or hang-up says so at once. EOF alone does not: a consumer
 * may half-close its side after the request and still read. So on EOF we probe, at most once
 * per 500 ms, with a "\n" (whitespace between responses, which every MOR-RPC reader skips,
 * §2.1): to a closed socket the peer answers with a reset, seen by the next poll or write.
 */
static int sink_cancelled(void *ud)
{
	struct conn *c = ud;
	struct pollfd p = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
	if (c->write_failed)
		return 1;
	if (poll(&p, 1, 0) <= 0)
		return 0;
	if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
		return 1;
	int eof = (p.revents & POLLRDHUP) != 0;
	if (p.revents & POLLIN) {
		char b[256];
		/* bytes after the request are ignored */
		ssize_t r = recv(c->fd, b, sizeof b, MSG_DONTWAIT);
		if (r == 0)
			eof = 1;
		else if (r < 0 && errno != EAGAIN && errno != EINTR)
			return 1;
	}
	if (!eof)
		return 0;
	long now = mono_ms_since(&c->t0);
	if (c->probe_ms && now - c->probe_ms < 500)
		return 0;
	c->probe_ms = now ? now : 1;
	if (send(c->fd, "\n", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN) {
		c->write_failed = 1;
		return 1;
	}
	return 0;
}

/*
 * A session's bid, for its provider and model: fields a bid never changes once created (a new
 * price is a new bid), so they are cached (and sessions briefly, below): a prompt on a session in
 * use costs no chain read. The cache is small and simply stops growing when full.
 */
#define BID_CACHE_MAX 4096
static struct {
	pthread_mutex_t mu;
	size_t n;
	struct {
		uint8_t id[32], provider[20], model_id[32];
	} v[BID_CACHE_MAX];
} bid_cache = {PTHREAD_MUTEX_INITIALIZER, 0, {{{0}, {0}, {0}}}};

static int bid_of_session(struct pv_node *n, const uint8_t bid_id[32], struct rc_bid *bid)
{
	struct rc_rpc_error re;
	pthread_mutex_lock(&bid_cache.mu);
	for (size_t i = 0; i < bid_cache.n; i++) {
		if (!memcmp(bid_cache.v[i].id, bid_id, 32)) {
			memset(bid, 0, sizeof *bid);
			memcpy(bid->id, bid_id, 32);
			memcpy(bid->provider, bid_cache.v[i].provider, 20);
			memcpy(bid->model_id, bid_cache.v[i].model_id, 32);
			pthread_mutex_unlock(&bid_cache.mu);
			return RC_OK;
		}
	}
	pthread_mutex_unlock(&bid_cache.mu);
	memset(&re, 0, sizeof re);
	int rc = rc_market_get_bid(n->market, bid_id, bid, &re);
	if (rc || bid->created_at == 0)
		return rc;
	pthread_mutex_lock(&bid_cache.mu);
	if (bid_cache.n < BID_CACHE_MAX) {
		memcpy(bid_cache.v[bid_cache.n].id, bid_id, 32);
		memcpy(bid_cache.v[bid_cache.n].provider, bid->provider, 20);
		memcpy(bid_cache.v[bid_cache.n].model_id, bid->model_id, 32);
		bid_cache.n++;
	}
	pthread_mutex_unlock(&bid_cache.mu);
	return RC_OK;
}

/*
 * Sessions read from the chain for prompts, kept SESSION_FRESH_MS: a consumer sends one prompt
 * after another on a session, and a chain read per prompt (getSession) cost each one a round
 * trip to the node. Only open sessions are kept, so a session closed on chain is refused at most
 * SESSION_FRESH_MS after its close (the reference provider never looks at closedAt at all,
 * trap 22). Direct-mapped on the session id's first bytes; a collision just reads the chain.
 */
#define SESSION_CACHE_SLOTS 1024
#define SESSION_FRESH_MS 2000
static struct {
	pthread_mutex_t mu;
	struct {
		struct rc_session_info si;
		struct timespec at;
		int used;
	} v[SESSION_CACHE_SLOTS];
} session_cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t session_slot(const uint8_t id[32])
{
	return ((size_t)id[30] << 8 | id[31]) % SESSION_CACHE_SLOTS;
}

static int session_of(struct pv_node *n, const uint8_t id[32], struct rc_session_info *si,
                      struct rc_rpc_error *re)
{
	size_t k = session_slot(id);
	pthread_mutex_lock(&session_cache.mu);
	if (session_cache.v[k].used && !memcmp(session_cache.v[k].si.id, id, 32) &&
	    mono_ms_since(&session_cache.v[k].at) < SESSION_FRESH_MS) {
		*si = session_cache.v[k].si;
		pthread_mutex_unlock(&session_cache.mu);
		return RC_OK;
	}
	pthread_mutex_unlock(&session_cache.mu);
	int rc = rc_market_get_session(n->market, id, si, re);
	if (rc || !si->found || si->closed_at != 0)
		return rc;
	pthread_mutex_lock(&session_cache.mu);
	session_cache.v[k].si = *si;
	memcpy(session_cache.v[k].si.id, id, 32);
	clock_gettime(CLOCK_MONOTONIC, &session_cache.v[k].at);
	session_cache.v[k].used = 1;
	pthread_mutex_unlock(&session_cache.mu);
	return RC_OK;
}

static void on_prompt(struct conn *c, const struct rc_morrpc_msg *m)
{
	struct pv_node *n = c->node;
	struct rc_morrpc_body req;
	struct rc_errinfo e = {0};
	struct rc_rpc_error re;
	struct rc_session_info si;
	struct rc_bid bid;
	char t[360], sidhex[67];
	int rc;

	atomic_fetch_add(&pv_metrics.req_prompt, 1);
	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	c->ttft_ms = -1;
	if (rc_morrpc_decode(&req, RC_MORRPC_PROMPT_REQ, m->params, &e)) {
		snprintf(t, sizeof t, "request validation failed: %s", e.text);
		send_error(c, t);
		return;
	}
	hex_of(req.u.prompt_req.session_id, 32, sidhex);
	memset(&re, 0, sizeof re);
	rc = session_of(n, req.u.prompt_req.session_id, &si, &re);
	if (rc) {
		pv_log_warn("chain", "getSession %s: %s (%s)", sidhex, rc_rpc_strerror(rc),
		            re.message);
		send_error(c, "session cannot be loaded");
		return;
	}
	if (!si.found) {
		send_error(c, "session not found");
		return;
	}
	rc = bid_of_session(n, si.bid_id, &bid);
	if (rc) {
		pv_log_warn("chain", "getBid of session %s: %s", sidhex, rc_rpc_strerror(rc));
		send_error(c, "session cannot be loaded");
		return;
	}
	if (memcmp(bid.provider, n->addr, 20)) {
		send_error(c, "session belongs to another provider");
		return;
	}
	uint64_t now = now_ms();
	if (si.closed_at != 0) {
		pv_sessions_forget(n->sessions, req.u.prompt_req.session_id);
		send_error(c, "session closed");
		return;
	}
	/* §2.5.3: endsAt*1000 < timestamp; and our own clock, so an old timestamp buys nothing. */
	if (si.ends_at * 1000 < req.u.prompt_req.timestamp || si.ends_at * 1000 < now) {
		send_error(c, "session expired");
		return;
	}
	rc = pv_store_get_user(n->store, si.user, c->user_pub);
	if (rc) {
		send_error(c, rc == RC_ENOTFOUND ? "user not found" : "internal error");
		return;
	}
	if (rc_morrpc_verify(&req, c->user_pub, &c->scratch)) {
		send_error(c, "invalid signature");
		return;
	}
	const struct pv_model *model = pv_models_find(n->models, bid.model_id);
	if (!model) {
		send_error(c, "api adapter not found: model not served by this provider");
		return;
	}
	if (pv_sessions_acquire(n->sessions, req.u.prompt_req.session_id,
	                        pv_models_index(n->models, model), si.ends_at,
	                        n->backend_timeout_ms)) {
		send_error(c, "session busy");
		return;
	}

	struct pv_backend_sink sink = {c, sink_chunk, sink_cancelled};
	struct pv_backend_result res;
	pv_backend_call(model, req.u.prompt_req.message.ptr, req.u.prompt_req.message.len,
	                n->backend_timeout_ms, &sink, &res);
	long dur_ms = mono_ms_since(&c->t0);
	struct pv_prompt_stats st = {0};
	int served = 0;
	switch (res.outcome) {
	case PV_BACKEND_OK:
		sink_chunk(c, "\"[DONE]\"", 8);
		atomic_fetch_add(&pv_metrics.prompts_ok, 1);
		served = 1;
		break;
	case PV_BACKEND_HTTP_ERROR: {
		struct rc_buf plain = RC_BUF_INIT;
		rc_buf_append(&plain, "{\"providerModelError\":", 22);
		rc_buf_append(&plain, res.err_body.ptr ? res.err_body.ptr : "null",
		              res.err_body.len ? res.err_body.len : 4);
		rc_buf_putc(&plain, '}');
		rc_buf_reset(&c->out);
		if (rc_morrpc_seal_error(&c->out, &c->scratch, c->id, c->user_pub,
		                         (const uint8_t *)plain.ptr, plain.len, now_ms(), &n->key,
		                         NULL, NULL) == RC_OK)
			send_out(c);
		rc_buf_release(&plain);
		atomic_fetch_add(&pv_metrics.prompts_backend_error, 1);
		pv_log_warn("backend", "session=%s model=%s backend answered %ld", sidhex,
		            model->id_hex, res.status);
		break;
	}
	case PV_BACKEND_FAILED:
		snprintf(t, sizeof t, "failed to prompt: %s", res.text);
		send_error(c, t);
		atomic_fetch_add(&pv_metrics.prompts_failed, 1);
		served = res.chunks > 0;
		break;
	case PV_BACKEND_CANCELLED:
		atomic_fetch_add(&pv_metrics.prompts_cancelled, 1);
		pv_log_info("rpc",
		            "session=%s consumer went away after %u chunks; backend call "
		            "cancelled",
		            sidhex, res.chunks);
		served = res.chunks > 0;
		break;
	}
	if (served) {
		long secs = dur_ms / 1000;
		st.ttft_ms = c->ttft_ms < 0 ? (uint32_t)dur_ms : (uint32_t)c->ttft_ms;
		st.tokens_in = (uint32_t)(res.tokens_in > UINT32_MAX ? UINT32_MAX : res.tokens_in);
		st.tokens_out =
		        (uint32_t)(res.tokens_out > UINT32_MAX ? UINT32_MAX : res.tokens_out);
		st.tps_scaled1000 = (uint32_t)((uint64_t)st.tokens_out * 1000u /
		                               (uint64_t)(secs < 1 ? 1 : secs));
	}
	if (served)
		pv_store_add_prompt(n->store, req.u.prompt_req.session_id, &st);
	pv_sessions_release(n->sessions, req.u.prompt_req.session_id, served ? &st : NULL,
	                    now_ms() / 1000);
	pv_log_info("rpc",
	            "peer=%s session=%s model=%s outcome=%d chunks=%u ttft_ms=%ld total_ms=%ld "
	            "tokens_in=%u tokens_out=%u",
	            c->peer, sidhex, model->id_hex, (int)res.outcome, res.chunks, c->ttft_ms,
	            dur_ms, st.tokens_in, st.tokens_out);
	pv_backend_result_release(&res);
}

/* ---- session.report ---------------------------------------------------------------------- */

static int parse_sid(struct rc_str s, uint8_t out[32])
{
	if (s.len != 66 || s.ptr[0] != '0' || s.ptr[1] != 'x')
		return -1;
	for (int i = 0; i < 64; i++) {
		char ch = s.ptr[2 + i];
		int d = ch >= '0' && ch <= '9'   ? ch - '0'
		        : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
		        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
		                                 : -1;
		if (d < 0)
			return -1;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(d << 4);
		else
			out[i / 2] |= (uint8_t)d;
	}
	return 0;
}

static void on_report(struct conn *c, const struct rc_morrpc_msg *m)
{
	struct pv_node *n = c->node;
	struct rc_morrpc_body req, res;
	struct rc_errinfo e = {0};
	struct rc_rpc_error re;
	struct rc_session_info si;
	struct pv_session_stats ss;
	uint8_t sid[32];
	char t[360];

	atomic_fetch_add(&pv_metrics.req_report, 1);
	if (rc_morrpc_decode(&req, RC_MORRPC_REPORT_REQ, m->params, &e)) {
		snprintf(t, sizeof t, "request validation failed: %s", e.text);
		send_error(c, t);
		return;
	}
	if (parse_sid(req.u.report_req.message, sid)) {
		send_error(c, "request validation failed: message is not a 0x session id");
		return;
	}
	/* The store survives restarts; the in-memory table is the fallback if SQLite fails. */
	int src = pv_store_session_stats(n->store, sid, &ss);
	if (src == RC_EIO)
		src = pv_sessions_stats(n->sessions, sid, &ss);
	memset(&re, 0, sizeof re);
	int lrc = rc_market_get_session(n->market, sid, &si, &re);
	if (src) {
		/* Never prompted here (or the stats were lost): a session of one of our own bids still
		 * gets a receipt, with zero figures, as the reference's read-through session cache
		 * gives; refusing would leave its user only a dispute close (§3.7). */
		struct rc_bid bid;
		memset(&re, 0, sizeof re);
		if (lrc || !si.found || rc_market_get_bid(n->market, si.bid_id, &bid, &re) ||
		    memcmp(bid.provider, n->addr, 20) != 0) {
			send_error(c, "session not found");
			return;
		}
		memset(&ss, 0, sizeof ss);
	} else if (lrc || !si.found) {
		send_error(c, "session cannot be loaded");
		return;
	}
	int rc = pv_store_get_user(n->store, si.user, c->user_pub);
	if (rc) {
		send_error(c, rc == RC_ENOTFOUND ? "user not found" : "internal error");
		return;
	}
	if (rc_morrpc_verify(&req, c->user_pub, &c->scratch)) {
		send_error(c, "invalid signature");
		return;
	}
	struct rc_morpheus_receipt r;
	memcpy(r.session_id, sid, 32);
	r.chain_id = n->chain_id;
	r.timestamp_ms = now_ms();
	r.tps_scaled1000 = ss.tps_scaled1000;
	r.ttft_ms = ss.ttft_ms;
	r.tokens_in = ss.tokens_in;
	r.tokens_out = ss.tokens_out;
	memset(&res, 0, sizeof res);
	res.type = RC_MORRPC_REPORT_RES;
	rc_morpheus_receipt_encode(&r, res.u.report_res.receipt);
	if (rc_secp_sign_eth_message(&n->key, res.u.report_res.receipt, RC_MORRPC_RECEIPT_LEN,
	                             res.u.report_res.signed_report)) {
		send_error(c, "internal error");
		return;
	}
	res.u.report_res.timestamp = r.timestamp_ms;
	sign_and_send(c, &res);
}

/* ---- connection -------------------------------------------------------------------------- */

static void serve(struct conn *c)
{
	struct rc_jsonstream js;
	struct rc_morrpc_msg m;
	struct rc_errinfo e = {0};
	struct rc_str v = {NULL, 0};
	char buf[16384];
	char t[360];

	memset(&m, 0, sizeof m);
	c->id = RC_STR_LIT("");
	rc_jsonstream_init(&js, REQ_MAX, 64);
	while (!v.ptr) {
		ssize_t r = recv(c->fd, buf, sizeof buf, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0 && rc_jsonstream_end(&js, &v, &e) == RC_OK && v.ptr)
				break;
			pv_log_debug("rpc", "peer=%s closed or timed out before a request",
			             c->peer);
			goto out;
		}
		size_t off = 0;
		while (off < (size_t)r && !v.ptr) {
			size_t used = 0;
			int rc = rc_jsonstream_feed(&js, buf + off, (size_t)r - off, &used, &v, &e);
			if (rc) {
				atomic_fetch_add(&pv_metrics.req_bad, 1);
				snprintf(t, sizeof t, "failed to unmarshal request: %s", e.text);
				send_error(c, t);
				goto out;
			}
			off += used;
		}
	}
	if (rc_morrpc_parse_request(&m, v.ptr, v.len, &e)) {
		atomic_fetch_add(&pv_metrics.req_bad, 1);
		snprintf(t, sizeof t, "failed to unmarshal request: %s", e.text);
		send_error(c, t);
		goto out;
	}
	/* Echo the id: copied, since m owns it and the value buffer. */
	size_t il = m.id.len < sizeof c->idbuf ? m.id.len : sizeof c->idbuf - 1;
	memcpy(c->idbuf, m.id.ptr, il);
	c->id = (struct rc_str){c->idbuf, il};
	switch (m.type) {
	case RC_MORRPC_PING_REQ:
		on_ping(c, &m);
		break;
	case RC_MORRPC_SESSION_REQ:
		on_session_request(c, &m);
		break;
	case RC_MORRPC_PROMPT_REQ:
		on_prompt(c, &m);
		break;
	case RC_MORRPC_REPORT_REQ:
		on_report(c, &m);
		break;
	default:
		atomic_fetch_add(&pv_metrics.req_unknown, 1);
		snprintf(t, sizeof t, "unknown method: unknown method: %.*s",
		         (int)(m.method.len > 64 ? 64 : m.method.len), m.method.ptr);
		send_error(c, t);
	}
out:
	rc_morrpc_msg_release(&m);
	rc_jsonstream_release(&js);
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	serve(c);
	close(c->fd);
	rc_buf_release(&c->out);
	rc_buf_release(&c->scratch);
	rc_buf_release(&c->plain);
	free(c);
	atomic_fetch_sub(&pv_metrics.conns_active, 1);
	return NULL;
}

static void *accept_main(void *arg)
{
	struct pv_server *s = arg;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	while (!atomic_load(&s->stop)) {
		struct pollfd p = {.fd = s->fd, .events = POLLIN};
		if (poll(&p, 1, 200) <= 0)
			continue;
		struct sockaddr_storage sa;
		socklen_t sl = sizeof sa;
		int fd = accept4(s->fd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (atomic_load(&pv_metrics.conns_active) >= (long)s->node->max_connections) {
			atomic_fetch_add(&pv_metrics.conns_refused, 1);
			close(fd);
			continue;
		}
		int one = 1, idle = 10;
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof idle);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		struct timeval rt = {READ_TIMEOUT_S, 0}, wt = {WRITE_TIMEOUT_S, 0};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wt, sizeof wt);
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->node = s->node;
		c->fd = fd;
		char host[48] = "?", serv[8] = "?";
		getnameinfo((struct sockaddr *)&sa, sl, host, sizeof host, serv, sizeof serv,
		            NI_NUMERICHOST | NI_NUMERICSERV);
		snprintf(c->peer, sizeof c->peer, "%s:%s", host, serv);
		atomic_fetch_add(&pv_metrics.conns_active, 1);
		atomic_fetch_add(&pv_metrics.conns_total, 1);
		pthread_t t;
		if (pthread_create(&t, &attr, conn_main, c)) {
			atomic_fetch_sub(&pv_metrics.conns_active, 1);
			close(fd);
			free(c);
		}
	}
	pthread_attr_destroy(&attr);
	return NULL;
}

int pv_server_start(struct pv_node *node, const char *host, unsigned port, struct pv_server **out)
{
	struct addrinfo hints = {0}, *ai = NULL;
	char ps[16];
	*out = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(ps, sizeof ps, "%u", port);
	int gr = getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai);
	if (gr) {
		pv_log_error("server", "cannot resolve listen address '%s': %s", host,
		             gai_strerror(gr));
		return RC_EIO;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 1024)) {
		pv_log_error("server", "cannot listen on '%s:%u': %s", host, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return RC_EIO;
	}
	freeaddrinfo(ai);
	struct pv_server *s = calloc(1, sizeof *s);
	if (!s) {
		close(fd);
		return RC_ENOMEM;
	}
	struct sockaddr_storage sa;
	socklen_t sl = sizeof sa;
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	s->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
	                                         : ((struct sockaddr_in *)&sa)->sin_port);
	s->node = node;
	s->fd = fd;
	if (pthread_create(&s->thr, NULL, accept_main, s)) {
		close(fd);
		free(s);
		return RC_ENOMEM;
	}
	*out = s;
	return RC_OK;
}

unsigned pv_server_port(const struct pv_server *s)
{
	return s->port;
}

long pv_server_drain(struct pv_server *s, long timeout_ms)
{
	struct timespec t0;
	if (!atomic_exchange(&s->stop, 1)) {
		pthread_join(s->thr, NULL);
		close(s->fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (atomic_load(&pv_metrics.conns_active) > 0 && mono_ms_since(&t0) < timeout_ms)
		usleep(20000);
	return atomic_load(&pv_metrics.conns_active);
}

void pv_server_free(struct pv_server *s)
{
	free(s);
}
