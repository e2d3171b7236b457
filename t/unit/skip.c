
/*
 * Unit test of ngx_http_usage_skip.c: records in a ring of their own, the
 * log's queue and the skip list above it changed at random (appends,
 * removals at the head and in the middle, and with a fleet, links inside
 * the log), and after every change each level checked against the queue
 * and every seek against a walk of the queue.
 */


#include "../../src/ngx_http_usage_skip.c"

#include "tap.h"


#define RECORDS     4000
#define RECORD_MAX  (NGX_HTTP_USAGE_RAW_HEADER                               \
                     + NGX_HTTP_USAGE_SKIP_LEVELS * sizeof(void *))

static u_char                  ring[RECORDS * RECORD_MAX];
static ngx_http_usage_shctx_t  sh;
static ngx_uint_t              stored;


static uint32_t
rnd(void)
{
    return (uint32_t) random();
}


/* a record of the given createdAt at the ring's tail, its levels from its
 * uuid as the store's */

static ngx_http_usage_raw_t *
record(int64_t created)
{
    ngx_uint_t             i, levels;
    ngx_http_usage_raw_t  *raw;

    raw = (ngx_http_usage_raw_t *) sh.ring_tail;
    ngx_memzero(raw, NGX_HTTP_USAGE_RAW_HEADER);

    for (i = 0; i < 16; i++) {
        raw->uuid[i] = (u_char) rnd();
    }

    levels = ngx_http_usage_skip_levels(raw->uuid);
    raw->flags = (uint16_t) (levels << NGX_HTTP_USAGE_RAW_LEVEL_SHIFT);
    raw->created = created;
    raw->size = (uint32_t) (NGX_HTTP_USAGE_RAW_HEADER
                            + levels * sizeof(void *));

    sh.ring_tail += raw->size;
    stored++;

    return raw;
}


static ngx_http_usage_raw_t *
raw_of(ngx_queue_t *q)
{
    return ngx_queue_data(q, ngx_http_usage_raw_t, queue);
}


/* the fleet's order: createdAt, then uuid */

static ngx_uint_t
fleet_before(ngx_http_usage_raw_t *a, ngx_http_usage_raw_t *b)
{
    return a->created < b->created
           || (a->created == b->created && ngx_memcmp(a->uuid, b->uuid, 16)
                                           < 0);
}


static void
link_in_order(ngx_http_usage_raw_t *raw)
{
    ngx_queue_t  *q;

    for (q = ngx_queue_last(&sh.raw);
         q != ngx_queue_sentinel(&sh.raw) && fleet_before(raw, raw_of(q));
         q = ngx_queue_prev(q))
    {
        /* void */
    }

    ngx_queue_insert_after(q, &raw->queue);
    ngx_http_usage_skip_link_locked(&sh, raw);
}


static void
unlink_raw(ngx_http_usage_raw_t *raw)
{
    ngx_http_usage_skip_unlink_locked(&sh, raw);
    ngx_queue_remove(&raw->queue);
    stored--;
}


static ngx_http_usage_raw_t *
nth(ngx_uint_t n)
{
    ngx_queue_t  *q;

    for (q = ngx_queue_head(&sh.raw); n--; q = ngx_queue_next(q)) {
        /* void */
    }

    return raw_of(q);
}


/* every level is the queue's records of more levels than it, in order */

static ngx_uint_t
levels_whole(void)
{
    ngx_uint_t             i;
    ngx_queue_t           *q;
    ngx_http_usage_raw_t  *expect, *last, *raw;

    for (i = 0; i < NGX_HTTP_USAGE_SKIP_LEVELS; i++) {
        expect = sh.skip_head[i];
        last = NULL;

        for (q = ngx_queue_head(&sh.raw);
             q != ngx_queue_sentinel(&sh.raw);
             q = ngx_queue_next(q))
        {
            raw = raw_of(q);

            if (ngx_http_usage_raw_levels(raw) <= i) {
                continue;
            }

            if (raw != expect) {
                tap_diag("level %lu: %p where the queue has %p",
                         (unsigned long) i, (void *) expect, (void *) raw);
                return 0;
            }

            last = raw;
            expect = ngx_http_usage_raw_tower(raw)[i];
        }

        if (expect != NULL || sh.skip_tail[i] != last) {
            tap_diag("level %lu: does not end where the queue does",
                     (unsigned long) i);
            return 0;
        }
    }

    return 1;
}


/* a seek lands where a walk of the whole queue does */

static ngx_uint_t
seeks_right(ngx_uint_t tries, int64_t span)
{
    ngx_uint_t                 how;
    ngx_queue_t               *q;
    ngx_http_usage_raw_t      *walked, *found, *pick;
    ngx_http_usage_list_key_t  key;

    while (tries--) {
        ngx_memzero(&key, sizeof(key));
        key.created = (int64_t) (rnd() % (uint32_t) span);
        how = rnd() & 1;

        if (stored && (rnd() & 1)) {
            /* a stored record's own key */
            pick = nth(rnd() % stored);
            key.created = pick->created;
            key.seq = ngx_http_usage_raw_seq(&sh, pick);
            ngx_memcpy(key.uuid, pick->uuid, 16);

        } else {
            /* near the records' own, as a cursor's is */
            key.seq = rnd() % (sizeof(ring) / 8 + 100);
            key.uuid[0] = (u_char) rnd();
        }

        walked = NULL;

        for (q = ngx_queue_head(&sh.raw);
             q != ngx_queue_sentinel(&sh.raw)
             && ngx_http_usage_skip_before(&sh, raw_of(q), &key, how);
             q = ngx_queue_next(q))
        {
            walked = raw_of(q);
        }

        found = ngx_http_usage_skip_seek_locked(&sh, &key, how);

        if (found != walked) {
            tap_diag("seek of %lld (how %lu): %p, the walk %p",
                     (long long) key.created, (unsigned long) how,
                     (void *) found, (void *) walked);
            return 0;
        }
    }

    return 1;
}


static void
reset(ngx_uint_t fleet)
{
    ngx_memzero(&sh, sizeof(sh));
    ngx_queue_init(&sh.raw);
    sh.ring = ring;
    sh.ring_end = ring + sizeof(ring);
    sh.ring_head = ring;
    sh.ring_tail = ring;
    sh.fleet = fleet ? (ngx_http_usage_fleet_t *) &sh : NULL;
    stored = 0;
}


/*
 * Without a fleet: appends at the tail with createdAt that stays or goes
 * up (a batch shares one), removals mostly of the oldest, some in the
 * middle (a back-dated event's retention).
 */

static void
standalone(void)
{
    int64_t                created;
    ngx_uint_t             i, whole, right;
    ngx_http_usage_raw_t  *raw;

    reset(0);
    created = 0;
    whole = 1;
    right = 1;

    for (i = 0; i < RECORDS; i++) {
        if (rnd() % 4) {
            created += rnd() % 3;
        }

        /* ngx_queue_insert_tail() is a macro: one record() only */
        raw = record(created);
        ngx_queue_insert_tail(&sh.raw, &raw->queue);
        ngx_http_usage_skip_link_locked(&sh, raw);

        if (stored > 50 && rnd() % 3 == 0) {
            unlink_raw(rnd() % 4 ? raw_of(ngx_queue_head(&sh.raw))
                                 : nth(rnd() % stored));
        }

        if (i % 97 == 0) {
            whole = whole && levels_whole();
            right = right && seeks_right(20, created + 2);
        }
    }

    tap_ok(whole && levels_whole(), "standalone: every level follows the "
           "queue after %u changes", RECORDS);
    tap_ok(right && seeks_right(2000, created + 2),
           "standalone: seeks land where a walk does");

    while (stored) {
        unlink_raw(nth(rnd() % stored));
    }

    tap_ok(levels_whole() && sh.skip_head[0] == NULL
           && sh.skip_tail[0] == NULL, "standalone: emptied, no level left");
}


/* with a fleet: events linked by (createdAt, uuid) anywhere in the log */

static void
fleet(void)
{
    ngx_uint_t             i, whole, right;
    ngx_http_usage_raw_t  *raw;

    reset(1);
    whole = 1;
    right = 1;

    for (i = 0; i < RECORDS; i++) {
        raw = record((int64_t) (rnd() % 500));
        link_in_order(raw);

        if (stored > 50 && rnd() % 3 == 0) {
            unlink_raw(nth(rnd() % stored));
        }

        if (i % 97 == 0) {
            whole = whole && levels_whole();
            right = right && seeks_right(20, 502);
        }
    }

    tap_ok(whole && levels_whole(), "fleet: every level follows the queue "
           "after %u changes", RECORDS);
    tap_ok(right && seeks_right(2000, 502),
           "fleet: seeks land where a walk does");
}


/* the levels: 1/4 of the records have one or more, 1/16 two or more */

static void
levels(void)
{
    u_char      uuid[16];
    uint32_t    r;
    ngx_uint_t  i, n, one, two, sum;

    one = 0;
    two = 0;
    sum = 0;

    for (i = 0; i < 100000; i++) {
        ngx_memzero(uuid, 16);
        r = rnd() ^ (rnd() << 16);
        ngx_memcpy(uuid, &r, 4);
        n = ngx_http_usage_skip_levels(uuid);
        one += (n >= 1);
        two += (n >= 2);
        sum += n;
    }

    tap_ok(one > 24000 && one < 26000 && two > 5800 && two < 6700,
           "levels: %lu of 100000 have one or more, %lu two or more",
           (unsigned long) one, (unsigned long) two);
    tap_ok(sum > 32000 && sum < 34700,
           "levels: %lu pointers for 100000 records (a third each)",
           (unsigned long) sum);

    ngx_memzero(uuid, 16);
    tap_ok(ngx_http_usage_skip_levels(uuid) == NGX_HTTP_USAGE_SKIP_LEVELS,
           "levels: at most %d", NGX_HTTP_USAGE_SKIP_LEVELS);
}


int
main(void)
{
    srandom(7);

    levels();
    standalone();
    fleet();

    return tap_done();
}
