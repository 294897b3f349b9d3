/* Helpers shared by the C tests: scratch directories that clean up after themselves. */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stddef.h>

/* Create a fresh directory under $TMPDIR (or /tmp) named after tag; returns its path in buf. */
void tu_mkdtemp(char *buf, size_t cap, const char *tag);
/* Remove a directory tree made by tu_mkdtemp (refuses paths outside the temp root). */
void tu_rmrf(const char *path);
/* Join dir and name into buf. */
const char *tu_path(char *buf, size_t cap, const char *dir, const char *name);

#endif
