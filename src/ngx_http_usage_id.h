
/*
 * Random ids: the per-process generator, kernel random bytes, UUID v4.
 */


#ifndef _NGX_HTTP_USAGE_ID_H_INCLUDED_
#define _NGX_HTTP_USAGE_ID_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* a UUID as text: 8-4-4-4-12 hex digits */
#define NGX_HTTP_USAGE_UUID_LEN         36


ngx_int_t ngx_http_usage_random_bytes(void *buf, size_t len);
void ngx_http_usage_random_init(void);
uint64_t ngx_http_usage_random(void);
void ngx_http_usage_uuid_v4(u_char id[16]);
u_char *ngx_http_usage_uuid_format(u_char *dst, const u_char id[16]);


#endif /* _NGX_HTTP_USAGE_ID_H_INCLUDED_ */
