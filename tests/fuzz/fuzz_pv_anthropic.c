/*
 * Fuzz the Anthropic mapping, which sees untrusted bytes twice: the consumer's request (mapped
 * to a Messages body) and the backend's SSE events and replies (mapped back to OpenAI chunks).
 * The input is split on '\n': the first line is a request, every further line an SSE event
 * payload, and the whole input is also tried as a non-streamed reply. Nothing may crash or leak;
 * every produced chunk must be JSON with "object" set.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pv_anthropic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_object(const struct rc_buf *b, const char *want)
{
	if (!b->len)
		return;
	json_t *v = json_loadb(b->ptr, b->len, 0, NULL);
	const char *o = json_string_value(json_object_get(v, "object"));
	if (!v || (want && (!o || strcmp(o, want))))
		abort();
	json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	const char *nl = memchr(p, '\n', size);
	size_t first = nl ? (size_t)(nl - p) : size;
	struct rc_buf out = RC_BUF_INIT;
	struct rc_errinfo e;
	bool stream;

	if (pv_anthropic_map_request(p, first, "m", &out, &stream, &e) == RC_OK) {
		json_t *v = json_loadb(out.ptr, out.len, 0, NULL);
		if (!v || !json_is_integer(json_object_get(v, "max_tokens")))
			abort();
		json_decref(v);
	}
	rc_buf_reset(&out);

	struct pv_anthropic_stream st;
	pv_anthropic_stream_init(&st, 1);
	const char *q = nl ? nl + 1 : end;
	while (q < end) {
		const char *n2 = memchr(q, '\n', (size_t)(end - q));
		size_t len = n2 ? (size_t)(n2 - q) : (size_t)(end - q);
		int done = 0;
		rc_buf_reset(&out);
		int rc = pv_anthropic_stream_event(&st, q, len, &out, &done, &e);
		if (rc == RC_OK)
			check_object(&out, "chat.completion.chunk");
		else if (rc == RC_EPROTO)
			check_object(&out, NULL);
		q = n2 ? n2 + 1 : end;
	}
	rc_buf_reset(&out);
	uint64_t in, ot;
	if (pv_anthropic_map_response(p, size, 1, &out, &in, &ot, &e) == RC_OK)
		check_object(&out, "chat.completion");
	rc_buf_release(&out);
	return 0;
}
