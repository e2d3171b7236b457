
/*
 * Small pure helpers with no HTTP and no shared memory in them: ids,
 * time formats, UTF-8 and JavaScript-compatible string rules, URL
 * decoding and number parsing.
 */


#ifndef _NGX_HTTP_USAGE_UTIL_H_INCLUDED_
#define _NGX_HTTP_USAGE_UTIL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_USAGE_ISO_LEN       24    /* 2026-11-21T04:19:12.254Z */
#define NGX_HTTP_USAGE_TIME_MAX      253402300799999LL   /* 9999-12-31 */

/* ngx_http_usage_check_name() results, as flags */
#define NGX_HTTP_USAGE_NAME_EMPTY    0x01
#define NGX_HTTP_USAGE_NAME_CONTROL  0x02
#define NGX_HTTP_USAGE_NAME_LONG     0x04

#define NGX_HTTP_USAGE_UTF8_INVALID  0xffffffff

/* ngx_http_usage_path_check() results */
#define NGX_HTTP_USAGE_PATH_SAME     0
#define NGX_HTTP_USAGE_PATH_OTHER    1
#define NGX_HTTP_USAGE_PATH_DOTS     2


ngx_int_t ngx_http_usage_random_bytes(void *buf, size_t len);
void ngx_http_usage_random_init(void);
uint64_t ngx_http_usage_random(void);
void ngx_http_usage_uuid_v4(u_char id[16]);
/* a byte a JSON string holds as it is: printable ASCII but " and \ */
#define ngx_http_usage_json_plain(c)  ngx_http_usage_json_plain_map[c]

extern u_char  ngx_http_usage_json_plain_map[256];


/*
 * Eight bytes at a time: nonzero if any of them is not plain, that is
 * below 0x20, '"', '\\' or from 0x80 on.  Each test sets the high bit of
 * such a byte; a borrow can only mark bytes after a marked one, so no byte
 * is missed, and the caller goes on byte by byte from the word's start.
 */
#define NGX_HTTP_USAGE_ONES   0x0101010101010101ULL
#define NGX_HTTP_USAGE_HIGHS  0x8080808080808080ULL

static ngx_inline uint64_t
ngx_http_usage_json_special8(const u_char *p)
{
    uint64_t  v, q, b;

    ngx_memcpy(&v, p, 8);

    q = v ^ (NGX_HTTP_USAGE_ONES * '"');
    b = v ^ (NGX_HTTP_USAGE_ONES * '\\');

    return ((v | ((v - NGX_HTTP_USAGE_ONES * 0x20) & ~v)
             | ((q - NGX_HTTP_USAGE_ONES) & ~q)
             | ((b - NGX_HTTP_USAGE_ONES) & ~b))
            & NGX_HTTP_USAGE_HIGHS);
}


u_char *ngx_http_usage_uuid_format(u_char *dst, const u_char id[16]);

int64_t ngx_http_usage_now(void);
u_char *ngx_http_usage_iso_time(u_char *dst, int64_t ms);
u_char *ngx_http_usage_write_uint(u_char *dst, uint64_t n);
u_char *ngx_http_usage_write_int(u_char *dst, int64_t n);
ngx_int_t ngx_http_usage_parse_iso(u_char *s, size_t len, int64_t *ms);

uint32_t ngx_http_usage_utf8_decode(u_char **p, u_char *end);
ngx_int_t ngx_http_usage_utf8_valid(u_char *p, size_t len);
size_t ngx_http_usage_utf8_chars(u_char *p, size_t len);
void ngx_http_usage_js_trim(ngx_str_t *s);
ngx_uint_t ngx_http_usage_check_name(ngx_str_t *s, size_t max_chars);

ngx_int_t ngx_http_usage_unescape_path(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);
ngx_uint_t ngx_http_usage_path_check(ngx_str_t *path, ngx_str_t *uri);
ngx_int_t ngx_http_usage_arg(ngx_pool_t *pool, ngx_str_t *args,
    const char *name, ngx_str_t *value);
ngx_int_t ngx_http_usage_parse_decimal(ngx_str_t *s, ngx_uint_t max,
    ngx_uint_t *value);


#endif /* _NGX_HTTP_USAGE_UTIL_H_INCLUDED_ */
