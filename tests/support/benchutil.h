/*
 * Helpers shared by the per-chunk benchmarks (bench_rc_morrpc, bench_rc_link): a monotonic
 * clock, best-of-N timing, a fatal check, and an OpenAI streaming chunk of a given size.
 * Header-only: benchmarks include it, nothing else links it.
 */
#ifndef BENCHUTIL_H
#define BENCHUTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TU_BENCH_ROUNDS 5

static inline double tu_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Best-of-TU_BENCH_ROUNDS time of one execution of body, in microseconds, into result. */
#define TU_MEASURE(result, iters, body)                                                            \
	do {                                                                                       \
		double best_ = 1e30;                                                               \
		for (int r_ = 0; r_ < TU_BENCH_ROUNDS; r_++) {                                     \
			double t0_ = tu_now_us();                                                  \
			for (int i_ = 0; i_ < (iters); i_++) {                                     \
				body;                                                              \
			}                                                                          \
			double t_ = (tu_now_us() - t0_) / (iters);                                 \
			if (t_ < best_)                                                            \
				best_ = t_;                                                        \
		}                                                                                  \
		(result) = best_;                                                                  \
	} while (0)

/* A benchmark whose setup fails has nothing to measure: say what and exit. */
static inline void tu_check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "%s: '%s' failed\n", program_invocation_short_name, what);
		exit(1);
	}
}

/* An OpenAI streaming chunk of exactly len bytes (len >= 90), as a provider encrypts it. */
static inline void tu_make_chunk(char *out, size_t len)
{
	static const char head[] = "{\"choices\":[{\"delta\":{\"content\":\"";
	static const char tail[] = "\"},\"index\":0}],\"object\":\"chat.completion.chunk\"}";
	size_t fill = len - (sizeof head - 1) - (sizeof tail - 1);
	memcpy(out, head, sizeof head - 1);
	for (size_t i = 0; i < fill; i++)
		out[sizeof head - 1 + i] = "lorem ipsum dolor sit amet "[i % 27];
	memcpy(out + sizeof head - 1 + fill, tail, sizeof tail - 1);
}

#endif
