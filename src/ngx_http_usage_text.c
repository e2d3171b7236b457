
/*
 * Text rules: strict UTF-8, JavaScript's idea of white space and trim(),
 * the checks on names, and the bytes a JSON string holds unescaped.  One
 * concern: which bytes and code points a string may hold, shared by the
 * body reader, the response writer, the store and the API.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_text.h"


/*
 * The bytes a JSON string holds as they are: printable ASCII but '"'
 * (0x22) and '\\' (0x5c).  Control characters need an escape, and bytes
 * from 0x80 on are checked as UTF-8.  A byte table: one load per byte.
 */

u_char  ngx_http_usage_json_plain_map[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
};


/*
 * One code point of a multi-byte sequence at *p (advanced past it), or
 * NGX_HTTP_USAGE_UTF8_INVALID (*p advanced by one byte at least) for
 * anything RFC 3629 refuses: a continuation or impossible byte first, a
 * continuation byte outside 0x80-0xBF, an overlong form, a surrogate, a
 * code point past U+10FFFF, a truncated sequence.
 *
 * nginx's ngx_utf8_decode() is not used: it takes any byte from 0x80 on
 * as a continuation byte, so "\xc3\xc3" passed it and later broke every
 * answer that held it.  The ranges are those of Unicode's table 3-7: the
 * second byte's range depends on the first, the others are 0x80-0xBF.
 */

uint32_t
ngx_http_usage_utf8_decode(u_char **p, u_char *end)
{
    u_char    *s, lo, hi;
    uint32_t   c;
    ngx_uint_t n;

    s = *p;
    c = *s;
    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
        c &= 0x1f;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        lo = (c == 0xe0) ? 0xa0 : 0x80;     /* no overlong */
        hi = (c == 0xed) ? 0x9f : 0xbf;     /* no surrogate */
        c &= 0x0f;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        lo = (c == 0xf0) ? 0x90 : 0x80;     /* no overlong */
        hi = (c == 0xf4) ? 0x8f : 0xbf;     /* not past U+10FFFF */
        c &= 0x07;

    } else {
        *p = s + 1;
        return NGX_HTTP_USAGE_UTF8_INVALID;
    }

    if ((size_t) (end - s) <= n || s[1] < lo || s[1] > hi) {
        *p = s + 1;
        return NGX_HTTP_USAGE_UTF8_INVALID;
    }

    c = (c << 6) | (s[1] & 0x3f);

    for (s += 2; --n; s++) {
        if (*s < 0x80 || *s > 0xbf) {
            *p = s;
            return NGX_HTTP_USAGE_UTF8_INVALID;
        }

        c = (c << 6) | (*s & 0x3f);
    }

    *p = s;

    return c;
}


ngx_int_t
ngx_http_usage_utf8_valid(u_char *p, size_t len)
{
    u_char  *end;

    end = p + len;

    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }

        if (ngx_http_usage_utf8_decode(&p, end)
            == NGX_HTTP_USAGE_UTF8_INVALID)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


size_t
ngx_http_usage_utf8_chars(u_char *p, size_t len)
{
    size_t   n;
    u_char  *end;

    n = 0;

    for (end = p + len; p < end; p++) {
        n += ((*p & 0xc0) != 0x80);
    }

    return n;
}


static ngx_uint_t
ngx_http_usage_js_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0xa0
           || c == 0x1680 || (c >= 0x2000 && c <= 0x200a)
           || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f
           || c == 0x3000 || c == 0xfeff;
}


/* String.prototype.trim() on valid UTF-8 */

void
ngx_http_usage_js_trim(ngx_str_t *s)
{
    u_char    *p, *end, *q, *r;
    uint32_t   c;

    p = s->data;
    end = p + s->len;

    while (p < end) {
        q = p;
        c = (*p < 0x80) ? *p++ : ngx_http_usage_utf8_decode(&p, end);

        if (!ngx_http_usage_js_space(c)) {
            p = q;
            break;
        }
    }

    while (end > p) {
        q = end - 1;

        while (q > p && (*q & 0xc0) == 0x80) {
            q--;
        }

        r = q;
        c = (*r < 0x80) ? *r : ngx_http_usage_utf8_decode(&r, end);

        if (!ngx_http_usage_js_space(c)) {
            break;
        }

        end = q;
    }

    s->len = end - p;
    s->data = p;
}


/*
 * Trims s in place and reports what is wrong with it as an entity id or
 * event type: empty, control characters, or more than max_chars code
 * points.  s must be valid UTF-8.
 */

ngx_uint_t
ngx_http_usage_check_name(ngx_str_t *s, size_t max_chars)
{
    size_t      i;
    ngx_uint_t  flags;

    /* printable ASCII without spaces: nothing to trim, to refuse or to
     * count twice (an id from a URL or a body mostly is) */
    for (i = 0; i < s->len; i++) {
        if (s->data[i] <= 0x20 || s->data[i] >= 0x7f) {
            break;
        }
    }

    if (i == s->len && i) {
        return (i > max_chars) ? NGX_HTTP_USAGE_NAME_LONG : 0;
    }

    ngx_http_usage_js_trim(s);

    if (s->len == 0) {
        return NGX_HTTP_USAGE_NAME_EMPTY;
    }

    flags = 0;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] == 0x7f) {
            flags |= NGX_HTTP_USAGE_NAME_CONTROL;
            break;
        }
    }

    if (ngx_http_usage_utf8_chars(s->data, s->len) > max_chars) {
        flags |= NGX_HTTP_USAGE_NAME_LONG;
    }

    return flags;
}
