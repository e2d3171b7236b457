
/*
 * The fleet's snapshot in Redis: written by the instance holding the
 * lease, loaded by a new one.
 *
 *   SET <key>:lease <origin> NX PX <interval>            who writes
 *   SET <key>:<gen>:<i> <4 MB of the state file> PX <3 intervals>
 *   EVAL <commit> 2 <key> <stream>:epoch <epoch> <manifest> <key>: <ms>
 *   XTRIM <stream> MINID ~ <the previous manifest's position> LIMIT 0
 *
 * The commit script takes the manifest only under the epoch it was
 * written in and only if it stands further in the stream than the one
 * it replaces (a slow writer never replaces a newer snapshot), keeps its
 * chunks and lets the previous one's expire; the stream is trimmed to
 * the previous snapshot's position, so that a load of it that was under
 * way still finds the stream after it.
 *
 * A new zone reads nothing of the stream before it knows whether there
 * is a snapshot: GET <key>, then GET of every chunk, the whole checked
 * by its length and CRC32 and by the state file's own checks, loaded in
 * place of the zone's store (ngx_http_usage_state_bootstrap()).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_state.h"
#include "ngx_http_usage_redis.h"
#include "ngx_http_usage_stream.h"
#include "ngx_http_usage_snapshot.h"
#include "ngx_http_usage_wire.h"


/* the gap between loads that failed, at least */
#define NGX_HTTP_USAGE_SNAPSHOT_RETRY   1000

/* "v=1 gen=<16 hex>-<n> epoch=<16 hex> pos=<ms>-<seq> chunks=<n>
 * bytes=<n> crc=<8 hex>" */
#define NGX_HTTP_USAGE_MANIFEST_LEN     192
#define NGX_HTTP_USAGE_GEN_MAX          64

/* a chunk's key: <stream>:snapshot:<gen>:<i>, stream= is 256 at most */
#define NGX_HTTP_USAGE_SNAPSHOT_KEY_LEN 512


typedef struct {
    ngx_str_t                    gen;
    uint64_t                     epoch;
    uint64_t                     pos_ms;
    uint64_t                     pos_seq;
    ngx_uint_t                   chunks;
    size_t                       bytes;
    uint32_t                     crc;
} ngx_http_usage_manifest_t;


static void ngx_http_usage_snapshot_load(ngx_http_usage_snapshot_t *snap);
static void ngx_http_usage_snapshot_manifest(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static void ngx_http_usage_snapshot_fetch(ngx_http_usage_snapshot_t *snap,
    ngx_http_usage_manifest_t *m);
static void ngx_http_usage_snapshot_chunk(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static void ngx_http_usage_snapshot_loaded(ngx_http_usage_snapshot_t *snap);
static void ngx_http_usage_snapshot_none(ngx_http_usage_snapshot_t *snap,
    const char *why);
static void ngx_http_usage_snapshot_lease(ngx_http_usage_snapshot_t *snap);
static void ngx_http_usage_snapshot_leased(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static ngx_int_t ngx_http_usage_snapshot_write(
    ngx_http_usage_snapshot_t *snap);
static ngx_int_t ngx_http_usage_snapshot_commit(
    ngx_http_usage_snapshot_t *snap, u_char *manifest, size_t len,
    uint64_t epoch);
static void ngx_http_usage_snapshot_stored(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static void ngx_http_usage_snapshot_committed(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static void ngx_http_usage_snapshot_trimmed(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static ngx_int_t ngx_http_usage_manifest_parse(u_char *p, size_t len,
    ngx_http_usage_manifest_t *m);
static size_t ngx_http_usage_chunk_key(u_char *buf,
    ngx_http_usage_snapshot_t *snap, ngx_str_t *gen, ngx_uint_t i);


/*
 * KEYS[1] the manifest, KEYS[2] the epoch; ARGV[1] the epoch written
 * under, ARGV[2] the manifest, ARGV[3] the chunks' key prefix, ARGV[4]
 * how long the replaced snapshot's chunks stay.  -1: another epoch; 0:
 * not newer; else the manifest replaced ("" for none).
 */
static const char  ngx_http_usage_snapshot_script[] =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end\n"
    "local function pos(m)\n"
    "  local ms, seq = string.match(m, 'pos=(%d+)%-(%d+)')\n"
    "  return tonumber(ms) or -1, tonumber(seq) or -1\n"
    "end\n"
    "local function chunks(m, f)\n"
    "  local gen = string.match(m, 'gen=(%S+)')\n"
    "  local n = tonumber(string.match(m, 'chunks=(%d+)'))\n"
    "  if gen and n then\n"
    "    for i = 0, n - 1 do f(ARGV[3] .. gen .. ':' .. i) end\n"
    "  end\n"
    "end\n"
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local m1, s1 = pos(cur)\n"
    "  local m2, s2 = pos(ARGV[2])\n"
    "  if m1 > m2 or (m1 == m2 and s1 >= s2) then return 0 end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[2])\n"
    "chunks(ARGV[2], function(k) redis.call('PERSIST', k) end)\n"
    "if cur then\n"
    "  chunks(cur, function(k) redis.call('PEXPIRE', k, ARGV[4]) end)\n"
    "end\n"
    "return cur or ''\n";


void
ngx_http_usage_snapshot_init(ngx_http_usage_snapshot_t *snap,
    ngx_http_usage_snapshot_conf_t *conf, ngx_http_usage_snapshot_shm_t *shm,
    ngx_str_t *stream_key, ngx_str_t *epoch_key, ngx_http_usage_zone_t *zone,
    ngx_http_usage_redis_t *cmd, ngx_http_usage_stream_t *stream,
    ngx_log_t *log)
{
    ngx_memzero(snap, sizeof(ngx_http_usage_snapshot_t));

    snap->conf = conf;
    snap->shm = shm;
    snap->stream_key = stream_key;
    snap->epoch_key = epoch_key;
    snap->zone = zone;
    snap->cmd = cmd;
    snap->stream = stream;
    snap->log = log;
}


void
ngx_http_usage_snapshot_tick(ngx_http_usage_snapshot_t *snap)
{
    ngx_msec_t                     gap;
    ngx_http_usage_fleet_status_t  fs;

    if (snap->busy
        || snap->cmd->state != NGX_HTTP_USAGE_REDIS_READY
        || ngx_http_usage_store_fleet_status(snap->zone, &fs) != NGX_OK
        || fs.epoch == 0)
    {
        return;
    }

    if (fs.boot) {
        gap = ngx_max(snap->conf->interval, NGX_HTTP_USAGE_SNAPSHOT_RETRY);

        if (snap->tries == 0 || ngx_current_msec - snap->tried >= gap) {
            ngx_http_usage_snapshot_load(snap);
        }

        return;
    }

    /*
     * Only a zone that stands where the stream is writes (not one that
     * reads the stream again after a loss), and only when it read further
     * than its last snapshot: an idle fleet writes none.
     */
    if (snap->conf->interval == 0
        || ngx_current_msec - snap->tried < snap->conf->interval
        || fs.republishing
        || fs.partial
        || fs.lag > snap->conf->interval
        || (fs.read_ms == snap->written_ms && fs.read_seq == snap->written_seq))
    {
        return;
    }

    ngx_http_usage_snapshot_lease(snap);
}


void
ngx_http_usage_snapshot_down(ngx_http_usage_snapshot_t *snap)
{
    /* every reply awaited came as NULL already: nothing is half-loaded */
    snap->busy = 0;
}


/* GET <key> */

static void
ngx_http_usage_snapshot_load(ngx_http_usage_snapshot_t *snap)
{
    size_t       lens[2];
    const char  *argv[2];

    argv[0] = "GET"; lens[0] = 3;
    argv[1] = (const char *) snap->conf->key.data;
    lens[1] = snap->conf->key.len;

    snap->tried = ngx_current_msec;

    if (ngx_http_usage_redis_send(snap->cmd, 2, argv, lens,
                                  ngx_http_usage_snapshot_manifest, snap)
        == NGX_OK)
    {
        snap->busy = 1;
    }
}


static void
ngx_http_usage_snapshot_manifest(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    ngx_http_usage_snapshot_t      *snap;
    ngx_http_usage_manifest_t       m;
    ngx_http_usage_fleet_status_t   fs;

    snap = data;
    snap->busy = 0;

    if (reply == NULL) {
        return;                     /* asked again on the next connect */
    }

    if (reply->type == REDIS_REPLY_NIL) {
        ngx_http_usage_snapshot_none(snap, "Redis holds no snapshot yet");
        return;
    }

    if (reply->type != REDIS_REPLY_STRING
        || ngx_http_usage_manifest_parse((u_char *) reply->str, reply->len,
                                         &m)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "usage sync: redis %V holds no snapshot manifest of "
                      "usage_sync at \"%V\": is the key another program's?",
                      &rd->name, &snap->conf->key);
        (void) ngx_atomic_fetch_add(&snap->shm->failures, 1);
        ngx_http_usage_snapshot_none(snap, "the snapshot is unreadable");
        return;
    }

    if (ngx_http_usage_store_fleet_status(snap->zone, &fs) != NGX_OK
        || !fs.boot)
    {
        return;
    }

    if (m.epoch != fs.epoch) {
        ngx_http_usage_snapshot_none(snap, "the snapshot is of another "
                                           "epoch of the stream");
        return;
    }

    ngx_http_usage_snapshot_fetch(snap, &m);
}


/* GET <key>:<gen>:<i>, every chunk at once */

static void
ngx_http_usage_snapshot_fetch(ngx_http_usage_snapshot_t *snap,
    ngx_http_usage_manifest_t *m)
{
    u_char       key[NGX_HTTP_USAGE_SNAPSHOT_KEY_LEN];
    size_t       lens[2];
    ngx_uint_t   i;
    const char  *argv[2];

    snap->buf = ngx_alloc(m->bytes, snap->log);
    if (snap->buf == NULL) {
        return;
    }

    snap->len = m->bytes;
    snap->crc = m->crc;
    snap->chunks = m->chunks;
    snap->got = 0;
    snap->failed = 0;

    argv[0] = "GET"; lens[0] = 3;
    argv[1] = (const char *) key;

    for (i = 0; i < m->chunks; i++) {
        lens[1] = ngx_http_usage_chunk_key(key, snap, &m->gen, i);

        if (ngx_http_usage_redis_send(snap->cmd, 2, argv, lens,
                                      ngx_http_usage_snapshot_chunk, snap)
            != NGX_OK)
        {
            /* the connection failed: the replies awaited come as NULL */
            snap->failed = 1;
            snap->chunks = i;
            break;
        }

        snap->busy++;
    }

    if (snap->busy == 0) {
        ngx_free(snap->buf);
        snap->buf = NULL;
    }
}


static void
ngx_http_usage_snapshot_chunk(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    size_t                      off, want;
    ngx_http_usage_snapshot_t  *snap;

    snap = data;
    snap->busy--;

    off = snap->got * NGX_HTTP_USAGE_SNAPSHOT_CHUNK;
    want = ngx_min(snap->len - off, NGX_HTTP_USAGE_SNAPSHOT_CHUNK);

    if (reply == NULL || reply->type != REDIS_REPLY_STRING
        || reply->len != want)
    {
        snap->failed = 1;

    } else if (!snap->failed) {
        ngx_memcpy(snap->buf + off, reply->str, want);
    }

    if (++snap->got < snap->chunks && snap->busy) {
        return;
    }

    if (reply) {
        ngx_http_usage_snapshot_loaded(snap);
    }

    ngx_free(snap->buf);
    snap->buf = NULL;
}


static void
ngx_http_usage_snapshot_loaded(ngx_http_usage_snapshot_t *snap)
{
    const char  *why;

    if (snap->failed) {
        why = "a chunk has expired or has another length";

    } else if (ngx_crc32_long(snap->buf, snap->len) != snap->crc) {
        why = "its checksum does not match";

    } else if (ngx_http_usage_state_bootstrap(snap->zone, snap->buf,
                                              snap->len, snap->log)
               != NGX_OK)
    {
        why = "it is not a snapshot of this module's format";

    } else {
        snap->tries = 0;
        ngx_http_usage_stream_resume(snap->stream);
        return;
    }

    (void) ngx_atomic_fetch_add(&snap->shm->failures, 1);

    if (++snap->tries < NGX_HTTP_USAGE_SNAPSHOT_TRIES) {
        ngx_log_error(NGX_LOG_ERR, snap->log, 0,
                      "usage sync: the snapshot at \"%V\" could not be "
                      "loaded, %s: tried again soon", &snap->conf->key, why);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, snap->log, 0,
                  "usage sync: the snapshot at \"%V\" could not be loaded, "
                  "%s", &snap->conf->key, why);

    ngx_http_usage_snapshot_none(snap, "no snapshot could be loaded");
}


/*
 * No snapshot to start from: the zone reads the stream from where it
 * stands (its start, for a new one), which holds the fleet's whole
 * history unless it was trimmed with no snapshot written (the fleet
 * began without snapshots, or lost them).
 */

static void
ngx_http_usage_snapshot_none(ngx_http_usage_snapshot_t *snap,
    const char *why)
{
    ngx_http_usage_fleet_status_t  fs;

    if (ngx_http_usage_store_fleet_status(snap->zone, &fs) == NGX_OK
        && (fs.read_ms || fs.read_seq))
    {
        ngx_log_error(NGX_LOG_WARN, snap->log, 0,
                      "usage sync: zone \"%V\" reads on in stream \"%V\" "
                      "from %uL-%uL, without the entries trimmed: %s",
                      &snap->zone->name, snap->stream_key, fs.read_ms,
                      fs.read_seq, why);

    } else {
        ngx_log_error(NGX_LOG_NOTICE, snap->log, 0,
                      "usage sync: zone \"%V\" reads stream \"%V\" from "
                      "its start: %s", &snap->zone->name, snap->stream_key,
                      why);
    }

    snap->tries = 0;

    ngx_http_usage_store_boot_done(snap->zone);
    ngx_http_usage_stream_resume(snap->stream);
}


/* SET <key>:lease <origin> NX PX <interval> */

static void
ngx_http_usage_snapshot_lease(ngx_http_usage_snapshot_t *snap)
{
    u_char                         origin[NGX_HTTP_USAGE_ORIGIN_HEX];
    u_char                         px[NGX_INT_T_LEN];
    size_t                         lens[6];
    const char                    *argv[6];
    ngx_http_usage_fleet_status_t  fs;

    if (ngx_http_usage_store_fleet_status(snap->zone, &fs) != NGX_OK) {
        return;
    }

    (void) ngx_http_usage_origin_hex(origin, fs.origin);

    argv[0] = "SET"; lens[0] = 3;
    argv[1] = (const char *) snap->conf->lease.data;
    lens[1] = snap->conf->lease.len;
    argv[2] = (const char *) origin; lens[2] = NGX_HTTP_USAGE_ORIGIN_HEX;
    argv[3] = "NX"; lens[3] = 2;
    argv[4] = "PX"; lens[4] = 2;
    argv[5] = (const char *) px;
    lens[5] = ngx_sprintf(px, "%M", snap->conf->interval) - px;

    snap->tried = ngx_current_msec;

    if (ngx_http_usage_redis_send(snap->cmd, 6, argv, lens,
                                  ngx_http_usage_snapshot_leased, snap)
        == NGX_OK)
    {
        snap->busy = 1;
    }
}


static void
ngx_http_usage_snapshot_leased(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    ngx_http_usage_snapshot_t  *snap;

    snap = data;
    snap->busy = 0;

    if (reply == NULL || reply->type == REDIS_REPLY_NIL) {
        return;                     /* another instance writes this one */
    }

    if (reply->type != REDIS_REPLY_STATUS) {
        ngx_http_usage_redis_unexpected(rd, "SET NX PX", reply);
        return;
    }

    if (ngx_http_usage_snapshot_write(snap) != NGX_OK) {
        (void) ngx_atomic_fetch_add(&snap->shm->failures, 1);
    }
}


/*
 * The zone's snapshot, in chunks that expire unless the commit keeps
 * them (a writer that dies in the middle leaves nothing for good).  The
 * commands hold copies of the bytes: the snapshot is freed at once.
 */

static ngx_int_t
ngx_http_usage_snapshot_write(ngx_http_usage_snapshot_t *snap)
{
    u_char                           key[NGX_HTTP_USAGE_SNAPSHOT_KEY_LEN];
    u_char                           px[NGX_INT_T_LEN];
    u_char                           gen_text[NGX_HTTP_USAGE_ORIGIN_HEX
                                              + NGX_INT64_LEN + 1];
    u_char                           manifest[NGX_HTTP_USAGE_MANIFEST_LEN];
    size_t                           lens[5], off, mlen;
    ngx_int_t                        rc;
    ngx_str_t                        gen;
    ngx_uint_t                       i, n;
    const char                      *argv[5];
    ngx_http_usage_state_snapshot_t  ds;

    if (ngx_http_usage_state_snapshot(snap->zone, &ds) != NGX_OK) {
        return NGX_ERROR;
    }

    n = (ds.len + NGX_HTTP_USAGE_SNAPSHOT_CHUNK - 1)
        / NGX_HTTP_USAGE_SNAPSHOT_CHUNK;

    if (ds.epoch == 0) {
        /* the stream's epoch was lost meanwhile: the next check has it */
        ngx_free(ds.data);
        return NGX_OK;
    }

    if (n > NGX_HTTP_USAGE_SNAPSHOT_CHUNKS) {
        ngx_log_error(NGX_LOG_WARN, snap->log, 0,
                      "usage sync: zone \"%V\" writes no snapshot: %uz "
                      "bytes, more than %d chunks", &snap->zone->name,
                      ds.len, NGX_HTTP_USAGE_SNAPSHOT_CHUNKS);
        ngx_free(ds.data);
        return NGX_ERROR;
    }

    snap->counter++;

    (void) ngx_http_usage_origin_hex(gen_text, ds.origin);
    gen.data = gen_text;
    gen.len = ngx_sprintf(gen_text + NGX_HTTP_USAGE_ORIGIN_HEX, "-%uL",
                          snap->counter) - gen_text;

    mlen = ngx_snprintf(manifest, sizeof(manifest),
                        "v=1 gen=%V epoch=%016uxL pos=%uL-%uL chunks=%ui "
                        "bytes=%uz crc=%08uxD events=%uL",
                        &gen, ds.epoch, ds.read_ms, ds.read_seq, n, ds.len,
                        ngx_crc32_long(ds.data, ds.len), ds.events)
           - manifest;

    argv[0] = "SET"; lens[0] = 3;
    argv[1] = (const char *) key;
    argv[3] = "PX"; lens[3] = 2;
    argv[4] = (const char *) px;
    lens[4] = ngx_sprintf(px, "%M", 3 * snap->conf->interval) - px;

    rc = NGX_OK;

    for (i = 0; i < n && rc == NGX_OK; i++) {
        off = i * NGX_HTTP_USAGE_SNAPSHOT_CHUNK;

        lens[1] = ngx_http_usage_chunk_key(key, snap, &gen, i);
        argv[2] = (const char *) ds.data + off;
        lens[2] = ngx_min(ds.len - off, NGX_HTTP_USAGE_SNAPSHOT_CHUNK);

        rc = ngx_http_usage_redis_send(snap->cmd, 5, argv, lens,
                                       ngx_http_usage_snapshot_stored, snap);
        snap->busy += (rc == NGX_OK);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_usage_snapshot_commit(snap, manifest, mlen, ds.epoch);
    }

    if (rc == NGX_OK) {
        snap->written_ms = ds.read_ms;
        snap->written_seq = ds.read_seq;

        ngx_log_error(NGX_LOG_INFO, snap->log, 0,
                      "usage sync: zone \"%V\" writes snapshot %V: %uz "
                      "bytes, %uL events, %M ms under the lock",
                      &snap->zone->name, &gen, ds.len, ds.events, ds.locked);
    }

    ngx_free(ds.data);

    return rc;
}


static ngx_int_t
ngx_http_usage_snapshot_commit(ngx_http_usage_snapshot_t *snap,
    u_char *manifest, size_t len, uint64_t epoch)
{
    u_char       epoch_text[NGX_HTTP_USAGE_ORIGIN_HEX];
    u_char       prefix[NGX_HTTP_USAGE_SNAPSHOT_KEY_LEN];
    u_char       keep[NGX_INT_T_LEN];
    size_t       lens[9];
    ngx_int_t    rc;
    const char  *argv[9];

    (void) ngx_http_usage_origin_hex(epoch_text, epoch);

    argv[0] = "EVAL"; lens[0] = 4;
    argv[1] = ngx_http_usage_snapshot_script;
    lens[1] = sizeof(ngx_http_usage_snapshot_script) - 1;
    argv[2] = "2"; lens[2] = 1;
    argv[3] = (const char *) snap->conf->key.data;
    lens[3] = snap->conf->key.len;
    argv[4] = (const char *) snap->epoch_key->data;
    lens[4] = snap->epoch_key->len;
    argv[5] = (const char *) epoch_text; lens[5] = NGX_HTTP_USAGE_ORIGIN_HEX;
    argv[6] = (const char *) manifest; lens[6] = len;
    argv[7] = (const char *) prefix;
    lens[7] = ngx_snprintf(prefix, sizeof(prefix), "%V:", &snap->conf->key)
              - prefix;
    argv[8] = (const char *) keep;
    lens[8] = ngx_sprintf(keep, "%M", 2 * snap->conf->interval) - keep;

    rc = ngx_http_usage_redis_send(snap->cmd, 9, argv, lens,
                                   ngx_http_usage_snapshot_committed, snap);
    snap->busy += (rc == NGX_OK);

    return rc;
}


static void
ngx_http_usage_snapshot_stored(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    ngx_http_usage_snapshot_t  *snap;

    snap = data;
    snap->busy--;

    if (reply && reply->type != REDIS_REPLY_STATUS) {
        /* the commit still comes: it keeps a manifest whose chunks a
         * load then finds missing, and the next snapshot replaces it */
        ngx_http_usage_redis_unexpected(rd, "SET of a snapshot chunk",
                                        reply);
    }
}


/* XTRIM <stream> MINID ~ <the replaced snapshot's position> */

static void
ngx_http_usage_snapshot_committed(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    u_char                      pos[2 * NGX_INT64_LEN + 2];
    size_t                      lens[7];
    const char                 *argv[7];
    ngx_http_usage_manifest_t   m;
    ngx_http_usage_snapshot_t  *snap;

    snap = data;
    snap->busy--;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_INTEGER) {
        /* another epoch (Redis lost the stream), or a newer snapshot is
         * there already: this one is left to expire */
        return;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        ngx_http_usage_redis_unexpected(rd, "EVAL of the snapshot's commit",
                                        reply);
        (void) ngx_atomic_fetch_add(&snap->shm->failures, 1);
        return;
    }

    (void) ngx_atomic_fetch_add(&snap->shm->written, 1);

    if (reply->len == 0
        || ngx_http_usage_manifest_parse((u_char *) reply->str, reply->len,
                                         &m)
           != NGX_OK)
    {
        return;                     /* the first snapshot: nothing to trim */
    }

    /*
     * "~" trims whole nodes of the stream, and by default 100 nodes'
     * worth at most: with many small entries (a busy fleet with small
     * batches, or a first trim after long without snapshots) the stream
     * would fall behind.  LIMIT 0 trims all that is due at once.
     */
    argv[0] = "XTRIM"; lens[0] = 5;
    argv[1] = (const char *) snap->stream_key->data;
    lens[1] = snap->stream_key->len;
    argv[2] = "MINID"; lens[2] = 5;
    argv[3] = "~"; lens[3] = 1;
    argv[4] = (const char *) pos;
    lens[4] = ngx_sprintf(pos, "%uL-%uL", m.pos_ms, m.pos_seq) - pos;
    argv[5] = "LIMIT"; lens[5] = 5;
    argv[6] = "0"; lens[6] = 1;

    if (ngx_http_usage_redis_send(snap->cmd, 7, argv, lens,
                                  ngx_http_usage_snapshot_trimmed, snap)
        == NGX_OK)
    {
        snap->busy++;
    }
}


static void
ngx_http_usage_snapshot_trimmed(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    ngx_http_usage_snapshot_t  *snap;

    snap = data;
    snap->busy--;

    if (reply == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_usage_redis_unexpected(rd, "XTRIM", reply);
        return;
    }

    (void) ngx_atomic_fetch_add(&snap->shm->trimmed,
                                (ngx_atomic_int_t) reply->integer);
}


/*
 * "v=1 gen=... epoch=... pos=<ms>-<seq> chunks=<n> bytes=<n> crc=<hex>",
 * in any order, other fields ignored (a later format may add some)
 */

static ngx_int_t
ngx_http_usage_manifest_parse(u_char *p, size_t len,
    ngx_http_usage_manifest_t *m)
{
    u_char     *end, *sp, *eq, *dash;
    ngx_int_t   n;
    ngx_str_t   name, value;
    ngx_uint_t  seen;

    ngx_memzero(m, sizeof(ngx_http_usage_manifest_t));

    end = p + len;
    seen = 0;

    while (p < end) {
        sp = ngx_strlchr(p, end, ' ');
        if (sp == NULL) {
            sp = end;
        }

        eq = ngx_strlchr(p, sp, '=');
        if (eq == NULL) {
            return NGX_ERROR;
        }

        name.data = p;
        name.len = eq - p;
        value.data = eq + 1;
        value.len = sp - eq - 1;
        p = sp + 1;

        if (name.len == 1 && name.data[0] == 'v') {
            if (value.len != 1 || value.data[0] != '1') {
                return NGX_ERROR;
            }

            seen |= 0x01;

        } else if (name.len == 3 && ngx_strncmp(name.data, "gen", 3) == 0) {
            if (value.len == 0 || value.len > NGX_HTTP_USAGE_GEN_MAX) {
                return NGX_ERROR;
            }

            m->gen = value;
            seen |= 0x02;

        } else if (name.len == 5 && ngx_strncmp(name.data, "epoch", 5) == 0) {
            if (ngx_http_usage_origin_parse(value.data, value.len, &m->epoch)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            seen |= 0x04;

        } else if (name.len == 3 && ngx_strncmp(name.data, "pos", 3) == 0) {
            dash = ngx_strlchr(value.data, value.data + value.len, '-');
            if (dash == NULL) {
                return NGX_ERROR;
            }

            m->pos_ms = ngx_atoof(value.data, dash - value.data);
            m->pos_seq = ngx_atoof(dash + 1,
                                   value.data + value.len - dash - 1);

            if ((off_t) m->pos_ms == NGX_ERROR
                || (off_t) m->pos_seq == NGX_ERROR)
            {
                return NGX_ERROR;
            }

            seen |= 0x08;

        } else if (name.len == 6
                   && ngx_strncmp(name.data, "chunks", 6) == 0)
        {
            m->chunks = ngx_atoi(value.data, value.len);
            seen |= 0x10;

        } else if (name.len == 5 && ngx_strncmp(name.data, "bytes", 5) == 0) {
            m->bytes = (size_t) ngx_atoof(value.data, value.len);
            seen |= 0x20;

        } else if (name.len == 3 && ngx_strncmp(name.data, "crc", 3) == 0) {
            n = ngx_hextoi(value.data, value.len);

            if (value.len != 8 || n == NGX_ERROR) {
                return NGX_ERROR;
            }

            m->crc = (uint32_t) n;
            seen |= 0x40;
        }
    }

    if (seen != 0x7f
        || m->chunks == 0 || m->chunks > NGX_HTTP_USAGE_SNAPSHOT_CHUNKS
        || (off_t) m->bytes == NGX_ERROR || m->bytes == 0
        || m->bytes > m->chunks * NGX_HTTP_USAGE_SNAPSHOT_CHUNK
        || m->bytes <= (m->chunks - 1) * NGX_HTTP_USAGE_SNAPSHOT_CHUNK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* <key>:<gen>:<i>, in KEY_LEN bytes: stream= and gen are bounded */

static size_t
ngx_http_usage_chunk_key(u_char *buf, ngx_http_usage_snapshot_t *snap,
    ngx_str_t *gen, ngx_uint_t i)
{
    return ngx_snprintf(buf, NGX_HTTP_USAGE_SNAPSHOT_KEY_LEN, "%V:%V:%ui",
                        &snap->conf->key, gen, i)
           - buf;
}
