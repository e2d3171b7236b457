
/*
 * JSON: the response writer.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <math.h>
#include <jansson.h>

#include "ngx_http_usage_json.h"
#include "ngx_http_usage_id.h"
#include "ngx_http_usage_number.h"
#include "ngx_http_usage_text.h"
#include "ngx_http_usage_time.h"


static void *ngx_http_usage_json_alloc(size_t size);
static void ngx_http_usage_json_free(void *p);
static u_char *ngx_http_usage_out_reserve(ngx_http_usage_out_t *out,
    size_t n);
static u_char *ngx_http_usage_out_escaped(u_char *p, u_char *s,
    u_char *end);


/*
 * Whether d is an integer a double holds exactly (|d| < 2^53), and which.
 * The range test is false for NaN and the infinities, so the conversion
 * is always defined.
 */

static ngx_inline ngx_uint_t
ngx_http_usage_exact_int(double d, int64_t *v)
{
    if (d > -9007199254740992.0 && d < 9007199254740992.0) {
        *v = (int64_t) d;
        return (double) *v == d;
    }

    return 0;
}


/* room for n more bytes: checked in place, grown by a call when short
 * (after a failed growth, what still fits lands in the old buffer, and
 * out->failed reports the failure all the same) */
#define ngx_http_usage_out_room(out, n)                                      \
    (((size_t) ((out)->end - (out)->pos) >= (size_t) (n))                    \
     ? (out)->pos : ngx_http_usage_out_reserve(out, n))


ngx_int_t
ngx_http_usage_out_init(ngx_http_usage_out_t *out, ngx_pool_t *pool,
    size_t size)
{
    out->start = ngx_pnalloc(pool, size);
    if (out->start == NULL) {
        return NGX_ERROR;
    }

    out->pos = out->start;
    out->end = out->start + size;
    out->pool = pool;
    out->failed = 0;

    return NGX_OK;
}


/* grows by doubling; a failed allocation makes every later write a no-op
 * and is reported once, by the caller, through out->failed */

static u_char *
ngx_http_usage_out_reserve(ngx_http_usage_out_t *out, size_t n)
{
    size_t   used, size;
    u_char  *p;

    if (out->failed) {
        return NULL;
    }

    if ((size_t) (out->end - out->pos) >= n) {
        return out->pos;
    }

    used = out->pos - out->start;
    size = ngx_max(2 * (size_t) (out->end - out->start), used + n);

    p = ngx_pnalloc(out->pool, size);
    if (p == NULL) {
        out->failed = 1;
        return NULL;
    }

    ngx_memcpy(p, out->start, used);

    out->start = p;
    out->pos = p + used;
    out->end = p + size;

    return out->pos;
}


void
ngx_http_usage_out_raw(ngx_http_usage_out_t *out, u_char *s, size_t len)
{
    u_char  *p;

    if (len == 0) {
        return;     /* s may be NULL: an empty method of a bad request */
    }

    p = ngx_http_usage_out_room(out, len);
    if (p == NULL) {
        return;
    }

    out->pos = ngx_cpymem(p, s, len);
}


/*
 * A quoted string, escaped as JSON.stringify() does.  Bytes that are not
 * valid UTF-8 (a raw request path can hold anything) become U+FFFD, so
 * that every answer stays valid JSON.
 */

void
ngx_http_usage_out_string(ngx_http_usage_out_t *out, u_char *s, size_t len)
{
    u_char  *p;

    p = ngx_http_usage_out_room(out, NGX_HTTP_USAGE_JSON_STRING_MAX(len));
    if (p == NULL) {
        return;
    }

    out->pos = ngx_http_usage_json_string(p, s, len);
}


/* the same into a buffer known to have NGX_HTTP_USAGE_JSON_STRING_MAX(len)
 * bytes of room */

u_char *
ngx_http_usage_json_string(u_char *p, u_char *s, size_t len)
{
    u_char  *end, *plain;

    *p++ = '"';

    /*
     * Names and ids are plain ASCII: this loop is all most strings see.
     * The table's address is held in a register: a store through a u_char
     * pointer may alias anything, and would reload it from the GOT.
     */
    plain = ngx_http_usage_json_plain_map;
    end = s + len;

    while (end - s >= 8 && !ngx_http_usage_json_special8(s)) {
        ngx_memcpy(p, s, 8);
        p += 8;
        s += 8;
    }

    for ( /* void */ ; s < end && plain[*s]; s++) {
        *p++ = *s;
    }

    if (s < end) {
        p = ngx_http_usage_out_escaped(p, s, end);
    }

    *p++ = '"';

    return p;
}


/* the rest of a string, from its first byte that is not plain ASCII */

static u_char *
ngx_http_usage_out_escaped(u_char *p, u_char *s, u_char *end)
{
    u_char  *next, c;

    static u_char  hex[] = "0123456789abcdef";

    for ( /* void */ ; s < end; s++) {

        /* the run of bytes written as they are */
        while (ngx_http_usage_json_plain(*s)) {
            *p++ = *s++;

            if (s == end) {
                return p;
            }
        }

        c = *s;

        if (c >= 0x80) {
            next = s;

            if (ngx_http_usage_utf8_decode(&next, end)
                == NGX_HTTP_USAGE_UTF8_INVALID)
            {
                p = ngx_cpymem(p, "\\ufffd", 6);
                continue;
            }

            p = ngx_cpymem(p, s, next - s);
            s = next - 1;
            continue;
        }

        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = c;
            continue;
        }

        *p++ = '\\';

        switch (c) {
        case '"':
        case '\\':
            *p++ = c;
            break;
        case '\b':
            *p++ = 'b';
            break;
        case '\f':
            *p++ = 'f';
            break;
        case '\n':
            *p++ = 'n';
            break;
        case '\r':
            *p++ = 'r';
            break;
        case '\t':
            *p++ = 't';
            break;
        default:
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0x0f];
        }
    }

    return p;
}


void
ngx_http_usage_out_uint(ngx_http_usage_out_t *out, uint64_t n)
{
    u_char  *p;

    p = ngx_http_usage_out_room(out, NGX_INT64_LEN);
    if (p == NULL) {
        return;
    }

    out->pos = ngx_http_usage_write_uint(p, n);
}


void
ngx_http_usage_out_key_uint(ngx_http_usage_out_t *out, u_char *key,
    size_t len, uint64_t n)
{
    ngx_http_usage_out_raw(out, key, len);
    ngx_http_usage_out_uint(out, n);
}


static void
ngx_http_usage_out_int(ngx_http_usage_out_t *out, int64_t n)
{
    u_char  *p;

    p = ngx_http_usage_out_room(out, NGX_INT64_LEN);
    if (p == NULL) {
        return;
    }

    out->pos = ngx_http_usage_write_int(p, n);
}


/*
 * Number.prototype.toString(): the shortest digits that read back as the
 * same double, then plain notation for exponents -7 < e < 21 and
 * d.ddde+x otherwise.
 */

void
ngx_http_usage_out_double(ngx_http_usage_out_t *out, double d)
{
    int       k, n, i, prec;
    char      buf[32], digits[24], *e;
    u_char   *p;
    int64_t   v;

    /*
     * The common case first, an integer a double holds exactly (a count,
     * the default value 1, -0 as "0"): written as JavaScript would,
     * without the search for the shortest round-trip form below.
     */
    if (ngx_http_usage_exact_int(d, &v)) {
        p = ngx_http_usage_out_room(out, NGX_INT64_LEN);
        if (p != NULL) {
            out->pos = ngx_http_usage_write_int(p, v);
        }

        return;
    }

    if (!isfinite(d)) {
        /* JSON.stringify(NaN) is null; the parser never produces one */
        ngx_http_usage_out_lit(out, "null");
        return;
    }

    p = ngx_http_usage_out_room(out, 32);
    if (p == NULL) {
        return;
    }

    if (d < 0) {
        *p++ = '-';
        d = -d;
    }

    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d) {
            break;
        }
    }

    /* buf is "d.ddde[+-]xx": collect the digits and the exponent */
    k = 0;
    for (e = buf; *e != 'e'; e++) {
        if (*e != '.') {
            digits[k++] = *e;
        }
    }

    while (k > 1 && digits[k - 1] == '0') {
        k--;
    }

    n = atoi(e + 1) + 1;    /* position of the decimal point */

    if (k <= n && n <= 21) {
        p = ngx_cpymem(p, digits, k);
        for (i = k; i < n; i++) {
            *p++ = '0';
        }

    } else if (0 < n && n <= 21) {
        p = ngx_cpymem(p, digits, n);
        *p++ = '.';
        p = ngx_cpymem(p, digits + n, k - n);

    } else if (-6 < n && n <= 0) {
        *p++ = '0';
        *p++ = '.';
        for (i = n; i < 0; i++) {
            *p++ = '0';
        }
        p = ngx_cpymem(p, digits, k);

    } else {
        *p++ = digits[0];
        if (k > 1) {
            *p++ = '.';
            p = ngx_cpymem(p, digits + 1, k - 1);
        }
        p = ngx_sprintf(p, "e%c%d", n - 1 < 0 ? '-' : '+',
                        n - 1 < 0 ? 1 - n : n - 1);
    }

    out->pos = p;
}


void
ngx_http_usage_out_iso(ngx_http_usage_out_t *out, int64_t ms)
{
    u_char  *p;

    p = ngx_http_usage_out_room(out, NGX_HTTP_USAGE_ISO_LEN + 2);
    if (p == NULL) {
        return;
    }

    *p++ = '"';
    p = ngx_http_usage_iso_time(p, ms);
    *p++ = '"';

    out->pos = p;
}


/*
 * {"name":count,...} or, with values, {"name":value,...} from an array of
 * ngx_http_usage_count_t.  A name the store found plain is copied as it
 * is: a summary writes each type's name twice.
 */

void
ngx_http_usage_out_counts(ngx_http_usage_out_t *out, ngx_array_t *counts,
    ngx_uint_t values)
{
    u_char                  *p;
    int64_t                  v;
    ngx_uint_t               i;
    ngx_http_usage_count_t  *c;

    ngx_http_usage_out_lit(out, "{");

    c = counts->elts;
    for (i = 0; i < counts->nelts; i++) {
        p = c[i].plain ? ngx_http_usage_out_room(out, c[i].name.len + 4
                                                      + NGX_INT64_LEN)
                       : NULL;

        if (p) {
            /* the name and, mostly, the number in place */
            if (i) {
                *p++ = ',';
            }

            *p++ = '"';
            p = ngx_cpymem(p, c[i].name.data, c[i].name.len);
            *p++ = '"';
            *p++ = ':';

            if (!values) {
                out->pos = ngx_http_usage_write_uint(p, c[i].count);
                continue;
            }

            if (ngx_http_usage_exact_int(c[i].value, &v)) {
                out->pos = ngx_http_usage_write_int(p, v);
                continue;
            }

            out->pos = p;
            ngx_http_usage_out_double(out, c[i].value);
            continue;
        }

        /* a name that needs escapes */

        if (i) {
            ngx_http_usage_out_lit(out, ",");
        }

        ngx_http_usage_out_string(out, c[i].name.data, c[i].name.len);
        ngx_http_usage_out_lit(out, ":");

        if (values) {
            ngx_http_usage_out_double(out, c[i].value);

        } else {
            ngx_http_usage_out_uint(out, c[i].count);
        }
    }

    ngx_http_usage_out_lit(out, "}");
}


void
ngx_http_usage_out_event(ngx_http_usage_out_t *out,
    ngx_http_usage_record_t *rec)
{
    u_char  *p;

    p = ngx_http_usage_out_room(out, sizeof("{\"id\":\"\",") + 36);
    if (p == NULL) {
        return;
    }

    if (rec->id.len) {
        out->pos = ngx_cpymem(p, "{\"id\":", sizeof("{\"id\":") - 1);
        ngx_http_usage_out_string(out, rec->id.data, rec->id.len);

    } else {
        p = ngx_cpymem(p, "{\"id\":\"", sizeof("{\"id\":\"") - 1);
        p = ngx_http_usage_uuid_format(p, rec->uuid);
        *p++ = '"';
        out->pos = p;
    }

    ngx_http_usage_out_lit(out, ",\"entityId\":");
    ngx_http_usage_out_string(out, rec->entity.data, rec->entity.len);
    ngx_http_usage_out_lit(out, ",\"eventType\":");
    ngx_http_usage_out_string(out, rec->type.data, rec->type.len);
    ngx_http_usage_out_lit(out, ",\"metadata\":");
    ngx_http_usage_out_raw(out, rec->metadata.data, rec->metadata.len);
    ngx_http_usage_out_lit(out, ",\"value\":");
    ngx_http_usage_out_double(out, rec->value);
    ngx_http_usage_out_lit(out, ",\"timestamp\":");
    ngx_http_usage_out_iso(out, rec->time);
    ngx_http_usage_out_lit(out, ",\"createdAt\":");
    ngx_http_usage_out_int(out, rec->created);
    ngx_http_usage_out_lit(out, "}");
}


/* a parsed value, compact, keys in the order they were sent */

void
ngx_http_usage_out_value(ngx_http_usage_out_t *out, json_t *v)
{
    size_t       i;
    json_t      *item;
    const char  *key;
    ngx_uint_t   first;

    switch (json_typeof(v)) {

    case JSON_OBJECT:
        ngx_http_usage_out_lit(out, "{");
        first = 1;

        json_object_foreach(v, key, item) {
            if (!first) {
                ngx_http_usage_out_lit(out, ",");
            }

            first = 0;
            ngx_http_usage_out_string(out, (u_char *) key, ngx_strlen(key));
            ngx_http_usage_out_lit(out, ":");
            ngx_http_usage_out_value(out, item);
        }

        ngx_http_usage_out_lit(out, "}");
        break;

    case JSON_ARRAY:
        ngx_http_usage_out_lit(out, "[");

        json_array_foreach(v, i, item) {
            if (i) {
                ngx_http_usage_out_lit(out, ",");
            }

            ngx_http_usage_out_value(out, item);
        }

        ngx_http_usage_out_lit(out, "]");
        break;

    case JSON_STRING:
        ngx_http_usage_out_string(out, (u_char *) json_string_value(v),
                                  json_string_length(v));
        break;

    case JSON_INTEGER:
        ngx_http_usage_out_int(out, json_integer_value(v));
        break;

    case JSON_REAL:
        ngx_http_usage_out_double(out, json_real_value(v));
        break;

    case JSON_TRUE:
        ngx_http_usage_out_lit(out, "true");
        break;

    case JSON_FALSE:
        ngx_http_usage_out_lit(out, "false");
        break;

    default: /* JSON_NULL */
        ngx_http_usage_out_lit(out, "null");
        break;
    }
}


/* the pool jansson allocates from while a body is parsed */
static ngx_pool_t  *ngx_http_usage_json_pool;


/*
 * jansson allocates every value of the tree with its own malloc(): in a
 * worker its allocator is the pool set by ngx_http_usage_json_pool_set(),
 * and freeing is a no-op, the pool goes with the request (so the tree's
 * strings outlive json_decref()).  Set once per worker process; workers
 * are single-threaded.  The master keeps jansson's malloc().
 */

void
ngx_http_usage_json_init(void)
{
    json_set_alloc_funcs(ngx_http_usage_json_alloc, ngx_http_usage_json_free);
}


ngx_pool_t *
ngx_http_usage_json_pool_set(ngx_pool_t *pool)
{
    ngx_pool_t  *old;

    old = ngx_http_usage_json_pool;
    ngx_http_usage_json_pool = pool;

    return old;
}


static void *
ngx_http_usage_json_alloc(size_t size)
{
    if (ngx_http_usage_json_pool == NULL) {
        return NULL;
    }

    return ngx_palloc(ngx_http_usage_json_pool, size);
}


static void
ngx_http_usage_json_free(void *p)
{
    /* pool memory: released with the request */
}


/*
 * Metadata is copied into answers as it is stored: what a state file or
 * another instance brings must be a JSON object of valid UTF-8 (jansson
 * checks both strictly), or an answer that shows it would not be JSON.
 * Empty: no metadata.  The state file's loader runs in the master (pool
 * NULL: malloc()), the stream's reader in a worker.
 */

ngx_uint_t
ngx_http_usage_json_object_ok(ngx_str_t *metadata, ngx_pool_t *pool)
{
    json_t        *root;
    ngx_uint_t     ok;
    ngx_pool_t    *old;
    json_error_t   err;

    if (metadata->len == 0) {
        return 1;
    }

    /* pool: the tree's memory in a worker; NULL in the master */
    old = pool ? ngx_http_usage_json_pool_set(pool) : NULL;

    root = json_loadb((char *) metadata->data, metadata->len,
                      JSON_ALLOW_NUL|JSON_DECODE_INT_AS_REAL, &err);

    if (pool) {
        (void) ngx_http_usage_json_pool_set(old);
    }

    if (root == NULL) {
        return 0;
    }

    ok = json_is_object(root);
    json_decref(root);

    return ok;
}
