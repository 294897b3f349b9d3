/*
 * morgatectl chain commands: the wallet (encrypted key file) and the Morpheus marketplace
 * (reads, and the registrations a resale provider needs). See ctl_chain.c for the usage text.
 */
#ifndef CTL_CHAIN_H
#define CTL_CHAIN_H

/* Exit status of a chain or wallet failure (node unreachable, chain id mismatch, transaction not
 * mined, wrong passphrase). A contract revert is a conflict (4); an unknown thing is 3. */
#define CTL_EXIT_CHAIN 6

/*
 * Run `morgatectl [--json] CMD ARGS...` for CMD one of wallet, market, provider, model, bid.
 * Prints the result (a table, or JSON when json is non-zero) on stdout, one error line on
 * stderr, and returns the exit status (0 ok, 2 usage, 3 not found, 4 conflict/revert, 6 chain).
 */
int ctl_chain_main(const char *cmd, int argc, char **argv, int json);

#endif
