/*
 * provider: the built-in "demo" backend's answers (apiType "demo" in models-config.json), so a
 * node can serve a marketplace session with no backend and no network (`make run`, tests).
 *
 * Pure: a request in, OpenAI chat objects out, one at a time; no I/O, no clock, no randomness
 * (the caller passes the completion id and the creation time). pv_backend paces the chunks,
 * polls for cancellation and bounds the call by its timeout, as for the real backends.
 *
 * The answer is "You said: <up to 12 words of the last user message>." followed by a fixed text
 * about the path the answer took (the same spirit as the gateway's own demo model), one word
 * per chunk. max_tokens (or max_completion_tokens) caps the words; finish_reason is then
 * "length", else "stop". Usage: prompt_tokens = request bytes / 4 + 1 (the estimate pv_backend
 * uses for every backend that reports none), completion_tokens = the words sent.
 *
 * Stream (request "stream": true): chat.completion.chunk objects, the first delta carrying
 * "role":"assistant", the last one an empty delta with finish_reason and "usage"; the SSE
 * [DONE] marker is implied after it. Otherwise one chat.completion object with the whole text.
 */
#ifndef PV_DEMO_H
#define PV_DEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>

#define PV_DEMO_ECHO_WORDS 12
#define PV_DEMO_WORDS_MAX 64

struct pv_demo {
	bool stream;
	char id[64];
	char *model; /* owned */
	int64_t created;
	uint64_t prompt_tokens;
	char *echo;    /* owned: the echoed words, NUL-separated */
	size_t nwords; /* words to send (after max_tokens) */
	size_t total;  /* words available */
	const char *words[PV_DEMO_WORDS_MAX];
	size_t next; /* next word to send; nwords + 1 = finished */
};

/*
 * Read an OpenAI chat request (len bytes) for the model named model (reported as "model" in
 * every object). id is the completion id ("chatcmpl-..."), created the unix time. RC_OK: *d
 * is ready (release it with pv_demo_release). RC_EPARSE: not a JSON object. RC_EPROTO: not a
 * valid chat request (no "messages" array, a bad max_tokens); err->text says what, in the words
 * an OpenAI backend would use, for a 400 answer. RC_ENOMEM.
 */
int pv_demo_start(struct pv_demo *d, const char *req, size_t len, const char *model, const char *id,
                  int64_t created, struct rc_errinfo *err);

/*
 * Append the next object (compact JSON, no newline) to out. Returns 1 when an object was
 * appended, 0 when the answer is complete (nothing appended), RC_ENOMEM. A non-streaming answer
 * is one object; a stream is one per word plus the final one.
 */
int pv_demo_next(struct pv_demo *d, struct rc_buf *out);

/* Whether the next object is a word (1) or the final/only object (0): the caller paces words. */
bool pv_demo_next_is_word(const struct pv_demo *d);

void pv_demo_release(struct pv_demo *d);

#endif
