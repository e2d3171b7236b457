
/*
 * Answers of the module: JSON bodies, the error envelope, headers, and
 * the messages of a 405 and a 413.
 */


#ifndef _NGX_HTTP_USAGE_REPLY_H_INCLUDED_
#define _NGX_HTTP_USAGE_REPLY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_json.h"


ngx_int_t ngx_http_usage_reply_begin(ngx_http_request_t *r,
    ngx_http_usage_out_t *out, ngx_uint_t envelope, size_t size);
ngx_int_t ngx_http_usage_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_usage_out_t *out);
ngx_int_t ngx_http_usage_send_out(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, size_t type_len, ngx_http_usage_out_t *out);
ngx_int_t ngx_http_usage_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, ngx_str_t *message);
ngx_int_t ngx_http_usage_error_body(ngx_http_request_t *r,
    const char *code, ngx_str_t *message, ngx_str_t *out);

ngx_int_t ngx_http_usage_add_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value);
ngx_int_t ngx_http_usage_add_header_n(ngx_http_request_t *r, u_char *key,
    size_t len, ngx_str_t *value);

#define ngx_http_usage_add_header_lit(r, name, value)                        \
    ngx_http_usage_add_header_n(r, (u_char *) name, sizeof(name) - 1, value)

ngx_int_t ngx_http_usage_not_allowed_message(ngx_http_request_t *r,
    ngx_str_t *msg);
ngx_int_t ngx_http_usage_send_error_details(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, ngx_str_t *message,
    ngx_str_t *details);
ngx_int_t ngx_http_usage_bad_request(ngx_http_request_t *r, ngx_str_t *errors,
    ngx_uint_t n);
ngx_int_t ngx_http_usage_send_too_large(ngx_http_request_t *r);
ngx_int_t ngx_http_usage_send_entity_limited(ngx_http_request_t *r,
    ngx_uint_t types, ngx_uint_t limit, ngx_uint_t share, ngx_str_t *prefix);
ngx_int_t ngx_http_usage_too_large_message(ngx_http_request_t *r,
    ngx_str_t *msg);


#endif /* _NGX_HTTP_USAGE_REPLY_H_INCLUDED_ */
