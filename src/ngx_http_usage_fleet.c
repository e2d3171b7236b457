
/*
 * The fleet's part of a zone: the ship queue and the origins' windows.
 *
 * The ship queue holds the wire records of the events this instance
 * accepted and Redis has not acknowledged, in seq order, in a list of
 * slab blocks: any worker appends (in the lock hold of its insert), the
 * worker that holds the Redis connection copies batches out and drops
 * them once Redis has them.  Its own bound (buffer=) keeps a Redis that
 * stays down from taking the zone the store needs; past it, events are
 * still stored here, only not shared, and counted.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_fleet.h"
#include "ngx_http_usage_wire.h"
#include "ngx_http_usage_id.h"


/* one [error] a minute at most about events that could not be queued */
#define NGX_HTTP_USAGE_FLEET_WARN_INTERVAL  60000


static ngx_int_t ngx_http_usage_fleet_queue_locked(ngx_slab_pool_t *shpool,
    ngx_http_usage_fleet_t *fleet, ngx_http_usage_record_t *rec,
    int64_t created);
static ngx_http_usage_ship_block_t *ngx_http_usage_fleet_block_locked(
    ngx_slab_pool_t *shpool, ngx_http_usage_fleet_t *fleet, size_t len);
static ngx_uint_t ngx_http_usage_fleet_full_locked(ngx_http_usage_held_t *h,
    uint64_t seq, ngx_http_usage_ship_batch_t *batch, ngx_uint_t max);
static size_t ngx_http_usage_fleet_copy_locked(ngx_http_usage_held_t *h,
    u_char *dst, u_char *record, size_t n, uint64_t seq,
    ngx_http_usage_ship_batch_t *batch);
static void ngx_http_usage_fleet_republish_locked(
    ngx_http_usage_fleet_t *fleet, int64_t from, int64_t now);


ngx_http_usage_fleet_t *
ngx_http_usage_fleet_create_locked(ngx_slab_pool_t *shpool, size_t queue_max)
{
    uint64_t                 origin;
    ngx_http_usage_fleet_t  *fleet;

    fleet = ngx_slab_calloc_locked(shpool, sizeof(ngx_http_usage_fleet_t));
    if (fleet == NULL) {
        return NULL;
    }

    /* an incarnation of this zone's contents: never 0, which names none */
    do {
        if (ngx_http_usage_random_bytes(&origin, sizeof(uint64_t))
            != NGX_OK)
        {
            origin = ngx_http_usage_random();
        }
    } while (origin == 0);

    fleet->origin = origin;
    fleet->queue_max = queue_max;
    fleet->origins[0].id = origin;
    fleet->self = 0;

    return fleet;
}


ngx_int_t
ngx_http_usage_fleet_enqueue_locked(ngx_slab_pool_t *shpool,
    ngx_http_usage_fleet_t *fleet, ngx_http_usage_record_t *rec,
    int64_t created)
{
    if (ngx_http_usage_fleet_queue_locked(shpool, fleet, rec, created)
        == NGX_OK)
    {
        return NGX_OK;
    }

    fleet->dropped++;
    rec->origin = 0;
    rec->seq = 0;

    return NGX_DECLINED;
}


/* the record at the queue's tail, with the origin's next seq; NGX_DECLINED:
 * no room in the queue or in the zone, nothing changed */

static ngx_int_t
ngx_http_usage_fleet_queue_locked(ngx_slab_pool_t *shpool,
    ngx_http_usage_fleet_t *fleet, ngx_http_usage_record_t *rec,
    int64_t created)
{
    size_t                        len;
    uint64_t                      seq;
    ngx_http_usage_ship_block_t  *b;

    len = ngx_http_usage_wire_size(rec);

    if (len == 0 || fleet->queued_bytes + len > fleet->queue_max) {
        return NGX_DECLINED;
    }

    b = fleet->tail;

    if (b == NULL || b->size - b->used < len) {
        b = ngx_http_usage_fleet_block_locked(shpool, fleet, len);
        if (b == NULL) {
            return NGX_DECLINED;
        }
    }

    seq = ++fleet->seq;

    (void) ngx_http_usage_wire_encode(b->data + b->used, rec, seq);
    ngx_http_usage_wire_set(b->data + b->used, seq, created);

    b->used += len;
    fleet->queued_bytes += len;
    fleet->queued++;

    /* its own events come back from the stream: the window drops them */
    ngx_http_usage_window_mark(&fleet->origins[fleet->self].window, seq);

    rec->origin = fleet->origin;
    rec->seq = seq;

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_fleet_hold_locked(ngx_slab_pool_t *shpool,
    ngx_http_usage_fleet_t *fleet, ngx_http_usage_record_t *rec,
    int64_t created, int64_t deadline, int64_t now)
{
    ngx_http_usage_held_t  *h;

    h = &fleet->held[(fleet->seq + 1) & (NGX_HTTP_USAGE_PENDING - 1)];

    /*
     * A slot is free again once its POST has its answer (or is gone) and
     * nothing more of it is to be shipped; one still held is never given
     * up: its event would ship as an ordinary one, never stored here.
     */
    if (h->seq != 0
        && (h->state == NGX_HTTP_USAGE_HELD
            || h->seq > fleet->acked_seq
            || (!h->answered
                && now <= h->deadline + NGX_HTTP_USAGE_HELD_KEEP)))
    {
        return NGX_BUSY;
    }

    /* not stored, it is no drop either: the POST is refused */
    if (ngx_http_usage_fleet_queue_locked(shpool, fleet, rec, created)
        != NGX_OK)
    {
        return NGX_BUSY;
    }

    h->seq = rec->seq;
    h->first = rec->seq;
    h->last = rec->seq;
    h->deadline = deadline;
    h->state = NGX_HTTP_USAGE_HELD;
    h->answered = 0;

    return NGX_OK;
}


void
ngx_http_usage_fleet_group_locked(ngx_http_usage_fleet_t *fleet,
    uint64_t first, uint64_t last)
{
    uint64_t                seq;
    ngx_http_usage_held_t  *h;

    for (seq = first; seq <= last; seq++) {
        h = ngx_http_usage_fleet_held_locked(fleet, seq);

        if (h) {
            h->first = first;
            h->last = last;
        }
    }
}


ngx_http_usage_held_t *
ngx_http_usage_fleet_held_locked(ngx_http_usage_fleet_t *fleet, uint64_t seq)
{
    ngx_http_usage_held_t  *h;

    if (fleet->held == NULL) {
        return NULL;
    }

    h = &fleet->held[seq & (NGX_HTTP_USAGE_PENDING - 1)];

    return (h->seq == seq) ? h : NULL;
}


void
ngx_http_usage_fleet_refused_locked(ngx_http_usage_fleet_t *fleet,
    int64_t now)
{
    ngx_uint_t              i;
    ngx_http_usage_held_t  *h;

    if (fleet->held == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_USAGE_PENDING; i++) {
        h = &fleet->held[i];

        if (h->seq && h->state == NGX_HTTP_USAGE_HELD && h->deadline < now) {
            h->state = NGX_HTTP_USAGE_HELD_VOID;
        }
    }
}


/* 1: the caller logs the drop now; the check is under the lock */

ngx_uint_t
ngx_http_usage_fleet_drop_warn(ngx_http_usage_fleet_t *fleet, int64_t now)
{
    if (now - fleet->drop_warned < NGX_HTTP_USAGE_FLEET_WARN_INTERVAL) {
        return 0;
    }

    fleet->drop_warned = now;

    return 1;
}


static ngx_http_usage_ship_block_t *
ngx_http_usage_fleet_block_locked(ngx_slab_pool_t *shpool,
    ngx_http_usage_fleet_t *fleet, size_t len)
{
    size_t                        size;
    ngx_http_usage_ship_block_t  *b;

    size = ngx_max(len, NGX_HTTP_USAGE_SHIP_BLOCK
                        - offsetof(ngx_http_usage_ship_block_t, data));

    b = ngx_slab_alloc_locked(shpool,
                            offsetof(ngx_http_usage_ship_block_t, data) + size);
    if (b == NULL) {
        return NULL;
    }

    b->next = NULL;
    b->size = size;
    b->used = 0;

    if (fleet->tail) {
        fleet->tail->next = b;

    } else {
        fleet->head = b;
        fleet->head_pos = 0;
    }

    fleet->tail = b;

    return b;
}


void
ngx_http_usage_fleet_take_locked(ngx_http_usage_fleet_t *fleet,
    uint64_t after, ngx_uint_t max, u_char *buf, size_t len,
    ngx_http_usage_ship_batch_t *batch)
{
    size_t                        pos, n;
    uint64_t                      seq;
    ngx_http_usage_held_t        *h;
    ngx_http_usage_ship_block_t  *b;

    batch->data = buf;
    batch->origin = fleet->origin;
    batch->len = 0;
    batch->count = 0;
    batch->first_seq = 0;
    batch->last_seq = 0;
    batch->deadline = 0;

    /*
     * The hint holds while the record it follows is not acknowledged: its
     * block is still in the queue (blocks go only once all theirs are).
     */
    if (fleet->hint && after == fleet->hint_seq
        && fleet->hint_seq > fleet->acked_seq)
    {
        b = fleet->hint;
        pos = fleet->hint_pos;

    } else {
        b = fleet->head;
        pos = fleet->head_pos;
    }

    for ( /* void */ ; b; b = b->next, pos = 0) {

        while (pos < b->used) {
            n = ngx_http_usage_wire_length(b->data + pos);
            seq = ngx_http_usage_wire_seq(b->data + pos);

            if (seq > after) {
                h = ngx_http_usage_fleet_held_locked(fleet, seq);

                if (ngx_http_usage_fleet_full_locked(h, seq, batch, max)
                    || batch->len + n > len)
                {
                    return;
                }

                batch->len += ngx_http_usage_fleet_copy_locked(h,
                                  buf + batch->len, b->data + pos, n, seq,
                                  batch);

                if (batch->count++ == 0) {
                    batch->first_seq = seq;
                }

                batch->last_seq = seq;

                fleet->hint = b;
                fleet->hint_pos = pos + n;
                fleet->hint_seq = seq;
            }

            pos += n;
        }
    }
}


/*
 * Whether the batch ends before seq: it has max events, unless seq goes
 * on a POST's held events (those go in one entry whatever their number:
 * a batch POST's bytes are bounded for that), or seq begins them and the
 * batch has others (they go first in an entry of their own).
 */

static ngx_uint_t
ngx_http_usage_fleet_full_locked(ngx_http_usage_held_t *h, uint64_t seq,
    ngx_http_usage_ship_batch_t *batch, ngx_uint_t max)
{
    if (h == NULL || h->state != NGX_HTTP_USAGE_HELD || h->first == h->last)
    {
        return batch->count >= max;
    }

    return (seq == h->first) ? (batch->count > 0) : 0;
}


/*
 * One queued record into a batch: as it is, unless it is an ack=redis
 * event (h, its slot), whose deadline the batch then carries, or one
 * withdrawn, of which only the seq goes (so that the origin's seqs have
 * no hole).
 */

static size_t
ngx_http_usage_fleet_copy_locked(ngx_http_usage_held_t *h, u_char *dst,
    u_char *record, size_t n, uint64_t seq, ngx_http_usage_ship_batch_t *batch)
{
    if (h && h->state == NGX_HTTP_USAGE_HELD_VOID) {
        return ngx_http_usage_wire_void(dst, seq);
    }

    if (h && h->state == NGX_HTTP_USAGE_HELD
        && (batch->deadline == 0 || h->deadline < batch->deadline))
    {
        batch->deadline = h->deadline;
    }

    ngx_memcpy(dst, record, n);

    return n;
}


void
ngx_http_usage_fleet_ack_locked(ngx_slab_pool_t *shpool,
    ngx_http_usage_fleet_t *fleet, uint64_t seq)
{
    size_t                        n;
    ngx_http_usage_ship_block_t  *b;

    if (seq > fleet->acked_seq) {
        fleet->acked_seq = seq;
    }

    while (fleet->head) {
        b = fleet->head;

        while (fleet->head_pos < b->used
               && ngx_http_usage_wire_seq(b->data + fleet->head_pos) <= seq)
        {
            n = ngx_http_usage_wire_length(b->data + fleet->head_pos);
            fleet->head_pos += n;
            fleet->queued_bytes -= n;
            fleet->queued--;
            fleet->shipped++;
        }

        if (fleet->head_pos < b->used || b == fleet->tail) {
            break;
        }

        /* a block left behind: the next one starts at its beginning */
        fleet->head = b->next;
        fleet->head_pos = 0;
        ngx_slab_free_locked(shpool, b);
    }

    if (fleet->head && fleet->head == fleet->tail
        && fleet->head_pos == fleet->head->used)
    {
        /* the queue is empty: the last block starts over */
        fleet->head->used = 0;
        fleet->head_pos = 0;
    }
}


/* the window of origin, NULL: none was ever applied here */

ngx_http_usage_window_t *
ngx_http_usage_fleet_find_locked(ngx_http_usage_fleet_t *fleet,
    uint64_t origin)
{
    ngx_uint_t  i;

    for (i = 0; origin && i < NGX_HTTP_USAGE_ORIGINS; i++) {
        if (fleet->origins[i].id == origin) {
            return &fleet->origins[i].window;
        }
    }

    return NULL;
}


ngx_http_usage_window_t *
ngx_http_usage_fleet_window_locked(ngx_http_usage_fleet_t *fleet,
    uint64_t origin, int64_t now)
{
    ngx_uint_t                i, oldest;
    ngx_http_usage_origin_t  *o;

    if (origin == 0) {
        return NULL;
    }

    oldest = NGX_HTTP_USAGE_ORIGINS;

    for (i = 0; i < NGX_HTTP_USAGE_ORIGINS; i++) {
        o = &fleet->origins[i];

        if (o->id == origin) {
            o->seen = now;
            return &o->window;
        }

        if (i == fleet->self) {
            continue;
        }

        if (oldest == NGX_HTTP_USAGE_ORIGINS
            || o->id == 0
            || (fleet->origins[oldest].id != 0
                && o->seen < fleet->origins[oldest].seen))
        {
            oldest = i;
        }
    }

    /*
     * A new origin takes a free slot, or the one seen least recently: an
     * incarnation that has not shipped for that long is gone (its events
     * can only come again after a flush, and then the window of a slot
     * given up lets them in once more; 64 slots make that rare).
     */
    o = &fleet->origins[oldest];

    ngx_memzero(o, sizeof(ngx_http_usage_origin_t));
    o->id = origin;
    o->seen = now;

    return &o->window;
}


/*
 * A zone filled from a state file or a resized zone's copy goes on as
 * this fleet's origin, a new one: the saved origin's events are all here
 * up to its last seq, and the other origins' windows and the read
 * position are as they were saved.  saved: n slots, not aligned.
 */

void
ngx_http_usage_fleet_restore_locked(ngx_http_usage_fleet_t *fleet,
    u_char *saved, ngx_uint_t n, uint64_t origin, uint64_t seq,
    uint64_t read_ms, uint64_t read_seq, uint64_t epoch,
    int64_t queued_from, int64_t now)
{
    uint64_t                  own;
    ngx_http_usage_window_t  *w;

    own = fleet->origin;

    ngx_memzero(fleet->origins, sizeof(fleet->origins));
    ngx_memcpy(fleet->origins, saved, n * sizeof(ngx_http_usage_origin_t));

    /* no slot is this zone's while the slots are sorted out */
    fleet->self = NGX_HTTP_USAGE_ORIGINS;

    w = ngx_http_usage_fleet_window_locked(fleet, origin, now);

    if (w) {
        ngx_http_usage_window_fill(w, seq);
    }

    w = ngx_http_usage_fleet_window_locked(fleet, own, now);

    fleet->self = (ngx_http_usage_origin_t *)
                  ((u_char *) w - offsetof(ngx_http_usage_origin_t, window))
                  - fleet->origins;

    fleet->read_ms = read_ms;
    fleet->read_seq = read_seq;
    fleet->read_tail = 0;
    fleet->epoch = epoch;

    /*
     * The saved queue is not shipped as it was: its seqs are the saved
     * origin's, and the zone is another one now.  Its events are in the
     * log, published again like after a loss of the stream; an instance
     * that had some of them (a batch that landed, its answer lost) finds
     * them by uuid.
     */
    if (queued_from) {
        ngx_http_usage_fleet_republish_locked(fleet, queued_from, now);
    }
}


/*
 * A snapshot of the fleet replaced the zone's store: what the snapshot
 * had of this origin's events is kept apart, to tell which of them the
 * stream must bring back, and the slot is this zone's again, with every
 * seq it gave so far.
 */

void
ngx_http_usage_fleet_bootstrapped_locked(ngx_http_usage_fleet_t *fleet,
    uint64_t own_seq)
{
    ngx_http_usage_window_t  *w;

    w = &fleet->origins[fleet->self].window;

    fleet->own_window = *w;
    fleet->own_upto = own_seq;

    ngx_http_usage_window_fill(w, own_seq);

    fleet->boot = 0;
    fleet->partial = 0;
    fleet->snapshots++;
}


int64_t
ngx_http_usage_fleet_queued_from_locked(ngx_http_usage_fleet_t *fleet)
{
    if (fleet->queued == 0 || fleet->head == NULL
        || fleet->head_pos >= fleet->head->used)
    {
        return 0;
    }

    return ngx_http_usage_wire_created(fleet->head->data + fleet->head_pos);
}


void
ngx_http_usage_fleet_lost_locked(ngx_http_usage_fleet_t *fleet, int64_t now)
{
    fleet->epochs++;

    fleet->read_ms = 0;
    fleet->read_seq = 0;
    fleet->read_tail = 0;

    ngx_http_usage_fleet_republish_locked(fleet, now - NGX_HTTP_USAGE_REPUBLISH,
                                          now);
}


static void
ngx_http_usage_fleet_republish_locked(ngx_http_usage_fleet_t *fleet,
    int64_t from, int64_t now)
{
    /* another walk during one: it starts again, from the older start */
    if (fleet->republish_to && fleet->republish_from < from) {
        from = fleet->republish_from;
    }

    /* the last few ms too: createdAt may run a little ahead of the clock
     * (clamped to the latest receipt); later events ship as usual */
    fleet->republish_from = from;
    fleet->republish_to = now + 1000;
    fleet->republish_created = from - 1;
    ngx_memset(fleet->republish_uuid, 0xff, 16);
}
