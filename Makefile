# morgate: one non-recursive GNU make for every binary, library, test, fuzzer and benchmark.
#
#   make              build (debug) into build/debug/
#   make test         set up dependencies, build, run unit + integration tests and fuzz replays
#   make asan         the same suite under ASan+UBSan (build/asan/)
#   make fuzz-smoke   build libFuzzer targets (build/fuzz/) and run each briefly
#   make bench        benchmarks (build/release/), figures printed side by side
#   make run          set up and run the whole local marketplace (chain, provider, gateway)
#   make lint, format, format-check, install, clean
#
# Sources are discovered: a new router-core/src/*.c joins librouter-core, a new
# tests/unit/test_*.c becomes a cmocka binary, a new tests/fuzz/fuzz_*.c a fuzz target and a
# corpus replayer, a new tests/bench/bench_*.c a benchmark. Flags live in mk/flags.mk.

MODE ?= debug
V ?= 0
Q := $(if $(filter 1,$(V)),,@)
B := build/$(MODE)

include mk/flags.mk

.DEFAULT_GOAL := all
.SUFFIXES:
.DELETE_ON_ERROR:
.SECONDARY:

# ---- sources ----------------------------------------------------------------------------------
KS_SRC := $(wildcard keystore/src/*.c)
RC_SRC := $(wildcard router-core/src/*.c)
CTL_SRC := $(wildcard keystore/ctl/*.c)
GW_SRC := $(filter-out gateway/main.c,$(wildcard gateway/*.c))
GW_MAIN := $(wildcard gateway/main.c)
PV_SRC := $(filter-out provider/main.c,$(wildcard provider/*.c))
PV_MAIN := $(wildcard provider/main.c)
SUPPORT_SRC := $(filter-out tests/support/bin_%.c,$(wildcard tests/support/*.c))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
MIGRATIONS := $(sort $(wildcard migrations/[0-9][0-9][0-9][0-9]_*.sql))

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

KS_OBJ := $(call obj,$(KS_SRC)) $(B)/obj/gen/ks_migrations.o
RC_OBJ := $(call obj,$(RC_SRC))
CTL_OBJ := $(call obj,$(CTL_SRC))
GW_OBJ := $(call obj,$(GW_SRC))
PV_OBJ := $(call obj,$(PV_SRC))
SUPPORT_OBJ := $(call obj,$(SUPPORT_SRC))

LIBKS := $(B)/lib/libkeystore.a
LIBRC := $(B)/lib/librouter-core.a
LIBGW := $(B)/lib/libgateway.a
LIBPV := $(B)/lib/libprovider.a
MORGATECTL := $(B)/bin/morgatectl
MORGATE := $(B)/bin/morgate
MORGATE_PROVIDER := $(B)/bin/morgate-provider

UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
FUZZ_REPLAY_BIN := $(patsubst tests/fuzz/%.c,$(B)/fuzz/replay_%,$(FUZZ_SRC))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRC))
BENCH_BIN := $(patsubst tests/bench/%.c,$(B)/bench/%,$(BENCH_SRC))
SUPPORT_BIN := $(patsubst tests/support/bin_%.c,$(B)/tests/%,$(wildcard tests/support/bin_*.c))

BINS := $(MORGATECTL) $(if $(GW_MAIN),$(MORGATE)) $(if $(PV_MAIN),$(MORGATE_PROVIDER))
INCLUDES := -Ikeystore/include -Irouter-core/include -Igateway -Iprovider -Itests/support -I$(B)/gen

# ---- top-level targets --------------------------------------------------------------------------
.PHONY: all deps test asan check fuzz fuzz-smoke bench run lint format format-check install clean \
	build-tests

all: $(BINS)

deps:
	@scripts/deps

ifeq ($(MODE),fuzz)
build-tests: $(FUZZ_BIN)
else
build-tests: $(BINS) $(UNIT_BIN) $(FUZZ_REPLAY_BIN) $(SUPPORT_BIN) $(BENCH_BIN)
endif

test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) MODE=$(MODE) build-tests
	@tests/run $(B)

asan: deps
	@$(MAKE) --no-print-directory -j$(JOBS) MODE=asan build-tests
	@tests/run build/asan

check: deps
	@$(MAKE) --no-print-directory test
	@$(MAKE) --no-print-directory asan

fuzz: deps
	@$(MAKE) --no-print-directory -j$(JOBS) MODE=fuzz build-tests

fuzz-smoke: fuzz
	@scripts/fuzz-smoke build/fuzz $${FUZZ_SECONDS:-10}

bench: deps
	@$(MAKE) --no-print-directory -j$(JOBS) MODE=release build-tests
	@scripts/bench build/release

run: deps
	@$(MAKE) --no-print-directory -j$(JOBS) MODE=release all
	@scripts/run build/release

lint:
	clang-tidy --quiet $(KS_SRC) $(RC_SRC) $(CTL_SRC) -- $(INCLUDES) $(BASE_CFLAGS)
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
		$(INCLUDES) keystore router-core

FORMAT_FILES = $(shell git ls-files '*.c' '*.h')
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

PREFIX ?= /usr/local
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/morgate/migrations
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(MIGRATIONS) $(DESTDIR)$(PREFIX)/share/morgate/migrations/

clean:
	rm -rf build

# ---- libraries and binaries ---------------------------------------------------------------------
$(LIBKS): $(KS_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

$(LIBRC): $(RC_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

$(LIBGW): $(GW_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

$(LIBPV): $(PV_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

# Order matters for static libraries: users before what they use.
LINK_LIBS := $(LIBGW) $(LIBPV) $(LIBKS) $(LIBRC)

$(MORGATECTL): $(CTL_OBJ) $(LINK_LIBS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(CTL_OBJ) $(LINK_LIBS) $(LDLIBS)

$(MORGATE): $(B)/obj/gateway/main.o $(LINK_LIBS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

$(MORGATE_PROVIDER): $(B)/obj/provider/main.o $(LINK_LIBS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

# router-core tests, fuzzers and benchmarks link router-core alone, so the library is testable on
# its own (and builds while another library is mid-change).
$(B)/tests/test_rc_%: $(B)/obj/tests/unit/test_rc_%.o $(SUPPORT_OBJ) $(LIBRC)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(SUPPORT_OBJ) $(LIBRC) $(LDLIBS) $(CMOCKA_LIBS)

$(B)/fuzz/replay_fuzz_rc_%: $(B)/obj/tests/fuzz/fuzz_rc_%.o $(B)/obj/tests/fuzz/replay_main.o $(LIBRC)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(B)/obj/tests/fuzz/replay_main.o $(LIBRC) $(LDLIBS)

$(B)/fuzz/fuzz_rc_%: $(B)/obj/tests/fuzz/fuzz_rc_%.o $(LIBRC)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(LIBRC) $(LDLIBS)

$(B)/bench/bench_rc_%: $(B)/obj/tests/bench/bench_rc_%.o $(SUPPORT_OBJ) $(LIBRC)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(SUPPORT_OBJ) $(LIBRC) $(LDLIBS)

$(B)/tests/test_%: $(B)/obj/tests/unit/test_%.o $(SUPPORT_OBJ) $(LINK_LIBS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(SUPPORT_OBJ) $(LINK_LIBS) $(LDLIBS) $(CMOCKA_LIBS)

$(B)/tests/%: $(B)/obj/tests/support/bin_%.o $(LINK_LIBS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

$(B)/fuzz/replay_%: $(B)/obj/tests/fuzz/%.o $(B)/obj/tests/fuzz/replay_main.o $(LINK_LIBS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(B)/obj/tests/fuzz/replay_main.o $(LINK_LIBS) $(LDLIBS)

$(B)/fuzz/fuzz_%: $(B)/obj/tests/fuzz/fuzz_%.o $(LINK_LIBS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(LINK_LIBS) $(LDLIBS)

$(B)/bench/bench_%: $(B)/obj/tests/bench/bench_%.o $(SUPPORT_OBJ) $(LINK_LIBS)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(SUPPORT_OBJ) $(LINK_LIBS) $(LDLIBS)

# Migrations are embedded in the binaries: the store applies and checksums them without files.
$(B)/gen/ks_migrations.c: $(MIGRATIONS) scripts/embed-migrations
	@mkdir -p $(@D)
	scripts/embed-migrations $(MIGRATIONS) >$@

$(B)/obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(INCLUDES) -Ikeystore/src $(CFLAGS) -c -o $@ $<

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(INCLUDES) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
