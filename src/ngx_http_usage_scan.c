
/*
 * A single pass over a POST /v1/events body: the fields the API reads are
 * picked out as the bytes go by, and metadata is written compact while it
 * is read.  No tree, no hashing, no allocation but the metadata's copy
 * and the rare string with escapes.
 *
 * It answers only for bodies it is sure of.  Anything unusual (a syntax
 * error, an escaped key, a duplicate key inside metadata, a very long
 * integer, deep nesting) is NGX_DECLINED, and the body goes to jansson,
 * which decides and words the error: both readers give the same fields
 * and the same metadata bytes for every body this one accepts.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <math.h>

#include "ngx_http_usage_body.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_scan.h"
#include "ngx_http_usage_text.h"


/* containers open at once; deeper bodies go to jansson */
#define NGX_HTTP_USAGE_SCAN_DEPTH     64

/* keys of one metadata object checked for duplicates; more go to jansson */
#define NGX_HTTP_USAGE_SCAN_KEYS      32

/* an integer of at most 15 digits is exact in int64 and in a double */
#define NGX_HTTP_USAGE_SCAN_DIGITS    15


typedef struct {
    u_char                  *pos;
    u_char                  *end;
    ngx_pool_t              *pool;
    ngx_http_usage_out_t    *out;        /* metadata's writer, or NULL */
    ngx_uint_t               depth;      /* containers open */
    ngx_uint_t               meta_base;  /* depth outside metadata */
    ngx_uint_t               meta_depth; /* deepest level of metadata */
} ngx_http_usage_scan_t;


static void ngx_http_usage_scan_init(ngx_http_usage_scan_t *s,
    ngx_pool_t *pool, u_char *body, size_t len);
static ngx_int_t ngx_http_usage_scan_fields(ngx_http_usage_scan_t *s,
    ngx_http_usage_fields_t *fields);
static ngx_http_usage_field_t *ngx_http_usage_scan_field(
    ngx_http_usage_fields_t *fields, ngx_str_t *key);
static ngx_int_t ngx_http_usage_scan_metadata(ngx_http_usage_scan_t *s,
    ngx_http_usage_fields_t *fields);
static ngx_int_t ngx_http_usage_scan_value(ngx_http_usage_scan_t *s,
    ngx_http_usage_field_t *f);
static ngx_int_t ngx_http_usage_scan_object(ngx_http_usage_scan_t *s);
static ngx_int_t ngx_http_usage_scan_array(ngx_http_usage_scan_t *s);
static ngx_int_t ngx_http_usage_scan_open(ngx_http_usage_scan_t *s,
    char *pair);
static void ngx_http_usage_scan_close(ngx_http_usage_scan_t *s, char *pair);
static ngx_int_t ngx_http_usage_scan_colon(ngx_http_usage_scan_t *s);
static ngx_int_t ngx_http_usage_scan_next(ngx_http_usage_scan_t *s,
    u_char close);
static ngx_int_t ngx_http_usage_scan_string(ngx_http_usage_scan_t *s,
    ngx_str_t *raw, ngx_uint_t *escaped);
static ngx_int_t ngx_http_usage_scan_unescape(ngx_pool_t *pool,
    ngx_str_t *raw, ngx_str_t *value);
static ngx_int_t ngx_http_usage_scan_number(ngx_http_usage_scan_t *s,
    ngx_http_usage_field_t *f);
static ngx_int_t ngx_http_usage_scan_literal(ngx_http_usage_scan_t *s,
    char *word, size_t len);
static ngx_int_t ngx_http_usage_scan_hex4(u_char *p, uint32_t *c);


#define ngx_http_usage_scan_ws(s)                                            \
    while ((s)->pos < (s)->end                                               \
           && (*(s)->pos == ' ' || *(s)->pos == '\n'                         \
               || *(s)->pos == '\r' || *(s)->pos == '\t'))                   \
    {                                                                        \
        (s)->pos++;                                                          \
    }


ngx_int_t
ngx_http_usage_scan_event(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_http_usage_fields_t *fields)
{
    ngx_int_t              rc;
    ngx_http_usage_scan_t  s;

    ngx_http_usage_scan_init(&s, pool, body, len);

    ngx_http_usage_scan_ws(&s);

    rc = ngx_http_usage_scan_fields(&s, fields);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_usage_scan_ws(&s);

    return (s.pos == s.end) ? NGX_OK : NGX_DECLINED;
}


/*
 * A batch, {"events": [{...}, ...]} and nothing else, each event's fields
 * handed to "each" as they are read; NGX_DECLINED for anything else
 * (another key, an event that is not an object, what scan_event() would
 * decline), which then goes to jansson whole.  "each" may stop the scan
 * with NGX_DECLINED or NGX_ERROR.
 */

ngx_int_t
ngx_http_usage_scan_batch(ngx_pool_t *pool, u_char *body, size_t len,
    ngx_http_usage_scan_each_pt each, void *data)
{
    ngx_int_t                rc;
    ngx_str_t                key;
    ngx_uint_t               escaped;
    ngx_http_usage_scan_t    s;
    ngx_http_usage_fields_t  fields;

    ngx_http_usage_scan_init(&s, pool, body, len);

    ngx_http_usage_scan_ws(&s);

    if (s.pos == s.end || *s.pos++ != '{') {
        return NGX_DECLINED;
    }

    ngx_http_usage_scan_ws(&s);

    if (s.pos == s.end || *s.pos != '"'
        || ngx_http_usage_scan_string(&s, &key, &escaped) != NGX_OK
        || escaped || key.len != 6 || ngx_strncmp(key.data, "events", 6) != 0
        || ngx_http_usage_scan_colon(&s) != NGX_OK
        || *s.pos++ != '[')
    {
        return NGX_DECLINED;
    }

    s.depth = 2;

    for ( ;; ) {
        ngx_http_usage_scan_ws(&s);

        rc = ngx_http_usage_scan_fields(&s, &fields);

        if (rc == NGX_OK) {
            rc = each(data, &fields);
        }

        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_usage_scan_next(&s, ']');

        if (rc == NGX_AGAIN) {
            continue;
        }

        if (rc != NGX_OK) {
            return NGX_DECLINED;
        }

        s.pos++;
        break;
    }

    s.depth = 1;

    ngx_http_usage_scan_ws(&s);

    if (s.pos == s.end || *s.pos++ != '}') {
        return NGX_DECLINED;
    }

    ngx_http_usage_scan_ws(&s);

    return (s.pos == s.end) ? NGX_OK : NGX_DECLINED;
}


static void
ngx_http_usage_scan_init(ngx_http_usage_scan_t *s, ngx_pool_t *pool,
    u_char *body, size_t len)
{
    s->pos = body;
    s->end = body + len;
    s->pool = pool;
    s->out = NULL;
    s->depth = 1;
    s->meta_base = 0;
    s->meta_depth = 0;
}


/*
 * One event object at s->pos, up to and past its closing brace: the
 * fields the API reads, each other key checked and skipped
 */

static ngx_int_t
ngx_http_usage_scan_fields(ngx_http_usage_scan_t *s,
    ngx_http_usage_fields_t *fields)
{
    ngx_int_t                rc;
    ngx_str_t                key;
    ngx_uint_t               escaped;
    ngx_http_usage_field_t  *f;

    ngx_memzero(fields, sizeof(ngx_http_usage_fields_t));

    if (s->pos == s->end || *s->pos++ != '{') {
        return NGX_DECLINED;     /* not an object, or not JSON: jansson */
    }

    ngx_http_usage_scan_ws(s);

    if (s->pos < s->end && *s->pos == '}') {
        s->pos++;
        return NGX_OK;
    }

    for ( ;; ) {
        if (s->pos == s->end || *s->pos != '"') {
            return NGX_DECLINED;
        }

        rc = ngx_http_usage_scan_string(s, &key, &escaped);
        if (rc != NGX_OK || escaped) {
            /* an escaped key may spell a field's name: jansson decodes */
            return NGX_DECLINED;
        }

        if (ngx_http_usage_scan_colon(s) != NGX_OK) {
            return NGX_DECLINED;
        }

        f = ngx_http_usage_scan_field(fields, &key);

        if (f == &fields->metadata && *s->pos == '{') {
            rc = ngx_http_usage_scan_metadata(s, fields);

        } else {
            rc = ngx_http_usage_scan_value(s, f);
        }

        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_usage_scan_next(s, '}');

        if (rc == NGX_AGAIN) {
            continue;
        }

        if (rc != NGX_OK) {
            return NGX_DECLINED;
        }

        s->pos++;

        return NGX_OK;
    }
}


/* the field a key names, or NULL for a key the API does not read */

static ngx_http_usage_field_t *
ngx_http_usage_scan_field(ngx_http_usage_fields_t *fields, ngx_str_t *key)
{
    switch (key->len) {

    case 2:
        if (ngx_strncmp(key->data, "id", 2) == 0) {
            return &fields->id;
        }
        break;

    case 5:
        if (ngx_strncmp(key->data, "value", 5) == 0) {
            return &fields->value;
        }
        break;

    case 8:
        if (ngx_strncmp(key->data, "entityId", 8) == 0) {
            return &fields->entity;
        }

        if (ngx_strncmp(key->data, "metadata", 8) == 0) {
            return &fields->metadata;
        }
        break;

    case 9:
        if (ngx_strncmp(key->data, "eventType", 9) == 0) {
            return &fields->type;
        }

        if (ngx_strncmp(key->data, "timestamp", 9) == 0) {
            return &fields->timestamp;
        }
        break;
    }

    return NULL;
}


/* the metadata object, written compact while it is read; a repeated key:
 * the last one counts, as in jansson */

static ngx_int_t
ngx_http_usage_scan_metadata(ngx_http_usage_scan_t *s,
    ngx_http_usage_fields_t *fields)
{
    ngx_int_t              rc;
    ngx_http_usage_out_t   out;

    if (ngx_http_usage_out_init(&out, s->pool, 256) != NGX_OK) {
        return NGX_ERROR;
    }

    s->out = &out;
    s->meta_base = s->depth;
    s->meta_depth = 0;

    rc = ngx_http_usage_scan_object(s);

    s->out = NULL;

    if (rc != NGX_OK) {
        return rc;
    }

    if (out.failed) {
        return NGX_ERROR;
    }

    fields->metadata.type = NGX_HTTP_USAGE_FIELD_OBJECT;
    fields->metadata.str.data = out.start;
    fields->metadata.str.len = out.pos - out.start;
    fields->metadata_depth = s->meta_depth;

    return NGX_OK;
}


/* one value at s->pos (not whitespace); f, if not NULL, records it */

static ngx_int_t
ngx_http_usage_scan_value(ngx_http_usage_scan_t *s, ngx_http_usage_field_t *f)
{
    ngx_int_t   rc;
    ngx_str_t   raw, value;
    ngx_uint_t  escaped;

    switch (*s->pos) {

    case '{':
        if (f) {
            f->type = NGX_HTTP_USAGE_FIELD_OBJECT;
        }

        return ngx_http_usage_scan_object(s);

    case '[':
        if (f) {
            f->type = NGX_HTTP_USAGE_FIELD_OTHER;
        }

        return ngx_http_usage_scan_array(s);

    case '"':
        rc = ngx_http_usage_scan_string(s, &raw, &escaped);
        if (rc != NGX_OK || (f == NULL && s->out == NULL)) {
            return rc;
        }

        if (escaped) {
            rc = ngx_http_usage_scan_unescape(s->pool, &raw, &value);
            if (rc != NGX_OK) {
                return rc;
            }

        } else {
            value = raw;
        }

        if (f) {
            f->type = NGX_HTTP_USAGE_FIELD_STRING;
            f->str = value;

        } else if (escaped) {
            ngx_http_usage_out_string(s->out, value.data, value.len);

        } else {
            /* valid UTF-8 and nothing to escape: as JSON.stringify()
             * would write it */
            ngx_http_usage_out_raw(s->out, raw.data - 1, raw.len + 2);
        }

        return NGX_OK;

    case 't':
        if (f) {
            f->type = NGX_HTTP_USAGE_FIELD_OTHER;
        }

        return ngx_http_usage_scan_literal(s, "true", 4);

    case 'f':
        if (f) {
            f->type = NGX_HTTP_USAGE_FIELD_OTHER;
        }

        return ngx_http_usage_scan_literal(s, "false", 5);

    case 'n':
        if (f) {
            f->type = NGX_HTTP_USAGE_FIELD_NULL;
        }

        return ngx_http_usage_scan_literal(s, "null", 4);

    default:
        return ngx_http_usage_scan_number(s, f);
    }
}


static ngx_int_t
ngx_http_usage_scan_object(ngx_http_usage_scan_t *s)
{
    ngx_int_t   rc;
    ngx_str_t   key, keys[NGX_HTTP_USAGE_SCAN_KEYS];
    ngx_uint_t  n, i, escaped;

    rc = ngx_http_usage_scan_open(s, "{}");

    if (rc == NGX_DONE) {
        goto end;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    n = 0;

    for ( ;; ) {
        if (s->pos == s->end || *s->pos != '"') {
            return NGX_DECLINED;
        }

        rc = ngx_http_usage_scan_string(s, &key, &escaped);
        if (rc != NGX_OK || escaped) {
            return NGX_DECLINED;
        }

        if (s->out) {
            /*
             * A key given twice keeps its first place and its last value:
             * jansson (and JSON.parse) write it so, and this pass cannot.
             */

            if (n == NGX_HTTP_USAGE_SCAN_KEYS) {
                return NGX_DECLINED;
            }

            for (i = 0; i < n; i++) {
                if (keys[i].len == key.len
                    && ngx_memcmp(keys[i].data, key.data, key.len) == 0)
                {
                    return NGX_DECLINED;
                }
            }

            keys[n++] = key;

            if (n > 1) {
                ngx_http_usage_out_lit(s->out, ",");
            }

            ngx_http_usage_out_raw(s->out, key.data - 1, key.len + 2);
            ngx_http_usage_out_lit(s->out, ":");
        }

        if (ngx_http_usage_scan_colon(s) != NGX_OK) {
            return NGX_DECLINED;
        }

        rc = ngx_http_usage_scan_value(s, NULL);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_usage_scan_next(s, '}');

        if (rc == NGX_AGAIN) {
            continue;
        }

        if (rc != NGX_OK) {
            return NGX_DECLINED;
        }

        break;
    }

end:

    ngx_http_usage_scan_close(s, "{}");

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_scan_array(ngx_http_usage_scan_t *s)
{
    ngx_int_t   rc;
    ngx_uint_t  first;

    rc = ngx_http_usage_scan_open(s, "[]");

    if (rc == NGX_DONE) {
        goto end;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    for (first = 1; /* void */; first = 0) {
        if (s->pos == s->end) {
            return NGX_DECLINED;
        }

        if (s->out && !first) {
            ngx_http_usage_out_lit(s->out, ",");
        }

        rc = ngx_http_usage_scan_value(s, NULL);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_usage_scan_next(s, ']');

        if (rc == NGX_AGAIN) {
            continue;
        }

        if (rc != NGX_OK) {
            return NGX_DECLINED;
        }

        break;
    }

end:

    ngx_http_usage_scan_close(s, "[]");

    return NGX_OK;
}


/*
 * A container's first character, at s->pos; pair is its two characters,
 * as "{}".  NGX_DONE: it is empty, at its closing character.
 */

static ngx_int_t
ngx_http_usage_scan_open(ngx_http_usage_scan_t *s, char *pair)
{
    if (++s->depth > NGX_HTTP_USAGE_SCAN_DEPTH) {
        return NGX_DECLINED;
    }

    if (s->out) {
        s->meta_depth = ngx_max(s->meta_depth, s->depth - s->meta_base);
        ngx_http_usage_out_raw(s->out, (u_char *) &pair[0], 1);
    }

    s->pos++;
    ngx_http_usage_scan_ws(s);

    return (s->pos < s->end && *s->pos == (u_char) pair[1]) ? NGX_DONE
                                                            : NGX_OK;
}


/* the closing character of a container, at s->pos */

static void
ngx_http_usage_scan_close(ngx_http_usage_scan_t *s, char *pair)
{
    s->pos++;
    s->depth--;

    if (s->out) {
        ngx_http_usage_out_raw(s->out, (u_char *) &pair[1], 1);
    }
}


/* the ':' after a key, and the whitespace around it; a value must follow */

static ngx_int_t
ngx_http_usage_scan_colon(ngx_http_usage_scan_t *s)
{
    ngx_http_usage_scan_ws(s);

    if (s->pos == s->end || *s->pos++ != ':') {
        return NGX_DECLINED;
    }

    ngx_http_usage_scan_ws(s);

    return (s->pos < s->end) ? NGX_OK : NGX_DECLINED;
}


/*
 * After a member or an element: NGX_AGAIN past a ',' (and the whitespace
 * after it), NGX_OK at the closing character, left for the caller, and
 * NGX_DECLINED at anything else.
 */

static ngx_int_t
ngx_http_usage_scan_next(ngx_http_usage_scan_t *s, u_char close)
{
    ngx_http_usage_scan_ws(s);

    if (s->pos == s->end) {
        return NGX_DECLINED;
    }

    if (*s->pos == ',') {
        s->pos++;
        ngx_http_usage_scan_ws(s);
        return NGX_AGAIN;
    }

    return (*s->pos == close) ? NGX_OK : NGX_DECLINED;
}


/*
 * A string at s->pos: raw is its bytes between the quotes, escapes not
 * decoded.  The rules are RFC 8259's and jansson's: no raw control
 * characters, valid UTF-8 without surrogates, known escapes only, and a
 * \u escape of a surrogate only as a high-low pair.
 */

static ngx_int_t
ngx_http_usage_scan_string(ngx_http_usage_scan_t *s, ngx_str_t *raw,
    ngx_uint_t *escaped)
{
    u_char    *p, *end, *plain, c;
    uint32_t   u, low;

    *escaped = 0;
    end = s->end;

    raw->data = s->pos + 1;

    plain = ngx_http_usage_json_plain_map;

    for (p = raw->data; p < end; /* void */) {

        while (end - p >= 8 && !ngx_http_usage_json_special8(p)) {
            p += 8;
        }

        if (p == end) {
            return NGX_DECLINED;
        }

        while (plain[*p]) {
            if (++p == end) {
                return NGX_DECLINED;
            }
        }

        c = *p;

        if (c == '"') {
            raw->len = p - raw->data;
            s->pos = p + 1;
            return NGX_OK;
        }

        if (c < 0x20) {
            return NGX_DECLINED;
        }

        if (c < 0x80 && c != '\\') {
            p++;
            continue;
        }

        if (c >= 0x80) {
            if (ngx_http_usage_utf8_decode(&p, end)
                == NGX_HTTP_USAGE_UTF8_INVALID)
            {
                return NGX_DECLINED;
            }

            continue;
        }

        *escaped = 1;

        if (end - p < 2) {
            return NGX_DECLINED;
        }

        switch (p[1]) {
        case '"': case '\\': case '/': case 'b':
        case 'f': case 'n': case 'r': case 't':
            p += 2;
            continue;

        case 'u':
            break;

        default:
            return NGX_DECLINED;
        }

        if (end - p < 6 || ngx_http_usage_scan_hex4(p + 2, &u) != NGX_OK) {
            return NGX_DECLINED;
        }

        p += 6;

        if (u >= 0xdc00 && u <= 0xdfff) {
            return NGX_DECLINED;        /* a lone low surrogate */
        }

        if (u >= 0xd800 && u <= 0xdbff) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u'
                || ngx_http_usage_scan_hex4(p + 2, &low) != NGX_OK
                || low < 0xdc00 || low > 0xdfff)
            {
                return NGX_DECLINED;    /* a lone high surrogate */
            }

            p += 6;
        }
    }

    return NGX_DECLINED;
}


/* decodes a string scan_string() accepted, into the pool */

static ngx_int_t
ngx_http_usage_scan_unescape(ngx_pool_t *pool, ngx_str_t *raw,
    ngx_str_t *value)
{
    u_char    *p, *end, *d;
    uint32_t   u, low;

    /* an escape is never shorter than what it stands for */
    d = ngx_pnalloc(pool, raw->len);
    if (d == NULL) {
        return NGX_ERROR;
    }

    value->data = d;

    for (p = raw->data, end = p + raw->len; p < end; /* void */) {
        if (*p != '\\') {
            *d++ = *p++;
            continue;
        }

        switch (p[1]) {
        case 'b':
            *d++ = '\b';
            break;
        case 'f':
            *d++ = '\f';
            break;
        case 'n':
            *d++ = '\n';
            break;
        case 'r':
            *d++ = '\r';
            break;
        case 't':
            *d++ = '\t';
            break;
        case 'u':
            break;
        default:                /* " \ / */
            *d++ = p[1];
            break;
        }

        if (p[1] != 'u') {
            p += 2;
            continue;
        }

        (void) ngx_http_usage_scan_hex4(p + 2, &u);
        p += 6;

        if (u >= 0xd800 && u <= 0xdbff) {
            (void) ngx_http_usage_scan_hex4(p + 2, &low);
            p += 6;
            u = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00);
        }

        if (u < 0x80) {
            *d++ = (u_char) u;

        } else if (u < 0x800) {
            *d++ = (u_char) (0xc0 | (u >> 6));
            *d++ = (u_char) (0x80 | (u & 0x3f));

        } else if (u < 0x10000) {
            *d++ = (u_char) (0xe0 | (u >> 12));
            *d++ = (u_char) (0x80 | ((u >> 6) & 0x3f));
            *d++ = (u_char) (0x80 | (u & 0x3f));

        } else {
            *d++ = (u_char) (0xf0 | (u >> 18));
            *d++ = (u_char) (0x80 | ((u >> 12) & 0x3f));
            *d++ = (u_char) (0x80 | ((u >> 6) & 0x3f));
            *d++ = (u_char) (0x80 | (u & 0x3f));
        }
    }

    value->len = d - value->data;

    return NGX_OK;
}


/*
 * A number, by RFC 8259's grammar.  An integer of up to 15 digits is read
 * here; a fraction or an exponent goes through strtod(), as in jansson.
 * Longer integers (jansson's int64 overflow rules) and infinities go to
 * jansson.
 */

static ngx_int_t
ngx_http_usage_scan_number(ngx_http_usage_scan_t *s, ngx_http_usage_field_t *f)
{
    char      buf[64];
    u_char   *p, *start, *end;
    double    d;
    int64_t   n;
    ngx_uint_t  digits, real;

    start = s->pos;
    end = s->end;
    p = start;

    if (*p == '-') {
        p++;
    }

    if (p == end || *p < '0' || *p > '9') {
        return NGX_DECLINED;
    }

    n = 0;
    digits = 0;

    if (*p == '0') {
        p++;
        digits = 1;

    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (++digits > NGX_HTTP_USAGE_SCAN_DIGITS) {
                return NGX_DECLINED;
            }

            n = n * 10 + (*p++ - '0');
        }
    }

    real = 0;

    if (p < end && *p == '.') {
        real = 1;
        p++;

        if (p == end || *p < '0' || *p > '9') {
            return NGX_DECLINED;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        real = 1;
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == end || *p < '0' || *p > '9') {
            return NGX_DECLINED;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    /* what follows must end the token: jansson reads "1x" as an error */
    if (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                    || (*p >= '0' && *p <= '9') || *p == '.'
                    || *p == '+' || *p == '-'))
    {
        return NGX_DECLINED;
    }

    s->pos = p;

    if (!real) {
        if (*start == '-') {
            n = -n;
        }

        d = (double) n;

        if (s->out) {
            if (n == 0) {
                ngx_http_usage_out_lit(s->out, "0");    /* "-0" too */

            } else {
                ngx_http_usage_out_raw(s->out, start, p - start);
            }
        }

    } else {
        if ((size_t) (p - start) >= sizeof(buf)) {
            return NGX_DECLINED;
        }

        ngx_memcpy(buf, start, p - start);
        buf[p - start] = '\0';

        d = strtod(buf, NULL);

        if (!isfinite(d)) {
            return NGX_DECLINED;    /* jansson: "real number overflow" */
        }

        if (s->out) {
            ngx_http_usage_out_double(s->out, d);
        }
    }

    if (f) {
        f->type = NGX_HTTP_USAGE_FIELD_NUMBER;
        f->num = d;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_scan_literal(ngx_http_usage_scan_t *s, char *word, size_t len)
{
    u_char  *p;

    if ((size_t) (s->end - s->pos) < len
        || ngx_strncmp(s->pos, word, len) != 0)
    {
        return NGX_DECLINED;
    }

    p = s->pos + len;

    /* "truex" is one bad token for jansson */
    if (p < s->end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                       || (*p >= '0' && *p <= '9')))
    {
        return NGX_DECLINED;
    }

    if (s->out) {
        ngx_http_usage_out_raw(s->out, s->pos, len);
    }

    s->pos = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_scan_hex4(u_char *p, uint32_t *c)
{
    u_char      ch;
    ngx_uint_t  i;

    *c = 0;

    for (i = 0; i < 4; i++) {
        ch = p[i];

        if (ch >= '0' && ch <= '9') {
            *c = (*c << 4) | (ch - '0');

        } else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') {
            *c = (*c << 4) | ((ch | 0x20) - 'a' + 10);

        } else {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
