/*
 * gateway SSE reader: follows an upstream text/event-stream as it passes through, without
 * changing a byte, to learn what the gateway needs at the end of a stream: whether the upstream
 * sent "data: [DONE]", the usage object if one came, and how many data events (an estimate of
 * completion tokens when no usage came). Pure and incremental: bytes may be split anywhere.
 * Fuzzed by tests/fuzz/fuzz_gw_sse.c. A struct gw_sse belongs to one stream (not thread-safe).
 */
#ifndef GW_SSE_H
#define GW_SSE_H

#include <stddef.h>
#include <stdint.h>

#define GW_SSE_EVENT_MAX (1u << 20) /* longer events are counted but not inspected */

struct gw_sse {
	char *buf; /* owned: the current event's data lines */
	size_t len, cap;
	int in_line_skip; /* the current line is past the cap: ignore the rest of it */
	int field;        /* 0: not yet known, 1: data line, 2: other line (ignored) */
	size_t field_len; /* bytes of the field name seen in the current line */
	char name[8];     /* field name being read */
	int after_cr;     /* last byte was CR: a following LF belongs to the same line end */
	int has_data;     /* the current event has at least one data line */
	/* results */
	int saw_done;            /* a "[DONE]" event arrived */
	int saw_error;           /* an event whose JSON has a top-level "error" */
	int64_t events;          /* data events other than [DONE] */
	int have_usage;          /* an event carried "usage" with token counts */
	int64_t prompt_tokens, completion_tokens;
};

/* Start a reader. */
void gw_sse_init(struct gw_sse *s);
/* Free the reader's buffer; the results stay readable. */
void gw_sse_release(struct gw_sse *s);
/* Feed the next bytes of the stream. Returns 0, or -1 on allocation failure (results so far
 * remain valid; later bytes are not inspected). */
int gw_sse_feed(struct gw_sse *s, const char *p, size_t n);

/*
 * Find "usage": {"prompt_tokens": N, "completion_tokens": M} at the top level of a JSON object
 * (a non-streaming response or one SSE event). Returns 1 and fills the counts, else 0.
 */
int gw_usage_from_json(const char *json, size_t len, int64_t *prompt, int64_t *completion);

#endif
