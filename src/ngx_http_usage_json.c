
/*
 * JSON: the response writer and the event body parser.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <math.h>

#include "ngx_http_usage_json.h"
#include "ngx_http_usage_util.h"


#define NGX_HTTP_USAGE_ERRORS_MAX  12


/* the pool jansson allocates from while a body is parsed */
static ngx_pool_t  *ngx_http_usage_json_pool;

/* check_field(): the value is a string (so "must be a string" is not due) */
#define NGX_HTTP_USAGE_NAME_STRING 0x80


static u_char *ngx_http_usage_out_reserve(ngx_http_usage_out_t *out,
    size_t n);
static ngx_int_t ngx_http_usage_parse_event_tree(ngx_pool_t *pool,
    u_char *body, size_t len, ngx_http_usage_limits_t *limits,
    ngx_http_usage_record_t *rec, ngx_str_t *error);
static void *ngx_http_usage_json_alloc(size_t size);
static void ngx_http_usage_json_free(void *p);
static void ngx_http_usage_check_extras(json_t *root,
    ngx_http_usage_limits_t *limits, ngx_http_usage_record_t *rec,
    ngx_str_t *errors, ngx_uint_t *n, ngx_pool_t *pool);
static ngx_uint_t ngx_http_usage_json_depth(json_t *v, ngx_uint_t limit);
static void ngx_http_usage_check_field(json_t *v, const char *name,
    size_t max_chars, ngx_str_t *value, ngx_str_t *errors, ngx_uint_t *n,
    ngx_pool_t *pool);


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

    p = ngx_http_usage_out_reserve(out, len);
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
    u_char  *p, *end, *next, c;

    static u_char  hex[] = "0123456789abcdef";

    /* worst case: every byte becomes \u00XX or \ufffd */
    p = ngx_http_usage_out_reserve(out, len * 6 + 2);
    if (p == NULL) {
        return;
    }

    *p++ = '"';

    for (end = s + len; s < end; s++) {
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

    *p++ = '"';

    out->pos = p;
}


void
ngx_http_usage_out_uint(ngx_http_usage_out_t *out, uint64_t n)
{
    u_char  *p;

    p = ngx_http_usage_out_reserve(out, NGX_INT64_LEN);
    if (p == NULL) {
        return;
    }

    out->pos = ngx_sprintf(p, "%uL", n);
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

    p = ngx_http_usage_out_reserve(out, NGX_INT64_LEN);
    if (p == NULL) {
        return;
    }

    out->pos = ngx_sprintf(p, "%L", n);
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

    if (!isfinite(d)) {
        /* JSON.stringify(NaN) is null; the parser never produces one */
        ngx_http_usage_out_lit(out, "null");
        return;
    }

    if (d == 0) {
        ngx_http_usage_out_lit(out, "0");
        return;
    }

    p = ngx_http_usage_out_reserve(out, 32);
    if (p == NULL) {
        return;
    }

    /* the common case, an integer a double holds exactly (a count, the
     * default value 1): written as JavaScript would, without the search
     * for the shortest round-trip form below */
    if (d > -9007199254740992.0 && d < 9007199254740992.0
        && d == (double) (int64_t) d)
    {
        out->pos = ngx_sprintf(p, "%L", (int64_t) d);
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

    p = ngx_http_usage_out_reserve(out, NGX_HTTP_USAGE_ISO_LEN + 2);
    if (p == NULL) {
        return;
    }

    *p++ = '"';
    p = ngx_http_usage_iso_time(p, ms);
    *p++ = '"';

    out->pos = p;
}


/* {"name":count,...} from an array of ngx_http_usage_count_t */

void
ngx_http_usage_out_counts(ngx_http_usage_out_t *out, ngx_array_t *counts)
{
    ngx_uint_t               i;
    ngx_http_usage_count_t  *c;

    ngx_http_usage_out_lit(out, "{");

    c = counts->elts;
    for (i = 0; i < counts->nelts; i++) {
        if (i) {
            ngx_http_usage_out_lit(out, ",");
        }

        ngx_http_usage_out_string(out, c[i].name.data, c[i].name.len);
        ngx_http_usage_out_lit(out, ":");
        ngx_http_usage_out_uint(out, c[i].count);
    }

    ngx_http_usage_out_lit(out, "}");
}


void
ngx_http_usage_out_event(ngx_http_usage_out_t *out,
    ngx_http_usage_record_t *rec)
{
    u_char  *p;

    p = ngx_http_usage_out_reserve(out, sizeof("{\"id\":\"\",") + 36);
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


/*
 * Parses and validates a POST /v1/events body.  NGX_OK: rec holds the
 * trimmed names and the serialized metadata, in the pool.  NGX_DECLINED:
 * error holds every failing rule, in the order of the old service.
 */

/*
 * jansson allocates every value of the tree with its own malloc(): while
 * a body is parsed, its allocator is the request's pool, and freeing is a
 * no-op, the pool goes with the request.  Set once per process; workers
 * are single-threaded, and nothing else here calls jansson.
 */

void
ngx_http_usage_json_init(void)
{
    json_set_alloc_funcs(ngx_http_usage_json_alloc, ngx_http_usage_json_free);
}


ngx_int_t
ngx_http_usage_parse_event(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_http_usage_limits_t *limits, ngx_http_usage_record_t *rec,
    ngx_str_t *error)
{
    ngx_int_t  rc;

    ngx_http_usage_json_pool = pool;

    rc = ngx_http_usage_parse_event_tree(pool, body, len, limits, rec,
                                         error);

    ngx_http_usage_json_pool = NULL;

    return rc;
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


static ngx_int_t
ngx_http_usage_parse_event_tree(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_http_usage_limits_t *limits, ngx_http_usage_record_t *rec,
    ngx_str_t *error)
{
    u_char                *p;
    size_t                 size;
    json_t                *root, *meta;
    ngx_int_t              rc;
    ngx_uint_t             i, n;
    json_error_t           err;
    ngx_str_t              errors[NGX_HTTP_USAGE_ERRORS_MAX];
    ngx_http_usage_out_t   out;

    /* a UTF-8 byte order mark is skipped, as express.json() does */
    if (len >= 3 && body[0] == 0xef && body[1] == 0xbb && body[2] == 0xbf) {
        body += 3;
        len -= 3;
    }

    /* an empty body reads as {}, as express.json() left it */
    if (len == 0) {
        root = json_object();

    } else {
        root = json_loadb((char *) body, len, JSON_DECODE_ANY|JSON_ALLOW_NUL,
                          &err);

        if (root == NULL
            && json_error_code(&err) == json_error_numeric_overflow)
        {
            /* an integer past 64 bits is still a JSON number */
            root = json_loadb((char *) body, len,
                              JSON_DECODE_ANY|JSON_ALLOW_NUL
                              |JSON_DECODE_INT_AS_REAL, &err);
        }

        if (root == NULL) {
            if (json_error_code(&err) == json_error_invalid_utf8) {
                ngx_str_set(error, "Request body must be valid UTF-8");
                return NGX_DECLINED;
            }

            if (json_error_code(&err) == json_error_stack_overflow) {
                /* jansson stops at 2048 levels, far past any metadata
                 * limit, before the fields can be checked */
                ngx_str_set(error, "Request body is nested too deeply");
                return NGX_DECLINED;
            }

            error->data = ngx_pnalloc(pool, sizeof(err.text) + 64);
            if (error->data == NULL) {
                return NGX_ERROR;
            }

            error->len = ngx_sprintf(error->data,
                                     "Malformed JSON: %s at line %d column %d",
                                     err.text, err.line, err.column)
                         - error->data;
            return NGX_DECLINED;
        }
    }

    if (root == NULL) {
        return NGX_ERROR;
    }

    if (!json_is_object(root)) {
        json_decref(root);
        ngx_str_set(error, "Request body must be a JSON object");
        return NGX_DECLINED;
    }

    n = 0;
    rc = NGX_ERROR;

    ngx_http_usage_check_field(json_object_get(root, "entityId"), "entityId",
                               255, &rec->entity, errors, &n, pool);
    ngx_http_usage_check_field(json_object_get(root, "eventType"),
                               "eventType", 100, &rec->type, errors, &n,
                               pool);

    meta = json_object_get(root, "metadata");

    if (meta == NULL) {
        ngx_str_set(&rec->metadata, "{}");

    } else if (!json_is_object(meta)) {
        ngx_str_set(&errors[n], "metadata must be an object");
        n++;

    } else if (ngx_http_usage_json_depth(meta, limits->metadata_max_depth)
               > limits->metadata_max_depth)
    {
        ngx_str_set(&errors[n], "metadata is nested too deeply");
        n++;

    } else {
        if (ngx_http_usage_out_init(&out, pool, 256) != NGX_OK) {
            goto done;
        }

        ngx_http_usage_out_value(&out, meta);

        if (out.failed) {
            goto done;
        }

        rec->metadata.data = out.start;
        rec->metadata.len = out.pos - out.start;

        if (rec->metadata.len > limits->metadata_max_size) {
            p = ngx_pnalloc(pool, 64);
            if (p == NULL) {
                goto done;
            }

            errors[n].data = p;
            errors[n++].len = ngx_sprintf(p, "metadata must be %uz bytes or "
                                          "less", limits->metadata_max_size)
                              - p;
        }
    }

    ngx_http_usage_check_extras(root, limits, rec, errors, &n, pool);

    for (i = 0; i < n; i++) {
        if (errors[i].data == NULL) {
            goto done;      /* an allocation failed while checking */
        }
    }

    if (n == 0) {
        rc = NGX_OK;
        goto done;
    }

    size = 0;
    for (i = 0; i < n; i++) {
        size += errors[i].len + 2;
    }

    p = ngx_pnalloc(pool, size);
    if (p == NULL) {
        goto done;
    }

    error->data = p;

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
            *p++ = ' ';
        }

        p = ngx_cpymem(p, errors[i].data, errors[i].len);
    }

    error->len = p - error->data;
    rc = NGX_DECLINED;

done:

    json_decref(root);

    return rc;
}


/*
 * The fields of API.md part 3, after the old service's rules: a client
 * id, a metered value, and the client's own event time.
 */

static void
ngx_http_usage_check_extras(json_t *root, ngx_http_usage_limits_t *limits,
    ngx_http_usage_record_t *rec, ngx_str_t *errors, ngx_uint_t *n,
    ngx_pool_t *pool)
{
    size_t   i, chars;
    json_t  *v;

    ngx_str_null(&rec->id);
    rec->value = 1;
    rec->has_time = 0;

    v = json_object_get(root, "id");

    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            ngx_str_set(&errors[*n], "id must be a string");
            (*n)++;

        } else {
            rec->id.data = (u_char *) json_string_value(v);
            rec->id.len = json_string_length(v);
            chars = ngx_http_usage_utf8_chars(rec->id.data, rec->id.len);

            for (i = 0; i < rec->id.len; i++) {
                if (rec->id.data[i] < 0x20 || rec->id.data[i] == 0x7f) {
                    break;
                }
            }

            if (chars == 0 || chars > 128) {
                ngx_str_set(&errors[*n], "id must be 1 to 128 characters");
                (*n)++;

            } else if (i < rec->id.len) {
                ngx_str_set(&errors[*n],
                            "id must not contain control characters");
                (*n)++;

            } else {
                /* the jansson tree goes away: keep a copy */
                rec->id.data = ngx_pstrdup(pool, &rec->id);
                if (rec->id.data == NULL) {
                    errors[(*n)++].data = NULL;
                }
            }
        }
    }

    v = json_object_get(root, "value");

    if (v && !json_is_null(v)) {
        /* JSON has no NaN or Infinity: any number is finite */
        if (json_is_number(v)) {
            rec->value = json_number_value(v);

        } else {
            ngx_str_set(&errors[*n], "value must be a finite number");
            (*n)++;
        }
    }

    v = json_object_get(root, "timestamp");

    if (v && !json_is_null(v)) {
        if (!json_is_string(v)
            || ngx_http_usage_parse_iso((u_char *) json_string_value(v),
                                        json_string_length(v), &rec->time)
               != NGX_OK)
        {
            ngx_str_set(&errors[*n], "timestamp must be a valid ISO8601 date");
            (*n)++;

        } else if (rec->time < limits->now - limits->retention) {
            ngx_str_set(&errors[*n], "timestamp must be within the "
                                     "retention window");
            (*n)++;

        } else if (rec->time > limits->now + NGX_HTTP_USAGE_FUTURE_MAX) {
            ngx_str_set(&errors[*n], "timestamp must not be more than "
                                     "5 minutes in the future");
            (*n)++;

        } else {
            rec->has_time = 1;
        }
    }
}


static ngx_uint_t
ngx_http_usage_json_depth(json_t *v, ngx_uint_t limit)
{
    size_t       i;
    json_t      *item;
    const char  *key;
    ngx_uint_t   d, max;

    if (!json_is_object(v) && !json_is_array(v)) {
        return 0;
    }

    if (limit == 0) {
        return 1;       /* already too deep: stop descending */
    }

    max = 0;

    if (json_is_object(v)) {
        json_object_foreach(v, key, item) {
            d = ngx_http_usage_json_depth(item, limit - 1);
            max = ngx_max(max, d);
        }

    } else {
        json_array_foreach(v, i, item) {
            d = ngx_http_usage_json_depth(item, limit - 1);
            max = ngx_max(max, d);
        }
    }

    return max + 1;
}


/* entityId and eventType: required, a string, no control characters,
 * at most max_chars code points once trimmed */

static void
ngx_http_usage_check_field(json_t *v, const char *name, size_t max_chars,
    ngx_str_t *value, ngx_str_t *errors, ngx_uint_t *n, ngx_pool_t *pool)
{
    u_char      *p;
    size_t       len;
    ngx_str_t    s;
    ngx_uint_t   flags;

    len = ngx_strlen(name);

    if (v == NULL || json_is_null(v)) {
        flags = NGX_HTTP_USAGE_NAME_EMPTY;

    } else if (!json_is_string(v)) {
        flags = 0;

    } else {
        s.data = (u_char *) json_string_value(v);
        s.len = json_string_length(v);

        flags = ngx_http_usage_check_name(&s, max_chars);

        if (flags == 0) {
            value->data = ngx_pnalloc(pool, s.len);
            if (value->data == NULL) {
                errors[(*n)++].data = NULL;
                return;
            }

            ngx_memcpy(value->data, s.data, s.len);
            value->len = s.len;
            return;
        }

        flags |= NGX_HTTP_USAGE_NAME_STRING;
    }

    /* at most two messages per field */
    p = ngx_pnalloc(pool, 2 * (len + 48));

    if (flags & NGX_HTTP_USAGE_NAME_EMPTY) {
        errors[*n].data = p;
        errors[(*n)++].len = p ? ngx_sprintf(p, "%s is required", name) - p
                               : 0;
        p = p ? p + len + 48 : NULL;
    }

    if (!(flags & NGX_HTTP_USAGE_NAME_STRING)) {
        errors[*n].data = p;
        errors[(*n)++].len = p ? ngx_sprintf(p, "%s must be a string", name)
                                 - p
                               : 0;
        p = p ? p + len + 48 : NULL;
    }

    if (flags & NGX_HTTP_USAGE_NAME_CONTROL) {
        errors[*n].data = p;
        errors[(*n)++].len = p ? ngx_sprintf(p, "%s must not contain control "
                                             "characters", name) - p
                               : 0;
        p = p ? p + len + 48 : NULL;
    }

    if (flags & NGX_HTTP_USAGE_NAME_LONG) {
        errors[*n].data = p;
        errors[(*n)++].len = p ? ngx_sprintf(p, "%s must be %uz characters "
                                             "or less", name, max_chars) - p
                               : 0;
    }
}
