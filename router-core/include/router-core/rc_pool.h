/*
 * router-core: the marketplace session pool. It turns "run this OpenAI request on model M" into
 * a provider found on chain, a paid session and a prompt over the encrypted link
 * (morpheus-protocol §1.2), and keeps sessions warm between requests.
 *
 * Catalogue: a background refresh (never on the request path, never blocking start-up) lists the
 * on-chain models that have active bids (rc_market_list_models + active bid counts). Requests
 * name a model by its on-chain name; the caller resolves its own aliases first.
 *
 * Sessions: per model, opened on demand (discover §1.2 (a), rank with rc_rank, handshake (b),
 * approve-if-needed + openSession (c)) and kept while they have time left; min_idle of them are
 * pre-opened for the models listed as hot. A session serves one request at a time (requests
 * are never mixed between callers); sessions are shared by every caller (API keys, tenants).
 * The stake is computed from the bid price and the live supply/budget calls (§3.6.1); the
 * allowance is topped up only when short (rc_market_ensure_allowance).
 *
 * Closing (§3.7): a session is retired (no new requests) retire_before_end_s before its endsAt,
 * and closed with the provider's receipt from session.report once endsAt has passed (re-read
 * from chain first), so no stake is put on hold for a day. It is closed early only when the
 * provider is gone (dead for bench time, or bad signatures): then with the provider's receipt if it
 * still answers session.report, else with a user-signed receipt (a dispute); a provider thought
 * gone is pinged first. After endsAt, a provider that gives no receipt for gone_after_ms (down, or
 * refusing: e.g. it keeps no record of a session it never served) gets a dispute close too, so
 * no stake stays locked. Time is the chain's clock
 * (max of the wall clock and the latest block's timestamp), so a test chain that jumps forward
 * is obeyed.
 *
 * Failover: a provider that refuses, times out or fails before the first chunk is benched
 * (rc_health) and the request goes to the next session/provider, within the request's
 * deadline. After the first chunk a failure is returned as is (the caller ends its stream).
 *
 * Restart safety: every state change of a session goes to the store (the gateway keeps them in
 * its SQLite key store) before the action that needs it: an "opening" record (bid, provider,
 * endpoint, provider key) is saved before openSession is sent. rc_pool_start() then reconciles
 * the wallet's sessions on chain (getUserSessions, newest first) with the store: open sessions
 * with time left are reused (a fresh handshake gets the provider key when the store has none),
 * expired or orphaned ones are closed. Nonces come from the node's pending count (rc_txm).
 * Until that reconcile is done, a request with no idle session waits for it (10 s at most)
 * rather than open a session that may already exist on chain.
 *
 * Several processes, one wallet: with coordination ops (the gateway's Redis), every on-chain
 * write takes the "tx" lock and re-reads the pending nonce, so no nonce is reused; opening a
 * session for a model takes "open:<model id hex>", so two instances do not open two sessions for
 * the same demand; sessions are published to a shared table and a busy session is leased
 * ("sess:<session id hex>"), so an idle session opened by one instance serves the other's
 * requests. Without coordination ops all of that is in-process.
 *
 * Threads: rc_pool_prompt() blocks its calling thread (the gateway runs it on worker threads);
 * one maintenance thread refreshes the catalogue and opens/closes sessions. Every function is
 * thread-safe.
 */
#ifndef RC_POOL_H
#define RC_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_link.h>
#include <router-core/rc_market.h>
#include <router-core/rc_rank.h>
#include <router-core/rc_secp.h>
#include <router-core/rc_txm.h>

/* ---- sessions as the store and listings see them ------------------------------------------ */

enum rc_pool_state {
	RC_POOL_S_OPENING = 1, /* handshake done, openSession about to be sent or in flight */
	RC_POOL_S_OPEN,        /* usable */
	RC_POOL_S_RETIRED,     /* too close to endsAt for new requests, or provider gone */
	RC_POOL_S_CLOSING,     /* closeSession in flight */
	RC_POOL_S_CLOSED,      /* closed on chain */
	RC_POOL_S_FAILED       /* openSession failed or never mined: nothing on chain */
};

/* "opening", "open", "retired", "closing", "closed", "failed"; never NULL. */
const char *rc_pool_state_name(enum rc_pool_state s);

struct rc_pool_session {
	uint64_t local_id; /* random, non-zero, stable from the "opening" record on: the
	                      store's key (the session id is not known until mined) */
	uint8_t id[32];    /* all zero while opening */
	uint8_t model_id[32];
	char model[128]; /* on-chain name */
	uint8_t bid_id[32];
	uint8_t provider[20];
	char endpoint[256];
	uint8_t provider_key[RC_SECP_PUBKEY_LEN]; /* all zero: unknown (handshake needed) */
	struct rc_u256 stake;
	struct rc_u256 price_per_second;
	uint64_t opened_at, ends_at, closed_at; /* unix seconds (chain) */
	enum rc_pool_state state;
	bool dispute;        /* closed with a user-signed receipt */
	uint64_t requests;   /* requests served */
	uint64_t failures;   /* requests that failed on this session */
	uint8_t open_tx[32]; /* openSession / closeSession transaction hashes: reserved, all zero
	                        for now (rc_market's writers do not return them) */
	uint8_t close_tx[32];
	int64_t updated_ms; /* wall clock of the last change */
};

/* Persistence: the pool calls save on every state change (before acting on it) and load once
 * in rc_pool_start() (from the maintenance thread). save returns 0 or non-zero (the pool then
 * refuses to send a write it could not record). The request counters are saved by the
 * maintenance thread within a tick, not on the request path. save is called from any pool
 * thread, one call at a time, in the order the changes happened. */
struct rc_pool_store_ops {
	int (*save)(void *ud, const struct rc_pool_session *s);
	int (*load)(void *ud, int (*cb)(void *cbud, const struct rc_pool_session *s), void *cbud);
};

/* Cross-process coordination (optional). Lock names are short ASCII strings; a lock is owned
 * by this process (the ops keep their own token) and expires by itself after ttl_ms. */
struct rc_pool_coord_ops {
	/* 1 taken, 0 held by someone else, < 0 coordination unavailable (the pool then works
	 * in-process only and says so in its stats). */
	int (*trylock)(void *ud, const char *name, int64_t ttl_ms);
	void (*unlock)(void *ud, const char *name);
	/* The shared session table: publish or update, list all (owned out, free()), remove. */
	int (*put)(void *ud, const struct rc_pool_session *s);
	int (*list)(void *ud, struct rc_pool_session **out, size_t *n);
	int (*del)(void *ud, const uint8_t id[32]);
};

/* ---- options -------------------------------------------------------------------------------- */

struct rc_pool_model_cfg {
	const char *model;                   /* on-chain name */
	struct rc_u256 max_price_per_second; /* zero: the global ceiling */
	unsigned min_idle;                   /* sessions kept open and idle (pre-opened) */
};

struct rc_pool_opts {
	struct rc_market *market;          /* borrowed; with its rpc */
	struct rc_txm *txm;                /* borrowed; the wallet */
	const struct rc_secp_privkey *key; /* the wallet key (copied) */
	uint64_t session_s;  /* requested duration [600]; the chain's minimum is 300 (below:
	                        RC_EINVAL), and rounding makes the on-chain duration a little
	                        shorter than asked (§3.6.1), so ask for some more */
	bool direct_payment; /* [false] */
	uint64_t retire_before_end_s;    /* [60] */
	unsigned max_sessions_per_model; /* [8] */
	int64_t catalog_refresh_ms;      /* [30000] */
	int64_t discovery_ttl_ms;        /* cached ranked bids per model [10000] */
	int64_t bench_ms;                /* [30000] */
	int64_t gone_after_ms;    /* a provider failing this long is gone: close early [120000] */
	int64_t maintenance_ms;   /* [1000] */
	int64_t open_lock_ttl_ms; /* [60000] */
	struct rc_rank_opts rank; /* arrays borrowed for the pool's lifetime */
	const struct rc_pool_model_cfg *models; /* borrowed */
	size_t nmodels;
	struct rc_link_opts link; /* cancel_fd ignored (per request) */
	const struct rc_pool_store_ops *store;
	void *store_ud;
	const struct rc_pool_coord_ops *coord;
	void *coord_ud;
	/* log sink (may be NULL): level 0 info, 1 warning, 2 error; no secrets are passed */
	void (*log)(void *ud, int level, const char *msg);
	void *log_ud;
};

struct rc_pool;

/* New pool (no thread, no I/O yet). RC_OK, RC_EINVAL, RC_ENOMEM. */
int rc_pool_new(const struct rc_pool_opts *o, struct rc_pool **out);
/* Start the maintenance thread: recovery, then catalogue refresh and warm-up in the
 * background. Returns at once. */
int rc_pool_start(struct rc_pool *p);
/* Stop the thread, cancel requests in flight, free. Sessions stay open on chain (the next start
 * reuses them). NULL is fine. */
void rc_pool_free(struct rc_pool *p);

/* ---- catalogue --------------------------------------------------------------------------------
 */

struct rc_pool_model {
	char name[128];
	uint8_t id[32];
	size_t ntags;
	char tags[RC_MARKET_MAX_TAGS][64];
	unsigned active_bids;
	struct rc_u256 min_price_per_second; /* zero until the model has been used (configured
	                                        models and those discovered for a request get a
	                                        full discovery per refresh, others one call) */
	uint64_t created_at;
};

/* Snapshot of the catalogue (owned out, free()). *refreshed_ms is the wall clock of the last
 * successful refresh (0: none yet). Never does I/O. */
int rc_pool_catalog(struct rc_pool *p, struct rc_pool_model **out, size_t *n,
                    int64_t *refreshed_ms);
/* Look one model up by name in the current catalogue. RC_OK or RC_ENOTFOUND. */
int rc_pool_model_find(struct rc_pool *p, const char *name, struct rc_pool_model *out);

/* ---- requests ---------------------------------------------------------------------------------
 */

enum rc_pool_reason {
	RC_POOL_OK = 0,
	RC_POOL_UNKNOWN_MODEL,  /* not in the catalogue (404) */
	RC_POOL_NO_BIDS,        /* the model has no acceptable active bid (503) */
	RC_POOL_NO_PROVIDER,    /* every provider refused or failed before the first chunk (503) */
	RC_POOL_CHAIN,          /* the chain is unreachable or refused a transaction (503) */
	RC_POOL_FUNDS,          /* the wallet lacks MOR or gas (503) */
	RC_POOL_TIMEOUT,        /* the deadline passed before the first chunk (504) */
	RC_POOL_PROVIDER,       /* the provider failed after the first chunk (stream error) */
	RC_POOL_PROVIDER_ERROR, /* the provider's backend answered an error (signed): text has it */
	RC_POOL_CANCELLED,      /* cancel_fd became readable or the pool is shutting down */
	RC_POOL_INTERNAL
};

/* "unknown_model", "no_bids", ...; never NULL. */
const char *rc_pool_reason_name(enum rc_pool_reason r);

struct rc_pool_err {
	enum rc_pool_reason reason;
	int rc;         /* the underlying RC_E* code */
	char text[512]; /* lowercase, printable, no secrets; for NO_PROVIDER the per-provider
	                   reasons ("0xabc…: dial: connection refused; …") */
};

struct rc_pool_request {
	const char *model;     /* on-chain model name */
	struct rc_str message; /* the request JSON text for session.prompt (valid UTF-8) */
	/* each verified, decrypted chunk, in order (RC_LINK_CHUNK_DATA), and, before an
	 * RC_POOL_PROVIDER_ERROR, the decrypted plaintext of the provider's signed backend error
	 * (RC_LINK_CHUNK_ERROR). Called from the calling thread; non-zero stops the request
	 * (RC_POOL_CANCELLED). Chunks only ever come from the attempt that is returned: failover
	 * happens before the first chunk. */
	rc_link_chunk_fn on_chunk;
	void *ud;
	int64_t deadline_ms; /* absolute CLOCK_MONOTONIC ms by which the first chunk must come
	                        (getting a session, failover included); 0: 120 s from now */
	int cancel_fd;       /* readable = cancel (an eventfd the caller writes); -1: none */
	/* called (from the calling thread, at most once) when no session is free and one has to
	 * be opened or waited for, so a streaming caller can start keep-alives; may be NULL */
	void (*on_wait)(void *ud);
};

/* On RC_OK, stream.done == 0 means the provider closed the connection without "[DONE]", which
 * the protocol allows (a non-streaming answer ends that way); for a streaming request the
 * caller should treat it as a truncated stream. */
struct rc_pool_result {
	uint8_t session_id[32];
	uint8_t provider[20];
	unsigned attempts; /* sessions/providers tried */
	bool opened;       /* a session was opened for this request (cold start) */
	bool first_chunk;  /* at least one chunk reached on_chunk */
	struct rc_link_stream stream;
	int64_t session_wait_ms; /* time spent getting a session */
};

/*
 * Run one request (blocking). RC_OK or an RC_E* code with err filled. Before the first
 * successful catalogue refresh every model is RC_POOL_CHAIN ("catalogue not loaded yet"), after
 * it a name not in the catalogue is RC_POOL_UNKNOWN_MODEL. An unknown model, an empty catalogue
 * or a warm session never cause a chain read here; a cold start does (discovery within
 * discovery_ttl_ms is cached, then handshake and openSession). Failures of a provider before
 * the first chunk (dial, refusal, timeout, early close, unsigned errors) bench it and fail over;
 * bad signatures abandon it (its sessions are retired and closed early). A chain failure while
 * opening ends the request (RC_POOL_CHAIN / RC_POOL_FUNDS) as the reference does.
 */
int rc_pool_prompt(struct rc_pool *p, const struct rc_pool_request *rq, struct rc_pool_result *res,
                   struct rc_pool_err *err);

/* ---- administration and observation ------------------------------------------------------------
 */

/* Snapshot of the sessions this process knows (owned out, free()). */
int rc_pool_sessions(struct rc_pool *p, struct rc_pool_session **out, size_t *n);

/* Close one session now (report receipt, else dispute if allow_dispute), even before its endsAt
 * (an operator's decision: §3.7 stake on hold). New requests stop using it at once; a request
 * in flight is waited for up to 30 s. Blocking. RC_OK, RC_ENOTFOUND (not in this pool), or the
 * close's error. */
int rc_pool_close(struct rc_pool *p, const uint8_t id[32], bool allow_dispute,
                  struct rc_pool_err *err);

/*
 * The close procedure on its own, without a pool (the pool and `morgatectl sessions close` share
 * it): session.report from the provider at s->endpoint (provider key s->provider_key; when it is
 * unknown, a handshake first to learn it), closeSession with that receipt; if the provider does not
 * answer or its receipt does not verify, and allow_dispute, a receipt built from our own figures
 * and signed with key (EIP-191) closes it as a dispute (§1.2 (f), §3.7). A session already
 * closed on chain is RC_OK with s->closed_at filled. s is updated (state, closed_at, dispute,
 * ends_at, provider_key when learnt; close_tx stays zero: rc_market_close_session does not
 * return the hash). It closes even before endsAt (the caller's decision; §3.7: the unused stake
 * is then on hold until the next day). A receipt is used only if it names this session and
 * chain and is signed by the bid's provider (EIP-191; delegated signers are not looked up).
 * Errors: RC_POOL_CHAIN / RC_POOL_FUNDS (chain), RC_POOL_PROVIDER (no receipt and
 * !allow_dispute), RC_POOL_INTERNAL (RC_EINVAL, RC_ENOTFOUND: not on chain). link may be NULL
 * (defaults). Thread-safe; blocking.
 */
int rc_session_close(struct rc_market *m, struct rc_txm *txm, const struct rc_secp_privkey *key,
                     const struct rc_link_opts *link, struct rc_pool_session *s, bool allow_dispute,
                     struct rc_pool_err *err);

struct rc_pool_stats {
	uint64_t opened, open_failed, closed, disputes, reused, failovers, prompts, prompt_errors;
	uint64_t catalog_refreshes, catalog_errors;
	unsigned sessions_open, sessions_busy, sessions_opening;
	bool coordinated; /* coordination ops present and answering */
	bool chain_ok;    /* the last chain call succeeded */
	int64_t catalog_refreshed_ms;
};
void rc_pool_get_stats(struct rc_pool *p, struct rc_pool_stats *out);

#endif
