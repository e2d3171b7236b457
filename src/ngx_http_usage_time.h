
/*
 * Time in milliseconds since the epoch: now, ISO-8601 out and in.
 */


#ifndef _NGX_HTTP_USAGE_TIME_H_INCLUDED_
#define _NGX_HTTP_USAGE_TIME_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_USAGE_ISO_LEN       24    /* 2026-11-21T04:19:12.254Z */
#define NGX_HTTP_USAGE_TIME_MAX      253402300799999LL   /* 9999-12-31 */

/*
 * The times a store holds, as its state file and the fleet's records
 * carry them: years 1970 to 9999, so that no arithmetic on them overflows
 */
#define ngx_http_usage_time_ok(t)  ((t) >= 0 && (t) <= NGX_HTTP_USAGE_TIME_MAX)


int64_t ngx_http_usage_now(void);
u_char *ngx_http_usage_iso_time(u_char *dst, int64_t ms);
ngx_int_t ngx_http_usage_parse_iso(u_char *s, size_t len, int64_t *ms);


#endif /* _NGX_HTTP_USAGE_TIME_H_INCLUDED_ */
