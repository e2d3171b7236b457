#!/usr/bin/perl

# Routing of the API location: the shapes of /, /health, /ready, /info and
# /docs (no envelope), the JSON Content-Type, 404 NOT_FOUND messages, 405 with
# Allow, HEAD answered like GET without a body, one tolerated trailing slash,
# case-insensitive route words, configurable service name/version/environment.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes ();
use Test::Usage qw(api_conf $ISO_RE);

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

my $CT = 'application/json; charset=utf-8';

sub error_is {
	my ($r, $status, $code, $message, $name) = @_;
	is($r->status, $status, "$name: status") or diag $r->describe;
	is($r->err->{code}, $code, "$name: code");
	is($r->err->{message}, $message, "$name: message") if defined $message;
	ok(defined $r->trace_id && $r->err->{traceId} eq $r->trace_id,
		"$name: traceId in body equals x-trace-id");
	is($r->header('Content-Type'), $CT, "$name: content type");
}

###############################################################################
# fixed routes

my $r = $t->get('/');
is($r->status, 200, 'root status');
is($r->header('Content-Type'), $CT, 'root content type');
is_deeply($r->json, {
	service => 'ngx_http_usage_module',
	version => '0.1.0',
	documentation => '/docs',
	openapi => '/openapi.json',
	dashboard => '/dashboard',
	health => '/health',
	api => { events => '/v1/events', usage => '/v1/usage' },
}, 'root document');

$r = $t->get('/health');
is($r->status, 200, 'health status');
is($r->header('Content-Type'), $CT, 'health content type');
my $j = $r->json;
is($j->{status}, 'healthy', 'health status field');
like($j->{timestamp} // '', $ISO_RE, 'health timestamp');
is($j->{service}, 'ngx_http_usage_module', 'health service');
is($j->{version}, '0.1.0', 'health version');
ok(!exists $j->{success}, 'health has no envelope');

$r = $t->get('/ready');
is($r->status, 200, 'ready status');
$j = $r->json;
is($j->{status}, 'ready', 'ready status field');
like($j->{timestamp} // '', $ISO_RE, 'ready timestamp');
is_deeply($j->{checks}, { service => 'ok', store => 'ok' }, 'ready checks');

$r = $t->get('/info');
is($r->status, 200, 'info status');
$j = $r->json;
is($j->{service}, 'ngx_http_usage_module', 'info service');
is($j->{version}, '0.1.0', 'info version');
is($j->{environment}, 'production', 'info environment');
like($j->{uptime}{ms} // '', qr/^\d+$/, 'info uptime ms');
like($j->{uptime}{human} // '', qr/^\d+s$/, 'info uptime human');
is_deeply([sort keys %{ $j->{stats} || {} }],
	[qw(eventsLastHour totalEvents uniqueEntities)], 'info stats keys');
like($r->body, qr/"totalEvents":\d+/, 'info totalEvents is a number');

$r = $t->get('/docs');
is($r->status, 200, 'docs status');
is($r->header('Content-Type'), $CT, 'docs content type');
ok(ref $r->json, 'docs is JSON');
ok(!(ref $r->json eq 'HASH' && exists $r->json->{success}), 'docs no envelope');
like($r->body, qr{/v1/events}, 'docs lists /v1/events');
like($r->body, qr{/v1/usage}, 'docs lists /v1/usage');

$r = $t->get('/v1/events');
is($r->status, 200, 'events list status');
is($r->header('Content-Type'), $CT, 'events content type');
is($r->json->{success}, JSON::PP::true, 'v1 envelope success');
ok(ref $r->data eq 'HASH', 'v1 envelope data');

$r = $t->get('/v1/usage/stats');
is($r->status, 200, 'stats status');
ok(exists $r->data->{totalEvents}, 'stats data');

$r = $t->get('/v1/usage/someone');
is($r->status, 200, 'summary status');
is($r->data->{entityId}, 'someone', 'summary entity');

$r = $t->get('/v1/usage/someone/history');
is($r->status, 200, 'history status');
is($r->data->{interval}, 'hour', 'history default interval');

###############################################################################
# trailing slash and case of the route words

for my $p ('/health/', '/ready/', '/info/', '/docs/', '/v1/events/',
	'/v1/usage/stats/', '/v1/usage/someone/', '/v1/usage/someone/history/')
{
	is($t->get($p)->status, 200, "trailing slash $p");
}
is($t->get('/v1/usage/someone/')->data->{entityId}, 'someone',
	'trailing slash not part of the entity');

for my $p ('/HEALTH', '/Ready', '/V1/Events', '/v1/USAGE/stats',
	'/v1/usage/someone/HISTORY')
{
	is($t->get($p)->status, 200, "case-insensitive $p");
}
ok(exists(($t->get('/V1/USAGE/STATS')->data // {})->{uptime}),
	'/V1/USAGE/STATS is the stats route');
is($t->get('/v1/usage/SomeOne')->data->{entityId}, 'SomeOne',
	'entity id keeps its case');

###############################################################################
# 404

error_is($t->get('/nope'), 404, 'NOT_FOUND', 'Route GET /nope not found',
	'unknown path');
error_is($t->get('/nope/deeper?x=1&y=2'), 404, 'NOT_FOUND',
	'Route GET /nope/deeper not found', 'query string not in message');
error_is($t->get('/a%20b'), 404, 'NOT_FOUND', 'Route GET /a%20b not found',
	'raw path in message');
error_is($t->get('/v1'), 404, 'NOT_FOUND', 'Route GET /v1 not found', '/v1');
error_is($t->get('/v1/usage'), 404, 'NOT_FOUND', undef, '/v1/usage');
error_is($t->get('/health//'), 404, 'NOT_FOUND', undef,
	'two trailing slashes');
error_is($t->get('/v1/events/x'), 404, 'NOT_FOUND',
	'Route GET /v1/events/x not found', 'below /v1/events');
error_is($t->get('/v1/usage/a/history/more'), 404, 'NOT_FOUND', undef,
	'below history');
error_is($t->request('POST', '/nope', body => '{}',
	headers => ['Content-Type' => 'application/json']),
	404, 'NOT_FOUND', 'Route POST /nope not found', 'POST unknown path');

###############################################################################
# 405 with Allow

my %allow = (
	'/v1/events' => 'GET, HEAD, POST, OPTIONS',
	'/v1/events/' => 'GET, HEAD, POST, OPTIONS',
	'/health' => 'GET, HEAD, OPTIONS',
	'/ready' => 'GET, HEAD, OPTIONS',
	'/info' => 'GET, HEAD, OPTIONS',
	'/' => 'GET, HEAD, OPTIONS',
	'/docs' => 'GET, HEAD, OPTIONS',
	'/v1/usage/stats' => 'GET, HEAD, OPTIONS',
	'/v1/usage/abc' => 'GET, HEAD, OPTIONS',
	'/v1/usage/abc/history' => 'GET, HEAD, OPTIONS',
);

for my $p (sort keys %allow) {
	my $m = $p =~ m{^/v1/events} ? 'DELETE' : 'POST';
	my $r = $t->request($m, $p, body => '{}',
		headers => ['Content-Type' => 'application/json']);
	error_is($r, 405, 'METHOD_NOT_ALLOWED', undef, "$m $p");
	is($r->header('Allow'), $allow{$p}, "$m $p: Allow");
}

$r = $t->request('PUT', '/v1/events', body => '{}',
	headers => ['Content-Type' => 'application/json']);
is($r->status, 405, 'PUT /v1/events');
$r = $t->request('PATCH', '/health');
is($r->status, 405, 'PATCH /health');
is($r->header('Allow'), 'GET, HEAD, OPTIONS', 'PATCH /health: Allow');

###############################################################################
# HEAD

for my $p ('/', '/health', '/info', '/v1/events', '/v1/usage/stats',
	'/v1/usage/x', '/v1/usage/x/history', '/docs')
{
	my $g = $t->get($p);
	my $h = $t->head($p);
	is($h->status, $g->status, "HEAD $p status");
	is($h->header('Content-Type'), $CT, "HEAD $p content type");
	is($h->body, '', "HEAD $p no body");
	is($h->header('Content-Length'), length($g->body),
		"HEAD $p content length like GET")
		if $p eq '/health' || $p eq '/';
}

$r = $t->head('/nope');
is($r->status, 404, 'HEAD unknown path');
is($r->body, '', 'HEAD 404 no body');

# HEAD on a keepalive connection does not leave a body behind
my $c = $t->connect();
$c->request('HEAD', '/health', keepalive => 1);
$r = $c->request('GET', '/health', keepalive => 1);
is($r->json && $r->json->{status}, 'healthy', 'request after HEAD on keepalive');
$c->close();

$t->finish();

###############################################################################
# routes match the full request path, whatever the location prefix

$t = Test::Usage->new();
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;
        location /v1/ { usage_api usage; }
        location = /health { usage_api usage; }
        location /api/ { usage_api usage; }
        location / { return 200 "not the api\n"; }
    }
}
EOF

is($t->get('/v1/events')->status, 200, 'prefix location: /v1/events');
is($t->get('/v1/usage/stats')->status, 200, 'prefix location: stats');
is($t->get('/health')->json->{status}, 'healthy', 'exact location: /health');
is($t->get('/info')->body, "not the api\n", '/info outside the API');
error_is($t->get('/api/health'), 404, 'NOT_FOUND',
	'Route GET /api/health not found', 'the location prefix is not stripped');
error_is($t->get('/v1/nope'), 404, 'NOT_FOUND', 'Route GET /v1/nope not found',
	'404 in a prefix location');
$t->finish();

###############################################################################
# service name, version and environment are configurable

$t = Test::Usage->new();
$t->write_config(api_conf(http => '
    usage_service_name usage-metrics-api;
    usage_service_version 1.2.3;
    usage_environment staging;
'))->run();

$j = $t->get('/health')->json;
is($j->{service}, 'usage-metrics-api', 'configured service in /health');
is($j->{version}, '1.2.3', 'configured version in /health');
$j = $t->get('/info')->json;
is($j->{service}, 'usage-metrics-api', 'configured service in /info');
is($j->{version}, '1.2.3', 'configured version in /info');
is($j->{environment}, 'staging', 'configured environment');
$j = $t->get('/')->json;
is($j->{service}, 'usage-metrics-api', 'configured service in /');
is($j->{version}, '1.2.3', 'configured version in /');

$t->finish();

###############################################################################
# the query is cut off where nginx saw it start, whatever the path holds:
# %-escapes (an escaped '?' stays in the entity), dot segments, an empty
# query; the self-tracking event records the path without it, and a probe
# with a query is still not tracked

$t = Test::Usage->new();
$t->write_config(api_conf(track => 1))->run();

for my $case (
	['/v1/usage/a%2Fb?x=1', 'a/b', '/v1/usage/a%2Fb'],
	['/v1/usage/a%3Fb?x=1', 'a?b', '/v1/usage/a%3Fb'],
	['/v1/usage/a%3Fb', 'a?b', '/v1/usage/a%3Fb'],
	['/v1/usage/a.b?since=2026-01-01T00:00:00Z', 'a.b', '/v1/usage/a.b'],
	['/v1/usage/c?', 'c', '/v1/usage/c'],
	['/V1/USAGE/d/History?interval=minute', 'd', '/V1/USAGE/d/History'],
	['/v1/usage/e%20f?a=%3F', 'e f', '/v1/usage/e%20f'],
)
{
	my ($uri, $entity, $path) = @$case;
	my $r = $t->get($uri);
	is($r->status, 200, "$uri: 200");
	is($r->json->{data}{entityId}, $entity, "$uri: entity $entity");
	# (recorded in the log phase, after the answer, maybe by the other
	# worker; the list before may share its millisecond and come first)
	my $ev;
	Test::Usage::wait_until(sub {
		my $l = $t->get('/v1/events?entityId=api-self&limit=2')->json;
		($ev) = grep { $_->{metadata}{path} ne '/v1/events' }
			@{ $l->{data}{events} };
		$ev && $ev->{metadata}{path} eq $path;
	}, 2);
	is($ev && $ev->{metadata}{path}, $path, "$uri: tracked as $path");
}

my $before = $t->get('/v1/usage/api-self')->json->{data}{totalEvents};
is($t->get('/health?x=1')->status, 200, '/health?x=1');
is($t->get('/ready?')->status, 200, '/ready?');
Time::HiRes::sleep(0.3);    # the log phases of the requests above
is($t->get('/v1/usage/api-self')->json->{data}{totalEvents}, $before + 1,
	'probes with a query are not tracked (only the summary before this)');

$t->done_testing();
