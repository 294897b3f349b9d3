/* The migrations embedded at build time from migrations/NNNN_name.sql (scripts/embed-migrations). */
#ifndef KS_MIGRATIONS_H
#define KS_MIGRATIONS_H

struct ks_migration {
	int version;      /* NNNN, strictly increasing from 1 */
	const char *name; /* the part of the file name after NNNN_ */
	const char *sql;  /* the file's text, applied inside one transaction */
};

extern const struct ks_migration ks_migrations[];
extern const int ks_migrations_count;

#endif
