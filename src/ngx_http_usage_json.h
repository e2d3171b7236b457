
/*
 * JSON in and out.  jansson parses request bodies; responses are written
 * by a small append-only writer into the request pool, formatting numbers
 * and strings exactly as JavaScript's JSON.stringify() does, so answers
 * match the Express service byte for byte where it matters.
 */


#ifndef _NGX_HTTP_USAGE_JSON_H_INCLUDED_
#define _NGX_HTTP_USAGE_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_http_usage_store.h"


typedef struct {
    u_char                      *start;
    u_char                      *pos;
    u_char                      *end;
    ngx_pool_t                  *pool;
    ngx_uint_t                   failed;
} ngx_http_usage_out_t;


typedef struct {
    size_t                       metadata_max_size;
    ngx_uint_t                   metadata_max_depth;
    int64_t                      now;
    int64_t                      retention;
} ngx_http_usage_limits_t;


/* a field of an event body as read, before the API's rules apply */
#define NGX_HTTP_USAGE_FIELD_ABSENT   0
#define NGX_HTTP_USAGE_FIELD_NULL     1
#define NGX_HTTP_USAGE_FIELD_STRING   2
#define NGX_HTTP_USAGE_FIELD_NUMBER   3
#define NGX_HTTP_USAGE_FIELD_OBJECT   4
#define NGX_HTTP_USAGE_FIELD_OTHER    5   /* an array, true or false */

typedef struct {
    ngx_uint_t                   type;
    ngx_str_t                    str;    /* a string, decoded; metadata:
                                            the object, serialized */
    double                       num;
} ngx_http_usage_field_t;


typedef struct {
    ngx_http_usage_field_t       entity;
    ngx_http_usage_field_t       type;
    ngx_http_usage_field_t       metadata;
    ngx_http_usage_field_t       id;
    ngx_http_usage_field_t       value;
    ngx_http_usage_field_t       timestamp;
    ngx_uint_t                   metadata_depth;
} ngx_http_usage_fields_t;


/* a literal: copied in place (its size is a constant, memcpy() is inlined)
 * while it fits, else through the growing writer */
#define ngx_http_usage_out_lit(out, s)                                       \
    (((size_t) ((out)->end - (out)->pos) >= sizeof(s) - 1)                   \
     ? (void) ((out)->pos = ngx_cpymem((out)->pos, s, sizeof(s) - 1))        \
     : ngx_http_usage_out_raw(out, (u_char *) s, sizeof(s) - 1))

/* the most a string of len bytes takes written, quotes included: every
 * byte may become \u00XX or \ufffd */
#define NGX_HTTP_USAGE_JSON_STRING_MAX(len)  ((len) * 6 + 2)

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
void ngx_http_usage_out_value(ngx_http_usage_out_t *out, json_t *v);

void ngx_http_usage_json_init(void);
ngx_int_t ngx_http_usage_scan_event(ngx_pool_t *pool, u_char *body,
    size_t len, ngx_http_usage_fields_t *fields);
ngx_int_t ngx_http_usage_parse_event(ngx_pool_t *pool, u_char *body,
    size_t len, ngx_http_usage_limits_t *limits,
    ngx_http_usage_record_t *rec, ngx_str_t *error);


#endif /* _NGX_HTTP_USAGE_JSON_H_INCLUDED_ */
