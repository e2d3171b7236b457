
/*
 * Decimal integers, written without a format string and read strictly.
 * One concern: the digits of the counts the API answers with and of the
 * limits it is asked for; the ISO times borrow the two-digit table.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_number.h"


/* "00" to "99": numbers are written two digits per division */
const u_char  ngx_http_usage_pairs[] =
    "00010203040506070809101112131415161718192021222324"
    "25262728293031323334353637383940414243444546474849"
    "50515253545556575859606162636465666768697071727374"
    "75767778798081828384858687888990919293949596979899";


/* "%uL" without a format string: JSON answers are full of counts */

u_char *
ngx_http_usage_write_uint(u_char *dst, uint64_t n)
{
    size_t     len;
    u_char    *p;
    uint64_t   d;

    static const uint64_t  pow10[] = {
        10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
        10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
        100000000000ULL, 1000000000000ULL, 10000000000000ULL,
        100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL,
        10000000000000000000ULL
    };

    /* the length first, then two digits per division, from the end */
    for (len = 1; len < 20 && n >= pow10[len - 1]; len++) {
        /* void */
    }

    p = dst + len;

    while (n >= 100) {
        d = (n % 100) * 2;
        n /= 100;
        *--p = ngx_http_usage_pairs[d + 1];
        *--p = ngx_http_usage_pairs[d];
    }

    if (n >= 10) {
        *--p = ngx_http_usage_pairs[n * 2 + 1];
        *--p = ngx_http_usage_pairs[n * 2];

    } else {
        *--p = (u_char) ('0' + n);
    }

    return dst + len;
}


u_char *
ngx_http_usage_write_int(u_char *dst, int64_t n)
{
    if (n < 0) {
        *dst++ = '-';
        return ngx_http_usage_write_uint(dst, - (uint64_t) n);
    }

    return ngx_http_usage_write_uint(dst, (uint64_t) n);
}


/* a plain decimal: digits only, no sign, spaces or fraction, <= max */

ngx_int_t
ngx_http_usage_parse_decimal(ngx_str_t *s, ngx_uint_t max, ngx_uint_t *value)
{
    size_t      i;
    ngx_uint_t  v;

    if (s->len == 0) {
        return NGX_ERROR;
    }

    v = 0;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < '0' || s->data[i] > '9') {
            return NGX_ERROR;
        }

        /* checked before it can wrap around */
        if (v > (max - (s->data[i] - '0')) / 10) {
            return NGX_ERROR;
        }

        v = v * 10 + (s->data[i] - '0');
    }

    *value = v;

    return NGX_OK;
}
