/*
 * Fuzz the upstream SSE reader: the input is fed whole and again split at a point given by its
 * first byte; both runs must agree on every result (the reader is incremental, so the split must
 * not matter), and counts must stay sane.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw_sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_sse a, b;
	gw_sse_init(&a);
	gw_sse_init(&b);
	const char *p = (const char *)data;
	int ra = gw_sse_feed(&a, p, size);
	size_t cut = size ? data[0] % (size + 1) : 0;
	int rb = gw_sse_feed(&b, p, cut);
	if (!rb)
		rb = gw_sse_feed(&b, p + cut, size - cut);
	if (!ra && !rb &&
	    (a.saw_done != b.saw_done || a.events != b.events || a.have_usage != b.have_usage ||
	     a.prompt_tokens != b.prompt_tokens || a.completion_tokens != b.completion_tokens ||
	     a.saw_error != b.saw_error))
		abort();
	if (a.events < 0 || (size_t)a.events > size || a.prompt_tokens < 0 || a.completion_tokens < 0)
		abort();
	int64_t pt, ct;
	if (gw_usage_from_json(p, size, &pt, &ct) && (pt < 0 || ct < 0))
		abort();
	gw_sse_release(&a);
	gw_sse_release(&b);
	return 0;
}
