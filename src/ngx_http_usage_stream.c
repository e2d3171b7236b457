
/*
 * The fleet's Redis Stream, in the worker that holds a zone's lease.
 *
 * Shipping: a timer looks at the zone's last seq every few milliseconds
 * (an unlocked read: the queue is in the zone, filled by any worker); new
 * events go as one stream entry per batch, at most INFLIGHT unanswered.
 * A busy instance ships big batches, an idle one ships each event within
 * a tick.  Redis's answer (the entry's id) is what drops a batch from the
 * queue; a lost connection resends from the oldest unconfirmed one, and
 * the readers' windows drop the copies that had landed.
 *
 * Reading: XREAD BLOCK from the zone's read position, on a connection of
 * its own (a blocked XREAD holds its connection).  Entries of this zone's
 * origin are its own events, stored already; the others' are checked as
 * the input of a possibly broken peer and applied to the zone.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_usage_stream.h"
#include "ngx_http_usage_republish.h"
#include "ngx_http_usage_wire.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_time.h"


/* how often the holder looks for new events to ship */
#define NGX_HTTP_USAGE_STREAM_TICK      2

/* entries of one XREAD */
#define NGX_HTTP_USAGE_STREAM_COUNT     64

/* at most one [warn] a minute about entries that are not events */
#define NGX_HTTP_USAGE_STREAM_WARN      60000

#define NGX_HTTP_USAGE_STREAM_BUF       (1024 * 1024)


/*
 * ack=redis: KEYS[1] the stream, ARGV[1] the deadline (Redis's ms),
 * ARGV[2] MAXLEN, then the XADD's fields.  TIME in a script is allowed
 * since Redis 7.0 (effects are replicated, not the script).
 */
static const char  ngx_http_usage_stream_deadline_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "if now > tonumber(ARGV[1]) then return {0, now} end\n"
    "return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',\n"
    "                  unpack(ARGV, 3))\n";


typedef struct {
    redisReply                  *v;
    redisReply                  *k;
    redisReply                  *o;
    redisReply                  *c;
    redisReply                  *e;
    redisReply                  *s;
} ngx_http_usage_stream_fields_t;


static void ngx_http_usage_stream_tick(ngx_event_t *ev);
static void ngx_http_usage_stream_send(ngx_http_usage_stream_t *st);
static ngx_int_t ngx_http_usage_stream_xadd(ngx_http_usage_stream_t *st,
    const char *kind, ngx_http_usage_ship_batch_t *b, uint64_t ack);
static void ngx_http_usage_stream_sent(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static void ngx_http_usage_stream_time(ngx_http_usage_stream_t *st);
static void ngx_http_usage_stream_timed(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static ngx_int_t ngx_http_usage_stream_eval(ngx_http_usage_stream_t *st,
    const char **xadd, size_t *xadd_lens, int64_t deadline);
static void ngx_http_usage_stream_late(ngx_http_usage_stream_t *st,
    redisReply *reply);
static ngx_int_t ngx_http_usage_stream_wait(ngx_http_usage_stream_t *st);
static void ngx_http_usage_stream_waited(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static void ngx_http_usage_stream_acked(ngx_http_usage_stream_t *st);
static void ngx_http_usage_stream_reader_up(ngx_http_usage_redis_t *rd);
static void ngx_http_usage_stream_reader_down(ngx_http_usage_redis_t *rd);
static void ngx_http_usage_stream_read(ngx_http_usage_stream_t *st);
static void ngx_http_usage_stream_check(ngx_http_usage_stream_t *st);
static void ngx_http_usage_stream_checked(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static ngx_int_t ngx_http_usage_stream_first(redisReply *info, uint64_t *ms,
    uint64_t *seq);
static void ngx_http_usage_stream_tail(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static void ngx_http_usage_stream_got(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static ngx_int_t ngx_http_usage_stream_entries(ngx_http_usage_stream_t *st,
    redisReply *entries);
static ngx_int_t ngx_http_usage_stream_entry(ngx_http_usage_stream_t *st,
    ngx_pool_t *pool, redisReply *entry);
static ngx_int_t ngx_http_usage_stream_fields(redisReply *fields,
    ngx_http_usage_stream_fields_t *f, uint64_t *origin, ngx_uint_t *count,
    ngx_uint_t *republished);
static ngx_int_t ngx_http_usage_stream_decode(ngx_http_usage_stream_t *st,
    ngx_pool_t *pool, redisReply *e, ngx_uint_t count,
    ngx_http_usage_apply_t *entry);
static ngx_int_t ngx_http_usage_stream_id(redisReply *r, uint64_t *ms,
    uint64_t *seq);
static void ngx_http_usage_stream_foreign(ngx_http_usage_stream_t *st,
    redisReply *id, const char *why);


ngx_int_t
ngx_http_usage_stream_init(ngx_http_usage_stream_t *st,
    ngx_http_usage_stream_conf_t *conf, ngx_http_usage_zone_t *zone,
    ngx_http_usage_redis_t *cmd, ngx_http_usage_redis_conf_t *redis,
    ngx_pool_t *pool, ngx_log_t *log)
{
    size_t  len;

    ngx_memzero(st, sizeof(ngx_http_usage_stream_t));

    st->conf = conf;
    st->zone = zone;
    st->cmd = cmd;
    st->log = log;

    /*
     * A record of the largest event the zone stores fits in a batch, and
     * so do a POST's held events (ack=redis), which begin an entry
     */
    st->size = ngx_max(ngx_max(NGX_HTTP_USAGE_STREAM_BUF,
                               NGX_HTTP_USAGE_HELD_BYTES),
                       ngx_http_usage_store_event_max(zone)
                       + NGX_HTTP_USAGE_ENTITY_MAX_BYTES
                       + NGX_HTTP_USAGE_TYPE_MAX_BYTES + 64);

    st->buf = ngx_palloc(pool, st->size);
    if (st->buf == NULL) {
        return NGX_ERROR;
    }

    /* the reader's connection is told apart in CLIENT LIST */
    st->reader_conf = *redis;

    len = redis->client_name.len + sizeof(":read") - 1;

    st->reader_conf.client_name.data = ngx_pnalloc(pool, len);
    if (st->reader_conf.client_name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(st->reader_conf.client_name.data, "%V:read",
                &redis->client_name);
    st->reader_conf.client_name.len = len;

    ngx_http_usage_redis_init(&st->reader, &st->reader_conf, log);
    st->reader.ready = ngx_http_usage_stream_reader_up;
    st->reader.down = ngx_http_usage_stream_reader_down;
    st->reader.data = st;

    /* the command connection reports Redis down, or refusing AUTH */
    st->reader.second = 1;

    st->ship.handler = ngx_http_usage_stream_tick;
    st->ship.data = st;
    st->ship.log = log;
    st->ship.cancelable = 1;

    return NGX_OK;
}


void
ngx_http_usage_stream_start(ngx_http_usage_stream_t *st)
{
    ngx_http_usage_fleet_status_t  fs;

    if (!st->active) {
        if (ngx_http_usage_store_fleet_status(st->zone, &fs) != NGX_OK) {
            return;
        }

        st->origin = fs.origin;
        st->active = 1;
    }

    ngx_http_usage_redis_start(&st->reader);

    if (!st->ship.timer_set) {
        ngx_add_timer(&st->ship, NGX_HTTP_USAGE_STREAM_TICK);
    }
}


void
ngx_http_usage_stream_stop(ngx_http_usage_stream_t *st)
{
    st->active = 0;

    if (st->ship.timer_set) {
        ngx_del_timer(&st->ship);
    }

    ngx_http_usage_redis_stop(&st->reader);
    ngx_http_usage_stream_down(st);
}


/* a new zone knows now where in the stream it starts */

void
ngx_http_usage_stream_resume(ngx_http_usage_stream_t *st)
{
    /* where it stands now may be trimmed too */
    st->checked = 0;

    ngx_http_usage_stream_read(st);
}


/* a stopping worker: its ticks ship, the stream's own timer is gone */

void
ngx_http_usage_stream_flush(ngx_http_usage_stream_t *st)
{
    ngx_http_usage_stream_send(st);
}


void
ngx_http_usage_stream_up(ngx_http_usage_stream_t *st)
{
    /* from the oldest event Redis did not confirm */
    st->sent = 0;
    st->acks_n = 0;
    st->skip = 0;

    ngx_http_usage_republish_rewind(st->zone);

    if (st->conf->ack) {
        /* the deadlines are in Redis's clock: nothing ships before it is
         * known */
        st->clock_known = 0;
        ngx_http_usage_stream_time(st);
        return;
    }

    ngx_http_usage_stream_send(st);
}


/* TIME: how far Redis's clock is from this host's, at every connect */

static void
ngx_http_usage_stream_time(ngx_http_usage_stream_t *st)
{
    size_t       len;
    const char  *argv;

    argv = "TIME";
    len = 4;

    if (ngx_http_usage_redis_send(st->cmd, 1, &argv, &len,
                                  ngx_http_usage_stream_timed, st)
        != NGX_OK)
    {
        ngx_http_usage_redis_fail(st->cmd, NULL);
    }
}


static void
ngx_http_usage_stream_timed(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    int64_t                   redis;
    ngx_http_usage_stream_t  *st;

    st = data;

    if (reply == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_http_usage_redis_unexpected(rd, "TIME", reply);
        return;
    }

    redis = ngx_atoof((u_char *) reply->element[0]->str,
                      reply->element[0]->len) * 1000
            + ngx_atoof((u_char *) reply->element[1]->str,
                        reply->element[1]->len) / 1000;

    /*
     * Redis read its clock between the TIME's sending and now: taking
     * now errs on the early side (by the round trip at most), so that a
     * deadline is never later in Redis's clock than in this host's
     */
    st->clock = redis - ngx_http_usage_now();
    st->clock_known = 1;

    ngx_http_usage_stream_send(st);
}


/*
 * Redis lost the stream (the zone's position was reset): the reader's
 * XREAD in flight is of the old position; it reads again from the start.
 */

void
ngx_http_usage_stream_lost(ngx_http_usage_stream_t *st)
{
    ngx_http_usage_redis_stop(&st->reader);
    st->reading = 0;

    if (st->active) {
        ngx_http_usage_redis_start(&st->reader);
    }

    ngx_http_usage_stream_send(st);
}


void
ngx_http_usage_stream_down(ngx_http_usage_stream_t *st)
{
    st->sent = 0;
    st->acks_n = 0;
    st->skip = 0;
}


static void
ngx_http_usage_stream_tick(ngx_event_t *ev)
{
    ngx_http_usage_stream_t  *st;

    st = ev->data;

    if (!st->active) {
        return;
    }

    ngx_http_usage_stream_send(st);

    ngx_add_timer(ev, NGX_HTTP_USAGE_STREAM_TICK);
}


/*
 * New events first, then, after a loss of the stream, the events that
 * are published again, all on the command connection in order.
 */

static void
ngx_http_usage_stream_send(ngx_http_usage_stream_t *st)
{
    ngx_http_usage_ship_batch_t  b;

    while (st->cmd->state == NGX_HTTP_USAGE_REDIS_READY
           && st->acks_n < NGX_HTTP_USAGE_STREAM_INFLIGHT
           && (!st->conf->ack || st->clock_known))
    {
        if (ngx_http_usage_store_ship_pending(st->zone, st->sent)) {

            if (ngx_http_usage_store_ship_take(st->zone, st->sent,
                                               st->conf->batch, st->buf,
                                               st->size, &b)
                != NGX_OK
                || b.count == 0
                || ngx_http_usage_stream_xadd(st, "b", &b, b.last_seq)
                   != NGX_OK)
            {
                return;
            }

            st->sent = b.last_seq;
            continue;
        }

        if (!ngx_http_usage_republish_pending(st->zone)
            || ngx_http_usage_republish_take(st->zone, st->conf->batch,
                                             st->buf, st->size, &b)
               != NGX_OK
            || ngx_http_usage_stream_xadd(st, "r", &b, 0) != NGX_OK)
        {
            return;
        }
    }
}


/*
 * XADD <key> MAXLEN ~ <n> * v 1 k <kind> o <origin> n <name> s <start>
 *      c <count> e <records>
 *
 * kind "b": new events of the origin; "r": events published again, of
 * any origin.  ack: the seq whose answer drops them from the queue, 0
 * for none.
 */

static ngx_int_t
ngx_http_usage_stream_xadd(ngx_http_usage_stream_t *st, const char *kind,
    ngx_http_usage_ship_batch_t *b, uint64_t ack)
{
    u_char       origin[NGX_HTTP_USAGE_ORIGIN_HEX];
    u_char       maxlen[NGX_INT_T_LEN], count[NGX_INT_T_LEN];
    u_char       start[NGX_INT64_LEN];
    size_t       lens[20];
    const char  *argv[20];

    (void) ngx_http_usage_origin_hex(origin, b->origin);

#define ngx_http_usage_arg(i, s, n)                                          \
    argv[i] = (const char *) (s); lens[i] = (n)

    ngx_http_usage_arg(0, "XADD", 4);
    ngx_http_usage_arg(1, st->conf->key.data, st->conf->key.len);
    ngx_http_usage_arg(2, "MAXLEN", 6);
    ngx_http_usage_arg(3, "~", 1);
    ngx_http_usage_arg(4, maxlen,
                       ngx_sprintf(maxlen, "%ui", st->conf->maxlen) - maxlen);
    ngx_http_usage_arg(5, "*", 1);
    ngx_http_usage_arg(6, "v", 1);
    ngx_http_usage_arg(7, "1", 1);
    ngx_http_usage_arg(8, "k", 1);
    ngx_http_usage_arg(9, kind, 1);
    ngx_http_usage_arg(10, "o", 1);
    ngx_http_usage_arg(11, origin, NGX_HTTP_USAGE_ORIGIN_HEX);
    ngx_http_usage_arg(12, "n", 1);
    ngx_http_usage_arg(13, st->conf->name.data, st->conf->name.len);
    ngx_http_usage_arg(14, "s", 1);
    ngx_http_usage_arg(15, start, ngx_sprintf(start, "%L", b->start) - start);
    ngx_http_usage_arg(16, "c", 1);
    ngx_http_usage_arg(17, count, ngx_sprintf(count, "%ui", b->count) - count);
    ngx_http_usage_arg(18, "e", 1);
    ngx_http_usage_arg(19, b->data, b->len);

#undef ngx_http_usage_arg

    /* formatted into the connection's buffer: buf is free again */
    if ((b->deadline
         ? ngx_http_usage_stream_eval(st, argv, lens, b->deadline)
         : ngx_http_usage_redis_send(st->cmd, 20, argv, lens,
                                     ngx_http_usage_stream_sent, st))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* with replicas=, the WAIT's answer is the acknowledgement */
    if (st->conf->replicas && ngx_http_usage_stream_wait(st) != NGX_OK) {
        return NGX_ERROR;
    }

    st->acks[(st->acks_head + st->acks_n++) % NGX_HTTP_USAGE_STREAM_INFLIGHT]
        = ack;

    return NGX_OK;
}


/*
 * A batch with events whose POSTs wait (ack=redis): Redis adds it only
 * until the earliest of their deadlines, in its own clock, so that one
 * sent before a POST gave up never lands after it (a Redis that stalls,
 * or that runs what its socket buffered once it resumes).  The XADD's
 * arguments follow the script's: EVAL <script> 1 <stream> <deadline>
 * <maxlen> <fields>.
 */

static ngx_int_t
ngx_http_usage_stream_eval(ngx_http_usage_stream_t *st, const char **xadd,
    size_t *xadd_lens, int64_t deadline)
{
    u_char       until[NGX_INT64_LEN];
    size_t       lens[20];
    ngx_uint_t   i;
    const char  *argv[20];

    argv[0] = "EVAL"; lens[0] = 4;
    argv[1] = ngx_http_usage_stream_deadline_script;
    lens[1] = sizeof(ngx_http_usage_stream_deadline_script) - 1;
    argv[2] = "1"; lens[2] = 1;
    argv[3] = xadd[1]; lens[3] = xadd_lens[1];
    argv[4] = (const char *) until;
    lens[4] = ngx_sprintf(until, "%L", deadline + st->clock) - until;
    argv[5] = xadd[4]; lens[5] = xadd_lens[4];

    /* the fields: "v" "1" ... "e" <records> */
    for (i = 6; i < 20; i++) {
        argv[i] = xadd[i]; lens[i] = xadd_lens[i];
    }

    return ngx_http_usage_redis_send(st->cmd, 20, argv, lens,
                                     ngx_http_usage_stream_sent, st);
}


/*
 * WAIT <replicas> <ms>: the writes of the connection before it are on
 * that many replicas.  A primary that fails over to one of them keeps
 * every batch acknowledged: Redis replicates asynchronously, and the
 * queue would drop a batch only the old primary had.
 */

static ngx_int_t
ngx_http_usage_stream_wait(ngx_http_usage_stream_t *st)
{
    u_char       replicas[NGX_INT_T_LEN], ms[NGX_INT_T_LEN];
    size_t       lens[3];
    const char  *argv[3];

    argv[0] = "WAIT"; lens[0] = 4;
    argv[1] = (const char *) replicas;
    lens[1] = ngx_sprintf(replicas, "%ui", st->conf->replicas) - replicas;
    argv[2] = (const char *) ms;
    lens[2] = ngx_sprintf(ms, "%M", st->conf->block) - ms;

    return ngx_http_usage_redis_send(st->cmd, 3, argv, lens,
                                     ngx_http_usage_stream_waited, st);
}


static void
ngx_http_usage_stream_waited(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    int64_t                   now;
    ngx_http_usage_stream_t  *st;

    st = data;

    if (reply == NULL || st->acks_n == 0) {
        return;                     /* lost: down() starts over */
    }

    if (reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_usage_redis_unexpected(rd, "WAIT", reply);
        return;
    }

    if (reply->integer >= (long long) st->conf->replicas) {
        ngx_http_usage_stream_acked(st);
        return;
    }

    /* not there yet: the batch stays queued, and the next WAIT (which
     * also covers it) may acknowledge it */
    now = ngx_http_usage_now();

    if (now - st->wait_warned >= NGX_HTTP_USAGE_STREAM_WARN) {
        st->wait_warned = now;
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "usage sync: redis %V has a batch on %L of the %ui "
                      "replicas of replicas= after %M ms: it stays queued "
                      "until they have it", &rd->name, reply->integer,
                      st->conf->replicas, st->conf->block);
    }

    if (ngx_http_usage_stream_wait(st) != NGX_OK) {
        ngx_http_usage_redis_fail(rd, NULL);
    }
}


static void
ngx_http_usage_stream_sent(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    ngx_http_usage_stream_t  *st;

    st = data;

    if (reply == NULL) {
        return;                     /* lost: down() starts over */
    }

    if (st->skip) {
        /* a batch sent after one Redis refused: sent again since */
        st->skip--;
        return;
    }

    if (st->acks_n == 0) {
        return;
    }

    if (reply->type == REDIS_REPLY_ARRAY) {
        ngx_http_usage_stream_late(st, reply);
        return;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "usage sync: redis %V refused a batch for stream "
                      "\"%V\": %*s; it is sent again after a reconnect",
                      &rd->name, &st->conf->key,
                      (size_t) (reply->type == REDIS_REPLY_ERROR
                                ? reply->len : 0),
                      reply->str);
        ngx_http_usage_redis_fail(rd, NULL);
        return;
    }

    if (!st->conf->replicas) {
        ngx_http_usage_stream_acked(st);
    }
}


/*
 * The deadline script's {0, <Redis's time>}: too late.  The POSTs that
 * waited for the batch are answered 503 (their events withdrawn), and
 * the queue is sent again from this batch on, its withdrawn events void.
 * The answers to the batches sent after it are skipped, so that none is
 * taken for an acknowledgement of this one (those that Redis took land
 * twice, and the readers' windows drop the copies); with replicas= the
 * connection starts over instead, as each batch has a WAIT too.
 */

static void
ngx_http_usage_stream_late(ngx_http_usage_stream_t *st, redisReply *reply)
{
    int64_t  now;

    if (reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[0]->integer != 0
        || reply->element[1]->type != REDIS_REPLY_INTEGER)
    {
        ngx_http_usage_redis_unexpected(st->cmd, "EVAL of a batch", reply);
        return;
    }

    ngx_http_usage_store_ship_refused(st->zone,
                              (int64_t) reply->element[1]->integer - st->clock);

    now = ngx_http_usage_now();

    if (now - st->refused_warned >= NGX_HTTP_USAGE_STREAM_WARN) {
        st->refused_warned = now;
        ngx_log_error(NGX_LOG_WARN, st->log, 0,
                      "usage sync: redis %V ran a batch of stream \"%V\" "
                      "after its events' deadline (ack=redis): their POSTs "
                      "were answered 503, and they are withdrawn",
                      &st->cmd->name, &st->conf->key);
    }

    if (st->conf->replicas) {
        ngx_http_usage_redis_fail(st->cmd, NULL);
        return;
    }

    st->skip = st->acks_n - 1;
    st->acks_n = 0;
    st->sent = 0;

    ngx_http_usage_stream_send(st);
}


/* the oldest batch in flight is Redis's: it leaves the queue */

static void
ngx_http_usage_stream_acked(ngx_http_usage_stream_t *st)
{
    uint64_t  seq;

    seq = st->acks[st->acks_head];
    st->acks_head = (st->acks_head + 1) % NGX_HTTP_USAGE_STREAM_INFLIGHT;
    st->acks_n--;

    if (seq) {
        ngx_http_usage_store_ship_ack(st->zone, seq);
    }

    ngx_http_usage_stream_send(st);
}


static void
ngx_http_usage_stream_reader_up(ngx_http_usage_redis_t *rd)
{
    ngx_http_usage_stream_t  *st;

    st = rd->data;
    st->reading = 0;
    st->checked = 0;

    ngx_http_usage_stream_read(st);
}


static void
ngx_http_usage_stream_reader_down(ngx_http_usage_redis_t *rd)
{
    ngx_http_usage_stream_t  *st;

    st = rd->data;
    st->reading = 0;
}


/*
 * XREAD COUNT <n> BLOCK <ms> STREAMS <key> <position>.  A zone that came
 * with events and has no position yet starts at the stream's last entry:
 * it asks for it first (XREVRANGE), since XREAD's "$" would lose what is
 * added between two reads.
 */

static void
ngx_http_usage_stream_read(ngx_http_usage_stream_t *st)
{
    u_char                         pos[2 * NGX_INT64_LEN + 2];
    u_char                         block[NGX_INT_T_LEN], count[NGX_INT_T_LEN];
    size_t                         lens[8];
    const char                    *argv[8];
    ngx_http_usage_fleet_status_t  fs;

    if (st->reading || !st->active
        || st->reader.state != NGX_HTTP_USAGE_REDIS_READY
        || ngx_http_usage_store_fleet_status(st->zone, &fs) != NGX_OK
        || fs.boot)
    {
        return;
    }

    st->own_upto = fs.own_upto;

    if (!st->checked && !fs.read_tail) {
        ngx_http_usage_stream_check(st);
        return;
    }

    if (fs.read_tail && fs.read_ms == 0 && fs.read_seq == 0) {
        argv[0] = "XREVRANGE"; lens[0] = 9;
        argv[1] = (const char *) st->conf->key.data;
        lens[1] = st->conf->key.len;
        argv[2] = "+"; lens[2] = 1;
        argv[3] = "-"; lens[3] = 1;
        argv[4] = "COUNT"; lens[4] = 5;
        argv[5] = "1"; lens[5] = 1;

        if (ngx_http_usage_redis_send(&st->reader, 6, argv, lens,
                                      ngx_http_usage_stream_tail, st)
            == NGX_OK)
        {
            st->reading = 1;
        }

        return;
    }

    argv[0] = "XREAD"; lens[0] = 5;
    argv[1] = "COUNT"; lens[1] = 5;
    argv[2] = (const char *) count;
    lens[2] = ngx_sprintf(count, "%d", NGX_HTTP_USAGE_STREAM_COUNT) - count;
    argv[3] = "BLOCK"; lens[3] = 5;
    argv[4] = (const char *) block;
    lens[4] = ngx_sprintf(block, "%M", st->conf->block) - block;
    argv[5] = "STREAMS"; lens[5] = 7;
    argv[6] = (const char *) st->conf->key.data;
    lens[6] = st->conf->key.len;
    argv[7] = (const char *) pos;
    lens[7] = ngx_sprintf(pos, "%uL-%uL", fs.read_ms, fs.read_seq) - pos;

    if (ngx_http_usage_redis_send(&st->reader, 8, argv, lens,
                                  ngx_http_usage_stream_got, st)
        == NGX_OK)
    {
        st->reading = 1;
    }
}


/*
 * XINFO STREAM <key>, once a connection, before the first XREAD: entries
 * were trimmed (fewer than were ever added) and the first one left is
 * past the zone's position, so entries after it may be gone unread (the
 * instance was away longer than a snapshot interval, or new and the
 * stream older than its snapshots).  The zone loads the fleet's snapshot
 * again; when none can be loaded, it reads on, lacking them, and writes
 * no snapshot (docs/FLEET.md).
 */

static void
ngx_http_usage_stream_check(ngx_http_usage_stream_t *st)
{
    size_t       lens[3];
    const char  *argv[3];

    argv[0] = "XINFO"; lens[0] = 5;
    argv[1] = "STREAM"; lens[1] = 6;
    argv[2] = (const char *) st->conf->key.data;
    lens[2] = st->conf->key.len;

    if (ngx_http_usage_redis_send(&st->reader, 3, argv, lens,
                                  ngx_http_usage_stream_checked, st)
        == NGX_OK)
    {
        st->reading = 1;
    }
}


static void
ngx_http_usage_stream_checked(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    uint64_t                        ms, seq;
    ngx_http_usage_stream_t        *st;
    ngx_http_usage_fleet_status_t   fs;

    st = data;
    st->reading = 0;

    if (reply == NULL) {
        return;
    }

    st->checked = 1;

    /* an error: no stream yet, nothing was trimmed */
    if (reply->type != REDIS_REPLY_ARRAY
        || ngx_http_usage_store_fleet_status(st->zone, &fs) != NGX_OK
        || ngx_http_usage_stream_first(reply, &ms, &seq) != NGX_OK
        || ms < fs.read_ms || (ms == fs.read_ms && seq <= fs.read_seq))
    {
        st->rebooted = 0;
        ngx_http_usage_stream_read(st);
        return;
    }

    if (!st->rebooted) {
        st->rebooted = 1;

        if (ngx_http_usage_store_boot_again(st->zone) == NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, st->log, 0,
                          "usage sync: stream \"%V\" was trimmed: its first "
                          "entry %uL-%uL is past %uL-%uL, where zone \"%V\" "
                          "stands: it loads the fleet's snapshot",
                          &st->conf->key, ms, seq, fs.read_ms, fs.read_seq,
                          &st->zone->name);
            return;
        }
    }

    ngx_http_usage_store_partial(st->zone);

    ngx_log_error(NGX_LOG_WARN, st->log, 0,
                  "usage sync: zone \"%V\" lacks the entries of stream "
                  "\"%V\" trimmed before %uL-%uL, and no snapshot had them: "
                  "it writes no snapshot", &st->zone->name, &st->conf->key,
                  ms, seq);

    ngx_http_usage_stream_read(st);
}


/* the stream's first entry, if any was ever trimmed from it */

static ngx_int_t
ngx_http_usage_stream_first(redisReply *info, uint64_t *ms, uint64_t *seq)
{
    size_t       i;
    int64_t      length, added;
    redisReply  *name, *value;

    length = -1;
    added = -1;
    *ms = 0;
    *seq = 0;

    for (i = 0; i + 1 < info->elements; i += 2) {
        name = info->element[i];
        value = info->element[i + 1];

        if (name->type != REDIS_REPLY_STRING) {
            continue;
        }

#define ngx_http_usage_field_is(s)                                           \
    (name->len == sizeof(s) - 1 && ngx_strncmp(name->str, s, name->len) == 0)

        if (ngx_http_usage_field_is("length")
            && value->type == REDIS_REPLY_INTEGER)
        {
            length = value->integer;

        } else if (ngx_http_usage_field_is("entries-added")
                   && value->type == REDIS_REPLY_INTEGER)
        {
            added = value->integer;

        } else if (ngx_http_usage_field_is("recorded-first-entry-id")) {
            (void) ngx_http_usage_stream_id(value, ms, seq);
        }

#undef ngx_http_usage_field_is
    }

    /* before Redis 7.0 neither is told: nothing is known to be missing */
    if (length < 0 || added <= length || (*ms == 0 && *seq == 0)) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_usage_stream_tail(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    uint64_t                  ms, seq;
    ngx_http_usage_stream_t  *st;

    st = data;
    st->reading = 0;

    if (reply == NULL) {
        return;
    }

    ms = 0;
    seq = 0;

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements > 1
        || (reply->elements == 1
            && (reply->element[0]->type != REDIS_REPLY_ARRAY
                || reply->element[0]->elements != 2
                || ngx_http_usage_stream_id(reply->element[0]->element[0],
                                            &ms, &seq)
                   != NGX_OK)))
    {
        ngx_http_usage_redis_fail(rd, "XREVRANGE answered no entry");
        return;
    }

    /* the last entry, or 0-0 for an empty stream: read from there */
    ngx_http_usage_store_skip(st->zone, ms, seq, 0, 0);

    ngx_http_usage_stream_read(st);
}


static void
ngx_http_usage_stream_got(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    ngx_http_usage_stream_t  *st;

    st = data;
    st->reading = 0;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "usage sync: redis %V refused to read stream "
                      "\"%V\": %*s", &rd->name, &st->conf->key,
                      (size_t) reply->len, reply->str);
        ngx_http_usage_redis_fail(rd, NULL);
        return;
    }

    /* nil: nothing new within BLOCK */
    if (reply->type == REDIS_REPLY_ARRAY) {
        if (reply->elements != 1
            || reply->element[0]->type != REDIS_REPLY_ARRAY
            || reply->element[0]->elements != 2
            || reply->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
        {
            ngx_http_usage_redis_fail(rd, "XREAD answered no stream");
            return;
        }

        if (ngx_http_usage_stream_entries(st, reply->element[0]->element[1])
            != NGX_OK)
        {
            ngx_http_usage_redis_fail(rd, "XREAD answered no entries");
            return;
        }

    } else if (reply->type != REDIS_REPLY_NIL) {
        ngx_http_usage_redis_fail(rd, "XREAD answered neither entries "
                                      "nor nil");
        return;
    }

    ngx_http_usage_stream_read(st);
}


static ngx_int_t
ngx_http_usage_stream_entries(ngx_http_usage_stream_t *st,
    redisReply *entries)
{
    size_t       i;
    ngx_int_t    rc;
    ngx_pool_t  *pool;

    pool = ngx_create_pool(16384, st->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_OK;

    for (i = 0; i < entries->elements && rc == NGX_OK; i++) {
        rc = ngx_http_usage_stream_entry(st, pool, entries->element[i]);
        ngx_reset_pool(pool);
    }

    ngx_destroy_pool(pool);

    return rc;
}


/*
 * One entry: an id and its fields.  What is not a batch of this format
 * is skipped and counted, the position moving past it; NGX_ERROR only
 * for a reply that is not an entry at all (Redis would never send it).
 */

static ngx_int_t
ngx_http_usage_stream_entry(ngx_http_usage_stream_t *st, ngx_pool_t *pool,
    redisReply *entry)
{
    uint64_t                        origin, ms, seq;
    ngx_uint_t                      count, republished;
    ngx_http_usage_apply_t          a;
    ngx_http_usage_stream_fields_t  f;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2
        || ngx_http_usage_stream_id(entry->element[0], &ms, &seq) != NGX_OK
        || entry->element[1]->type != REDIS_REPLY_ARRAY)
    {
        return NGX_ERROR;
    }

    if (ngx_http_usage_stream_fields(entry->element[1], &f, &origin, &count,
                                     &republished)
        != NGX_OK)
    {
        ngx_http_usage_stream_foreign(st, entry->element[0],
                                      "not a batch of events of format 1");
        ngx_http_usage_store_skip(st->zone, ms, seq, 1, 0);
        return NGX_OK;
    }

    if (origin == st->origin
        && (republished || (st->own_upto == 0 && !st->conf->ack)))
    {
        /* this zone's own events, stored here when they were accepted,
         * or those it published again: it has them (unless a snapshot
         * replaced the store since, or ack=redis held them unstored) */
        ngx_http_usage_store_skip(st->zone, ms, seq, 0, 0);
        return NGX_OK;
    }

    ngx_memzero(&a, sizeof(ngx_http_usage_apply_t));

    a.origin = origin;
    a.republished = republished;
    a.start = f.s ? ngx_atoof((u_char *) f.s->str, f.s->len) : 0;
    a.read_ms = ms;
    a.read_seq = seq;

    if (ngx_http_usage_stream_decode(st, pool, f.e, count, &a) != NGX_OK) {
        return NGX_ERROR;
    }

    if (a.refused) {
        ngx_http_usage_stream_foreign(st, entry->element[0],
                                      "records that are not events");
    }

    return ngx_http_usage_store_apply(st->zone, &a, ngx_http_usage_now());
}


static ngx_int_t
ngx_http_usage_stream_fields(redisReply *fields,
    ngx_http_usage_stream_fields_t *f, uint64_t *origin, ngx_uint_t *count,
    ngx_uint_t *republished)
{
    size_t       i;
    ngx_int_t    n;
    redisReply  *name, *value, **slot;

    ngx_memzero(f, sizeof(ngx_http_usage_stream_fields_t));

    for (i = 0; i + 1 < fields->elements; i += 2) {
        name = fields->element[i];
        value = fields->element[i + 1];

        if (name->type != REDIS_REPLY_STRING || name->len != 1
            || value->type != REDIS_REPLY_STRING)
        {
            continue;               /* a field of a later format */
        }

        switch (name->str[0]) {
        case 'v': slot = &f->v; break;
        case 'k': slot = &f->k; break;
        case 'o': slot = &f->o; break;
        case 'c': slot = &f->c; break;
        case 'e': slot = &f->e; break;
        case 's': slot = &f->s; break;
        default: continue;
        }

        *slot = value;
    }

    if (f->v == NULL || f->v->len != 1 || f->v->str[0] != '1'
        || f->k == NULL || f->k->len != 1
        || (f->k->str[0] != 'b' && f->k->str[0] != 'r')
        || f->o == NULL || f->c == NULL || f->e == NULL
        || ngx_http_usage_origin_parse((u_char *) f->o->str, f->o->len,
                                       origin)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    n = ngx_atoi((u_char *) f->c->str, f->c->len);

    /* each record takes a header at least: the count is bounded by it */
    if (n <= 0 || n > NGX_HTTP_USAGE_STREAM_BATCH_MAX
        || (size_t) n > f->e->len / NGX_HTTP_USAGE_WIRE_HEADER)
    {
        return NGX_DECLINED;
    }

    *count = (ngx_uint_t) n;
    *republished = (f->k->str[0] == 'r');

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_stream_decode(ngx_http_usage_stream_t *st, ngx_pool_t *pool,
    redisReply *e, ngx_uint_t count, ngx_http_usage_apply_t *a)
{
    uint64_t                  seq;
    ngx_int_t                 rc;
    ngx_http_usage_wire_t     w;
    ngx_http_usage_record_t  *rec;

    a->recs = ngx_palloc(pool, count * sizeof(ngx_http_usage_record_t));
    a->voids = ngx_palloc(pool, count * sizeof(uint64_t));
    if (a->recs == NULL || a->voids == NULL) {
        return NGX_ERROR;
    }

    ngx_http_usage_wire_init(&w, (u_char *) e->str, e->len,
                             ngx_http_usage_store_event_max(st->zone));

    while (a->n < count) {
        rec = &a->recs[a->n];
        ngx_memzero(rec, sizeof(ngx_http_usage_record_t));

        rc = ngx_http_usage_wire_next(&w, rec, &seq);

        if (rc == NGX_DONE) {
            break;
        }

        if (rc == NGX_ERROR) {
            a->refused++;
            break;
        }

        if (rc == NGX_DECLINED) {
            a->refused++;
            continue;
        }

        if (w.flags & NGX_HTTP_USAGE_WIRE_VOID) {
            a->voids[a->nvoids++] = seq;    /* no event: only its seq */
            continue;
        }

        if (!ngx_http_usage_json_object_ok(&rec->metadata, pool)) {
            a->refused++;
            continue;
        }

        rec->origin = a->origin;
        rec->seq = seq;
        a->n++;
    }

    return NGX_OK;
}


/* "<ms>-<seq>", as Redis gives entry ids */

static ngx_int_t
ngx_http_usage_stream_id(redisReply *r, uint64_t *ms, uint64_t *seq)
{
    u_char  *p, *dash, *end;

    if (r->type != REDIS_REPLY_STRING || r->len == 0) {
        return NGX_ERROR;
    }

    p = (u_char *) r->str;
    end = p + r->len;
    dash = ngx_strlchr(p, end, '-');

    /* 19 digits at most each: no overflow (Redis's ids are far below) */
    if (dash == NULL || dash == p || dash + 1 == end
        || dash - p > 19 || end - dash - 1 > 19)
    {
        return NGX_ERROR;
    }

    *ms = 0;
    *seq = 0;

    for ( /* void */ ; p < dash; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        *ms = *ms * 10 + (*p - '0');
    }

    for (p = dash + 1; p < end; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        *seq = *seq * 10 + (*p - '0');
    }

    return NGX_OK;
}


static void
ngx_http_usage_stream_foreign(ngx_http_usage_stream_t *st, redisReply *id,
    const char *why)
{
    int64_t  now;

    now = ngx_http_usage_now();

    if (now - st->warned < NGX_HTTP_USAGE_STREAM_WARN) {
        return;
    }

    st->warned = now;

    ngx_log_error(NGX_LOG_WARN, st->log, 0,
                  "usage sync: stream \"%V\" entry %*s holds %s: skipped, "
                  "and counted in usage_sync_refused_total",
                  &st->conf->key, (size_t) id->len, id->str, why);
}
