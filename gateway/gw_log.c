/*
 * Logging: a record is "ts=... level=... comp=... msg" formatted into a stack buffer and written
 * with one write(2) so lines from different threads never interleave.
 */
#include "gw_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int gw_log_min_level = GW_LOG_INFO;
int gw_log_access_enabled = 1;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int gw_log_parse_level(const char *s)
{
	for (int i = 0; i < 5; i++)
		if (s && !strcmp(s, level_names[i]))
			return i;
	return -1;
}

static int stamp(char *buf, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	return snprintf(buf, cap, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			ts.tv_nsec / 1000000);
}

static void write_line(char *buf, size_t n, size_t cap)
{
	if (n >= cap - 1)
		n = cap - 2;
	/* One record, one line: fold any newline a message carried. */
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\n' || buf[i] == '\r')
			buf[i] = ' ';
	buf[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, buf, n);
	(void)w;
}

void gw_log_write(int level, const char *component, const char *fmt, ...)
{
	char buf[2048];
	int n = stamp(buf, sizeof buf);
	n += snprintf(buf + n, sizeof buf - (size_t)n, "level=%s comp=%s ",
		      level_names[level < 0 || level > 3 ? 3 : level], component);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
	va_end(ap);
	if (m > 0)
		n += m;
	write_line(buf, (size_t)n, sizeof buf);
}

void gw_log_access(const char *line, int len)
{
	char buf[2048];
	if (!gw_log_access_enabled)
		return;
	int n = stamp(buf, sizeof buf);
	n += snprintf(buf + n, sizeof buf - (size_t)n, "level=info comp=access %.*s", len, line);
	write_line(buf, (size_t)n, sizeof buf);
}
