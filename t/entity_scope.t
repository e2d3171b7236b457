#!/usr/bin/perl

# usage_entity_scope: a key mapped to an entity reads and records only it.
#   - its own entity: summary, history, list (with or without the filter),
#     POST: served; the id is compared decoded and trimmed, as the API
#     reads it;
#   - another entity: summary, history, list filter, POST: 403 FORBIDDEN
#     JSON with the trace id, and nothing is stored;
#   - GET /v1/events without entityId (or with an empty one) lists only the
#     key's entity; /v1/usage/stats, /info and usage_metrics: 403;
#   - /health, /ready, /, /docs: served;
#   - an empty value (an admin key): no restriction; "" in a location
#     lifts it; an invalid id is still 400.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(pct);

my $t = Test::Usage->new();
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;

    map $http_x_api_key $api_client {
        default     "";
        key-a       a;
        key-b       b;
        key-admin   admin;
    }

    map $http_x_api_key $api_entity {
        default     "";
        key-a       cust-a;
        key-b       "cust b";
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;
        usage_entity_scope $api_entity;

        location / {
            usage_api usage;
            if ($api_client = "") {
                return 401;
            }
        }

        location = /v1/usage/stats {
            usage_api usage;
            usage_entity_scope "";
        }

        location = /metrics {
            usage_metrics usage;
        }
    }
}
EOF

my %KEY = map { $_ => ['X-Api-Key' => "key-$_"] } qw(a b admin);

sub as {
	my ($who, $method, $path, %o) = @_;
	return $t->request($method, $path,
		%o, headers => [@{ $KEY{$who} }, @{ $o{headers} || [] }]);
}

sub forbidden {
	my ($r, $message, $name) = @_;
	is($r->status, 403, "$name: 403") or diag $r->describe;
	is($r->header('Content-Type'), 'application/json; charset=utf-8',
		"$name: JSON");
	is($r->err->{code}, 'FORBIDDEN', "$name: FORBIDDEN");
	is($r->err->{message}, $message, "$name: message");
	ok(length($r->err->{traceId} // ''), "$name: traceId");
	is($r->trace_id, $r->err->{traceId}, "$name: x-trace-id")
		unless $name =~ /metrics/;    # not an API location
}

my $READ_A = 'This API key may only read entity "cust-a"';
my $RECORD_A = 'This API key may only record events for entity "cust-a"';
my $STORE_A = 'This API key may only read entity "cust-a", '
	. 'not store-wide statistics';

# the data, as the admin key (empty scope: no restriction)
for ([qw(cust-a 3)], ['cust b', 2], [qw(other 1)]) {
	my ($e, $n) = @$_;
	for (1 .. $n) {
		is(as('admin', 'POST', '/v1/events',
			json => { entityId => $e, eventType => 'call' })->status,
			201, "admin posts for $e");
	}
}

###############################################################################
# its own entity

my $r = as('a', 'GET', '/v1/usage/cust-a');
is($r->status, 200, 'own summary');
is($r->data->{totalEvents}, 3, 'own summary: counted');
$r = as('a', 'GET', '/v1/usage/cust-a/history?interval=minute');
is($r->status, 200, 'own history');
is($r->data->{dataPoints}[0]{count}, 3, 'own history: counted');
$r = as('a', 'GET', '/v1/usage/%20cust-a%09');
is($r->status, 200, 'own id, decoded and trimmed');
is($r->data->{entityId}, 'cust-a', 'own id: the trimmed id');

$r = as('a', 'GET', '/v1/events?entityId=cust-a');
is($r->status, 200, 'own list');
is($r->data->{pagination}{total}, 3, 'own list: its events');

for my $q ('', '?entityId=', '?limit=10') {
	$r = as('a', 'GET', "/v1/events$q");
	is($r->status, 200, "list without a filter ($q)");
	is($r->data->{pagination}{total}, 3, "list without a filter ($q): "
		. 'only its own events');
	ok(!(grep { $_->{entityId} ne 'cust-a' } @{ $r->data->{events} || [] }),
		"list without a filter ($q): all cust-a");
}
$r = as('a', 'GET', '/v1/events?eventType=call');
is($r->data->{pagination}{total}, 3, 'type filter within its entity');

$r = as('a', 'POST', '/v1/events',
	json => { entityId => 'cust-a', eventType => 'own' });
is($r->status, 201, 'POST for its own entity');
$r = as('a', 'POST', '/v1/events',
	json => { entityId => "  cust-a\t", eventType => 'own' });
is($r->status, 201, 'POST for its own entity, trimmed');
is($r->data->{entityId}, 'cust-a', 'stored trimmed');

$r = as('b', 'GET', '/v1/usage/' . pct('cust b'));
is($r->status, 200, 'an id with a space');
is($r->data->{totalEvents}, 2, 'an id with a space: counted');

###############################################################################
# another entity

forbidden(as('a', 'GET', '/v1/usage/other'), $READ_A, 'another summary');
forbidden(as('a', 'GET', '/v1/usage/other/history'), $READ_A,
	'another history');
forbidden(as('a', 'GET', '/v1/usage/cust-a2'), $READ_A, 'a longer id');
forbidden(as('a', 'GET', '/v1/usage/CUST-A'), $READ_A, 'case matters');
forbidden(as('a', 'GET', '/v1/events?entityId=other'), $READ_A,
	'another list');
forbidden(as('a', 'GET', '/v1/events?entityId=%20cust-a'), $READ_A,
	'a list filter is exact, as in the API');
forbidden(as('a', 'GET', '/info'), $STORE_A, '/info');
forbidden(as('a', 'GET', '/v1/usage/Stats/'), $STORE_A, 'stats');
forbidden(as('a', 'GET', '/metrics'), $STORE_A, 'usage_metrics');
forbidden(as('b', 'GET', '/v1/usage/cust-a'),
	'This API key may only read entity "cust b"', 'the other key');

$r = as('a', 'POST', '/v1/events', headers => ['X-Trace-Id' => 'sc-post'],
	json => { entityId => 'other', eventType => 'sneak' });
forbidden($r, $RECORD_A, 'POST for another entity');
is($r->err->{traceId}, 'sc-post', 'POST 403: the given trace id');
is(as('admin', 'GET', '/v1/usage/other')->data->{totalEvents}, 1,
	'nothing stored for the other entity');

$r = as('a', 'GET', '/v1/usage/%20%20');
is($r->status, 400, 'an invalid id is 400 first');
is($r->err->{message}, 'entityId is required', 'the validation message');
$r = as('a', 'POST', '/v1/events', json => { eventType => 'x' });
is($r->status, 400, 'an invalid POST is 400 first');

###############################################################################
# what carries no entity data, and the unrestricted

for my $p ('/health', '/ready', '/', '/docs') {
	is(as('a', 'GET', $p)->status, 200, "$p for a scoped key");
}

$r = as('admin', 'GET', '/v1/usage/stats');
is($r->status, 200, 'admin: stats');
is($r->data->{totalEvents}, 8, 'admin: all events');
is(as('admin', 'GET', '/v1/events')->data->{pagination}{total}, 8,
	'admin: the whole list');
is(as('admin', 'GET', '/info')->status, 200, 'admin: /info');
is(as('admin', 'GET', '/metrics')->status, 200, 'admin: usage_metrics');
is(as('a', 'GET', '/v1/usage/stats')->status, 200,
	'usage_entity_scope "" in a location lifts the scope');
is($t->get('/metrics')->status, 200, 'no key: no scope on /metrics');

$t->done_testing();
