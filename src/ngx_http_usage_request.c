
/*
 * What the module reads of a request: its context, its path as sent, its
 * headers and its body limit.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_body.h"
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


/* the whole body in one piece, wherever nginx buffered it; NGX_DECLINED:
 * over the limit */

ngx_int_t
ngx_http_usage_request_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;
    for ( /* void */ ; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    /* a chunked body had no length to check before it was read */
    if ((off_t) len > ngx_http_usage_body_limit(r)) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(r->pool, len ? len : 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    body->len = len;

    /* bounded by client_max_body_size: a large body arrives in a temp file */

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);

            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;

        } else if (b->last > b->pos) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    return NGX_OK;
}


/*
 * The format a POST's Content-Type names (media types are compared
 * without case, parameters aside): CloudEvents' structured JSON, one or a
 * batch, else plain JSON events.
 */

ngx_uint_t
ngx_http_usage_body_format(ngx_http_request_t *r)
{
    u_char  *p, *end;

    if (r->headers_in.content_type == NULL) {
        return NGX_HTTP_USAGE_BODY_JSON;
    }

    p = r->headers_in.content_type->value.data;
    end = ngx_strlchr(p, p + r->headers_in.content_type->value.len, ';');

    if (end == NULL) {
        end = p + r->headers_in.content_type->value.len;
    }

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    if (end - p == sizeof("application/cloudevents+json") - 1
        && ngx_strncasecmp(p, (u_char *) "application/cloudevents+json",
                           end - p) == 0)
    {
        return NGX_HTTP_USAGE_BODY_CLOUDEVENT;
    }

    if (end - p == sizeof("application/cloudevents-batch+json") - 1
        && ngx_strncasecmp(p, (u_char *) "application/cloudevents-batch+json",
                           end - p) == 0)
    {
        return NGX_HTTP_USAGE_BODY_CLOUDEVENTS;
    }

    return NGX_HTTP_USAGE_BODY_JSON;
}


void
ngx_http_usage_wait(ngx_http_request_t *r, ngx_http_event_handler_pt poll,
    ngx_msec_t every)
{
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = poll;

    ngx_http_usage_wait_again(r, every);
}


/* 0: a write event before the timer, handled: the wait goes on */

ngx_uint_t
ngx_http_usage_wait_due(ngx_http_request_t *r)
{
    ngx_event_t  *wev;

    wev = r->connection->write;

    if (!wev->delayed) {
        return 1;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    return 0;
}


void
ngx_http_usage_wait_again(ngx_http_request_t *r, ngx_msec_t every)
{
    r->connection->write->delayed = 1;
    ngx_add_timer(r->connection->write, every);
}


void
ngx_http_usage_wait_end(ngx_http_request_t *r)
{
    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_request_empty_handler;
}
