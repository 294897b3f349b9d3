/* morgatectl messages (ctl_msg.h). */
#include "ctl_msg.h"

#include <stdarg.h>
#include <stdio.h>

int ctl_say(int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("morgatectl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return rc;
}

int ctl_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("morgatectl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs(" (see 'morgatectl --help')\n", stderr);
	va_end(ap);
	return 2;
}
