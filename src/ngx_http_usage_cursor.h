
/*
 * The cursors of GET /v1/events: an event's place in the list, with the
 * filters it was listed under, signed so that a client can hand it back
 * but not make one up.  URL-safe base64 of 45 bytes.
 */


#ifndef _NGX_HTTP_USAGE_CURSOR_H_INCLUDED_
#define _NGX_HTTP_USAGE_CURSOR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_siphash.h"
#include "ngx_http_usage_query.h"


#define NGX_HTTP_USAGE_CURSOR_LEN  60

/* the longest payload of a cursor of any kind */
#define NGX_HTTP_USAGE_CURSOR_MAX  1100


ngx_int_t ngx_http_usage_cursor_encode(ngx_http_usage_sipkey_t *sipkey,
    ngx_http_usage_list_key_t *key, ngx_str_t *entity, ngx_str_t *type,
    u_char *dst);
ngx_int_t ngx_http_usage_cursor_decode(ngx_http_usage_sipkey_t *sipkey,
    ngx_str_t *token, ngx_str_t *entity, ngx_str_t *type,
    ngx_http_usage_list_key_t *key, ngx_str_t *error);
void ngx_http_usage_cursor_seal(ngx_http_usage_sipkey_t *sipkey,
    u_char *payload, size_t len, ngx_str_t *out);
ngx_int_t ngx_http_usage_cursor_open(ngx_http_usage_sipkey_t *sipkey,
    ngx_str_t *token, ngx_uint_t version, u_char *buf, size_t max,
    size_t *len, ngx_str_t *error);
char *ngx_http_usage_cursor_key_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_USAGE_CURSOR_H_INCLUDED_ */
