/*
 * The backend engine: one thread running libcurl's multi interface through the socket API on
 * its own epoll set, which also holds (a) an eventfd the front end writes to when it submits or
 * cancels a call, (b) every in-flight call's client socket, registered for EPOLLRDHUP only, and
 * (c) when the engine is a front-end worker, the epoll fd of its libmicrohttpd daemon (external
 * mode): the same thread then parses the request, starts the upstream transfer and writes the
 * answer, so a request crosses no thread (on the 2-core benchmark machine every hand-off was a
 * futex or eventfd write plus a context switch, ~6 syscalls per request that are now gone).
 *
 * Streams: once MHD has written what it had, the engine writes the rest of a stream itself
 * (direct_flush: chunk framing as MHD's, EPOLLOUT when the socket is full) and gives the
 * connection back at the end; MHD 0.9.75 walks every suspended connection on each resume pass,
 * so resuming for every SSE event cost O(open streams) per event.
 *
 * Why client sockets live here: libmicrohttpd does not watch a suspended connection, so a client
 * that hangs up while its request waits on the upstream would go unnoticed until the upstream
 * finished (platform-notes). The peer's FIN or RST shows up as RDHUP/HUP/ERR on our epoll set;
 * the engine then cancels the upstream request at once (the curl handle is removed, which
 * closes that upstream connection and frees the slot) and resumes the connection so MHD tears
 * it down. Only RDHUP (and OUT while direct bytes wait) is asked for, so a pipelined next
 * request (EPOLLIN) is not mistaken for a hang-up.
 *
 * Keep-alives and first-byte timeouts are found by a scan of the in-flight calls every
 * SCAN_MS: O(calls) every 50 ms is cheap even at 10k streams, and keeps per-chunk work O(1).
 */
#include "gw_backend.h"

#include <curl/curl.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "gw_log.h"

#define SCAN_MS 50
#define OUT_MAX (64u << 20) /* a buffered (non-streamed) upstream body larger than this fails */
#define TAG_CURL 1u
#define TAG_WAKE 2u
#define TAG_MHD 6u

int64_t gw_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct vec {
	struct gw_call **v;
	size_t n, cap;
};

static void vec_push(struct vec *v, struct gw_call *c)
{
	if (v->n == v->cap) {
		size_t nc = v->cap ? v->cap * 2 : 64;
		struct gw_call **nv = realloc(v->v, nc * sizeof *nv);
		if (!nv)
			abort(); /* server binaries abort on allocation failure (house style) */
		v->v = nv;
		v->cap = nc;
	}
	v->v[v->n++] = c;
}

struct fncall {
	void (*fn)(void *);
	void *arg;
};

struct gw_engine {
	pthread_t thread;
	int ep, wakefd;
	CURLM *multi;
	int64_t curl_timer_ns; /* -1: none */
	atomic_int stop;
	atomic_long keepalive_ms;
	pthread_mutex_t cmd_mu;
	struct vec starts, cancels, tmp_starts, tmp_cancels;
	struct vec dones, tmp_dones; /* gw_engine_post_done() from other threads */
	int cancel_all;
	struct vec active; /* in-flight calls; call->in_engine is index + 1 */
	CURL *pool[256];
	size_t n_pool;
	struct direct *wait_head, *wait_tail; /* direct transfers waiting for a gate slot, FIFO */
	atomic_int retry_waiters; /* another engine freed a slot: try the waiters again */
	struct gw_engine_stats stats;
	struct MHD_Daemon *d;     /* the front-end daemon this thread runs (NULL: none) */
	atomic_int mhd_kick;      /* a connection of ours was resumed: run MHD before sleeping */
	atomic_int quiesce;       /* 1: asked to stop accepting; 2: done */
	struct fncall *fns, *tmp_fns; /* gw_engine_post_fn() (under cmd_mu) */
	size_t n_fns, cap_fns, cap_tmp_fns;
	atomic_int fn_poked;      /* the wake-up for posted functions is written already */
	int stopped;              /* the thread has been joined */
	struct vec flushing;      /* done direct calls waiting for their socket (one ref each) */
};

static void poke(struct gw_engine *e);

/* The engine whose thread this is (NULL on other threads). */
static __thread struct gw_engine *tls_engine;

struct gw_engine *gw_engine_current(void)
{
	return tls_engine;
}

/* libmicrohttpd has no wake-up channel of its own in external mode: whoever resumes one of our
 * connections tells us, with one eventfd write per burst at most (none from our own thread). */
void gw_engine_resume(struct gw_engine *e, struct MHD_Connection *conn)
{
	MHD_resume_connection(conn);
	if (!e || !e->d)
		return;
	if (tls_engine == e)
		atomic_store_explicit(&e->mhd_kick, 1, memory_order_relaxed);
	else if (!atomic_exchange(&e->mhd_kick, 1))
		poke(e);
}

static void engine_unregister(struct gw_engine *e);

/* --- calls ---------------------------------------------------------------------------------- */

struct gw_call *gw_call_new(void)
{
	struct gw_call *c = calloc(1, sizeof *c);
	if (!c)
		abort();
	pthread_mutex_init(&c->mu, NULL);
	atomic_init(&c->refs, 1);
	c->client_fd = -1;
	gw_sse_init(&c->sse);
	return c;
}

void gw_call_unref(struct gw_call *c)
{
	if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	rc_buf_release(&c->body);
	rc_buf_release(&c->out);
	rc_buf_release(&c->dpend);
	gw_sse_release(&c->sse);
	free(c->be_err);
	free(c->market_model);
	gw_config_unref(c->cfg);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

struct gw_call_error *gw_call_error_of(struct gw_call *c)
{
	if (!c->be_err && !(c->be_err = calloc(1, sizeof *c->be_err)))
		abort();
	return c->be_err;
}

/* Under c->mu: let the front end run again if it waits. */
static void wake(struct gw_call *c)
{
	if (c->waiting) {
		c->waiting = 0;
		gw_engine_resume(c->engine, c->conn);
	}
}

static void out_append(struct gw_call *c, const char *p, size_t n)
{
	if (c->out_off && c->out_off == c->out.len) {
		rc_buf_reset(&c->out);
		c->out_off = 0;
	}
	if (rc_buf_append(&c->out, p, n))
		abort();
}

/* --- engine callbacks used by backends -------------------------------------------------------- */

static int is_sse(const char *ct)
{
	return strstr(ct, "text/event-stream") != NULL;
}

void gw_engine_on_head(struct gw_engine *e, struct gw_call *c, int status, const char *ctype)
{
	(void)e;
	pthread_mutex_lock(&c->mu);
	if (c->done) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	c->t_head_ns = gw_now_ns();
	if (!c->committed) {
		c->status = status;
		snprintf(c->content_type, sizeof c->content_type, "%s", ctype ? ctype : "application/json");
		if (c->info.stream && status >= 200 && status < 300) {
			c->committed = 1;
			c->streaming = 1;
			c->head_ready = 1;
			c->last_out_ns = c->t_head_ns;
			wake(c);
		}
	} else if (status < 200 || status >= 300) {
		/* the stream started on a keep-alive; the upstream refused: error event at the end */
		c->status = status;
	} else {
		snprintf(c->content_type, sizeof c->content_type, "%s", ctype ? ctype : "");
		c->status = status;
	}
	pthread_mutex_unlock(&c->mu);
}

static void direct_flush(struct gw_engine *e, struct gw_call *c);

/* Under c->mu, engine thread or not: new body bytes are in out. */
static void deliver(struct gw_engine *e, struct gw_call *c)
{
	if (c->direct && tls_engine == e)
		direct_flush(e, c);
	else
		wake(c);
}

void gw_engine_on_data(struct gw_engine *e, struct gw_call *c, const char *p, size_t n)
{
	int64_t now = gw_now_ns();
	pthread_mutex_lock(&c->mu);
	if (c->done) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	if (!c->t_first_byte_ns)
		c->t_first_byte_ns = now;
	c->bytes_in += (int64_t)n;
	c->fast_ka_ns = 0;
	int ok = c->status >= 200 && c->status < 300;
	if (c->streaming) {
		if (ok) {
			/* under mu: the front end reads the usage counts when the client leaves */
			if (is_sse(c->content_type))
				gw_sse_feed(&c->sse, p, n);
			out_append(c, p, n);
			c->last_out_ns = now;
			deliver(e, c);
		}
	} else if (c->out.len + n <= OUT_MAX) {
		out_append(c, p, n);
	}
	pthread_mutex_unlock(&c->mu);
}

/*
 * Watch the client socket from the first scan after the call started: most calls finish within
 * a scan period and never pay the two epoll_ctl calls; a slow or hanging one is watched from
 * then on, so a disconnect is noticed within SCAN_MS plus the wire.
 */
static void watch_client(struct gw_engine *e, struct gw_call *c)
{
	struct epoll_event ev = {0};
	ev.events = EPOLLRDHUP;
	ev.data.ptr = c;
	c->watched = 1;
	if (c->client_fd >= 0 && epoll_ctl(e->ep, EPOLL_CTL_ADD, c->client_fd, &ev) != 0)
		c->client_fd = -1;
}

static void engine_forget(struct gw_engine *e, struct gw_call *c, int keep_watch)
{
	if (c->client_fd >= 0 && c->watched && !keep_watch) {
		epoll_ctl(e->ep, EPOLL_CTL_DEL, c->client_fd, NULL);
		c->client_fd = -1;
	}
	if (c->in_engine) {
		size_t i = (size_t)c->in_engine - 1;
		struct gw_call *last = e->active.v[--e->active.n];
		e->active.v[i] = last;
		last->in_engine = (int)i + 1;
		c->in_engine = 0;
	}
}

/* The client socket's events in the engine's set: RDHUP always once watched, OUT while direct
 * bytes are pending. */
static void watch_set(struct gw_engine *e, struct gw_call *c, int out)
{
	if (c->client_fd < 0)
		return;
	if (!c->watched)
		watch_client(e, c);
	if (c->client_fd < 0 || c->direct_out == out)
		return;
	struct epoll_event ev = {0};
	ev.events = EPOLLRDHUP | (out ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(e->ep, EPOLL_CTL_MOD, c->client_fd, &ev) == 0)
		c->direct_out = out;
}

/* Engine thread, under c->mu: direct mode over; MHD writes the rest (if any) and the end. After
 * a failed or timed-out write the stream cannot go on (a chunk may be cut in the middle): nothing
 * is handed back, and the reader closes the connection (direct_broken). */
static void direct_end(struct gw_engine *e, struct gw_call *c)
{
	c->direct = 0;
	c->direct_closing = 0;
	rc_buf_release(&c->dpend);
	c->dpend_off = 0;
	if (c->direct_broken) {
		rc_buf_reset(&c->out);
		c->out_off = 0;
	}
	if (c->direct_out)
		watch_set(e, c, 0);
	wake(c);
}

/*
 * Engine thread, under c->mu, c->direct: write what out holds to the client as one chunk
 * ("<hex size>\r\n" data "\r\n", what MHD's reader would have produced), straight from the buffer
 * with one sendmsg; what the socket does not take waits in dpend for EPOLLOUT. Returns with
 * nothing pending, or with EPOLLOUT asked for, or broken (client gone: bytes dropped, the call
 * ends as MHD finds the socket dead).
 */
static void direct_flush(struct gw_engine *e, struct gw_call *c)
{
	int fd = c->client_fd;
	while (!c->direct_broken) {
		ssize_t w;
		if (c->dpend_off < c->dpend.len) {
			w = send(fd, c->dpend.ptr + c->dpend_off, c->dpend.len - c->dpend_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0) {
				c->dpend_off += (size_t)w;
				c->direct_stall_ns = 0;
				continue;
			}
		} else {
			size_t avail = c->out.len - c->out_off;
			if (!avail)
				break;
			char hdr[24];
			int h = snprintf(hdr, sizeof hdr, "%zX\r\n", avail); /* as MHD writes it */
			struct iovec iov[3] = {{hdr, (size_t)h}, {c->out.ptr + c->out_off, avail}, {(void *)"\r\n", 2}};
			struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};
			w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
			size_t total = (size_t)h + avail + 2;
			if (w >= 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
				size_t took = w > 0 ? (size_t)w : 0;
				c->direct_bytes += avail; /* body bytes, as the reader counts them */
				if (took)
					c->direct_stall_ns = 0;
				if (took < total) { /* keep the untaken rest of this frame */
					rc_buf_reset(&c->dpend);
					c->dpend_off = 0;
					for (int i = 0; i < 3; i++) {
						size_t skip = took < iov[i].iov_len ? took : iov[i].iov_len;
						took -= skip;
						if (rc_buf_append(&c->dpend, (char *)iov[i].iov_base + skip, iov[i].iov_len - skip))
							abort();
					}
				}
				rc_buf_reset(&c->out); /* all of it is sent or in dpend */
				c->out_off = 0;
				continue;
			}
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!c->direct_stall_ns)
				c->direct_stall_ns = gw_now_ns();
			watch_set(e, c, 1);
			return;
		}
		c->direct_broken = 1; /* EPIPE, ECONNRESET: the client is gone */
	}
	if (c->direct_broken || c->dpend_off == c->dpend.len) {
		rc_buf_reset(&c->dpend);
		c->dpend_off = 0;
		if (c->direct_out)
			watch_set(e, c, 0);
	}
}

/* Engine thread: a done direct call's socket can take more (or is gone: broken). Once nothing is
 * pending, MHD gets the connection back and the call leaves e->flushing. */
static void direct_finish(struct gw_engine *e, struct gw_call *c, int broken)
{
	pthread_mutex_lock(&c->mu);
	if (broken)
		c->direct_broken = 1;
	direct_flush(e, c);
	int fin = c->direct_broken || c->dpend_off == c->dpend.len;
	if (fin)
		direct_end(e, c);
	pthread_mutex_unlock(&c->mu);
	if (!fin)
		return;
	if (c->client_fd >= 0 && c->watched) {
		epoll_ctl(e->ep, EPOLL_CTL_DEL, c->client_fd, NULL);
		c->client_fd = -1;
	}
	for (size_t i = 0; i < e->flushing.n; i++)
		if (e->flushing.v[i] == c) {
			e->flushing.v[i] = e->flushing.v[--e->flushing.n];
			break;
		}
	gw_call_unref(c);
}

static void append_error_event(struct gw_call *c, int err, const char *msg)
{
	char ev[512];
	const char *type = err == GW_BE_ETIMEOUT ? "timeout_error" : "upstream_error";
	const char *code = err == GW_BE_ETIMEOUT ? "upstream_timeout" : "upstream_failed";
	int n = snprintf(ev, sizeof ev,
			 "data: {\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}\n\n"
			 "data: [DONE]\n\n",
			 msg, type, code);
	out_append(c, ev, (size_t)n);
}

void gw_engine_on_done(struct gw_engine *e, struct gw_call *c, int err, const char *msg)
{
	pthread_mutex_lock(&c->mu);
	if (err == GW_BE_OK && c->status && (c->status < 200 || c->status >= 300) && c->committed) {
		err = GW_BE_EUPSTREAM;
		msg = "the upstream refused the request";
	}
	c->err = err;
	snprintf(c->errmsg, sizeof c->errmsg, "%s", msg ? msg : "");
	if (c->committed && err != GW_BE_ECANCELLED && !c->error_event_sent) {
		if (err != GW_BE_OK)
			append_error_event(c, err,
					   err == GW_BE_ETIMEOUT ? "the upstream timed out"
								 : "the upstream failed during the response");
		else if (!c->sse.saw_done && is_sse(c->content_type))
			out_append(c, "data: [DONE]\n\n", 14);
	}
	c->t_done_ns = gw_now_ns();
	c->done = 1;
	c->head_ready = 1;
	int flushing = 0;
	if (c->direct) {
		if (err == GW_BE_ECANCELLED)
			c->direct_broken = 1; /* the client left (or shutdown): nothing more to write */
		direct_flush(e, c);
		if (!c->direct_broken && c->dpend_off < c->dpend.len)
			flushing = c->direct_closing = 1; /* EPOLLOUT ends it: direct_finish */
		else
			direct_end(e, c);
	} else {
		wake(c);
	}
	pthread_mutex_unlock(&c->mu);
	engine_forget(e, c, flushing);
	if (flushing) {
		atomic_fetch_add(&c->refs, 1); /* e->flushing's */
		vec_push(&e->flushing, c);
	}
	if (c->info.stream)
		atomic_fetch_sub(&e->stats.open_streams, 1);
	atomic_fetch_sub(&e->stats.in_flight, 1);
	atomic_fetch_add(&e->stats.completed, 1);
	if (err != GW_BE_OK && err != GW_BE_ECANCELLED)
		atomic_fetch_add(&e->stats.errors, 1);
	gw_call_unref(c); /* the engine's reference */
}

void gw_call_start_stream(struct gw_call *c, const char *comment, long keepalive_ms)
{
	pthread_mutex_lock(&c->mu);
	if (!c->done && !c->committed) {
		int64_t now = gw_now_ns();
		c->committed = 1;
		c->streaming = 1;
		c->head_ready = 1;
		c->status = 200;
		c->t_head_ns = now;
		snprintf(c->content_type, sizeof c->content_type, "text/event-stream");
		if (comment && comment[0])
			out_append(c, comment, strlen(comment));
		c->last_out_ns = now;
		c->fast_ka_ns = (int64_t)keepalive_ms * 1000000;
		wake(c);
	}
	pthread_mutex_unlock(&c->mu);
}

int gw_call_stream_error(struct gw_call *c, const char *ev, size_t n)
{
	int sent = 0;
	pthread_mutex_lock(&c->mu);
	if (!c->done && c->committed && c->streaming) {
		out_append(c, ev, n);
		out_append(c, "data: [DONE]\n\n", 14);
		c->error_event_sent = 1;
		c->last_out_ns = gw_now_ns();
		wake(c);
		sent = 1;
	}
	pthread_mutex_unlock(&c->mu);
	return sent;
}

void gw_engine_post_done(struct gw_engine *e, struct gw_call *c, int err, const char *msg)
{
	pthread_mutex_lock(&c->mu);
	c->post_err = err;
	if (!c->done) /* the engine hands it back to gw_engine_on_done */
		snprintf(c->errmsg, sizeof c->errmsg, "%s", msg ? msg : "");
	pthread_mutex_unlock(&c->mu);
	atomic_fetch_add(&c->refs, 1); /* released by the engine once it has looked at the call */
	pthread_mutex_lock(&e->cmd_mu);
	vec_push(&e->dones, c);
	pthread_mutex_unlock(&e->cmd_mu);
	poke(e);
}

void *gw_engine_curl_multi(struct gw_engine *e)
{
	return e->multi;
}

struct gw_engine_stats *gw_engine_stats(struct gw_engine *e)
{
	return &e->stats;
}

/* --- the direct backend (libcurl) -------------------------------------------------------------- */

struct direct {
	CURL *easy;
	struct curl_slist *hdrs;
	int head_sent;
	struct gw_engine *e;
	struct gate *gate;
	int queued;              /* waiting in the engine's queue: no transfer yet */
	int running;             /* holds one of the gate's slots */
	struct gw_call *call;
	struct direct *next;     /* engine wait queue */
};

/*
 * A backend's connection gate: at most max_connections transfers run at once (each holds one
 * upstream connection) across every engine thread; the rest wait in FIFO order per engine, still
 * under the first-byte timeout (so a saturated backend answers 504 rather than holding a client
 * forever) and cancellable. A slot is taken with a compare-and-swap on the gate's counter, so
 * the limit is exact; an engine that frees a slot serves its own waiters first and asks the
 * other engines to retry theirs. Gates are process-wide, keyed by backend name, and live until
 * exit, so a reload that changes the limit applies it to the next transfer.
 */
struct gate {
	char name[64];
	atomic_long active;
};

static pthread_mutex_t gates_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gate **gates;
static size_t n_gates;

/* Every running engine, so a freed slot can wake the others' waiters. */
static pthread_mutex_t engines_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gw_engine *engines[4 * GW_MAX_ENGINES];
static size_t n_engines;
/* Transfers waiting in any engine: a finished transfer looks for waiters only when there are
 * some, so the common case (no backend at its limit) takes no lock. */
static atomic_long waiting_total;

static struct gate *gate_for(const char *name)
{
	pthread_mutex_lock(&gates_mu);
	struct gate *g = NULL;
	for (size_t i = 0; i < n_gates && !g; i++)
		if (!strncmp(gates[i]->name, name, sizeof gates[i]->name - 1))
			g = gates[i];
	if (!g) {
		struct gate **v = realloc(gates, (n_gates + 1) * sizeof *v);
		if (!v || !(g = calloc(1, sizeof *g)))
			abort();
		gates = v;
		snprintf(g->name, sizeof g->name, "%s", name);
		atomic_init(&g->active, 0);
		gates[n_gates++] = g;
	}
	pthread_mutex_unlock(&gates_mu);
	return g;
}

static int gate_acquire(struct gate *g, long max)
{
	long a = atomic_load(&g->active);
	while (a < max)
		if (atomic_compare_exchange_weak(&g->active, &a, a + 1))
			return 1;
	return 0;
}

static const char *route_suffix(int route)
{
	switch (route) {
	case GW_ROUTE_CHAT:
		return "/chat/completions";
	case GW_ROUTE_COMPLETIONS:
		return "/completions";
	case GW_ROUTE_EMBEDDINGS:
		return "/embeddings";
	default:
		return "/models";
	}
}

static void direct_head(struct gw_call *c, struct direct *d)
{
	if (d->head_sent)
		return;
	long code = 0;
	char *ct = NULL;
	curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(d->easy, CURLINFO_CONTENT_TYPE, &ct);
	d->head_sent = 1;
	gw_engine_on_head(d->e, c, (int)code, ct);
}

static size_t direct_header(char *p, size_t size, size_t n, void *ud)
{
	struct gw_call *c = ud;
	struct direct *d = c->priv;
	size_t len = size * n;
	if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
		long code = 0;
		curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 200)
			direct_head(c, d);
	}
	return len;
}

static size_t direct_write(char *p, size_t size, size_t n, void *ud)
{
	struct gw_call *c = ud;
	struct direct *d = c->priv;
	direct_head(c, d);
	gw_engine_on_data(d->e, c, p, size * n);
	return size * n;
}

static CURL *easy_get(struct gw_engine *e)
{
	if (e->n_pool) {
		CURL *h = e->pool[--e->n_pool];
		curl_easy_reset(h);
		return h;
	}
	return curl_easy_init();
}

static void easy_put(struct gw_engine *e, CURL *h)
{
	if (e->n_pool < sizeof e->pool / sizeof e->pool[0])
		e->pool[e->n_pool++] = h;
	else
		curl_easy_cleanup(h);
}

static int direct_launch(struct gw_engine *e, struct gw_call *c)
{
	const struct gw_backend_cfg *b = c->bcfg;
	struct direct *d = c->priv;
	char url[4200];
	snprintf(url, sizeof url, "%s%s", b->base_url, route_suffix(c->route));
	CURL *h = d->easy = easy_get(e);
	if (!h)
		abort();
	char line[4200];
	d->hdrs = curl_slist_append(d->hdrs, "Content-Type: application/json");
	d->hdrs = curl_slist_append(d->hdrs, "Expect:");
	snprintf(line, sizeof line, "x-request-id: %s", c->rid);
	d->hdrs = curl_slist_append(d->hdrs, line);
	if (b->api_key) {
		snprintf(line, sizeof line, "Authorization: Bearer %s", b->api_key);
		d->hdrs = curl_slist_append(d->hdrs, line);
		sodium_memzero(line, sizeof line);
	}
	if (!d->hdrs)
		abort();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body.ptr ? c->body.ptr : "");
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body.len);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, d->hdrs);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, direct_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, direct_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(h, CURLOPT_PRIVATE, c);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, b->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, b->total_timeout_ms);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, b->idle_timeout_ms < 1000 ? 1L : b->idle_timeout_ms / 1000);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	/* receive buffer per transfer: a stream holds its buffer for as long as it is open and
	 * thousands may be (SSE events are a few hundred bytes), so streams take curl's minimum;
	 * a plain answer is read once, into a larger one */
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, c->info.stream ? 1024L : 16384L);
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, NULL);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (curl_multi_add_handle(e->multi, h) != CURLM_OK)
		return GW_BE_EUNAVAILABLE;
	d->running = 1;
	return GW_BE_OK;
}

static void serve_waiters(struct gw_engine *e);

static int direct_start(struct gw_engine *e, struct gw_call *c)
{
	struct direct *d = calloc(1, sizeof *d);
	if (!d)
		abort();
	d->e = e;
	d->call = c;
	d->gate = gate_for(c->bcfg->name ? c->bcfg->name : "");
	c->priv = d;
	if (gate_acquire(d->gate, c->bcfg->max_connections)) {
		int rc = direct_launch(e, c);
		if (rc != GW_BE_OK)
			atomic_fetch_sub(&d->gate->active, 1);
		return rc;
	}
	d->queued = 1;
	if (e->wait_tail)
		e->wait_tail->next = d;
	else
		e->wait_head = d;
	e->wait_tail = d;
	atomic_fetch_add(&e->stats.queued, 1);
	atomic_fetch_add(&waiting_total, 1);
	/* a slot freed on another engine between our failed acquire and the count above was not
	 * offered to us (that engine saw no waiter): look once more now that we are counted */
	serve_waiters(e);
	return GW_BE_OK;
}

static void wait_unlink(struct gw_engine *e, struct direct *d)
{
	struct direct **pp = &e->wait_head, *prev = NULL;
	while (*pp && *pp != d)
		prev = *pp, pp = &(*pp)->next;
	if (!*pp)
		return;
	*pp = d->next;
	if (e->wait_tail == d)
		e->wait_tail = prev;
	d->next = NULL;
}

/* Engine thread: start every waiter, in order, whose backend has a free slot now. */
static void serve_waiters(struct gw_engine *e)
{
	struct direct *w = e->wait_head;
	while (w) {
		struct direct *next = w->next;
		if (gate_acquire(w->gate, w->call->bcfg->max_connections)) {
			wait_unlink(e, w);
			w->queued = 0;
			atomic_fetch_sub(&e->stats.queued, 1);
			atomic_fetch_sub(&waiting_total, 1);
			if (direct_launch(e, w->call) != GW_BE_OK) {
				struct gw_call *wc = w->call;
				atomic_fetch_sub(&w->gate->active, 1);
				if (w->easy)
					easy_put(e, w->easy);
				curl_slist_free_all(w->hdrs);
				free(w);
				wc->priv = NULL;
				gw_engine_on_done(e, wc, GW_BE_EUNAVAILABLE,
						  "backend could not start the request");
			}
		}
		w = next;
	}
}

static void direct_release(struct gw_engine *e, struct gw_call *c)
{
	struct direct *d = c->priv;
	if (!d)
		return;
	int freed = 0;
	if (d->queued) {
		wait_unlink(e, d);
		atomic_fetch_sub(&e->stats.queued, 1);
		atomic_fetch_sub(&waiting_total, 1);
	} else {
		if (d->easy) {
			curl_multi_remove_handle(e->multi, d->easy);
			easy_put(e, d->easy);
		}
		curl_slist_free_all(d->hdrs);
		if (d->running) {
			atomic_fetch_sub(&d->gate->active, 1);
			freed = 1;
		}
	}
	free(d);
	c->priv = NULL;
	if (!freed || atomic_load(&waiting_total) == 0)
		return;
	/* a slot is free: our own waiters first, then the other engines' */
	serve_waiters(e);
	pthread_mutex_lock(&engines_mu);
	for (size_t i = 0; i < n_engines; i++)
		if (engines[i] != e && atomic_load(&engines[i]->stats.queued) > 0) {
			atomic_store(&engines[i]->retry_waiters, 1);
			poke(engines[i]);
		}
	pthread_mutex_unlock(&engines_mu);
}

static void direct_cancel(struct gw_engine *e, struct gw_call *c)
{
	direct_release(e, c);
}

static const struct gw_backend_ops direct_ops = {"direct", direct_start, direct_cancel, NULL};
struct gw_backend gw_backend_direct = {&direct_ops, NULL};

/* --- the demo backend --------------------------------------------------------------------------- */

static const char *const demo_words[] = {
	"Hello", " from", " morgate's", " built-in", " demo", " model.", " It", " streams", " a",
	" few", " words", " so", " you", " can", " see", " the", " gateway", " work", " without",
	" any", " upstream", " or", " network", " access."};
#define DEMO_WORDS (sizeof demo_words / sizeof demo_words[0])

struct demo {
	size_t step, n_words;
	int64_t next_ns;
	long created;
};

static void demo_emit(struct gw_engine *e, struct gw_call *c, const char *s)
{
	gw_engine_on_data(e, c, s, strlen(s));
}

static void demo_tick(struct gw_engine *e, struct gw_call *c, int64_t now)
{
	struct demo *d = c->priv;
	char buf[512];
	int chat = c->route == GW_ROUTE_CHAT;
	while (d && now >= d->next_ns) {
		d->next_ns = now + (int64_t)c->bcfg->demo_chunk_ms * 1000000;
		if (d->step < d->n_words) {
			const char *w = demo_words[d->step++];
			if (chat)
				snprintf(buf, sizeof buf,
					 "data: {\"id\":\"chatcmpl-%s\",\"object\":\"chat.completion.chunk\",\"created\":%ld,"
					 "\"model\":\"demo\",\"choices\":[{\"index\":0,\"delta\":{%s\"content\":\"%s\"},"
					 "\"finish_reason\":null}]}\n\n",
					 c->rid, d->created, d->step == 1 ? "\"role\":\"assistant\"," : "", w);
			else
				snprintf(buf, sizeof buf,
					 "data: {\"id\":\"cmpl-%s\",\"object\":\"text_completion\",\"created\":%ld,"
					 "\"model\":\"demo\",\"choices\":[{\"index\":0,\"text\":\"%s\",\"finish_reason\":null}]}\n\n",
					 c->rid, d->created, w);
			demo_emit(e, c, buf);
			continue;
		}
		snprintf(buf, sizeof buf,
			 "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":\"demo\","
			 "\"choices\":[{\"index\":0,%s\"finish_reason\":\"%s\"}],"
			 "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%zu,\"total_tokens\":%lld}}\n\n"
			 "data: [DONE]\n\n",
			 c->rid, chat ? "chat.completion.chunk" : "text_completion", d->created,
			 chat ? "\"delta\":{}," : "\"text\":\"\",", d->n_words < DEMO_WORDS ? "length" : "stop",
			 (long long)c->info.prompt_estimate, d->n_words,
			 (long long)c->info.prompt_estimate + (long long)d->n_words);
		demo_emit(e, c, buf);
		free(d);
		c->priv = NULL;
		gw_engine_on_done(e, c, GW_BE_OK, NULL);
		return;
	}
}

static int demo_start(struct gw_engine *e, struct gw_call *c)
{
	struct demo *d = calloc(1, sizeof *d);
	if (!d)
		abort();
	d->created = (long)time(NULL);
	d->n_words = DEMO_WORDS;
	if (c->info.max_tokens > 0 && (size_t)c->info.max_tokens < d->n_words)
		d->n_words = (size_t)c->info.max_tokens;
	char buf[2048];
	size_t off = 0;
	if (c->route == GW_ROUTE_EMBEDDINGS) {
		free(d);
		gw_engine_on_head(e, c, 200, "application/json");
		/* the same four float32 values, as a list or (encoding_format "base64", what the
		 * official clients ask for by default) little-endian bytes in base64 */
		int b64 = c->body.ptr && strstr(c->body.ptr, "\"base64\"") != NULL;
		snprintf(buf, sizeof buf,
			 "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
			 "\"embedding\":%s}],\"model\":\"demo\","
			 "\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}",
			 b64 ? "\"zcxMPAAAgL4AAAA/AACAPQ==\"" : "[0.0125,-0.25,0.5,0.0625]",
			 (long long)c->info.prompt_estimate, (long long)c->info.prompt_estimate);
		demo_emit(e, c, buf);
		gw_engine_on_done(e, c, GW_BE_OK, NULL);
		return GW_BE_OK;
	}
	if (c->info.stream) {
		c->priv = d;
		gw_engine_on_head(e, c, 200, "text/event-stream");
		d->next_ns = gw_now_ns();
		demo_tick(e, c, d->next_ns);
		return GW_BE_OK;
	}
	char text[1024];
	for (size_t i = 0; i < d->n_words; i++)
		off += (size_t)snprintf(text + off, sizeof text - off, "%s", demo_words[i]);
	int chat = c->route == GW_ROUTE_CHAT;
	snprintf(buf, sizeof buf,
		 "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":\"demo\",\"choices\":[{\"index\":0,"
		 "%s%s%s,\"finish_reason\":\"%s\"}],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%zu,"
		 "\"total_tokens\":%lld}}",
		 c->rid, chat ? "chat.completion" : "text_completion", d->created,
		 chat ? "\"message\":{\"role\":\"assistant\",\"content\":\"" : "\"text\":\"", text,
		 chat ? "\"}" : "\"", d->n_words < DEMO_WORDS ? "length" : "stop",
		 (long long)c->info.prompt_estimate, d->n_words,
		 (long long)c->info.prompt_estimate + (long long)d->n_words);
	free(d);
	gw_engine_on_head(e, c, 200, "application/json");
	demo_emit(e, c, buf);
	gw_engine_on_done(e, c, GW_BE_OK, NULL);
	return GW_BE_OK;
}

static void demo_cancel(struct gw_engine *e, struct gw_call *c)
{
	(void)e;
	free(c->priv);
	c->priv = NULL;
}

static const struct gw_backend_ops demo_ops = {"demo", demo_start, demo_cancel, demo_tick};
struct gw_backend gw_backend_demo = {&demo_ops, NULL};

struct gw_backend *gw_backend_for(const struct gw_backend_cfg *b)
{
	return b->kind == GW_BACKEND_DEMO ? &gw_backend_demo : &gw_backend_direct;
}

/* --- the engine loop ------------------------------------------------------------------------------ */

static int curl_sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct gw_engine *e = userp;
	(void)easy;
	(void)socketp;
	/* socketp remembers what the socket is registered for (events + 1), so each change costs
	 * one epoll_ctl and an unchanged one none */
	uintptr_t cur = (uintptr_t)socketp;
	if (what == CURL_POLL_REMOVE) {
		if (cur)
			epoll_ctl(e->ep, EPOLL_CTL_DEL, s, NULL);
		curl_multi_assign(e->multi, s, NULL);
		return 0;
	}
	struct epoll_event ev = {0};
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	ev.data.u64 = ((uint64_t)s << 2) | TAG_CURL;
	if (cur == (uintptr_t)ev.events + 1)
		return 0;
	if (epoll_ctl(e->ep, cur ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
		epoll_ctl(e->ep, EPOLL_CTL_MOD, s, &ev);
	curl_multi_assign(e->multi, s, (void *)((uintptr_t)ev.events + 1));
	return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct gw_engine *e = userp;
	(void)multi;
	e->curl_timer_ns = timeout_ms < 0 ? -1 : gw_now_ns() + (int64_t)timeout_ms * 1000000;
	return 0;
}

static void cancel_call(struct gw_engine *e, struct gw_call *c, int err, const char *msg)
{
	if (!c->in_engine)
		return;
	c->backend->ops->cancel(e, c);
	gw_engine_on_done(e, c, err, msg);
}

static void start_call(struct gw_engine *e, struct gw_call *c)
{
	c->t_start_ns = gw_now_ns();
	c->last_out_ns = c->t_start_ns;
	c->next_renew_ns = c->t_start_ns + c->renew_every_ns;
	vec_push(&e->active, c);
	c->in_engine = (int)e->active.n;
	atomic_fetch_add(&e->stats.in_flight, 1);
	atomic_fetch_add(&e->stats.started, 1);
	if (c->info.stream)
		atomic_fetch_add(&e->stats.open_streams, 1);
	int rc = c->backend->ops->start(e, c);
	if (rc != GW_BE_OK && c->in_engine) {
		c->backend->ops->cancel(e, c);
		gw_engine_on_done(e, c, rc, "backend could not start the request");
	}
}

/* A direct stream whose client has taken nothing for limits.client_timeout_s (MHD's rule for
 * a connection it writes itself). */
static int direct_stalled(const struct gw_call *c, int64_t now)
{
	return c->direct_stall_ns && now - c->direct_stall_ns > (int64_t)c->cfg->client_timeout_s * 1000000000;
}

static void scan(struct gw_engine *e, int64_t now)
{
	int64_t ka = (int64_t)atomic_load(&e->keepalive_ms) * 1000000;
	for (size_t i = 0; i < e->flushing.n;) {
		struct gw_call *c = e->flushing.v[i];
		if (direct_stalled(c, now))
			direct_finish(e, c, 1); /* swaps c out */
		else
			i++;
	}
	for (size_t i = 0; i < e->active.n;) {
		struct gw_call *c = e->active.v[i];
		size_t n_before = e->active.n;
		if (c->backend->ops->tick)
			c->backend->ops->tick(e, c, now);
		if (e->active.n != n_before)
			continue; /* c finished and was swapped out */
		if (!c->t_head_ns && now - c->t_start_ns > (int64_t)c->bcfg->first_byte_timeout_ms * 1000000) {
			cancel_call(e, c, GW_BE_ETIMEOUT, "no response headers from the upstream in time");
			continue;
		}
		if (!c->watched)
			watch_client(e, c);
		if (direct_stalled(c, now)) {
			atomic_fetch_add(&e->stats.cancelled_by_client, 1);
			gw_log_info("engine", "rid=%s client stopped reading: upstream request cancelled", c->rid);
			cancel_call(e, c, GW_BE_ECANCELLED, "client stopped reading");
			continue;
		}
		if (c->rl && c->renew_every_ns > 0 && now >= c->next_renew_ns) {
			gw_rl_renew(c->rl, &c->ticket);
			c->next_renew_ns = now + c->renew_every_ns;
		}
		if (c->info.stream) {
			pthread_mutex_lock(&c->mu);
			if (now - c->last_out_ns >= (c->fast_ka_ns ? c->fast_ka_ns : ka)) {
				if (!c->committed) {
					c->committed = 1;
					c->streaming = 1;
					c->head_ready = 1;
					c->status = 200;
					snprintf(c->content_type, sizeof c->content_type, "text/event-stream");
				}
				out_append(c, ": keep-alive\n\n", 14);
				c->last_out_ns = now;
				atomic_fetch_add(&e->stats.keepalives, 1);
				deliver(e, c);
			}
			pthread_mutex_unlock(&c->mu);
		}
		i++;
	}
}

static void check_done(struct gw_engine *e)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(e->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct gw_call *c = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
		CURLcode res = m->data.result;
		if (!c)
			continue;
		struct direct *d = c->priv;
		if (d && res == CURLE_OK)
			direct_head(c, d);
		int err = GW_BE_OK;
		const char *msg = NULL;
		if (res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST ||
		    res == CURLE_SSL_CONNECT_ERROR)
			err = GW_BE_ECONNECT, msg = curl_easy_strerror(res);
		else if (res == CURLE_OPERATION_TIMEDOUT)
			err = GW_BE_ETIMEOUT, msg = curl_easy_strerror(res);
		else if (res != CURLE_OK)
			err = GW_BE_EUPSTREAM, msg = curl_easy_strerror(res);
		if (err == GW_BE_ECONNECT && c->t_head_ns)
			err = GW_BE_EUPSTREAM;
		direct_release(e, c);
		gw_engine_on_done(e, c, err, msg);
	}
}

void gw_engine_post_fn(struct gw_engine *e, void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&e->cmd_mu);
	if (e->n_fns == e->cap_fns) {
		size_t nc = e->cap_fns ? e->cap_fns * 2 : 64;
		struct fncall *v = realloc(e->fns, nc * sizeof *v);
		if (!v)
			abort();
		e->fns = v;
		e->cap_fns = nc;
	}
	e->fns[e->n_fns++] = (struct fncall){fn, arg};
	pthread_mutex_unlock(&e->cmd_mu);
	/* a burst (one Redis reply admits many requests) costs one wake-up */
	if (tls_engine != e && !atomic_exchange(&e->fn_poked, 1))
		poke(e);
}

static void take_commands(struct gw_engine *e)
{
	/* posted functions first: they may start calls, taken just below */
	atomic_store(&e->fn_poked, 0);
	pthread_mutex_lock(&e->cmd_mu);
	if (e->n_fns) {
		struct fncall *f = e->fns;
		size_t n = e->n_fns, cap = e->cap_fns;
		e->fns = e->tmp_fns;
		e->cap_fns = e->cap_tmp_fns;
		e->n_fns = 0;
		pthread_mutex_unlock(&e->cmd_mu);
		for (size_t i = 0; i < n; i++)
			f[i].fn(f[i].arg);
		pthread_mutex_lock(&e->cmd_mu);
		e->tmp_fns = f;
		e->cap_tmp_fns = cap;
	}
	struct vec s = e->starts, k = e->cancels, d = e->dones;
	e->starts = e->tmp_starts;
	e->cancels = e->tmp_cancels;
	e->dones = e->tmp_dones;
	e->starts.n = e->cancels.n = e->dones.n = 0;
	int all = e->cancel_all;
	e->cancel_all = 0;
	pthread_mutex_unlock(&e->cmd_mu);
	for (size_t i = 0; i < s.n; i++)
		start_call(e, s.v[i]);
	for (size_t i = 0; i < k.n; i++) {
		cancel_call(e, k.v[i], GW_BE_ECANCELLED, "cancelled");
		gw_call_unref(k.v[i]); /* the reference the cancel command held */
	}
	for (size_t i = 0; i < d.n; i++) {
		struct gw_call *c = d.v[i];
		if (c->in_engine) {
			pthread_mutex_lock(&c->mu);
			int err = c->post_err;
			char msg[sizeof c->errmsg];
			memcpy(msg, c->errmsg, sizeof msg);
			pthread_mutex_unlock(&c->mu);
			gw_engine_on_done(e, c, err, msg);
		}
		gw_call_unref(c); /* the reference gw_engine_post_done took */
	}
	if (all)
		while (e->active.n)
			cancel_call(e, e->active.v[0], GW_BE_ECANCELLED, "shutting down");
	s.n = k.n = d.n = 0;
	e->tmp_starts = s;
	e->tmp_cancels = k;
	e->tmp_dones = d;
}

/* The front-end daemon's turn: new connections, requests, resumed connections, timeouts. */
static void run_mhd(struct gw_engine *e)
{
	atomic_store(&e->mhd_kick, 0); /* before the run: a resume after it kicks again */
	gw_rl_defer_begin(); /* the turn's admissions and settlements: one limiter wake-up */
	MHD_run(e->d);
	gw_rl_defer_end();
	if (atomic_load(&e->quiesce) == 1) {
		MHD_socket fd = MHD_quiesce_daemon(e->d); /* ours now: close it, refusing newcomers */
		if (fd != MHD_INVALID_SOCKET)
			close(fd);
		atomic_store(&e->quiesce, 2);
	}
}

static void *engine_main(void *arg)
{
	struct gw_engine *e = arg;
	struct epoll_event evs[256];
	int64_t next_scan = gw_now_ns();
	tls_engine = e;
	if (e->d)
		run_mhd(e); /* MHD puts its listening socket into its epoll set on its first turn */
	while (!atomic_load(&e->stop)) {
		int64_t now = gw_now_ns();
		int timeout = e->active.n ? SCAN_MS : 1000;
		if (e->active.n) {
			int64_t until = (next_scan - now + 999999) / 1000000; /* up: no spin before it */
			timeout = until < 0 ? 0 : (int)until;
		}
		if (e->curl_timer_ns >= 0) {
			int64_t t = (e->curl_timer_ns - now + 999999) / 1000000;
			if (t < timeout)
				timeout = t < 0 ? 0 : (int)t;
		}
		int64_t mhd_due = -1;
		if (e->d) {
			MHD_UNSIGNED_LONG_LONG mt;
			if (atomic_load(&e->mhd_kick) || atomic_load(&e->quiesce) == 1)
				timeout = 0;
			else if (MHD_get_timeout(e->d, &mt) == MHD_YES) {
				if (mt < (MHD_UNSIGNED_LONG_LONG)timeout)
					timeout = (int)mt;
				mhd_due = now + (int64_t)mt * 1000000;
			}
		}
		int n = epoll_wait(e->ep, evs, 256, timeout);
		int mhd_ready = atomic_load(&e->quiesce) == 1; /* kicks are read after the events */
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			if (tag == TAG_MHD) {
				mhd_ready = 1;
				continue;
			}
			if (tag == TAG_WAKE) {
				uint64_t v;
				ssize_t r = read(e->wakefd, &v, sizeof v);
				(void)r;
				continue;
			}
			if (tag & TAG_CURL) {
				int flags = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
					    (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
					    (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
				int running;
				curl_multi_socket_action(e->multi, (curl_socket_t)(tag >> 2), flags, &running);
				continue;
			}
			/* a client socket: it takes direct bytes again (OUT), or the peer hung up */
			struct gw_call *c = evs[i].data.ptr;
			uint32_t cev = evs[i].events;
			int gone = (cev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
			if (c->direct_closing) {
				direct_finish(e, c, gone);
				continue;
			}
			if ((cev & EPOLLOUT) && c->in_engine) {
				pthread_mutex_lock(&c->mu);
				if (c->direct)
					direct_flush(e, c);
				pthread_mutex_unlock(&c->mu);
			}
			if (gone && c->in_engine) {
				atomic_fetch_add(&e->stats.cancelled_by_client, 1);
				gw_log_info("engine", "rid=%s client disconnected: upstream request cancelled", c->rid);
				cancel_call(e, c, GW_BE_ECANCELLED, "client disconnected");
			}
		}
		now = gw_now_ns();
		if (e->curl_timer_ns >= 0 && now >= e->curl_timer_ns) {
			int running;
			e->curl_timer_ns = -1;
			curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		}
		check_done(e);
		if (e->d && (mhd_ready || atomic_load(&e->mhd_kick) || (mhd_due >= 0 && now >= mhd_due)))
			run_mhd(e);
		take_commands(e);
		check_done(e);
		if (atomic_exchange(&e->retry_waiters, 0))
			serve_waiters(e);
		if (now >= next_scan) {
			scan(e, now);
			next_scan = now + SCAN_MS * 1000000;
		}
	}
	while (e->active.n)
		cancel_call(e, e->active.v[0], GW_BE_ECANCELLED, "shutting down");
	take_commands(e);
	while (e->active.n)
		cancel_call(e, e->active.v[0], GW_BE_ECANCELLED, "shutting down");
	while (e->flushing.n)
		direct_finish(e, e->flushing.v[0], 1);
	return NULL;
}

static void poke(struct gw_engine *e)
{
	uint64_t one = 1;
	ssize_t w = write(e->wakefd, &one, sizeof one);
	(void)w;
}

int gw_engine_new(long keepalive_ms, struct MHD_Daemon *d, struct gw_engine **out)
{
	struct gw_engine *e = calloc(1, sizeof *e);
	if (!e)
		return -1;
	e->d = d;
	e->ep = epoll_create1(EPOLL_CLOEXEC);
	e->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	e->multi = curl_multi_init();
	e->curl_timer_ns = -1;
	atomic_init(&e->keepalive_ms, keepalive_ms);
	pthread_mutex_init(&e->cmd_mu, NULL);
	if (e->ep < 0 || e->wakefd < 0 || !e->multi)
		goto fail;
	struct epoll_event ev = {0};
	ev.events = EPOLLIN;
	ev.data.u64 = TAG_WAKE;
	epoll_ctl(e->ep, EPOLL_CTL_ADD, e->wakefd, &ev);
	if (d) {
		const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
		ev.events = EPOLLIN;
		ev.data.u64 = TAG_MHD;
		if (!di || epoll_ctl(e->ep, EPOLL_CTL_ADD, di->epoll_fd, &ev) != 0)
			goto fail;
	}
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
	curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, 2048L);
	pthread_mutex_lock(&engines_mu);
	if (n_engines == sizeof engines / sizeof engines[0]) {
		pthread_mutex_unlock(&engines_mu);
		goto fail;
	}
	engines[n_engines++] = e;
	pthread_mutex_unlock(&engines_mu);
	if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
		engine_unregister(e);
		goto fail;
	}
	*out = e;
	return 0;
fail:
	if (e->multi)
		curl_multi_cleanup(e->multi);
	if (e->ep >= 0)
		close(e->ep);
	if (e->wakefd >= 0)
		close(e->wakefd);
	free(e);
	return -1;
}

void gw_engine_set_keepalive(struct gw_engine *e, long keepalive_ms)
{
	atomic_store(&e->keepalive_ms, keepalive_ms);
}

static void engine_unregister(struct gw_engine *e)
{
	pthread_mutex_lock(&engines_mu);
	for (size_t i = 0; i < n_engines; i++)
		if (engines[i] == e) {
			engines[i] = engines[--n_engines];
			break;
		}
	pthread_mutex_unlock(&engines_mu);
}

void gw_engine_stop(struct gw_engine *e)
{
	if (!e || e->stopped)
		return;
	engine_unregister(e);
	atomic_store(&e->stop, 1);
	poke(e);
	pthread_join(e->thread, NULL);
	e->stopped = 1;
}

int gw_engine_quiesce(struct gw_engine *e, long wait_ms)
{
	if (!e->d)
		return 0;
	int expect = 0;
	atomic_compare_exchange_strong(&e->quiesce, &expect, 1);
	poke(e);
	for (long i = 0; i < wait_ms && atomic_load(&e->quiesce) != 2; i++)
		usleep(1000);
	return atomic_load(&e->quiesce) == 2 ? 0 : -1;
}

void gw_engine_free(struct gw_engine *e)
{
	if (!e)
		return;
	gw_engine_stop(e);
	/* commands that came after the thread ended (MHD_stop_daemon's completion callbacks
	 * cancel calls the thread cancelled already): release their references */
	take_commands(e);
	while (e->active.n)
		cancel_call(e, e->active.v[0], GW_BE_ECANCELLED, "shutting down");
	while (e->n_pool)
		curl_easy_cleanup(e->pool[--e->n_pool]);
	curl_multi_cleanup(e->multi);
	close(e->ep);
	close(e->wakefd);
	free(e->starts.v);
	free(e->cancels.v);
	free(e->tmp_starts.v);
	free(e->tmp_cancels.v);
	for (size_t i = 0; i < e->dones.n; i++)
		gw_call_unref(e->dones.v[i]); /* posted after the thread stopped */
	free(e->dones.v);
	free(e->fns);
	free(e->tmp_fns);
	free(e->flushing.v);
	free(e->tmp_dones.v);
	free(e->active.v);
	pthread_mutex_destroy(&e->cmd_mu);
	free(e);
}

void gw_engine_start(struct gw_engine *e, struct gw_call *c)
{
	atomic_fetch_add(&c->refs, 1);
	pthread_mutex_lock(&e->cmd_mu);
	vec_push(&e->starts, c);
	pthread_mutex_unlock(&e->cmd_mu);
	if (tls_engine != e) /* on its own thread the loop takes it right after this MHD turn */
		poke(e);
}

void gw_engine_cancel(struct gw_engine *e, struct gw_call *c)
{
	atomic_fetch_add(&c->refs, 1);
	pthread_mutex_lock(&e->cmd_mu);
	vec_push(&e->cancels, c);
	pthread_mutex_unlock(&e->cmd_mu);
	poke(e);
}

void gw_engine_cancel_all(struct gw_engine *e)
{
	pthread_mutex_lock(&e->cmd_mu);
	e->cancel_all = 1;
	pthread_mutex_unlock(&e->cmd_mu);
	poke(e);
}
