/*
 * gateway backends: the seam between the HTTP front end and whatever answers a model request.
 *
 * A struct gw_call is one upstream request. The front end fills its request half (route, body,
 * parsed fields), hands it to a backend through the vtable (struct gw_backend_ops), and reads
 * the response half under call->mu: the upstream status and content type once "head_ready",
 * then bytes appended to `out` as they arrive, then "done". Backends run their I/O on the
 * engine (struct gw_engine: one libcurl multi loop that also times keep-alives and watches
 * client sockets for disconnects). Each front-end worker thread is an engine that also runs its
 * libmicrohttpd daemon, so a call normally lives on the thread that holds its connection.
 *
 * Wake-ups: when the front end finds nothing to do it sets call->waiting and suspends its MHD
 * connection while holding call->mu; whoever changes the call clears waiting, resumes the
 * connection under the same lock and kicks the worker that runs its daemon (gw_engine_resume: an
 * external-mode daemon has no wake-up channel of its own). So a resume is never lost and never
 * doubled. A stream in direct mode (see the call's direct fields) is written by the engine
 * without resuming, until it ends.
 *
 * Lifetime: a call is reference counted (gw_call_unref); the front end holds one reference, the
 * engine one while the call is in flight. gw_call_cancel() is safe at any time and idempotent:
 * the backend request stops at once (curl handle removed, connection slot freed) and the call
 * completes with GW_BE_ECANCELLED.
 *
 * The direct backend (an OpenAI-compatible HTTP endpoint) and the built-in demo backend are
 * implemented here; the marketplace backend (gw_market.c) runs its requests on worker threads of
 * its own and delivers their results through the thread-safe calls at the end of this header
 * (gw_engine_on_head/on_data, gw_call_start_stream, gw_call_stream_error, gw_engine_post_done).
 */
#ifndef GW_BACKEND_H
#define GW_BACKEND_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <router-core/rc_buf.h>

#include "gw_config.h"
#include "gw_parse.h"
#include "gw_ratelimit.h"
#include "gw_sse.h"

enum gw_route {
	GW_ROUTE_CHAT = 0,
	GW_ROUTE_COMPLETIONS,
	GW_ROUTE_EMBEDDINGS,
	GW_ROUTE_MODELS,
	GW_ROUTE_MODEL,
	GW_ROUTE_HEALTH,
	GW_ROUTE_READY,
	GW_ROUTE_METRICS,
	GW_ROUTE_OTHER,
	GW_ROUTE_COUNT
};

/* How a call ended. */
enum gw_be_err {
	GW_BE_OK = 0,
	GW_BE_ECONNECT = -1,    /* could not reach the upstream: 502 */
	GW_BE_ETIMEOUT = -2,    /* no answer in time: 504 */
	GW_BE_EUPSTREAM = -3,   /* the upstream failed mid-response or answered garbage: 502 */
	GW_BE_EUNAVAILABLE = -4,/* the backend cannot take the request now: 503 */
	GW_BE_ECANCELLED = -5   /* cancelled (client gone, shutdown) */
};

struct gw_engine;
struct gw_backend;

#define GW_MAX_ENGINES 64 /* worker threads at most (config "threads") */

/* A backend's own words for a failed call (e.g. the marketplace's 503 "no provider offers model
 * X right now"): when status is non-zero the front end answers with it instead of the generic
 * message of the call's err. Printable ASCII, no secrets. */
struct gw_call_error {
	int status;          /* HTTP status; 0: use the generic mapping of err */
	int retry_after_s;   /* > 0: a Retry-After header */
	char type[32];       /* OpenAI error type, e.g. "server_error" */
	char code[40];       /* e.g. "no_provider" */
	char message[480];
};

struct gw_call {
	pthread_mutex_t mu;
	atomic_int refs;
	/* request half: set by the front end before start, then read-only */
	int route;                 /* enum gw_route */
	char rid[68];              /* request id */
	struct rc_buf body;        /* owned: the body exactly as the client sent it */
	struct {                   /* the parsed fields a call needs (not the model name: see
	                              market_model; a held stream should not carry 200 bytes twice) */
		int stream;
		int64_t max_tokens;
		int include_usage;
		int64_t prompt_estimate;
	} info;
	struct MHD_Connection *conn;
	int client_fd;             /* watched for disconnects (-1: cannot be) */
	int watched;               /* engine: client_fd is in the engine's epoll set */
	const struct gw_backend_cfg *bcfg; /* borrowed from the config snapshot held below (or from
	                                      the backend itself, which outlives its calls) */
	char *market_model;        /* marketplace calls: the on-chain model name (owned); else NULL */
	struct gw_config *cfg;     /* owned reference (keeps bcfg alive) */
	struct gw_backend *backend;
	struct gw_engine *engine;  /* the engine running it (the front end cancels through it) */
	/* a concurrency slot to keep alive while the call runs (a copy of the admission ticket):
	 * the engine renews its lease every renew_every_ns, so a long stream keeps its slot and a
	 * dead gateway's slots still expire */
	struct gw_rl *rl;             /* borrowed; NULL: nothing to renew */
	struct gw_rl_ticket ticket;
	int64_t renew_every_ns, next_renew_ns;
	/* response half: under mu */
	int waiting;        /* the front end is suspended waiting for a change */
	int head_ready;     /* status/content_type valid; for streams: the response may start */
	int streaming;      /* the response is an SSE stream passed through as it comes */
	int status;         /* upstream HTTP status (0 until known) */
	char content_type[128];
	struct rc_buf out;  /* bytes not yet taken by the front end */
	size_t out_off;     /* taken so far from out */
	int done;           /* no more bytes will come */
	int err;            /* enum gw_be_err when done */
	char errmsg[160];   /* for logs only (no secrets, no upstream URL with credentials) */
	struct gw_call_error *be_err; /* optional precise error for the client (see above); NULL
	                                 until gw_call_error_of() makes it */
	int64_t fast_ka_ns; /* non-zero: keep-alive interval until the next data (a cold start) */
	int error_event_sent; /* the backend wrote its own SSE error event and [DONE] */
	int post_err;       /* gw_engine_post_done() hand-over (its message waits in errmsg) */
	/* accounting (engine-owned until done, then read-only) */
	struct gw_sse sse;
	int64_t t_start_ns, t_head_ns, t_first_byte_ns, t_done_ns;
	int64_t bytes_in;
	/* Direct streaming (HTTP/1.1 chunked, engine-thread backends): once MHD has sent everything
	 * it had and found no more (its reader suspends the connection), the engine writes each new
	 * piece of the body to the client socket itself, chunk-framed, instead of resuming the
	 * connection for it: no resume pass over every suspended connection, no epoll_ctl pair, per
	 * SSE event. At the end it flushes what is pending and resumes the connection once, and
	 * MHD writes the last chunk. */
	int direct_ok;       /* front end: this response may go direct (set before start) */
	int direct;          /* under mu: the engine writes the body (front end sets it, engine ends it) */
	int direct_closing;  /* done, waiting for the socket to take the pending bytes */
	int direct_broken;   /* a write failed: the client is gone; the rest is dropped */
	int direct_out;      /* EPOLLOUT asked for on client_fd */
	struct rc_buf dpend; /* framed bytes the socket has not taken yet */
	size_t dpend_off;
	uint64_t direct_bytes; /* body bytes handed to the socket direct (framing not counted) */
	int64_t direct_stall_ns; /* since when the socket takes nothing (0: it does): a client that
	                            stops reading is cut after limits.client_timeout_s, as MHD would */
	/* engine-private */
	void *priv;
	int64_t last_out_ns; /* last time bytes reached out (keep-alive) */
	int committed;       /* streaming response started: errors become SSE events */
	int cancel_req;
	int in_engine;
	struct gw_call *next_cmd;
};

struct gw_backend_ops {
	const char *kind;
	/* Engine thread: begin the request (the call is registered already). 0 or enum gw_be_err. */
	int (*start)(struct gw_engine *e, struct gw_call *call);
	/* Engine thread: stop the request and free its resources; the engine completes the call. */
	void (*cancel)(struct gw_engine *e, struct gw_call *call);
	/* Engine thread: periodic tick for backends that produce data on timers (may be NULL). */
	void (*tick)(struct gw_engine *e, struct gw_call *call, int64_t now_ns);
};

struct gw_backend {
	const struct gw_backend_ops *ops;
	void *ud; /* the backend's own state (marketplace); NULL for direct and demo */
};

extern struct gw_backend gw_backend_direct;
extern struct gw_backend gw_backend_demo;

/* The backend for a configured backend entry. */
struct gw_backend *gw_backend_for(const struct gw_backend_cfg *b);

/* --- calls ---------------------------------------------------------------------------------- */

/* New call with refs = 1 (the caller's), empty buffers, client_fd -1. NULL on ENOMEM. */
struct gw_call *gw_call_new(void);
void gw_call_unref(struct gw_call *c);
/* Under c->mu: the call's precise error record, allocated (zeroed) on first use. */
struct gw_call_error *gw_call_error_of(struct gw_call *c);

/* --- the engine ----------------------------------------------------------------------------- */

struct gw_engine_stats {
	atomic_llong started, completed, cancelled_by_client, errors, keepalives;
	atomic_int open_streams, in_flight;
	atomic_int queued; /* direct transfers waiting for a backend connection slot */
};

/* Start the engine thread. keepalive_ms: SSE comment interval while a stream is silent. d
 * (optional): a libmicrohttpd daemon started in external epoll mode (MHD_USE_EPOLL, no internal
 * thread) that this thread runs alongside its transfers (a front-end worker). */
int gw_engine_new(long keepalive_ms, struct MHD_Daemon *d, struct gw_engine **out);
/* Any thread: MHD_resume_connection(conn), conn being a connection of e's daemon, and make e's
 * thread run the daemon (it has no wake-up channel of its own in external mode). Every resume
 * goes through here. e NULL (the admin daemon, with its own thread): only the resume. */
void gw_engine_resume(struct gw_engine *e, struct MHD_Connection *conn);
/* Any thread: run fn(arg) on e's thread, before its next look at submitted calls. The caller
 * keeps arg alive until then (gw_server's admissions: a suspended connection cannot end). */
void gw_engine_post_fn(struct gw_engine *e, void (*fn)(void *), void *arg);
/* The engine of the calling thread, NULL when it is not an engine thread. */
struct gw_engine *gw_engine_current(void);
/* Make the engine's daemon stop accepting connections (MHD_quiesce_daemon on its thread, which
 * then closes the listening socket); waits up to wait_ms. 0 when done (or no daemon), -1 on
 * timeout. */
int gw_engine_quiesce(struct gw_engine *e, long wait_ms);
/* Cancel every call, stop the thread (it no longer runs its daemon); the engine stays valid
 * for gw_engine_cancel() from completion callbacks until gw_engine_free(). Idempotent. */
void gw_engine_stop(struct gw_engine *e);
/* Change the keep-alive interval (reload). Thread-safe. */
void gw_engine_set_keepalive(struct gw_engine *e, long keepalive_ms);
/* gw_engine_stop, then free. NULL is a no-op. */
void gw_engine_free(struct gw_engine *e);
/* Submit a call (takes a reference). Thread-safe; returns at once. */
void gw_engine_start(struct gw_engine *e, struct gw_call *c);
/* Ask for cancellation. Thread-safe, idempotent. */
void gw_engine_cancel(struct gw_engine *e, struct gw_call *c);
/* Cancel every call in flight (drain deadline reached). Thread-safe. */
void gw_engine_cancel_all(struct gw_engine *e);
struct gw_engine_stats *gw_engine_stats(struct gw_engine *e);

/* --- used by backends ------------------------------------------------------------------------ */

/* The upstream answered with status and content type. Any thread (under c->mu); ignored once
 * the call is done (e.g. cancelled while a worker thread was still producing). */
void gw_engine_on_head(struct gw_engine *e, struct gw_call *c, int status, const char *ctype);
/* Bytes of the upstream body. Any thread, as gw_engine_on_head. */
void gw_engine_on_data(struct gw_engine *e, struct gw_call *c, const char *p, size_t n);
/* Engine thread only: the upstream request ended (GW_BE_OK or an error); the engine finishes
 * the call. */
void gw_engine_on_done(struct gw_engine *e, struct gw_call *c, int err, const char *msg);

/* Any thread: the request ended. The engine finishes the call on its thread (as
 * gw_engine_on_done) unless it was finished already (cancelled); a reference is held until
 * then. The backend must have detached itself from the call (c->priv) before. */
void gw_engine_post_done(struct gw_engine *e, struct gw_call *c, int err, const char *msg);

/* Any thread: start a streaming response now (200, text/event-stream) with the SSE comment
 * text (e.g. ": opening a marketplace session\n\n"), then send ": keep-alive" comments every
 * keepalive_ms until the next data. No-op when the call is done or its response has started. */
void gw_call_start_stream(struct gw_call *c, const char *comment, long keepalive_ms);

/* Any thread: when the streaming response has started, append the SSE error event ev (n bytes,
 * complete "data: ...\n\n") and "data: [DONE]", so the engine adds no generic one; returns 1.
 * Returns 0 (nothing appended) when the response has not started or the call is done: the
 * caller then sets c->be_err for a plain HTTP error. */
int gw_call_stream_error(struct gw_call *c, const char *ev, size_t n);
/* The engine's curl multi handle (direct backend). */
void *gw_engine_curl_multi(struct gw_engine *e);

int64_t gw_now_ns(void);

#endif
