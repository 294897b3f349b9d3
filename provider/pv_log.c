/* provider: the log sink (stderr, one line per record, UTC millisecond timestamps). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pv_log.h"

int pv_log_threshold = PV_LOG_INFO;

int pv_log_level_parse(const char *name, int *level)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++) {
		if (!strcmp(name, names[i])) {
			*level = i;
			return 0;
		}
	}
	return -1;
}

void pv_log_write(int level, const char *comp, const char *fmt, ...)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	char msg[1024], ts[32];
	struct timespec now;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* One record per line: a newline inside a message would forge a second record. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ level=%s comp=%s msg=\"%s\"\n", ts, now.tv_nsec / 1000000L,
	        names[level < 0 || level > 3 ? 3 : level], comp, msg);
}
