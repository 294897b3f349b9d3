/*
 * provider: one log macro family. One line per record on stderr, key=value style:
 *   2026-11-22T03:04:05.678Z level=info comp=server msg="..."
 * The level check happens before the arguments are evaluated. Never pass secrets (API keys,
 * wallet keys, passphrases) to these macros. Thread-safe (one fprintf per record).
 */
#ifndef PV_LOG_H
#define PV_LOG_H

enum pv_log_level { PV_LOG_DEBUG = 0, PV_LOG_INFO, PV_LOG_WARN, PV_LOG_ERROR };

/* Current threshold; records below it are dropped. Set once at start-up. */
extern int pv_log_threshold;

/* Parse "debug|info|warn|error" into a level. Returns 0 or -1 for an unknown name. */
int pv_log_level_parse(const char *name, int *level);

/* Write one record (use the macros). */
void pv_log_write(int level, const char *comp, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define pv_log_at(lvl, comp, ...)                                                                  \
	do {                                                                                       \
		if ((lvl) >= pv_log_threshold)                                                     \
			pv_log_write((lvl), (comp), __VA_ARGS__);                                  \
	} while (0)
#define pv_log_debug(comp, ...) pv_log_at(PV_LOG_DEBUG, comp, __VA_ARGS__)
#define pv_log_info(comp, ...) pv_log_at(PV_LOG_INFO, comp, __VA_ARGS__)
#define pv_log_warn(comp, ...) pv_log_at(PV_LOG_WARN, comp, __VA_ARGS__)
#define pv_log_error(comp, ...) pv_log_at(PV_LOG_ERROR, comp, __VA_ARGS__)

#endif
