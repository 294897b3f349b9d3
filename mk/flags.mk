# Compiler and linker flags per build mode (debug, release, asan, fuzz). Included by Makefile.

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PKGS := libmicrohttpd jansson sqlite3 libcurl libsodium hiredis libsecp256k1 nettle libcrypto

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla \
	-Wpointer-arith -Wnull-dereference -Wundef -Wno-unused-parameter
ifeq ($(CI),true)
WARN += -Werror
endif

BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -fno-strict-aliasing -fstack-protector-strong $(WARN)
CPPFLAGS := $(PKG_CFLAGS)
LDLIBS := $(PKG_LIBS) -lpthread -lm

ifeq ($(MODE),release)
CC ?= cc
CFLAGS := $(BASE_CFLAGS) -O2 -g -DNDEBUG -D_FORTIFY_SOURCE=2
else ifeq ($(MODE),asan)
CFLAGS := $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=all
LDFLAGS := -fsanitize=address,undefined
else ifeq ($(MODE),fuzz)
CC := clang
CFLAGS := $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=all -DMORGATE_FUZZING
LDFLAGS := -fsanitize=address,undefined
else ifeq ($(MODE),debug)
CFLAGS := $(BASE_CFLAGS) -O1 -g
else
$(error unknown MODE '$(MODE)': use debug, release, asan or fuzz)
endif
