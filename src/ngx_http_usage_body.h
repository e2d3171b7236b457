
/*
 * The event body reader: the fields a POST /v1/events body is read into,
 * as sent, before the API's rules apply, the limits those rules take, and
 * the entry point that reads a body and checks it into a record.  One
 * concern: what a client's event body means.
 */


#ifndef _NGX_HTTP_USAGE_BODY_H_INCLUDED_
#define _NGX_HTTP_USAGE_BODY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"


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


/* POST /v1/events/batch: at most this many events */
#define NGX_HTTP_USAGE_BATCH_MAX      1000

typedef struct {
    ngx_uint_t                   index;
    ngx_str_t                    message;  /* as a single POST words it */
} ngx_http_usage_batch_error_t;

typedef struct {
    ngx_http_usage_record_t     *recs;
    ngx_uint_t                   n;
    ngx_array_t                  errors;   /* batch_error_t, by index */
    ngx_str_t                    error;    /* the body is not a batch */
} ngx_http_usage_batch_t;


/* a body's format, by its Content-Type (ngx_http_usage_body_format()) */
#define NGX_HTTP_USAGE_BODY_JSON         0
#define NGX_HTTP_USAGE_BODY_CLOUDEVENT   1   /* application/cloudevents+json */
#define NGX_HTTP_USAGE_BODY_CLOUDEVENTS  2   /* ...cloudevents-batch+json */


ngx_int_t ngx_http_usage_parse_batch(ngx_pool_t *pool, u_char *body,
    size_t len, ngx_uint_t format, ngx_http_usage_limits_t *limits,
    ngx_http_usage_batch_t *batch);
ngx_int_t ngx_http_usage_parse_cloudevent(ngx_pool_t *pool, u_char *body,
    size_t len, ngx_http_usage_limits_t *limits,
    ngx_http_usage_record_t *rec, ngx_str_t *error);
ngx_int_t ngx_http_usage_parse_event(ngx_pool_t *pool, u_char *body,
    size_t len, ngx_http_usage_limits_t *limits,
    ngx_http_usage_record_t *rec, ngx_str_t *error);


#endif /* _NGX_HTTP_USAGE_BODY_H_INCLUDED_ */
