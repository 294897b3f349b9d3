/*
 * gateway marketplace backend (issue 6): model requests served by providers of the Morpheus
 * marketplace through router-core's session pool (rc_pool.h).
 *
 * rc_pool_prompt() blocks its thread for the whole request (finding or opening a session,
 * failover, the stream), so the backend's start() hands each call to a fixed pool of worker
 * threads (marketplace.workers) and returns at once; calls beyond the workers wait in a queue.
 * A worker cleans the client's body into valid UTF-8 (rc_gojson_append_valid_utf8: the provider
 * re-encodes what it verifies, morpheus-protocol §2.3 and trap 1) and sends it as the
 * session.prompt message (§2.5.3). Each decrypted chunk (a JSON object) comes back on the worker
 * thread and is delivered to the call through the engine's thread-safe calls (gw_backend.h):
 *   - stream requests: one SSE event "data: <chunk>\n\n" per chunk, then "data: [DONE]";
 *   - other requests: the provider's one chat.completion object, answered as application/json.
 * Tokens are counted from "usage" when the upstream sent it, else "usage_from_provider" (the
 * provider's own count, §2.5.3).
 *
 * Cancellation: every call owns an eventfd passed to rc_pool_prompt() as cancel_fd; the
 * backend's cancel() (engine thread: client disconnect, drain deadline, shutdown) writes it, so
 * the worker's dial/read loop stops at once.
 *
 * Cold starts: when the pool has to open (or wait for) a session for a streaming request it
 * calls on_wait; the response then starts at once (200 + SSE headers) with
 * ": opening a marketplace session" and keep-alive comments every GW_MARKET_OPEN_KEEPALIVE_MS
 * until the first chunk, so the client never sees silence; a later failure becomes an SSE error
 * event followed by [DONE].
 *
 * Errors (gw_market_map_error): unknown model 404; no bids, no provider (with the per-provider
 * reasons), chain unreachable, wallet funds 503; timeout 504; the provider's own error 502 with
 * its text; a failure after the first chunk the stream's error event; cancelled: nothing.
 *
 * The pure parts (chunk framing, usage, error mapping, model JSON, session record conversion)
 * are exported for unit tests. Everything else is thread-safe.
 */
#ifndef GW_MARKET_H
#define GW_MARKET_H

#include <stddef.h>
#include <stdint.h>

#include <keystore/ks.h>
#include <router-core/rc_buf.h>
#include <router-core/rc_pool.h>
#include <router-core/rc_rpc.h>

#include "gw_backend.h"

#define GW_MARKET_OPEN_KEEPALIVE_MS 1500

struct gw_market;

struct gw_market_opts {
	struct rc_pool *pool;      /* borrowed; must outlive the market's workers (gw_market_stop) */
	struct rc_rpc *rpc;        /* borrowed, for the background chain-id check; NULL: skip it */
	uint64_t chain_id;         /* expected chain id */
	long workers;              /* threads running requests, >= 1 */
	long request_deadline_ms;  /* first chunk deadline of a request, from its start */
	long max_queue;            /* requests waiting for a worker; beyond: 503 [workers * 64] */
	int coordinated;           /* coordination ops were given to the pool (for /readyz) */
};

/* Start the workers (and the chain-id check thread). 0, or -1 (out of threads/memory). */
int gw_market_new(const struct gw_market_opts *o, struct gw_market **out);

/* Cancel what still waits in the queue, stop and join every thread. Calls in flight must have
 * been cancelled through the engine first (their workers then return at once). A worker stuck
 * in a chain write that does not end within 5 s is left running: -1 is returned, the market
 * and its pool must then not be freed (the process is exiting), and the worker no longer
 * touches the engine. 0 when every thread is joined. Idempotent (repeats the result). */
int gw_market_stop(struct gw_market *m);

/* gw_market_stop() and free (nothing is freed when stop returned -1). NULL is a no-op. */
void gw_market_free(struct gw_market *m);

/* The backend to put in a call (c->backend) and its settings (c->bcfg): both live as long as
 * the market. */
struct gw_backend *gw_market_backend(struct gw_market *m);
const struct gw_backend_cfg *gw_market_backend_cfg(struct gw_market *m);

/* ---- the catalogue (never does I/O) ----------------------------------------------------------- */

enum gw_market_lookup_rc {
	GW_MARKET_FOUND = 1,
	GW_MARKET_UNKNOWN = 0,
	GW_MARKET_LOADING = -1 /* no catalogue refresh has succeeded yet */
};

/* Look an on-chain model name up; out (may be NULL) gets its entry when found. */
int gw_market_lookup(struct gw_market *m, const char *name, struct rc_pool_model *out);

/* Snapshot of the catalogue (owned out, free()); GW_MARKET_LOADING when none yet (then *out is
 * NULL and *n 0), else GW_MARKET_FOUND. */
int gw_market_catalog(struct gw_market *m, struct rc_pool_model **out, size_t *n);

/* ---- state for /readyz and /metrics ------------------------------------------------------------ */

struct gw_market_status {
	struct rc_pool_stats pool;
	int catalog_loaded;
	int64_t catalog_age_ms;     /* since the last successful refresh; -1: never */
	int chain_id_state;         /* 0: not checked yet (node unreachable), 1: ok, -1: mismatch */
	uint64_t chain_id_actual;   /* with -1 */
	int coordinated;            /* coordination configured */
	long queued, running;       /* requests waiting for a worker / on a worker */
	unsigned long long errors[RC_POOL_INTERNAL + 1]; /* finished requests by reason */
};
void gw_market_status(struct gw_market *m, struct gw_market_status *out);

/* ---- pure parts (exported for tests) ------------------------------------------------------------- */

/* Append one SSE event "data: <chunk>\n\n" for a decrypted chunk. Line breaks in it (JSON
 * whitespace, or a broken provider) become spaces, so one chunk is always exactly one event.
 * RC_OK or RC_ENOMEM. */
int gw_market_frame_chunk(struct rc_buf *out, const char *p, size_t n);

/* Whether a chunk has a non-null "finish_reason" (the answer's end, so a stream that then closes
 * without [DONE] is complete). 1 or 0. */
int gw_market_has_finish(const char *p, size_t n);

/* Token counts of a chunk: 1 when it has "usage" {prompt_tokens, completion_tokens} at the top
 * level, 2 when it has only "usage_from_provider", 0 when neither (counts untouched). */
int gw_market_usage(const char *p, size_t n, int64_t *prompt, int64_t *completion);

/* The client's answer for a failed request: status, OpenAI error type/code and a message
 * (printable ASCII; text from the pool or provider is sanitized and cut). CANCELLED and OK give
 * status 0 (nothing to answer). model is the on-chain name. be_err: the matching enum
 * gw_be_err for the call's end. */
void gw_market_map_error(const struct rc_pool_err *err, const char *model, struct gw_call_error *out,
			 int *be_err);

/* The SSE error event for e (after the stream started): "data: {"error":{...}}\n\n". */
int gw_market_error_event(struct rc_buf *out, const struct gw_call_error *e);

/* Append one /v1/models entry for a catalogue model: {"id","object":"model","created",
 * "owned_by":"morpheus","morpheus":{"model_id","tags","active_bids"}}; id is alias when not NULL
 * (then "morpheus" also has "alias_of"). Strings from the chain are JSON-escaped. RC_OK or
 * RC_ENOMEM. */
int gw_market_model_json(struct rc_buf *b, const struct rc_pool_model *m, const char *alias);

/* The key store's record of a pool session and back (the pool's store ops use them). from_ks
 * returns 0, or -1 when the record does not parse (bad hex, unknown state). */
void gw_market_session_to_ks(const struct rc_pool_session *s, struct ks_session *out);
int gw_market_session_from_ks(const struct ks_session *in, struct rc_pool_session *out);

/* rc_pool_store_ops over a struct ks_store (ud). */
extern const struct rc_pool_store_ops gw_market_store_ops;

#endif
