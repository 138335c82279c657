/*
 * Numbers as people read them in cplow's messages: bytes in binary units, durations, UTC times.
 * Each output is one fixed format, so a message made with it reads the same wherever it is
 * made (the notifier's texts, cplow-inspect, import-cloudplow, the progress line).
 */
#ifndef CPLOW_FMT_H
#define CPLOW_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB": fmt_scale's units by index. */
extern const char *const fmt_binary_units[7];

/*
 * v in binary units: returns the unit's index (0 = bytes ... at most max_unit) and *scaled.
 * With carry, a value that "%.1f" would print as "1024.0" moves on to the next unit ("1.0").
 */
int fmt_scale(double v, int max_unit, bool carry, double *scaled);

/* "512 B", "1.5 KiB" ... "8.0 EiB" (one decimal from KiB on); below 0 reads "0 B". */
void fmt_bytes(int64_t bytes, char *out, size_t len);

/* "42 s", "3 min 5 s", "2 h 10 min" (rounded to the second); below 0 reads "0 s". */
void fmt_duration(int64_t ms, char *out, size_t len);

/* Unix milliseconds as "2024-12-19 21:20:00 UTC"; the seconds as a number if that fails. */
void fmt_utc(int64_t ms, char *out, size_t len);

#endif
