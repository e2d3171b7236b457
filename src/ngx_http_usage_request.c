
/*
 * What the module reads of a request: its context, its path as sent, its
 * headers and its body limit.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_request.h"


ngx_http_usage_ctx_t *
ngx_http_usage_get_ctx(ngx_http_request_t *r)
{
    ngx_http_usage_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_usage_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_usage_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_usage_module);
    }

    return ctx;
}


/* the path the client asked for, without the query string, as sent */

ngx_int_t
ngx_http_usage_request_path(ngx_http_request_t *r, ngx_str_t *path)
{
    if (r->unparsed_uri.len == 0) {
        *path = r->uri;
        return NGX_OK;
    }

    *path = r->unparsed_uri;
    ngx_http_usage_cut_query(r, path);

    return NGX_OK;
}


ngx_table_elt_t *
ngx_http_usage_find_header(ngx_http_request_t *r, u_char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, name, len) == 0)
        {
            return &h[i];
        }
    }
}


/*
 * client_max_body_size, or, where it is 0 (unlimited), the module's own
 * ceiling: the body is read into memory, an event never needs more.
 */

off_t
ngx_http_usage_body_limit(ngx_http_request_t *r)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    return clcf->client_max_body_size ? clcf->client_max_body_size
                                      : NGX_HTTP_USAGE_BODY_CEILING;
}
