#!/usr/bin/perl

# GET /openapi.json and GET /docs, and the document kept true of the code:
#   - the document is assets/openapi.json byte for byte, with an ETag
#     (If-None-Match: 304), its version the module's; src/ngx_http_usage_
#     assets.c/.h are what scripts/embed makes of assets/;
#   - @redocly/cli lints it with no error (t/redocly.yaml);
#   - every operation of the document is requested for real, against nginx
#     on a configuration like the shipped one (and a server with API keys,
#     one with a small zone and limit_req), to get each status it
#     documents where that is cheap: every answer's status must be
#     documented, its body must be valid (ajv, JSON Schema 2020-12) against
#     the schema the document gives for that status and Content-Type, and
#     every header the document requires must be there and valid; 404 and
#     405 against the document's NotFound and MethodNotAllowed;
#   - the validator fails wrong answers (a field missing, one added, a code
#     of another status);
#   - every route of the /docs JSON is an operation of the document, and
#     every GET and POST of the document is in it;
#   - /docs: Accept text/html (a browser's) is the HTML reference, with its
#     own CSP (its inline style by hash), self-contained (no src, no href
#     out, no script, no url()); it names every operation and error code;
#     application/json, */* and no Accept are the JSON list; Vary: Accept;
#     HEAD.
# The Node.js tools come from scripts/node-tools (scripts/test.sh runs it);
# the test fails, never skips, without them.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_base64);
use Time::HiRes ();
use Test::Usage qw(api_conf json_decode json_encode slurp pct);

my $root = "$FindBin::Bin/..";

###############################################################################
# the tools

my $node_dir = `$root/scripts/node-tools --dir`;
chomp $node_dir;
my $modules = "$node_dir/node_modules";
unless (-x "$modules/.bin/redocly" && -d "$modules/ajv") {
	my $out = `$root/scripts/node-tools 2>&1`;
	diag($out) if $?;
}
ok(-x "$modules/.bin/redocly" && -d "$modules/ajv" && -d "$modules/ajv-formats",
	"the Node.js tools are installed ($node_dir)")
	or BAIL_OUT('scripts/node-tools could not install @redocly/cli and ajv');
$ENV{NODE_MODULES} = $modules;
$ENV{REDOCLY_TELEMETRY} = 'off';
$ENV{REDOCLY_SUPPRESS_UPDATE_NOTICE} = 'true';

my $doc_text = slurp("$root/assets/openapi.json");
my $DOC = json_decode($doc_text);
ok(ref $DOC eq 'HASH' && $DOC->{openapi} =~ /^3\.1\./, 'assets/openapi.json is OpenAPI 3.1');

my ($version) = slurp("$root/src/ngx_http_usage_module.h")
	=~ /#define NGX_HTTP_USAGE_VERSION\s+"([^"]+)"/;
is($DOC->{info}{version}, $version, 'its version is the module\'s');

my $embed = `perl $root/scripts/embed --check 2>&1`;
is($?, 0, 'src/ngx_http_usage_assets.c/.h are what scripts/embed makes of assets/')
	or diag($embed);

my $lint = `cd $root && $modules/.bin/redocly lint --config t/redocly.yaml assets/openapi.json 2>&1`;
is($? >> 8, 0, 'redocly lint: no error') or diag($lint);
unlike($lint, qr/\d+ errors?\b/, 'redocly lint reports no error');

###############################################################################
# nginx: the shipped configuration's API, a server with API keys, a server
# with a small zone (entity bounds, a full raw log) and limit_req

my $t = Test::Usage->new();
my $port3 = Test::Usage::free_port();

my %KEY = (admin => 'k-admin-5b1d9e07c3a2f468', client => 'k-client-a8e3c61f0d29b57e');
$t->write_file('keys', "$KEY{admin}  ops  *  admin\n$KEY{client}  alpha  ent-a  client\n");

$t->write_config(<<"END");
http {
    usage_zone zone=usage:4m;
    usage_zone zone=tiny:64k raw=10% entity_types=1;
    usage_track usage;
    usage_service_name usage-metrics-api;
    usage_drain_file %%TESTDIR%%/drain;
    limit_req_zone \$binary_remote_addr zone=slow:1m rate=1r/m;
    limit_req_status 429;

    server {
        listen 127.0.0.1:%%PORT%%;
        client_max_body_size 64k;

        location / {
            usage_api usage;
        }

        location = /v1/events/batch {
            usage_api usage;
            client_max_body_size 1m;
            client_body_buffer_size 1m;
        }

        location = /metrics {
            usage_metrics usage;
            usage_track off;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            usage_api usage;
            usage_api_keys %%TESTDIR%%/keys;
        }
    }

    server {
        listen 127.0.0.1:$port3;
        client_max_body_size 4k;
        location / {
            usage_api tiny;
        }
        location = /v1/usage/stats {
            usage_api tiny;
            limit_req zone=slow;
        }
    }
}
END
$t->run();

my $P2 = $t->{port2};

###############################################################################
# the walk: requests, each checked against the document

my @cases;      # validations for ajv, run at the end in one process
my %produced;   # "get /v1/events" => { 200 => 1, ... }
my %why;        # case name => test name

sub ptr { join '/', map { s/~/~0/gr =~ s{/}{~1}gr } @_ }

sub deref {
	my ($x) = @_;
	my $pointer;
	while (ref $x eq 'HASH' && $x->{'$ref'}) {
		$pointer = $x->{'$ref'};
		my $y = $DOC;
		$y = $y->{ s/~1/\//gr =~ s/~0/~/gr } for split m{/}, substr($pointer, 2);
		$x = $y;
	}
	return ($x, $pointer);
}

# check one answer: $r the response, $op_key "get /v1/events", or a
# components response pointer for answers outside every operation
sub check {
	my ($name, $r, $tpl, $method, %o) = @_;
	my ($resp, $rptr);
	my $status = $r->status;
	ok($status, "$name: answered") or return diag($r->describe);
	is($status, $o{status}, "$name: status $o{status}") or diag($r->describe)
		if $o{status};

	if ($o{response}) {
		($resp, $rptr) = deref({ '$ref' => $o{response} });
	} else {
		my $op = $DOC->{paths}{$tpl}{$method};
		ok($op, "$name: $method $tpl is in the document") or return;
		my $resps = $op->{responses};
		my $key = exists $resps->{$status} ? $status
			: exists $resps->{substr($status, 0, 1) . 'XX'} ? substr($status, 0, 1) . 'XX'
			: exists $resps->{default} ? 'default' : undef;
		ok(defined $key && $key ne 'default' || $status >= 500,
			"$name: status $status is documented for $method $tpl");
		return unless defined $key;
		$produced{"$method $tpl"}{$key} = 1;
		$rptr = '#/' . ptr('paths', $tpl, $method, 'responses', $key);
		($resp, my $p) = deref($resps->{$key});
		$rptr = $p if $p;
	}

	# the body: against the schema of its status and type
	my $type = $r->header('Content-Type') // '';
	(my $media = lc $type) =~ s/\s*;.*//;
	if (length $r->body) {
		my $content = $resp->{content} || {};
		ok(exists $content->{$media}, "$name: $media is a documented type of $status")
			or return;
		like($type, qr/charset=utf-8/, "$name: charset=utf-8")
			if $media =~ m{json|html};
		my $instance = $media =~ /json/ ? json_decode($r->body) : $r->body;
		ok(defined $instance, "$name: the body is $media") or return;
		push @cases, { name => $name, pointer => "$rptr/content/"
			. ptr($media) . '/schema', instance => $instance };
	} else {
		ok($method eq 'head' || $status == 204 || $status == 304,
			"$name: no body only where none is due");
	}

	# the headers it documents
	for my $h (sort keys %{ $resp->{headers} || {} }) {
		my ($hd, $hptr) = deref($resp->{headers}{$h});
		$hptr //= "$rptr/headers/" . ptr($h);
		my $v = $r->header($h);
		if ($hd->{required}) {
			ok(defined $v, "$name: header $h") or next;
		}
		next unless defined $v;
		push @cases, { name => "$name: header $h", pointer => "$hptr/schema",
			instance => $v, coerce => JSON::PP::true };
	}
	return $r;
}

my $J = ['Content-Type' => 'application/json'];

sub post {
	my ($path, $body, %o) = @_;
	return $t->request('POST', $path, body => ref $body ? json_encode($body) : $body,
		headers => [@{ $o{type} || $J }, @{ $o{headers} || [] }],
		port => $o{port});
}

# seed
for my $i (1 .. 5) {
	is(post('/v1/events', { entityId => 'ent-a', eventType => 'api_request',
		value => $i, id => "seed-$i" })->status, 201, "seed $i");
}

# --- POST /v1/events -------------------------------------------------------

my $E = '/v1/events';
check('POST 201', post($E, { entityId => 'ent-b', eventType => 'tokens',
	value => 512, id => 'req-1', metadata => { endpoint => '/search' } }),
	$E, 'post', status => 201);
check('POST 200 duplicate', post($E, { entityId => 'ent-b', eventType => 'tokens',
	id => 'req-1' }), $E, 'post', status => 200);
check('POST CloudEvent 201', post($E, { specversion => '1.0', id => 'ce-1',
	source => 'test', type => 'tokens', subject => 'ent-c', data => { value => 3 } },
	type => ['Content-Type' => 'application/cloudevents+json']), $E, 'post', status => 201);
check('POST CloudEvents batch 201', post($E, [{ specversion => '1.0', id => 'ce-2',
	source => 'test', type => 'tokens', subject => 'ent-c' }],
	type => ['Content-Type' => 'application/cloudevents-batch+json']), $E, 'post', status => 201);
check('POST 400', post($E, '{}'), $E, 'post', status => 400);
check('POST 400 malformed', post($E, '{'), $E, 'post', status => 400);
check('POST 400 CloudEvent', post($E, { specversion => '2.0' },
	type => ['Content-Type' => 'application/cloudevents+json']), $E, 'post', status => 400);
check('POST 413', post($E, '{"m":"' . ('x' x 70000) . '"}'), $E, 'post', status => 413);
check('POST 415', post($E, 'a=b', type => ['Content-Type' => 'text/plain']),
	$E, 'post', status => 415);
check('POST 415 encoding', post($E, '{}', headers => ['Content-Encoding' => 'gzip']),
	$E, 'post', status => 415);
check('POST 401', post($E, { entityId => 'ent-a', eventType => 'x' }, port => $P2),
	$E, 'post', status => 401);
check('POST 403', post($E, { entityId => 'ent-z', eventType => 'x' }, port => $P2,
	headers => ['X-Api-Key' => $KEY{client}]), $E, 'post', status => 403);
check('POST 201 tiny', post($E, { entityId => 'one', eventType => 'a' }, port => $port3),
	$E, 'post', status => 201);
check('POST 429 ENTITY_LIMIT', post($E, { entityId => 'one', eventType => 'b' },
	port => $port3), $E, 'post', status => 429);
check('POST 507', post($E, { entityId => 'two', eventType => 'a',
	metadata => { pad => 'y' x 2000 } }, port => $port3), $E, 'post', status => 507);

# --- POST /v1/events/batch -------------------------------------------------

my $B = '/v1/events/batch';
check('batch 201', post($B, { events => [{ entityId => 'ent-b', eventType => 'tokens',
	id => 'b-1' }, { entityId => 'ent-b', eventType => 'tokens' }] }), $B, 'post', status => 201);
check('batch 200', post($B, { events => [{ entityId => 'ent-b', eventType => 'tokens',
	id => 'b-1' }] }), $B, 'post', status => 200);
my $r = check('batch 400 details', post($B, { events => [{ entityId => 'ent-b',
	eventType => 'x' }, { entityId => '', eventType => 7 }] }), $B, 'post', status => 400);
is(ref(($r && $r->err->{details}) // ''), 'ARRAY', 'batch 400 has details');
check('batch 400 not a batch', post($B, '[]'), $B, 'post', status => 400);
check('batch CloudEvents 201', post($B, [{ specversion => '1.0', id => 'ce-3',
	source => 's', type => 't', subject => 'ent-c' }],
	type => ['Content-Type' => 'application/cloudevents-batch+json']), $B, 'post', status => 201);
check('batch 413', post($B, { events => [{ entityId => 'x', eventType => 'y',
	metadata => { pad => 'z' x 5000 } }] }, port => $port3), $B, 'post', status => 413);
check('batch 415', post($B, 'x', type => ['Content-Type' => 'text/csv']), $B, 'post',
	status => 415);
check('batch 401', post($B, { events => [] }, port => $P2), $B, 'post', status => 401);
check('batch 403', post($B, { events => [{ entityId => 'ent-z', eventType => 'x' }] },
	port => $P2, headers => ['X-Api-Key' => $KEY{client}]), $B, 'post', status => 403);
check('batch 429', post($B, { events => [{ entityId => 'one', eventType => 'c' }] },
	port => $port3), $B, 'post', status => 429);
$r = check('batch 413 half of the log', post($B, { events => [{ entityId => 'three',
	eventType => 'a', metadata => { pad => 'w' x 2000 } }] }, port => $port3), $B, 'post',
	status => 413);
like($r ? $r->err->{message} : '', qr/more than half/, 'a batch over half of the raw log');

# --- GET /v1/events --------------------------------------------------------

check('list 200 offset', $t->get("$E?entityId=ent-a&limit=2&offset=1"), $E, 'get', status => 200);
$r = check('list 200 cursor', $t->get("$E?entityId=ent-a&limit=2&cursor="), $E, 'get',
	status => 200);
my $next = $r ? $r->data->{pagination}{nextCursor} : undef;
ok(defined $next, 'a first cursor page has a nextCursor');
$next //= 'x' x 60;
$r = check('list 200 next page', $t->get("$E?entityId=ent-a&limit=2&cursor=$next"),
	$E, 'get', status => 200);
check('list 200 last page', $t->get("$E?entityId=ent-a&limit=1000&cursor="), $E, 'get',
	status => 200);
check('list 400 limit', $t->get("$E?limit=0"), $E, 'get', status => 400);
my %cursor_errors = (
	"cursor=&offset=0" => 'cursor cannot be combined with offset',
	"cursor=abc" => 'cursor is malformed',
	"cursor=" . (substr($next, 0, 59) . (substr($next, 59) eq 'A' ? 'B' : 'A'))
		=> 'cursor was not issued by this service',
	"entityId=ent-b&cursor=$next" => 'cursor was issued for other filters',
);
for my $q (sort keys %cursor_errors) {
	$r = check("list 400 $cursor_errors{$q}", $t->get("$E?$q"), $E, 'get', status => 400);
	is($r && $r->err->{code}, 'INVALID_CURSOR', "INVALID_CURSOR: $cursor_errors{$q}");
	is($r && $r->err->{message}, $cursor_errors{$q}, "message: $cursor_errors{$q}");
}
check('list 401', $t->get($E, port => $P2), $E, 'get', status => 401);
check('list 403', $t->get("$E?entityId=ent-b", port => $P2,
	headers => ['X-Api-Key' => $KEY{client}]), $E, 'get', status => 403);
check('list 200 key', $t->get($E, port => $P2, headers => ['X-Api-Key' => $KEY{client}]),
	$E, 'get', status => 200);
check('HEAD list', $t->head("$E?limit=1"), $E, 'head', status => 200);
check('HEAD list 400', $t->head("$E?limit=x"), $E, 'head', status => 400);

# --- the entities ranked ----------------------------------------------------

my $N = '/v1/entities';
$r = check('ranking 200', $t->get("$N?limit=1"), $N, 'get', status => 200);
my $rank_next = $r ? $r->data->{pagination}{nextCursor} : undef;
ok(defined $rank_next, 'a ranking page has a nextCursor');
$rank_next //= 'x';
check('ranking 200 next page', $t->get("$N?limit=1&cursor=$rank_next"), $N, 'get',
	status => 200);
check('ranking 200 by value, range', $t->get("$N?sort=value&since=2020&until=2099"),
	$N, 'get', status => 200);
check('ranking 400 sort', $t->get("$N?sort=x&limit=0"), $N, 'get', status => 400);
for my $q ("cursor=abc", "sort=value&cursor=$rank_next") {
	$r = check("ranking 400 $q", $t->get("$N?$q"), $N, 'get', status => 400);
	is($r && $r->err->{code}, 'INVALID_CURSOR', "ranking: INVALID_CURSOR for $q");
}
check('ranking 401', $t->get($N, port => $P2), $N, 'get', status => 401);
check('ranking 200 key', $t->get($N, port => $P2, headers => ['X-Api-Key' => $KEY{client}]),
	$N, 'get', status => 200);
check('HEAD ranking', $t->head($N), $N, 'head', status => 200);

# --- usage: stats, summary, history ----------------------------------------

my $S = '/v1/usage/stats';
check('stats 200', $t->get($S), $S, 'get', status => 200);
check('stats 401', $t->get($S, port => $P2), $S, 'get', status => 401);
check('stats 403', $t->get($S, port => $P2, headers => ['X-Api-Key' => $KEY{client}]),
	$S, 'get', status => 403);
check('stats 200 admin', $t->get($S, port => $P2, headers => ['X-Api-Key' => $KEY{admin}]),
	$S, 'get', status => 200);
check('stats 200 tiny', $t->get($S, port => $port3), $S, 'get', status => 200);
check('stats 429', $t->get($S, port => $port3), $S, 'get', status => 429);
check('HEAD stats', $t->head($S), $S, 'head', status => 200);

my $U = '/v1/usage/{entityId}';
check('summary 200', $t->get('/v1/usage/ent-a'), $U, 'get', status => 200);
check('summary 200 range', $t->get('/v1/usage/ent-a?since=2020-01-01&until=2099'),
	$U, 'get', status => 200);
check('summary 200 unknown', $t->get('/v1/usage/' . pct('nobody here')), $U, 'get',
	status => 200);
check('summary 400 since', $t->get('/v1/usage/ent-a?since=yesterday'), $U, 'get',
	status => 400);
$r = check('summary 400 INVALID_PATH', $t->get('/v1/usage/%2e%2e'), $U, 'get', status => 400);
is($r && $r->err->{code}, 'INVALID_PATH', 'a dot segment is INVALID_PATH');
check('summary 401', $t->get('/v1/usage/ent-a', port => $P2), $U, 'get', status => 401);
check('summary 403', $t->get('/v1/usage/ent-b', port => $P2,
	headers => ['X-Api-Key' => $KEY{client}]), $U, 'get', status => 403);
check('HEAD summary', $t->head('/v1/usage/ent-a'), $U, 'head', status => 200);

my $H = '/v1/usage/{entityId}/history';
check('history 200', $t->get('/v1/usage/ent-a/history?interval=minute'), $H, 'get',
	status => 200);
check('history 200 day', $t->get('/v1/usage/ent-b/history?interval=day'), $H, 'get',
	status => 200);
check('history 400', $t->get('/v1/usage/ent-a/history?interval=week'), $H, 'get',
	status => 400);
check('history 401', $t->get('/v1/usage/ent-a/history', port => $P2), $H, 'get',
	status => 401);
check('history 403', $t->get('/v1/usage/ent-b/history', port => $P2,
	headers => ['X-Api-Key' => $KEY{client}]), $H, 'get', status => 403);
check('HEAD history', $t->head('/v1/usage/ent-a/history'), $H, 'head', status => 200);

# --- service routes --------------------------------------------------------

for my $p ('/health', '/ready', '/info', '/', '/docs', '/openapi.json') {
	check("GET $p", $t->get($p), $p, 'get', status => 200);
	check("HEAD $p", $t->head($p), $p, 'head', status => 200);
	check("GET $p 401", $t->get($p, port => $P2), $p, 'get', status => 401);
	check("GET $p with a key", $t->get($p, port => $P2,
		headers => ['X-Api-Key' => $KEY{admin}]), $p, 'get', status => 200);
}
check('info 403', $t->get('/info', port => $P2, headers => ['X-Api-Key' => $KEY{client}]),
	'/info', 'get', status => 403);
check('health, another zone', $t->get('/health', port => $port3), '/health', 'get',
	status => 200);

# a worker looks at the drain file at most once a second
$t->write_file('drain', '');
Time::HiRes::sleep(1.2);
check('ready 503 draining', $t->get('/ready'), '/ready', 'get', status => 503);
check('HEAD ready 503', $t->head('/ready'), '/ready', 'head', status => 503);
unlink $t->dir . '/drain';

my $html = ['Accept' => 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'];
$r = check('docs HTML', $t->get('/docs', headers => $html), '/docs', 'get', status => 200);
my $etag = $r && $r->header('ETag');
check('docs HTML 304', $t->get('/docs', headers => [@$html, 'If-None-Match' => $etag // '""']),
	'/docs', 'get', status => 304);
check('HEAD docs HTML', $t->head('/docs', headers => $html), '/docs', 'head', status => 200);
check('HEAD docs HTML 304', $t->head('/docs', headers => [@$html,
	'If-None-Match' => $etag // '""']), '/docs', 'head', status => 304);
$r = check('openapi.json', $t->get('/openapi.json'), '/openapi.json', 'get', status => 200);
$etag = $r && $r->header('ETag');
check('openapi.json 304', $t->get('/openapi.json', headers => ['If-None-Match' => $etag]),
	'/openapi.json', 'get', status => 304);
check('HEAD openapi.json 304', $t->head('/openapi.json', headers => ['If-None-Match' => $etag]),
	'/openapi.json', 'head', status => 304);
check('openapi.json 200 other ETag', $t->get('/openapi.json',
	headers => ['If-None-Match' => '"0000000000000000"']), '/openapi.json', 'get', status => 200);

# the dashboard's page: no key needed to load it, where the API needs one
$r = check('dashboard', $t->get('/dashboard'), '/dashboard', 'get', status => 200);
$etag = $r && $r->header('ETag');
check('dashboard 304', $t->get('/dashboard', headers => ['If-None-Match' => $etag // '""']),
	'/dashboard', 'get', status => 304);
check('HEAD dashboard', $t->head('/dashboard'), '/dashboard', 'head', status => 200);
check('dashboard without a key', $t->get('/dashboard', port => $P2), '/dashboard', 'get',
	status => 200);
check('HEAD dashboard 304', $t->head('/dashboard', port => $P2,
	headers => ['If-None-Match' => $etag // '""']), '/dashboard', 'head', status => 304);

# --- metrics ---------------------------------------------------------------

check('metrics', $t->get('/metrics'), '/metrics', 'get', status => 200);
check('HEAD metrics', $t->head('/metrics'), '/metrics', 'head', status => 200);
check('metrics 405', $t->request('POST', '/metrics', body => '{}', headers => $J),
	'/metrics', 'get', status => 405);

# --- preflights, 404, 405 --------------------------------------------------

for my $tpl (sort keys %{ $DOC->{paths} }) {
	next unless $DOC->{paths}{$tpl}{options};
	(my $path = $tpl) =~ s/\{entityId\}/ent-a/;
	check("OPTIONS $tpl", $t->options($path, headers => [Origin => 'http://app.test',
		'Access-Control-Request-Method' => 'POST',
		'Access-Control-Request-Headers' => 'content-type']), $tpl, 'options', status => 204);
}
check('OPTIONS 400', $t->options('/v1/usage/%2e%2e'), $U, 'options', status => 400);
check('OPTIONS /v1/events 400', $t->options('/v1/events/%2e%2e/x'), $E, 'options',
	status => 400);
check('a preflight without a key', $t->options('/v1/events', port => $P2,
	headers => ['Access-Control-Request-Method' => 'POST']), $E, 'options', status => 204);
check('OPTIONS, no preflight, without a key', $t->options('/v1/events', port => $P2), $E,
	'options', status => 401);

check('404', $t->get('/nope'), undef, undef, status => 404,
	response => '#/components/responses/NotFound');
check('404 below a route', $t->get('/v1/events/x'), undef, undef, status => 404,
	response => '#/components/responses/NotFound');
for my $m (['DELETE', '/v1/events'], ['PUT', '/openapi.json'], ['POST', '/docs'],
	['GET', '/v1/events/batch'], ['PATCH', '/v1/usage/ent-a'])
{
	check("$m->[0] $m->[1] 405", $t->request($m->[0], $m->[1], body => '{}', headers => $J),
		undef, undef, status => 405, response => '#/components/responses/MethodNotAllowed');
}

###############################################################################
# the validator: every case above, and wrong answers it must refuse

my $good = $t->get('/health')->json;
my %bad = (
	'health without status' => ['#/components/schemas/Health',
		{ map { $_ => $good->{$_} } grep { $_ ne 'status' } keys %$good }],
	'health with a field more' => ['#/components/schemas/Health', { %$good, extra => 1 }],
	'health with another status' => ['#/components/schemas/Health', { %$good, status => 'ok' }],
	'a page with both paginations' => ['#/components/schemas/EventList',
		{ events => [], pagination => { total => 0, limit => 1, offset => 0, hasMore => JSON::PP::false,
			nextCursor => undef } }],
	'a cursor of 59 characters' => ['#/components/schemas/CursorPagination',
		{ limit => 1, nextCursor => 'a' x 59, hasMore => JSON::PP::true }],
	'a 400 with NOT_FOUND' => ['#/components/responses/BadRequest/content/application~1json/schema',
		{ error => { code => 'NOT_FOUND', message => 'x', traceId => 't' } }],
	'an unknown error code' => ['#/components/schemas/Error',
		{ error => { code => 'OOPS', message => 'x', traceId => 't' } }],
	'a timestamp that is no date-time' => ['#/components/schemas/Health',
		{ %$good, timestamp => 'yesterday' }],
);
my @negative = map { { name => "bad: $_", pointer => $bad{$_}[0], instance => $bad{$_}[1] } }
	sort keys %bad;
push @negative, { name => 'bad: a Cache-Control header of another value',
	pointer => '#/components/headers/Cache-Control/schema', instance => 'max-age=60',
	coerce => JSON::PP::true };
my @positive = ({ name => 'good: /health', pointer => '#/components/schemas/Health',
	instance => $good });

$t->write_file('cases.json', json_encode([@cases, @negative, @positive]));
$t->write_file('openapi.json', $doc_text);
my $out = `node $FindBin::Bin/lib/openapi-check.cjs ${\ $t->dir}/openapi.json ${\ $t->dir}/cases.json 2>&1`;
my $results = json_decode($out);
ok(ref $results eq 'ARRAY' && @$results == @cases + @negative + @positive,
	'ajv checked every case') or diag($out);
for my $res (@{ $results || [] }) {
	if ($res->{name} =~ /^bad: /) {
		ok(!$res->{ok}, "the validator refuses $res->{name}");
	} else {
		ok($res->{ok}, "valid: $res->{name}")
			or diag(json_encode($res->{errors}));
	}
}
cmp_ok(scalar @cases, '>=', 300, scalar(@cases) . ' answers and headers validated');

# every operation requested, and which documented statuses were seen
for my $tpl (sort keys %{ $DOC->{paths} }) {
	for my $m (grep { /^(get|head|post|options|put|patch|delete)$/ } sort keys %{ $DOC->{paths}{$tpl} }) {
		my $seen = $produced{"$m $tpl"};
		ok($seen, "$m $tpl was requested") or next;
		my @missing = grep { !$seen->{$_} && !/^(default|5)/ }
			sort keys %{ $DOC->{paths}{$tpl}{$m}{responses} };
		note("$m $tpl: not produced here: @missing") if @missing;
	}
}
my %must = ('post /v1/events' => [qw(200 201 400 401 403 413 415 429 507)],
	'post /v1/events/batch' => [qw(200 201 400 401 403 413 415 429)],
	'get /v1/events' => [qw(200 400 401 403)], 'get /v1/usage/stats' => [qw(200 401 403 429)],
	'options /v1/events' => [qw(204 400 401)], 'get /v1/usage/{entityId}' => [qw(200 400 401 403)],
	'get /ready' => [qw(200 503)], 'get /docs' => [qw(200 304)],
	'get /openapi.json' => [qw(200 304)], 'get /v1/entities' => [qw(200 400 401)]);
for my $k (sort keys %must) {
	is_deeply([grep { $produced{$k}{$_} } @{ $must{$k} }], $must{$k}, "$k: answered @{ $must{$k} }");
}

###############################################################################
# the /docs JSON and the document name the same routes

my $list = $t->get('/docs')->json;
my %doc_ops = map { my $p = $_; map { (uc($_) . " $p" => 1) } grep { /^(get|post)$/ }
	keys %{ $DOC->{paths}{$p} } } keys %{ $DOC->{paths} };
my %json_ops = map { ("$_->{method} $_->{path}" => 1) } @{ $list->{routes} || [] };
delete $doc_ops{'GET /metrics'};     # another location's: usage_metrics
is_deeply([sort keys %json_ops], [sort keys %doc_ops],
	'the /docs JSON lists the GET and POST operations of the document');
my ($list_op) = grep { $_->{path} eq '/v1/events' && $_->{method} eq 'GET' } @{ $list->{routes} };
my @doc_query = sort map { (deref($_))[0] } @{ $DOC->{paths}{'/v1/events'}{get}{parameters} };
is_deeply([sort @{ $list_op->{query} }],
	[sort map { $_->{name} } grep { $_->{in} eq 'query' } @doc_query],
	'GET /v1/events: the same query parameters');

###############################################################################
# /openapi.json and /docs

$r = $t->get('/openapi.json');
is($r->body, $doc_text, '/openapi.json is assets/openapi.json');
is($r->header('Content-Type'), 'application/json; charset=utf-8', '/openapi.json type');
is($r->header('Content-Length'), length $doc_text, '/openapi.json length');
like($r->header('ETag') // '', qr/^"[0-9a-f]{16}"\z/, '/openapi.json strong ETag');
is($t->head('/openapi.json')->body, '', 'HEAD /openapi.json: no body');
is($t->get('/OpenAPI.json/')->status, 200, 'route words case-insensitive, a trailing slash');

for my $accept (undef, 'application/json', '*/*', 'text/html;q=0.5, application/json',
	'application/json, text/html', 'text/html;q=0, */*', 'image/png')
{
	my $what = $accept // 'no Accept';
	$r = $t->get('/docs', headers => [defined $accept ? (Accept => $accept) : ()]);
	is($r->header('Content-Type'), 'application/json; charset=utf-8', "/docs, $what: JSON");
	is_deeply($r->json, $list, "/docs, $what: the list of routes");
	is($r->header('Content-Security-Policy'), "default-src 'none'; frame-ancestors 'none'",
		"/docs, $what: the API's CSP");
	like($r->header('Vary') // '', qr/\bAccept\b/, "/docs, $what: Vary: Accept");
}

for my $accept ('text/html', 'text/html,application/xhtml+xml,*/*;q=0.8',
	'application/json;q=0.9, text/html', 'TEXT/HTML; charset=utf-8', 'text/*')
{
	$r = $t->get('/docs', headers => [Accept => $accept]);
	is($r->header('Content-Type'), 'text/html; charset=utf-8', "/docs, $accept: HTML");
}

$r = $t->get('/docs', headers => $html);
my $page = $r->body;
my $csp = $r->header('Content-Security-Policy') // '';
my ($style) = $page =~ m{<style>(.*?)</style>}s;
my $hash = sha256_base64($style // '');
$hash .= '=' x ((4 - length($hash) % 4) % 4);
is($csp, "default-src 'none'; style-src 'sha256-$hash'; base-uri 'none'; "
	. "form-action 'none'; frame-ancestors 'none'", 'the page\'s CSP allows its own style only');
is(scalar(() = $page =~ /<style>/g), 1, 'one inline style');
unlike($page, qr/<script|<link|<img|<iframe|<object|<embed|<form|\bsrc\s*=|\@import|url\(/i,
	'no script, no fetched resource');
my @hrefs = $page =~ /href="([^"]*)"/g;
is_deeply([grep { !/^#[A-Za-z0-9_-]+\z/ } @hrefs], [], 'every link is inside the page');
my %ids = map { $_ => 1 } $page =~ /id="([^"]+)"/g;
is_deeply([grep { !$ids{ substr($_, 1) } } @hrefs], [], 'every link has its target');
like($page, qr/prefers-color-scheme: dark/, 'a dark palette');
for my $p (sort keys %{ $DOC->{paths} }) {
	for my $m (grep { ref $DOC->{paths}{$p}{$_} eq 'HASH' } sort keys %{ $DOC->{paths}{$p} }) {
		my $id = $DOC->{paths}{$p}{$m}{operationId};
		ok($ids{"op-$id"}, "the page has $m $p");
	}
}
for my $c (@{ $DOC->{components}{schemas}{ErrorCode}{oneOf} }) {
	like($page, qr/<code>\Q$c->{const}\E<\/code>/, "the page names $c->{const}");
}
like($page, qr/INVALID_CURSOR/, 'the page names INVALID_CURSOR');
like($page, qr/nextCursor/, 'the page has the cursor pagination');

$t->done_testing();
