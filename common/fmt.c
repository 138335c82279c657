#include "fmt.h"

#include <stdio.h>
#include <time.h>

const char *const fmt_binary_units[7] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };

int fmt_scale(double v, int max_unit, bool carry, double *scaled)
{
	int u = 0;
	while (v >= 1024 && u < max_unit) {
		v /= 1024;
		u++;
	}
	if (carry && u > 0 && u < max_unit && v >= 1023.95) {
		v = 1.0;
		u++;
	}
	*scaled = v;
	return u;
}

void fmt_bytes(int64_t bytes, char *out, size_t len)
{
	if (bytes < 1024) {
		snprintf(out, len, "%lld B", (long long)(bytes < 0 ? 0 : bytes));
		return;
	}
	double v;
	int u = fmt_scale((double)bytes, 6, false, &v);
	snprintf(out, len, "%.1f %s", v, fmt_binary_units[u]);
}

void fmt_duration(int64_t ms, char *out, size_t len)
{
	long long s = (long long)((ms < 0 ? 0 : ms) + 500) / 1000;
	if (s < 60)
		snprintf(out, len, "%lld s", s);
	else if (s < 3600)
		snprintf(out, len, "%lld min %lld s", s / 60, s % 60);
	else
		snprintf(out, len, "%lld h %lld min", s / 3600, s / 60 % 60);
}

void fmt_utc(int64_t ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(out, len, "%lld", (long long)(ms / 1000));
}
