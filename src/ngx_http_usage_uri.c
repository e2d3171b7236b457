
/*
 * The request line as the API reads it: %-decoding of path segments and
 * query values, query arguments, and the check of the raw path against
 * the one nginx chose the location by.  One concern: turning a URI's
 * bytes into the strings the handlers see.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_text.h"
#include "ngx_http_usage_time.h"
#include "ngx_http_usage_uri.h"


static ngx_int_t
ngx_http_usage_hex(u_char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/*
 * %-decoding.  A path segment is decoded as decodeURIComponent() does:
 * a malformed escape or invalid UTF-8 is an error.  A query value is
 * decoded as Express's qs does: '+' is a space and a malformed escape is
 * kept as it is.
 */

static ngx_int_t
ngx_http_usage_unescape(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst,
    ngx_uint_t query)
{
    u_char     *p, *d, *end, high;
    ngx_int_t   hi, lo;

    end = src->data + src->len;
    high = 0;

    for (p = src->data; p < end; p++) {
        if (*p == '%' || (query && *p == '+')) {
            break;
        }

        high |= *p;
    }

    if (p == end) {
        /* nothing to decode, the usual case: the bytes as they are, and
         * plain ASCII is valid UTF-8 */
        *dst = *src;

        if (high < 0x80) {
            return NGX_OK;
        }

        goto done;
    }

    d = ngx_pnalloc(pool, src->len + 1);
    if (d == NULL) {
        return NGX_ERROR;
    }

    dst->data = d;

    for (p = src->data; p < end; p++) {
        if (query && *p == '+') {
            *d++ = ' ';
            continue;
        }

        if (*p != '%') {
            *d++ = *p;
            continue;
        }

        hi = (end - p >= 3) ? ngx_http_usage_hex(p[1]) : -1;
        lo = (end - p >= 3) ? ngx_http_usage_hex(p[2]) : -1;

        if (hi >= 0 && lo >= 0) {
            *d++ = (u_char) (hi << 4 | lo);
            p += 2;
            continue;
        }

        if (!query) {
            return NGX_DECLINED;
        }

        *d++ = *p;
    }

    dst->len = d - dst->data;

done:

    if (!query && ngx_http_usage_utf8_valid(dst->data, dst->len) != NGX_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_unescape_path(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst)
{
    return ngx_http_usage_unescape(pool, src, dst, 0);
}


/*
 * A request path %-decoded whole, %2F as a slash (nginx decodes it so
 * before it removes dot segments and merges slashes), and compared with
 * uri, the path nginx chose the location by, byte by byte as it is
 * decoded: nothing is allocated.  NGX_HTTP_USAGE_PATH_DOTS: a segment is
 * "." or ".." (whatever the comparison); NGX_HTTP_USAGE_PATH_OTHER: the
 * decoded path is not uri.  A malformed escape, which nginx lets through
 * only after a '#', is taken as it is.
 */

ngx_uint_t
ngx_http_usage_path_check(ngx_str_t *path, ngx_str_t *uri)
{
    u_char      c, *p, *end, *u, *last;
    ngx_int_t   hi, lo;
    ngx_uint_t  same, len, dots;

    p = path->data;
    end = p + path->len;
    u = uri->data;
    last = u + uri->len;

    same = 1;
    len = 0;            /* the current segment's bytes, decoded */
    dots = 0;           /* how many of them are dots */

    while (p < end) {
        c = *p++;

        if (c == '%' && end - p >= 2) {
            hi = ngx_http_usage_hex(p[0]);
            lo = ngx_http_usage_hex(p[1]);

            if (hi >= 0 && lo >= 0) {
                c = (u_char) (hi << 4 | lo);
                p += 2;
            }
        }

        if (c == '/') {
            if (len && len <= 2 && dots == len) {
                return NGX_HTTP_USAGE_PATH_DOTS;
            }

            len = 0;
            dots = 0;

        } else {
            len++;
            dots += (c == '.');
        }

        if (same) {
            if (u < last && *u == c) {
                u++;

            } else {
                same = 0;
            }
        }
    }

    if (len && len <= 2 && dots == len) {
        return NGX_HTTP_USAGE_PATH_DOTS;
    }

    return (same && u == last) ? NGX_HTTP_USAGE_PATH_SAME
                               : NGX_HTTP_USAGE_PATH_OTHER;
}


/*
 * The first value of a query argument, %-decoded as Express's qs does;
 * names are case-sensitive and compared decoded too.  NGX_DECLINED: the
 * argument is absent.
 */

ngx_int_t
ngx_http_usage_arg(ngx_pool_t *pool, ngx_str_t *args, const char *name,
    ngx_str_t *value)
{
    size_t      n;
    u_char     *p, *end, *amp, *eq;
    ngx_str_t   key, raw;

    n = ngx_strlen(name);
    p = args->data;
    end = p + args->len;

    for ( /* void */ ; p < end; p = amp + 1) {
        amp = ngx_strlchr(p, end, '&');
        if (amp == NULL) {
            amp = end;
        }

        eq = ngx_strlchr(p, amp, '=');

        key.data = p;
        key.len = (eq ? eq : amp) - p;

        if (ngx_strlchr(key.data, key.data + key.len, '%')
            || ngx_strlchr(key.data, key.data + key.len, '+'))
        {
            raw = key;
            if (ngx_http_usage_unescape(pool, &raw, &key, 1) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        if (key.len != n || ngx_strncmp(key.data, name, n) != 0) {
            continue;
        }

        raw.data = eq ? eq + 1 : amp;
        raw.len = amp - raw.data;

        if (ngx_http_usage_unescape(pool, &raw, value, 1) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * since or until: absent, *value null and *ms as it was; NGX_DECLINED:
 * present and not an ISO-8601 date or date-time.
 */

ngx_int_t
ngx_http_usage_time_arg(ngx_pool_t *pool, ngx_str_t *args, const char *name,
    ngx_str_t *value, int64_t *ms)
{
    ngx_int_t  rc;

    rc = ngx_http_usage_arg(pool, args, name, value);

    if (rc != NGX_OK) {
        ngx_str_null(value);
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    return (ngx_http_usage_parse_iso(value->data, value->len, ms) == NGX_OK)
           ? NGX_OK : NGX_DECLINED;
}
