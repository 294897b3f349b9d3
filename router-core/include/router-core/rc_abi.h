/*
 * router-core: the Solidity contract ABI (calldata, return data, revert data).
 *
 * Two halves:
 *   - types: a type string such as "(bytes32[],(address,bytes32,uint256,uint256,uint128,uint128)[],
 *     uint256)" is parsed once into a struct rc_abi_type tree (keep it around for hot paths);
 *   - values: a struct rc_abi_value tree mirrors the type. To encode, the caller fills values
 *     (usually on the stack) with the rc_abi_set_* helpers; decoding returns a tree in one heap
 *     block whose bytes/string values point into the caller's input (zero-copy).
 *
 *     struct rc_abi_value a[3];
 *     rc_abi_set_address(&a[0], user);
 *     rc_abi_set_u256(&a[1], &amount);
 *     rc_abi_set_bool(&a[2], false);
 *     rc = rc_abi_encode_call(RC_STR_LIT("f(address,uint256,bool)"), a, 3, &buf, &err);
 *
 * The root type of calldata arguments and of return data is a tuple: decode a getter's reply
 * with "(uint256)" or "(bytes32[],uint256)", not "uint256[]" (a bare dynamic type is laid out
 * without the leading offset word).
 *
 * Supported: uint8..uint256, int8..int256 (multiples of 8; "uint"/"int" mean 256), address, bool,
 * bytes1..bytes32, bytes, string, T[] and T[k] of any of these, and tuples "(T1,T2,...)". Not
 * supported: fixed-point types, function pointers, empty tuples "()" and zero-length arrays T[0]
 * (Solidity rejects those too).
 *
 * Decoding is written for hostile input (an eth_call reply is only as honest as the RPC node):
 * every offset and length is bounds-checked against the data without overflow, static words must
 * be clean the way Solidity's decoder requires (no dirty high bits in uintN/address, sign-extended
 * intN, bool 0/1, zero tail in bytesN), and offset aliasing cannot blow up the output: a decode
 * yields at most (len/32 + 1) x (type depth + 1) values, a bound no canonical encoding reaches.
 * Cost is linear in the output (255 Bid structs decode in microseconds).
 *
 * Thread-safety: no global state; a parsed type is immutable and may be shared between threads.
 */
#ifndef RC_ABI_H
#define RC_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <router-core/rc_buf.h>
#include <router-core/rc_common.h>
#include <router-core/rc_hex.h>

#define RC_ABI_MAX_DEPTH 16 /* nesting of tuples/arrays in a type string */

enum rc_abi_kind {
	RC_ABI_UINT = 1,
	RC_ABI_INT,
	RC_ABI_ADDRESS,
	RC_ABI_BOOL,
	RC_ABI_FIXED_BYTES, /* bytes1..bytes32 */
	RC_ABI_BYTES,
	RC_ABI_STRING,
	RC_ABI_ARRAY,       /* T[] */
	RC_ABI_FIXED_ARRAY, /* T[k] */
	RC_ABI_TUPLE,
};

/* A parsed type; read-only for callers. */
struct rc_abi_type {
	enum rc_abi_kind kind;
	unsigned size;                   /* UINT/INT: bits; FIXED_BYTES: bytes; otherwise 0 */
	size_t count;                    /* FIXED_ARRAY: k; TUPLE: members; otherwise 0 */
	const struct rc_abi_type *child; /* arrays: element type; TUPLE: first member */
	const struct rc_abi_type *next;  /* next member of the enclosing tuple, or NULL */
	bool dynamic;   /* encoded out of line (bytes, string, T[], or containing one) */
	size_t head;    /* bytes in the head of the enclosing tuple: 32 if dynamic */
	unsigned depth; /* 1 for a leaf; 1 + deepest child otherwise */
};

/*
 * Parse a type string (len bytes at s, no spaces) into a new tree, owned out: free with
 * rc_abi_type_free(). A function signature's argument list "(address,uint256)" is a tuple type.
 * RC_OK, RC_EPARSE (err gets the offset in s and a short text) or RC_ENOMEM.
 */
int rc_abi_type_parse(const char *s, size_t len, struct rc_abi_type **out, struct rc_errinfo *err);

/* Free a tree from rc_abi_type_parse(). NULL is a no-op. */
void rc_abi_type_free(struct rc_abi_type *t);

/*
 * One value. For the fixed-size kinds (UINT, INT, ADDRESS, BOOL, FIXED_BYTES) the 32-byte ABI
 * word itself is stored (big-endian, sign-extended for INT, address right-aligned, bytesN
 * left-aligned). BYTES and STRING borrow their bytes. TUPLE, ARRAY and FIXED_ARRAY hold their
 * members or elements as a contiguous array. Plain data; the rc_abi_set_* helpers fill it.
 */
struct rc_abi_value {
	enum rc_abi_kind kind;
	union {
		uint8_t word[32];
		struct {
			const uint8_t *ptr; /* borrowed; for STRING not NUL-terminated */
			size_t len;
		} bytes;
		struct {
			const struct rc_abi_value
			        *items; /* borrowed (encode) / in the decode block */
			size_t count;
		} list;
	} u;
};

/* Setters for encoding: each overwrites *v completely. Never fail; range checks happen when the
 * value is encoded against a type (a uint8 given 300 gives RC_ERANGE there). */
void rc_abi_set_uint(struct rc_abi_value *v, uint64_t x);
void rc_abi_set_u256(struct rc_abi_value *v, const struct rc_u256 *x);
void rc_abi_set_int(struct rc_abi_value *v, int64_t x);
void rc_abi_set_address(struct rc_abi_value *v, const uint8_t addr[20]);
void rc_abi_set_bool(struct rc_abi_value *v, bool b);
/* bytesN: n <= 32 bytes, left-aligned and zero-padded (n > 32 is truncated to 32). */
void rc_abi_set_fixed_bytes(struct rc_abi_value *v, const void *p, size_t n);
/* bytes / string: p is borrowed until the value is encoded. */
void rc_abi_set_bytes(struct rc_abi_value *v, const void *p, size_t n);
void rc_abi_set_string(struct rc_abi_value *v, const char *p, size_t n);
/* Tuples and arrays (both T[] and T[k]); items borrowed until the value is encoded. */
void rc_abi_set_tuple(struct rc_abi_value *v, const struct rc_abi_value *items, size_t count);
void rc_abi_set_array(struct rc_abi_value *v, const struct rc_abi_value *items, size_t count);

/*
 * Getters for decoded (or set) values. RC_OK, RC_EINVAL if v is not of a fitting kind, RC_ERANGE
 * if the number does not fit the C type.
 */
int rc_abi_get_u256(const struct rc_abi_value *v, struct rc_u256 *out); /* UINT */
int rc_abi_get_uint(const struct rc_abi_value *v, uint64_t *out);       /* UINT */
int rc_abi_get_int(const struct rc_abi_value *v, int64_t *out);         /* INT */
int rc_abi_get_address(const struct rc_abi_value *v, uint8_t out[20]);  /* ADDRESS */
int rc_abi_get_bool(const struct rc_abi_value *v, bool *out);           /* BOOL */

/*
 * Size in bytes of the encoding of v as type t. RC_OK; RC_EINVAL when the value tree does not
 * match the type (kind, member or element count); RC_ERANGE when a number does not fit its
 * type (e.g. 300 as uint8, a bool word that is not 0/1).
 */
int rc_abi_encoded_size(const struct rc_abi_type *t, const struct rc_abi_value *v, size_t *size);

/*
 * Encode v as type t (standard, canonical ABI encoding: heads, then tails in order) into
 * out[0..cap). *outlen gets the size. Errors as rc_abi_encoded_size(), plus RC_ERANGE when cap
 * is too small (nothing meaningful written).
 */
int rc_abi_encode(const struct rc_abi_type *t, const struct rc_abi_value *v, uint8_t *out,
                  size_t cap, size_t *outlen);

/* First 4 bytes of keccak256 of a canonical signature, e.g. "transfer(address,uint256)". */
void rc_abi_selector(const char *sig, size_t len, uint8_t out[4]);

/*
 * Calldata for a call: appends selector(sig) || encode((T1,...,Tn), args) to out (an rc_buf the
 * caller owns). sig is "name(T1,...,Tn)", or "name()" with nargs 0 (selector only). RC_OK,
 * RC_EPARSE (bad signature; err says where), RC_EINVAL / RC_ERANGE (args do not fit the types) or
 * RC_ENOMEM; on error out is unchanged.
 */
int rc_abi_encode_call(struct rc_str sig, const struct rc_abi_value *args, size_t nargs,
                       struct rc_buf *out, struct rc_errinfo *err);

/* Decode flags. */
#define RC_ABI_STRICT_PADDING 1u /* also require zero padding after bytes/string contents */

/*
 * Decode len bytes at data as type t into a new value tree, owned out: free with
 * rc_abi_value_free(). BYTES/STRING values point into data, which must outlive the tree.
 * Trailing bytes after the encoding are ignored (contracts decode that way too, §3.7). RC_OK,
 * RC_EPARSE (err gets the offset and a short text: out-of-range offset or length, dirty word,
 * too many values) or RC_ENOMEM.
 */
int rc_abi_decode(const struct rc_abi_type *t, const uint8_t *data, size_t len, unsigned flags,
                  struct rc_abi_value **out, struct rc_errinfo *err);

/* Free a tree from rc_abi_decode(). NULL is a no-op. */
void rc_abi_value_free(struct rc_abi_value *v);

#endif
