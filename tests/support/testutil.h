/* Helpers shared by the C tests: scratch directories that clean up after themselves. */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Create a fresh directory under $TMPDIR (or /tmp) named after tag; returns its path in buf. */
void tu_mkdtemp(char *buf, size_t cap, const char *tag);
/* Remove a directory tree made by tu_mkdtemp (refuses paths outside the temp root). */
void tu_rmrf(const char *path);
/* Join dir and name into buf. */
const char *tu_path(char *buf, size_t cap, const char *dir, const char *name);

/* A free TCP port on 127.0.0.1 (bound, read back, released), or -1. */
int tu_free_port(void);
/* Monotonic milliseconds. */
int64_t tu_ms_now(void);
/*
 * Start a private anvil (the pinned npm binary under $MORGATE_ROOT/node_modules) on 127.0.0.1 and
 * a free port; url receives "http://127.0.0.1:PORT". Waits up to 15 s until it answers
 * eth_chainId with 31337. Returns its pid (stop it with tu_anvil_stop), or -1.
 */
pid_t tu_anvil_start(char *url, size_t cap);
void tu_anvil_stop(pid_t pid);

/*
 * Start the test chain with `$MORGATE_ROOT/scripts/devnet start --state-dir DIR/devnet` and return
 * the JSON it prints (rpcUrl, diamond, mor, accounts...: see tests/support/chain.sh), owned by the
 * caller (json_decref), or NULL. Stop it with tu_devnet_stop(DIR), which also removes DIR.
 */
struct json_t *tu_devnet_start(const char *dir);
int tu_devnet_stop(const char *dir);

#endif
