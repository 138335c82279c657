/*
 * UTF-8 as Go reads it, for code that must see names the way rclone (a Go program) does.
 */
#ifndef CPLOW_UTF8_H
#define CPLOW_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define UTF8_RUNE_ERROR 0xFFFDu

/*
 * One sequence as Go's utf8.DecodeRune reads it: an invalid byte (bad lead, bad or missing
 * continuation, overlong, surrogate, past U+10FFFF) is a sequence of one byte read as
 * UTF8_RUNE_ERROR (a real U+FFFD is three bytes long). n >= 1. Returns the sequence's length.
 */
size_t utf8_decode_go(const unsigned char *s, size_t n, uint32_t *rune);

/* Writes rune r (at most U+10FFFF, no surrogate) into out, which has room for 4 bytes; returns
 * the bytes written. */
size_t utf8_encode(uint32_t r, char *out);

/* n, stepped back to the start of the UTF-8 sequence s[n] is in: the longest prefix of s, at
 * most n bytes, that does not cut a character. s[n] must be readable (n < strlen(s), or the
 * terminating NUL). */
size_t utf8_cut(const char *s, size_t n);

#endif
