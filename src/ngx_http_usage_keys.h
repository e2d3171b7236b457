
/*
 * usage_api_keys: API keys read from a file at configuration time, each
 * with its client, the entity it may use and its role.  Keys are looked
 * up by a keyed hash and compared in constant time, byte for byte.
 */


#ifndef _NGX_HTTP_USAGE_KEYS_H_INCLUDED_
#define _NGX_HTTP_USAGE_KEYS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_siphash.h"


#define NGX_HTTP_USAGE_KEY_MIN          16
#define NGX_HTTP_USAGE_KEY_MAX          256
#define NGX_HTTP_USAGE_KEY_NAME_MAX     255       /* characters */


struct ngx_http_usage_key_s {
    ngx_str_t                    key;
    ngx_str_t                    client;
    ngx_str_t                    entity;           /* "*" when any */
    ngx_uint_t                   line;
    ngx_http_usage_key_t        *next;             /* in its bucket */
    unsigned                     any:1;            /* entity "*" */
    unsigned                     admin:1;          /* role admin */
};


/* one per file and configuration, shared by the locations naming it */
struct ngx_http_usage_keys_s {
    ngx_str_t                    file;             /* full name */
    ngx_http_usage_sipkey_t      secret;
    ngx_http_usage_key_t       **buckets;
    ngx_uint_t                   mask;
    ngx_uint_t                   nkeys;
};


char *ngx_http_usage_api_keys(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_usage_keys_merge(ngx_conf_t *cf,
    ngx_http_usage_loc_conf_t *conf, ngx_http_usage_loc_conf_t *prev);
ngx_int_t ngx_http_usage_keys_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_usage_keys_init(ngx_conf_t *cf);

ngx_http_usage_key_t *ngx_http_usage_keys_request(ngx_http_request_t *r);
ngx_int_t ngx_http_usage_keys_scope(ngx_http_request_t *r,
    ngx_str_t *scope, ngx_uint_t store);


#endif /* _NGX_HTTP_USAGE_KEYS_H_INCLUDED_ */
