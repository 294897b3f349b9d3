/* Scratch directories for tests; see testutil.h. */
#include "testutil.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tmp_root(void)
{
	const char *t = getenv("TMPDIR");
	return t && *t ? t : "/tmp";
}

void tu_mkdtemp(char *buf, size_t cap, const char *tag)
{
	snprintf(buf, cap, "%s/morgate-%s-XXXXXX", tmp_root(), tag);
	if (!mkdtemp(buf)) {
		perror("mkdtemp");
		abort();
	}
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(p);
}

void tu_rmrf(const char *path)
{
	if (strncmp(path, tmp_root(), strlen(tmp_root())) != 0 || !strstr(path, "/morgate-"))
		return;
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_path(char *buf, size_t cap, const char *dir, const char *name)
{
	snprintf(buf, cap, "%s/%s", dir, name);
	return buf;
}
