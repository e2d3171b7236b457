
/*
 * The fleet's part of a zone (docs/FLEET-DESIGN.md, section 4.3): this
 * zone's origin and the sequence of its events, the ship queue of the
 * events that Redis does not have yet, how far the stream has been
 * applied, and the dedup windows of the origins applied.  It lives in the
 * zone's slab, so that a worker that dies, a reload or another worker
 * taking over the Redis connection lose nothing of it; every function
 * here is called with the zone's lock held.  No Redis, no HTTP.
 */


#ifndef _NGX_HTTP_USAGE_FLEET_H_INCLUDED_
#define _NGX_HTTP_USAGE_FLEET_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_window.h"


/* origins a zone tells apart; the least recently seen slot is reused */
#define NGX_HTTP_USAGE_ORIGINS       64

/* the ship queue grows by blocks of this many bytes (or one record) */
#define NGX_HTTP_USAGE_SHIP_BLOCK    65536


typedef struct {
    uint64_t                     id;           /* 0: a free slot */
    int64_t                      seen;         /* ms, its last apply */
    ngx_http_usage_window_t      window;
} ngx_http_usage_origin_t;


/*
 * ack=redis: the events whose POST waits for Redis are queued, not
 * stored, until Redis has them; each has a slot, by its seq, that says
 * where it stands.  A power of 2: events in flight at once, at most.
 */
#define NGX_HTTP_USAGE_PENDING       4096

/* how long past its deadline a slot waits for its POST to look */
#define NGX_HTTP_USAGE_HELD_KEEP     10000

#define NGX_HTTP_USAGE_HELD          1     /* queued, not stored here */
#define NGX_HTTP_USAGE_HELD_STORED   2     /* stored: Redis had it */
#define NGX_HTTP_USAGE_HELD_VOID     3     /* withdrawn: stored nowhere,
                                              shipped as a void record */

typedef struct {
    uint64_t                     seq;          /* 0: a free slot */
    uint64_t                     first;        /* the seqs of its POST: */
    uint64_t                     last;         /* one entry carries them */
    int64_t                      deadline;     /* ms: Redis takes it only
                                                  until then */
    uint32_t                     state;
    uint32_t                     answered;     /* its POST has its answer */
} ngx_http_usage_held_t;


typedef struct ngx_http_usage_ship_block_s  ngx_http_usage_ship_block_t;

struct ngx_http_usage_ship_block_s {
    ngx_http_usage_ship_block_t *next;
    size_t                       size;         /* of data */
    size_t                       used;
    u_char                       data[1];      /* wire records */
};


typedef struct {
    uint64_t                     origin;       /* this zone's */
    uint64_t                     seq;          /* its last one given */
    ngx_uint_t                   self;         /* its slot in origins */

    /* the ship queue: oldest first; head_pos is the first record Redis
     * has not acknowledged, in head */
    ngx_http_usage_ship_block_t *head;
    ngx_http_usage_ship_block_t *tail;
    size_t                       head_pos;
    size_t                       queued_bytes; /* of records */
    size_t                       queue_max;    /* buffer= */
    uint64_t                     queued;       /* events */
    uint64_t                     acked_seq;    /* in Redis up to this */

    /* where the last take stopped: the record after seq hint_seq, so
     * that a deep queue is not walked from its head for every batch */
    ngx_http_usage_ship_block_t *hint;
    size_t                       hint_pos;
    uint64_t                     hint_seq;

    /* the stream's last entry applied: <ms>-<seq>; 0-0 with read_tail:
     * the zone came with events (a state file, a resize), so the reader
     * starts at the stream's end rather than apply them twice */
    uint64_t                     read_ms;
    uint64_t                     read_seq;
    ngx_uint_t                   read_tail;

    /* the stream's epoch (<stream>:epoch in Redis): a random id written
     * once for each data set of Redis; another one, or none, means that
     * Redis lost the stream this zone read (a flush, a restart without
     * persistence).  0: none yet */
    uint64_t                     epoch;

    /*
     * After such a loss the zone publishes again the events of its log
     * received from republish_from to republish_to, all origins, so that
     * what an instance had not read yet comes from any that had; the walk
     * goes on after (republish_created, republish_uuid).  republish_to 0:
     * nothing to publish again.
     */
    int64_t                      republish_from;
    int64_t                      republish_to;
    int64_t                      republish_created;
    u_char                       republish_uuid[16];

    /* until then, an event applied is looked for in the log first: the
     * copy another instance published again and the original may both
     * come (after a re-published entry was read) */
    int64_t                      recheck_until;

    /* the latest receipt of an event that left the log but not the
     * aggregates: a re-published event no later than it may be one of
     * those, and is not applied */
    int64_t                      evicted_created;

    /* ms from an entry's XADD to its events applied here, of the last
     * entry applied */
    uint64_t                     lag;

    /*
     * A new zone (made empty, with nothing read yet) reads nothing of
     * the stream until it knows whether the fleet has a snapshot for it
     * (ngx_http_usage_snapshot.c): the stream may have been trimmed.
     */
    ngx_uint_t                   boot;

    /*
     * A snapshot replaced the store: the zone's own events up to this seq
     * are here only if the snapshot had them (its window of this origin
     * says which), the others are applied as the stream brings them back.
     * 0: every own event is here, as they were stored when accepted.
     */
    uint64_t                     own_upto;
    ngx_http_usage_window_t      own_window;   /* the snapshot's, of them */

    /* the zone read a trimmed stream without a snapshot of what was
     * trimmed: it lacks events, and writes no snapshot (not saved: a
     * restart from the state file forgets it) */
    ngx_uint_t                   partial;

    /* counters for /metrics */
    uint64_t                     epochs;       /* losses of the stream */
    uint64_t                     republished;  /* events published again */
    uint64_t                     shipped;
    uint64_t                     applied;
    uint64_t                     duplicates;   /* dropped by a window */
    uint64_t                     dropped;      /* no room in the queue */
    uint64_t                     refused;      /* records not applied */
    uint64_t                     foreign;      /* entries not ours */
    uint64_t                     lost;         /* seqs never applied */
    uint64_t                     snapshots;    /* loaded from Redis */
    int64_t                      drop_warned;  /* ms, of the last [error] */

    /* ack=redis only, NULL without: NGX_HTTP_USAGE_PENDING slots */
    ngx_http_usage_held_t       *held;
    uint64_t                     ack_voided;   /* POSTs answered 503 */
    uint64_t                     ack_ambiguous; /* of those, events that
                                                   Redis had all the same */

    ngx_http_usage_origin_t      origins[NGX_HTTP_USAGE_ORIGINS];
} ngx_http_usage_fleet_t;


ngx_http_usage_fleet_t *ngx_http_usage_fleet_create_locked(
    ngx_slab_pool_t *shpool, size_t queue_max);

/*
 * Appends the stored event rec, received at created, to the ship queue
 * and gives it the origin's next seq (rec->origin, rec->seq).  No room in
 * the queue or in the zone: the event stays stored here, is not shipped,
 * and is counted as dropped (rec->seq = 0); NGX_DECLINED then, and the
 * caller logs (ngx_http_usage_fleet_drop_warn()).
 */
ngx_int_t ngx_http_usage_fleet_enqueue_locked(ngx_slab_pool_t *shpool,
    ngx_http_usage_fleet_t *fleet, ngx_http_usage_record_t *rec,
    int64_t created);
ngx_uint_t ngx_http_usage_fleet_drop_warn(ngx_http_usage_fleet_t *fleet,
    int64_t now);

/*
 * Copies the queued records after seq "after" into buf (len bytes), at
 * most max events, and fills batch; batch->count 0: nothing to send.  The
 * sent position is the caller's, never kept here: another worker may
 * take over and resend from what Redis acknowledged.
 */
void ngx_http_usage_fleet_take_locked(ngx_http_usage_fleet_t *fleet,
    uint64_t after, ngx_uint_t max, u_char *buf, size_t len,
    ngx_http_usage_ship_batch_t *batch);

/*
 * ack=redis: queues rec, received at created, without storing it, and
 * gives it a slot that Redis must take it by deadline.  NGX_BUSY: the
 * queue or the slots are full, nothing is queued.
 */
ngx_int_t ngx_http_usage_fleet_hold_locked(ngx_slab_pool_t *shpool,
    ngx_http_usage_fleet_t *fleet, ngx_http_usage_record_t *rec,
    int64_t created, int64_t deadline, int64_t now);
ngx_http_usage_held_t *ngx_http_usage_fleet_held_locked(
    ngx_http_usage_fleet_t *fleet, uint64_t seq);

/* the events held from first to last are one POST's: they ship in one
 * entry, so that Redis takes all of them or none */
void ngx_http_usage_fleet_group_locked(ngx_http_usage_fleet_t *fleet,
    uint64_t first, uint64_t last);

/* Redis refused a batch at its time now (local ms): what it held whose
 * deadline has passed is withdrawn */
void ngx_http_usage_fleet_refused_locked(ngx_http_usage_fleet_t *fleet,
    int64_t now);

/* Redis holds the records up to seq: they leave the queue */
void ngx_http_usage_fleet_ack_locked(ngx_slab_pool_t *shpool,
    ngx_http_usage_fleet_t *fleet, uint64_t seq);

/* how far back a zone publishes its events again, and how long after
 * an entry of them was read every event applied is looked for first */
#define NGX_HTTP_USAGE_REPUBLISH          60000
#define NGX_HTTP_USAGE_REPUBLISH_RECHECK  300000

/*
 * Redis lost the stream: it is read again from its start, and the events
 * received in the last REPUBLISH ms are published again.
 */
void ngx_http_usage_fleet_lost_locked(ngx_http_usage_fleet_t *fleet,
    int64_t now);

ngx_http_usage_window_t *ngx_http_usage_fleet_find_locked(
    ngx_http_usage_fleet_t *fleet, uint64_t origin);

/* the window of origin, a new slot if it has none (NULL: origin 0) */
ngx_http_usage_window_t *ngx_http_usage_fleet_window_locked(
    ngx_http_usage_fleet_t *fleet, uint64_t origin, int64_t now);

/* a snapshot replaced the store; own_seq: this zone's seq before it */
void ngx_http_usage_fleet_bootstrapped_locked(ngx_http_usage_fleet_t *fleet,
    uint64_t own_seq);

/* the receipt of the oldest event Redis does not have, 0: none */
int64_t ngx_http_usage_fleet_queued_from_locked(
    ngx_http_usage_fleet_t *fleet);

/*
 * The fleet's part of a state file: the zone goes on as a new origin;
 * queued_from, the receipt of the oldest event Redis did not have at the
 * save (0: none): the events of the log from then on are published again.
 */
void ngx_http_usage_fleet_restore_locked(ngx_http_usage_fleet_t *fleet,
    u_char *saved, ngx_uint_t n, uint64_t origin, uint64_t seq,
    uint64_t read_ms, uint64_t read_seq, uint64_t epoch,
    int64_t queued_from, int64_t now);


#endif /* _NGX_HTTP_USAGE_FLEET_H_INCLUDED_ */
