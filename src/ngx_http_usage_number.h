
/*
 * Decimal integers written and read.
 */


#ifndef _NGX_HTTP_USAGE_NUMBER_H_INCLUDED_
#define _NGX_HTTP_USAGE_NUMBER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* "00" to "99", two bytes each */
extern const u_char  ngx_http_usage_pairs[];

#define ngx_http_usage_two_digits(p, n)                                      \
    *(p)++ = ngx_http_usage_pairs[(n) * 2];                                  \
    *(p)++ = ngx_http_usage_pairs[(n) * 2 + 1]


u_char *ngx_http_usage_write_uint(u_char *dst, uint64_t n);
u_char *ngx_http_usage_write_int(u_char *dst, int64_t n);
ngx_int_t ngx_http_usage_parse_decimal(ngx_str_t *s, ngx_uint_t max,
    ngx_uint_t *value);


#endif /* _NGX_HTTP_USAGE_NUMBER_H_INCLUDED_ */
