/*
 * morgatectl messages: one line on stderr, "morgatectl: ..." (usage errors point at --help).
 */
#ifndef CTL_MSG_H
#define CTL_MSG_H

/* Print the message and return rc (the command's exit status). */
int ctl_say(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A usage error: the message and a pointer to --help; returns 2 (usage). */
int ctl_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
