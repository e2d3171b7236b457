#!/usr/bin/perl

# A path that nginx normalised never reaches an API route through a location
# the configuration did not give it.  In a configuration shaped like
# conf/nginx.prod.conf (keyless "location = /health" and "= /ready" with
# usage_api, the keyed API on "location /"):
#   - a path whose %-decoded segments hold "." or ".." (%2F a slash, %2e a
#     dot) is 400 INVALID_PATH in whatever location nginx chose for it, for
#     GET, HEAD, POST, OPTIONS, with or without a query string; where nginx
#     chose the keyed location, its 401 comes first;
#   - a decoded path that is not the one nginx matched the location with
#     (merged slashes) is 404 NOT_FOUND with the path as sent;
#   - none of them is answered 200 with API data, none with an HTML page;
#   - kept: a%2Fb is the entity "a/b", a.b, .hidden and ... are entities,
#     one trailing slash, case-insensitive route words; with merge_slashes
#     off, a%2F%2Fb is the entity "a//b";
#   - a 405 nginx answers itself (TRACE) on such a path names no route; the
#     request is self-tracked (it is no probe).

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);

my $t = Test::Usage->new();
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;
    usage_track usage;

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;

        location = /health { usage_api usage; }
        location = /ready { usage_api usage; }

        location / {
            usage_api usage;
            if ($http_x_api_key != "k") {
                return 401;
            }
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        server_name noslash;
        merge_slashes off;
        location / { usage_api usage; }
    }
}
EOF

my $CT = 'application/json; charset=utf-8';
my @KEY = ('X-Api-Key' => 'k');
my $INVALID = 'Path segments "." and ".." are not allowed';

# an answer that must be a JSON error: $status, $code, never API data
sub refused {
	my ($method, $uri, $status, $code, %o) = @_;
	my @h = @{ $o{headers} || [] };
	my $name = "$method $uri" . (@h && $h[0] eq 'X-Api-Key' ? ' (key)' : '');
	my %req = (headers => \@h);
	if ($method eq 'POST') {
		$req{body} = '{"entityId":"pn","eventType":"t"}';
		push @h, 'Content-Type' => 'application/json';
	}
	my $r = $t->request($method, $uri, %req);
	is($r->status, $status, "$name: $status") or diag $r->describe;
	is($r->header('Content-Type'), $CT, "$name: JSON");
	unlike($r->body, qr/<html|"success"|"healthy"|"ready"|"entityId"/i,
		"$name: no API data, no HTML page");
	return $r if $method eq 'HEAD';
	is($r->err->{code}, $code, "$name: $code");
	is($r->err->{message}, $INVALID, "$name: message")
		if $code eq 'INVALID_PATH';
	is($r->err->{traceId}, $r->trace_id, "$name: traceId");
	return $r;
}

###############################################################################
# without the key: to the keyless locations, 400; to the keyed one, 401

for my $uri (
	'/v1/usage/..%2F..%2Fhealth',
	'/v1/usage/..%2f..%2fhealth',
	'/v1/usage/%2e%2e/%2e%2e/health',
	'/v1/usage/%2E%2E%2F%2E%2E%2Fhealth',
	'/v1/usage/x%2F..%2F..%2F..%2Fhealth',
	'/v1/usage/..%2F..%2Fready',
	'/v1/events/..%2F..%2Fready',
	'/v1/events/..%2F..%2Fhealth',
	'/v1/..%2Fhealth',
	'/v1/usage/stats/..%2F..%2F..%2Fhealth',
	'/v1/usage/..%2F..%2Fhealth?since=2026-01-01',
	'/v1/usage/..%2F..%2Fhealth?',
	'/v1/usage/..%2F..%2Fready?x=..%2F',
	'/./health',
	'/ready/..%2Fready',
)
{
	refused('GET', $uri, 400, 'INVALID_PATH');
}

for my $m ('HEAD', 'POST', 'OPTIONS', 'DELETE') {
	refused($m, '/v1/usage/..%2F..%2Fhealth', 400, 'INVALID_PATH');
	refused($m, '/v1/events/..%2F..%2Fready', 400, 'INVALID_PATH');
}
refused('POST', '/v1/events/..%2F..%2Fhealth?x=1', 400, 'INVALID_PATH');

for my $uri (
	'/v1/usage/x/../../health',
	'/health/..%2Fv1%2Fusage%2Fstats',
	'/health/..%2Fv1%2Fusage%2Fsomeone',
	'/ready/..%2Fv1%2Fevents',
	'/v1/usage/..%2Fhealth',
	'/v1/usage/..%2F..%2Fhealth/history',
	'/v1/usage/a/../b',
	'/health//',
	'/health/.',
)
{
	refused('GET', $uri, 401, 'UNAUTHORIZED');
}
refused('POST', '/ready/..%2Fv1%2Fevents', 401, 'UNAUTHORIZED');

# above the root: nginx refuses it itself, still in JSON
refused('GET', '/x/..%2F..%2Fhealth', 400, 'BAD_REQUEST');

###############################################################################
# with the key: the keyed location's dotted paths are 400 too

for my $uri (
	'/v1/usage/x/../../health',
	'/health/..%2Fv1%2Fusage%2Fstats',
	'/health/..%2Fv1%2Fusage%2Fstats?x=1',
	'/v1/usage/..%2Fhealth',
	'/v1/usage/a/../b',
	'/v1/usage/./stats',
	'/v1/usage/stats/.',
	'/v1/usage/%2e',
	'/v1/usage/%2E%2e',
	'/v1/usage/a%2F..%2Fb',
	'/v1/usage/a%2F.%2Fb/history',
	'/v1/usage/a/%2e%2e/b/history?interval=day',
	'/v1/events/.',
	'/V1/EVENTS/x/..',
)
{
	refused('GET', $uri, 400, 'INVALID_PATH', headers => \@KEY);
}
refused('HEAD', '/v1/usage/a%2F..%2Fb', 400, 'INVALID_PATH', headers => \@KEY);
refused('POST', '/v1/events/.', 400, 'INVALID_PATH', headers => \@KEY);
refused('POST', '/x/..%2Fv1/events', 400, 'INVALID_PATH', headers => \@KEY);

# nothing was recorded by the refused POSTs
my $r = $t->get('/v1/usage/pn', headers => \@KEY);
is($r->status, 200, 'the entity of the refused POSTs');
is($r->data->{totalEvents}, 0, 'no event recorded');

###############################################################################
# not the path nginx matched (merged slashes): 404 with the path as sent

for my $case (
	['/v1//usage/stats', '/v1//usage/stats'],
	['//v1/events?x=1', '//v1/events'],
	['/v1/usage/a%2F%2Fb', '/v1/usage/a%2F%2Fb'],
	['/v1/usage/%2Fx/history', '/v1/usage/%2Fx/history'],
	['/health//', '/health//'],
)
{
	my ($uri, $path) = @$case;
	my $r = refused('GET', $uri, 404, 'NOT_FOUND', headers => \@KEY);
	is($r->err->{message}, "Route GET $path not found", "$uri: message");
}

###############################################################################
# kept

is($t->get('/health')->json->{status}, 'healthy', '/health');
is($t->get('/health?x=..%2F')->json->{status}, 'healthy', '/health?x=..%2F');
is($t->get('/ready')->json->{status}, 'ready', '/ready');
is($t->head('/health')->status, 200, 'HEAD /health');

for my $case (
	['/v1/usage/a%2Fb', 'a/b'],
	['/v1/usage/a%2Fb?since=2026-01-01', 'a/b'],
	['/v1/usage/a.b', 'a.b'],
	['/v1/usage/.hidden', '.hidden'],
	['/v1/usage/...', '...'],
	['/v1/usage/..a', '..a'],
	['/v1/usage/a..', 'a..'],
	['/v1/usage/%41%2e', 'A.'],
	['/v1/usage/someone/', 'someone'],
	['/V1/USAGE/a%2Fb/HISTORY', 'a/b'],
	['/v1/usage/..a/history/', '..a'],
)
{
	my ($uri, $entity) = @$case;
	my $r = $t->get($uri, headers => \@KEY);
	is($r->status, 200, "$uri: 200") or diag $r->describe;
	is($r->data->{entityId}, $entity, "$uri: entity $entity");
}
is($t->get('/v1/usage/stats/', headers => \@KEY)->status, 200,
	'/v1/usage/stats/');
ok(exists $t->get('/V1/Usage/STATS', headers => \@KEY)->data->{uptime},
	'/V1/Usage/STATS is the stats route');
is($t->get('/v1/events', headers => \@KEY)->status, 200, '/v1/events');

$r = $t->get('/v1/usage/a%2F%2Fb', port => $t->{port2});
is($r->status, 200, 'merge_slashes off: a%2F%2Fb') or diag $r->describe;
is($r->data->{entityId}, 'a//b', 'merge_slashes off: the entity a//b');
$r = $t->get('/v1/usage/a%2F..%2Fb', port => $t->{port2});
is($r->err->{code}, 'INVALID_PATH', 'merge_slashes off: dots still refused');

###############################################################################
# 405 from nginx itself, and self-tracking

for my $uri ('/v1/usage/..%2F..%2Fhealth', '/v1/events/..%2F..%2Fready') {
	$r = $t->request('TRACE', $uri);
	is($r->status, 405, "TRACE $uri: 405");
	is($r->err->{code}, 'METHOD_NOT_ALLOWED', "TRACE $uri: code");
	is($r->err->{message}, 'Method not allowed', "TRACE $uri: no route named");
	is($r->header('Allow'), undef, "TRACE $uri: no Allow of a route");
}
$r = $t->request('TRACE', '/v1/events');
is($r->header('Allow'), 'GET, HEAD, POST, OPTIONS', 'TRACE /v1/events: Allow');

is($t->get('/v1/..%2Fready?t=1')->status, 400, 'a dotted path to /ready');
my $ev;
wait_until(sub {
	my $l = $t->get('/v1/events?entityId=api-self&limit=50',
		headers => \@KEY)->json;
	($ev) = grep { $_->{metadata}{path} eq '/v1/..%2Fready' }
		@{ $l->{data}{events} || [] };
	$ev;
}, 3);
ok($ev, 'it is self-tracked (not a probe)');
is($ev && $ev->{metadata}{statusCode}, 400, 'with its status');

$t->done_testing();
