/*
 * provider: backend adapters over libcurl (morpheus-protocol §4.2), streaming.
 *
 * pv_backend_call() sends one OpenAI-shaped chat request to a model's backend and delivers the
 * answer as OpenAI JSON objects, one sink call per chunk, as they arrive:
 *   openai    body = the request with "model" replaced by modelName; Bearer key (omitted when
 *             empty). A text/event-stream reply: every "data:" line is one chunk (the bytes as
 *             received) until a "data:" line containing [DONE]; any other 2xx reply: the whole
 *             body is one chunk.
 *   claudeai  the request is mapped by pv_anthropic; x-api-key + anthropic-version 2023-06-01;
 *             the SSE events or the whole reply are mapped back to chat.completion(.chunk).
 *   demo      no HTTP: pv_demo generates the answer in process, one word per chunk every
 *             demo_chunk_ms (or one chat.completion), polled for cancellation and bounded by
 *             timeout_ms like a real call; an invalid chat request is a 400 HTTP_ERROR with an
 *             OpenAI error object, as a real backend would answer.
 * Outcomes: PV_BACKEND_OK (stream complete: [DONE]/message_stop seen, or a whole reply),
 * PV_BACKEND_HTTP_ERROR (non-2xx, or an Anthropic "error" event: err_body holds JSON to send as
 * the signed providerModelError), PV_BACKEND_FAILED (transport error, timeout, a stream cut
 * short, a request the adapter cannot map: text says which), PV_BACKEND_CANCELLED (the sink
 * asked to stop: the consumer went away; the HTTP transfer is aborted at once).
 *
 * The whole call is bounded by timeout_ms (LLM_TIMEOUT); a backend that hangs is cut then.
 * Thread-safety: each call uses its own curl easy handle; calls may run in parallel.
 * The API key is sent in a header only; it is never logged and never part of any error text.
 */
#ifndef PV_BACKEND_H
#define PV_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_buf.h>

#include "pv_models.h"

enum pv_backend_outcome {
	PV_BACKEND_OK = 0,
	PV_BACKEND_HTTP_ERROR,
	PV_BACKEND_FAILED,
	PV_BACKEND_CANCELLED,
};

struct pv_backend_sink {
	void *ud;
	/* One chunk (compact JSON object, len bytes, not NUL-terminated). Return 0 to go on, -1 to
	 * abort the call (e.g. the consumer's socket failed). */
	int (*chunk)(void *ud, const char *json, size_t len);
	/* Polled during the transfer (~ every 100 ms and on every read): non-zero aborts it. */
	int (*cancelled)(void *ud);
};

struct pv_backend_result {
	enum pv_backend_outcome outcome;
	long status;            /* HTTP status, 0 if none */
	struct rc_buf err_body; /* PV_BACKEND_HTTP_ERROR: the error JSON (owned: release it) */
	char text[300];         /* PV_BACKEND_FAILED: lowercase reason, no secrets */
	unsigned chunks;        /* chunks delivered */
	uint64_t tokens_in;     /* from the backend's usage, else estimated from the request */
	uint64_t tokens_out;    /* from the backend's usage, else the content chunks counted */
};

/* Global libcurl initialisation and the shared connection cache (keep-alive connections to
 * backends reused across calls and threads); call once from main before threads start. */
void pv_backend_global_init(void);

/*
 * Call the backend of m with the OpenAI chat request req (len bytes). *res is initialised by the
 * call; release it with pv_backend_result_release(). Returns res->outcome.
 */
int pv_backend_call(const struct pv_model *m, const char *req, size_t len, long timeout_ms,
                    const struct pv_backend_sink *sink, struct pv_backend_result *res);

void pv_backend_result_release(struct pv_backend_result *res);

#endif
