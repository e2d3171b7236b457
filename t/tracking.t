#!/usr/bin/perl

# Self-tracking (usage_track): after each response an api-self/api_call event
# with method, full raw path without query, statusCode, duration and traceId;
# errors and preflights tracked too; /health, /ready (and with a trailing
# slash) not tracked; usage_track off in a location; the events count in
# stats; entity= and event_type= parameters with variables.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until $UUID4_RE $ISO_RE);

my $t = Test::Usage->new();
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;
    usage_track usage;

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;
        location / { usage_api usage; }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        server_name off;
        location / {
            usage_track off;
            usage_api usage;
        }
    }
}
EOF

# all api-self events, by trace id (reads through the untracked server)
sub tracked {
	my $r = $t->get('/v1/events?entityId=api-self&limit=1000',
		port => $t->{port2});
	my %by;
	for my $e (@{ $r->data->{events} || [] }) {
		$by{ $e->{metadata}{traceId} // '' } = $e;
	}
	return \%by;
}

sub wait_tracked {
	my ($tid) = @_;
	return wait_until { tracked()->{$tid} } 5;
}

###############################################################################

my $r = $t->get('/v1/events?limit=5&entityId=x', headers => ['X-Trace-Id' => 'trk-1']);
is($r->status, 200, 'request');
my $e = wait_tracked('trk-1');
ok($e, 'request tracked');
is($e->{entityId}, 'api-self', 'entityId api-self');
is($e->{eventType}, 'api_call', 'eventType api_call');
is($e->{metadata}{method}, 'GET', 'method');
is($e->{metadata}{path}, '/v1/events', 'full path without query');
is($e->{metadata}{statusCode}, 200, 'statusCode');
my $raw = $t->get('/v1/events?entityId=api-self&limit=1000', port => $t->{port2})->body;
like($raw, qr/"statusCode":200[,}]/, 'statusCode is a number');
like($raw, qr/"duration":\d+(?:\.\d+)?[,}]/, 'duration is a number');
ok(defined $e->{metadata}{duration} && $e->{metadata}{duration} >= 0
	&& $e->{metadata}{duration} < 5000, 'duration in ms');
is($e->{metadata}{traceId}, 'trk-1', 'traceId');
is_deeply([sort keys %{ $e->{metadata} }],
	[qw(duration method path statusCode traceId)], 'metadata fields');
like($e->{id} // '', $UUID4_RE, 'tracked event id');
like($e->{timestamp} // '', $ISO_RE, 'tracked event timestamp');

$r = $t->get('/v1/usage/some%20one/history?interval=day',
	headers => ['X-Trace-Id' => 'trk-2']);
$e = wait_tracked('trk-2');
is($e && $e->{metadata}{path}, '/v1/usage/some%20one/history',
	'raw full path (not decoded, not router-relative)');

$r = $t->get('/nope/x?q=1', headers => ['X-Trace-Id' => 'trk-3']);
$e = wait_tracked('trk-3');
is($e && $e->{metadata}{statusCode}, 404, '404 tracked');
is($e && $e->{metadata}{path}, '/nope/x', '404 path');

$r = $t->post_json('/v1/events', {}, headers => ['X-Trace-Id' => 'trk-4']);
$e = wait_tracked('trk-4');
is($e && $e->{metadata}{method}, 'POST', 'POST tracked');
is($e && $e->{metadata}{statusCode}, 400, '400 tracked');

$r = $t->post_event('cust', 'x', undef, headers => ['X-Trace-Id' => 'trk-5']);
$e = wait_tracked('trk-5');
is($e && $e->{metadata}{statusCode}, 201, '201 tracked');

$r = $t->request('DELETE', '/v1/events', headers => ['X-Trace-Id' => 'trk-6']);
$e = wait_tracked('trk-6');
is($e && $e->{metadata}{statusCode}, 405, '405 tracked');
is($e && $e->{metadata}{method}, 'DELETE', '405 method');

$r = $t->get('/', headers => ['traceparent' =>
	'00-11112222333344445555666677778888-00f067aa0ba902b7-01']);
$e = wait_tracked('11112222333344445555666677778888');
is($e && $e->{metadata}{path}, '/', 'traceparent id tracked');

$r = $t->get('/info');
my $gen = $r->trace_id;
$e = wait_tracked($gen);
ok($e, 'generated trace id tracked');

###############################################################################
# not tracked: /health, /ready, and the server with usage_track off

my $c = $t->connect();
for my $p ('/health', '/ready', '/health/', '/ready/', '/HEALTH') {
	$c->request('GET', $p, keepalive => 1,
		headers => ['X-Trace-Id' => "hc-$p"]);
}
$c->request('GET', '/info', keepalive => 1, headers => ['X-Trace-Id' => 'mark']);
$c->close();
$t->get('/v1/events', port => $t->{port2}, headers => ['X-Trace-Id' => 'offsrv']);

ok(wait_tracked('mark'), 'marker tracked');
my $all = tracked();
for my $p ('/health', '/ready', '/health/', '/ready/', '/HEALTH') {
	ok(!$all->{"hc-$p"}, "$p not tracked");
}
ok(!$all->{offsrv}, 'usage_track off not tracked');

###############################################################################
# counted in stats and summaries

my $n = scalar keys %$all;
$r = $t->get('/v1/usage/stats', port => $t->{port2});
ok($r->data->{eventTypes}{api_call} >= $n, 'api_call counted in stats');
$r = $t->get('/v1/usage/api-self', port => $t->{port2});
ok($r->data->{totalEvents} >= $n, 'api-self summary');

$t->finish();

###############################################################################
# usage_track with entity= and event_type= (variables allowed)

$t = Test::Usage->new();
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;
        location / {
            usage_api usage;
            usage_track usage entity=gw-$http_x_key event_type=$request_method;
        }
        location /fixed/ {
            usage_api usage;
            usage_track usage entity=fixed event_type=call;
        }
    }
}
EOF

$t->get('/v1/usage/stats', headers => ['X-Key' => 'k1', 'X-Trace-Id' => 'v1']);
$t->get('/fixed/x', headers => ['X-Trace-Id' => 'v2']);
my %by = map { $_->{metadata}{traceId} => $_ } @{ (wait_until {
	my $e = $t->get('/v1/events?eventType=call')->data->{events};
	$e && @$e ? $t->get('/v1/events?limit=1000')->data->{events} : undef
} 5) || [] };
is($by{v1} && $by{v1}{entityId}, 'gw-k1', 'entity from variables');
is($by{v1} && $by{v1}{eventType}, 'GET', 'event_type from a variable');
is($by{v1} && $by{v1}{metadata}{path}, '/v1/usage/stats', 'metadata kept');
is($by{v2} && $by{v2}{entityId}, 'fixed', 'fixed entity');
is($by{v2} && $by{v2}{eventType}, 'call', 'fixed event_type');

$t->done_testing();
