
/*
 * ngx_http_usage_module: usage metering built into nginx.
 *
 * What every file of the module shares: its configuration, its
 * per-request context, and the module itself (whose index finds them).
 * Each file's functions are in a header of its own.
 */


#ifndef _NGX_HTTP_USAGE_MODULE_H_INCLUDED_
#define _NGX_HTTP_USAGE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_siphash.h"


#define NGX_HTTP_USAGE_VERSION          "0.1.0"
#define NGX_HTTP_USAGE_NAME             "ngx_http_usage_module"

#define NGX_HTTP_USAGE_CORS_MAX_AGE     "86400"

/* a zone holds the store's context, the ring and some aggregates */
#define NGX_HTTP_USAGE_ZONE_MIN_PAGES   16

/* request body limit where client_max_body_size is 0 (unlimited) */
#define NGX_HTTP_USAGE_BODY_CEILING     (1024 * 1024)


/* usage_api_keys (ngx_http_usage_keys.h) */
typedef struct ngx_http_usage_key_s   ngx_http_usage_key_t;
typedef struct ngx_http_usage_keys_s  ngx_http_usage_keys_t;


typedef struct {
    ngx_shm_zone_t              *zone;
    ngx_str_t                    file;             /* where it is named */
    ngx_uint_t                   line;
} ngx_http_usage_zone_ref_t;


/* usage_drain_file: one per file, whatever the number of locations */
typedef struct {
    ngx_str_t                    path;             /* full, null-terminated */
    time_t                       checked;          /* ngx_time() of the stat */
    ngx_err_t                    err;              /* of the last stat */
    ngx_uint_t                   exists;
} ngx_http_usage_drain_t;


typedef struct {
    ngx_array_t                  zone_refs;        /* zone_ref_t */
    ngx_array_t                  zones;            /* zone_ref_t, declared */
    ngx_array_t                  drains;           /* drain_t * */
    ngx_array_t                 *api_keys;         /* keys_t *, or NULL */
    ngx_array_t                  syncs;            /* usage_sync:
                                                      sync_conf_t * */
    ngx_flag_t                   tracking_used;
    ngx_int_t                    trace_var_index;
    ngx_http_usage_sipkey_t     *cursor_key;       /* usage_cursor_key, or
                                                      NULL: each zone's */
} ngx_http_usage_main_conf_t;


typedef struct {
    /* a location of this server has usage_api: errors nginx answers
     * before any location is chosen (a bad request line) are JSON too */
    ngx_flag_t                   has_api;
} ngx_http_usage_srv_conf_t;


typedef struct {
    /* usage_api: the zone this location serves the API from, or NULL */
    ngx_shm_zone_t              *api_zone;

    /* usage_track: zone to record into; NULL with track_set means "off" */
    ngx_shm_zone_t              *track_zone;
    ngx_flag_t                   track_set;
    ngx_http_complex_value_t    *track_entity;
    ngx_http_complex_value_t    *track_type;

    ngx_str_t                    trace_header;     /* as configured */
    ngx_str_t                    trace_header_lc;  /* echoed, lower case */
    ngx_str_t                    service_name;
    ngx_str_t                    service_version;
    ngx_str_t                    environment;
    ngx_str_t                    cors_origin;

    size_t                       metadata_max_size;
    ngx_uint_t                   metadata_max_depth;

    /* usage_metrics: the zone this location exposes, or NULL */
    ngx_shm_zone_t              *metrics_zone;

    /* usage_drain_file: NULL when not in effect here */
    ngx_http_usage_drain_t      *drain;

    time_t                       retry_after;
    ngx_str_t                    retry_after_value;

    /* usage_entity_scope: the only entity a request may see, or NULL */
    ngx_http_complex_value_t    *entity_scope;

    /* usage_api_keys: NULL when not in effect here */
    ngx_http_usage_keys_t       *api_keys;
    ngx_str_t                    api_key_header;
    ngx_str_t                    api_key_challenge; /* WWW-Authenticate */

    /* the headers every answer of the API carries, ready to be copied
     * into a response at once; the first is the trace id's (shared with
     * the parent location's when nothing they depend on differs) */
    ngx_array_t                 *headers;
} ngx_http_usage_loc_conf_t;


typedef struct {
    /* the response body was produced by the module: leave it alone */
    unsigned                     own_body:1;

    /* an nginx-generated error page is being replaced by the JSON envelope */
    unsigned                     swap_body:1;
    unsigned                     swap_sent:1;

    /* the API handler routed the request; to /health or /ready */
    unsigned                     routed:1;
    unsigned                     untracked:1;

    ngx_str_t                    swap;

    /* a page's own Content-Security-Policy (an embedded asset's), sent
     * instead of the API's; empty: the API's */
    ngx_str_t                    csp;

    /* the request's API key, looked up in api_keys_seen (a location
     * with another file looks again) */
    ngx_http_usage_keys_t       *api_keys_seen;
    ngx_http_usage_key_t        *api_key;

    /* the X-Usage-Position a read waited for (ngx_http_usage_position.c) */
    void                        *position;

    /* the event a POST waits for Redis to take (ngx_http_usage_ack.c) */
    void                        *ack;
} ngx_http_usage_ctx_t;


extern ngx_module_t  ngx_http_usage_module;


#endif /* _NGX_HTTP_USAGE_MODULE_H_INCLUDED_ */
