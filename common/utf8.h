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

#endif
