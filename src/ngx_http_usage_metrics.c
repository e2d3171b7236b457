
/*
 * usage_metrics: the store's counters and the tracked traffic in the
 * Prometheus text exposition format (version 0.0.4).
 *
 * Tracked traffic is counted in the log phase of every request of a
 * tracked location, so the counting must cost next to nothing: a few
 * atomic additions to counters in the zone's shared context, no lock, no
 * allocation.  Labels are bounded: a method out of eight, a status class
 * out of five, the zone's name.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_store.h"
#include "ngx_http_usage_query.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_time.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_reply.h"
#include "ngx_http_usage_scope.h"
#include "ngx_http_usage_sync.h"
#include "ngx_http_usage_metrics.h"


/* how a store metric's field is read: its C type in the stats struct */
#define NGX_HTTP_USAGE_METRIC_UINT64  0
#define NGX_HTTP_USAGE_METRIC_UINT    1
#define NGX_HTTP_USAGE_METRIC_SIZE    2
#define NGX_HTTP_USAGE_METRIC_MS      3     /* int64_t ms, shown in seconds */


typedef struct {
    const char                  *name;
    const char                  *type;
    const char                  *help;
    size_t                       offset;     /* in ngx_http_usage_stats_t */
    ngx_uint_t                   kind;
} ngx_http_usage_metric_t;


static ngx_int_t ngx_http_usage_metrics_not_allowed(ngx_http_request_t *r);
static void ngx_http_usage_metrics_stats(ngx_http_usage_out_t *out,
    ngx_str_t *zone, ngx_http_usage_stats_t *st);
static uint64_t ngx_http_usage_metric_value(ngx_http_usage_stats_t *st,
    ngx_http_usage_metric_t *m);
static void ngx_http_usage_metrics_requests(ngx_http_usage_out_t *out,
    ngx_str_t *zone, ngx_http_usage_traffic_t *tr);
static void ngx_http_usage_metrics_latency(ngx_http_usage_out_t *out,
    ngx_str_t *zone, ngx_http_usage_traffic_t *tr);
static void ngx_http_usage_metrics_nginx(ngx_http_usage_out_t *out);
static void ngx_http_usage_metric_plain(ngx_http_usage_out_t *out,
    const char *name, const char *type, const char *help, uint64_t value);
static void ngx_http_usage_metrics_fleet(ngx_http_usage_out_t *out,
    ngx_str_t *name, ngx_http_usage_zone_t *zone);
static void ngx_http_usage_metrics_sync(ngx_http_usage_out_t *out,
    ngx_str_t *name, ngx_http_usage_zone_t *zone);
static void ngx_http_usage_metric(ngx_http_usage_out_t *out,
    const char *name, const char *type, const char *help, ngx_str_t *zone,
    uint64_t value);
static void ngx_http_usage_metric_ms(ngx_http_usage_out_t *out,
    const char *name, const char *help, ngx_str_t *zone, ngx_msec_t ms);
static void ngx_http_usage_metric_head(ngx_http_usage_out_t *out,
    const char *name, const char *type, const char *help);
static void ngx_http_usage_metric_zone(ngx_http_usage_out_t *out,
    ngx_str_t *zone);
static void ngx_http_usage_metric_seconds(ngx_http_usage_out_t *out,
    uint64_t ms);


static const char  *ngx_http_usage_methods[NGX_HTTP_USAGE_METHODS] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"
};


/* upper bounds of the latency buckets, in ms; the last bucket is +Inf */
static ngx_uint_t  ngx_http_usage_latency_le[] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};


/* the store's figures, in the order they are exposed */
static ngx_http_usage_metric_t  ngx_http_usage_metrics_store[] = {

    { "usage_events", "gauge",
      "Events counted in the retention window.",
      offsetof(ngx_http_usage_stats_t, total),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_events_last_hour", "gauge",
      "Events of the current minute and the 60 before it.",
      offsetof(ngx_http_usage_stats_t, last_hour),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_events_stored", "gauge",
      "Raw events stored in the event log.",
      offsetof(ngx_http_usage_stats_t, raw_events),
      NGX_HTTP_USAGE_METRIC_UINT },

    { "usage_events_recorded_total", "counter",
      "Events recorded since the data set began.",
      offsetof(ngx_http_usage_stats_t, recorded),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_events_duplicates_total", "counter",
      "Events posted again with a recorded client id.",
      offsetof(ngx_http_usage_stats_t, duplicates),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_events_evicted_total", "counter",
      "Raw events evicted from the log for room or "
      "max_events (totals keep them).",
      offsetof(ngx_http_usage_stats_t, raw_evicted),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_events_expired_total", "counter",
      "Raw events removed by retention.",
      offsetof(ngx_http_usage_stats_t, raw_expired),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_events_dropped_total", "counter",
      "Events the store could not take.",
      offsetof(ngx_http_usage_stats_t, dropped),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_events_entity_limited_total", "counter",
      "Events refused because their entity reached its "
      "bounds (entity_types, entity_share).",
      offsetof(ngx_http_usage_stats_t, entity_limited),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_store_torn_total", "counter",
      "Changes of the store left half made by a process that died "
      "holding the zone lock.",
      offsetof(ngx_http_usage_stats_t, torn),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_entities", "gauge",
      "Entities with events in the window.",
      offsetof(ngx_http_usage_stats_t, entities),
      NGX_HTTP_USAGE_METRIC_UINT },

    { "usage_event_types", "gauge",
      "Event types held by the store.",
      offsetof(ngx_http_usage_stats_t, event_types),
      NGX_HTTP_USAGE_METRIC_UINT },

    { "usage_buckets", "gauge",
      "Aggregate buckets stored.",
      offsetof(ngx_http_usage_stats_t, buckets),
      NGX_HTTP_USAGE_METRIC_UINT },

    { "usage_buckets_evicted_total", "counter",
      "Aggregate buckets given up for room (lost totals).",
      offsetof(ngx_http_usage_stats_t, buckets_evicted),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_buckets_expired_total", "counter",
      "Aggregate buckets removed by retention.",
      offsetof(ngx_http_usage_stats_t, buckets_expired),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_client_ids", "gauge",
      "Client event ids remembered for idempotency.",
      offsetof(ngx_http_usage_stats_t, ids),
      NGX_HTTP_USAGE_METRIC_UINT },

    { "usage_client_ids_evicted_total", "counter",
      "Client event ids forgotten before their time.",
      offsetof(ngx_http_usage_stats_t, ids_evicted),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_raw_log_bytes", "gauge",
      "Size of the raw event log.",
      offsetof(ngx_http_usage_stats_t, raw_bytes),
      NGX_HTTP_USAGE_METRIC_SIZE },

    { "usage_raw_log_used_bytes", "gauge",
      "Bytes of the raw event log in use.",
      offsetof(ngx_http_usage_stats_t, raw_bytes_used),
      NGX_HTTP_USAGE_METRIC_SIZE },

    { "usage_zone_used_bytes", "gauge",
      "Bytes of the zone's pages in use.",
      offsetof(ngx_http_usage_stats_t, bytes_used),
      NGX_HTTP_USAGE_METRIC_SIZE },

    { "usage_zone_free_bytes", "gauge",
      "Bytes of the zone's free pages.",
      offsetof(ngx_http_usage_stats_t, bytes_free),
      NGX_HTTP_USAGE_METRIC_SIZE },

    { "usage_state_saves_total", "counter",
      "Saves of the state file.",
      offsetof(ngx_http_usage_stats_t, saves),
      NGX_HTTP_USAGE_METRIC_UINT64 },

    { "usage_state_saved_timestamp_seconds", "gauge",
      "When the state file was last saved (0: never).",
      offsetof(ngx_http_usage_stats_t, saved_at),
      NGX_HTTP_USAGE_METRIC_MS },

    { "usage_start_time_seconds", "gauge",
      "When the data set began.",
      offsetof(ngx_http_usage_stats_t, start_time),
      NGX_HTTP_USAGE_METRIC_MS },

    { NULL, NULL, NULL, 0, 0 }
};


static ngx_str_t  ngx_http_usage_metrics_allow = ngx_string("GET, HEAD");


/*
 * A request without a status (the client went away before nginx chose
 * one) is not counted: the status classes stay the five HTTP ones.
 */

void
ngx_http_usage_metrics_count(ngx_http_usage_zone_t *zone,
    ngx_http_request_t *r, ngx_uint_t status, int64_t ms)
{
    ngx_uint_t                 m, i;
    ngx_http_usage_traffic_t  *tr;

    if (status < 100 || status > 599) {
        return;
    }

    switch (r->method) {
    case NGX_HTTP_GET:
        m = 0;
        break;
    case NGX_HTTP_HEAD:
        m = 1;
        break;
    case NGX_HTTP_POST:
        m = 2;
        break;
    case NGX_HTTP_PUT:
        m = 3;
        break;
    case NGX_HTTP_PATCH:
        m = 4;
        break;
    case NGX_HTTP_DELETE:
        m = 5;
        break;
    case NGX_HTTP_OPTIONS:
        m = 6;
        break;
    default:
        m = 7;
    }

    for (i = 0; i < NGX_HTTP_USAGE_LATENCY_BUCKETS - 1; i++) {
        if ((uint64_t) ms <= ngx_http_usage_latency_le[i]) {
            break;
        }
    }

    tr = ngx_http_usage_store_traffic(zone);

    (void) ngx_atomic_fetch_add(&tr->requests[m][status / 100 - 1], 1);
    (void) ngx_atomic_fetch_add(&tr->latency[i], 1);
    (void) ngx_atomic_fetch_add(&tr->latency_ms, (ngx_atomic_int_t) ms);
}


ngx_int_t
ngx_http_usage_metrics_handler(ngx_http_request_t *r)
{
    int64_t                     now;
    ngx_int_t                   rc;
    ngx_str_t                   scope, *name;
    ngx_http_usage_out_t        out;
    ngx_http_usage_zone_t      *zone;
    ngx_http_usage_stats_t      st;
    ngx_http_usage_traffic_t   *tr;
    ngx_http_usage_loc_conf_t  *ulcf;

    static ngx_str_t  type =
                        ngx_string("text/plain; version=0.0.4; charset=utf-8");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_usage_metrics_not_allowed(r);
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    /* the whole store's figures: not for a key scoped to one entity */
    switch (ngx_http_usage_scope_store(r, &scope)) {
    case NGX_DECLINED:
        break;
    case NGX_OK:
        return ngx_http_usage_scope_forbidden(r, &scope,
                                              NGX_HTTP_USAGE_SCOPE_STORE);
    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_usage_module);
    zone = ulcf->metrics_zone->data;
    name = &ulcf->metrics_zone->shm.name;
    now = ngx_http_usage_now();

    /* takes the lock briefly, as /v1/usage/stats does */
    if (ngx_http_usage_store_stats(zone, r->pool, &st, 0, now) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_usage_out_init(&out, r->pool, 8192) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the store */

    ngx_http_usage_metrics_stats(&out, name, &st);

    /*
     * Tracked traffic.  The counters are read one by one while other
     * workers add to them: the histogram's count is the sum of the
     * buckets read, so that it always equals the +Inf bucket.
     */

    tr = ngx_http_usage_store_traffic(zone);

    ngx_http_usage_metrics_requests(&out, name, tr);
    ngx_http_usage_metrics_latency(&out, name, tr);
    ngx_http_usage_metrics_sync(&out, name, zone);
    ngx_http_usage_metrics_nginx(&out);

    if (out.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_usage_send_out(r, NGX_HTTP_OK, &type,
                                   sizeof("text/plain") - 1, &out);
}


static ngx_int_t
ngx_http_usage_metrics_not_allowed(ngx_http_request_t *r)
{
    u_char     *p;
    ngx_str_t   msg, path;

    if (ngx_http_usage_add_header_lit(r, "Allow",
                                      &ngx_http_usage_metrics_allow)
        != NGX_OK
        || ngx_http_usage_request_path(r, &path) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, r->method_name.len + path.len + 64);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    msg.data = p;
    msg.len = ngx_sprintf(p, "Method %V is not allowed on %V; allowed: %V",
                          &r->method_name, &path,
                          &ngx_http_usage_metrics_allow)
              - p;

    return ngx_http_usage_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                     "METHOD_NOT_ALLOWED", &msg);
}


/* walks the table: one gauge or counter per field of the stats */

static void
ngx_http_usage_metrics_stats(ngx_http_usage_out_t *out, ngx_str_t *zone,
    ngx_http_usage_stats_t *st)
{
    ngx_http_usage_metric_t  *m;

    for (m = ngx_http_usage_metrics_store; m->name; m++) {
        ngx_http_usage_metric(out, m->name, m->type, m->help, zone,
                              ngx_http_usage_metric_value(st, m));
    }
}


/*
 * A field read as the type the stats keep it in: uint64_t, ngx_uint_t
 * and size_t differ in width on 32-bit platforms, and times are int64_t
 * milliseconds, exposed in whole seconds.
 */

static uint64_t
ngx_http_usage_metric_value(ngx_http_usage_stats_t *st,
    ngx_http_usage_metric_t *m)
{
    u_char  *p;

    p = (u_char *) st + m->offset;

    switch (m->kind) {
    case NGX_HTTP_USAGE_METRIC_UINT:
        return *(ngx_uint_t *) p;
    case NGX_HTTP_USAGE_METRIC_SIZE:
        return *(size_t *) p;
    case NGX_HTTP_USAGE_METRIC_MS:
        return *(int64_t *) p / 1000;
    default: /* NGX_HTTP_USAGE_METRIC_UINT64 */
        return *(uint64_t *) p;
    }
}


/* usage_http_requests_total: one sample per method and status class */

static void
ngx_http_usage_metrics_requests(ngx_http_usage_out_t *out, ngx_str_t *zone,
    ngx_http_usage_traffic_t *tr)
{
    ngx_uint_t  m, c;

    ngx_http_usage_metric_head(out, "usage_http_requests_total", "counter",
                               "Requests of tracked locations, by method and "
                               "status class.");

    for (m = 0; m < NGX_HTTP_USAGE_METHODS; m++) {
        for (c = 0; c < NGX_HTTP_USAGE_STATUS_CLASSES; c++) {
            ngx_http_usage_out_lit(out, "usage_http_requests_total");
            ngx_http_usage_metric_zone(out, zone);
            ngx_http_usage_out_lit(out, ",method=\"");
            ngx_http_usage_out_raw(out, (u_char *) ngx_http_usage_methods[m],
                                   ngx_strlen(ngx_http_usage_methods[m]));
            ngx_http_usage_out_lit(out, "\",status=\"");
            ngx_http_usage_out_uint(out, c + 1);
            ngx_http_usage_out_lit(out, "xx\"} ");
            ngx_http_usage_out_uint(out, tr->requests[m][c]);
            ngx_http_usage_out_lit(out, "\n");
        }
    }
}


/*
 * usage_http_request_duration_seconds: the buckets are copied first, so
 * that the cumulative counts and _count are of one reading.
 */

static void
ngx_http_usage_metrics_latency(ngx_http_usage_out_t *out, ngx_str_t *zone,
    ngx_http_usage_traffic_t *tr)
{
    uint64_t    latency[NGX_HTTP_USAGE_LATENCY_BUCKETS];
    uint64_t    count, sum;
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_USAGE_LATENCY_BUCKETS; i++) {
        latency[i] = tr->latency[i];
    }

    sum = tr->latency_ms;

    ngx_http_usage_metric_head(out, "usage_http_request_duration_seconds",
                               "histogram",
                               "Request time of tracked locations, as "
                               "$request_time.");

    count = 0;

    for (i = 0; i < NGX_HTTP_USAGE_LATENCY_BUCKETS; i++) {
        count += latency[i];

        ngx_http_usage_out_lit(out,
                               "usage_http_request_duration_seconds_bucket");
        ngx_http_usage_metric_zone(out, zone);
        ngx_http_usage_out_lit(out, ",le=\"");

        if (i < NGX_HTTP_USAGE_LATENCY_BUCKETS - 1) {
            ngx_http_usage_metric_seconds(out, ngx_http_usage_latency_le[i]);

        } else {
            ngx_http_usage_out_lit(out, "+Inf");
        }

        ngx_http_usage_out_lit(out, "\"} ");
        ngx_http_usage_out_uint(out, count);
        ngx_http_usage_out_lit(out, "\n");
    }

    ngx_http_usage_out_lit(out, "usage_http_request_duration_seconds_sum");
    ngx_http_usage_metric_zone(out, zone);
    ngx_http_usage_out_lit(out, "} ");
    ngx_http_usage_metric_seconds(out, sum);
    ngx_http_usage_out_lit(out, "\nusage_http_request_duration_seconds_count");
    ngx_http_usage_metric_zone(out, zone);
    ngx_http_usage_out_lit(out, "} ");
    ngx_http_usage_out_uint(out, count);
    ngx_http_usage_out_lit(out, "\n");
}


/*
 * The instance, whatever the zone: the module's and nginx's versions, and
 * the connection figures of stub_status (what nginx operators read from
 * it or from vts), unlabelled: they are the process group's, not a
 * zone's.
 */

static void
ngx_http_usage_metrics_nginx(ngx_http_usage_out_t *out)
{
    ngx_http_usage_metric_head(out, "usage_build_info", "gauge",
                               "The module's and nginx's versions");
    ngx_http_usage_out_lit(out, "usage_build_info{version=\""
                           NGX_HTTP_USAGE_VERSION "\",nginx_version=\""
                           NGINX_VERSION "\"} 1\n");

#if (NGX_STAT_STUB)
    ngx_http_usage_metric_plain(out, "nginx_connections_active", "gauge",
                                "Client connections open, waiting included",
                                *ngx_stat_active);
    ngx_http_usage_metric_plain(out, "nginx_connections_reading", "gauge",
                                "Connections reading a request header",
                                *ngx_stat_reading);
    ngx_http_usage_metric_plain(out, "nginx_connections_writing", "gauge",
                                "Connections answering a request",
                                *ngx_stat_writing);
    ngx_http_usage_metric_plain(out, "nginx_connections_waiting", "gauge",
                                "Idle keep-alive connections",
                                *ngx_stat_waiting);
    ngx_http_usage_metric_plain(out, "nginx_connections_accepted_total",
                                "counter", "Client connections accepted",
                                *ngx_stat_accepted);
    ngx_http_usage_metric_plain(out, "nginx_connections_handled_total",
                                "counter", "Client connections handled",
                                *ngx_stat_handled);
    ngx_http_usage_metric_plain(out, "nginx_http_requests_total", "counter",
                                "Client requests", *ngx_stat_requests);
#endif
}


/* a metric of the instance: no zone label */

static void
ngx_http_usage_metric_plain(ngx_http_usage_out_t *out, const char *name,
    const char *type, const char *help, uint64_t value)
{
    ngx_http_usage_metric_head(out, name, type, help);

    ngx_http_usage_out_raw(out, (u_char *) name, ngx_strlen(name));
    ngx_http_usage_out_lit(out, " ");
    ngx_http_usage_out_uint(out, value);
    ngx_http_usage_out_lit(out, "\n");
}


/* usage_sync, where the zone has one: the connection to Redis */

static void
ngx_http_usage_metrics_sync(ngx_http_usage_out_t *out, ngx_str_t *name,
    ngx_http_usage_zone_t *zone)
{
    ngx_http_usage_sync_status_t  st;

    if (ngx_http_usage_sync_status(zone, &st) != NGX_OK) {
        return;
    }

    ngx_http_usage_metric(out, "usage_sync_up", "gauge",
                          "1 while the zone's connection to Redis works",
                          name, st.state == NGX_HTTP_USAGE_SYNC_OK);
    ngx_http_usage_metric(out, "usage_sync_connects_total", "counter",
                          "Connections to Redis that got ready", name,
                          st.connects);
    ngx_http_usage_metric(out, "usage_sync_failures_total", "counter",
                          "Connections to Redis that failed or were lost",
                          name, st.failures);

    ngx_http_usage_metric_ms(out, "usage_sync_round_trip_seconds",
                             "Round trip of the last check of Redis", name,
                             st.rtt);

    ngx_http_usage_metric(out, "usage_sync_snapshots_written_total",
                          "counter", "Snapshots of the zone this instance "
                          "wrote to Redis for new instances", name,
                          st.snapshots_written);
    ngx_http_usage_metric(out, "usage_sync_snapshot_failures_total",
                          "counter", "Snapshots that could not be written "
                          "or loaded", name, st.snapshot_failures);
    ngx_http_usage_metric(out, "usage_sync_trimmed_total", "counter",
                          "Stream entries this instance trimmed after a "
                          "snapshot", name, st.trimmed);

    ngx_http_usage_metrics_fleet(out, name, zone);
}


/* the stream: what was shipped, applied and refused */

typedef struct {
    const char                  *name;
    const char                  *type;
    const char                  *help;
    size_t                       offset;       /* a uint64_t of the status */
} ngx_http_usage_fleet_metric_t;


static ngx_http_usage_fleet_metric_t  ngx_http_usage_fleet_metrics[] = {

    { "usage_sync_queued", "gauge",
      "Events accepted here that Redis does not have yet",
      offsetof(ngx_http_usage_fleet_status_t, queued) },

    { "usage_sync_shipped_total", "counter",
      "Events of this instance that Redis took",
      offsetof(ngx_http_usage_fleet_status_t, shipped) },

    { "usage_sync_dropped_total", "counter",
      "Events stored here but not shipped: the ship queue was full",
      offsetof(ngx_http_usage_fleet_status_t, dropped) },

    { "usage_sync_applied_total", "counter",
      "Events of other instances applied to the zone",
      offsetof(ngx_http_usage_fleet_status_t, applied) },

    { "usage_sync_duplicates_total", "counter",
      "Events of the stream dropped as copies of events applied already",
      offsetof(ngx_http_usage_fleet_status_t, duplicates) },

    { "usage_sync_refused_total", "counter",
      "Records of the stream that are not events this module stores",
      offsetof(ngx_http_usage_fleet_status_t, refused) },

    { "usage_sync_foreign_total", "counter",
      "Entries of the stream that are not batches of events",
      offsetof(ngx_http_usage_fleet_status_t, foreign) },

    { "usage_sync_stream_losses_total", "counter",
      "Times Redis was found without the stream this zone read "
      "(a new epoch)",
      offsetof(ngx_http_usage_fleet_status_t, epochs) },

    { "usage_sync_republished_total", "counter",
      "Events published again after Redis lost the stream",
      offsetof(ngx_http_usage_fleet_status_t, republished) },

    { "usage_sync_ack_withdrawn_total", "counter",
      "POSTs answered 503 with ack=redis: Redis did not take their events "
      "in time, and they were not stored",
      offsetof(ngx_http_usage_fleet_status_t, ack_voided) },

    { "usage_sync_ack_ambiguous_total", "counter",
      "Of those, events Redis took all the same (its answer came too "
      "late): stored by the fleet, though their POST was answered 503",
      offsetof(ngx_http_usage_fleet_status_t, ack_ambiguous) },

    { "usage_sync_snapshots_loaded_total", "counter",
      "Snapshots of the fleet that replaced this new zone's store",
      offsetof(ngx_http_usage_fleet_status_t, snapshots) },
};


static void
ngx_http_usage_metrics_fleet(ngx_http_usage_out_t *out, ngx_str_t *name,
    ngx_http_usage_zone_t *zone)
{
    ngx_uint_t                      i;
    ngx_http_usage_fleet_metric_t  *m;
    ngx_http_usage_fleet_status_t   fs;

    if (ngx_http_usage_store_fleet_status(zone, &fs) != NGX_OK) {
        return;
    }

    for (i = 0; i < sizeof(ngx_http_usage_fleet_metrics)
                    / sizeof(ngx_http_usage_fleet_metric_t); i++)
    {
        m = &ngx_http_usage_fleet_metrics[i];

        ngx_http_usage_metric(out, m->name, m->type, m->help, name,
                              *(uint64_t *) ((u_char *) &fs + m->offset));
    }

    ngx_http_usage_metric_ms(out, "usage_sync_lag_seconds",
                             "From the XADD of the last stream entry "
                             "applied here to its events applied",
                             name, (ngx_msec_t) fs.lag);
}


static void
ngx_http_usage_metric(ngx_http_usage_out_t *out, const char *name,
    const char *type, const char *help, ngx_str_t *zone, uint64_t value)
{
    ngx_http_usage_metric_head(out, name, type, help);

    ngx_http_usage_out_raw(out, (u_char *) name, ngx_strlen(name));
    ngx_http_usage_metric_zone(out, zone);
    ngx_http_usage_out_lit(out, "} ");
    ngx_http_usage_out_uint(out, value);
    ngx_http_usage_out_lit(out, "\n");
}


/* a gauge of a time kept in ms, in seconds as Prometheus has them */

static void
ngx_http_usage_metric_ms(ngx_http_usage_out_t *out, const char *name,
    const char *help, ngx_str_t *zone, ngx_msec_t ms)
{
    ngx_http_usage_metric_head(out, name, "gauge", help);

    ngx_http_usage_out_raw(out, (u_char *) name, ngx_strlen(name));
    ngx_http_usage_metric_zone(out, zone);
    ngx_http_usage_out_lit(out, "} ");
    ngx_http_usage_metric_seconds(out, ms);
    ngx_http_usage_out_lit(out, "\n");
}


static void
ngx_http_usage_metric_head(ngx_http_usage_out_t *out, const char *name,
    const char *type, const char *help)
{
    size_t  len;

    len = ngx_strlen(name);

    ngx_http_usage_out_lit(out, "# HELP ");
    ngx_http_usage_out_raw(out, (u_char *) name, len);
    ngx_http_usage_out_lit(out, " ");
    ngx_http_usage_out_raw(out, (u_char *) help, ngx_strlen(help));
    ngx_http_usage_out_lit(out, "\n# TYPE ");
    ngx_http_usage_out_raw(out, (u_char *) name, len);
    ngx_http_usage_out_lit(out, " ");
    ngx_http_usage_out_raw(out, (u_char *) type, ngx_strlen(type));
    ngx_http_usage_out_lit(out, "\n");
}


/* {zone="name": the label set left open; \, " and newline escaped */

static void
ngx_http_usage_metric_zone(ngx_http_usage_out_t *out, ngx_str_t *zone)
{
    u_char  *p, *end, *start;

    ngx_http_usage_out_lit(out, "{zone=\"");

    start = zone->data;
    end = zone->data + zone->len;

    for (p = start; p < end; p++) {
        if (*p != '\\' && *p != '"' && *p != '\n') {
            continue;
        }

        ngx_http_usage_out_raw(out, start, p - start);

        if (*p == '\n') {
            ngx_http_usage_out_lit(out, "\\n");

        } else {
            ngx_http_usage_out_lit(out, "\\");
            ngx_http_usage_out_raw(out, p, 1);
        }

        start = p + 1;
    }

    ngx_http_usage_out_raw(out, start, end - start);
    ngx_http_usage_out_lit(out, "\"");
}


/* milliseconds as seconds: 1234 -> 1.234, 5 -> 0.005, 1000 -> 1 */

static void
ngx_http_usage_metric_seconds(ngx_http_usage_out_t *out, uint64_t ms)
{
    u_char  buf[NGX_INT64_LEN + 8], *p;

    p = ngx_sprintf(buf, "%uL", ms / 1000);

    if (ms % 1000) {
        p = ngx_sprintf(p, ".%03uL", ms % 1000);

        while (p[-1] == '0') {
            p--;
        }
    }

    ngx_http_usage_out_raw(out, buf, p - buf);
}
