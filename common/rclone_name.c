#include "rclone_name.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

#define QUOTE "\xE2\x80\x9B"           /* ‛ U+201B */
#define FULLWIDTH_SLASH "\xEF\xBC\x8F" /* ／ U+FF0F */
#define FULLWIDTH_DOT "\xEF\xBC\x8E"   /* ． U+FF0E */
#define RUNE_QUOTE 0x201Bu
#define RUNE_SLASH 0xFF0Fu
#define RUNE_SYMBOL_NUL 0x2400u        /* ␀; U+2401-U+241F stand for 0x01-0x1F */
#define RUNE_SYMBOL_DEL 0x2421u        /* ␡ */

static void put_bytes(char *out, size_t *o, const char *bytes, size_t len)
{
    memcpy(out + *o, bytes, len);
    *o += len;
}

static bool name_is(const char *name, size_t len, const char *literal)
{
    return len == strlen(literal) && memcmp(name, literal, len) == 0;
}

static size_t put_whole(char *out, const char *literal)
{
    size_t len = strlen(literal);
    memcpy(out, literal, len);
    return len;
}

/* lib/encoder's Base.Decode. Never longer than its input; may hold NUL and '/'. */
static size_t base_decode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    if (name_is(in, n, FULLWIDTH_DOT))
        return put_whole(out, ".");
    if (name_is(in, n, FULLWIDTH_DOT FULLWIDTH_DOT))
        return put_whole(out, "..");
    if (name_is(in, n, QUOTE FULLWIDTH_DOT))
        return put_whole(out, FULLWIDTH_DOT);
    if (name_is(in, n, QUOTE FULLWIDTH_DOT QUOTE FULLWIDTH_DOT))
        return put_whole(out, FULLWIDTH_DOT FULLWIDTH_DOT);

    bool unquote_next = false;
    for (size_t i = 0; i < n;) {
        uint32_t r;
        size_t len = utf8_decode_go((const unsigned char *)in + i, n - i, &r);
        bool unquote = unquote_next;
        unquote_next = false;
        if (r == RUNE_SYMBOL_NUL && !unquote) {
            out[o++] = '\0';
        } else if (r == RUNE_QUOTE && !unquote) {
            unquote_next = true;
        } else if (r == RUNE_SLASH && !unquote) {
            out[o++] = '/';
        } else {
            /* A quote before anything it does not quote stands for itself. */
            if (unquote && r != RUNE_SYMBOL_NUL && r != RUNE_QUOTE && r != RUNE_SLASH)
                put_bytes(out, &o, QUOTE, 3);
            put_bytes(out, &o, in + i, len);
        }
        i += len;
    }
    if (unquote_next)
        put_bytes(out, &o, QUOTE, 3);
    return o;
}

/* lib/encoder's Standard.Encode, then JSON's U+FFFD for invalid bytes. At most 3n + 12. */
static size_t standard_encode_json(const char *in, size_t n, char *out)
{
    size_t o = 0;
    if (name_is(in, n, "."))
        return put_whole(out, FULLWIDTH_DOT);
    if (name_is(in, n, ".."))
        return put_whole(out, FULLWIDTH_DOT FULLWIDTH_DOT);
    if (name_is(in, n, FULLWIDTH_DOT))
        return put_whole(out, QUOTE FULLWIDTH_DOT);
    if (name_is(in, n, FULLWIDTH_DOT FULLWIDTH_DOT))
        return put_whole(out, QUOTE FULLWIDTH_DOT QUOTE FULLWIDTH_DOT);

    for (size_t i = 0; i < n;) {
        uint32_t r;
        size_t len = utf8_decode_go((const unsigned char *)in + i, n - i, &r);
        if (r == 0) {
            o += utf8_encode(RUNE_SYMBOL_NUL, out + o);
        } else if (r >= 0x01 && r <= 0x1F) {
            o += utf8_encode(RUNE_SYMBOL_NUL + r, out + o);
        } else if (r == 0x7F) {
            o += utf8_encode(RUNE_SYMBOL_DEL, out + o);
        } else if (r == '/') {
            put_bytes(out, &o, FULLWIDTH_SLASH, 3);
        } else if (r == UTF8_RUNE_ERROR && len == 1) {
            o += utf8_encode(UTF8_RUNE_ERROR, out + o);
        } else {
            /* The characters that stand for others are quoted to stand for themselves. */
            if (r == RUNE_QUOTE || r == RUNE_SLASH || r == RUNE_SYMBOL_DEL ||
                (r >= RUNE_SYMBOL_NUL && r <= RUNE_SYMBOL_NUL + 0x1F))
                put_bytes(out, &o, QUOTE, 3);
            put_bytes(out, &o, in + i, len);
        }
        i += len;
    }
    return o;
}

const char *rclone_name_of(const char *name, size_t len, char *buf, size_t *out_len)
{
    /* Printable ASCII, which most media names are, is never rewritten. */
    size_t i = 0;
    while (i < len && (unsigned char)name[i] >= 0x20 && (unsigned char)name[i] < 0x7F)
        i++;
    if (i == len) {
        *out_len = len;
        return name;
    }
    char decoded[NAME_MAX + 1];
    *out_len = standard_encode_json(decoded, base_decode(name, len, decoded), buf);
    return buf;
}

int rclone_name_disk_path(const char *root, const char *path, char *full, size_t len)
{
    /* U+2400..U+243F (control-byte symbols), U+201B (rclone's quote), U+FFFD (invalid
     * UTF-8): the file's real name cannot be told from these. */
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        if ((p[0] == 0xE2 && p[1] == 0x90) || (p[0] == 0xE2 && p[1] == 0x80 && p[2] == 0x9B) ||
            (p[0] == 0xEF && p[1] == 0xBF && p[2] == 0xBD))
            return RCLONE_NAME_ENCODED;
    if ((size_t)snprintf(full, len, "%s/%s", root, path) >= len)
        return -ENAMETOOLONG;
    return 0;
}
