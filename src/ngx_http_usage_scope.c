
/*
 * usage_entity_scope: a request whose scope evaluates to an entity id
 * may only read and record that entity's usage.  The API's handlers ask
 * here, with the ids as they decoded and trimmed them.  Where
 * usage_api_keys is in effect, the request's key decides instead: its
 * entity ("*": any) and its role (admin: store-wide data too).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_keys.h"
#include "ngx_http_usage_text.h"
#include "ngx_http_usage_reply.h"
#include "ngx_http_usage_scope.h"


/*
 * NGX_OK: the request is restricted to the entity in scope, trimmed as
 * entity ids are (a value that trims to nothing matches no entity);
 * NGX_DECLINED: no restriction (no directive, or an empty value).
 */

ngx_int_t
ngx_http_usage_scope(ngx_http_request_t *r, ngx_str_t *scope)
{
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    if (ulcf->api_keys) {
        return ngx_http_usage_keys_scope(r, scope, 0);
    }

    if (ulcf->entity_scope == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_complex_value(r, ulcf->entity_scope, scope) != NGX_OK) {
        return NGX_ERROR;
    }

    if (scope->len == 0) {
        return NGX_DECLINED;
    }

    ngx_http_usage_js_trim(scope);

    return NGX_OK;
}


/*
 * The same for store-wide data (/v1/usage/stats, /info, usage_metrics):
 * NGX_DECLINED allows it.  A key needs role admin; without keys, no
 * scope is needed.
 */

ngx_int_t
ngx_http_usage_scope_store(ngx_http_request_t *r, ngx_str_t *scope)
{
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    if (ulcf->api_keys) {
        return ngx_http_usage_keys_scope(r, scope, 1);
    }

    return ngx_http_usage_scope(r, scope);
}


/* 403 FORBIDDEN, with the entity the key is for */

ngx_int_t
ngx_http_usage_scope_forbidden(ngx_http_request_t *r, ngx_str_t *scope,
    ngx_uint_t what)
{
    u_char                     *p;
    ngx_str_t                   msg;
    ngx_http_usage_key_t       *key;
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    if (ulcf->api_keys) {
        key = ngx_http_usage_keys_request(r);

        if (key == NULL) {
            ngx_str_set(&msg, "This request has no API key: it may not "
                        "read or record usage");
            goto send;
        }

        if (key->any) {     /* only store-wide data is refused to it */
            ngx_str_set(&msg, "This API key may read any entity, not "
                        "store-wide statistics (role admin only)");
            goto send;
        }
    }

    p = ngx_pnalloc(r->pool, scope->len + 128);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    msg.data = p;

    switch (what) {

    case NGX_HTTP_USAGE_SCOPE_RECORD:
        p = ngx_sprintf(p, "This API key may only record events for entity "
                        "\"%V\"", scope);
        break;

    case NGX_HTTP_USAGE_SCOPE_STORE:
        p = ngx_sprintf(p, "This API key may only read entity \"%V\", not "
                        "store-wide statistics", scope);
        break;

    default: /* NGX_HTTP_USAGE_SCOPE_READ */
        p = ngx_sprintf(p, "This API key may only read entity \"%V\"",
                        scope);
    }

    msg.len = p - msg.data;

send:

    return ngx_http_usage_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN", &msg);
}
