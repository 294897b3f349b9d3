/*
 * provider: models-config.json, the reference's model table (morpheus-protocol §4.1), parsed by
 * a pure validating function (no I/O; fuzzed by tests/fuzz/fuzz_pv_models.c).
 *
 * Accepted shapes:
 *   V2      {"$schema": "...", "models": [ {"modelId": ..., "modelName": ..., ...}, ... ]}
 *   legacy  {"0x<model id>": {"modelName": ..., "apiType": ..., ...}, ...}
 * Fields per entry: modelId (required in V2; the key in legacy), modelName (required, non-empty),
 * apiType (required: "openai", "claudeai" or "demo"; the reference's image adapters are refused
 * with a clear error rather than silently approved and then failed; "demo" is morgate's own
 * in-process generator, pv_demo.h, for a local marketplace with no backend), apiUrl (required
 * except for demo, http:// or https://, the full POST endpoint; one trailing '/' is trimmed;
 * "" for a demo model without one), apiKey (optional string),
 * concurrentSlots (optional integer 0..1000000, 0 = unlimited), capacityPolicy (optional,
 * "simple" (default) or "idle_timeout"), parameters (optional object of strings; unused by the
 * chat adapters except demo's "chunkMs": the pause between streamed words, "0".."10000" ms,
 * default 20). Unknown keys are ignored, as the reference does.
 *
 * Model ids are parsed to 32 bytes, so they match case-insensitively (the reference needs
 * lowercase, trap 9; we accept either case and say so nowhere else). A duplicate id is an error.
 *
 * Ownership: pv_models_parse() returns an owned table; pv_models_free() wipes the API keys
 * and frees it. The table is immutable afterwards and safe to read from many threads.
 */
#ifndef PV_MODELS_H
#define PV_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_common.h>

#define PV_MODELS_MAX 256
#define PV_MODELS_MAX_SLOTS 1000000

enum pv_api_type { PV_API_OPENAI = 1, PV_API_CLAUDEAI = 2, PV_API_DEMO = 3 };

#define PV_DEMO_CHUNK_MS_DEFAULT 20
#define PV_DEMO_CHUNK_MS_MAX 10000
enum pv_capacity_policy { PV_CAP_SIMPLE = 0, PV_CAP_IDLE_TIMEOUT = 1 };

struct pv_model {
	uint8_t id[32];
	char id_hex[67]; /* "0x" + 64 lowercase hex, NUL-terminated */
	char *name;      /* modelName, sent to the backend as "model" */
	enum pv_api_type api;
	char *url;      /* apiUrl, trailing '/' trimmed */
	char *key;      /* apiKey, "" when absent; secret: never log it */
	unsigned slots; /* concurrentSlots, 0 = unlimited */
	enum pv_capacity_policy policy;
	unsigned demo_chunk_ms; /* demo: pause between streamed words (parameters.chunkMs) */
};

struct pv_models {
	size_t n;
	struct pv_model *models;
};

/*
 * Parse and validate len bytes of models-config.json text. On RC_OK *out is an owned table with
 * at least one model. On RC_EPARSE (not JSON; err->offset is the byte offset) or RC_EPROTO
 * (a field is wrong; err->text names it, e.g. "models[1].apiType: unknown value 'x'") *out is
 * NULL. RC_ENOMEM on allocation failure. err may be NULL.
 */
int pv_models_parse(const char *text, size_t len, struct pv_models **out, struct rc_errinfo *err);

/* Free a table (API keys wiped first). NULL is a no-op. */
void pv_models_free(struct pv_models *m);

/* The entry for a 32-byte model id, or NULL. */
const struct pv_model *pv_models_find(const struct pv_models *m, const uint8_t id[32]);

/* Index of a model in m->models (for per-model counters). m must belong to the table. */
size_t pv_models_index(const struct pv_models *t, const struct pv_model *m);

/* "openai" / "claudeai" / "demo". */
const char *pv_api_type_name(enum pv_api_type t);

#endif
