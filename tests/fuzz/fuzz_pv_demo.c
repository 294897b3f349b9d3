/*
 * Fuzz the provider's demo backend (pv_demo): a consumer's prompt is untrusted bytes. Whatever
 * they are, pv_demo_start must not crash or leak; on RC_OK every object it then emits is a JSON
 * object, the answer ends after at most PV_DEMO_WORDS_MAX + 1 objects, and on a refusal nothing
 * is left allocated and the error text is NUL-terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pv_demo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pv_demo d;
	struct rc_errinfo e;
	memset(&e, 0, sizeof e);
	int rc = pv_demo_start(&d, (const char *)data, size, "fuzz-model", "chatcmpl-fuzz", 1, &e);
	if (rc != RC_OK) {
		if (d.model || d.echo || memchr(e.text, '\0', sizeof e.text) == NULL)
			abort();
		return 0;
	}
	struct rc_buf b = RC_BUF_INIT;
	int objects = 0, r;
	while ((r = (rc_buf_reset(&b), pv_demo_next(&d, &b))) == 1) {
		json_t *v = json_loadb(b.ptr, b.len, 0, NULL);
		if (!json_is_object(v) || ++objects > PV_DEMO_WORDS_MAX + 1)
			abort();
		json_decref(v);
	}
	if (r != 0 || objects == 0)
		abort();
	rc_buf_release(&b);
	pv_demo_release(&d);
	return 0;
}
