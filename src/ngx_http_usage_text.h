
/*
 * Text rules: strict UTF-8, JavaScript trim(), names, JSON plain bytes.
 */


#ifndef _NGX_HTTP_USAGE_TEXT_H_INCLUDED_
#define _NGX_HTTP_USAGE_TEXT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* ngx_http_usage_check_name() results, as flags */
#define NGX_HTTP_USAGE_NAME_EMPTY    0x01
#define NGX_HTTP_USAGE_NAME_CONTROL  0x02
#define NGX_HTTP_USAGE_NAME_LONG     0x04

#define NGX_HTTP_USAGE_UTF8_INVALID  0xffffffff


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


uint32_t ngx_http_usage_utf8_decode(u_char **p, u_char *end);
ngx_int_t ngx_http_usage_utf8_valid(u_char *p, size_t len);
size_t ngx_http_usage_utf8_chars(u_char *p, size_t len);
void ngx_http_usage_js_trim(ngx_str_t *s);
ngx_uint_t ngx_http_usage_check_name(ngx_str_t *s, size_t max_chars);


#endif /* _NGX_HTTP_USAGE_TEXT_H_INCLUDED_ */
