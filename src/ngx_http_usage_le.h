
/*
 * Integers written and read little-endian, byte by byte, at any offset,
 * whatever the host: the fleet's wire format and the cursors.
 */


#ifndef _NGX_HTTP_USAGE_LE_H_INCLUDED_
#define _NGX_HTTP_USAGE_LE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


static ngx_inline void
ngx_http_usage_le_put16(u_char *p, uint16_t v)
{
    p[0] = (u_char) v;
    p[1] = (u_char) (v >> 8);
}


static ngx_inline void
ngx_http_usage_le_put32(u_char *p, uint32_t v)
{
    p[0] = (u_char) v;
    p[1] = (u_char) (v >> 8);
    p[2] = (u_char) (v >> 16);
    p[3] = (u_char) (v >> 24);
}


static ngx_inline void
ngx_http_usage_le_put64(u_char *p, uint64_t v)
{
    ngx_http_usage_le_put32(p, (uint32_t) v);
    ngx_http_usage_le_put32(p + 4, (uint32_t) (v >> 32));
}


static ngx_inline uint16_t
ngx_http_usage_le_get16(u_char *p)
{
    return (uint16_t) (p[0] | (p[1] << 8));
}


static ngx_inline uint32_t
ngx_http_usage_le_get32(u_char *p)
{
    return (uint32_t) p[0] | ((uint32_t) p[1] << 8)
           | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}


static ngx_inline uint64_t
ngx_http_usage_le_get64(u_char *p)
{
    return (uint64_t) ngx_http_usage_le_get32(p)
           | ((uint64_t) ngx_http_usage_le_get32(p + 4) << 32);
}


#endif /* _NGX_HTTP_USAGE_LE_H_INCLUDED_ */
