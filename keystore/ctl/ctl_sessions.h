/*
 * morgatectl session commands: the gateway's marketplace sessions as its key store records them
 * (ks_session_*), and closing one on chain with router-core's close procedure.
 */
#ifndef CTL_SESSIONS_H
#define CTL_SESSIONS_H

#include <keystore/ks.h>

/*
 * Run `morgatectl [--json] sessions SUBCOMMAND ARGS...`:
 *   list [--state STATE]          newest first: id, model, provider, state, stake, times, requests
 *   show ID                       every field (ID: 0x and at least 6 hex digits, or the local id)
 *   close ID [--dispute-ok] [chain options]
 *                                 close on chain with the provider's receipt (or, with
 *                                 --dispute-ok, a user-signed one when the provider is gone),
 *                                 then record the outcome in the store
 * ko names the store (the caller's --db/--pepper/--busy-timeout); it is opened once the arguments
 * are checked. Output is a table or key: value lines, or JSON when json is non-zero; errors are
 * one line on stderr. Returns the exit status: 0 ok, 2 usage, 3 not found, 4 conflict (ambiguous
 * id, session not closable, contract refused), 5 key store error, 6 chain or provider error.
 */
int ctl_sessions_main(const struct ks_options *ko, int argc, char **argv, int json);

#endif
