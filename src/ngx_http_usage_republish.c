
/*
 * Publishing the zone's recent events again after Redis lost its stream.
 *
 * The events of the log received in [republish_from, republish_to] of
 * the zone's fleet part go out again, whatever their origin, with their
 * uuid and createdAt: an instance that holds one already finds it in
 * its log by these and drops the copy (store_apply()).  The walk goes
 * by the log's order, from the place of the last event taken, which the
 * skip list finds again in O(log n) however the log changed meanwhile.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store_internal.h"
#include "ngx_http_usage_skip.h"
#include "ngx_http_usage_wire.h"
#include "ngx_http_usage_republish.h"


static ngx_queue_t *ngx_http_usage_republish_first_locked(
    ngx_http_usage_shctx_t *sh, ngx_http_usage_fleet_t *fleet);
static size_t ngx_http_usage_republish_record(ngx_http_usage_raw_t *raw,
    ngx_http_usage_record_t *rec);


ngx_int_t
ngx_http_usage_republish_take(ngx_http_usage_zone_t *zone, ngx_uint_t max,
    u_char *buf, size_t len, ngx_http_usage_ship_batch_t *batch)
{
    u_char                   *p, *end;
    size_t                    size;
    ngx_queue_t              *q;
    ngx_http_usage_raw_t     *raw;
    ngx_http_usage_fleet_t   *fleet;
    ngx_http_usage_shctx_t   *sh;
    ngx_http_usage_record_t   rec;

    ngx_memzero(batch, sizeof(ngx_http_usage_ship_batch_t));

    sh = zone->sh;
    fleet = sh->fleet;

    if (fleet == NULL || fleet->republish_to == 0) {
        return NGX_DONE;
    }

    p = buf;
    end = buf + len;

    ngx_http_usage_store_lock(zone);

    for (q = ngx_http_usage_republish_first_locked(sh, fleet);
         q != ngx_queue_sentinel(&sh->raw) && batch->count < max;
         q = ngx_queue_next(q))
    {
        raw = ngx_queue_data(q, ngx_http_usage_raw_t, queue);

        if (raw->created > fleet->republish_to) {
            q = ngx_queue_sentinel(&sh->raw);
            break;
        }

        size = ngx_http_usage_republish_record(raw, &rec);

        if (size == 0 || size > (size_t) (end - p)) {
            break;
        }

        /* the seq only numbers the records of the entry: a reader takes
         * such an entry's events by their uuid, never by a window */
        p = ngx_http_usage_wire_encode(p, &rec, batch->count + 1);

        batch->count++;
        fleet->republish_created = raw->created;
        ngx_memcpy(fleet->republish_uuid, raw->uuid, 16);
    }

    if (q == ngx_queue_sentinel(&sh->raw)) {
        fleet->republish_to = 0;    /* the walk is over */
    }

    fleet->republished += batch->count;

    batch->data = buf;
    batch->len = p - buf;
    batch->origin = fleet->origin;
    batch->start = sh->start_time;

    ngx_http_usage_store_unlock(zone);

    return batch->count ? NGX_OK : NGX_DONE;
}


/* the first record after the walk's place */

static ngx_queue_t *
ngx_http_usage_republish_first_locked(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_fleet_t *fleet)
{
    ngx_http_usage_raw_t  *raw;

    raw = ngx_http_usage_skip_seek_event_locked(sh, fleet->republish_created,
                                                fleet->republish_uuid);

    return raw ? ngx_queue_next(&raw->queue) : ngx_queue_head(&sh->raw);
}


/* the event of a raw record, its strings in the zone: the lock is held */

static size_t
ngx_http_usage_republish_record(ngx_http_usage_raw_t *raw,
    ngx_http_usage_record_t *rec)
{
    u_char                   *id;
    ngx_http_usage_type_t    *type;
    ngx_http_usage_entity_t  *entity;

    ngx_memzero(rec, sizeof(ngx_http_usage_record_t));

    entity = raw->series->entity;
    type = raw->series->type;
    id = ngx_http_usage_raw_id(raw);

    ngx_memcpy(rec->uuid, raw->uuid, 16);
    rec->entity.data = entity->data;
    rec->entity.len = entity->len;
    rec->type.data = type->data;
    rec->type.len = type->len;
    rec->id.data = id;
    rec->id.len = raw->id_len;
    rec->metadata.data = id + raw->id_len;
    rec->metadata.len = raw->metadata_len;
    rec->value = raw->value;
    rec->time = raw->time;
    rec->created = raw->created;

    /* the log does not keep whether the client gave the time: an event
     * time apart from the receipt can only have come from the client */
    rec->has_time = (raw->time != raw->created);

    return ngx_http_usage_wire_size(rec);
}


ngx_uint_t
ngx_http_usage_republish_pending(ngx_http_usage_zone_t *zone)
{
    volatile ngx_http_usage_fleet_t  *fleet;

    fleet = zone->sh->fleet;

    return fleet && fleet->republish_to != 0;
}


void
ngx_http_usage_republish_rewind(ngx_http_usage_zone_t *zone)
{
    ngx_http_usage_fleet_t  *fleet;

    fleet = zone->sh->fleet;

    if (fleet == NULL) {
        return;
    }

    ngx_http_usage_store_lock(zone);

    if (fleet->republish_to) {
        fleet->republish_created = fleet->republish_from - 1;
        ngx_memset(fleet->republish_uuid, 0xff, 16);
    }

    ngx_http_usage_store_unlock(zone);
}
