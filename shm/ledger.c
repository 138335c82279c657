#include "ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pwd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

void (*ledger_fault_hook)(enum ledger_fault_point point);

#define FAULT(p)                          \
	do {                              \
		if (ledger_fault_hook)    \
			ledger_fault_hook(p); \
	} while (0)

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

const char *ledger_strerror(int err)
{
	switch (err) {
	case LEDGER_OK: return "ok";
	case LEDGER_ERR_SYS: return strerror(errno);
	case LEDGER_ERR_LAYOUT: return "shared ledger has another layout (built by another cplow version?)";
	case LEDGER_ERR_FULL: return "ledger table is full";
	case LEDGER_ERR_NAME: return "uploader or account name is empty or too long";
	case LEDGER_ERR_NOTFOUND: return "no such ledger row or slot";
	case LEDGER_ERR_READONLY: return "ledger is attached read-only";
	case LEDGER_ERR_STUCK: return "ledger is stuck: no consistent copy in time";
	case LEDGER_ERR_BROKEN: return "ledger lock is unrecoverable";
	case LEDGER_ERR_EXISTS: return "shared ledger already exists";
	case LEDGER_ERR_INVALID: return "invalid argument";
	case LEDGER_ERR_FOREIGN:
		return "shared ledger belongs to another user, or other users may open it";
	}
	return "unknown ledger error";
}

int64_t ledger_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

#define FNV_BASIS 0xcbf29ce484222325ULL

/* Any change to the shared structs changes this, so an old build refuses a new object. */
static uint32_t layout_hash(void)
{
	const uint64_t facts[] = {
		sizeof(struct ledger_header), sizeof(struct ledger_row), sizeof(struct ledger_usage),
		sizeof(struct ledger_stage), sizeof(struct ledger_intent), sizeof(pthread_mutex_t),
		offsetof(struct ledger_header, lock), offsetof(struct ledger_header, seq),
		offsetof(struct ledger_header, intent), offsetof(struct ledger_row, usage),
		offsetof(struct ledger_usage, ban_cause), offsetof(struct ledger_stage, inflight),
		LEDGER_UPLOADER_MAX, LEDGER_ACCOUNT_MAX, LEDGER_CAUSE_MAX, LEDGER_HOURS,
		LEDGER_INFLIGHT_MAX, offsetof(struct ledger_stage, open_files),
		sizeof(struct ledger_open_file), LEDGER_OPEN_MAX,
	};
	uint64_t h = fnv1a(FNV_BASIS, facts, sizeof(facts));
	return (uint32_t)(h ^ (h >> 32));
}

struct layout {
	size_t index_off, rows_off, stages_off, total;
};

static struct layout layout_of(uint32_t rows, uint32_t slots, uint32_t index_size)
{
	struct layout lo;
	lo.index_off = ALIGN64(sizeof(struct ledger_header));
	lo.rows_off = ALIGN64(lo.index_off + (size_t)index_size * sizeof(uint32_t));
	lo.stages_off = ALIGN64(lo.rows_off + (size_t)rows * sizeof(struct ledger_row));
	lo.total = ALIGN64(lo.stages_off + (size_t)slots * sizeof(struct ledger_stage));
	return lo;
}

static void bind_pointers(struct ledger *l)
{
	struct layout lo = layout_of(l->hdr->row_capacity, l->hdr->slot_capacity,
				     l->hdr->index_size);
	char *base = (char *)l->hdr;
	l->index = (uint32_t *)(base + lo.index_off);
	l->rows = (struct ledger_row *)(base + lo.rows_off);
	l->stages = (struct ledger_stage *)(base + lo.stages_off);
}

int ledger_name_for(const char *config_path, char *out, size_t out_len)
{
	char resolved[PATH_MAX];
	const char *path = config_path;
	if (realpath(config_path, resolved))
		path = resolved;
	uint64_t h = fnv1a(FNV_BASIS, path, strlen(path));
	int n = snprintf(out, out_len, "/cplow-%u-%016llx", (unsigned)geteuid(),
			 (unsigned long long)h);
	if (n < 0 || (size_t)n >= out_len)
		return LEDGER_ERR_NAME;
	return LEDGER_OK;
}

static int copy_name(char *dst, size_t cap, const char *name)
{
	size_t n = strlen(name);
	if (n >= cap || strlen(name) >= sizeof(((struct ledger *)0)->name))
		return LEDGER_ERR_NAME;
	memcpy(dst, name, n + 1);
	return LEDGER_OK;
}

static int layout_for(const struct ledger_options *opt, uint32_t *rows, uint32_t *slots,
		      uint32_t *index_size, struct layout *lo)
{
	struct ledger_options o = opt ? *opt : (struct ledger_options){ 0 };
	*rows = o.row_capacity ? o.row_capacity : LEDGER_DEFAULT_ROWS;
	*slots = o.slot_capacity ? o.slot_capacity : LEDGER_DEFAULT_SLOTS;
	if (*rows > (1u << 24) || *slots > 4096)
		return LEDGER_ERR_INVALID;
	*index_size = 1;
	while (*index_size < *rows * 2)
		*index_size <<= 1;
	*lo = layout_of(*rows, *slots, *index_size);
	return LEDGER_OK;
}

size_t ledger_size_for(const struct ledger_options *opt)
{
	uint32_t rows, slots, index_size;
	struct layout lo;
	return layout_for(opt, &rows, &slots, &index_size, &lo) == LEDGER_OK ? lo.total : 0;
}

int ledger_create(const char *name, const struct ledger_options *opt, struct ledger *out)
{
	struct ledger_options o = opt ? *opt : (struct ledger_options){ 0 };
	uint32_t rows, slots, index_size;
	struct layout lo;
	if (layout_for(&o, &rows, &slots, &index_size, &lo) != LEDGER_OK)
		return LEDGER_ERR_INVALID;

	struct ledger l = { 0 };
	if (copy_name(l.name, sizeof(l.name), name) < 0)
		return LEDGER_ERR_NAME;
	/* Built under a private name and published with link(), which fails if the name is
	 * taken: nobody can attach to a half-made ledger (too small, or without its magic). The
	 * private name is random: one another user could guess (the pid) could be taken first. */
	char tmp_name[96], tmp_path[128], path[128];
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	int fd = -1;
	for (int attempt = 0; fd < 0 && attempt < 8; attempt++) {
		uint64_t nonce;
		if (getrandom(&nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
			nonce = (uint64_t)ledger_now_ms() ^ ((uint64_t)getpid() << 32) ^
				(uint64_t)attempt;
		snprintf(tmp_name, sizeof(tmp_name), "%s.new-%016llx", name,
			 (unsigned long long)nonce);
		snprintf(tmp_path, sizeof(tmp_path), "/dev/shm%s", tmp_name);
		fd = shm_open(tmp_name, O_RDWR | O_CREAT | O_EXCL, 0600);
		if (fd < 0 && errno != EEXIST)
			return LEDGER_ERR_SYS;
	}
	if (fd < 0)
		return LEDGER_ERR_SYS;
	int rc = LEDGER_ERR_SYS, saved = 0;
	pthread_mutexattr_t ma;
	int ma_ready = 0;
	void *map = MAP_FAILED;
	/* The umask may have widened nothing, but an inherited ACL default could: be explicit. */
	if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)lo.total) < 0)
		goto out;
	/* tmpfs hands out pages lazily; reserving them now turns a full /dev/shm into ENOSPC here
	 * instead of SIGBUS in the middle of an upload. */
	int fe = posix_fallocate(fd, 0, (off_t)lo.total);
	if (fe != 0) {
		errno = fe;
		goto out;
	}
	map = mmap(NULL, lo.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		goto out;
	l.hdr = map;
	l.map_size = lo.total;
	l.writable = 1;
	/* No memset: a new shared-memory file reads as zeros, and writing them faulted in every
	 * page of it (~300 at the default capacity, ~5 ms of a start on a small VM). */
	struct ledger_header *h = l.hdr;
	h->version = LEDGER_VERSION;
	h->layout_hash = layout_hash();
	h->total_size = lo.total;
	h->row_capacity = rows;
	h->slot_capacity = slots;
	h->index_size = index_size;
	h->window = o.window;
	h->daily_bytes = o.daily_bytes > 0 ? o.daily_bytes : LEDGER_DAILY_BYTES_DEFAULT;
	h->created_at_ms = ledger_now_ms();
	if ((errno = pthread_mutexattr_init(&ma)) != 0)
		goto out;
	ma_ready = 1;
	/* Default type on purpose: robust error-check and recursive mutexes record owner TIDs,
	 * which misbehave across PID namespaces (a container and its host). */
	if ((errno = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED)) != 0 ||
	    (errno = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST)) != 0 ||
	    (errno = pthread_mutex_init(&h->lock, &ma)) != 0 ||
	    (errno = pthread_mutex_init(&h->flush_lock, &ma)) != 0)
		goto out;
	bind_pointers(&l);
	/* Magic last: an attacher racing the creation sees no magic and refuses, never half a
	 * header. */
	atomic_thread_fence(memory_order_release);
	h->magic = LEDGER_MAGIC;
	if (link(tmp_path, path) < 0) {
		rc = errno == EEXIST ? LEDGER_ERR_EXISTS : LEDGER_ERR_SYS;
		goto out;
	}
	rc = LEDGER_OK;
out:
	saved = errno;
	if (ma_ready)
		pthread_mutexattr_destroy(&ma);
	close(fd);
	shm_unlink(tmp_name);
	if (rc != LEDGER_OK) {
		if (map != MAP_FAILED)
			munmap(map, lo.total);
		errno = saved;
		return rc;
	}
	*out = l;
	return LEDGER_OK;
}

int ledger_attach(const char *name, int writable, struct ledger *out)
{
	struct ledger l = { 0 };
	if (copy_name(l.name, sizeof(l.name), name) < 0)
		return LEDGER_ERR_NAME;
	int fd = shm_open(name, writable ? O_RDWR : O_RDONLY, 0);
	if (fd < 0)
		return LEDGER_ERR_SYS;
	int rc = LEDGER_ERR_SYS;
	struct stat st;
	void *map = MAP_FAILED;
	if (fstat(fd, &st) < 0)
		goto out;
	if (st.st_uid != geteuid() || (st.st_mode & 077)) {
		/* Another user's ledger is not ours to read or trust (the name is predictable: any
		 * local user can create it first), nor is one that other users may open. */
		rc = LEDGER_ERR_FOREIGN;
		errno = EPERM;
		goto out;
	}
	if ((size_t)st.st_size < sizeof(struct ledger_header)) {
		rc = LEDGER_ERR_LAYOUT;
		goto out;
	}
	map = mmap(NULL, (size_t)st.st_size, writable ? PROT_READ | PROT_WRITE : PROT_READ,
		   MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		goto out;
	l.hdr = map;
	l.map_size = (size_t)st.st_size;
	l.writable = writable;
	const struct ledger_header *h = l.hdr;
	if (h->magic != LEDGER_MAGIC || h->version != LEDGER_VERSION ||
	    h->layout_hash != layout_hash() || h->total_size != (uint64_t)st.st_size ||
	    h->index_size < h->row_capacity ||
	    layout_of(h->row_capacity, h->slot_capacity, h->index_size).total != h->total_size) {
		rc = LEDGER_ERR_LAYOUT;
		goto out;
	}
	atomic_thread_fence(memory_order_acquire);
	bind_pointers(&l);
	rc = LEDGER_OK;
out:
	close(fd);
	if (rc != LEDGER_OK) {
		int saved = errno;
		if (map != MAP_FAILED)
			munmap(map, (size_t)st.st_size);
		errno = saved;
		return rc;
	}
	*out = l;
	return LEDGER_OK;
}

void ledger_detach(struct ledger *l)
{
	if (l->hdr)
		munmap(l->hdr, l->map_size);
	memset(l, 0, sizeof(*l));
}

int ledger_unlink(const char *name)
{
	return shm_unlink(name) < 0 ? LEDGER_ERR_SYS : LEDGER_OK;
}

/* ---- window arithmetic (pure functions of a usage and the time) ---- */

/* How far ahead of the clock a window may lie before it is clamped in the live ledger: writers
 * read the clock before they take the lock, so a write a moment late can carry an earlier time
 * than the one before it; only a clock set back moves times by more. */
#define LIVE_CLOCK_SLACK_MS LEDGER_HOUR_MS

/* Whether bytes counted in hour h still count in now's hour: until hour h + 24 ends. Hours
 * after now's (a clock set back) count too: those bytes were counted. */
static bool hour_counts(int64_t h, int64_t hour)
{
	return h > hour - LEDGER_HOURS;
}

static int64_t rolling_sum(const struct ledger_usage *u, int64_t now_ms, int64_t *oldest_hour)
{
	int64_t hour = now_ms / LEDGER_HOUR_MS, sum = 0, oldest = -1;
	for (int i = 0; i < LEDGER_HOURS; i++) {
		if (u->hour_bytes[i] == 0 || !hour_counts(u->hour_index[i], hour))
			continue;
		sum += u->hour_bytes[i];
		if (oldest < 0 || u->hour_index[i] < oldest)
			oldest = u->hour_index[i];
	}
	if (oldest_hour)
		*oldest_hour = oldest;
	return sum;
}

int64_t ledger_usage_used(const struct ledger_usage *u, enum ledger_window window, int64_t now_ms)
{
	if (window == LEDGER_WINDOW_ROLLING)
		return rolling_sum(u, now_ms, NULL);
	if (u->reset_at_ms != 0 && now_ms >= u->reset_at_ms)
		return 0;
	return u->used_bytes;
}

int64_t ledger_usage_remaining(const struct ledger_usage *u, int64_t daily_bytes,
			       enum ledger_window window, int64_t now_ms)
{
	int64_t left = daily_bytes - ledger_usage_used(u, window, now_ms);
	return left > 0 ? left : 0;
}

bool ledger_usage_clamp_future(struct ledger_usage *u, int64_t now_ms, int64_t slack_ms)
{
	bool moved = false;
	if (u->first_upload_ms > now_ms + slack_ms) {
		u->first_upload_ms = now_ms;
		moved = true;
	}
	if (u->reset_at_ms > now_ms + LEDGER_DAY_MS + slack_ms) {
		u->reset_at_ms = now_ms + LEDGER_DAY_MS;
		moved = true;
	}
	int64_t hour = now_ms / LEDGER_HOUR_MS, late = 0;
	int64_t last = (now_ms + slack_ms) / LEDGER_HOUR_MS; /* the latest hour left as it is */
	for (int i = 0; i < LEDGER_HOURS; i++)
		if (u->hour_index[i] > last) {
			late += u->hour_bytes[i];
			u->hour_index[i] = u->hour_bytes[i] = 0;
		}
	if (late) {
		int b = (int)(hour % LEDGER_HOURS);
		if (u->hour_index[b] != hour)
			u->hour_bytes[b] = 0;
		u->hour_index[b] = hour;
		u->hour_bytes[b] += late;
		moved = true;
	}
	return moved;
}

static void clear_hours(struct ledger_usage *u)
{
	memset(u->hour_index, 0, sizeof(u->hour_index));
	memset(u->hour_bytes, 0, sizeof(u->hour_bytes));
}

/* Brings a usage up to now_ms: pulls back times a clock set back left in the future, ends a
 * passed fixed window, drops old rolling hours, ends a passed ban. Returns whether anything
 * changed. */
static int usage_expire(struct ledger_usage *u, enum ledger_window window, int64_t now_ms)
{
	int changed = ledger_usage_clamp_future(u, now_ms, LIVE_CLOCK_SLACK_MS);
	if (u->banned_until_ms != 0 && now_ms >= u->banned_until_ms) {
		u->banned_until_ms = 0;
		u->ban_cause[0] = '\0';
		changed = 1;
	}
	if (window == LEDGER_WINDOW_ROLLING) {
		int64_t hour = now_ms / LEDGER_HOUR_MS, oldest;
		for (int i = 0; i < LEDGER_HOURS; i++) {
			if (u->hour_bytes[i] != 0 && !hour_counts(u->hour_index[i], hour)) {
				u->hour_bytes[i] = 0;
				changed = 1;
			}
		}
		int64_t used = rolling_sum(u, now_ms, &oldest);
		if (used != u->used_bytes) {
			u->used_bytes = used;
			changed = 1;
		}
		int64_t first = oldest < 0 ? 0 : oldest * LEDGER_HOUR_MS;
		int64_t reset = oldest < 0 ? 0 : (oldest + LEDGER_HOURS) * LEDGER_HOUR_MS;
		if (used == 0 && u->files != 0) {
			u->files = 0;
			changed = 1;
		}
		if (first != u->first_upload_ms || reset != u->reset_at_ms) {
			u->first_upload_ms = first;
			u->reset_at_ms = reset;
			changed = 1;
		}
		return changed;
	}
	if (u->reset_at_ms != 0 && now_ms >= u->reset_at_ms) {
		u->used_bytes = 0;
		u->files = 0;
		u->first_upload_ms = 0;
		u->reset_at_ms = 0;
		/* Hours a rolling window left (ledger_usage_convert) end with the window. */
		clear_hours(u);
		changed = 1;
	}
	return changed;
}

static void usage_add(struct ledger_usage *u, enum ledger_window window, int64_t bytes,
		      int64_t now_ms)
{
	usage_expire(u, window, now_ms);
	if (window == LEDGER_WINDOW_ROLLING) {
		int64_t hour = now_ms / LEDGER_HOUR_MS;
		int i = (int)(hour % LEDGER_HOURS);
		if (u->hour_index[i] != hour) {
			u->hour_index[i] = hour;
			u->hour_bytes[i] = 0;
		}
		u->hour_bytes[i] += bytes;
		u->files++;
		usage_expire(u, window, now_ms); /* recomputes used, first and reset */
	} else {
		if (u->first_upload_ms == 0) {
			u->first_upload_ms = now_ms;
			u->reset_at_ms = now_ms + LEDGER_DAY_MS;
		}
		u->used_bytes += bytes;
		u->files++;
	}
	u->updated_at_ms = now_ms;
}

void ledger_usage_convert(struct ledger_usage *u, enum ledger_window from, enum ledger_window to,
			  int64_t now_ms)
{
	int64_t hour = now_ms / LEDGER_HOUR_MS, oldest;
	ledger_usage_clamp_future(u, now_ms, 0);
	if (from == LEDGER_WINDOW_FIXED && to == LEDGER_WINDOW_ROLLING) {
		int64_t used = ledger_usage_used(u, LEDGER_WINDOW_FIXED, now_ms);
		int64_t missing = used - rolling_sum(u, now_ms, NULL);
		if (missing <= 0)
			return;
		/* Hour h frees when hour h + 24 ends: the earliest hour that lasts to the reset. */
		int64_t h = hour;
		if (u->reset_at_ms > 0) {
			int64_t until = (u->reset_at_ms + LEDGER_HOUR_MS - 1) / LEDGER_HOUR_MS -
					LEDGER_HOURS;
			if (until < h)
				h = until;
		}
		int b = (int)(h % LEDGER_HOURS);
		if (u->hour_index[b] != h)
			u->hour_bytes[b] = 0;
		u->hour_index[b] = h;
		u->hour_bytes[b] += missing;
		return;
	}
	if (from == LEDGER_WINDOW_ROLLING && to == LEDGER_WINDOW_FIXED) {
		int64_t used = rolling_sum(u, now_ms, &oldest);
		if (used == 0) {
			u->used_bytes = u->files = u->first_upload_ms = u->reset_at_ms = 0;
			clear_hours(u);
			return;
		}
		/* The buckets stay: until the header names the new window, rolling readers use them,
		 * and the fixed window's reset clears them. */
		int64_t first = (oldest + 1) * LEDGER_HOUR_MS - 1;
		if (first > now_ms)
			first = now_ms;
		u->used_bytes = used;
		u->first_upload_ms = first;
		u->reset_at_ms = first + LEDGER_DAY_MS;
	}
}

/* ---- the write protocol ---- */

/* Redo of a logged write. Idempotent: every field gets an absolute value. */
static void intent_apply(struct ledger *l, const struct ledger_intent *in, int op)
{
	if (op & LEDGER_OP_CREATE) {
		l->index[in->index_pos] = (uint32_t)in->row + 1;
		if (atomic_load(&l->hdr->row_count) < (uint32_t)in->row + 1)
			atomic_store(&l->hdr->row_count, (uint32_t)in->row + 1);
	}
	if (op & LEDGER_OP_ROW) {
		struct ledger_usage *dst = &l->rows[in->row].usage;
		dst->used_bytes = in->usage.used_bytes;
		FAULT(LEDGER_FAULT_APPLY_PARTIAL);
		*dst = in->usage;
	}
	if (op & LEDGER_OP_STAGE)
		l->stages[in->slot] = in->stage;
	if (op & LEDGER_OP_STAGE_COUNT) {
		l->stages[in->slot].files_done = in->stage_files_done;
		l->stages[in->slot].bytes_done = in->stage_bytes_done;
	}
	if (op & LEDGER_OP_OPEN_COUNTED)
		l->stages[in->slot].open_files[in->open_index].state = LEDGER_OPEN_COUNTED;
	if (op & LEDGER_OP_SESSION) {
		l->hdr->session.files = in->session.files;
		FAULT(LEDGER_FAULT_APPLY_PARTIAL);
		l->hdr->session = in->session;
	}
	if (op & LEDGER_OP_WINDOW) {
		l->hdr->daily_bytes = in->daily_bytes;
		l->hdr->window = in->window;
	}
}

static void bump_row_generation(struct ledger *l, int op)
{
	if (op & (LEDGER_OP_ROW | LEDGER_OP_CREATE | LEDGER_OP_WINDOW)) {
		atomic_fetch_add(&l->hdr->row_generation, 1);
		l->rows_changed = 1;
	}
}

/* Called by whoever inherits the lock from a dead holder: finish its logged write, or, if it
 * died before the log was complete (op still NONE), drop it: it had changed nothing yet. */
static void recover(struct ledger *l)
{
	struct ledger_header *h = l->hdr;
	int op = atomic_load_explicit(&h->intent.op, memory_order_acquire);
	uint64_t seq = atomic_load(&h->seq);
	if (op == LEDGER_OP_NONE && !(seq & 1))
		return;
	if (!(seq & 1))
		atomic_store_explicit(&h->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	if (op != LEDGER_OP_NONE)
		intent_apply(l, &h->intent, op);
	atomic_store_explicit(&h->seq, atomic_load(&h->seq) + 1, memory_order_release);
	atomic_fetch_add(&h->generation, 1);
	bump_row_generation(l, op);
	atomic_store_explicit(&h->intent.op, LEDGER_OP_NONE, memory_order_release);
}

/* Takes one of the header's robust mutexes (by the deadline, if there is one). From a holder
 * that died, the write lock's intent is redone first; the flush lock's dead holder left at most
 * a temp file, which the next write replaces. */
static int take_robust(struct ledger *l, pthread_mutex_t *m, const struct timespec *deadline)
{
	if (!l->writable)
		return LEDGER_ERR_READONLY;
	int rc = deadline ? pthread_mutex_timedlock(m, deadline) : pthread_mutex_lock(m);
	if (rc == EOWNERDEAD) {
		if (m == &l->hdr->lock) {
			recover(l);
			atomic_fetch_add(&l->hdr->recoveries, 1);
		}
		pthread_mutex_consistent(m);
		rc = 0;
	}
	if (rc == ENOTRECOVERABLE)
		return LEDGER_ERR_BROKEN;
	if (rc != 0) {
		errno = rc;
		return LEDGER_ERR_SYS;
	}
	return LEDGER_OK;
}

/* Takes the lock (by the deadline, if there is one), finishing a dead holder's write first. */
static int lock_until(struct ledger *l, const struct timespec *deadline)
{
	int rc = take_robust(l, &l->hdr->lock, deadline);
	if (rc == LEDGER_OK)
		FAULT(LEDGER_FAULT_LOCKED);
	return rc;
}

static int lock(struct ledger *l)
{
	return lock_until(l, NULL);
}

static void wake_flusher(struct ledger_header *h)
{
	if (atomic_load(&h->flusher_waiting) && atomic_exchange(&h->flusher_waiting, 0)) {
		atomic_fetch_add(&h->wake, 1);
		syscall(SYS_futex, &h->wake, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
	}
}

/* Logs, applies and clears one write; the caller holds the lock and filled intent's images. */
static void commit(struct ledger *l, int op)
{
	struct ledger_header *h = l->hdr;
	FAULT(LEDGER_FAULT_INTENT_PARTIAL);
	atomic_store_explicit(&h->intent.op, op, memory_order_release);
	FAULT(LEDGER_FAULT_INTENT_LOGGED);
	atomic_store_explicit(&h->seq, atomic_load_explicit(&h->seq, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	FAULT(LEDGER_FAULT_SEQ_ODD);
	intent_apply(l, &h->intent, op);
	FAULT(LEDGER_FAULT_APPLIED);
	atomic_store_explicit(&h->seq, atomic_load_explicit(&h->seq, memory_order_relaxed) + 1,
			      memory_order_release);
	FAULT(LEDGER_FAULT_SEQ_EVEN);
	atomic_fetch_add(&h->generation, 1);
	bump_row_generation(l, op);
	atomic_store_explicit(&h->intent.op, LEDGER_OP_NONE, memory_order_release);
	FAULT(LEDGER_FAULT_INTENT_CLEARED);
}

static void unlock(struct ledger *l)
{
	pthread_mutex_unlock(&l->hdr->lock);
	if (l->rows_changed) {
		l->rows_changed = 0;
		wake_flusher(l->hdr);
	}
}

static int valid_row(const struct ledger *l, int32_t row)
{
	return row >= 0 && (uint32_t)row < atomic_load(&l->hdr->row_count);
}

static int valid_slot(const struct ledger *l, int32_t slot)
{
	return slot >= 0 && (uint32_t)slot < l->hdr->slot_capacity;
}

/* ---- rows ---- */

static uint32_t key_hash(const char *uploader, const char *account)
{
	uint64_t h = fnv1a(FNV_BASIS, uploader, strlen(uploader) + 1);
	h = fnv1a(h, account, strlen(account));
	return (uint32_t)(h ^ (h >> 32));
}

/* Open addressing; rows are never removed, so no tombstones. Returns the row or -1 and, in
 * *free_pos, the empty index position where the key would go. */
static int32_t probe(const struct ledger *l, const char *uploader, const char *account,
		     uint32_t *free_pos)
{
	uint32_t mask = l->hdr->index_size - 1;
	uint32_t count = atomic_load(&l->hdr->row_count);
	for (uint32_t i = key_hash(uploader, account) & mask, n = 0; n <= mask;
	     i = (i + 1) & mask, n++) {
		uint32_t v = l->index[i];
		if (v == 0 || v > count) {
			if (free_pos)
				*free_pos = i;
			return -1;
		}
		const struct ledger_row *r = &l->rows[v - 1];
		if (strcmp(r->uploader, uploader) == 0 && strcmp(r->account, account) == 0)
			return (int32_t)(v - 1);
	}
	return -1;
}

static int check_names(const char *uploader, const char *account)
{
	if (!uploader || !account || !*uploader || !*account ||
	    strlen(uploader) >= LEDGER_UPLOADER_MAX || strlen(account) >= LEDGER_ACCOUNT_MAX)
		return LEDGER_ERR_NAME;
	return LEDGER_OK;
}

int ledger_row_find(const struct ledger *l, const char *uploader, const char *account,
		    int32_t *row)
{
	int rc = check_names(uploader, account);
	if (rc < 0)
		return rc;
	int32_t r = probe(l, uploader, account, NULL);
	if (r < 0)
		return LEDGER_ERR_NOTFOUND;
	*row = r;
	return LEDGER_OK;
}

int ledger_row_get(struct ledger *l, const char *uploader, const char *account, int32_t *row)
{
	int rc = check_names(uploader, account);
	if (rc < 0)
		return rc;
	if ((rc = lock(l)) < 0)
		return rc;
	uint32_t pos = 0;
	int32_t r = probe(l, uploader, account, &pos);
	if (r < 0) {
		uint32_t n = atomic_load(&l->hdr->row_count);
		if (n >= l->hdr->row_capacity) {
			pthread_mutex_unlock(&l->hdr->lock);
			return LEDGER_ERR_FULL;
		}
		/* The new row is past row_count, invisible to everyone until the logged write
		 * publishes it, so filling its names needs no log of its own. */
		struct ledger_row *nr = &l->rows[n];
		memset(nr, 0, sizeof(*nr));
		strcpy(nr->uploader, uploader);
		strcpy(nr->account, account);
		struct ledger_intent *in = &l->hdr->intent;
		in->row = (int32_t)n;
		in->index_pos = pos;
		commit(l, LEDGER_OP_CREATE);
		r = (int32_t)n;
	}
	unlock(l);
	*row = r;
	return LEDGER_OK;
}

static int32_t find_open(const struct ledger_stage *st, const char *path)
{
	for (int32_t i = 0; i < LEDGER_OPEN_MAX; i++)
		if (st->open_files[i].state == LEDGER_OPEN_PENDING &&
		    strcmp(st->open_files[i].path, path) == 0)
			return i;
	return -1;
}

/* An entry named by index (ledger_count_open_file) must still be pending under that path. */
static int open_entry_is(const struct ledger_stage *st, int32_t index, const char *path)
{
	const struct ledger_open_file *f = &st->open_files[index];
	return f->state == LEDGER_OPEN_PENDING && strncmp(f->path, path, sizeof(f->path)) == 0;
}

/* Computes a row's after-image with `change` under the lock and commits it. With a slot, the
 * stage's counters move too, and the open-file entry for path (the pending one of that path,
 * or, when open_index >= 0, exactly that one, which must still be pending) is marked counted in
 * the same write. */
static int row_write(struct ledger *l, int32_t row, int64_t now_ms,
		     int (*change)(struct ledger_usage *u, enum ledger_window w, int64_t now_ms,
				   const void *arg),
		     const void *arg, int32_t slot, int64_t stage_bytes, const char *path,
		     int32_t open_index)
{
	int rc = lock(l);
	if (rc < 0)
		return rc;
	if (!valid_row(l, row) || (slot >= 0 && !valid_slot(l, slot))) {
		pthread_mutex_unlock(&l->hdr->lock);
		return row >= 0 ? LEDGER_ERR_NOTFOUND : LEDGER_ERR_INVALID;
	}
	if (open_index >= 0 && !open_entry_is(&l->stages[slot], open_index, path)) {
		pthread_mutex_unlock(&l->hdr->lock);
		return LEDGER_ERR_NOTFOUND;
	}
	struct ledger_intent *in = &l->hdr->intent;
	in->row = row;
	in->usage = l->rows[row].usage;
	enum ledger_window w = (enum ledger_window)l->hdr->window;
	int changed = change(&in->usage, w, now_ms, arg);
	if (changed < 0) {
		pthread_mutex_unlock(&l->hdr->lock);
		return changed;
	}
	int op = changed ? LEDGER_OP_ROW : 0;
	if (slot >= 0) {
		in->slot = slot;
		in->stage_files_done = l->stages[slot].files_done + 1;
		in->stage_bytes_done = l->stages[slot].bytes_done + stage_bytes;
		op |= LEDGER_OP_STAGE_COUNT;
		in->open_index = open_index >= 0 ? open_index
						 : path ? find_open(&l->stages[slot], path) : -1;
		if (in->open_index >= 0)
			op |= LEDGER_OP_OPEN_COUNTED;
	}
	if (op)
		commit(l, op);
	unlock(l);
	return changed;
}

static int change_add(struct ledger_usage *u, enum ledger_window w, int64_t now_ms,
		      const void *arg)
{
	usage_add(u, w, *(const int64_t *)arg, now_ms);
	return 1;
}

int ledger_add(struct ledger *l, int32_t row, int64_t bytes, int64_t now_ms)
{
	if (bytes < 0)
		return LEDGER_ERR_INVALID;
	int rc = row_write(l, row, now_ms, change_add, &bytes, -1, 0, NULL, -1);
	return rc < 0 ? rc : LEDGER_OK;
}

int ledger_add_for_stage(struct ledger *l, int32_t slot, int64_t bytes, int64_t now_ms)
{
	return ledger_add_for_stage_file(l, slot, NULL, bytes, now_ms);
}

int ledger_add_for_stage_file(struct ledger *l, int32_t slot, const char *path, int64_t bytes,
			      int64_t now_ms)
{
	if (bytes < 0 || !valid_slot(l, slot))
		return LEDGER_ERR_INVALID;
	/* The slot's row is fixed while the stage runs: only its owner changes it. */
	int rc = row_write(l, l->stages[slot].row, now_ms, change_add, &bytes, slot, bytes, path,
			   -1);
	return rc < 0 ? rc : LEDGER_OK;
}

int ledger_count_open_file(struct ledger *l, int32_t slot, int32_t index, const char *path,
			   int64_t bytes, int64_t now_ms)
{
	if (bytes < 0 || !valid_slot(l, slot) || index < 0 || index >= LEDGER_OPEN_MAX || !path)
		return LEDGER_ERR_INVALID;
	int rc = row_write(l, l->stages[slot].row, now_ms, change_add, &bytes, slot, bytes, path,
			   index);
	return rc < 0 ? rc : LEDGER_OK;
}

struct ban_arg {
	int64_t until_ms;
	const char *cause;
};

static int change_ban(struct ledger_usage *u, enum ledger_window w, int64_t now_ms,
		      const void *arg)
{
	const struct ban_arg *b = arg;
	usage_expire(u, w, now_ms);
	u->banned_until_ms = b->until_ms;
	snprintf(u->ban_cause, sizeof(u->ban_cause), "%s", b->until_ms ? b->cause : "");
	u->updated_at_ms = now_ms;
	return 1;
}

int ledger_ban(struct ledger *l, int32_t row, int64_t until_ms, const char *cause, int64_t now_ms)
{
	if (until_ms <= 0)
		return LEDGER_ERR_INVALID;
	struct ban_arg b = { until_ms, cause ? cause : "" };
	int rc = row_write(l, row, now_ms, change_ban, &b, -1, 0, NULL, -1);
	return rc < 0 ? rc : LEDGER_OK;
}

int ledger_unban(struct ledger *l, int32_t row, int64_t now_ms)
{
	struct ban_arg b = { 0, "" };
	int rc = row_write(l, row, now_ms, change_ban, &b, -1, 0, NULL, -1);
	return rc < 0 ? rc : LEDGER_OK;
}

static int change_reset(struct ledger_usage *u, enum ledger_window w, int64_t now_ms,
			const void *arg)
{
	(void)w;
	(void)arg;
	int64_t banned = u->banned_until_ms;
	char cause[LEDGER_CAUSE_MAX];
	memcpy(cause, u->ban_cause, sizeof(cause));
	memset(u, 0, sizeof(*u));
	u->banned_until_ms = banned;
	memcpy(u->ban_cause, cause, sizeof(cause));
	u->updated_at_ms = now_ms;
	return 1;
}

int ledger_reset_row(struct ledger *l, int32_t row, int64_t now_ms)
{
	int rc = row_write(l, row, now_ms, change_reset, NULL, -1, 0, NULL, -1);
	return rc < 0 ? rc : LEDGER_OK;
}

static int change_set(struct ledger_usage *u, enum ledger_window w, int64_t now_ms,
		      const void *arg)
{
	(void)w;
	(void)now_ms;
	*u = *(const struct ledger_usage *)arg;
	return 1;
}

int ledger_set_usage(struct ledger *l, int32_t row, const struct ledger_usage *u)
{
	if (u->used_bytes < 0 || u->files < 0)
		return LEDGER_ERR_INVALID;
	int rc = row_write(l, row, u->updated_at_ms, change_set, u, -1, 0, NULL, -1);
	return rc < 0 ? rc : LEDGER_OK;
}

static int change_expire(struct ledger_usage *u, enum ledger_window w, int64_t now_ms,
			 const void *arg)
{
	(void)arg;
	return usage_expire(u, w, now_ms);
}

int ledger_expire(struct ledger *l, int64_t now_ms)
{
	int changed = 0;
	uint32_t n = atomic_load(&l->hdr->row_count);
	for (uint32_t i = 0; i < n; i++) {
		int rc = row_write(l, (int32_t)i, now_ms, change_expire, NULL, -1, 0, NULL, -1);
		if (rc < 0)
			return rc;
		changed += rc;
	}
	return changed;
}

int ledger_set_window(struct ledger *l, enum ledger_window window, int64_t daily_bytes,
		      int64_t now_ms)
{
	if ((window != LEDGER_WINDOW_FIXED && window != LEDGER_WINDOW_ROLLING) || daily_bytes <= 0)
		return LEDGER_ERR_INVALID;
	int rc = lock(l);
	if (rc < 0)
		return rc;
	enum ledger_window from = (enum ledger_window)l->hdr->window;
	struct ledger_intent *in = &l->hdr->intent;
	int converted = 0;
	/* One write per row, the header last: each row is right under both windows once
	 * converted, so a converter killed half way leaves a readable ledger and the next start
	 * converts again. */
	uint32_t n = from == window ? 0 : atomic_load(&l->hdr->row_count);
	for (uint32_t i = 0; i < n; i++) {
		in->row = (int32_t)i;
		in->usage = l->rows[i].usage;
		ledger_usage_convert(&in->usage, from, window, now_ms);
		if (memcmp(&in->usage, &l->rows[i].usage, sizeof(in->usage)) == 0)
			continue;
		commit(l, LEDGER_OP_ROW);
		converted++;
	}
	if (from != window || l->hdr->daily_bytes != daily_bytes) {
		in->window = (uint32_t)window;
		in->daily_bytes = daily_bytes;
		commit(l, LEDGER_OP_WINDOW);
	}
	unlock(l);
	return converted;
}

/* ---- stage slots ---- */

int ledger_stage_claim(struct ledger *l, const struct ledger_stage *init, int32_t *slot)
{
	uint64_t start = init->pid_start;
	if (start == 0 && init->pid > 0 && proc_start_time(init->pid, &start) < 0)
		start = 0; /* pid alone then, as before start times */
	int rc = lock(l);
	if (rc < 0)
		return rc;
	if (!valid_row(l, init->row)) {
		pthread_mutex_unlock(&l->hdr->lock);
		return LEDGER_ERR_NOTFOUND;
	}
	int32_t found = -1;
	for (uint32_t i = 0; i < l->hdr->slot_capacity; i++) {
		if (l->stages[i].state == LEDGER_STAGE_FREE) {
			found = (int32_t)i;
			break;
		}
	}
	if (found < 0) {
		pthread_mutex_unlock(&l->hdr->lock);
		return LEDGER_ERR_FULL;
	}
	struct ledger_intent *in = &l->hdr->intent;
	in->slot = found;
	in->stage = *init;
	in->stage.state = LEDGER_STAGE_RUNNING;
	in->stage.pid_start = start;
	commit(l, LEDGER_OP_STAGE);
	unlock(l);
	*slot = found;
	return LEDGER_OK;
}

int ledger_stage_update(struct ledger *l, int32_t slot, const struct ledger_stage *s)
{
	if (!valid_slot(l, slot))
		return LEDGER_ERR_INVALID;
	int rc = lock(l);
	if (rc < 0)
		return rc;
	struct ledger_intent *in = &l->hdr->intent;
	in->slot = slot;
	in->stage = *s;
	/* The counters belong to ledger_add_for_stage; a stats update must not roll them back. */
	in->stage.files_done = l->stages[slot].files_done;
	in->stage.bytes_done = l->stages[slot].bytes_done;
	in->stage.row = l->stages[slot].row;
	in->stage.pid_start = l->stages[slot].pid_start; /* the claim's, for the same pid */
	if (s->state == LEDGER_STAGE_FREE)
		in->stage.state = l->stages[slot].state; /* freeing is ledger_stage_release's */
	/* The open-file table has its own writes; a stats update must not roll it back. */
	in->stage.open_lost = l->stages[slot].open_lost;
	memcpy(in->stage.open_files, l->stages[slot].open_files, sizeof(in->stage.open_files));
	/* Requests belong to whoever asks; the worker's own updates must not erase them. */
	in->stage.bwlimit_seq = l->stages[slot].bwlimit_seq;
	memcpy(in->stage.bwlimit, l->stages[slot].bwlimit, sizeof(in->stage.bwlimit));
	commit(l, LEDGER_OP_STAGE);
	unlock(l);
	return LEDGER_OK;
}

/* Locks for a write of a whole slot: the intent starts as the slot's image, which the caller
 * changes, then commits (LEDGER_OP_STAGE) and unlocks. NULL, with *rc, when it cannot. */
static struct ledger_stage *stage_write(struct ledger *l, int32_t slot, int *rc)
{
	if (!valid_slot(l, slot)) {
		*rc = LEDGER_ERR_INVALID;
		return NULL;
	}
	if ((*rc = lock(l)) < 0)
		return NULL;
	struct ledger_intent *in = &l->hdr->intent;
	in->slot = slot;
	in->stage = l->stages[slot];
	return &in->stage;
}

int ledger_stage_hand_over(struct ledger *l, int32_t slot, pid_t pid)
{
	uint64_t start;
	if (pid <= 0)
		return LEDGER_ERR_INVALID;
	if (proc_start_time(pid, &start) < 0)
		start = 0; /* pid alone then */
	int rc;
	struct ledger_stage *st = stage_write(l, slot, &rc);
	if (!st)
		return rc;
	st->pid = (int32_t)pid;
	st->pid_start = start;
	commit(l, LEDGER_OP_STAGE);
	unlock(l);
	return LEDGER_OK;
}

int ledger_stage_release(struct ledger *l, int32_t slot)
{
	if (!valid_slot(l, slot))
		return LEDGER_ERR_INVALID;
	int rc = lock(l);
	if (rc < 0)
		return rc;
	struct ledger_intent *in = &l->hdr->intent;
	const struct ledger_stage *st = &l->stages[slot];
	int op = LEDGER_OP_STAGE;
	/* The session's new totals as an after-image: a redo after our death sets them, never
	 * adds twice; a write dropped before the intent was logged leaves slot and totals both. */
	in->session = l->hdr->session;
	if (st->state != LEDGER_STAGE_FREE && st->started_at_ms >= in->session.started_ms) {
		in->session.files += st->files_done;
		in->session.bytes += st->bytes_done;
		in->session.stages++;
		op |= LEDGER_OP_SESSION;
	}
	in->slot = slot;
	memset(&in->stage, 0, sizeof(in->stage));
	commit(l, op);
	unlock(l);
	return LEDGER_OK;
}

int ledger_session_start(struct ledger *l, int64_t now_ms)
{
	int rc = lock(l);
	if (rc < 0)
		return rc;
	struct ledger_intent *in = &l->hdr->intent;
	in->session = (struct ledger_session){ .started_ms = now_ms };
	commit(l, LEDGER_OP_SESSION);
	unlock(l);
	return LEDGER_OK;
}

int ledger_stage_note_opens(struct ledger *l, int32_t slot, const char *const *paths,
			    const int64_t *sizes, const int64_t *mtimes, size_t n)
{
	int rc;
	struct ledger_stage *st = stage_write(l, slot, &rc);
	if (!st)
		return rc;
	int32_t next = 0;
	for (size_t k = 0; k < n; k++) {
		if (strlen(paths[k]) >= LEDGER_OPEN_PATH_MAX) {
			st->open_lost++;
			continue;
		}
		int32_t had = find_open(st, paths[k]);
		if (had >= 0) {
			/* A file noted open at its listed size that rclone then reported copied at a
			 * size only the remote knows: the remote's answer is the one to count. */
			if (sizes[k] == LEDGER_OPEN_SIZE_LATE)
				st->open_files[had].size = LEDGER_OPEN_SIZE_LATE;
			continue;
		}
		while (next < LEDGER_OPEN_MAX && st->open_files[next].state == LEDGER_OPEN_PENDING)
			next++;
		if (next == LEDGER_OPEN_MAX) {
			st->open_lost++;
			continue;
		}
		struct ledger_open_file *f = &st->open_files[next++];
		snprintf(f->path, sizeof(f->path), "%s", paths[k]);
		f->size = sizes[k];
		f->mtime_ns = mtimes ? mtimes[k] : 0;
		f->state = LEDGER_OPEN_PENDING;
	}
	commit(l, LEDGER_OP_STAGE);
	unlock(l);
	return LEDGER_OK;
}

int ledger_stage_open_files(struct ledger *l, int32_t slot, struct ledger_open_file *out,
			    int32_t *index, size_t cap, size_t *n, int32_t *lost)
{
	if (!valid_slot(l, slot))
		return LEDGER_ERR_INVALID;
	/* The lock, not a seqlock read: taking it recovers a writer that died holding it, whose
	 * logged write may count one of these entries. */
	int rc = lock(l);
	if (rc < 0)
		return rc;
	const struct ledger_stage *st = &l->stages[slot];
	size_t k = 0;
	for (int32_t i = 0; i < LEDGER_OPEN_MAX && k < cap; i++) {
		if (st->open_files[i].state != LEDGER_OPEN_PENDING)
			continue;
		out[k] = st->open_files[i];
		out[k].path[LEDGER_OPEN_PATH_MAX - 1] = '\0';
		index[k++] = i;
	}
	*n = k;
	if (lost)
		*lost = st->open_lost;
	unlock(l);
	return LEDGER_OK;
}

static int kept(const char *path, const char *const *keep, size_t n_keep)
{
	for (size_t i = 0; i < n_keep; i++)
		if (strcmp(keep[i], path) == 0)
			return 1;
	return 0;
}

int ledger_stage_settle_opens(struct ledger *l, int32_t slot, const char *const *keep,
			      size_t n_keep)
{
	int rc;
	struct ledger_stage *st = stage_write(l, slot, &rc);
	if (!st)
		return rc;
	int changed = 0;
	for (int32_t i = 0; i < LEDGER_OPEN_MAX; i++) {
		struct ledger_open_file *f = &st->open_files[i];
		if (f->state == LEDGER_OPEN_PENDING && !kept(f->path, keep, n_keep)) {
			f->state = LEDGER_OPEN_FREE;
			changed = 1;
		}
	}
	if (changed)
		commit(l, LEDGER_OP_STAGE);
	unlock(l);
	return LEDGER_OK;
}

int ledger_stage_request_bwlimit(struct ledger *l, int32_t slot, const char *rate)
{
	if (!valid_slot(l, slot) || !rate || !*rate || strlen(rate) >= LEDGER_BWLIMIT_MAX)
		return LEDGER_ERR_INVALID;
	int rc = lock(l);
	if (rc < 0)
		return rc;
	if (l->stages[slot].state != LEDGER_STAGE_RUNNING) {
		pthread_mutex_unlock(&l->hdr->lock);
		return LEDGER_ERR_NOTFOUND;
	}
	struct ledger_intent *in = &l->hdr->intent;
	in->slot = slot;
	in->stage = l->stages[slot];
	in->stage.bwlimit_seq++;
	snprintf(in->stage.bwlimit, sizeof(in->stage.bwlimit), "%s", rate);
	commit(l, LEDGER_OP_STAGE);
	unlock(l);
	return LEDGER_OK;
}

int ledger_stage_take_bwlimit(const struct ledger *l, int32_t slot, uint32_t *seen, char *rate,
			      size_t len)
{
	if (!valid_slot(l, slot))
		return 0;
	const struct ledger_stage *s = &l->stages[slot];
	struct ledger_header *h = l->hdr;
	for (int attempt = 0; attempt < 1000; attempt++) {
		uint64_t s1 = atomic_load_explicit(&h->seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		uint32_t seq = s->bwlimit_seq;
		char copy[LEDGER_BWLIMIT_MAX];
		memcpy(copy, s->bwlimit, sizeof(copy));
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&h->seq, memory_order_relaxed) != s1)
			continue;
		if (seq == *seen)
			return 0;
		copy[LEDGER_BWLIMIT_MAX - 1] = '\0';
		snprintf(rate, len, "%s", copy);
		*seen = seq;
		return 1;
	}
	return 0; /* writers kept it busy: the next poll tries again */
}

/* ---- readers ---- */

int ledger_copy_init(const struct ledger *l, struct ledger_copy *c)
{
	memset(c, 0, sizeof(*c));
	c->row_capacity = l->hdr->row_capacity;
	c->slot_capacity = l->hdr->slot_capacity;
	c->rows = calloc(c->row_capacity ? c->row_capacity : 1, sizeof(*c->rows));
	c->stages = calloc(c->slot_capacity ? c->slot_capacity : 1, sizeof(*c->stages));
	if (!c->rows || !c->stages) {
		ledger_copy_free(c);
		return LEDGER_ERR_SYS;
	}
	return LEDGER_OK;
}

void ledger_copy_free(struct ledger_copy *c)
{
	free(c->rows);
	free(c->stages);
	memset(c, 0, sizeof(*c));
}

/* A free slot's fields mean nothing (every reader checks the state first), so only the state
 * of one is copied: a slot is 10 KiB, and copying all 32 made each process's first read
 * fault in 80 pages of both the ledger and the copy, ~7 ms of a start on a small VM. */
static void copy_stages(struct ledger_copy *c, const struct ledger_stage *stages)
{
	for (uint32_t i = 0; i < c->slot_capacity; i++) {
		if (stages[i].state != LEDGER_STAGE_FREE)
			memcpy(&c->stages[i], &stages[i], sizeof(stages[i]));
		else if (c->stages[i].state != LEDGER_STAGE_FREE)
			c->stages[i].state = LEDGER_STAGE_FREE;
	}
}

/*
 * Seqlock read: copy, then check that no write began or ended meanwhile. The copy races with
 * writers by design (that is what the sequence check is for); only a copy bracketed by one
 * unchanged even sequence value is returned.
 */
int ledger_read(const struct ledger *l, struct ledger_copy *c, int timeout_ms)
{
	const struct ledger_header *h = l->hdr;
	struct ledger_header *hw = (struct ledger_header *)h; /* atomics only load through it */
	int64_t deadline = 0;
	for (unsigned attempt = 0;; attempt++) {
		uint64_t s1 = atomic_load_explicit(&hw->seq, memory_order_acquire);
		if (!(s1 & 1)) {
			uint32_t n = atomic_load_explicit(&hw->row_count, memory_order_acquire);
			if (n > c->row_capacity)
				n = c->row_capacity;
			c->generation = atomic_load_explicit(&hw->generation, memory_order_relaxed);
			c->row_generation =
				atomic_load_explicit(&hw->row_generation, memory_order_relaxed);
			memcpy(c->rows, l->rows, (size_t)n * sizeof(*c->rows));
			copy_stages(c, l->stages);
			/* Inside the bracket: a release moves a stage's counts from its slot to here
			 * in one write, and a copy must not see them in both or neither. */
			c->session = h->session;
			/* A window change converts the rows and names the window in one hold of the
			 * lock: rows and window from one bracket agree. */
			c->daily_bytes = h->daily_bytes;
			c->window = h->window;
			atomic_thread_fence(memory_order_acquire);
			uint64_t s2 = atomic_load_explicit(&hw->seq, memory_order_relaxed);
			if (s1 == s2) {
				c->row_count = n;
				c->flushed_generation = atomic_load(&hw->flushed_generation);
				c->flushed_at_ms = atomic_load(&hw->flushed_at_ms);
				c->recoveries = atomic_load(&hw->recoveries);
				c->restarts = atomic_load(&hw->restarts);
				c->supervisor_pid = atomic_load(&hw->supervisor_pid);
				c->supervisor_seen_ms = atomic_load(&hw->supervisor_seen_ms);
				return LEDGER_OK;
			}
		}
		if (attempt < 16)
			continue;
		/* A writer died mid-write (seq stays odd until the next writer recovers) or
		 * writers are saturating: yield, and give up at the deadline rather than spin. */
		sched_yield();
		if ((attempt & 15) == 0) {
			int64_t now = ledger_now_ms();
			if (deadline == 0)
				deadline = now + timeout_ms;
			else if (now >= deadline)
				return LEDGER_ERR_STUCK;
		}
	}
}

/* ---- the flusher's wake-up ---- */

void ledger_wait_change(struct ledger *l, uint64_t seen, int timeout_ms)
{
	struct ledger_header *h = l->hdr;
	uint32_t w = atomic_load(&h->wake);
	atomic_store(&h->flusher_waiting, 1);
	/* Pairs with the writer's row_generation bump then waiting check: either we see its new
	 * generation here, or it sees waiting == 1 and bumps wake, failing our futex wait. */
	if (atomic_load(&h->row_generation) != seen)
		return;
	struct timespec ts = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L };
	syscall(SYS_futex, &h->wake, FUTEX_WAIT, w, &ts, NULL, 0);
}

void ledger_wake(struct ledger *l)
{
	atomic_fetch_add(&l->hdr->wake, 1);
	syscall(SYS_futex, &l->hdr->wake, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

void ledger_note_flush_current(struct ledger *l, uint64_t generation, int64_t at_ms)
{
	atomic_store(&l->hdr->flushed_generation, generation);
	atomic_store(&l->hdr->flushed_at_ms, at_ms);
}

void ledger_note_flush(struct ledger *l, uint64_t generation, int64_t at_ms, int ok)
{
	/* Plain atomics, no lock: these fields belong to the one flusher and are not in any row. */
	if (ok) {
		atomic_store(&l->hdr->flushed_generation, generation);
		atomic_store(&l->hdr->flushed_at_ms, at_ms);
		atomic_fetch_add(&l->hdr->flush_count, 1);
	} else {
		atomic_fetch_add(&l->hdr->flush_errors, 1);
	}
}

/* ---- who else is there ---- */

int ledger_flush_lock(struct ledger *l)
{
	return take_robust(l, &l->hdr->flush_lock, NULL);
}

void ledger_flush_unlock(struct ledger *l)
{
	pthread_mutex_unlock(&l->hdr->flush_lock);
}

void ledger_flusher_set(struct ledger *l, pid_t pid)
{
	uint64_t start = 0;
	if (proc_start_time(pid, &start) < 0)
		start = 0;
	/* Start first: a reader that sees the new pid with the old start finds no such process,
	 * which only makes a worker write the file once more than needed. */
	atomic_store(&l->hdr->flusher_start, start);
	atomic_store(&l->hdr->flusher_pid, (int32_t)pid);
}

void ledger_flusher_clear(struct ledger *l, pid_t pid)
{
	int32_t mine = (int32_t)pid;
	atomic_compare_exchange_strong(&l->hdr->flusher_pid, &mine, 0);
}

bool ledger_flusher_alive(const struct ledger *l)
{
	struct ledger_header *h = l->hdr;
	int32_t pid = atomic_load(&h->flusher_pid);
	return pid > 0 && proc_alive(pid, atomic_load(&h->flusher_start));
}

bool ledger_stage_holder_alive(const struct ledger_stage *st)
{
	return st->pid > 0 && proc_alive(st->pid, st->pid_start);
}

int ledger_recover(struct ledger *l, int timeout_ms)
{
	/* Bounded: a writer that is alive but stopped (a debugger, SIGSTOP) holds the lock as long
	 * as it likes, and the caller must still answer its own stop signal. */
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	int rc = lock_until(l, &deadline);
	if (rc < 0)
		return rc;
	unlock(l);
	return LEDGER_OK;
}

void ledger_describe_owner(const char *name, char *out, size_t len)
{
	char path[128];
	struct stat st;
	snprintf(path, sizeof(path), "/dev/shm%s", name);
	if (stat(path, &st) < 0) {
		snprintf(out, len, "%s: %s", path, strerror(errno));
		return;
	}
	struct passwd *pw = getpwuid(st.st_uid);
	snprintf(out, len, "%s is owned by %s%s(uid %u), mode %04o", path, pw ? pw->pw_name : "",
		 pw ? " " : "", (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
}
