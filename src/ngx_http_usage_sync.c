
/*
 * usage_sync: the instances of a fleet share their events through Redis.
 *
 * One worker of an instance talks to Redis for a zone: the one that holds
 * the zone's lease (its pid in the zone, as the state file's saver).  A
 * worker takes the lease when nobody holds it, when its holder is gone
 * or has not ticked for a while, or when its holder belongs to a cycle
 * that a reload replaced; a holder that sees a newer cycle, or that is
 * exiting, lets go.  Every worker ticks, so a crashed holder is replaced
 * within a tick or two.  The holder checks the connection at every
 * interval (GET of the stream's epoch) and leaves the state in the zone
 * for /ready, /info and /metrics, which every worker answers.
 *
 * The epoch is a random id that the first instance to find none writes
 * (SET NX GET, Redis 7.0 on): every instance then holds the same one.
 * Redis flushed, or restarted without its data, has none, or soon
 * another: the zone saw the stream it read disappear, and recovers
 * (ngx_http_usage_store_epoch()).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_store.h"
#include "ngx_http_usage_redis.h"
#include "ngx_http_usage_stream.h"
#include "ngx_http_usage_sync.h"
#include "ngx_http_usage_fleet.h"
#include "ngx_http_usage_id.h"
#include "ngx_http_usage_time.h"
#include "ngx_http_usage_wire.h"


/* bytes of stream=: the keys beside it must fit their buffers */
#define NGX_HTTP_USAGE_SYNC_STREAM_MAX 256

/* a holder that has not ticked for this long is taken over */
#define NGX_HTTP_USAGE_SYNC_STALE      3000

#define NGX_HTTP_USAGE_SYNC_TICK       250

/* how long a stopping instance ships its queue, and how often it looks */
#define NGX_HTTP_USAGE_SYNC_DRAIN      5000
#define NGX_HTTP_USAGE_SYNC_DRAIN_TICK 5


/* what one worker keeps of one zone's sync */
typedef struct {
    ngx_http_usage_sync_conf_t  *conf;
    ngx_http_usage_zone_t       *zone;
    ngx_http_usage_sync_shm_t   *shm;
    ngx_http_usage_redis_t       redis;
    ngx_http_usage_stream_t      stream;
    ngx_http_usage_snapshot_t    snapshot;
    ngx_event_t                  tick;
    ngx_atomic_uint_t            generation;   /* of this worker's cycle */
    ngx_uint_t                   owner;
    ngx_msec_t                   checked;      /* the last PING sent */
    ngx_uint_t                   checking;
    ngx_uint_t                   proposing;    /* a SET NX GET awaited */
    ngx_uint_t                   epoch_ok;     /* the zone has Redis's
                                                  epoch, on this connection */
    uint64_t                     proposed;     /* the epoch of SET NX GET */

    /* the zone's read position when a check found the zone's epoch: an
     * entry of the stream the epoch named (the position at the time the
     * GET was sent, so no entry read after the check is taken for one) */
    uint64_t                     asked_ms;
    uint64_t                     asked_seq;
    uint64_t                     verified_ms;
    uint64_t                     verified_seq;
    uint64_t                     candidate;    /* the epoch found instead */
    ngx_msec_t                   drain_until;  /* stopping: the deadline */
} ngx_http_usage_sync_t;


static ngx_int_t ngx_http_usage_sync_param(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_sync_conf_t *sc);
static ngx_int_t ngx_http_usage_sync_param_stream(ngx_conf_t *cf,
    ngx_str_t *value, ngx_http_usage_sync_conf_t *sc);
static ngx_int_t ngx_http_usage_sync_key(ngx_conf_t *cf, ngx_str_t *key,
    ngx_str_t *stream, const char *suffix);
static ngx_int_t ngx_http_usage_sync_invalid(ngx_conf_t *cf,
    ngx_str_t *value);
static ngx_int_t ngx_http_usage_sync_address(ngx_conf_t *cf,
    ngx_http_usage_sync_conf_t *sc, ngx_str_t *value);
static ngx_int_t ngx_http_usage_sync_time(ngx_conf_t *cf, ngx_str_t *value,
    size_t skip, ngx_msec_t *ms);
static ngx_int_t ngx_http_usage_sync_link(ngx_conf_t *cf,
    ngx_http_usage_sync_conf_t *sc);
static ngx_int_t ngx_http_usage_sync_resolve(ngx_conf_t *cf,
    ngx_http_usage_sync_conf_t *sc);
#if (NGX_SSL)
static ngx_int_t ngx_http_usage_sync_tls(ngx_conf_t *cf,
    ngx_http_usage_sync_conf_t *sc);
#endif
static void ngx_http_usage_sync_tick(ngx_event_t *ev);
static ngx_uint_t ngx_http_usage_sync_drain(ngx_http_usage_sync_t *sync);
static ngx_uint_t ngx_http_usage_sync_claim(ngx_http_usage_sync_t *sync);
static void ngx_http_usage_sync_release(ngx_http_usage_sync_t *sync);
static void ngx_http_usage_sync_check(ngx_http_usage_sync_t *sync);
static void ngx_http_usage_sync_checked(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static void ngx_http_usage_sync_propose(ngx_http_usage_sync_t *sync);
static void ngx_http_usage_sync_ask(ngx_http_usage_sync_t *sync,
    ngx_uint_t proposing, int argc, const char **argv, size_t *lens);
static ngx_int_t ngx_http_usage_sync_epoch_reply(ngx_http_usage_sync_t *sync,
    redisReply *reply, const char *command);
static void ngx_http_usage_sync_verify(ngx_http_usage_sync_t *sync,
    uint64_t epoch);
static void ngx_http_usage_sync_verified(ngx_http_usage_redis_t *rd,
    void *data, redisReply *reply);
static void ngx_http_usage_sync_new_epoch(ngx_http_usage_sync_t *sync,
    uint64_t epoch, ngx_uint_t intact);
static void ngx_http_usage_sync_up(ngx_http_usage_redis_t *rd);
static void ngx_http_usage_sync_down(ngx_http_usage_redis_t *rd);
static void ngx_http_usage_sync_set_state(ngx_http_usage_sync_t *sync,
    ngx_uint_t state);


/* the workers' sync objects, for exit_process */
static ngx_array_t  *ngx_http_usage_syncs;


/*
 * usage_sync zone=NAME redis=HOST:PORT [user=] [password=] [stream=]
 *            [name=] [interval=] [timeout=] [connect_timeout=]
 *            [tls] [tls_verify=on|off] [tls_trusted=FILE]
 */

char *
ngx_http_usage_sync(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_usage_main_conf_t *umcf = conf;

    ngx_str_t                   *value;
    ngx_uint_t                   i;
    ngx_http_usage_sync_conf_t  *sc, **psc;

    sc = ngx_pcalloc(cf->pool, sizeof(ngx_http_usage_sync_conf_t));
    if (sc == NULL) {
        return NGX_CONF_ERROR;
    }

    sc->file = cf->conf_file->file.name;
    sc->line = cf->conf_file->line;

    ngx_str_set(&sc->stream, "usage:events");
    sc->name = cf->cycle->hostname;
    sc->interval = 1000;
    sc->snapshots.interval = 60000;
    sc->ack_timeout = 1000;
    sc->streaming.maxlen = 1000000;
    sc->streaming.batch = 256;
    sc->redis.timeout = 2000;
    sc->redis.connect_timeout = 2000;
    sc->redis.resolver_timeout = 5000;
    sc->redis.backoff_min = 100;
    sc->redis.backoff_max = 5000;
    sc->redis.reply_max = 64 * 1024 * 1024;
    sc->redis.elements_max = 65536;
#if (NGX_SSL)
    sc->redis.ssl_verify = 1;
#endif

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_http_usage_sync_param(cf, &value[i], sc) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (sc->zone_name.len == 0 || sc->redis.host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "usage_sync needs zone= and redis=");
        return NGX_CONF_ERROR;
    }

    sc->redis.client_name.len = sizeof("usage:") - 1 + sc->name.len;
    sc->redis.client_name.data = ngx_pnalloc(cf->pool,
                                             sc->redis.client_name.len);
    if (sc->redis.client_name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(sc->redis.client_name.data, "usage:%V", &sc->name);

    /* the snapshot's chunk keys take the stream's name and 128 more */
    if (sc->stream.len > NGX_HTTP_USAGE_SYNC_STREAM_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "usage_sync: stream= takes %d bytes at most",
                           NGX_HTTP_USAGE_SYNC_STREAM_MAX);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_usage_sync_key(cf, &sc->epoch_key, &sc->stream, ":epoch")
           != NGX_OK
        || ngx_http_usage_sync_key(cf, &sc->snapshots.key, &sc->stream,
                                   ":snapshot")
           != NGX_OK
        || ngx_http_usage_sync_key(cf, &sc->snapshots.lease, &sc->stream,
                                   ":snapshot:lease")
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* the name is the zone's as usage_zone declares it, size unknown here */
    sc->shm_zone = ngx_shared_memory_add(cf, &sc->zone_name, 0,
                                         &ngx_http_usage_module);
    if (sc->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (umcf->syncs.elts == NULL
        && ngx_array_init(&umcf->syncs, cf->pool, 2,
                          sizeof(ngx_http_usage_sync_conf_t *))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    psc = ngx_array_push(&umcf->syncs);
    if (psc == NULL) {
        return NGX_CONF_ERROR;
    }

    *psc = sc;

    return NGX_CONF_OK;
}


/* the parameter is prefix<value>: v is the value */
#define ngx_http_usage_sync_is(prefix)                                       \
    (value->len >= sizeof(prefix) - 1                                        \
     && ngx_strncmp(value->data, prefix, sizeof(prefix) - 1) == 0            \
     && (v.data = value->data + sizeof(prefix) - 1,                          \
         v.len = value->len - (sizeof(prefix) - 1), 1))


static ngx_int_t
ngx_http_usage_sync_param(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_sync_conf_t *sc)
{
    ngx_int_t  rc;
    ngx_str_t  v;

    if (ngx_http_usage_sync_is("zone=")) {
        sc->zone_name = v;
        return v.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_http_usage_sync_is("redis=")) {
        return ngx_http_usage_sync_address(cf, sc, &v);
    }

    if (ngx_http_usage_sync_is("user=")) {
        sc->redis.user = v;
        return NGX_OK;
    }

    if (ngx_http_usage_sync_is("password=")) {
        sc->redis.password = v;
        return NGX_OK;
    }

    if (ngx_http_usage_sync_is("stream=")) {
        sc->stream = v;
        return v.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_http_usage_sync_is("name=")) {
        sc->name = v;
        return v.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_http_usage_sync_is("interval=")) {
        return ngx_http_usage_sync_time(cf, value, 9, &sc->interval);
    }

    rc = ngx_http_usage_sync_param_stream(cf, value, sc);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (ngx_http_usage_sync_is("timeout=")) {
        return ngx_http_usage_sync_time(cf, value, 8, &sc->redis.timeout);
    }

    if (ngx_http_usage_sync_is("connect_timeout=")) {
        return ngx_http_usage_sync_time(cf, value, 16,
                                        &sc->redis.connect_timeout);
    }

#if (NGX_SSL)
    if (value->len == 3 && ngx_strncmp(value->data, "tls", 3) == 0) {
        sc->tls = 1;
        return NGX_OK;
    }

    if (ngx_http_usage_sync_is("tls_verify=")) {
        if (v.len == 3 && ngx_strncmp(v.data, "off", 3) == 0) {
            sc->redis.ssl_verify = 0;
            return NGX_OK;
        }

        if (v.len == 2 && ngx_strncmp(v.data, "on", 2) == 0) {
            sc->redis.ssl_verify = 1;
            return NGX_OK;
        }
    }

    if (ngx_http_usage_sync_is("tls_trusted=")) {
        sc->tls_trusted = v;
        return v.len ? NGX_OK : NGX_ERROR;
    }
#endif

    return ngx_http_usage_sync_invalid(cf, value);
}


/*
 * What is shipped, and how: buffer= maxlen= batch= replicas= ack=
 * ack_timeout= snapshot=.  NGX_DECLINED: none of them.
 */

static ngx_int_t
ngx_http_usage_sync_param_stream(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_usage_sync_conf_t *sc)
{
    ngx_str_t  v;

    if (ngx_http_usage_sync_is("buffer=")) {
        sc->buffer = ngx_parse_size(&v);
        return (sc->buffer == (size_t) NGX_ERROR || sc->buffer == 0)
               ? ngx_http_usage_sync_invalid(cf, value) : NGX_OK;
    }

    if (ngx_http_usage_sync_is("maxlen=")) {
        sc->streaming.maxlen = ngx_atoi(v.data, v.len);
        return (sc->streaming.maxlen == (ngx_uint_t) NGX_ERROR
                || sc->streaming.maxlen == 0)
               ? ngx_http_usage_sync_invalid(cf, value) : NGX_OK;
    }

    if (ngx_http_usage_sync_is("batch=")) {
        sc->streaming.batch = ngx_atoi(v.data, v.len);
        return (sc->streaming.batch == (ngx_uint_t) NGX_ERROR
                || sc->streaming.batch == 0
                || sc->streaming.batch > NGX_HTTP_USAGE_STREAM_BATCH_MAX)
               ? ngx_http_usage_sync_invalid(cf, value) : NGX_OK;
    }

    if (ngx_http_usage_sync_is("replicas=")) {
        sc->streaming.replicas = ngx_atoi(v.data, v.len);
        return (sc->streaming.replicas == (ngx_uint_t) NGX_ERROR
                || sc->streaming.replicas > NGX_HTTP_USAGE_STREAM_REPLICAS)
               ? ngx_http_usage_sync_invalid(cf, value) : NGX_OK;
    }

    if (ngx_http_usage_sync_is("ack=")) {
        if (v.len == 5 && ngx_strncmp(v.data, "redis", 5) == 0) {
            sc->streaming.ack = 1;
            return NGX_OK;
        }

        if (v.len == 5 && ngx_strncmp(v.data, "local", 5) == 0) {
            sc->streaming.ack = 0;
            return NGX_OK;
        }

        return ngx_http_usage_sync_invalid(cf, value);
    }

    if (ngx_http_usage_sync_is("ack_timeout=")) {
        return ngx_http_usage_sync_time(cf, value, 12, &sc->ack_timeout);
    }

    if (ngx_http_usage_sync_is("snapshot=")) {
        if (v.len == 3 && ngx_strncmp(v.data, "off", 3) == 0) {
            sc->snapshots.interval = 0;
            return NGX_OK;
        }

        return ngx_http_usage_sync_time(cf, value, 9,
                                        &sc->snapshots.interval);
    }

    return NGX_DECLINED;
}


#undef ngx_http_usage_sync_is


/* <stream><suffix>: a key of the sync's beside the stream */

static ngx_int_t
ngx_http_usage_sync_key(ngx_conf_t *cf, ngx_str_t *key, ngx_str_t *stream,
    const char *suffix)
{
    size_t  len;

    len = ngx_strlen(suffix);

    key->len = stream->len + len;
    key->data = ngx_pnalloc(cf->pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(key->data, stream->data, stream->len), suffix, len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_sync_invalid(ngx_conf_t *cf, ngx_str_t *value)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" of usage_sync", value);
    return NGX_ERROR;
}


/* host:port; a name is resolved when the configuration is complete */

static ngx_int_t
ngx_http_usage_sync_address(ngx_conf_t *cf, ngx_http_usage_sync_conf_t *sc,
    ngx_str_t *value)
{
    ngx_url_t  u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *value;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.no_port) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "usage_sync: redis=\"%V\" is not host:port%s%s",
                           value, u.err ? ": " : "", u.err ? u.err : "");
        return NGX_ERROR;
    }

    sc->address = *value;
    sc->redis.port = u.port;
    sc->redis.addrs = u.addrs;
    sc->redis.naddrs = u.naddrs;

    /* null-terminated, for SNI */
    sc->redis.host.data = ngx_pnalloc(cf->pool, u.host.len + 1);
    if (sc->redis.host.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(sc->redis.host.data, u.host.data, u.host.len);
    sc->redis.host.data[u.host.len] = '\0';
    sc->redis.host.len = u.host.len;

#if (NGX_SSL)
    sc->redis.ssl_name = (u.naddrs == 0);
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_sync_time(ngx_conf_t *cf, ngx_str_t *value, size_t skip,
    ngx_msec_t *ms)
{
    ngx_str_t   v;
    ngx_msec_t  t;

    v.data = value->data + skip;
    v.len = value->len - skip;

    t = ngx_parse_time(&v, 0);

    if (t == (ngx_msec_t) NGX_ERROR || t == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "usage_sync: invalid time in \"%V\"", value);
        return NGX_ERROR;
    }

    *ms = t;

    return NGX_OK;
}


/* postconfiguration: each usage_sync finds its zone, its addresses, TLS */

ngx_int_t
ngx_http_usage_sync_init_conf(ngx_conf_t *cf)
{
    ngx_uint_t                    i;
    ngx_http_usage_sync_conf_t  **sc;
    ngx_http_usage_main_conf_t   *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_usage_module);

    sc = umcf->syncs.elts;

    for (i = 0; i < umcf->syncs.nelts; i++) {
        if (ngx_http_usage_sync_link(cf, sc[i]) != NGX_OK
            || ngx_http_usage_sync_resolve(cf, sc[i]) != NGX_OK)
        {
            return NGX_ERROR;
        }

#if (NGX_SSL)
        if (sc[i]->tls && ngx_http_usage_sync_tls(cf, sc[i]) != NGX_OK) {
            return NGX_ERROR;
        }
#endif
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_sync_link(ngx_conf_t *cf, ngx_http_usage_sync_conf_t *sc)
{
    ngx_http_usage_zone_t  *zone;

    zone = sc->shm_zone->data;

    if (zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "usage zone \"%V\" is unknown in %V:%ui: declare it "
                      "with \"usage_zone zone=%V:<size>;\" in the http "
                      "block", &sc->zone_name, &sc->file, sc->line,
                      &sc->zone_name);
        return NGX_ERROR;
    }

    if (zone->sync) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "usage zone \"%V\" has a usage_sync already, "
                      "again in %V:%ui", &sc->zone_name, &sc->file,
                      sc->line);
        return NGX_ERROR;
    }

    if (sc->buffer == 0) {
        sc->buffer = zone->size / 4;

    } else if (sc->buffer > zone->size / 2) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "usage_sync buffer=%uz in %V:%ui is more than half "
                      "of zone \"%V\" (%uz bytes): the store would have "
                      "no room", sc->buffer, &sc->file, sc->line,
                      &sc->zone_name, zone->size);
        return NGX_ERROR;
    }

    zone->sync = sc;
    zone->ship_max = sc->buffer;
    zone->ack_timeout = sc->streaming.ack ? sc->ack_timeout : 0;

    sc->streaming.key = sc->stream;
    sc->streaming.name = sc->name;

    /* a blocked read, and a WAIT for the replicas, answer within the
     * reply timeout */
    sc->streaming.block = ngx_max(sc->redis.timeout / 2, 1);

    return NGX_OK;
}


/*
 * A literal address is used as it is.  A name goes to the resolver of the
 * http block on every connect, so that a failover that moves the name is
 * followed; without one, it is resolved here, once (the master may block
 * on it, a worker never does), with a warning.
 */

static ngx_int_t
ngx_http_usage_sync_resolve(ngx_conf_t *cf, ngx_http_usage_sync_conf_t *sc)
{
    ngx_url_t                  u;
    ngx_http_core_loc_conf_t  *clcf;

    if (sc->redis.naddrs) {
        return NGX_OK;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->resolver && clcf->resolver->connections.nelts) {
        sc->redis.resolver = clcf->resolver;

        if (clcf->resolver_timeout != NGX_CONF_UNSET_MSEC) {
            sc->redis.resolver_timeout = clcf->resolver_timeout;
        }

        return NGX_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = sc->address;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "usage_sync: redis host \"%V\" in %V:%ui could not be "
                      "resolved%s%s", &sc->redis.host, &sc->file, sc->line,
                      u.err ? ": " : "", u.err ? u.err : "");
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                  "usage_sync: no \"resolver\" in the http block: redis "
                  "host \"%V\" is resolved once, not again on reconnect",
                  &sc->redis.host);

    sc->redis.addrs = u.addrs;
    sc->redis.naddrs = u.naddrs;

    return NGX_OK;
}


#if (NGX_SSL)

static ngx_int_t
ngx_http_usage_sync_tls(ngx_conf_t *cf, ngx_http_usage_sync_conf_t *sc)
{
    ngx_ssl_t           *ssl;
    ngx_pool_cleanup_t  *cln;

    static ngx_str_t  system = ngx_string("/etc/ssl/certs/ca-certificates.crt");

    ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (ssl == NULL) {
        return NGX_ERROR;
    }

    ssl->log = cf->log;

    if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ssl;

    if (sc->redis.ssl_verify
        && ngx_ssl_trusted_certificate(cf, ssl,
                                       sc->tls_trusted.len ? &sc->tls_trusted
                                                           : &system,
                                       4)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    sc->redis.ssl = ssl;

    return NGX_OK;
}

#endif


/* init_process: every worker ticks for every zone with a usage_sync */

void
ngx_http_usage_sync_init_worker(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_http_usage_sync_t        *sync;
    ngx_http_usage_zone_t        *zone;
    ngx_http_usage_sync_conf_t  **sc;
    ngx_http_usage_main_conf_t   *umcf;

    umcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_usage_module);

    if (umcf == NULL || umcf->syncs.nelts == 0) {
        return;
    }

    ngx_http_usage_syncs = ngx_array_create(cycle->pool, umcf->syncs.nelts,
                                            sizeof(ngx_http_usage_sync_t));
    if (ngx_http_usage_syncs == NULL) {
        return;
    }

    sc = umcf->syncs.elts;

    for (i = 0; i < umcf->syncs.nelts; i++) {
        zone = sc[i]->shm_zone->data;

        if (zone->sh == NULL) {
            continue;
        }

        sync = ngx_array_push(ngx_http_usage_syncs);

        ngx_memzero(sync, sizeof(ngx_http_usage_sync_t));

        sync->conf = sc[i];
        sync->zone = zone;
        sync->shm = ngx_http_usage_store_sync(zone);
        sync->generation = sync->shm->generation;

        ngx_http_usage_redis_init(&sync->redis, &sc[i]->redis, cycle->log);
        sync->redis.ready = ngx_http_usage_sync_up;
        sync->redis.down = ngx_http_usage_sync_down;
        sync->redis.data = sync;

        if (ngx_http_usage_stream_init(&sync->stream, &sc[i]->streaming,
                                       zone, &sync->redis, &sc[i]->redis,
                                       cycle->pool, cycle->log)
            != NGX_OK)
        {
            ngx_http_usage_syncs->nelts--;
            continue;
        }

        ngx_http_usage_snapshot_init(&sync->snapshot, &sc[i]->snapshots,
                                     &sync->shm->snapshots, &sc[i]->stream,
                                     &sc[i]->epoch_key, zone, &sync->redis,
                                     &sync->stream, cycle->log);

        sync->tick.handler = ngx_http_usage_sync_tick;
        sync->tick.data = sync;
        sync->tick.log = cycle->log;
        sync->tick.cancelable = 1;

        /* spread the workers' first ticks, so that they do not race */
        ngx_add_timer(&sync->tick, ngx_random() % NGX_HTTP_USAGE_SYNC_TICK);
    }
}


/* exit_process: no socket may be left open, and the lease goes */

void
ngx_http_usage_sync_exit_worker(ngx_cycle_t *cycle)
{
    ngx_uint_t              i;
    ngx_http_usage_sync_t  *sync;

    if (ngx_http_usage_syncs == NULL) {
        return;
    }

    sync = ngx_http_usage_syncs->elts;

    for (i = 0; i < ngx_http_usage_syncs->nelts; i++) {
        ngx_http_usage_sync_release(&sync[i]);
    }
}


static void
ngx_http_usage_sync_tick(ngx_event_t *ev)
{
    ngx_http_usage_sync_t  *sync;

    sync = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        if (ngx_http_usage_sync_drain(sync)) {
            /* the worker stays until the queue is in Redis */
            ev->cancelable = 0;
            ngx_add_timer(ev, NGX_HTTP_USAGE_SYNC_DRAIN_TICK);
            return;
        }

        ev->cancelable = 1;
        ngx_http_usage_sync_release(sync);
        return;
    }

    if (sync->owner && sync->shm->generation != sync->generation) {
        /* a reload: a worker of the new cycle takes over */
        ngx_http_usage_sync_release(sync);

    } else if (sync->owner || ngx_http_usage_sync_claim(sync)) {
        sync->shm->beat = ngx_current_msec;

        ngx_http_usage_redis_start(&sync->redis);
        ngx_http_usage_stream_start(&sync->stream);

        if (sync->redis.state == NGX_HTTP_USAGE_REDIS_READY
            && !sync->checking
            && ngx_current_msec - sync->checked >= sync->conf->interval)
        {
            ngx_http_usage_sync_check(sync);
        }

        if (sync->epoch_ok) {
            ngx_http_usage_snapshot_tick(&sync->snapshot);
        }
    }

    /* a holder with a queue is not let exit before its next tick, which
     * ships the queue (sync_drain()) */
    ev->cancelable = !(sync->owner
                       && ngx_http_usage_store_ship_pending(sync->zone, 0));

    ngx_add_timer(ev, NGX_HTTP_USAGE_SYNC_TICK);
}


/*
 * A graceful stop (QUIT): the holder ships what is queued before it lets
 * go, while Redis works and for DRAIN ms at most, so that an instance
 * taken out of the fleet leaves its events in it.  Not on a reload: a
 * worker of the new cycle takes the queue over, it is in the zone.
 */

static ngx_uint_t
ngx_http_usage_sync_drain(ngx_http_usage_sync_t *sync)
{
    if (!sync->owner || ngx_terminate
        || sync->shm->generation != sync->generation
        || sync->redis.state != NGX_HTTP_USAGE_REDIS_READY)
    {
        return 0;
    }

    if (sync->drain_until == 0) {
        sync->drain_until = ngx_current_msec + NGX_HTTP_USAGE_SYNC_DRAIN;
    }

    sync->shm->beat = ngx_current_msec;

    if (!ngx_http_usage_store_ship_pending(sync->zone, 0)) {
        return 0;
    }

    if ((ngx_msec_int_t) (sync->drain_until - ngx_current_msec) <= 0) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "usage sync: zone \"%V\" exits with events Redis "
                      "did not take in %d ms: they stay in this instance",
                      &sync->conf->zone_name, NGX_HTTP_USAGE_SYNC_DRAIN);
        return 0;
    }

    ngx_http_usage_stream_flush(&sync->stream);

    return 1;
}


/* the lease: free, its holder gone or stalled, or of a replaced cycle */

static ngx_uint_t
ngx_http_usage_sync_claim(ngx_http_usage_sync_t *sync)
{
    ngx_pid_t                   pid;
    ngx_http_usage_sync_shm_t  *shm;

    shm = sync->shm;

    if (shm->generation != sync->generation) {
        return 0;                   /* this worker's cycle was replaced */
    }

    pid = (ngx_pid_t) shm->owner;

    if (pid != 0
        && !(kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH)
        && shm->owner_generation == sync->generation
        && ngx_current_msec - shm->beat < NGX_HTTP_USAGE_SYNC_STALE)
    {
        return 0;
    }

    if (!ngx_atomic_cmp_set(&shm->owner, pid, ngx_pid)) {
        return 0;
    }

    shm->owner_generation = sync->generation;
    shm->beat = ngx_current_msec;
    sync->owner = 1;

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "usage sync: this worker syncs zone \"%V\" with redis %V",
                  &sync->conf->zone_name, &sync->conf->address);

    return 1;
}


static void
ngx_http_usage_sync_release(ngx_http_usage_sync_t *sync)
{
    if (!sync->owner) {
        return;
    }

    sync->owner = 0;

    ngx_http_usage_stream_stop(&sync->stream);
    ngx_http_usage_redis_stop(&sync->redis);

    (void) ngx_atomic_cmp_set(&sync->shm->owner, ngx_pid, 0);
}


static void
ngx_http_usage_sync_check(ngx_http_usage_sync_t *sync)
{
    size_t       lens[2];
    const char  *argv[2];

    argv[0] = "GET";
    lens[0] = 3;
    argv[1] = (const char *) sync->conf->epoch_key.data;
    lens[1] = sync->conf->epoch_key.len;

    ngx_http_usage_sync_ask(sync, 0, 2, argv, lens);
}


/* SET <stream>:epoch <random> NX GET: ours, unless another is there */

static void
ngx_http_usage_sync_propose(ngx_http_usage_sync_t *sync)
{
    u_char       hex[NGX_HTTP_USAGE_ORIGIN_HEX];
    size_t       lens[5];
    const char  *argv[5];

    do {
        if (ngx_http_usage_random_bytes(&sync->proposed, sizeof(uint64_t))
            != NGX_OK)
        {
            sync->proposed = ngx_http_usage_random();
        }
    } while (sync->proposed == 0);

    (void) ngx_http_usage_origin_hex(hex, sync->proposed);

    argv[0] = "SET"; lens[0] = 3;
    argv[1] = (const char *) sync->conf->epoch_key.data;
    lens[1] = sync->conf->epoch_key.len;
    argv[2] = (const char *) hex; lens[2] = NGX_HTTP_USAGE_ORIGIN_HEX;
    argv[3] = "NX"; lens[3] = 2;
    argv[4] = "GET"; lens[4] = 3;

    ngx_http_usage_sync_ask(sync, 1, 5, argv, lens);
}


/* one question about the epoch at a time: GET, or SET NX GET */

static void
ngx_http_usage_sync_ask(ngx_http_usage_sync_t *sync, ngx_uint_t proposing,
    int argc, const char **argv, size_t *lens)
{
    ngx_http_usage_fleet_status_t  fs;

    if (ngx_http_usage_store_fleet_status(sync->zone, &fs) == NGX_OK) {
        sync->asked_ms = fs.read_ms;
        sync->asked_seq = fs.read_seq;
    }

    if (ngx_http_usage_redis_send(&sync->redis, argc, argv, lens,
                                  ngx_http_usage_sync_checked, sync)
        == NGX_OK)
    {
        sync->checking = 1;
        sync->proposing = proposing;
        sync->checked = ngx_current_msec;
    }
}


static void
ngx_http_usage_sync_checked(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    ngx_uint_t              proposing;
    ngx_http_usage_sync_t  *sync;

    sync = data;
    sync->checking = 0;
    proposing = sync->proposing;
    sync->proposing = 0;

    if (reply == NULL) {
        return;                     /* the connection is gone: down() */
    }

    if (reply->type == REDIS_REPLY_NIL && !proposing) {
        /* Redis lost it: the first instance to see it writes a new one */
        ngx_http_usage_sync_propose(sync);
        return;
    }

    if (ngx_http_usage_sync_epoch_reply(sync, reply,
                                        proposing ? "SET NX GET" : "GET")
        == NGX_OK)
    {
        sync->shm->rtt = rd->rtt;
    }
}


/* nil (SET NX GET only): the proposed epoch is the one now */

static ngx_int_t
ngx_http_usage_sync_epoch_reply(ngx_http_usage_sync_t *sync,
    redisReply *reply, const char *command)
{
    u_char                         *p;
    uint64_t                        epoch;
    ngx_http_usage_redis_t         *rd;
    ngx_http_usage_fleet_status_t   fs;

    rd = &sync->redis;

    if (reply->type == REDIS_REPLY_ERROR) {
        /* before 7.0, SET cannot take NX and GET together */
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "usage sync: redis %V answered %s of \"%V\" with: "
                      "%*s (usage_sync needs Redis 7.0 or later)",
                      &rd->name, command, &sync->conf->epoch_key,
                      (size_t) reply->len, reply->str);
        ngx_http_usage_redis_fail(rd, NULL);
        return NGX_ERROR;
    }

    if (reply->type == REDIS_REPLY_NIL) {
        epoch = sync->proposed;

    } else if (reply->type != REDIS_REPLY_STRING
               || ngx_http_usage_origin_parse((u_char *) reply->str,
                                              reply->len, &epoch)
                  != NGX_OK)
    {
        p = (u_char *) (reply->type == REDIS_REPLY_STRING ? "another value"
                                                          : "no string");
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "usage sync: redis %V holds %s at \"%V\", not an "
                      "epoch of usage_sync: is the key another "
                      "program's?", &rd->name, p, &sync->conf->epoch_key);
        ngx_http_usage_redis_fail(rd, NULL);
        return NGX_ERROR;
    }

    if (ngx_http_usage_store_fleet_status(sync->zone, &fs) != NGX_OK) {
        return NGX_OK;
    }

    if (fs.epoch == 0 || fs.epoch == epoch) {
        if (fs.epoch == epoch) {
            sync->verified_ms = sync->asked_ms;
            sync->verified_seq = sync->asked_seq;
        }

        ngx_http_usage_sync_new_epoch(sync, epoch, 1);
        return NGX_OK;
    }

    ngx_http_usage_sync_verify(sync, epoch);

    return NGX_OK;
}


/*
 * Another epoch, or none: the stream is lost, unless only the epoch's key
 * went (deleted, or evicted by an allkeys-* policy) and the stream still
 * holds the entry the zone had read at its last good check.
 * XRANGE <stream> <position> <position> tells.
 */

static void
ngx_http_usage_sync_verify(ngx_http_usage_sync_t *sync, uint64_t epoch)
{
    u_char       pos[2 * NGX_INT64_LEN + 2];
    size_t       lens[4];
    const char  *argv[4];

    if (sync->verified_ms == 0 && sync->verified_seq == 0) {
        ngx_http_usage_sync_new_epoch(sync, epoch, 0);
        return;
    }

    sync->candidate = epoch;

    argv[0] = "XRANGE"; lens[0] = 6;
    argv[1] = (const char *) sync->conf->stream.data;
    lens[1] = sync->conf->stream.len;
    argv[2] = (const char *) pos;
    lens[2] = ngx_sprintf(pos, "%uL-%uL", sync->verified_ms,
                          sync->verified_seq) - pos;
    argv[3] = argv[2]; lens[3] = lens[2];

    if (ngx_http_usage_redis_send(&sync->redis, 4, argv, lens,
                                  ngx_http_usage_sync_verified, sync)
        == NGX_OK)
    {
        sync->checking = 1;
    }
}


static void
ngx_http_usage_sync_verified(ngx_http_usage_redis_t *rd, void *data,
    redisReply *reply)
{
    ngx_http_usage_sync_t  *sync;

    sync = data;
    sync->checking = 0;

    if (reply == NULL) {
        return;                     /* asked again on the next connect */
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_usage_redis_unexpected(rd, "XRANGE", reply);
        return;
    }

    ngx_http_usage_sync_new_epoch(sync, sync->candidate, reply->elements > 0);
}


/* intact: the stream is the one the zone read (or the zone read none) */

static void
ngx_http_usage_sync_new_epoch(ngx_http_usage_sync_t *sync, uint64_t epoch,
    ngx_uint_t intact)
{
    uint64_t                 previous;
    ngx_int_t                rc;
    ngx_http_usage_redis_t  *rd;

    rd = &sync->redis;

    rc = ngx_http_usage_store_epoch(sync->zone, epoch, intact,
                                    ngx_http_usage_now(), &previous);

    if (rc != NGX_DECLINED && !sync->epoch_ok) {
        /* a new zone learns at once where in the stream it starts */
        sync->epoch_ok = 1;
        ngx_http_usage_snapshot_tick(&sync->snapshot);
    }

    if (rc == NGX_DONE) {
        sync->verified_ms = 0;
        sync->verified_seq = 0;

        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "usage sync: redis %V lost stream \"%V\" (epoch "
                      "%016uxL, now %016uxL): zone \"%V\" reads it again "
                      "and publishes its last %d s of events again",
                      &rd->name, &sync->conf->stream, previous, epoch,
                      &sync->conf->zone_name,
                      NGX_HTTP_USAGE_REPUBLISH / 1000);

        ngx_http_usage_stream_lost(&sync->stream);
        return;
    }

    if (previous && previous != epoch) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "usage sync: redis %V had lost only the epoch of "
                      "stream \"%V\", which still holds what zone \"%V\" "
                      "read: epoch %016uxL from now on",
                      &rd->name, &sync->conf->stream,
                      &sync->conf->zone_name, epoch);
    }
}


static void
ngx_http_usage_sync_up(ngx_http_usage_redis_t *rd)
{
    ngx_http_usage_sync_t  *sync;

    sync = rd->data;

    (void) ngx_atomic_fetch_add(&sync->shm->connects, 1);

    if (sync->shm->state != NGX_HTTP_USAGE_SYNC_OK) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "usage sync: zone \"%V\" connected to redis %V",
                      &sync->conf->zone_name, &rd->name);
    }

    ngx_http_usage_sync_set_state(sync, NGX_HTTP_USAGE_SYNC_OK);

    /* the epoch first: a lost stream is known before anything is read */
    sync->checking = 0;
    sync->epoch_ok = 0;
    ngx_http_usage_sync_propose(sync);

    ngx_http_usage_stream_up(&sync->stream);
}


static void
ngx_http_usage_sync_down(ngx_http_usage_redis_t *rd)
{
    ngx_http_usage_sync_t  *sync;

    sync = rd->data;

    sync->checking = 0;
    sync->epoch_ok = 0;
    ngx_http_usage_stream_down(&sync->stream);
    ngx_http_usage_snapshot_down(&sync->snapshot);

    /* a release at exit or on a reload is not a failure */
    if (rd->stopped) {
        return;
    }

    (void) ngx_atomic_fetch_add(&sync->shm->failures, 1);

    if (sync->shm->state != NGX_HTTP_USAGE_SYNC_DEGRADED) {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "usage sync: zone \"%V\" has no working redis %V: "
                      "degraded, events stay in this instance until it "
                      "works",
                      &sync->conf->zone_name, &sync->conf->address);
    }

    ngx_http_usage_sync_set_state(sync, NGX_HTTP_USAGE_SYNC_DEGRADED);
}


static void
ngx_http_usage_sync_set_state(ngx_http_usage_sync_t *sync, ngx_uint_t state)
{
    ngx_time_t  *tp;

    if (sync->shm->state == state) {
        return;
    }

    tp = ngx_timeofday();

    /* one line when it goes down, not one per attempt to reconnect */
    sync->redis.quiet = (state == NGX_HTTP_USAGE_SYNC_DEGRADED);

    sync->shm->state = state;
    sync->shm->since = (ngx_atomic_uint_t) tp->sec * 1000 + tp->msec;
}


ngx_int_t
ngx_http_usage_sync_status(ngx_http_usage_zone_t *zone,
    ngx_http_usage_sync_status_t *st)
{
    ngx_http_usage_sync_shm_t  *shm;

    if (zone->sync == NULL || !ngx_http_usage_store_ready(zone)) {
        return NGX_DECLINED;
    }

    shm = ngx_http_usage_store_sync(zone);

    st->conf = zone->sync;
    st->state = shm->state;

    if (st->state == NGX_HTTP_USAGE_SYNC_OK
        && ngx_http_usage_store_booting(zone))
    {
        st->state = NGX_HTTP_USAGE_SYNC_BOOTSTRAPPING;
    }
    st->owner = (ngx_pid_t) shm->owner;
    st->rtt = shm->rtt;
    st->connects = shm->connects;
    st->failures = shm->failures;
    st->snapshots_written = shm->snapshots.written;
    st->snapshot_failures = shm->snapshots.failures;
    st->trimmed = shm->snapshots.trimmed;
    st->since = shm->since;

    return NGX_OK;
}


const char *
ngx_http_usage_sync_state_name(ngx_uint_t state)
{
    switch (state) {
    case NGX_HTTP_USAGE_SYNC_OK:
        return "ok";
    case NGX_HTTP_USAGE_SYNC_DEGRADED:
        return "degraded";
    case NGX_HTTP_USAGE_SYNC_BOOTSTRAPPING:
        return "bootstrapping";
    default:
        return "connecting";
    }
}
