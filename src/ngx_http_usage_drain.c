
/*
 * usage_drain_file: while the file exists, /ready answers 503 and every
 * response closes its connection, so that a balancer takes the instance
 * out of its targets before it is stopped.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_drain.h"


/* /ready: is the drain file of the request's location there? */

ngx_uint_t
ngx_http_usage_draining(ngx_http_request_t *r)
{
    ngx_http_usage_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);

    return ulcf->drain && ngx_http_usage_drain_check(ulcf->drain);
}


/*
 * One stat() per file per second in each worker, whatever the request
 * rate: the answer is kept for the second of ngx_time() it was taken in.
 * A change is logged once per worker.
 */

ngx_uint_t
ngx_http_usage_drain_check(ngx_http_usage_drain_t *drain)
{
    time_t           now;
    ngx_err_t        err;
    ngx_uint_t       exists;
    ngx_file_info_t  fi;

    now = ngx_time();

    if (drain->checked == now) {
        return drain->exists;
    }

    drain->checked = now;

    if (ngx_file_info(drain->path.data, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;
        exists = 0;

        if (err == NGX_ENOENT || err == NGX_ENOTDIR) {
            err = 0;
        }

    } else {
        err = 0;
        exists = 1;
    }

    if (err && err != drain->err) {
        /* not knowing is not draining: a broken check must not take
         * every instance out of its balancer */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, err,
                      ngx_file_info_n " \"%V\" of usage_drain_file failed, "
                      "not draining", &drain->path);
    }

    drain->err = err;

    if (exists != drain->exists) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      exists ? "usage drain file \"%V\" exists: /ready "
                               "answers 503, responses close their "
                               "connections"
                             : "usage drain file \"%V\" is gone: ready "
                               "again",
                      &drain->path);

        drain->exists = exists;
    }

    return exists;
}
