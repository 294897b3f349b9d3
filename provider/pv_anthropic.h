/*
 * provider: OpenAI chat <-> Anthropic Messages API mapping, pure (no I/O), for apiType
 * "claudeai" (morpheus-protocol §4.2). Unlike the reference adapter, which sends the OpenAI body
 * unchanged and never sets "object" (trap 10), this maps both ways:
 *
 * Request (OpenAI chat/completions body -> Messages body):
 *   model               <- the configured modelName
 *   system              <- every "system"/"developer" message's text, joined with "\n\n"
 *   messages            <- user/assistant messages in order; string content kept, array content
 *                          keeps its "text" parts; other roles and part types are refused
 *   max_tokens          <- max_completion_tokens, else max_tokens, else 1024 (the reference's)
 *   stop_sequences      <- stop (a string or an array of strings)
 *   temperature, top_p, top_k, stream  <- copied when present
 * Stream (each SSE "data:" JSON -> zero or one chat.completion.chunk, object always set):
 *   message_start        -> first chunk, delta {"role":"assistant","content":""}; id, model and
 *                           input token count remembered
 *   content_block_delta  -> delta {"content": text} (text_delta only)
 *   message_delta        -> empty delta with finish_reason (end_turn|stop_sequence -> stop,
 *                           max_tokens -> length, tool_use -> tool_calls) and
 *                           usage {prompt_tokens, completion_tokens, total_tokens}
 *   message_stop         -> *done = 1 (the caller then sends "[DONE]")
 *   error                -> RC_EPROTO, out holds {"error":{...}} (the backend's error object)
 *   ping, content_block_start/stop, unknown types -> nothing
 * Response (non-streaming Messages reply -> one chat.completion object with usage).
 *
 * All functions are reentrant; outputs are appended to caller buffers (compact JSON).
 */
#ifndef PV_ANTHROPIC_H
#define PV_ANTHROPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>

#define PV_ANTHROPIC_DEFAULT_MAX_TOKENS 1024

/*
 * Map an OpenAI chat request (len bytes of JSON) to a Messages request for model_name, appended
 * to out. *stream gets the request's "stream" flag. RC_OK, RC_EPARSE (not JSON) or RC_EPROTO
 * (shape not mappable; err->text says what), RC_ENOMEM. err may be NULL.
 */
int pv_anthropic_map_request(const char *json, size_t len, const char *model_name,
                             struct rc_buf *out, bool *stream, struct rc_errinfo *err);

/* Stream state: one per backend call. Zero-init then pv_anthropic_stream_init(). */
struct pv_anthropic_stream {
	char id[96];
	char model[96];
	int64_t created;
	uint64_t tokens_in, tokens_out;
	bool started;
};

/* Start a stream; created is the unix second put in every chunk. */
void pv_anthropic_stream_init(struct pv_anthropic_stream *st, int64_t created);

/*
 * Map one SSE event payload (the JSON after "data:"). Appends at most one chunk to out (check
 * out->len to see whether one was produced). *done is set on message_stop. Returns RC_OK,
 * RC_EPARSE (not JSON), RC_EPROTO (an "error" event: out holds the error JSON), RC_ENOMEM.
 */
int pv_anthropic_stream_event(struct pv_anthropic_stream *st, const char *data, size_t len,
                              struct rc_buf *out, int *done, struct rc_errinfo *err);

/* Map a whole Messages reply to a chat.completion object appended to out. RC_OK, RC_EPARSE,
 * RC_EPROTO (not a message), RC_ENOMEM. tokens_in/out (may be NULL) get the usage. */
int pv_anthropic_map_response(const char *json, size_t len, int64_t created, struct rc_buf *out,
                              uint64_t *tokens_in, uint64_t *tokens_out, struct rc_errinfo *err);

/* OpenAI finish_reason of an Anthropic stop_reason ("end_turn" -> "stop", ...). Unknown -> "stop".
 */
const char *pv_anthropic_finish_reason(const char *stop_reason);

#endif
