/* Fuzz targets: each checks its own invariants and abort()s when one fails.
 * Built as libFuzzer programs by ./configure --enable-fuzzing, and replayed
 * over tests/fuzz/ (corpus and crashers) by tests/check_fuzz in every build. */
#ifndef SLHOOKD_FUZZ_H
#define SLHOOKD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int fuzz_event(const uint8_t *data, size_t size);
int fuzz_cfg(const uint8_t *data, size_t size);

/* libFuzzer's entry points (defined when built with -DFUZZ_ENTRY). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                               \
        do {                                                                            \
                if (!(cond)) {                                                          \
                        fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,      \
                                __LINE__, #cond);                                       \
                        abort();                                                        \
                }                                                                       \
        } while (0)

#endif
