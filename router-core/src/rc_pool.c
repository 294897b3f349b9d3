/*
 * router-core: the marketplace session pool (rc_pool.h) and the close procedure
 * (rc_session_close).
 *
 * One mutex (p->mu) guards the session list, the catalogue, the discovery cache and the stats;
 * it is never held across I/O (chain, link, store, coordination). A session being used by a
 * request, or being closed or handshaken by the maintenance thread, is flagged busy under the
 * mutex, which is what keeps one request per session (the incumbent's crosstalk,
 * anchor-marketplace-api §9) and keeps the maintenance thread from closing a session a request
 * holds (their claim-versus-close race, §4). Store writes go through save(), which copies the
 * record under the mutex inside a second mutex (p->save_mu), so records reach the store in the
 * order their changes happened.
 *
 * Why sessions are closed only after endsAt (morpheus-protocol §3.7): a close before endsAt puts
 * the unused stake on hold until the next day (userStakesOnHold). A session is therefore retired
 * (no new requests) retire_before_end_s before its end, and closed once the chain clock has
 * passed endsAt, with the provider's receipt (session.report, §2.5.5). The only early close is
 * for a provider that is gone (abandoned for lying, or failing for gone_after_ms), where the
 * stake would otherwise sit until endsAt for nothing; then a user-signed receipt (a dispute,
 * §1.2 (f), trap 13) is allowed when the provider does not answer.
 *
 * The chain clock is max(wall clock, latest block timestamp), refreshed every maintenance tick:
 * a test chain moved forward with evm_increaseTime is obeyed, and a real chain's blocks lagging
 * the wall clock by a few seconds never make us think a session has time it does not have.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <router-core/rc_hex.h>
#include <router-core/rc_morpheus.h>
#include <router-core/rc_pool.h>
#include <router-core/rc_rpc.h>

#define MAX_AVOID 32
#define LEASE_TTL_MS 600000 /* "sess:<id>": longer than any stream; unlocked on release */
/*
 * "tx" is held around one write (send + receipt), but its TTL only needs to cover the send:
 * once the node has accepted our transaction, the pending nonce another instance re-reads
 * includes it. A short TTL bounds how long a killed instance's lock stalls the others.
 */
#define TX_LOCK_TTL_MS 5000
#define RECONCILE_MS 600000    /* getUserSessions reconcile after the start-up one */
#define KEEP_ENDED_MS 3600000  /* closed/failed records stay listed this long */
#define USER_SESSIONS_MAX 1020 /* newest sessions read at recovery (4 pages) */

/* ---- names ----------------------------------------------------------------------------------- */

const char *rc_pool_state_name(enum rc_pool_state s)
{
	switch (s) {
	case RC_POOL_S_OPENING:
		return "opening";
	case RC_POOL_S_OPEN:
		return "open";
	case RC_POOL_S_RETIRED:
		return "retired";
	case RC_POOL_S_CLOSING:
		return "closing";
	case RC_POOL_S_CLOSED:
		return "closed";
	case RC_POOL_S_FAILED:
		return "failed";
	}
	return "unknown";
}

const char *rc_pool_reason_name(enum rc_pool_reason r)
{
	switch (r) {
	case RC_POOL_OK:
		return "ok";
	case RC_POOL_UNKNOWN_MODEL:
		return "unknown_model";
	case RC_POOL_NO_BIDS:
		return "no_bids";
	case RC_POOL_NO_PROVIDER:
		return "no_provider";
	case RC_POOL_CHAIN:
		return "chain";
	case RC_POOL_FUNDS:
		return "funds";
	case RC_POOL_TIMEOUT:
		return "timeout";
	case RC_POOL_PROVIDER:
		return "provider";
	case RC_POOL_PROVIDER_ERROR:
		return "provider_error";
	case RC_POOL_CANCELLED:
		return "cancelled";
	case RC_POOL_INTERNAL:
		return "internal";
	}
	return "unknown";
}

/* ---- small helpers -----------------------------------------------------------------------------
 */

static bool is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* "0x1234…abcd" of an address or id, for messages. */
static void short_hex(const uint8_t *b, size_t n, char out[16])
{
	static const char hx[] = "0123456789abcdef";
	snprintf(out, 16, "0x%c%c%c%c..%c%c%c%c", hx[b[0] >> 4], hx[b[0] & 15], hx[b[1] >> 4],
	         hx[b[1] & 15], hx[b[n - 2] >> 4], hx[b[n - 2] & 15], hx[b[n - 1] >> 4],
	         hx[b[n - 1] & 15]);
}

static void set_err(struct rc_pool_err *e, enum rc_pool_reason r, int rc, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void set_err(struct rc_pool_err *e, enum rc_pool_reason r, int rc, const char *fmt, ...)
{
	if (!e)
		return;
	e->reason = r;
	e->rc = rc;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof e->text, fmt, ap);
	va_end(ap);
	/* printable only: provider and chain texts are untrusted */
	for (char *c = e->text; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
			*c = ' ';
}

/* Append "fmt" to a "; "-separated list in buf (cut to fit). */
static void append_reason(char *buf, size_t cap, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void append_reason(char *buf, size_t cap, const char *fmt, ...)
{
	size_t n = strlen(buf);
	if (n + 3 >= cap)
		return;
	if (n) {
		memcpy(buf + n, "; ", 3);
		n += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + n, cap - n, fmt, ap);
	va_end(ap);
}

static bool fd_readable(int fd)
{
	if (fd <= 0)
		return false;
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLIN | POLLHUP | POLLERR));
}

/* Is this an error that means "the chain (node) is not reachable or not answering"? */
static bool chain_transport_error(int rc)
{
	return rc == RC_EIO || rc == RC_ETIMEOUT || rc == RC_EPROTO || rc == RC_ERPC ||
	       rc == RC_ECHAINID;
}

static bool funds_error(int rc, const struct rc_rpc_error *e)
{
	if (rc == RC_EFUNDS)
		return true;
	if ((rc == RC_EREVERT || rc == RC_ETXFAILED) && e->revert_name &&
	    (strstr(e->revert_name, "InsufficientBalance") ||
	     strstr(e->revert_name, "InsufficientAllowance")))
		return true;
	return false;
}

static bool retryable_open_revert(const struct rc_rpc_error *e)
{
	if (e->revert_name && (strstr(e->revert_name, "DuplicateApproval") ||
	                       strstr(e->revert_name, "InsufficientAllowance")))
		return true;
	return strcasestr(e->revert_text, "insufficient allowance") != NULL ||
	       strcasestr(e->message, "insufficient allowance") != NULL;
}

static const char *rpc_text(const struct rc_rpc_error *e, int rc)
{
	if (e->has_revert && e->revert_text[0])
		return e->revert_text;
	if (e->message[0])
		return e->message;
	return rc_strerror(rc);
}

/* ---- the close procedure (shared with morgatectl) ----------------------------------------------
 */

static bool lying(enum rc_link_reason r);
struct tx_guard; /* the pool's "tx" lock around writes, NULL when closing without a pool */
static int tx_lock(struct tx_guard *g);
static void tx_unlock(struct tx_guard *g);

/* The receipt a provider gave must be about this session and chain, and signed by the bid's
 * provider (delegated signers are not looked up: such a receipt ends in a dispute close). */
static bool receipt_ok(const struct rc_link_receipt *r, const uint8_t sid[32], uint64_t chain_id,
                       const uint8_t provider[20])
{
	uint8_t cid[32] = {0};
	for (int i = 0; i < 8; i++)
		cid[31 - i] = (uint8_t)(chain_id >> (8 * i));
	if (memcmp(r->receipt, sid, 32) != 0 || memcmp(r->receipt + 32, cid, 32) != 0)
		return false;
	return rc_morpheus_verify_blob(r->receipt, RC_MORRPC_RECEIPT_LEN, r->signed_report,
	                               provider) == RC_OK;
}

static int close_impl(struct rc_market *m, struct rc_txm *txm, const struct rc_secp_privkey *key,
                      const struct rc_link_opts *link, struct rc_pool_session *s,
                      bool allow_dispute, bool early_ok, uint64_t now_s, struct tx_guard *g,
                      struct rc_pool_err *err, int *no_receipt)
{
	struct rc_rpc_error re = {0};
	struct rc_session_info info;
	char sid[16];
	short_hex(s->id, 32, sid);
	*no_receipt = 0; /* 1: provider unreachable, 2: it answered without a good receipt */
	int rc = rc_market_get_session(m, s->id, &info, &re);
	if (rc != RC_OK) {
		set_err(err, RC_POOL_CHAIN, rc, "cannot read session %s: %s", sid,
		        rpc_text(&re, rc));
		return rc;
	}
	if (!info.found) {
		set_err(err, RC_POOL_INTERNAL, RC_ENOTFOUND, "session %s is not on chain", sid);
		return RC_ENOTFOUND;
	}
	s->opened_at = info.opened_at;
	s->ends_at = info.ends_at;
	if (info.closed_at) {
		s->state = RC_POOL_S_CLOSED;
		s->closed_at = info.closed_at;
		s->dispute = info.closeout_type == 1;
		return RC_OK;
	}
	if (!early_ok && info.ends_at >= now_s)
		return 1; /* not ended on chain yet (our endsAt was an estimate): §3.7, wait */

	/* session.report (§2.5.5) */
	struct rc_link_receipt rcpt;
	struct rc_link_err le = {0};
	bool have = false;
	char why[320] = "";
	int kind = 1;
	struct rc_link *l = s->endpoint[0] ? rc_link_new(s->endpoint, key, link) : NULL;
	if (!l) {
		snprintf(why, sizeof why, "no link to the provider");
	} else {
		if (is_zero(s->provider_key, sizeof s->provider_key)) {
			struct rc_link_session hs;
			rc = rc_link_handshake(l, (struct rc_str){NULL, 0}, s->bid_id, &s->stake, 0,
			                       &hs, &le);
			if (rc == RC_OK)
				memcpy(s->provider_key, hs.provider_key, sizeof s->provider_key);
		} else {
			rc = rc_link_set_provider_key(l, s->provider_key);
			if (rc != RC_OK)
				snprintf(le.text, sizeof le.text, "stored provider key is invalid");
		}
		if (rc == RC_OK)
			rc = rc_link_report(l, (struct rc_str){NULL, 0}, s->id, 0, &rcpt, &le);
		if (rc == RC_OK && receipt_ok(&rcpt, s->id, rc_txm_chain_id(txm), s->provider))
			have = true;
		else if (rc == RC_OK)
			snprintf(why, sizeof why,
			         "receipt not for this session or not signed by the provider");
		else
			snprintf(why, sizeof why, "%s: %s", rc_link_reason_name(le.reason),
			         le.text);
		if (rc == RC_OK || le.reason == RC_LINK_PROVIDER_ERROR || lying(le.reason))
			kind = 2;
		rc_link_free(l);
		if (rc != RC_OK && le.reason == RC_LINK_CANCELLED) {
			/* shutting down: never a dispute for that */
			set_err(err, RC_POOL_CANCELLED, rc, "cancelled");
			return rc;
		}
	}
	uint8_t blob[RC_MORPHEUS_RECEIPT_LEN], sig[RC_SECP_SIG_LEN];
	if (have) {
		memcpy(blob, rcpt.receipt, sizeof blob);
		memcpy(sig, rcpt.signed_report, sizeof sig);
	} else {
		*no_receipt = kind;
		if (!allow_dispute) {
			set_err(err, RC_POOL_PROVIDER, RC_EPROTO, "no receipt for session %s: %s",
			        sid, why);
			return RC_EPROTO;
		}
		/* §1.2 (f) 2: the same structure with our own figures, signed by the user: a
		 * dispute */
		struct rc_morpheus_receipt r = {0};
		memcpy(r.session_id, s->id, 32);
		r.chain_id = rc_txm_chain_id(txm);
		r.timestamp_ms = now_s * 1000;
		rc_morpheus_receipt_encode(&r, blob);
		rc = rc_secp_sign_eth_message(key, blob, sizeof blob, sig);
		if (rc != RC_OK) {
			set_err(err, RC_POOL_INTERNAL, rc, "cannot sign the dispute receipt");
			return rc;
		}
	}
	if (tx_lock(g) != 0) {
		set_err(err, RC_POOL_CHAIN, RC_ETIMEOUT, "transaction lock not available");
		return RC_ETIMEOUT;
	}
	memset(&re, 0, sizeof re);
	rc = rc_market_close_session(m, txm, blob, sizeof blob, sig, sizeof sig, &re);
	tx_unlock(g);
	if (rc != RC_OK) {
		/* closed meanwhile (another instance, morgatectl): re-read */
		struct rc_rpc_error re2 = {0};
		if (rc_market_get_session(m, s->id, &info, &re2) == RC_OK && info.found &&
		    info.closed_at) {
			s->state = RC_POOL_S_CLOSED;
			s->closed_at = info.closed_at;
			s->dispute = info.closeout_type == 1;
			return RC_OK;
		}
		set_err(err, funds_error(rc, &re) ? RC_POOL_FUNDS : RC_POOL_CHAIN, rc,
		        "closeSession %s: %s", sid, rpc_text(&re, rc));
		return rc;
	}
	s->dispute = !have;
	s->state = RC_POOL_S_CLOSED;
	memset(&re, 0, sizeof re);
	if (rc_market_get_session(m, s->id, &info, &re) == RC_OK && info.closed_at)
		s->closed_at = info.closed_at;
	else
		s->closed_at = now_s;
	s->updated_ms = rc_wall_ms();
	return RC_OK;
}

int rc_session_close(struct rc_market *m, struct rc_txm *txm, const struct rc_secp_privkey *key,
                     const struct rc_link_opts *link, struct rc_pool_session *s, bool allow_dispute,
                     struct rc_pool_err *err)
{
	if (err)
		memset(err, 0, sizeof *err);
	if (!m || !txm || !key || !s || is_zero(s->id, 32)) {
		set_err(err, RC_POOL_INTERNAL, RC_EINVAL, "bad arguments");
		return RC_EINVAL;
	}
	int nr;
	uint64_t now = (uint64_t)(rc_wall_ms() / 1000);
	return close_impl(m, txm, key, link, s, allow_dispute, true, now, NULL, err, &nr);
}

/* ---- the pool
 * ------------------------------------------------------------------------------------ */

struct psess {
	struct rc_pool_session s;
	bool busy;                   /* held by a request or the maintenance thread */
	bool leased;                 /* we hold "sess:<id>" */
	bool keyless;                /* the maintenance thread failed to learn the provider key */
	bool visited;                /* reconcile's mark */
	bool dirty;                  /* request counters changed since the last save */
	int64_t no_receipt_since_ms; /* first close after endsAt that got no receipt; 0: none */
	int64_t last_used_ms;
	struct psess *next;
};

struct dcache {
	uint8_t model_id[32];
	struct rc_market_discovery d;
	int64_t at_ms; /* monotonic */
	struct dcache *next;
};

struct inflight {
	struct rc_link *l;
	struct inflight *next;
};

struct tx_guard {
	struct rc_pool *p;
	bool coord_held;
	int64_t deadline; /* monotonic ms to give up waiting for the lock; 0: TTL + 1 s */
};

#define SHARED_READ_MS 250

struct rc_pool {
	struct rc_pool_opts o;
	struct rc_secp_privkey key;
	uint8_t self[20];
	struct rc_rank_opts rank;
	pthread_mutex_t mu, save_mu, tx_mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool started;
	atomic_bool stopping; /* read without the mutex by loops that must end on shutdown */
	int stop_fd;
	unsigned active; /* rc_pool_prompt calls in progress */
	int64_t shared_read_ms; /* last read of the shared table from the request path (under mu) */
	struct inflight *links;

	struct psess *sessions;
	struct dcache *dcache;
	struct rc_pool_model *catalog;
	size_t ncatalog;
	int64_t catalog_wall_ms, catalog_mono_ms, reconcile_mono_ms;
	bool recovered;
	bool reconcile_soon; /* an openSession of unknown outcome: reconcile within 30 s */
	unsigned warming;    /* warm-up opens in flight */

	_Atomic int64_t block_ts; /* latest block timestamp seen, seconds */
	struct rc_health health;
	struct rc_pool_stats st;
};

static void plog(struct rc_pool *p, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void plog(struct rc_pool *p, int level, const char *fmt, ...)
{
	if (!p->o.log)
		return;
	char buf[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	for (char *c = buf; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = ' ';
	p->o.log(p->o.log_ud, level, buf);
}

static uint64_t chain_now(struct rc_pool *p)
{
	int64_t w = rc_wall_ms() / 1000, b = atomic_load(&p->block_ts);
	return (uint64_t)(w > b ? w : b);
}

static int tx_lock(struct tx_guard *g)
{
	if (!g || !g->p->o.coord)
		return 0;
	struct rc_pool *p = g->p;
	pthread_mutex_lock(&p->tx_mu);
	int64_t until = rc_mono_ms() + TX_LOCK_TTL_MS + 1000; /* a dead holder's lock has expired */
	if (g->deadline && g->deadline < until)
		until = g->deadline;
	for (;;) {
		int r = p->o.coord->trylock(p->o.coord_ud, "tx", TX_LOCK_TTL_MS);
		if (r >= 0) {
			pthread_mutex_lock(&p->mu);
			p->st.coordinated = true;
			pthread_mutex_unlock(&p->mu);
		}
		if (r > 0) {
			g->coord_held = true;
			/* another instance may have sent from this wallet since our last send */
			rc_txm_resync(p->o.txm);
			return 0;
		}
		if (r < 0) {
			pthread_mutex_lock(&p->mu);
			p->st.coordinated = false;
			pthread_mutex_unlock(&p->mu);
			return 0; /* coordination down: in-process only */
		}
		if (rc_mono_ms() > until || p->stopping) {
			pthread_mutex_unlock(&p->tx_mu);
			return -1;
		}
		usleep(20000);
	}
}

static void tx_unlock(struct tx_guard *g)
{
	if (!g || !g->p->o.coord)
		return;
	if (g->coord_held)
		g->p->o.coord->unlock(g->p->o.coord_ud, "tx");
	g->coord_held = false;
	pthread_mutex_unlock(&g->p->tx_mu);
}

static void lock_name(char *out, size_t cap, const char *prefix, const uint8_t *id, size_t n)
{
	size_t k = strlen(prefix);
	memcpy(out, prefix, k);
	rc_hex_encode_0x(id, n, out + k, cap - k);
}

/* Write ps's current record to the store (and the shared table when open). 0 or -1. */
static int save(struct rc_pool *p, struct psess *ps)
{
	pthread_mutex_lock(&p->save_mu);
	pthread_mutex_lock(&p->mu);
	ps->s.updated_ms = rc_wall_ms();
	struct rc_pool_session copy = ps->s;
	pthread_mutex_unlock(&p->mu);
	int rc = 0;
	if (p->o.store && p->o.store->save)
		rc = p->o.store->save(p->o.store_ud, &copy) ? -1 : 0;
	pthread_mutex_unlock(&p->save_mu);
	if (rc)
		plog(p, 2, "pool: cannot save session record %" PRIu64, copy.local_id);
	if (p->o.coord && !is_zero(copy.id, 32)) {
		if (copy.state == RC_POOL_S_OPEN)
			p->o.coord->put(p->o.coord_ud, &copy);
		else if (copy.state != RC_POOL_S_OPENING)
			p->o.coord->del(p->o.coord_ud, copy.id);
	}
	return rc;
}

static uint64_t new_local_id(void)
{
	uint64_t v = 0;
	while (v == 0)
		if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
			v = (uint64_t)rc_wall_ms() ^ ((uint64_t)rc_mono_ms() << 20);
	return v;
}

static struct psess *find_by_id(struct rc_pool *p, const uint8_t id[32])
{
	for (struct psess *ps = p->sessions; ps; ps = ps->next)
		if (memcmp(ps->s.id, id, 32) == 0)
			return ps;
	return NULL;
}

static void link_register(struct rc_pool *p, struct inflight *in, struct rc_link *l)
{
	in->l = l;
	pthread_mutex_lock(&p->mu);
	in->next = p->links;
	p->links = in;
	if (p->stopping)
		rc_link_cancel(l);
	pthread_mutex_unlock(&p->mu);
}

static void link_unregister(struct rc_pool *p, struct inflight *in)
{
	pthread_mutex_lock(&p->mu);
	for (struct inflight **pp = &p->links; *pp; pp = &(*pp)->next)
		if (*pp == in) {
			*pp = in->next;
			break;
		}
	pthread_mutex_unlock(&p->mu);
}

/* Link options for a call that must end by deadline (monotonic ms; 0: none). */
static struct rc_link_opts link_opts(struct rc_pool *p, int64_t deadline, int cancel_fd)
{
	struct rc_link_opts lo = p->o.link;
	if (!lo.dial_timeout_ms)
		lo.dial_timeout_ms = 3000;
	if (!lo.first_timeout_ms)
		lo.first_timeout_ms = 90000;
	if (deadline) {
		int64_t left = deadline - rc_mono_ms();
		if (left < 1)
			left = 1;
		if (left < lo.dial_timeout_ms)
			lo.dial_timeout_ms = (int)left;
		if (left < lo.first_timeout_ms)
			lo.first_timeout_ms = (int)left;
	}
	lo.cancel_fd = cancel_fd;
	return lo;
}

static const struct rc_pool_model_cfg *model_cfg(struct rc_pool *p, const char *name)
{
	for (size_t i = 0; i < p->o.nmodels; i++)
		if (p->o.models[i].model && strcmp(p->o.models[i].model, name) == 0)
			return &p->o.models[i];
	return NULL;
}

/* ---- construction ------------------------------------------------------------------------------
 */

int rc_pool_new(const struct rc_pool_opts *o, struct rc_pool **out)
{
	*out = NULL;
	if (!o || !o->market || !o->txm || !o->key)
		return RC_EINVAL;
	if (o->session_s && o->session_s < 300)
		return RC_EINVAL; /* the chain's MIN_SESSION_DURATION (§3.6 step 5) */
	struct rc_pool *p = calloc(1, sizeof *p);
	if (!p)
		return RC_ENOMEM;
	p->o = *o;
#define DEF(f, v)                                                                                  \
	if (!p->o.f)                                                                               \
		p->o.f = (v);
	DEF(session_s, 600);
	DEF(retire_before_end_s, 60);
	DEF(max_sessions_per_model, 8);
	DEF(catalog_refresh_ms, 30000);
	DEF(discovery_ttl_ms, 10000);
	DEF(bench_ms, 30000);
	DEF(gone_after_ms, 120000);
	DEF(maintenance_ms, 1000);
	DEF(open_lock_ttl_ms, 60000);
#undef DEF
	p->key = *o->key;
	if (rc_secp_privkey_to_address(&p->key, p->self) != RC_OK) {
		rc_secp_privkey_release(&p->key);
		free(p);
		return RC_EINVAL;
	}
	p->rank = o->rank;
	if (!p->rank.self)
		p->rank.self = p->self;
	p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->stop_fd < 0) {
		rc_secp_privkey_release(&p->key);
		free(p);
		return RC_ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_init(&p->save_mu, NULL);
	pthread_mutex_init(&p->tx_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	rc_health_init(&p->health, p->o.bench_ms);
	p->st.coordinated = o->coord != NULL;
	p->st.chain_ok = true;
	*out = p;
	return RC_OK;
}

/* Wait on the pool's condition until abs monotonic ms (p->mu held). */
static void cv_wait_until(struct rc_pool *p, int64_t until_ms)
{
	struct timespec ts = {.tv_sec = until_ms / 1000, .tv_nsec = (until_ms % 1000) * 1000000};
	pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

/* ---- discovery
 * ------------------------------------------------------------------------------------ */

/* Copy of the model's discovery (fresh within ttl, else read now). Caller releases *d. */
static int discovery_get(struct rc_pool *p, const uint8_t model_id[32], bool force,
                         struct rc_market_discovery *d, struct rc_rpc_error *re)
{
	memset(d, 0, sizeof *d);
	pthread_mutex_lock(&p->mu);
	for (struct dcache *c = p->dcache; c; c = c->next) {
		if (memcmp(c->model_id, model_id, 32) != 0)
			continue;
		if (!force && rc_mono_ms() - c->at_ms < p->o.discovery_ttl_ms) {
			*d = c->d;
			d->offers = NULL;
			if (c->d.noffers) {
				d->offers = malloc(c->d.noffers * sizeof *d->offers);
				if (!d->offers) {
					pthread_mutex_unlock(&p->mu);
					return RC_ENOMEM;
				}
				memcpy(d->offers, c->d.offers, c->d.noffers * sizeof *d->offers);
			}
			pthread_mutex_unlock(&p->mu);
			return RC_OK;
		}
		break;
	}
	pthread_mutex_unlock(&p->mu);

	struct rc_market_discovery fresh;
	int rc = rc_market_discover(p->o.market, model_id, chain_now(p), &fresh, re);
	pthread_mutex_lock(&p->mu);
	p->st.chain_ok = rc == RC_OK || !chain_transport_error(rc);
	if (rc != RC_OK) {
		pthread_mutex_unlock(&p->mu);
		return rc;
	}
	*d = fresh;
	d->offers = NULL;
	if (fresh.noffers) {
		d->offers = malloc(fresh.noffers * sizeof *d->offers);
		if (!d->offers) {
			pthread_mutex_unlock(&p->mu);
			rc_market_discovery_release(&fresh);
			return RC_ENOMEM;
		}
		memcpy(d->offers, fresh.offers, fresh.noffers * sizeof *d->offers);
	}
	struct dcache *c = p->dcache;
	while (c && memcmp(c->model_id, model_id, 32) != 0)
		c = c->next;
	if (!c && (c = calloc(1, sizeof *c)) != NULL) {
		memcpy(c->model_id, model_id, 32);
		c->next = p->dcache;
		p->dcache = c;
	}
	if (c) {
		rc_market_discovery_release(&c->d);
		c->d = fresh;
		c->at_ms = rc_mono_ms();
	} else {
		rc_market_discovery_release(&fresh);
	}
	pthread_mutex_unlock(&p->mu);
	return RC_OK;
}

static void discovery_free(struct rc_market_discovery *d)
{
	free(d->offers);
	d->offers = NULL;
	d->noffers = 0;
}

/* ---- opening a session (§1.2 (a)-(c))
 * ------------------------------------------------------------ */

struct avoid {
	uint8_t a[MAX_AVOID][20];
	size_t n;
};

static bool avoided(const struct avoid *av, const uint8_t p[20])
{
	for (size_t i = 0; av && i < av->n; i++)
		if (memcmp(av->a[i], p, 20) == 0)
			return true;
	return false;
}

static void avoid_add(struct avoid *av, const uint8_t p[20])
{
	if (av && !avoided(av, p) && av->n < MAX_AVOID)
		memcpy(av->a[av->n++], p, 20);
}

/* Is the link failure the provider lying to us (abandon it) rather than failing? */
static bool lying(enum rc_link_reason r)
{
	return r == RC_LINK_BAD_SIGNATURE || r == RC_LINK_BAD_CIPHERTEXT || r == RC_LINK_BAD_KEY ||
	       r == RC_LINK_MISMATCH;
}

static void retire_provider(struct rc_pool *p, const uint8_t provider[20]);
static unsigned adopt_shared(struct rc_pool *p, const uint8_t model_id[32]);

enum open_res { OPEN_OK, OPEN_WAIT, OPEN_FAIL };

/*
 * Open one session for model: rank the bids, handshake with each candidate until one approves,
 * then openSession. On OPEN_OK *out is the new session, busy (reserved for the caller). OPEN_WAIT:
 * another instance holds "open:<model>" or the model is at max_sessions: wait and look again.
 */
static enum open_res open_session(struct rc_pool *p, const uint8_t model_id[32], const char *model,
                                  int64_t deadline, int cancel_fd, struct avoid *av,
                                  struct psess **out, struct rc_pool_err *err, char *reasons,
                                  size_t rcap)
{
	*out = NULL;
	/* capacity: opening and usable sessions of the model */
	pthread_mutex_lock(&p->mu);
	unsigned count = 0;
	uint64_t now_s = chain_now(p);
	for (struct psess *ps = p->sessions; ps; ps = ps->next)
		if (memcmp(ps->s.model_id, model_id, 32) == 0 &&
		    ((ps->s.state == RC_POOL_S_OPENING && ps->busy) ||
		     (ps->s.state == RC_POOL_S_OPEN && ps->s.ends_at > now_s)))
			count++;
	pthread_mutex_unlock(&p->mu);
	if (count >= p->o.max_sessions_per_model)
		return OPEN_WAIT;

	char lname[80];
	bool locked = false;
	if (p->o.coord) {
		lock_name(lname, sizeof lname, "open:", model_id, 32);
		int r = p->o.coord->trylock(p->o.coord_ud, lname, p->o.open_lock_ttl_ms);
		if (r == 0)
			return OPEN_WAIT;
		locked = r > 0;
		if (locked) {
			pthread_mutex_lock(&p->mu);
			p->st.coordinated = true;
			pthread_mutex_unlock(&p->mu);
			/* the other instance may have opened one while we waited for the lock: take
			 * it from the shared table and try it rather than open a second for the
			 * same demand (a session we already knew was tried before we came here) */
			if (adopt_shared(p, model_id) > 0) {
				p->o.coord->unlock(p->o.coord_ud, lname);
				return OPEN_WAIT;
			}
		}
		if (r < 0) {
			pthread_mutex_lock(&p->mu);
			p->st.coordinated = false;
			pthread_mutex_unlock(&p->mu);
		}
	}

	enum open_res res = OPEN_FAIL;
	struct rc_market_discovery d;
	struct rc_rpc_error re = {0};
	struct rc_rank_entry *ranked = NULL;
	size_t nkept = 0;
	int rc = discovery_get(p, model_id, false, &d, &re);
	if (rc != RC_OK) {
		set_err(err, RC_POOL_CHAIN, rc, "cannot read the bids of '%s': %s", model,
		        rpc_text(&re, rc));
		goto out;
	}
	struct rc_rank_opts ro = p->rank;
	const struct rc_pool_model_cfg *mc = model_cfg(p, model);
	if (mc && !rc_u256_is_zero(&mc->max_price_per_second))
		ro.max_price_per_second = mc->max_price_per_second;
	rc = rc_rank(&d, &ro, &p->health, rc_mono_ms(), &ranked, &nkept);
	if (rc != RC_OK) {
		set_err(err, RC_POOL_INTERNAL, rc, "out of memory");
		goto out_d;
	}
	if (nkept == 0) {
		set_err(err, RC_POOL_NO_BIDS, RC_ENOTFOUND,
		        "model '%s' has no acceptable active bid (%zu bids, none within the price "
		        "ceiling, allow/deny lists and provider health)",
		        model, d.noffers);
		goto out_d;
	}
	bool tried = false;
	for (size_t i = 0; i < nkept; i++) {
		const struct rc_market_offer *of = &d.offers[ranked[i].offer];
		char who[16];
		short_hex(of->bid.provider, 20, who);
		if (avoided(av, of->bid.provider))
			continue;
		if (p->stopping || fd_readable(cancel_fd)) {
			set_err(err, RC_POOL_CANCELLED, RC_EIO, "cancelled");
			goto out_d;
		}
		if (deadline && rc_mono_ms() >= deadline) {
			set_err(err, RC_POOL_TIMEOUT, RC_ETIMEOUT,
			        "deadline passed while opening a session for '%s'%s%s", model,
			        reasons[0] ? ": " : "", reasons);
			goto out_d;
		}
		tried = true;
		unsigned retries = 0;
	again:;
		struct rc_u256 stake;
		rc = rc_market_stake_amount(&d.total_supply, &d.todays_budget,
		                            &of->bid.price_per_second, p->o.session_s,
		                            p->o.direct_payment, &stake);
		if (rc != RC_OK) {
			append_reason(reasons, rcap, "%s: stake out of range", who);
			avoid_add(av, of->bid.provider);
			continue;
		}
		/* (b) handshake; with another candidate left, a provider that hangs may take at most
		 * half of the time left (at least 1 s), so the request can still fail over */
		struct rc_link_opts lo = link_opts(p, deadline, cancel_fd);
		bool more = false;
		for (size_t j = i + 1; j < nkept && !more; j++) {
			const uint8_t *pj = d.offers[ranked[j].offer].bid.provider;
			more = memcmp(pj, of->bid.provider, 20) != 0 && !avoided(av, pj);
		}
		if (more && deadline) {
			int64_t half = (deadline - rc_mono_ms()) / 2;
			if (half < 1000)
				half = 1000;
			if (half < lo.first_timeout_ms)
				lo.first_timeout_ms = (int)half;
		}
		struct rc_link *l = rc_link_new(of->provider.endpoint, &p->key, &lo);
		if (!l) {
			append_reason(reasons, rcap, "%s: bad endpoint", who);
			avoid_add(av, of->bid.provider);
			rc_health_failure(&p->health, of->bid.provider, rc_mono_ms());
			continue;
		}
		struct inflight in;
		link_register(p, &in, l);
		struct rc_link_session hs;
		struct rc_link_err le = {0};
		int64_t t0 = rc_mono_ms();
		rc = rc_link_handshake(l, (struct rc_str){NULL, 0}, of->bid.id, &stake, 0, &hs,
		                       &le);
		link_unregister(p, &in);
		rc_link_free(l);
		if (rc == RC_OK) {
			/* the approval must be for this bid and chain, signed by the bid's
			 * provider, or openSession would revert after we paid for gas (§3.6 step 2,
			 * 5) */
			struct rc_morpheus_approval ap;
			if (rc_morpheus_approval_decode(hs.approval, sizeof hs.approval, &ap,
			                                NULL) != RC_OK ||
			    memcmp(ap.bid_id, of->bid.id, 32) != 0 ||
			    ap.chain_id != rc_txm_chain_id(p->o.txm) ||
			    rc_morpheus_verify_blob(hs.approval, sizeof hs.approval,
			                            hs.approval_sig, of->bid.provider) != RC_OK) {
				append_reason(reasons, rcap,
				              "%s: approval not for this bid or not signed "
				              "by the provider",
				              who);
				rc_health_abandon(&p->health, of->bid.provider, rc_mono_ms());
				avoid_add(av, of->bid.provider);
				continue;
			}
		} else {
			if (le.reason == RC_LINK_CANCELLED) {
				set_err(err, RC_POOL_CANCELLED, rc, "cancelled");
				goto out_d;
			}
			append_reason(reasons, rcap, "%s: %s: %s", who,
			              rc_link_reason_name(le.reason), le.text);
			if (lying(le.reason)) {
				rc_health_abandon(&p->health, of->bid.provider, rc_mono_ms());
				retire_provider(p, of->bid.provider);
			} else {
				rc_health_failure(&p->health, of->bid.provider, rc_mono_ms());
			}
			avoid_add(av, of->bid.provider);
			pthread_mutex_lock(&p->mu);
			p->st.failovers++;
			pthread_mutex_unlock(&p->mu);
			plog(p, 1, "pool: provider %s refused a session for '%s': %s", who, model,
			     rc_link_reason_name(le.reason));
			continue;
		}
		rc_health_success(&p->health, of->bid.provider, (double)(rc_mono_ms() - t0), -1,
		                  rc_mono_ms());

		/* (c) record "opening" before anything is sent, then openSession */
		struct psess *ps = calloc(1, sizeof *ps);
		if (!ps) {
			set_err(err, RC_POOL_INTERNAL, RC_ENOMEM, "out of memory");
			goto out_d;
		}
		ps->s.local_id = new_local_id();
		memcpy(ps->s.model_id, model_id, 32);
		snprintf(ps->s.model, sizeof ps->s.model, "%s", model);
		memcpy(ps->s.bid_id, of->bid.id, 32);
		memcpy(ps->s.provider, of->bid.provider, 20);
		snprintf(ps->s.endpoint, sizeof ps->s.endpoint, "%s", of->provider.endpoint);
		memcpy(ps->s.provider_key, hs.provider_key, sizeof ps->s.provider_key);
		ps->s.stake = stake;
		ps->s.price_per_second = of->bid.price_per_second;
		ps->s.state = RC_POOL_S_OPENING;
		ps->busy = true;
		pthread_mutex_lock(&p->mu);
		ps->next = p->sessions;
		p->sessions = ps;
		p->st.sessions_opening++;
		pthread_mutex_unlock(&p->mu);
		if (save(p, ps) != 0) {
			pthread_mutex_lock(&p->mu);
			ps->s.state = RC_POOL_S_FAILED;
			ps->busy = false;
			p->st.sessions_opening--;
			pthread_mutex_unlock(&p->mu);
			set_err(err, RC_POOL_INTERNAL, RC_EIO,
			        "cannot record the session before opening it");
			goto out_d;
		}
		struct tx_guard g = {p, false, deadline};
		uint8_t sid[32];
		memset(&re, 0, sizeof re);
		int64_t topen = rc_mono_ms();
		if (tx_lock(&g) != 0) {
			rc = RC_ETIMEOUT;
			snprintf(re.message, sizeof re.message, "transaction lock not available");
		} else {
			rc = rc_market_open_session(p->o.market, p->o.txm, &stake,
			                            p->o.direct_payment, hs.approval,
			                            sizeof hs.approval, hs.approval_sig,
			                            sizeof hs.approval_sig, sid, &re);
			tx_unlock(&g);
		}
		struct rc_session_info info = {0};
		struct rc_rpc_error re2 = {0};
		if (rc == RC_OK && rc_market_get_session(p->o.market, sid, &info, &re2) != RC_OK)
			info.found = false;
		pthread_mutex_lock(&p->mu);
		p->st.sessions_opening--;
		p->st.chain_ok = rc == RC_OK || !chain_transport_error(rc);
		if (rc != RC_OK) {
			/* a timeout or a transport failure may come after the transaction was sent:
			 * the record stays "opening" and the next reconcile (soon) adopts the
			 * session if it was mined, else marks it failed */
			bool unknown = rc == RC_ETIMEOUT || rc == RC_EIO || rc == RC_EPROTO;
			ps->s.state = unknown ? RC_POOL_S_OPENING : RC_POOL_S_FAILED;
			if (unknown)
				p->reconcile_soon = true;
			ps->busy = false;
			p->st.open_failed++;
			pthread_mutex_unlock(&p->mu);
			save(p, ps);
			bool funds = funds_error(rc, &re);
			plog(p, 2, "pool: openSession with %s for '%s' failed: %s", who, model,
			     rpc_text(&re, rc));
			if (funds || chain_transport_error(rc) || rc == RC_ETIMEOUT) {
				/* the on-chain part failed: abort as the reference does (§1.2 (a)
				 * 5) */
				set_err(err, funds ? RC_POOL_FUNDS : RC_POOL_CHAIN, rc,
				        "openSession failed: %s", rpc_text(&re, rc));
				goto out_d;
			}
			/*
			 * Two races worth a second try with the same provider: a provider stamps
			 * its approval with its clock in ms, so two handshakes in one ms give the
			 * same bytes and the second openSession reverts SessionDuplicateApproval
			 * (approvals are single-use, trap 14); and an allowance taken meanwhile by
			 * another instance on the same wallet without coordination ("insufficient
			 * allowance": the retry approves again). A fresh handshake gives a fresh
			 * approval.
			 */
			if (retryable_open_revert(&re) && retries++ < 2) {
				usleep(3000);
				goto again;
			}
			/* a revert about this bid (deleted meanwhile): next one */
			append_reason(reasons, rcap, "%s: openSession reverted: %s", who,
			              rpc_text(&re, rc));
			avoid_add(av, of->bid.provider);
			continue;
		}
		memcpy(ps->s.id, sid, 32);
		ps->s.state = RC_POOL_S_OPEN;
		if (info.found) {
			ps->s.opened_at = info.opened_at;
			ps->s.ends_at = info.ends_at;
			ps->s.stake = info.stake;
		} else {
			/* estimate, on the short side; the close path re-reads endsAt before
			 * closing */
			ps->s.opened_at = now_s;
			ps->s.ends_at = now_s + p->o.session_s - 60;
		}
		p->st.opened++;
		pthread_mutex_unlock(&p->mu);
		save(p, ps);
		char sh[16];
		short_hex(sid, 32, sh);
		plog(p, 0,
		     "pool: opened session %s with %s for '%s' in %" PRId64 " ms (ends %" PRIu64
		     ")",
		     sh, who, model, rc_mono_ms() - topen, ps->s.ends_at);
		*out = ps;
		res = OPEN_OK;
		goto out_d;
	}
	if (!tried && !reasons[0])
		set_err(err, RC_POOL_NO_PROVIDER, RC_ENOTFOUND,
		        "no provider left to try for '%s' (all failed or benched)", model);
	else
		set_err(err, RC_POOL_NO_PROVIDER, RC_EIO,
		        "no provider accepted a session for '%s': %s", model, reasons);
out_d:
	free(ranked);
	discovery_free(&d);
out:
	if (locked)
		p->o.coord->unlock(p->o.coord_ud, lname);
	return res;
}

/* ---- claiming and releasing ---------------------------------------------------------------------
 */

static bool usable(struct rc_pool *p, const struct psess *ps, uint64_t now_s, int64_t now_mono)
{
	if (ps->busy || ps->s.state != RC_POOL_S_OPEN)
		return false;
	if (ps->s.ends_at <= now_s + p->o.retire_before_end_s)
		return false;
	struct rc_health_entry he;
	if (rc_health_get(&p->health, ps->s.provider, &he) &&
	    (he.abandoned || he.benched_until_ms > now_mono))
		return false;
	return true;
}

/* Claim an idle session of model (busy, leased). NULL when none. */
static struct psess *claim_idle(struct rc_pool *p, const uint8_t model_id[32],
                                const struct avoid *av)
{
	struct psess *skip[16];
	size_t nskip = 0;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		uint64_t now_s = chain_now(p);
		int64_t now_mono = rc_mono_ms();
		struct psess *best = NULL;
		for (struct psess *ps = p->sessions; ps; ps = ps->next) {
			if (memcmp(ps->s.model_id, model_id, 32) != 0 ||
			    !usable(p, ps, now_s, now_mono) || avoided(av, ps->s.provider))
				continue;
			bool sk = false;
			for (size_t i = 0; i < nskip; i++)
				sk |= skip[i] == ps;
			if (sk)
				continue;
			if (!best || ps->s.ends_at > best->s.ends_at)
				best = ps;
		}
		if (best)
			best->busy = true;
		pthread_mutex_unlock(&p->mu);
		if (!best || !p->o.coord)
			return best;
		char ln[80];
		lock_name(ln, sizeof ln, "sess:", best->s.id, 32);
		int r = p->o.coord->trylock(p->o.coord_ud, ln, LEASE_TTL_MS);
		if (r != 0) {
			best->leased = r > 0;
			return best; /* taken, or coordination down (in-process only) */
		}
		/* another instance is using it */
		pthread_mutex_lock(&p->mu);
		best->busy = false;
		pthread_mutex_unlock(&p->mu);
		if (nskip == 16)
			return NULL;
		skip[nskip++] = best;
	}
}

static void release(struct rc_pool *p, struct psess *ps, bool served, bool failed)
{
	pthread_mutex_lock(&p->mu);
	if (served)
		ps->s.requests++;
	if (failed)
		ps->s.failures++;
	ps->last_used_ms = rc_mono_ms();
	bool leased = ps->leased;
	ps->leased = false;
	/* The counters are what `morgatectl sessions` shows; the maintenance thread writes them
	 * within a tick, so the request path does no store write (state changes are saved where
	 * they happen, before acting on them). */
	ps->dirty = true;
	pthread_mutex_unlock(&p->mu);
	if (leased) {
		char ln[80];
		lock_name(ln, sizeof ln, "sess:", ps->s.id, 32);
		p->o.coord->unlock(p->o.coord_ud, ln);
	}
	pthread_mutex_lock(&p->mu);
	ps->busy = false;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* Sessions opened by other instances (the shared table) that this one does not know yet;
 * returns how many were added. */
static unsigned adopt_shared(struct rc_pool *p, const uint8_t model_id[32])
{
	if (!p->o.coord)
		return 0;
	struct rc_pool_session *list = NULL;
	size_t n = 0;
	unsigned added = 0;
	if (p->o.coord->list(p->o.coord_ud, &list, &n) != 0) {
		free(list);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		const struct rc_pool_session *s = &list[i];
		if (s->state != RC_POOL_S_OPEN || is_zero(s->id, 32) ||
		    (model_id && memcmp(s->model_id, model_id, 32) != 0) ||
		    is_zero(s->provider_key, sizeof s->provider_key))
			continue;
		pthread_mutex_lock(&p->mu);
		bool known = find_by_id(p, s->id) != NULL;
		struct psess *ps = known ? NULL : calloc(1, sizeof *ps);
		if (ps) {
			ps->s = *s;
			ps->next = p->sessions;
			p->sessions = ps;
		}
		pthread_mutex_unlock(&p->mu);
		if (ps) {
			added++;
			save(p, ps);
		}
	}
	free(list);
	return added;
}

/* Retire every session of a provider that lied; the maintenance thread closes them. */
static void retire_provider(struct rc_pool *p, const uint8_t provider[20])
{
	struct psess *todo[64];
	size_t n = 0;
	pthread_mutex_lock(&p->mu);
	for (struct psess *ps = p->sessions; ps && n < 64; ps = ps->next)
		if (memcmp(ps->s.provider, provider, 20) == 0 && ps->s.state == RC_POOL_S_OPEN) {
			ps->s.state = RC_POOL_S_RETIRED;
			todo[n++] = ps;
		}
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < n; i++)
		save(p, todo[i]);
	char who[16];
	short_hex(provider, 20, who);
	plog(p, 1,
	     "pool: provider %s abandoned (bad signature or mismatched answer); %zu session(s) "
	     "retired",
	     who, n);
}

/* ---- prompting
 * ----------------------------------------------------------------------------------- */

struct chunk_ctx {
	const struct rc_pool_request *rq;
	uint64_t data_chunks;
	bool stopped_by_caller;
};

static int on_chunk(void *ud, enum rc_link_chunk kind, const uint8_t *data, size_t len)
{
	struct chunk_ctx *c = ud;
	if (kind == RC_LINK_CHUNK_DATA)
		c->data_chunks++;
	if (c->rq->on_chunk && c->rq->on_chunk(c->rq->ud, kind, data, len) != 0) {
		c->stopped_by_caller = true;
		return 1;
	}
	return 0;
}

/* Learn the provider key of a recovered session (a fresh session.request, §2.6). */
static int learn_key(struct rc_pool *p, struct psess *ps, int64_t deadline, int cancel_fd,
                     struct rc_link_err *le)
{
	struct rc_link_opts lo = link_opts(p, deadline, cancel_fd);
	struct rc_link *l = rc_link_new(ps->s.endpoint, &p->key, &lo);
	if (!l) {
		le->reason = RC_LINK_BAD_ENDPOINT;
		snprintf(le->text, sizeof le->text, "bad endpoint");
		return RC_EINVAL;
	}
	struct inflight in;
	link_register(p, &in, l);
	struct rc_link_session hs;
	int rc = rc_link_handshake(l, (struct rc_str){NULL, 0}, ps->s.bid_id, &ps->s.stake, 0, &hs,
	                           le);
	link_unregister(p, &in);
	rc_link_free(l);
	if (rc == RC_OK) {
		pthread_mutex_lock(&p->mu);
		memcpy(ps->s.provider_key, hs.provider_key, sizeof ps->s.provider_key);
		pthread_mutex_unlock(&p->mu);
		save(p, ps);
	}
	return rc;
}

static bool text_has(const char *t, const char *w)
{
	return strstr(t, w) != NULL;
}

/*
 * Whether another provider could still take this request: an active offer for the model (in the
 * cached discovery) from a provider that is neither `provider` nor already tried. Then one
 * attempt may not use up the whole deadline: a provider that hangs before its first chunk must
 * leave time to fail over (issue 6).
 */
static bool alternative_exists(struct rc_pool *p, const uint8_t model_id[32],
                               const struct avoid *av, const uint8_t provider[20])
{
	bool found = false;
	pthread_mutex_lock(&p->mu);
	for (struct dcache *c = p->dcache; c && !found; c = c->next) {
		if (memcmp(c->model_id, model_id, 32) != 0)
			continue;
		for (size_t i = 0; i < c->d.noffers && !found; i++) {
			const struct rc_market_offer *o = &c->d.offers[i];
			found = memcmp(o->bid.provider, provider, 20) != 0 &&
			        !avoided(av, o->bid.provider) && o->bid.deleted_at == 0 &&
			        !o->provider.is_deleted;
		}
		break;
	}
	pthread_mutex_unlock(&p->mu);
	return found;
}

int rc_pool_prompt(struct rc_pool *p, const struct rc_pool_request *rq, struct rc_pool_result *res,
                   struct rc_pool_err *err)
{
	struct rc_pool_err dummy;
	if (!err)
		err = &dummy;
	memset(err, 0, sizeof *err);
	if (res)
		memset(res, 0, sizeof *res);
	if (!p || !rq || !rq->model || !res) {
		set_err(err, RC_POOL_INTERNAL, RC_EINVAL, "bad arguments");
		return RC_EINVAL;
	}
	int64_t start = rc_mono_ms();
	int64_t deadline = rq->deadline_ms ? rq->deadline_ms : start + 120000;

	/* the model, from the catalogue (never a chain read here) */
	uint8_t model_id[32];
	pthread_mutex_lock(&p->mu);
	p->st.prompts++;
	bool loaded = p->catalog_wall_ms != 0, found = false;
	for (size_t i = 0; i < p->ncatalog; i++)
		if (strcmp(p->catalog[i].name, rq->model) == 0) {
			memcpy(model_id, p->catalog[i].id, 32);
			found = true;
			break;
		}
	if (found && !p->stopping)
		p->active++;
	bool stopping = p->stopping;
	if (!found || stopping)
		p->st.prompt_errors++;
	pthread_mutex_unlock(&p->mu);
	if (stopping) {
		set_err(err, RC_POOL_CANCELLED, RC_EIO, "the pool is shutting down");
		return RC_EIO;
	}
	if (!found) {
		if (!loaded)
			set_err(err, RC_POOL_CHAIN, RC_ENOTFOUND,
			        "the model catalogue is not loaded yet (chain not reached)");
		else
			set_err(err, RC_POOL_UNKNOWN_MODEL, RC_ENOTFOUND,
			        "model '%s' has no active bid on chain", rq->model);
		return RC_ENOTFOUND;
	}

	struct avoid av = {.n = 0};
	char reasons[400] = "";
	bool waited = false, queued = false;
	int rc = RC_ETIMEOUT;
	for (;;) {
		if (p->stopping || fd_readable(rq->cancel_fd)) {
			set_err(err, RC_POOL_CANCELLED, RC_EIO, "cancelled");
			rc = RC_EIO;
			break;
		}
		if (rc_mono_ms() >= deadline) {
			if (queued && !reasons[0])
				set_err(err, RC_POOL_TIMEOUT, RC_ETIMEOUT,
				        "every session of '%s' stayed busy until the deadline (at "
				        "most %u "
				        "per model, or another instance was opening one)",
				        rq->model, p->o.max_sessions_per_model);
			else
				set_err(err, RC_POOL_TIMEOUT, RC_ETIMEOUT,
				        "no answer from a provider before the deadline%s%s",
				        reasons[0] ? ": " : "", reasons);
			rc = RC_ETIMEOUT;
			break;
		}
		struct psess *ps = claim_idle(p, model_id, &av);
		if (!ps && p->o.coord) {
			/* other instances' sessions: one read of the shared table per SHARED_READ_MS for
			 * all waiting requests, not one per request per wake-up (with 50 requests on 8
			 * busy sessions that was 12 table reads per request) */
			pthread_mutex_lock(&p->mu);
			int64_t now = rc_mono_ms();
			bool read = now - p->shared_read_ms >= SHARED_READ_MS;
			if (read)
				p->shared_read_ms = now;
			pthread_mutex_unlock(&p->mu);
			if (read && adopt_shared(p, model_id) > 0)
				ps = claim_idle(p, model_id, &av);
		}
		if (!ps) {
			if (!waited && rq->on_wait) {
				rq->on_wait(rq->ud);
			}
			waited = true;
			/* until the start-up reconcile is done, sessions of ours on chain may not
			 * be known yet: wait for it (10 s at most) rather than open a duplicate */
			pthread_mutex_lock(&p->mu);
			bool wait_recovery =
			        p->started && !p->recovered && rc_mono_ms() - start < 10000;
			if (wait_recovery) {
				int64_t until = rc_mono_ms() + 100;
				cv_wait_until(p, until < deadline ? until : deadline);
			}
			pthread_mutex_unlock(&p->mu);
			if (wait_recovery)
				continue;
			enum open_res orr =
			        open_session(p, model_id, rq->model, deadline, rq->cancel_fd, &av,
			                     &ps, err, reasons, sizeof reasons);
			if (orr == OPEN_WAIT) {
				/* at max sessions, or another instance is opening: wait for a
				 * release */
				queued = true;
				pthread_mutex_lock(&p->mu);
				int64_t until = rc_mono_ms() + 200;
				if (until > deadline)
					until = deadline;
				cv_wait_until(p, until);
				pthread_mutex_unlock(&p->mu);
				continue;
			}
			if (orr == OPEN_FAIL) {
				rc = err->rc ? err->rc : RC_EIO;
				break;
			}
			res->opened = true;
		} else {
			pthread_mutex_lock(&p->mu);
			p->st.reused++;
			pthread_mutex_unlock(&p->mu);
		}
		res->session_wait_ms = rc_mono_ms() - start;
		res->attempts++;
		memcpy(res->session_id, ps->s.id, 32);
		memcpy(res->provider, ps->s.provider, 20);
		char who[16];
		short_hex(ps->s.provider, 20, who);

		struct rc_link_err le = {0};
		if (is_zero(ps->s.provider_key, sizeof ps->s.provider_key) &&
		    learn_key(p, ps, deadline, rq->cancel_fd, &le) != RC_OK) {
			if (le.reason == RC_LINK_CANCELLED) {
				release(p, ps, false, false);
				continue; /* the loop top reports it */
			}
			append_reason(reasons, sizeof reasons, "%s: %s: %s", who,
			              rc_link_reason_name(le.reason), le.text);
			rc_health_failure(&p->health, ps->s.provider, rc_mono_ms());
			avoid_add(&av, ps->s.provider);
			release(p, ps, false, true);
			continue;
		}

		/* (d)-(e): one request on this session, over a fresh connection */
		struct rc_link_opts lo = link_opts(p, deadline, rq->cancel_fd);
		if (alternative_exists(p, model_id, &av, ps->s.provider)) {
			/* half of what is left (at least 1 s) for this provider's first chunk */
			int64_t half = (deadline - rc_mono_ms()) / 2;
			if (half < 1000)
				half = 1000;
			if (half < lo.first_timeout_ms)
				lo.first_timeout_ms = (int)half;
		}
		struct rc_link *l = rc_link_new(ps->s.endpoint, &p->key, &lo);
		if (!l || rc_link_set_provider_key(l, ps->s.provider_key) != RC_OK) {
			rc_link_free(l);
			append_reason(reasons, sizeof reasons, "%s: bad endpoint or key", who);
			avoid_add(&av, ps->s.provider);
			release(p, ps, false, true);
			continue;
		}
		struct inflight in;
		link_register(p, &in, l);
		struct chunk_ctx cc = {.rq = rq};
		int64_t t0 = rc_mono_ms();
		rc = rc_link_prompt(l, (struct rc_str){NULL, 0}, ps->s.id, rq->message, 0, on_chunk,
		                    &cc, &res->stream, &le);
		int64_t took = rc_mono_ms() - t0;
		link_unregister(p, &in);
		rc_link_free(l);
		res->first_chunk = cc.data_chunks > 0;
		if (rc == RC_OK) {
			double tps =
			        took > 0 ? (double)res->stream.chunks * 1000.0 / (double)took : -1;
			rc_health_success(&p->health, ps->s.provider, (double)res->stream.first_ms,
			                  tps, rc_mono_ms());
			release(p, ps, true, false);
			break;
		}
		bool cancelled = le.reason == RC_LINK_CANCELLED;
		if (cancelled || cc.stopped_by_caller) {
			release(p, ps, false, false);
			set_err(err, RC_POOL_CANCELLED, rc, "cancelled");
			break;
		}
		if (le.reason == RC_LINK_PROVIDER_ERROR && le.signed_error) {
			/* the backend's own answer, signed: the request's fault, not the provider's
			 */
			rc_health_success(&p->health, ps->s.provider, -1, -1, rc_mono_ms());
			release(p, ps, true, false);
			set_err(err, RC_POOL_PROVIDER_ERROR, rc, "%s", le.text);
			break;
		}
		if (lying(le.reason)) {
			rc_health_abandon(&p->health, ps->s.provider, rc_mono_ms());
			release(p, ps, false, true);
			retire_provider(p, ps->s.provider);
		} else {
			rc_health_failure(&p->health, ps->s.provider, rc_mono_ms());
			bool session_gone =
			        le.reason == RC_LINK_PROVIDER_ERROR &&
			        (text_has(le.text, "expired") || text_has(le.text, "not found") ||
			         text_has(le.text, "closed"));
			bool user_lost = le.reason == RC_LINK_PROVIDER_ERROR &&
			                 text_has(le.text, "user not found");
			pthread_mutex_lock(&p->mu);
			if (user_lost) /* the provider lost our key (trap 11): handshake again */
				memset(ps->s.provider_key, 0, sizeof ps->s.provider_key);
			else if (session_gone && ps->s.state == RC_POOL_S_OPEN)
				ps->s.state = RC_POOL_S_RETIRED;
			pthread_mutex_unlock(&p->mu);
			release(p, ps, false, true);
		}
		plog(p, 1, "pool: request on %s failed%s: %s: %s", who,
		     res->first_chunk ? " after the first chunk" : "",
		     rc_link_reason_name(le.reason), le.text);
		if (res->first_chunk) {
			set_err(err, RC_POOL_PROVIDER, rc, "provider %s failed mid-stream: %s: %s",
			        who, rc_link_reason_name(le.reason), le.text);
			break;
		}
		/* failover: the request never reached the caller, try the next session/provider */
		append_reason(reasons, sizeof reasons, "%s: %s: %s", who,
		              rc_link_reason_name(le.reason), le.text);
		avoid_add(&av, ps->s.provider);
		pthread_mutex_lock(&p->mu);
		p->st.failovers++;
		pthread_mutex_unlock(&p->mu);
	}
	pthread_mutex_lock(&p->mu);
	if (rc != RC_OK)
		p->st.prompt_errors++;
	p->active--;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return rc;
}

/* ---- closing from the pool ----------------------------------------------------------------------
 */

/* Close ps (busy, held by the caller). Returns RC_OK when closed; the record is saved. */
static int pool_close(struct rc_pool *p, struct psess *ps, bool allow_dispute, bool early_ok,
                      struct rc_pool_err *err)
{
	pthread_mutex_lock(&p->mu);
	enum rc_pool_state before = ps->s.state;
	ps->s.state = RC_POOL_S_CLOSING;
	pthread_mutex_unlock(&p->mu);
	if (save(p, ps) != 0) {
		pthread_mutex_lock(&p->mu);
		ps->s.state = before;
		pthread_mutex_unlock(&p->mu);
		set_err(err, RC_POOL_INTERNAL, RC_EIO, "cannot record the close");
		return RC_EIO;
	}
	pthread_mutex_lock(&p->mu);
	struct rc_pool_session s = ps->s;
	pthread_mutex_unlock(&p->mu);
	struct rc_link_opts lo = link_opts(p, 0, p->stop_fd);
	lo.first_timeout_ms = lo.first_timeout_ms > 15000 ? 15000 : lo.first_timeout_ms;
	struct tx_guard g = {p, false, 0};
	int nr = 0;
	int rc = close_impl(p->o.market, p->o.txm, &p->key, &lo, &s, allow_dispute, early_ok,
	                    chain_now(p), &g, err, &nr);
	/* only an unreachable provider counts against its health; a refusal (e.g. "session not
	 * found" for a session it never served) says nothing about its serving */
	if (nr == 1)
		rc_health_failure(&p->health, s.provider, rc_mono_ms());
	char sh[16];
	short_hex(s.id, 32, sh);
	pthread_mutex_lock(&p->mu);
	if (rc == 1) {
		/* not ended yet: back as it was, with the chain's endsAt */
		s.state = before == RC_POOL_S_CLOSING ? RC_POOL_S_RETIRED : before;
		ps->s = s;
		pthread_mutex_unlock(&p->mu);
		save(p, ps);
		return 1;
	}
	if (rc == RC_OK) {
		ps->s = s;
		p->st.closed++;
		if (s.dispute)
			p->st.disputes++;
	} else {
		if (nr && !ps->no_receipt_since_ms)
			ps->no_receipt_since_ms = rc_mono_ms();
		/* keep what we learnt (endsAt, provider key), go back to retired: retried later */
		s.state = before == RC_POOL_S_CLOSING ? RC_POOL_S_RETIRED : before;
		if (s.state == RC_POOL_S_OPEN)
			s.state = RC_POOL_S_RETIRED;
		ps->s = s;
	}
	p->st.chain_ok = rc == RC_OK || !chain_transport_error(rc);
	pthread_mutex_unlock(&p->mu);
	save(p, ps);
	if (rc == RC_OK)
		plog(p, 0, "pool: closed session %s%s", sh,
		     s.dispute ? " (dispute)" : " with the provider's receipt");
	else
		plog(p, 1, "pool: close of session %s failed: %s", sh, err->text);
	return rc;
}

int rc_pool_close(struct rc_pool *p, const uint8_t id[32], bool allow_dispute,
                  struct rc_pool_err *err)
{
	struct rc_pool_err dummy;
	if (!err)
		err = &dummy;
	memset(err, 0, sizeof *err);
	pthread_mutex_lock(&p->mu);
	struct psess *ps = find_by_id(p, id);
	if (!ps) {
		pthread_mutex_unlock(&p->mu);
		set_err(err, RC_POOL_INTERNAL, RC_ENOTFOUND, "unknown session");
		return RC_ENOTFOUND;
	}
	if (ps->s.state == RC_POOL_S_CLOSED) {
		pthread_mutex_unlock(&p->mu);
		return RC_OK;
	}
	if (ps->s.state == RC_POOL_S_OPEN)
		ps->s.state = RC_POOL_S_RETIRED; /* no new requests */
	int64_t until = rc_mono_ms() + 30000;
	while (ps->busy && rc_mono_ms() < until)
		cv_wait_until(p, until);
	if (ps->busy) {
		pthread_mutex_unlock(&p->mu);
		set_err(err, RC_POOL_INTERNAL, RC_ETIMEOUT, "session still busy");
		return RC_ETIMEOUT;
	}
	ps->busy = true;
	pthread_mutex_unlock(&p->mu);
	int rc = pool_close(p, ps, allow_dispute, true, err);
	pthread_mutex_lock(&p->mu);
	ps->busy = false;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return rc;
}

/* ---- recovery (restart safety)
 * ------------------------------------------------------------------- */

static int load_cb(void *ud, const struct rc_pool_session *s)
{
	struct rc_pool *p = ud;
	if (s->state == RC_POOL_S_CLOSED || s->state == RC_POOL_S_FAILED || s->local_id == 0)
		return 0;
	struct psess *ps = calloc(1, sizeof *ps);
	if (!ps)
		return -1;
	ps->s = *s;
	pthread_mutex_lock(&p->mu);
	ps->next = p->sessions;
	p->sessions = ps;
	pthread_mutex_unlock(&p->mu);
	return 0;
}

/* Apply the chain's record to ps (not busy, not listed to requests while recovering). */
static void apply_chain(struct rc_pool *p, struct psess *ps, const struct rc_session_info *info,
                        uint64_t now_s)
{
	pthread_mutex_lock(&p->mu);
	ps->s.opened_at = info->opened_at;
	ps->s.ends_at = info->ends_at;
	ps->s.stake = info->stake;
	if (info->closed_at) {
		ps->s.state = RC_POOL_S_CLOSED;
		ps->s.closed_at = info->closed_at;
		ps->s.dispute = info->closeout_type == 1;
	} else if (info->ends_at > now_s + p->o.retire_before_end_s) {
		ps->s.state = RC_POOL_S_OPEN;
	} else {
		ps->s.state = RC_POOL_S_RETIRED;
	}
	pthread_mutex_unlock(&p->mu);
	save(p, ps);
}

/*
 * Reconcile the store's records with the wallet's sessions on chain (§1.2 (f) 4): known ids are
 * re-read; OPENING records are matched to an on-chain session of their bid that no other record
 * has (the openSession went through but we died before recording the id), else marked FAILED;
 * open on-chain sessions nobody knows (an openSession mined after we died) are adopted with the
 * bid's provider and endpoint (the provider key comes from a handshake on first use). Sessions
 * without time left are retired; the lifecycle pass closes them after endsAt. RC_OK or a chain
 * error (retried by the next tick).
 */
static int reconcile(struct rc_pool *p, bool at_start)
{
	struct rc_market *m = p->o.market;
	struct rc_rpc_error re = {0};
	uint64_t now_s = chain_now(p);
	int rc;
	/* 1. records with an id */
	for (;;) {
		struct psess *todo = NULL;
		pthread_mutex_lock(&p->mu);
		for (struct psess *ps = p->sessions; ps; ps = ps->next)
			if (!ps->busy && !is_zero(ps->s.id, 32) && at_start &&
			    (ps->s.state == RC_POOL_S_OPEN || ps->s.state == RC_POOL_S_RETIRED ||
			     ps->s.state == RC_POOL_S_CLOSING ||
			     ps->s.state == RC_POOL_S_OPENING) &&
			    !ps->visited) {
				todo = ps;
				ps->visited = true;
				break;
			}
		pthread_mutex_unlock(&p->mu);
		if (!todo)
			break;
		struct rc_session_info info;
		rc = rc_market_get_session(m, todo->s.id, &info, &re);
		if (rc != RC_OK)
			return rc;
		if (!info.found) {
			pthread_mutex_lock(&p->mu);
			todo->s.state = RC_POOL_S_FAILED;
			pthread_mutex_unlock(&p->mu);
			save(p, todo);
			continue;
		}
		apply_chain(p, todo, &info, now_s);
	}
	/* 2. the wallet's sessions, newest first */
	uint8_t(*ids)[32] = NULL;
	size_t n = 0;
	uint64_t total = 0;
	rc = rc_market_user_sessions(m, p->self, 0, 1, &ids, &n, &total, &re);
	free(ids);
	if (rc != RC_OK)
		return rc;
	uint64_t lo = total > USER_SESSIONS_MAX ? total - USER_SESSIONS_MAX : 0;
	for (uint64_t end = total; end > lo;) {
		uint64_t off = end > lo + 255 ? end - 255 : lo;
		ids = NULL;
		n = 0;
		rc = rc_market_user_sessions(m, p->self, off, end - off, &ids, &n, &total, &re);
		if (rc != RC_OK)
			return rc;
		for (size_t k = n; k-- > 0;) {
			pthread_mutex_lock(&p->mu);
			bool known = find_by_id(p, ids[k]) != NULL;
			pthread_mutex_unlock(&p->mu);
			if (known)
				continue;
			struct rc_session_info info;
			rc = rc_market_get_session(m, ids[k], &info, &re);
			if (rc != RC_OK) {
				free(ids);
				return rc;
			}
			if (!info.found || info.closed_at)
				continue;
			/* an OPENING record of this bid? */
			pthread_mutex_lock(&p->mu);
			struct psess *match = NULL;
			for (struct psess *ps = p->sessions; ps; ps = ps->next)
				if (ps->s.state == RC_POOL_S_OPENING && !ps->busy &&
				    is_zero(ps->s.id, 32) &&
				    memcmp(ps->s.bid_id, info.bid_id, 32) == 0)
					match = ps;
			if (match)
				memcpy(match->s.id, ids[k], 32);
			pthread_mutex_unlock(&p->mu);
			if (match) {
				char sh[16];
				short_hex(ids[k], 32, sh);
				plog(p, 0, "pool: session %s of an interrupted open found on chain",
				     sh);
				/* a record saved before openSession has the bid's provider and
				 * endpoint; fill what a minimal one lacks from the chain */
				struct rc_bid bid;
				struct rc_provider prov;
				if ((is_zero(match->s.provider, 20) || !match->s.endpoint[0] ||
				     is_zero(match->s.model_id, 32)) &&
				    rc_market_get_bid(m, info.bid_id, &bid, &re) == RC_OK &&
				    rc_market_get_provider(m, bid.provider, &prov, &re) == RC_OK) {
					pthread_mutex_lock(&p->mu);
					memcpy(match->s.provider, bid.provider, 20);
					memcpy(match->s.model_id, bid.model_id, 32);
					snprintf(match->s.endpoint, sizeof match->s.endpoint, "%s",
					         prov.endpoint);
					match->s.price_per_second = bid.price_per_second;
					for (size_t c = 0; c < p->ncatalog && !match->s.model[0];
					     c++)
						if (memcmp(p->catalog[c].id, bid.model_id, 32) == 0)
							snprintf(match->s.model,
							         sizeof match->s.model, "%s",
							         p->catalog[c].name);
					pthread_mutex_unlock(&p->mu);
				}
			} else {
				struct rc_bid bid;
				struct rc_provider prov;
				if (rc_market_get_bid(m, info.bid_id, &bid, &re) != RC_OK ||
				    rc_market_get_provider(m, bid.provider, &prov, &re) != RC_OK)
					continue;
				match = calloc(1, sizeof *match);
				if (!match)
					continue;
				match->s.local_id = new_local_id();
				memcpy(match->s.id, ids[k], 32);
				memcpy(match->s.bid_id, info.bid_id, 32);
				memcpy(match->s.model_id, bid.model_id, 32);
				memcpy(match->s.provider, bid.provider, 20);
				snprintf(match->s.endpoint, sizeof match->s.endpoint, "%s",
				         prov.endpoint);
				match->s.price_per_second = bid.price_per_second;
				pthread_mutex_lock(&p->mu);
				for (size_t c = 0; c < p->ncatalog; c++)
					if (memcmp(p->catalog[c].id, bid.model_id, 32) == 0)
						snprintf(match->s.model, sizeof match->s.model,
						         "%s", p->catalog[c].name);
				pthread_mutex_unlock(&p->mu);
				if (!match->s.model[0]) {
					struct rc_model md;
					if (rc_market_get_model(m, bid.model_id, &md, &re) == RC_OK)
						snprintf(match->s.model, sizeof match->s.model,
						         "%s", md.name);
				}
				/* re-check under the lock the opener sets ids under: a session
				 * being opened right now by a request of ours (an in-flight OPENING
				 * record of this bid) is not an orphan, and one whose id just got
				 * recorded is known */
				pthread_mutex_lock(&p->mu);
				bool ours = find_by_id(p, ids[k]) != NULL;
				for (struct psess *ps = p->sessions; ps && !ours; ps = ps->next)
					ours = ps->s.state == RC_POOL_S_OPENING && ps->busy &&
					       memcmp(ps->s.bid_id, info.bid_id, 32) == 0;
				if (!ours) {
					match->next = p->sessions;
					p->sessions = match;
				}
				pthread_mutex_unlock(&p->mu);
				if (ours) {
					free(match);
					continue;
				}
				char sh[16];
				short_hex(ids[k], 32, sh);
				plog(p, 0, "pool: adopted session %s found on chain", sh);
			}
			apply_chain(p, match, &info, now_s);
		}
		free(ids);
		end = off;
	}
	/* 3. OPENING records with no session on chain: the transaction never made it (at start, or
	 * 5 minutes after an openSession of unknown outcome) */
	{
		int64_t old = rc_wall_ms() - 300000;
		for (;;) {
			struct psess *todo = NULL;
			pthread_mutex_lock(&p->mu);
			for (struct psess *ps = p->sessions; ps; ps = ps->next)
				if (ps->s.state == RC_POOL_S_OPENING && !ps->busy &&
				    is_zero(ps->s.id, 32) && (at_start || ps->s.updated_ms < old)) {
					ps->s.state = RC_POOL_S_FAILED;
					todo = ps;
					break;
				}
			pthread_mutex_unlock(&p->mu);
			if (!todo)
				break;
			save(p, todo);
		}
	}
	pthread_mutex_lock(&p->mu);
	for (struct psess *ps = p->sessions; ps; ps = ps->next)
		ps->visited = false;
	pthread_mutex_unlock(&p->mu);
	return RC_OK;
}

/* ---- maintenance
 * --------------------------------------------------------------------------------- */

static void refresh_clock(struct rc_pool *p)
{
	json_t *res = NULL;
	struct rc_rpc_error re = {0};
	int rc = rc_rpc_call(rc_market_rpc(p->o.market), "eth_getBlockByNumber",
	                     json_pack("[sb]", "latest", 0), &res, &re);
	uint64_t ts = 0;
	if (rc == RC_OK) {
		json_t *t = json_is_object(res) ? json_object_get(res, "timestamp") : NULL;
		struct rc_u256 v;
		if (!json_is_string(t) ||
		    rc_u256_parse_hex(&v, json_string_value(t), json_string_length(t), NULL) !=
		            RC_OK ||
		    rc_u256_to_u64(&v, &ts) != RC_OK || ts > INT64_MAX / 1000)
			rc = RC_EPROTO;
	}
	json_decref(res);
	if (rc == RC_OK && (int64_t)ts > atomic_load(&p->block_ts))
		atomic_store(&p->block_ts, (int64_t)ts);
	pthread_mutex_lock(&p->mu);
	p->st.chain_ok = rc == RC_OK;
	pthread_mutex_unlock(&p->mu);
}

static void refresh_catalog(struct rc_pool *p)
{
	struct rc_model *models = NULL;
	size_t n = 0;
	struct rc_rpc_error re = {0};
	int rc = rc_market_list_models(p->o.market, &models, &n, &re);
	struct rc_pool_model *cat = NULL;
	size_t ncat = 0;
	if (rc == RC_OK && n && !(cat = calloc(n, sizeof *cat)))
		rc = RC_ENOMEM;
	for (size_t i = 0; rc == RC_OK && i < n; i++) {
		if (models[i].is_deleted || !models[i].name[0])
			continue;
		/*
		 * A full discovery (3 round trips) only for models in use: configured ones and
		 * those discovered for a request lately, which also keeps their ranking data warm.
		 * Other models cost one call (the active bid count); their lowest price is learnt
		 * when they are first used.
		 */
		bool in_use = model_cfg(p, models[i].name) != NULL;
		pthread_mutex_lock(&p->mu);
		for (struct dcache *c = p->dcache; c && !in_use; c = c->next)
			in_use = memcmp(c->model_id, models[i].id, 32) == 0 &&
			         rc_mono_ms() - c->at_ms < 4 * p->o.catalog_refresh_ms;
		pthread_mutex_unlock(&p->mu);
		unsigned active = 0;
		struct rc_u256 minp = {{0}};
		if (!in_use) {
			uint8_t(*ids)[32] = NULL;
			size_t nids = 0;
			uint64_t total = 0;
			rc = rc_market_model_active_bids(p->o.market, models[i].id, 0, 1, &ids,
			                                 &nids, &total, &re);
			free(ids);
			if (rc != RC_OK)
				break;
			if (total == 0)
				continue;
			active = total > UINT32_MAX ? UINT32_MAX : (unsigned)total;
			goto add;
		}
		struct rc_market_discovery d;
		rc = discovery_get(p, models[i].id, true, &d, &re);
		if (rc != RC_OK)
			break;
		for (size_t k = 0; k < d.noffers; k++) {
			const struct rc_market_offer *of = &d.offers[k];
			if (!of->bid.created_at || of->bid.deleted_at || of->provider.is_deleted)
				continue;
			if (active == 0 || rc_u256_cmp(&of->bid.price_per_second, &minp) < 0)
				minp = of->bid.price_per_second;
			active++;
		}
		discovery_free(&d);
		if (!active)
			continue;
	add:;
		/* two models with one name: the one with more bids answers to it */
		struct rc_pool_model *dup = NULL;
		for (size_t k = 0; k < ncat; k++)
			if (strcmp(cat[k].name, models[i].name) == 0)
				dup = &cat[k];
		if (dup && dup->active_bids >= active)
			continue;
		struct rc_pool_model *c = dup ? dup : &cat[ncat++];
		memset(c, 0, sizeof *c);
		snprintf(c->name, sizeof c->name, "%s", models[i].name);
		memcpy(c->id, models[i].id, 32);
		c->ntags = models[i].ntags;
		for (size_t t = 0; t < c->ntags; t++)
			snprintf(c->tags[t], sizeof c->tags[t], "%s", models[i].tags[t]);
		c->active_bids = active;
		c->min_price_per_second = minp;
		c->created_at = models[i].created_at;
	}
	free(models);
	pthread_mutex_lock(&p->mu);
	if (rc == RC_OK) {
		free(p->catalog);
		p->catalog = cat;
		p->ncatalog = ncat;
		p->catalog_wall_ms = rc_wall_ms();
		p->st.catalog_refreshes++;
		p->st.catalog_refreshed_ms = p->catalog_wall_ms;
		cat = NULL;
	} else {
		p->st.catalog_errors++;
	}
	p->st.chain_ok = rc == RC_OK || !chain_transport_error(rc);
	pthread_mutex_unlock(&p->mu);
	free(cat);
	if (rc != RC_OK)
		plog(p, 1, "pool: catalogue refresh failed: %s", rpc_text(&re, rc));
}

/* One pass over the sessions: retire, close after endsAt, close early when the provider is
 * gone, learn missing provider keys. One chain write at a time. */
/* network.ping to the session's provider, its pong signed by the provider's address. */
static bool ping_ok(struct rc_pool *p, const struct psess *ps)
{
	struct rc_link_opts lo = link_opts(p, rc_mono_ms() + 5000, p->stop_fd);
	struct rc_link *l = rc_link_new(ps->s.endpoint, &p->key, &lo);
	if (!l)
		return false;
	struct rc_link_err le = {0};
	int rc = rc_link_ping(l, ps->s.provider, NULL, 0, &le);
	rc_link_free(l);
	return rc == RC_OK;
}

static void lifecycle(struct rc_pool *p)
{
	struct psess *tried[64];
	size_t ntried = 0;
	for (int guard = 0; guard < 64 && !p->stopping; guard++) {
		struct psess *todo = NULL;
		bool dispute = false, key_only = false, probe = false;
		struct psess *retired[32];
		size_t nret = 0;
		pthread_mutex_lock(&p->mu);
		uint64_t now_s = chain_now(p);
		int64_t now_mono = rc_mono_ms();
		for (struct psess *ps = p->sessions; ps; ps = ps->next) {
			if (ps->s.state == RC_POOL_S_OPEN &&
			    ps->s.ends_at <= now_s + p->o.retire_before_end_s && nret < 32) {
				ps->s.state = RC_POOL_S_RETIRED;
				retired[nret++] = ps;
			}
			if (todo || ps->busy || is_zero(ps->s.id, 32))
				continue;
			bool again = false;
			for (size_t i = 0; i < ntried; i++)
				again |= tried[i] == ps;
			if (again)
				continue;
			bool live = ps->s.state == RC_POOL_S_OPEN ||
			            ps->s.state == RC_POOL_S_RETIRED ||
			            ps->s.state == RC_POOL_S_CLOSING;
			if (!live)
				continue;
			bool gone = rc_health_gone(&p->health, ps->s.provider, p->o.gone_after_ms,
			                           now_mono);
			/* after endsAt, a provider that has not given a receipt for gone_after_ms
			 * (down, or refusing: e.g. it has no record of a session it never served)
			 * gets a dispute close, or the stake would never come back (§1.2 (f) 2) */
			bool stuck = ps->no_receipt_since_ms &&
			             now_mono - ps->no_receipt_since_ms >= p->o.gone_after_ms;
			if (now_s > ps->s.ends_at || gone || ps->s.state == RC_POOL_S_CLOSING) {
				todo = ps;
				dispute = gone || stuck;
				struct rc_health_entry he;
				/* closing early puts the stake on hold (§3.7): be sure the provider
				 * is gone */
				probe = gone && now_s <= ps->s.ends_at &&
				        !(rc_health_get(&p->health, ps->s.provider, &he) &&
				          he.abandoned);
			} else if (ps->s.state == RC_POOL_S_OPEN &&
			           is_zero(ps->s.provider_key, sizeof ps->s.provider_key) &&
			           !ps->keyless) {
				todo = ps;
				key_only = true;
			}
		}
		if (todo)
			todo->busy = true;
		pthread_mutex_unlock(&p->mu);
		for (size_t i = 0; i < nret; i++)
			save(p, retired[i]);
		if (!todo)
			return;
		tried[ntried++] = todo;
		if (key_only) {
			struct rc_link_err le = {0};
			if (learn_key(p, todo, rc_mono_ms() + 15000, p->stop_fd, &le) != RC_OK &&
			    le.reason != RC_LINK_CANCELLED) {
				rc_health_failure(&p->health, todo->s.provider, rc_mono_ms());
				pthread_mutex_lock(&p->mu);
				todo->keyless = true; /* requests will try again */
				pthread_mutex_unlock(&p->mu);
			}
		} else if (probe && ping_ok(p, todo)) {
			/* it answers after all (it was only not tried since it failed) */
			rc_health_success(&p->health, todo->s.provider, -1, -1, rc_mono_ms());
		} else {
			struct rc_pool_err e = {0};
			pool_close(p, todo, dispute, dispute,
			           &e); /* on failure: retried next tick */
		}
		pthread_mutex_lock(&p->mu);
		todo->busy = false;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
}

/* min_idle: open one session for the first hot model short of idle sessions. */
static void warm_up(struct rc_pool *p)
{
	for (size_t i = 0; i < p->o.nmodels && !p->stopping; i++) {
		const struct rc_pool_model_cfg *mc = &p->o.models[i];
		if (!mc->min_idle || !mc->model)
			continue;
		uint8_t id[32];
		bool found = false;
		unsigned idle = 0;
		pthread_mutex_lock(&p->mu);
		for (size_t k = 0; k < p->ncatalog; k++)
			if (strcmp(p->catalog[k].name, mc->model) == 0) {
				memcpy(id, p->catalog[k].id, 32);
				found = true;
			}
		pthread_mutex_unlock(&p->mu);
		if (found && p->o.coord)
			adopt_shared(p, id); /* another instance's warm sessions count too */
		pthread_mutex_lock(&p->mu);
		uint64_t now_s = chain_now(p);
		int64_t now_mono = rc_mono_ms();
		if (found)
			for (struct psess *ps = p->sessions; ps; ps = ps->next)
				if (memcmp(ps->s.model_id, id, 32) == 0 &&
				    usable(p, ps, now_s, now_mono))
					idle++;
		pthread_mutex_unlock(&p->mu);
		if (!found || idle >= mc->min_idle)
			continue;
		struct psess *ps = NULL;
		struct rc_pool_err e = {0};
		char reasons[400] = "";
		struct avoid av = {.n = 0};
		enum open_res r = open_session(p, id, mc->model, rc_mono_ms() + 60000, p->stop_fd, &av,
		                               &ps, &e, reasons, sizeof reasons);
		if (r == OPEN_OK) {
			pthread_mutex_lock(&p->mu);
			ps->busy = false;
			pthread_cond_broadcast(&p->cv);
			pthread_mutex_unlock(&p->mu);
		} else if (r == OPEN_FAIL) {
			plog(p, 1, "pool: warm-up of '%s' failed: %s", mc->model, e.text);
		}
		return; /* one open per tick */
	}
}

/* Write the records whose request counters moved. */
static void flush_dirty(struct rc_pool *p)
{
	for (int guard = 0; guard < 1024; guard++) {
		struct psess *todo = NULL;
		pthread_mutex_lock(&p->mu);
		for (struct psess *ps = p->sessions; ps && !todo; ps = ps->next)
			if (ps->dirty)
				todo = ps;
		if (todo)
			todo->dirty = false;
		pthread_mutex_unlock(&p->mu);
		if (!todo)
			return;
		save(p, todo);
	}
}

static void prune(struct rc_pool *p)
{
	int64_t now = rc_wall_ms();
	pthread_mutex_lock(&p->mu);
	for (struct psess **pp = &p->sessions; *pp;) {
		struct psess *ps = *pp;
		if (!ps->busy && !ps->dirty &&
		    (ps->s.state == RC_POOL_S_CLOSED || ps->s.state == RC_POOL_S_FAILED) &&
		    now - ps->s.updated_ms > KEEP_ENDED_MS) {
			*pp = ps->next;
			free(ps);
		} else {
			pp = &ps->next;
		}
	}
	pthread_mutex_unlock(&p->mu);
}

static void *maint_main(void *arg)
{
	struct rc_pool *p = arg;
	if (p->o.store && p->o.store->load)
		if (p->o.store->load(p->o.store_ud, load_cb, p) != 0)
			plog(p, 2, "pool: cannot load the session records");
	for (;;) {
		pthread_mutex_lock(&p->mu);
		bool stop = p->stopping;
		pthread_mutex_unlock(&p->mu);
		if (stop)
			break;
		int64_t t0 = rc_mono_ms();
		refresh_clock(p);
		if (!p->catalog_mono_ms ||
		    rc_mono_ms() - p->catalog_mono_ms >= p->o.catalog_refresh_ms) {
			refresh_catalog(p);
			p->catalog_mono_ms = rc_mono_ms();
			if (!p->catalog_wall_ms)
				p->catalog_mono_ms -=
				        p->o.catalog_refresh_ms - 2000; /* retry in 2 s */
		}
		if (!p->recovered) {
			int rc = reconcile(p, true);
			if (rc == RC_OK) {
				pthread_mutex_lock(&p->mu);
				p->recovered = true;
				pthread_cond_broadcast(&p->cv);
				pthread_mutex_unlock(&p->mu);
				p->reconcile_mono_ms = rc_mono_ms();
				plog(p, 0, "pool: recovery done");
			} else {
				plog(p, 1, "pool: recovery failed, retrying: %s", rc_strerror(rc));
			}
		} else {
			pthread_mutex_lock(&p->mu);
			bool soon = p->reconcile_soon;
			pthread_mutex_unlock(&p->mu);
			int64_t since = rc_mono_ms() - p->reconcile_mono_ms;
			if (since > RECONCILE_MS || (soon && since > 30000)) {
				pthread_mutex_lock(&p->mu);
				p->reconcile_soon = false;
				pthread_mutex_unlock(&p->mu);
				if (reconcile(p, false) == RC_OK)
					p->reconcile_mono_ms = rc_mono_ms();
				else if (soon) {
					pthread_mutex_lock(&p->mu);
					p->reconcile_soon = true;
					pthread_mutex_unlock(&p->mu);
				}
			}
		}
		if (p->recovered) {
			lifecycle(p);
			warm_up(p);
		}
		flush_dirty(p);
		prune(p);
		pthread_mutex_lock(&p->mu);
		int64_t until = t0 + p->o.maintenance_ms;
		while (!p->stopping && rc_mono_ms() < until)
			cv_wait_until(p, until);
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

int rc_pool_start(struct rc_pool *p)
{
	if (!p || p->started)
		return RC_EINVAL;
	if (pthread_create(&p->thread, NULL, maint_main, p) != 0)
		return RC_ENOMEM;
	p->started = true;
	return RC_OK;
}

void rc_pool_free(struct rc_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	uint64_t one = 1;
	if (write(p->stop_fd, &one, sizeof one) < 0) {
		/* the eventfd cannot overflow from one write; nothing to do */
	}
	for (struct inflight *in = p->links; in; in = in->next)
		rc_link_cancel(in->l);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (p->started)
		pthread_join(p->thread, NULL);
	pthread_mutex_lock(&p->mu);
	while (p->active)
		cv_wait_until(p, rc_mono_ms() + 100);
	pthread_mutex_unlock(&p->mu);
	flush_dirty(p);
	while (p->sessions) {
		struct psess *n = p->sessions->next;
		free(p->sessions);
		p->sessions = n;
	}
	while (p->dcache) {
		struct dcache *n = p->dcache->next;
		rc_market_discovery_release(&p->dcache->d);
		free(p->dcache);
		p->dcache = n;
	}
	free(p->catalog);
	rc_health_destroy(&p->health);
	rc_secp_privkey_release(&p->key);
	close(p->stop_fd);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	pthread_mutex_destroy(&p->save_mu);
	pthread_mutex_destroy(&p->tx_mu);
	free(p);
}

/* ---- observation
 * ---------------------------------------------------------------------------------- */

int rc_pool_catalog(struct rc_pool *p, struct rc_pool_model **out, size_t *n, int64_t *refreshed_ms)
{
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&p->mu);
	if (refreshed_ms)
		*refreshed_ms = p->catalog_wall_ms;
	if (p->ncatalog) {
		*out = malloc(p->ncatalog * sizeof **out);
		if (!*out) {
			pthread_mutex_unlock(&p->mu);
			return RC_ENOMEM;
		}
		memcpy(*out, p->catalog, p->ncatalog * sizeof **out);
		*n = p->ncatalog;
	}
	pthread_mutex_unlock(&p->mu);
	return RC_OK;
}

int rc_pool_model_find(struct rc_pool *p, const char *name, struct rc_pool_model *out)
{
	int rc = RC_ENOTFOUND;
	pthread_mutex_lock(&p->mu);
	for (size_t i = 0; i < p->ncatalog; i++)
		if (strcmp(p->catalog[i].name, name) == 0) {
			if (out)
				*out = p->catalog[i];
			rc = RC_OK;
			break;
		}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int rc_pool_sessions(struct rc_pool *p, struct rc_pool_session **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&p->mu);
	size_t k = 0;
	for (struct psess *ps = p->sessions; ps; ps = ps->next)
		k++;
	if (k) {
		*out = malloc(k * sizeof **out);
		if (!*out) {
			pthread_mutex_unlock(&p->mu);
			return RC_ENOMEM;
		}
		k = 0;
		for (struct psess *ps = p->sessions; ps; ps = ps->next)
			(*out)[k++] = ps->s;
		*n = k;
	}
	pthread_mutex_unlock(&p->mu);
	return RC_OK;
}

void rc_pool_get_stats(struct rc_pool *p, struct rc_pool_stats *out)
{
	pthread_mutex_lock(&p->mu);
	*out = p->st;
	out->sessions_open = out->sessions_busy = 0;
	uint64_t now_s = chain_now(p);
	for (struct psess *ps = p->sessions; ps; ps = ps->next) {
		if (ps->s.state == RC_POOL_S_OPEN && ps->s.ends_at > now_s)
			out->sessions_open++;
		if (ps->busy && ps->s.state == RC_POOL_S_OPEN)
			out->sessions_busy++;
	}
	pthread_mutex_unlock(&p->mu);
}
