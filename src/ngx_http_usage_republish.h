
/*
 * A fleet after Redis lost its stream (a flush, a restart without
 * persistence): the zone's side of publishing its recent events again,
 * so that the events an instance had not read yet when the stream went
 * come back from any instance that had them.  docs/FLEET.md.
 */


#ifndef _NGX_HTTP_USAGE_REPUBLISH_H_INCLUDED_
#define _NGX_HTTP_USAGE_REPUBLISH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"


/*
 * The next events to publish again, encoded as wire records into buf
 * (len bytes), at most max, oldest first: NGX_OK with batch->count > 0;
 * NGX_DONE: nothing (more) to publish.  The walk's place is in the zone,
 * so a worker that takes the lease over goes on with it.
 */
ngx_int_t ngx_http_usage_republish_take(ngx_http_usage_zone_t *zone,
    ngx_uint_t max, u_char *buf, size_t len,
    ngx_http_usage_ship_batch_t *batch);

/* whether there is something to publish again: read without the lock */
ngx_uint_t ngx_http_usage_republish_pending(ngx_http_usage_zone_t *zone);

/* a lost connection: what was sent may not have landed, so again from
 * the first event */
void ngx_http_usage_republish_rewind(ngx_http_usage_zone_t *zone);


#endif /* _NGX_HTTP_USAGE_REPUBLISH_H_INCLUDED_ */
