/*
 * gateway logging: one line per record, key=value, on stderr.
 *
 * gw_log_{debug,info,warn,error}(component, fmt, ...) check the level before evaluating their
 * arguments. Records carry the request id when the caller puts one in the format ("rid=%s").
 * Never pass a key, an Authorization header or an upstream key to these macros.
 * Thread-safe: each record is formatted into a local buffer and written with one write(2).
 */
#ifndef GW_LOG_H
#define GW_LOG_H

enum gw_log_level { GW_LOG_DEBUG = 0, GW_LOG_INFO = 1, GW_LOG_WARN = 2, GW_LOG_ERROR = 3, GW_LOG_OFF = 4 };

extern int gw_log_min_level; /* records below this level are skipped */

/* "debug", "info", "warn", "error", "off" -> level; -1 when unknown. */
int gw_log_parse_level(const char *s);

/* Write one record; use the macros instead. */
void gw_log_write(int level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Write one access-log line verbatim (already formatted, no newline). */
void gw_log_access(const char *line, int len);

extern int gw_log_access_enabled;

#define GW_LOG_AT(lvl, comp, ...)                                                                  \
	do {                                                                                       \
		if ((lvl) >= gw_log_min_level)                                                     \
			gw_log_write((lvl), (comp), __VA_ARGS__);                                  \
	} while (0)
#define gw_log_debug(comp, ...) GW_LOG_AT(GW_LOG_DEBUG, comp, __VA_ARGS__)
#define gw_log_info(comp, ...) GW_LOG_AT(GW_LOG_INFO, comp, __VA_ARGS__)
#define gw_log_warn(comp, ...) GW_LOG_AT(GW_LOG_WARN, comp, __VA_ARGS__)
#define gw_log_error(comp, ...) GW_LOG_AT(GW_LOG_ERROR, comp, __VA_ARGS__)

#endif
