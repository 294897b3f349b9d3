/*
 * Fuzz models-config.json validation: whatever the bytes, pv_models_parse must not crash or
 * leak; on RC_OK every entry is complete and findable by its id, on failure *out is NULL and
 * the error text is NUL-terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pv_models.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pv_models *m = (struct pv_models *)1;
	struct rc_errinfo e;
	memset(&e, 0, sizeof e);
	int rc = pv_models_parse((const char *)data, size, &m, &e);
	if (rc == RC_OK) {
		if (!m || m->n == 0 || m->n > PV_MODELS_MAX)
			abort();
		for (size_t i = 0; i < m->n; i++) {
			const struct pv_model *x = &m->models[i];
			if (!x->name[0] || (!x->url && x->api != PV_API_DEMO) || !x->key ||
			    strlen(x->id_hex) != 66 ||
			    (x->api != PV_API_OPENAI && x->api != PV_API_CLAUDEAI &&
			     x->api != PV_API_DEMO) ||
			    x->slots > PV_MODELS_MAX_SLOTS)
				abort();
			if (pv_models_find(m, x->id) != x || pv_models_index(m, x) != i)
				abort();
		}
		pv_models_free(m);
	} else {
		if (m != NULL || memchr(e.text, '\0', sizeof e.text) == NULL)
			abort();
	}
	return 0;
}
