
/*
 * ngx_http_usage_module: directives, configuration and registration.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_store.h"
#include "ngx_http_usage_state.h"
#include "ngx_http_usage_body.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_keys.h"
#include "ngx_http_usage_id.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_api.h"
#include "ngx_http_usage_filter.h"
#include "ngx_http_usage_trace.h"
#include "ngx_http_usage_track.h"
#include "ngx_http_usage_metrics.h"
#include "ngx_http_usage_sync.h"
#include "ngx_http_usage_cursor.h"


/* the parameters of one usage_zone directive, as they are parsed */

typedef struct {
    ngx_str_t                    name;
    ssize_t                      size;
    ngx_uint_t                   max_events;
    ngx_uint_t                   max_ids;      /* 0: from the size */
    ngx_uint_t                   raw;          /* percent */
    ngx_uint_t                   entity_types;
    ngx_uint_t                   entity_share; /* percent */
    ngx_msec_t                   retention;
    ngx_msec_t                   minutes;
    ngx_uint_t                   minutes_set;  /* minutes= was given */
    ngx_str_t                    state;
    ngx_msec_t                   state_interval;
} ngx_http_usage_zone_params_t;


static ngx_int_t ngx_http_usage_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_usage_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_usage_init_process(ngx_cycle_t *cycle);
static void ngx_http_usage_exit_process(ngx_cycle_t *cycle);
static void ngx_http_usage_exit_master(ngx_cycle_t *cycle);
static void ngx_http_usage_save_all(ngx_cycle_t *cycle);
static void *ngx_http_usage_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_usage_create_srv_conf(ngx_conf_t *cf);
static void *ngx_http_usage_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_usage_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static void ngx_http_usage_merge_handler(ngx_conf_t *cf,
    ngx_http_usage_loc_conf_t *conf, ngx_http_usage_loc_conf_t *prev);
static void ngx_http_usage_warn_metadata_size(ngx_conf_t *cf,
    ngx_http_usage_loc_conf_t *conf);
static char *ngx_http_usage_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_usage_zone_param(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp);
static ngx_int_t ngx_http_usage_zone_name(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp);
static ngx_int_t ngx_http_usage_zone_positive(ngx_conf_t *cf,
    ngx_str_t *value, size_t skip, ngx_uint_t *n);
static ngx_int_t ngx_http_usage_zone_number(ngx_conf_t *cf, ngx_str_t *value,
    char *name, ngx_uint_t percent, ngx_int_t min, ngx_int_t max,
    ngx_uint_t *n);
static ngx_int_t ngx_http_usage_zone_raw(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp);
static ngx_int_t ngx_http_usage_zone_retention(ngx_conf_t *cf,
    ngx_str_t *value, ngx_http_usage_zone_params_t *zp);
static ngx_int_t ngx_http_usage_zone_minutes(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp);
static ngx_int_t ngx_http_usage_zone_state(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp);
static ngx_int_t ngx_http_usage_zone_state_interval(ngx_conf_t *cf,
    ngx_str_t *value, ngx_http_usage_zone_params_t *zp);
static ngx_http_usage_zone_t *ngx_http_usage_zone_create(ngx_conf_t *cf,
    ngx_http_usage_zone_params_t *zp);
static char *ngx_http_usage_zone_add(ngx_conf_t *cf,
    ngx_http_usage_zone_t *zone);
static char *ngx_http_usage_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_usage_track(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_usage_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_usage_drain_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_shm_zone_t *ngx_http_usage_zone_ref(ngx_conf_t *cf,
    ngx_str_t *name);
static char *ngx_http_usage_check_token(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_usage_check_origin(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_usage_check_metadata_size(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_usage_check_retry_after(ngx_conf_t *cf, void *post,
    void *data);


/* values that end up in response headers are checked when read */
static ngx_conf_post_t  ngx_http_usage_token_post =
    { ngx_http_usage_check_token };
static ngx_conf_post_t  ngx_http_usage_origin_post =
    { ngx_http_usage_check_origin };
static ngx_conf_post_t  ngx_http_usage_metadata_size_post =
    { ngx_http_usage_check_metadata_size };
static ngx_conf_post_t  ngx_http_usage_retry_after_post =
    { ngx_http_usage_check_retry_after };


static ngx_conf_num_bounds_t  ngx_http_usage_depth_bounds = {
    ngx_conf_check_num_bounds, 1, 1024
};


static ngx_command_t  ngx_http_usage_commands[] = {

    { ngx_string("usage_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_usage_zone,
      0,
      0,
      NULL },

    { ngx_string("usage_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_usage_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("usage_track"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_usage_track,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("usage_trace_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_usage_loc_conf_t, trace_header),
      &ngx_http_usage_token_post },

    { ngx_string("usage_service_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_usage_loc_conf_t, service_name),
      NULL },

    { ngx_string("usage_service_version"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_usage_loc_conf_t, service_version),
      NULL },

    { ngx_string("usage_environment"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_usage_loc_conf_t, environment),
      NULL },

    { ngx_string("usage_cors_origin"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_usage_loc_conf_t, cors_origin),
      &ngx_http_usage_origin_post },

    { ngx_string("usage_metadata_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_usage_loc_conf_t, metadata_max_size),
      &ngx_http_usage_metadata_size_post },

    { ngx_string("usage_metadata_max_depth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_usage_loc_conf_t, metadata_max_depth),
      &ngx_http_usage_depth_bounds },

    { ngx_string("usage_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_usage_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("usage_drain_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_usage_drain_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("usage_retry_after"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_usage_loc_conf_t, retry_after),
      &ngx_http_usage_retry_after_post },

    { ngx_string("usage_entity_scope"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_usage_loc_conf_t, entity_scope),
      NULL },

    { ngx_string("usage_sync"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_usage_sync,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("usage_cursor_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_usage_cursor_key_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("usage_api_keys"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_usage_api_keys,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("usage_api_key_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_usage_loc_conf_t, api_key_header),
      &ngx_http_usage_token_post },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_usage_module_ctx = {
    ngx_http_usage_add_variables,          /* preconfiguration */
    ngx_http_usage_init,                   /* postconfiguration */

    ngx_http_usage_create_main_conf,       /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_http_usage_create_srv_conf,        /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_usage_create_loc_conf,        /* create location configuration */
    ngx_http_usage_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_usage_module = {
    NGX_MODULE_V1,
    &ngx_http_usage_module_ctx,            /* module context */
    ngx_http_usage_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_usage_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_usage_exit_process,           /* exit process */
    ngx_http_usage_exit_master,            /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_usage_trace_var = ngx_string("usage_trace_id");


static ngx_int_t
ngx_http_usage_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    /*
     * Cacheable on purpose: the value lives in r->variables, which an
     * internal redirect keeps, so a generated id stays the same for the
     * whole request, its response header and its log line.
     */
    var = ngx_http_add_variable(cf, &ngx_http_usage_trace_var, 0);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_usage_trace_id_variable;

    return ngx_http_usage_keys_add_variables(cf);
}


static ngx_int_t
ngx_http_usage_init(ngx_conf_t *cf)
{
    ngx_uint_t                   i;
    ngx_http_handler_pt         *h;
    ngx_http_usage_zone_ref_t   *ref;
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_usage_main_conf_t  *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_usage_module);

    ref = umcf->zone_refs.elts;
    for (i = 0; i < umcf->zone_refs.nelts; i++) {
        if (ref[i].zone->data == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "usage zone \"%V\" is unknown in %V:%ui: declare "
                          "it with \"usage_zone zone=%V:<size>;\" in the "
                          "http block",
                          &ref[i].zone->shm.name, &ref[i].file, ref[i].line,
                          &ref[i].zone->shm.name);
            return NGX_ERROR;
        }
    }

    umcf->trace_var_index = ngx_http_get_variable_index(cf,
                                                   &ngx_http_usage_trace_var);
    if (umcf->trace_var_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* the log-phase tracker runs only where usage_track was configured */
    if (umcf->tracking_used) {
        h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ngx_http_usage_track_handler;
    }

    /*
     * Every error-log line of a request in the module's locations
     * (limit_req's, deny's, the module's own, the 413 nginx answers as it
     * chooses the location) carries the trace id: the request's log
     * context is wrapped from the first phase on.
     */
    if (umcf->zone_refs.nelts) {
        h = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ngx_http_usage_trace_handler;
    }

    /* usage_api_keys: the access phase, where used */
    if (ngx_http_usage_keys_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_usage_sync_init_conf(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_usage_filter_init(cf);
}


static ngx_int_t
ngx_http_usage_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_http_usage_zone_ref_t   *ref;
    ngx_http_usage_main_conf_t  *umcf;

    /* after fork: each worker gets its own random sequence */
    ngx_http_usage_random_init();
    ngx_http_usage_json_init();

    umcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_usage_module);

    if (umcf == NULL
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE))
    {
        return NGX_OK;
    }

    /* each zone with a state file: a save timer in every worker, the
     * first to fire saves */
    for (i = 0; i < umcf->zones.nelts; i++) {
        ref = (ngx_http_usage_zone_ref_t *) umcf->zones.elts + i;
        ngx_http_usage_state_init_worker(cycle, ref->zone->data);
    }

    ngx_http_usage_sync_init_worker(cycle);

    return NGX_OK;
}


/* a worker leaving (stop, reload, upgrade) saves what changed */

static void
ngx_http_usage_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_usage_sync_exit_worker(cycle);
    ngx_http_usage_save_all(cycle);
}


/* the master saves last, once every worker is gone */

static void
ngx_http_usage_exit_master(ngx_cycle_t *cycle)
{
    ngx_http_usage_save_all(cycle);
}


static void
ngx_http_usage_save_all(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_http_usage_zone_t       *zone;
    ngx_http_usage_zone_ref_t   *ref;
    ngx_http_usage_main_conf_t  *umcf;

    umcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_usage_module);

    if (umcf == NULL) {
        return;
    }

    for (i = 0; i < umcf->zones.nelts; i++) {
        ref = (ngx_http_usage_zone_ref_t *) umcf->zones.elts + i;
        zone = ref->zone->data;

        if (zone->sh && zone->state_file.len) {
            ngx_http_usage_state_save(zone, cycle->log);
        }
    }
}


static void *
ngx_http_usage_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_usage_main_conf_t  *umcf;

    umcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_usage_main_conf_t));
    if (umcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&umcf->zone_refs, cf->pool, 4,
                       sizeof(ngx_http_usage_zone_ref_t))
        != NGX_OK
        || ngx_array_init(&umcf->zones, cf->pool, 2,
                          sizeof(ngx_http_usage_zone_ref_t))
           != NGX_OK
        || ngx_array_init(&umcf->drains, cf->pool, 1,
                          sizeof(ngx_http_usage_drain_t *))
           != NGX_OK)
    {
        return NULL;
    }

    umcf->trace_var_index = NGX_ERROR;

    return umcf;
}


static void *
ngx_http_usage_create_srv_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_usage_srv_conf_t));
}


static void *
ngx_http_usage_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_usage_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_usage_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->api_zone = NULL;
     *     conf->track_zone = NULL;
     *     conf->track_entity = NULL;
     *     conf->track_type = NULL;
     *     conf->trace_header = { 0, NULL };
     *     conf->metrics_zone = NULL;
     *     conf->retry_after_value = { 0, NULL };
     *     ...
     */

    conf->track_set = NGX_CONF_UNSET;
    conf->metadata_max_size = NGX_CONF_UNSET_SIZE;
    conf->metadata_max_depth = NGX_CONF_UNSET_UINT;
    conf->drain = NGX_CONF_UNSET_PTR;
    conf->retry_after = NGX_CONF_UNSET;
    conf->entity_scope = NGX_CONF_UNSET_PTR;
    conf->api_keys = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_usage_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_usage_loc_conf_t *prev = parent;
    ngx_http_usage_loc_conf_t *conf = child;

    u_char  *p;

    ngx_http_usage_merge_handler(cf, conf, prev);

    if (conf->track_set == NGX_CONF_UNSET) {
        conf->track_set = prev->track_set;
        conf->track_zone = prev->track_zone;
        conf->track_entity = prev->track_entity;
        conf->track_type = prev->track_type;
    }

    ngx_conf_merge_str_value(conf->trace_header, prev->trace_header,
                             "X-Trace-Id");
    ngx_conf_merge_str_value(conf->service_name, prev->service_name,
                             NGX_HTTP_USAGE_NAME);
    ngx_conf_merge_str_value(conf->service_version, prev->service_version,
                             NGX_HTTP_USAGE_VERSION);
    ngx_conf_merge_str_value(conf->environment, prev->environment,
                             "production");
    ngx_conf_merge_str_value(conf->cors_origin, prev->cors_origin, "*");

    ngx_conf_merge_size_value(conf->metadata_max_size,
                              prev->metadata_max_size, 8192);
    ngx_conf_merge_uint_value(conf->metadata_max_depth,
                              prev->metadata_max_depth, 32);

    ngx_conf_merge_ptr_value(conf->drain, prev->drain, NULL);
    ngx_conf_merge_ptr_value(conf->entity_scope, prev->entity_scope, NULL);

    if (ngx_http_usage_keys_merge(cf, conf, prev) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_sec_value(conf->retry_after, prev->retry_after, 1);

    /* the header's value, written once rather than on every 429 */
    p = ngx_pnalloc(cf->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    conf->retry_after_value.data = p;
    conf->retry_after_value.len = ngx_sprintf(p, "%T", conf->retry_after) - p;

    ngx_http_usage_warn_metadata_size(cf, conf);

    /* the header is echoed in lower case, as the old service sent it */
    conf->trace_header_lc.len = conf->trace_header.len;
    conf->trace_header_lc.data = ngx_pnalloc(cf->pool,
                                             conf->trace_header.len);
    if (conf->trace_header_lc.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_strlow(conf->trace_header_lc.data, conf->trace_header.data,
               conf->trace_header.len);

    if (ngx_http_usage_headers_init(cf, conf, prev) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * "if" and "limit_except" blocks are locations without a name inside
 * the API location: requests in them must still be served by the API
 * (nginx keeps the content handler, so the zone must follow).
 */

static void
ngx_http_usage_merge_handler(ngx_conf_t *cf, ngx_http_usage_loc_conf_t *conf,
    ngx_http_usage_loc_conf_t *prev)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (conf->api_zone == NULL && prev->api_zone && clcf->noname) {
        conf->api_zone = prev->api_zone;
        clcf->handler = ngx_http_usage_api_handler;
    }

    if (conf->metrics_zone == NULL && prev->metrics_zone && clcf->noname) {
        conf->metrics_zone = prev->metrics_zone;
        clcf->handler = ngx_http_usage_metrics_handler;
    }
}


/*
 * Events over a quarter of the zone are refused (see the store): say
 * at start which limits make valid events unstorable.  The slab pool's
 * own pages are not known yet, so the size is the declared one.
 */

static void
ngx_http_usage_warn_metadata_size(ngx_conf_t *cf,
    ngx_http_usage_loc_conf_t *conf)
{
    ngx_http_usage_zone_t  *zone;

    zone = conf->api_zone ? conf->api_zone->data : NULL;

    if (zone && conf->api_zone->shm.size
        && conf->metadata_max_size + ngx_http_usage_store_event_overhead()
                                   + NGX_HTTP_USAGE_ID_MAX_BYTES
           > ngx_http_usage_store_ring_size(zone->size, zone->raw_percent) / 4)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "usage zone \"%V\" of %uz bytes is too small for "
                           "usage_metadata_max_size %uz: events with large "
                           "metadata will be refused (507); use a zone of at "
                           "least %uz bytes or a smaller limit",
                           &conf->api_zone->shm.name,
                           conf->api_zone->shm.size, conf->metadata_max_size,
                           (4 * (conf->metadata_max_size
                                 + ngx_http_usage_store_event_overhead()
                                 + NGX_HTTP_USAGE_ID_MAX_BYTES)
                            + ngx_pagesize) / zone->raw_percent * 100);
    }
}


/*
 * usage_zone zone=name:size [max_events=number] [retention=time]
 *     [minutes=time] [raw=percent%] [max_ids=number] [state=file]
 *     [state_interval=time] [entity_types=number]
 *     [entity_share=percent%];
 */

static char *
ngx_http_usage_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t                     *value;
    ngx_uint_t                     i;
    ngx_http_usage_zone_t         *zone;
    ngx_http_usage_zone_params_t   zp;

    value = cf->args->elts;

    zp.size = 0;
    zp.name.len = 0;
    zp.max_events = 0;
    zp.max_ids = 0;
    zp.raw = 50;
    zp.entity_types = 100;
    zp.entity_share = 10;
    zp.retention = 24 * 60 * 60 * 1000;
    zp.minutes = 60 * 60 * 1000;
    zp.minutes_set = 0;
    zp.state_interval = 10 * 1000;
    ngx_str_null(&zp.state);

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_http_usage_zone_param(cf, &value[i], &zp) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (zp.name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    zone = ngx_http_usage_zone_create(cf, &zp);
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_usage_zone_add(cf, zone);
}


/*
 * One parameter of usage_zone: the prefixes do not overlap, so the order
 * of the tests does not matter; a later parameter overrides an earlier one.
 */

static ngx_int_t
ngx_http_usage_zone_param(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp)
{
    ngx_int_t  rc;

    if (ngx_strncmp(value->data, "zone=", 5) == 0) {
        return ngx_http_usage_zone_name(cf, value, zp);
    }

    if (ngx_strncmp(value->data, "max_events=", 11) == 0) {
        return ngx_http_usage_zone_positive(cf, value, 11, &zp->max_events);
    }

    if (ngx_strncmp(value->data, "max_ids=", 8) == 0) {
        return ngx_http_usage_zone_positive(cf, value, 8, &zp->max_ids);
    }

    rc = ngx_http_usage_zone_number(cf, value, "entity_types", 0,
                                    0, NGX_MAX_INT32_VALUE,
                                    &zp->entity_types);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    rc = ngx_http_usage_zone_number(cf, value, "entity_share", 1,
                                    1, 100, &zp->entity_share);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (ngx_strncmp(value->data, "raw=", 4) == 0) {
        return ngx_http_usage_zone_raw(cf, value, zp);
    }

    if (ngx_strncmp(value->data, "retention=", 10) == 0) {
        return ngx_http_usage_zone_retention(cf, value, zp);
    }

    if (ngx_strncmp(value->data, "minutes=", 8) == 0) {
        return ngx_http_usage_zone_minutes(cf, value, zp);
    }

    if (ngx_strncmp(value->data, "state=", 6) == 0) {
        return ngx_http_usage_zone_state(cf, value, zp);
    }

    if (ngx_strncmp(value->data, "state_interval=", 15) == 0) {
        return ngx_http_usage_zone_state_interval(cf, value, zp);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", value);
    return NGX_ERROR;
}


/* zone=name:size */

static ngx_int_t
ngx_http_usage_zone_name(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp)
{
    u_char     *p;
    ngx_str_t   s;

    zp->name.data = value->data + 5;

    p = (u_char *) ngx_strchr(zp->name.data, ':');

    if (p == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\": expected "
                           "zone=name:size", value);
        return NGX_ERROR;
    }

    zp->name.len = p - zp->name.data;

    s.data = p + 1;
    s.len = value->data + value->len - s.data;

    zp->size = ngx_parse_size(&s);

    if (zp->size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", value);
        return NGX_ERROR;
    }

    if (zp->size < (ssize_t) (NGX_HTTP_USAGE_ZONE_MIN_PAGES * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "usage zone \"%V\" is too small: %z "
                           "bytes, at least %uz are needed",
                           &zp->name, zp->size,
                           NGX_HTTP_USAGE_ZONE_MIN_PAGES * ngx_pagesize);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* max_events=number, max_ids=number: skip is the length of "name=" */

static ngx_int_t
ngx_http_usage_zone_positive(ngx_conf_t *cf, ngx_str_t *value, size_t skip,
    ngx_uint_t *n)
{
    ngx_int_t  v;

    v = ngx_atoi(value->data + skip, value->len - skip);

    if (v == NGX_ERROR || v < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %*s \"%V\": a positive number is "
                           "expected", skip - 1, value->data, value);
        return NGX_ERROR;
    }

    *n = v;

    return NGX_OK;
}


/*
 * "name=N" (N from 0 on) or "name=P%" (P from min to max) of usage_zone:
 * NGX_DECLINED when value is not that parameter.
 */

static ngx_int_t
ngx_http_usage_zone_number(ngx_conf_t *cf, ngx_str_t *value, char *name,
    ngx_uint_t percent, ngx_int_t min, ngx_int_t max, ngx_uint_t *n)
{
    size_t     len;
    ngx_int_t  v;

    len = ngx_strlen(name);

    if (value->len <= len || ngx_strncmp(value->data, name, len) != 0
        || value->data[len] != '=')
    {
        return NGX_DECLINED;
    }

    len++;
    v = NGX_ERROR;

    if (!percent) {
        v = ngx_atoi(value->data + len, value->len - len);

    } else if (value->len > len + 1 && value->data[value->len - 1] == '%') {
        v = ngx_atoi(value->data + len, value->len - len - 1);
    }

    if (v == NGX_ERROR || v < min || v > max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %s \"%V\": %s from %i%s to %i%s is "
                           "expected", name, value,
                           percent ? "a share of the zone" : "a number",
                           min, percent ? "%" : "", max, percent ? "%" : "");
        return NGX_ERROR;
    }

    *n = (ngx_uint_t) v;

    return NGX_OK;
}



/* raw=percent% */

static ngx_int_t
ngx_http_usage_zone_raw(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp)
{
    ngx_int_t  n;

    n = NGX_ERROR;

    if (value->len > 5 && value->data[value->len - 1] == '%') {
        n = ngx_atoi(value->data + 4, value->len - 5);
    }

    if (n == NGX_ERROR || n < 10 || n > 90) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid raw \"%V\": a share of the zone "
                           "from 10%% to 90%% is expected", value);
        return NGX_ERROR;
    }

    zp->raw = n;

    return NGX_OK;
}


/* retention=time */

static ngx_int_t
ngx_http_usage_zone_retention(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp)
{
    ngx_str_t  s;

    s.data = value->data + 10;
    s.len = value->len - 10;

    zp->retention = ngx_parse_time(&s, 0);

    if (zp->retention == (ngx_msec_t) NGX_ERROR || zp->retention < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid retention \"%V\": a time of at "
                           "least 1s is expected", value);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* minutes=time */

static ngx_int_t
ngx_http_usage_zone_minutes(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp)
{
    ngx_str_t  s;

    s.data = value->data + 8;
    s.len = value->len - 8;

    zp->minutes = ngx_parse_time(&s, 0);

    if (zp->minutes == (ngx_msec_t) NGX_ERROR
        || zp->minutes < NGX_HTTP_USAGE_MINUTE)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid minutes \"%V\": a time of at "
                           "least 1m is expected", value);
        return NGX_ERROR;
    }

    /* an explicit span is kept even past the retention */
    zp->minutes_set = 1;

    return NGX_OK;
}


/* state=file, relative to the prefix */

static ngx_int_t
ngx_http_usage_zone_state(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp)
{
    zp->state.data = value->data + 6;
    zp->state.len = value->len - 6;

    if (zp->state.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty file name in \"%V\"", value);
        return NGX_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &zp->state, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* state_interval=time */

static ngx_int_t
ngx_http_usage_zone_state_interval(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_zone_params_t *zp)
{
    ngx_str_t  s;

    s.data = value->data + 15;
    s.len = value->len - 15;

    zp->state_interval = ngx_parse_time(&s, 0);

    if (zp->state_interval == (ngx_msec_t) NGX_ERROR
        || zp->state_interval < 1000)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid state_interval \"%V\": a time of "
                           "at least 1s is expected", value);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The zone's configuration from the parameters: the bounds that were not
 * given are derived from the size.
 */

static ngx_http_usage_zone_t *
ngx_http_usage_zone_create(ngx_conf_t *cf, ngx_http_usage_zone_params_t *zp)
{
    ngx_http_usage_zone_t  *zone;

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_usage_zone_t));
    if (zone == NULL) {
        return NULL;
    }

    zone->name = zp->name;
    zone->size = zp->size;
    zone->retention = zp->retention;
    /*
     * By default minute buckets cover the whole window when it is at most
     * an hour (plus the minute a bucket can straddle): nothing is ever
     * rolled into an hour bucket that would outlive the window.
     */
    zone->minute_span = zp->minutes_set
                        ? zp->minutes
                        : ngx_min(zp->minutes,
                                  zp->retention + NGX_HTTP_USAGE_MINUTE);
    zone->max_events = zp->max_events;
    zone->raw_percent = zp->raw;
    zone->state_file = zp->state;
    zone->state_interval = zp->state_interval;

#if (NGX_THREADS)
    if (zp->state.len) {
        /* periodic saves run in nginx's "default" thread pool */
        zone->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (zone->thread_pool == NULL) {
            return NULL;
        }
    }
#endif

    /*
     * An id costs a 128- or 256-byte slab slot, more if it is long.  They
     * are bounded in number and in bytes: by default a quarter of the
     * zone, room for max_ids ids of 256 bytes; an explicit max_ids gets
     * that room up to half the zone.
     */
    zone->max_ids = zp->max_ids ? zp->max_ids
                                : ngx_max((ngx_uint_t) zp->size / 1024, 64);
    zone->max_id_bytes = zp->max_ids ? ngx_min((size_t) zp->max_ids * 256,
                                               (size_t) zp->size / 2)
                                     : (size_t) zp->size / 4;

    /* one entity's share of the aggregates: what the ring leaves */
    zone->entity_types = zp->entity_types;
    zone->entity_share = zp->entity_share;
    zone->entity_slots = (zp->entity_share == 100) ? 0
                         : ((size_t) zp->size
                            - ngx_http_usage_store_ring_size(zp->size,
                                                             zp->raw))
                           / 100 * zp->entity_share
                           / NGX_HTTP_USAGE_AGGREGATE_SLOT;

    return zone;
}


/*
 * The zone in the cycle's shared memory, and in the list of zones that
 * the workers and the exiting processes walk to save their state files.
 */

static char *
ngx_http_usage_zone_add(ngx_conf_t *cf, ngx_http_usage_zone_t *zone)
{
    ngx_shm_zone_t              *shm_zone;
    ngx_http_usage_zone_ref_t   *ref;
    ngx_http_usage_main_conf_t  *umcf;

    shm_zone = ngx_shared_memory_add(cf, &zone->name, zone->size,
                                     &ngx_http_usage_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate usage zone \"%V\"", &zone->name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_usage_state_init_zone;
    shm_zone->data = zone;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_usage_module);

    ref = ngx_array_push(&umcf->zones);
    if (ref == NULL) {
        return NGX_CONF_ERROR;
    }

    ref->zone = shm_zone;
    ref->file = cf->conf_file->file.name;
    ref->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/* usage_api zone_name; */

static char *
ngx_http_usage_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_usage_loc_conf_t *ulcf = conf;

    ngx_str_t                  *value;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_usage_srv_conf_t  *uscf;

    if (ulcf->api_zone) {
        return "is duplicate";
    }

    if (ulcf->metrics_zone) {
        return "cannot be used in a location with \"usage_metrics\"";
    }

    value = cf->args->elts;

    ulcf->api_zone = ngx_http_usage_zone_ref(cf, &value[1]);
    if (ulcf->api_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_usage_api_handler;

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_usage_module);
    uscf->has_api = 1;

    return NGX_CONF_OK;
}


/* usage_track zone_name [entity=value] [event_type=value] | off; */

static char *
ngx_http_usage_track(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_usage_loc_conf_t *ulcf = conf;

    ngx_str_t                          *value, s;
    ngx_uint_t                          i;
    ngx_http_complex_value_t          **cv;
    ngx_http_usage_main_conf_t         *umcf;
    ngx_http_compile_complex_value_t    ccv;

    if (ulcf->track_set != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;
    ulcf->track_set = 1;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            return "takes no parameters with \"off\"";
        }

        ulcf->track_zone = NULL;
        return NGX_CONF_OK;
    }

    ulcf->track_zone = ngx_http_usage_zone_ref(cf, &value[1]);
    if (ulcf->track_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "entity=", 7) == 0) {
            cv = &ulcf->track_entity;
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

        } else if (ngx_strncmp(value[i].data, "event_type=", 11) == 0) {
            cv = &ulcf->track_type;
            s.data = value[i].data + 11;
            s.len = value[i].len - 11;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (s.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty value in \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        *cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (*cv == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &s;
        ccv.complex_value = *cv;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_usage_module);
    umcf->tracking_used = 1;

    return NGX_CONF_OK;
}


/* usage_metrics zone_name; */

static char *
ngx_http_usage_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_usage_loc_conf_t *ulcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (ulcf->metrics_zone) {
        return "is duplicate";
    }

    if (ulcf->api_zone) {
        return "cannot be used in a location with \"usage_api\"";
    }

    value = cf->args->elts;

    ulcf->metrics_zone = ngx_http_usage_zone_ref(cf, &value[1]);
    if (ulcf->metrics_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_usage_metrics_handler;

    return NGX_CONF_OK;
}


/*
 * usage_drain_file path | off;
 *
 * Locations that name the same file share one record of it, so that a
 * worker looks at each file at most once a second.
 */

static char *
ngx_http_usage_drain_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_usage_loc_conf_t *ulcf = conf;

    ngx_str_t                    *value, path;
    ngx_uint_t                    i;
    ngx_http_usage_drain_t       *drain, **d;
    ngx_http_usage_main_conf_t   *umcf;

    if (ulcf->drain != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ulcf->drain = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "must name a file";
    }

    path = value[1];

    /* relative to the prefix, as nginx's other paths; null-terminated */
    if (ngx_conf_full_name(cf->cycle, &path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_usage_module);

    d = umcf->drains.elts;
    for (i = 0; i < umcf->drains.nelts; i++) {
        if (d[i]->path.len == path.len
            && ngx_strncmp(d[i]->path.data, path.data, path.len) == 0)
        {
            ulcf->drain = d[i];
            return NGX_CONF_OK;
        }
    }

    drain = ngx_pcalloc(cf->pool, sizeof(ngx_http_usage_drain_t));
    if (drain == NULL) {
        return NGX_CONF_ERROR;
    }

    drain->path = path;

    d = ngx_array_push(&umcf->drains);
    if (d == NULL) {
        return NGX_CONF_ERROR;
    }

    *d = drain;
    ulcf->drain = drain;

    return NGX_CONF_OK;
}


/* a reference to a zone that may be declared later in the configuration;
 * ngx_http_usage_init() reports the ones that never are */

static ngx_shm_zone_t *
ngx_http_usage_zone_ref(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_shm_zone_t              *shm_zone;
    ngx_http_usage_zone_ref_t   *ref;
    ngx_http_usage_main_conf_t  *umcf;

    shm_zone = ngx_shared_memory_add(cf, name, 0, &ngx_http_usage_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_usage_module);

    ref = ngx_array_push(&umcf->zone_refs);
    if (ref == NULL) {
        return NULL;
    }

    ref->zone = shm_zone;
    ref->file = cf->conf_file->file.name;
    ref->line = cf->conf_file->line;

    return shm_zone;
}


/* a header name: an RFC 9110 token */

static char *
ngx_http_usage_check_token(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *name = data;

    u_char  *p, *end;

    if (name->len == 0) {
        return "must not be empty";
    }

    for (p = name->data, end = p + name->len; p < end; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
            || (*p >= '0' && *p <= '9')
            || (*p != '\0' && ngx_strchr("!#$%&'*+-.^_`|~", *p) != NULL))
        {
            continue;
        }

        return "is not a valid header name";
    }

    return NGX_CONF_OK;
}


/* a header value: visible ASCII, so no header can be injected */

static char *
ngx_http_usage_check_origin(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *origin = data;

    u_char  *p, *end;

    if (origin->len == 0) {
        return "must not be empty";
    }

    for (p = origin->data, end = p + origin->len; p < end; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return "must be an origin such as \"*\" or "
                   "\"https://app.example.com\"";
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_usage_check_metadata_size(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *size = data;

    /* "{}" must always fit */
    if (*size < 2) {
        return "must be at least 2 bytes";
    }

    return NGX_CONF_OK;
}


/* Retry-After is in whole seconds; 0 would invite an immediate retry */

static char *
ngx_http_usage_check_retry_after(ngx_conf_t *cf, void *post, void *data)
{
    time_t  *sec = data;

    if (*sec < 1) {
        return "must be at least 1s";
    }

    return NGX_CONF_OK;
}
