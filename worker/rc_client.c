#include "rc_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "err.h"
#include "http_client.h"
#include "lazy_curl.h"

_Static_assert(sizeof(((struct rc_client *)0)->curl_error) == CURL_ERROR_SIZE,
               "curl_error must be CURL_ERROR_SIZE bytes");

/* Room kept after the base URL for the longest method name ("operations/stat"). */
#define METHOD_NAME_MAX 32
/* A response buffer starts here: core/stats with a few transfers fits without regrowth. */
#define BODY_INITIAL_CAP 4096
/* Bound on the part of a server's error text quoted in c->error. */
#define QUOTE_MAX 160

const char *rc_client_strerror(int err)
{
    switch (err) {
    case RC_CLIENT_OK: return "ok";
    case RC_CLIENT_ERR_INVALID: return "invalid argument";
    case RC_CLIENT_ERR_NOMEM: return "out of memory";
    case RC_CLIENT_ERR_CONNECT: return "connect";
    case RC_CLIENT_ERR_TIMEOUT: return "timeout";
    case RC_CLIENT_ERR_HTTP: return "http";
    case RC_CLIENT_ERR_PARSE: return "parse";
    case RC_CLIENT_ERR_NOTFOUND: return "not found";
    case RC_CLIENT_ERR_CURL: return "curl";
    case RC_CLIENT_ERR_RANDOM: return "getrandom";
    }
    return "unknown";
}

/* The one error formatter (err.h), into the client's message. */
#define rc_err(c, code, ...) err_set((c)->error, sizeof((c)->error), (code), __VA_ARGS__)

/* Copies the first line of text a server sent, printable ASCII only, so that a quoted error
 * cannot break a log line or smuggle terminal escapes into it. */
static void quote_line(char *dst, size_t dst_size, const char *src, size_t src_len)
{
    size_t n = 0;
    for (size_t i = 0; i < src_len && n + 1 < dst_size; i++) {
        unsigned char ch = (unsigned char)src[i];
        if (ch == '\n' || ch == '\r')
            break;
        dst[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    dst[n] = '\0';
}

/* Copies src whole if it fits in dst, else "..." and as much of its end as fits, starting on
 * a UTF-8 character boundary. dst_size must exceed 4. Returns whether it cut. */
static bool copy_tail(char *dst, size_t dst_size, const char *src, size_t src_len)
{
    static const char marker[] = "...";
    if (src_len < dst_size) {
        memcpy(dst, src, src_len);
        dst[src_len] = '\0';
        return false;
    }
    size_t room = dst_size - 1 - (sizeof marker - 1);
    const char *end = src + src_len;
    const char *tail = end - room;
    while (tail < end && ((unsigned char)*tail & 0xc0) == 0x80)
        tail++;
    memcpy(dst, marker, sizeof marker - 1);
    memcpy(dst + sizeof marker - 1, tail, (size_t)(end - tail));
    dst[sizeof marker - 1 + (size_t)(end - tail)] = '\0';
    return true;
}

/* JSON numbers arrive as doubles; converting one outside int64_t's range is undefined. */
static int64_t double_to_int64(double v)
{
    if (v != v)
        return -1;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

static int64_t json_int64(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? double_to_int64(v->valuedouble) : -1;
}

static double json_double(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1.0;
}

/* --- the connection ------------------------------------------------------------------- */

static bool host_is_loopback_name(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcasecmp(host, "localhost") == 0 ||
           strcmp(host, "[::1]") == 0;
}

/*
 * Accepts only http://{127.0.0.1,localhost,[::1]}[:port][/path] with no credentials, query or
 * fragment (rclone's URL has none, and credentials in a URL would end up in error texts), and
 * writes libcurl's normalised form, ending in '/', to c->url.
 */
static int set_base_url(struct rc_client *c, const char *base_url)
{
    int rc = RC_CLIENT_ERR_INVALID;
    const char *why = NULL;
    char *scheme = NULL, *host = NULL, *part = NULL, *normal = NULL;
    CURLU *u = curl_url();
    if (!u) {
        rc = RC_CLIENT_ERR_NOMEM;
        why = "out of memory";
        goto out;
    }
    if (curl_url_set(u, CURLUPART_URL, base_url, 0) != CURLUE_OK) {
        why = "not an absolute URL";
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        strcasecmp(scheme, "http") != 0) {
        why = "the scheme is not http";
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host_is_loopback_name(host)) {
        why = "the host is not 127.0.0.1, localhost or [::1]";
        goto out;
    }
    static const CURLUPart extras[] = { CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS,
                                        CURLUPART_QUERY, CURLUPART_FRAGMENT };
    for (size_t i = 0; i < sizeof extras / sizeof extras[0]; i++) {
        if (curl_url_get(u, extras[i], &part, 0) == CURLUE_OK) {
            why = "it carries credentials, a query or a fragment";
            goto out;
        }
    }
    if (curl_url_get(u, CURLUPART_URL, &normal, 0) != CURLUE_OK) {
        why = "libcurl cannot write it back";
        goto out;
    }
    size_t len = strlen(normal);
    bool slash = len > 0 && normal[len - 1] == '/';
    if (len + !slash + METHOD_NAME_MAX >= sizeof c->url) {
        why = "it is too long";
        goto out;
    }
    memcpy(c->url, normal, len);
    if (!slash)
        c->url[len++] = '/';
    c->url[len] = '\0';
    c->base_len = len;
    rc = 0;
out:
    /* The URL is quoted only by what was wrong with it: a mistyped one may hold a secret. */
    if (rc < 0)
        rc_err(c, 0, "rc_client: refusing the RC URL: %s", why);
    curl_free(normal);
    curl_free(part);
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

static bool address_is_loopback(const struct sockaddr *sa, socklen_t len)
{
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

/*
 * libcurl's socket opener. Two reasons to have one: the address check happens on the address
 * actually about to be connected to, whatever a name resolved to; and the socket gets
 * close-on-exec, which libcurl does not set, so a child the worker starts later cannot inherit
 * (and hold open) the connection to rclone.
 */
static curl_socket_t open_socket(void *ctx, curlsocktype purpose, struct curl_sockaddr *address)
{
    struct rc_client *c = ctx;
    if (purpose != CURLSOCKTYPE_IPCXN ||
        !address_is_loopback(&address->addr, address->addrlen)) {
        c->refused_address = true;
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

int rc_client_init(struct rc_client *c, const char *base_url, const char *user, const char *pass,
                   int timeout_ms)
{
    *c = (struct rc_client){ 0 };
    c->body = (struct http_body){ .max = RC_CLIENT_BODY_MAX, .initial_cap = BODY_INITIAL_CAP };
    if (!base_url || !user || !*user || !pass || !*pass) {
        return rc_err(c, RC_CLIENT_ERR_INVALID,
                      "rc_client: a URL, a user and a password are all needed");
    }
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : RC_CLIENT_TIMEOUT_MS_DEFAULT;
    char load_err[256];
    if (lazy_curl_load(load_err, sizeof(load_err)) < 0) {
        return rc_err(c, RC_CLIENT_ERR_CURL, "rc_client: %s", load_err);
    }
    int rc = set_base_url(c, base_url);
    if (rc < 0)
        return rc;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return rc_err(c, RC_CLIENT_ERR_CURL, "rc_client: libcurl failed to initialise");
    }
    CURL *curl = curl_easy_init();
    if (!curl) {
        curl_global_cleanup();
        return rc_err(c, RC_CLIENT_ERR_NOMEM, "rc_client: libcurl could not allocate a handle");
    }
    c->curl = curl; /* from here on, rc_client_free() also drops the global reference */

    /* rclone reads a POST body as JSON only with this type: as form data it silently finds
     * no parameters, and core/bwlimit would just report the current limit. "Expect:" turns
     * off "Expect: 100-continue" on a longer body (a deep path in operations/stat), which
     * would cost a round trip, or a second when the server does not answer it. */
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (!headers || !curl_slist_append(headers, "Expect:")) {
        curl_slist_free_all(headers);
        rc_client_free(c);
        return rc_err(c, RC_CLIENT_ERR_NOMEM, "rc_client: out of memory");
    }
    c->headers = headers;

    long timeout = c->timeout_ms;
    CURLcode e = CURLE_OK;
#define SET(option, value) \
    do { \
        if (e == CURLE_OK) \
            e = curl_easy_setopt(curl, option, value); \
    } while (0)
    SET(CURLOPT_NOSIGNAL, 1L); /* no SIGALRM: the worker owns its signals */
    SET(CURLOPT_PROTOCOLS_STR, "http");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOPROXY, "*"); /* an http_proxy in the environment must not see the password */
    SET(CURLOPT_OPENSOCKETFUNCTION, open_socket);
    SET(CURLOPT_OPENSOCKETDATA, c);
    SET(CURLOPT_CONNECTTIMEOUT_MS, timeout);
    SET(CURLOPT_TIMEOUT_MS, timeout);
    SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    SET(CURLOPT_USERNAME, user);
    SET(CURLOPT_PASSWORD, pass);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_USERAGENT, "cplow");
    SET(CURLOPT_WRITEFUNCTION, http_body_write);
    SET(CURLOPT_WRITEDATA, &c->body);
    SET(CURLOPT_ERRORBUFFER, c->curl_error);
#undef SET
    if (e != CURLE_OK) {
        /* curl_easy_strerror() names the failure without echoing the option's value. */
        char why[RC_CLIENT_ERROR_MAX];
        snprintf(why, sizeof why, "%s", curl_easy_strerror(e));
        rc_client_free(c);
        rc_err(c, 0, "rc_client: setting up libcurl: %s", why);
        return e == CURLE_OUT_OF_MEMORY ? RC_CLIENT_ERR_NOMEM : RC_CLIENT_ERR_CURL;
    }
    return 0;
}

void rc_client_free(struct rc_client *c)
{
    if (c->curl) {
        curl_easy_cleanup(c->curl);
        curl_global_cleanup();
    }
    curl_slist_free_all(c->headers);
    free(c->body.data);
    *c = (struct rc_client){ 0 };
}

static void describe_http_failure(struct rc_client *c, const char *method)
{
    /* rclone's own errors are {"error": "...", "status": N, ...}; its 401 is plain text. */
    char quoted[QUOTE_MAX];
    cJSON *root = cJSON_ParseWithLength(c->body.data ? c->body.data : "", c->body.len);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsString(msg))
        quote_line(quoted, sizeof quoted, msg->valuestring, strlen(msg->valuestring));
    else
        quote_line(quoted, sizeof quoted, c->body.data ? c->body.data : "", c->body.len);
    cJSON_Delete(root);
    rc_err(c, 0, "%s: HTTP %ld%s%s", method, c->http_status, quoted[0] ? ": " : "", quoted);
}

/* One POST of `json` to `method`; on 0 the answer is in c->body (status 200). */
static int post(struct rc_client *c, const char *method, const char *json)
{
    if (!c->curl) {
        return rc_err(c, RC_CLIENT_ERR_INVALID, "%s: the client is not initialised", method);
    }
    size_t method_len = strlen(method);
    if (method_len >= METHOD_NAME_MAX) {
        return rc_err(c, RC_CLIENT_ERR_INVALID, "%s: method name too long", method);
    }
    memcpy(c->url + c->base_len, method, method_len + 1);
    c->body.len = 0;
    c->body.error = HTTP_BODY_OK;
    c->refused_address = false;
    c->http_status = 0;
    c->curl_error[0] = '\0';
    c->error[0] = '\0';

    CURL *curl = c->curl;
    CURLcode e = curl_easy_setopt(curl, CURLOPT_URL, c->url);
    if (e == CURLE_OK)
        e = curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
    if (e == CURLE_OK)
        e = curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
    if (e == CURLE_OK)
        e = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    c->http_status = status;

    if (e != CURLE_OK) {
        const char *detail = c->curl_error[0] ? c->curl_error : curl_easy_strerror(e);
        int rc;
        switch (e) {
        case CURLE_COULDNT_CONNECT:
            rc = c->refused_address ? RC_CLIENT_ERR_INVALID : RC_CLIENT_ERR_CONNECT;
            if (c->refused_address)
                detail = "the address is not on loopback";
            break;
        case CURLE_OPERATION_TIMEDOUT:
            rc = RC_CLIENT_ERR_TIMEOUT;
            break;
        /* The connection broke mid-call: the peer died or closed it. */
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
            rc = RC_CLIENT_ERR_CONNECT;
            break;
        case CURLE_WRITE_ERROR:
            rc = c->body.error == HTTP_BODY_TOO_BIG ? RC_CLIENT_ERR_PARSE
                 : c->body.error == HTTP_BODY_NOMEM ? RC_CLIENT_ERR_NOMEM : RC_CLIENT_ERR_CURL;
            if (c->body.error == HTTP_BODY_TOO_BIG)
                detail = "the answer is larger than RC_CLIENT_BODY_MAX";
            break;
        case CURLE_OUT_OF_MEMORY:
            rc = RC_CLIENT_ERR_NOMEM;
            break;
        default:
            rc = RC_CLIENT_ERR_CURL;
            break;
        }
        rc_err(c, 0, "%s: %s", method, detail);
        return rc;
    }
    if (status != 200) {
        describe_http_failure(c, method);
        return RC_CLIENT_ERR_HTTP;
    }
    return 0;
}

/* The answer as a JSON object, or NULL with c->error set. */
static cJSON *answer_object(struct rc_client *c, const char *method)
{
    cJSON *root = cJSON_ParseWithLength(c->body.data ? c->body.data : "", c->body.len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        rc_err(c, 0, "%s: the answer is not a JSON object", method);
        return NULL;
    }
    return root;
}

/* A request body from a cJSON object, which it frees; NULL when out of memory. */
static char *print_request(cJSON *request)
{
    char *text = request ? cJSON_PrintUnformatted(request) : NULL;
    cJSON_Delete(request);
    return text;
}

/* --- core/stats ------------------------------------------------------------------------ */

static void read_transfer(const cJSON *item, struct rc_transfer *t)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
    const char *text = cJSON_IsString(name) ? name->valuestring : "";
    t->name_truncated = copy_tail(t->name, sizeof t->name, text, strlen(text));
    t->size = json_int64(item, "size");
    t->bytes = json_int64(item, "bytes");
    t->speed_bps = json_double(item, "speed");
    t->eta_s = json_int64(item, "eta");
    t->percentage = json_int64(item, "percentage");
}

int rc_client_stats(struct rc_client *c, struct rc_stats *out)
{
    static const char method[] = "core/stats";
    int rc = post(c, method, "{}");
    if (rc < 0)
        return rc;
    cJSON *root = answer_object(c, method);
    if (!root)
        return RC_CLIENT_ERR_PARSE;

    /* Checked before *out is touched, so a bad answer leaves it as it was. */
    const cJSON *transferring = cJSON_GetObjectItemCaseSensitive(root, "transferring");
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "bytes")) ||
        (transferring && !cJSON_IsArray(transferring) && !cJSON_IsNull(transferring))) {
        rc_err(c, 0, "%s: the answer is not rclone's stats object", method);
        rc = RC_CLIENT_ERR_PARSE;
        goto out;
    }

    out->bytes = json_int64(root, "bytes");
    out->total_bytes = json_int64(root, "totalBytes");
    out->speed_bps = json_double(root, "speed");
    out->eta_s = json_int64(root, "eta");
    out->transfers = json_int64(root, "transfers");
    out->total_transfers = json_int64(root, "totalTransfers");
    out->errors = json_int64(root, "errors");
    out->checks = json_int64(root, "checks");
    out->elapsed_s = json_double(root, "elapsedTime");
    out->fatal_error = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "fatalError"));
    out->retry_error = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "retryError"));
    out->transferring_total = 0;
    out->transferring_count = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, transferring) {
        out->transferring_total++;
        if (!cJSON_IsObject(item) || out->transferring_count == RC_CLIENT_INFLIGHT_MAX)
            continue;
        read_transfer(item, &out->transferring[out->transferring_count++]);
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

void rc_client_stats_to_stage(const struct rc_stats *s, struct ledger_stage *stage)
{
    stage->rc_bytes = s->bytes;
    stage->rc_speed = double_to_int64(s->speed_bps);
    stage->rc_eta_s = s->eta_s;
    stage->rc_errors = s->errors;

    size_t n = s->transferring_count;
    if (n > LEDGER_INFLIGHT_MAX)
        n = LEDGER_INFLIGHT_MAX;
    for (size_t i = 0; i < n; i++) {
        const struct rc_transfer *t = &s->transferring[i];
        struct ledger_inflight *f = &stage->inflight[i];
        /* Zeroed first so the bytes after the name's NUL are the same in every copy of the
         * slot (the ledger compares and flushes whole slots). */
        memset(f->name, 0, sizeof f->name);
        copy_tail(f->name, sizeof f->name, t->name, strlen(t->name));
        f->size = t->size;
        f->bytes = t->bytes;
        f->speed = double_to_int64(t->speed_bps);
    }
    memset(&stage->inflight[n], 0, (LEDGER_INFLIGHT_MAX - n) * sizeof stage->inflight[0]);
    stage->inflight_count = (int32_t)n;
}

/* --- core/bwlimit, operations/stat, core/quit ------------------------------------------ */

int rc_client_bwlimit(struct rc_client *c, const char *rate, int64_t *bytes_per_second_out)
{
    static const char method[] = "core/bwlimit";
    char *request = NULL;
    if (rate) {
        cJSON *obj = cJSON_CreateObject();
        if (obj && !cJSON_AddStringToObject(obj, "rate", rate)) {
            cJSON_Delete(obj);
            obj = NULL;
        }
        request = print_request(obj);
        if (!request) {
            return rc_err(c, RC_CLIENT_ERR_NOMEM, "%s: out of memory", method);
        }
    }
    int rc = post(c, method, request ? request : "{}");
    cJSON_free(request);
    if (rc < 0)
        return rc;

    cJSON *root = answer_object(c, method);
    if (!root)
        return RC_CLIENT_ERR_PARSE;
    const cJSON *bps = cJSON_GetObjectItemCaseSensitive(root, "bytesPerSecond");
    if (cJSON_IsNumber(bps)) {
        if (bytes_per_second_out)
            *bytes_per_second_out = double_to_int64(bps->valuedouble);
    } else {
        rc_err(c, 0, "%s: the answer has no bytesPerSecond", method);
        rc = RC_CLIENT_ERR_PARSE;
    }
    cJSON_Delete(root);
    return rc;
}

int rc_client_stat(struct rc_client *c, const char *fs, const char *remote, int64_t *size_out)
{
    static const char method[] = "operations/stat";
    if (!fs || !remote) {
        return rc_err(c, RC_CLIENT_ERR_INVALID,
                      "%s: an fs and a remote path are both needed", method);
    }
    /* filesOnly: a directory of that name answers null too, so "found" always means a file. */
    cJSON *obj = cJSON_CreateObject();
    cJSON *opt = obj ? cJSON_AddObjectToObject(obj, "opt") : NULL;
    if (!opt || !cJSON_AddStringToObject(obj, "fs", fs) ||
        !cJSON_AddStringToObject(obj, "remote", remote) ||
        !cJSON_AddTrueToObject(opt, "filesOnly")) {
        cJSON_Delete(obj);
        obj = NULL;
    }
    char *request = print_request(obj);
    if (!request) {
        return rc_err(c, RC_CLIENT_ERR_NOMEM, "%s: out of memory", method);
    }
    int rc = post(c, method, request);
    cJSON_free(request);
    if (rc < 0)
        return rc;

    cJSON *root = answer_object(c, method);
    if (!root)
        return RC_CLIENT_ERR_PARSE;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "item");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(item, "Size");
    if (cJSON_IsNull(item) || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "IsDir"))) {
        rc_err(c, 0, "%s: no such file", method);
        rc = RC_CLIENT_ERR_NOTFOUND;
    } else if (cJSON_IsObject(item) && cJSON_IsNumber(size)) {
        if (size_out)
            *size_out = double_to_int64(size->valuedouble);
    } else {
        rc_err(c, 0, "%s: the answer has neither an item with a Size nor null", method);
        rc = RC_CLIENT_ERR_PARSE;
    }
    cJSON_Delete(root);
    return rc;
}

int rc_client_quit(struct rc_client *c, int exit_code)
{
    char request[48];
    snprintf(request, sizeof request, "{\"exitCode\":%d}", exit_code);
    return post(c, "core/quit", request);
}

/* --- credentials ----------------------------------------------------------------------- */

int rc_client_make_credentials(char *user, size_t user_size, char *pass, size_t pass_size)
{
    /* 64 symbols, so a random byte's low 6 bits pick one without bias. The first character
     * comes from the 32 letters below instead: a leading '-' would read as an option if the
     * value ever went on a command line. */
    static const char symbols[64] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (!user || !pass || user_size < RC_CLIENT_USER_LEN + 1 ||
        pass_size < RC_CLIENT_PASS_LEN + 1)
        return RC_CLIENT_ERR_INVALID;

    unsigned char random[RC_CLIENT_USER_LEN + RC_CLIENT_PASS_LEN];
    size_t got = 0;
    while (got < sizeof random) {
        ssize_t n = getrandom(random + got, sizeof random - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            explicit_bzero(random, sizeof random);
            errno = saved;
            return RC_CLIENT_ERR_RANDOM;
        }
        got += (size_t)n;
    }
    const unsigned char *r = random;
    user[0] = symbols[*r++ & 31];
    for (size_t i = 1; i < RC_CLIENT_USER_LEN; i++)
        user[i] = symbols[*r++ & 63];
    user[RC_CLIENT_USER_LEN] = '\0';
    pass[0] = symbols[*r++ & 31];
    for (size_t i = 1; i < RC_CLIENT_PASS_LEN; i++)
        pass[i] = symbols[*r++ & 63];
    pass[RC_CLIENT_PASS_LEN] = '\0';
    explicit_bzero(random, sizeof random);
    return 0;
}
