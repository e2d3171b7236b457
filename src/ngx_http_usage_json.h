
/*
 * The JSON response writer: a small append-only writer into the request
 * pool, formatting numbers and strings exactly as JavaScript's
 * JSON.stringify() does, so answers match the Express service byte for
 * byte where it matters.  Request bodies are read elsewhere
 * (ngx_http_usage_body.h).
 */


#ifndef _NGX_HTTP_USAGE_JSON_H_INCLUDED_
#define _NGX_HTTP_USAGE_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_query.h"


/* a jansson tree, written by ngx_http_usage_out_value(); only the files
 * that walk one include <jansson.h> */
struct json_t;


typedef struct {
    u_char                      *start;
    u_char                      *pos;
    u_char                      *end;
    ngx_pool_t                  *pool;
    ngx_uint_t                   failed;
} ngx_http_usage_out_t;


/* a literal: copied in place (its size is a constant, memcpy() is inlined)
 * while it fits, else through the growing writer */
#define ngx_http_usage_out_lit(out, s)                                       \
    (((size_t) ((out)->end - (out)->pos) >= sizeof(s) - 1)                   \
     ? (void) ((out)->pos = ngx_cpymem((out)->pos, s, sizeof(s) - 1))        \
     : ngx_http_usage_out_raw(out, (u_char *) s, sizeof(s) - 1))

/* the most a string of len bytes takes written, quotes included: every
 * byte may become \u00XX or \ufffd */
#define NGX_HTTP_USAGE_JSON_STRING_MAX(len)  ((len) * 6 + 2)

/* the longest number JSON.stringify() writes: -0.0000012345678901234567 */
#define NGX_HTTP_USAGE_DOUBLE_LEN  25

/* a literal key (with its separator) and an unsigned number */
#define ngx_http_usage_out_pair(out, key, n)                                 \
    ngx_http_usage_out_key_uint(out, (u_char *) key, sizeof(key) - 1, n)


ngx_int_t ngx_http_usage_out_init(ngx_http_usage_out_t *out,
    ngx_pool_t *pool, size_t size);
void ngx_http_usage_out_raw(ngx_http_usage_out_t *out, u_char *s,
    size_t len);
void ngx_http_usage_out_string(ngx_http_usage_out_t *out, u_char *s,
    size_t len);
u_char *ngx_http_usage_json_string(u_char *p, u_char *s, size_t len);
void ngx_http_usage_out_uint(ngx_http_usage_out_t *out, uint64_t n);
void ngx_http_usage_out_key_uint(ngx_http_usage_out_t *out, u_char *key,
    size_t len, uint64_t n);
void ngx_http_usage_out_double(ngx_http_usage_out_t *out, double d);
void ngx_http_usage_out_iso(ngx_http_usage_out_t *out, int64_t ms);
void ngx_http_usage_out_counts(ngx_http_usage_out_t *out,
    ngx_array_t *counts, ngx_uint_t values);
void ngx_http_usage_out_event(ngx_http_usage_out_t *out,
    ngx_http_usage_record_t *rec);
void ngx_http_usage_out_value(ngx_http_usage_out_t *out,
    struct json_t *v);
void ngx_http_usage_json_init(void);
ngx_pool_t *ngx_http_usage_json_pool_set(ngx_pool_t *pool);
ngx_uint_t ngx_http_usage_json_object_ok(ngx_str_t *metadata,
    ngx_pool_t *pool);


#endif /* _NGX_HTTP_USAGE_JSON_H_INCLUDED_ */
