#!/usr/bin/perl

# conf/nginx.prod.conf, the image's configuration, with only its port,
# module path and directories replaced (t/lib/Test/UsageProd.pm): nginx -t
# passes; usage_drain_file, usage_retry_after, usage_metrics (with
# usage_track off) and usage_api_keys (the key file, no map of keys) are
# on, where the README says; the API needs a known X-Api-Key, compared byte
# for byte (401 JSON with WWW-Authenticate otherwise, also for an unknown
# key, a longer one or one in another case; a CORS preflight needs none);
# /health and /ready need no key and are not tracked; a key reads and
# records only its entity (403 FORBIDDEN JSON for another one's summary,
# history, list filter and POST, nothing stored; the list without a filter
# is its own; stats and /info refused, also to a client named "Admin" with
# role client), a role-admin key for "*" reads every entity and the
# stats; a burst of one client (limit_req on $usage_api_client) gets 429
# RATE_LIMITED JSON
# with Retry-After while another client is still served; bodies over 16k
# are 413 JSON; JSON is gzipped; /metrics answers loopback with an
# exposition promtool accepts, holding every metric the README's alarms
# use, and scrapes are not counted as traffic; the drain file under the run
# directory turns /ready 503 "draining" and closes API connections while
# they are served, and its removal makes the task ready again within about
# a second; the access log on stdout is one JSON object a line with the
# trace id, timings, sizes, upstream and address fields; probes are not
# logged when they succeed; X-Forwarded-For is ignored from an untrusted
# peer and, from a trusted one, gives the last untrusted address (so
# /metrics is denied to a client behind the balancer and served to a
# scraper in the VPC); the state file is written on stop.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Select;
use Test::More;
use Test::Usage qw(json_decode wait_until);
use Test::UsageProd qw(prod_conf prod_conf_path);
use Time::HiRes qw(sleep time);

my $t = Test::Usage->new();
my $root = $t->dir;

my %KEY = (
	client => 'k-client-7f3a9c0e6b8d2a41',    # client-1, role client
	client2 => 'k-client2-9d41e7b6d07c51a9',  # client-2, role client
	burst => 'k-burst-52be01e5d9f2c4a8',      # burster, role client
	admin => 'k-admin-c0ffee3c6b0a17e5',      # ops: "*", role admin
	Admin => 'k-Admin-5a8d1f03c7e9b4a2',      # Admin: its entity, client
);

my $conf = prod_conf(root => $root, port => $t->port, module => $t->module,
	workers => 2);
$t->write_file("$root/etc/api-keys", join '',
	"$KEY{client}  client-1  client-1  client\n",
	"$KEY{client2}  client-2  client-2  client\n",
	"$KEY{burst}  burster  burster  client\n",
	"$KEY{admin}  ops  *  admin\n",
	"$KEY{Admin}  Admin  Admin  client\n");

###############################################################################
# static: what the shipped file promises

my $shipped = do { local (@ARGV, $/) = prod_conf_path(); <> };
like($shipped, qr/^worker_processes auto;/m, 'worker_processes auto');
my ($ka) = $shipped =~ /^\s*keepalive_timeout (\d+)s;/m;
ok(($ka // 0) > 60, "keepalive_timeout ${\($ka // '?')}s outlasts the balancer's 60 s");
my ($kr) = $shipped =~ /^\s*keepalive_requests (\d+);/m;
ok(($kr // 0) >= 1000, 'keepalive_requests high');
for my $net ('10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16') {
	like($shipped, qr{^\s*set_real_ip_from \Q$net\E;\s+# your VPC ranges}m,
		"set_real_ip_from $net (your VPC ranges)");
}
like($shipped, qr/^\s*real_ip_header X-Forwarded-For;/m, 'real_ip_header');
like($shipped, qr/^\s*real_ip_recursive on;/m, 'real_ip_recursive on');
unlike($shipped, qr/^\s*(daemon|user)\b/m,
	'no daemon nor user directive (the CMD and USER decide)');

# the module's directives, each where the README ("Deploying") puts it
unlike($shipped, qr/ISSUE5/, 'no directive left commented out for later');
my ($http_level) = $shipped =~ /^http \{\n(.*?)^    server \{/ms;
like($http_level // '', qr{^    usage_drain_file /run/nginx-usage/drain;$}m,
	'usage_drain_file in the run directory, for the whole http block');
like($http_level // '', qr{^    usage_retry_after 1s;$}m,
	'usage_retry_after 1s for the whole http block');
my ($metrics_loc) = $shipped =~ /^        location = \/metrics \{\n(.*?)^        \}/ms;
like($metrics_loc // '', qr/^\s*usage_metrics usage;$/m,
	'usage_metrics usage in location = /metrics');
like($metrics_loc // '', qr/^\s*usage_track off;$/m, 'scrapes are not tracked');
like($metrics_loc // '', qr/^\s*allow 127\.0\.0\.1;.*^\s*deny all;$/ms,
	'/metrics: loopback and the VPC ranges, nobody else');
my ($api_loc) = $shipped =~ /^        location \/ \{\n(.*?)^        \}/ms;
like($api_loc // '', qr{^\s*usage_api_keys /etc/nginx-usage/api-keys;$}m,
	'usage_api_keys /etc/nginx-usage/api-keys in the API location');
unlike($shipped, qr/^\s*map\s+\$http_x_api_key\b/m,
	'no map of keys (map compares ignoring case)');
unlike($shipped, qr/^\s*usage_entity_scope\b|\$api_entity\b/m,
	'no entity scope derived from a client\'s name');
like($shipped, qr/^\s*limit_req_zone \$usage_api_client zone=per_client:/m,
	'the rate limit counts per $usage_api_client');

###############################################################################
# nginx -t

my ($code, $out) = $t->check_config($conf);
is($code, 0, 'nginx -t passes on the production configuration')
	or diag $out;

###############################################################################
# running

$t->write_config($conf)->run();

sub key { (headers => ['X-Api-Key' => $KEY{ $_[0] }, @{ $_[1] || [] }]) }

sub as {
	my ($who, $method, $path, %o) = @_;
	return $t->request($method, $path, %o,
		headers => ['X-Api-Key' => $KEY{$who}, @{ $o{headers} || [] }]);
}

sub is_json_error {
	my ($r, $status, $code, $name) = @_;
	is($r->status, $status, "$name: $status") or diag $r->describe;
	is($r->header('Content-Type'), 'application/json; charset=utf-8',
		"$name: JSON");
	is($r->err->{code}, $code, "$name: $code");
	ok(length($r->err->{traceId} // '')
		&& $r->err->{traceId} eq ($r->trace_id // ''), "$name: traceId");
}

# health and readiness: no key, answered
my $r = $t->get('/health', headers => ['X-Trace-Id' => 'probe-ok']);
is($r->status, 200, '/health without a key: 200') or diag $r->describe;
is($r->json && $r->json->{status}, 'healthy', '/health healthy');
is($r->json && $r->json->{service}, 'usage-metrics-api', 'service name');
$r = $t->get('/ready');
is($r->status, 200, '/ready without a key: 200');
is($r->json && $r->json->{status}, 'ready', '/ready ready');

# the API: 401 without a key, with an unknown one, with an empty one
is_json_error($t->get('/v1/usage/stats'), 401, 'UNAUTHORIZED', 'no key');
$r = $t->post_json('/v1/events', { entityId => 'x', eventType => 'y' });
is_json_error($r, 401, 'UNAUTHORIZED', 'POST without a key');
like($r->header('WWW-Authenticate') // '', qr/^ApiKey header="X-Api-Key"$/,
	'401 names the header');
is_json_error($t->get('/v1/usage/stats', headers => ['X-Api-Key' => 'nope']),
	401, 'UNAUTHORIZED', 'unknown key');
is_json_error($t->get('/v1/usage/stats', headers => ['X-Api-Key' => '']),
	401, 'UNAUTHORIZED', 'empty key');
is($t->get('/', headers => ['X-Api-Key' => "$KEY{client}x"])->status, 401,
	'a longer key is another key');
is($t->get('/', headers => ['X-Api-Key' => substr($KEY{client}, 0, -1)])
	->status, 401, 'a shorter key is another key');
is_json_error($t->get('/v1/usage/client-1',
	headers => ['X-Api-Key' => uc $KEY{client}]), 401, 'UNAUTHORIZED',
	'an upper-cased key');
is($t->get('/v1/usage/stats', headers => ['X-Api-Key' => lc $KEY{Admin}])
	->status, 401, 'a lower-cased key');
$r = $t->options('/v1/events', headers => ['Origin' => 'https://app.example',
	'Access-Control-Request-Method' => 'POST',
	'Access-Control-Request-Headers' => 'x-api-key,content-type']);
is($r->status, 204, 'CORS preflight without a key: 204') or diag $r->describe;

# with a key: its client's own entity
$r = $t->post_json('/v1/events', { entityId => 'client-1', eventType => 'call',
	id => 'p-1' }, key('client'));
is($r->status, 201, 'POST with a key: 201') or diag $r->describe;
$r = $t->post_json('/v1/events', { entityId => 'client-1', eventType => 'call',
	id => 'p-1' }, key('client'));
is($r->status, 200, 'the same id again: 200');
$r = $t->get('/v1/usage/client-1', key('client'));
is($r->status, 200, 'GET with a key: 200');
is($r->data->{totalEvents}, 1, 'the event is counted once');
is($t->get('/v1/usage/stats', key('admin'))->status, 200,
	'another client\'s key works too');

# bodies over 16k
$r = $t->post_json('/v1/events', { entityId => 'client-1', eventType => 'big',
	metadata => { pad => 'x' x 17000 } }, key('client'));
is_json_error($r, 413, 'PAYLOAD_TOO_LARGE', 'a 17k body');

# a batch may take up to 1 MB, with the same key and scope
my @batch = map { { entityId => 'batched', eventType => 'b',
	metadata => { pad => 'x' x 150 } } } 1 .. 500;
$r = $t->post_json('/v1/events/batch', { events => \@batch }, key('admin'));
is($r->status, 201, 'a batch of 500 events (over 80k) with a key: 201')
	or diag $r->describe;
is($r->data->{stored}, 500, 'all stored');
is($t->post_json('/v1/events/batch', { events => \@batch })->status, 401,
	'a batch without a key: 401');
is_json_error($t->post_json('/v1/events/batch', { events => \@batch },
	key('client')), 403, 'FORBIDDEN', 'a batch of another entity');
is($t->get('/v1/usage/batched', key('admin'))->data->{totalEvents}, 500,
	'the 500 counted, none of the refused batches');

# gzip for JSON above 1 KB
for my $i (1 .. 12) {
	$t->post_json('/v1/events', { entityId => 'gz', eventType => 'call',
		metadata => { i => $i, text => 'lorem ipsum ' x 4 } }, key('admin'));
}
$r = $t->get('/v1/events?entityId=gz', key('admin', ['Accept-Encoding' => 'gzip']));
is($r->status, 200, 'a list of 12 events');
is($r->header('Content-Encoding'), 'gzip', 'gzipped');
like($r->header('Vary') // '', qr/Accept-Encoding/, 'Vary: Accept-Encoding');

###############################################################################
# entity scope: a client's key, its own entity only; admin, every one

for (1 .. 2) {
	is(as('client2', 'POST', '/v1/events',
		json => { entityId => 'client-2', eventType => 'call' })->status,
		201, 'client-2 records its own entity');
}
my $READ_1 = 'This API key may only read entity "client-1"';
for my $case (['GET', '/v1/usage/client-2', 'summary'],
	['GET', '/v1/usage/client-2/history', 'history'],
	['GET', '/v1/events?entityId=client-2', 'list filter'],
	['GET', '/v1/usage/stats', 'stats'],
	['GET', '/info', '/info'])
{
	my ($m, $path, $what) = @$case;
	(my $trace = "sc-$what") =~ s/\W+/-/g;
	$r = as('client', $m, $path, headers => ['X-Trace-Id' => $trace]);
	is_json_error($r, 403, 'FORBIDDEN', "client-1 key, client-2's $what");
	is($r->err->{traceId}, $trace, "$what: the given trace id");
	like($r->err->{message} // '', qr/^\Q$READ_1\E/, "$what: names the key's entity");
}
$r = as('client', 'POST', '/v1/events',
	json => { entityId => 'client-2', eventType => 'sneak' });
is_json_error($r, 403, 'FORBIDDEN', 'client-1 key, POST for client-2');
is($r->err->{message},
	'This API key may only record events for entity "client-1"',
	'POST 403: message');

$r = as('client', 'GET', '/v1/usage/client-1');
is($r->status, 200, 'client-1 key, its own summary');
is($r->data->{totalEvents}, 1, 'its own summary: its event');
is(as('client', 'GET', '/v1/usage/client-1/history')->status, 200,
	'client-1 key, its own history');
$r = as('client', 'GET', '/v1/events?entityId=client-1');
is($r->status, 200, 'client-1 key, its own list');
is($r->data->{pagination}{total}, 1, 'its own list: its event');
$r = as('client', 'GET', '/v1/events');
is($r->status, 200, 'client-1 key, the list without a filter');
is_deeply([sort { $a cmp $b } keys %{ { map { $_->{entityId} => 1 }
	@{ $r->data->{events} || [] } } }], ['client-1'],
	'the list without a filter: its own entity only');

$r = as('admin', 'GET', '/v1/usage/client-1');
is($r->status, 200, 'admin key reads client-1');
is($r->data->{totalEvents}, 1, 'admin: client-1 counted');
$r = as('admin', 'GET', '/v1/usage/client-2');
is($r->status, 200, 'admin key reads client-2');
is($r->data->{totalEvents}, 2, 'admin: client-2 counted, nothing sneaked in');
is(as('admin', 'GET', '/v1/events?entityId=client-2')->data->{pagination}{total},
	2, 'admin: client-2\'s list');
is(as('admin', 'GET', '/v1/usage/stats')->status, 200, 'admin: stats');
is(as('admin', 'GET', '/info')->status, 200, 'admin: /info');

# a client named "Admin" is a client: the role is the key file's column
$r = as('Admin', 'GET', '/v1/usage/stats');
is_json_error($r, 403, 'FORBIDDEN', 'client "Admin", role client: stats');
is($r->err->{message}, 'This API key may only read entity "Admin", not '
	. 'store-wide statistics', 'client "Admin": the message');
is(as('Admin', 'GET', '/info')->status, 403, 'client "Admin": /info');
is(as('Admin', 'GET', '/v1/usage/client-1')->status, 403,
	'client "Admin": another entity');
is(as('Admin', 'GET', '/v1/usage/Admin')->status, 200,
	'client "Admin": its own entity');

# /health and /ready are not tracked: the summary requests are.  A request
# is recorded in its log phase, after its answer: the k-th read counts the
# k summary requests before it once their log phases are done (a loaded
# machine may need another read), and the 10 probes never.
# The requests before may still be in their log phase (on another
# connection, in the other worker): the count is settled once a read
# counts only the read before it.
my $self_count = sub {
	$t->get('/v1/usage/api-self', key('admin'))->data->{totalEvents};
};
my $self0;
wait_until {
	my $before = $self_count->();
	$self0 = $self_count->();
	$self0 == $before + 1;
} 3;
$t->get('/health') for 1 .. 5;
$t->get('/ready') for 1 .. 5;
my ($self1, $reads) = (undef, 0);
wait_until {
	$reads++;
	$self1 = $self_count->();
	$self1 == $self0 + $reads;
} 3;
is($self1, $self0 + $reads, 'probes are not tracked (API requests are)');

# a burst from one client: 429 past rate + burst, JSON with Retry-After;
# others are served
my $c = $t->connect();
my ($ok, $limited);
for my $i (1 .. 2000) {
	$r = $c->request('GET', '/v1/usage/burster', keepalive => 1,
		headers => ['X-Api-Key' => $KEY{burst}, 'X-Trace-Id' => "burst-$i"]);
	if ($r->status == 429) { $limited = $r; last }
	last unless $r->status == 200;
	$ok++;
}
$c->close();
ok($limited, 'a burst is limited') or diag $r->describe;
is_json_error($limited // $r, 429, 'RATE_LIMITED', 'rate limit');
like(($limited // $r)->err->{traceId} // '', qr/^burst-\d+\z/,
	'rate limit: the request\'s own trace id');
is(($limited // $r)->header('Retry-After'), '1', 'rate limit: Retry-After: 1');
ok(($ok // 0) >= 200, "the burst of 200 is served first (${\($ok // 0)} were)");
is($t->get('/v1/usage/client-1', key('client'))->status, 200,
	'another client is not limited');

###############################################################################
# /metrics: from loopback, no key, not tracked

# { name => { labels => value } } of an exposition
sub samples {
	my ($text) = @_;
	my %v;
	for (split /\n/, $text // '') {
		$v{$1}{ $2 // '' } = $3 if /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/;
	}
	return \%v;
}

sub requests_total {
	my ($v) = @_;
	my $sum = 0;
	$sum += $_ for values %{ $v->{usage_http_requests_total} || {} };
	return $sum;
}

$r = $t->get('/metrics');
is($r->status, 200, '/metrics from 127.0.0.1, no key: 200') or diag $r->describe;
is($r->header('Content-Type'), 'text/plain; version=0.0.4; charset=utf-8',
	'/metrics: the exposition format');
my $m = samples($r->body);
ok(requests_total($m) > 0, 'the API\'s requests are counted');
is($t->get('/metrics', headers => ['X-Forwarded-For' => '198.51.100.7'])
	->status, 200, 'X-Forwarded-For from an untrusted peer changes nothing');
my $m2 = samples($t->get('/metrics')->body);
is(requests_total($m2), requests_total($m), 'scrapes are not counted as traffic');

$t->promtool_check($r->body);

# the README's alarms: every metric their PromQL names is exposed, with the
# labels they select on
my $readme = do { local (@ARGV, $/) = "$Test::UsageProd::REPO/README.md"; <> };
my ($alarms) = $readme =~ /^### Alarms\n(.*?)^###? /ms;
my @promql = ($alarms // '') =~ /^\|[^|\n]*\|\s*`([^`]+)`/mg;
ok(@promql >= 2, scalar(@promql) . ' alarm expressions in the README');
my %used = map { $_ => 1 } map { /\b(usage_\w+)/g } @promql;
ok(%used, 'the alarms use: ' . join(' ', sort keys %used));
for my $name (sort keys %used) {
	ok(exists $m->{$name}, "$name is exposed");
}
for my $sel (map { /\b(usage_\w+)\{([^}]*)\}/g ? [$1, $2] : () } @promql) {
	my ($name, $labels) = @$sel;
	for my $l (split /\s*,\s*/, $labels) {
		my ($k, $v) = $l =~ /^(\w+)="([^"]*)"$/ or next;
		ok(scalar(grep { /(?:^|,)\Q$k\E="\Q$v\E"/ } keys %{ $m->{$name} || {} }),
			"$name has $k=\"$v\" samples");
	}
}
ok(scalar(grep { /(?:^|,)le="/ }
	keys %{ $m->{usage_http_request_duration_seconds_bucket} || {} }) >= 10,
	'the duration histogram has its le buckets');
ok(scalar(grep { /(?:^|,)le="1"/ }
	keys %{ $m->{usage_http_request_duration_seconds_bucket} || {} }),
	'and a bucket at 1 s, the p95 alarm\'s threshold');

###############################################################################
# drain: the pre-stop step of a rolling deploy

# after a response, does the server close the connection?
sub closed {
	my ($conn) = @_;
	my $sock = $conn->sock or return 1;
	return 0 if length $conn->{buf};
	return 0 unless IO::Select->new($sock)->can_read(1);
	return !sysread($sock, my $buf, 4096);
}

# one request on a fresh keep-alive connection: (response, closed after)
sub ka {
	my ($who, $method, $path, %o) = @_;
	my $conn = $t->connect();
	my $res = $conn->request($method, $path, keepalive => 1, %o,
		headers => [($who ? ('X-Api-Key' => $KEY{$who}) : ()),
			@{ $o{headers} || [] }]);
	my $cl = closed($conn);
	$conn->close();
	return ($res, $cl);
}

my $drain = "$root/run/drain";
my ($res, $closed) = ka('client', 'GET', '/v1/usage/client-1');
is($res->header('Connection'), 'keep-alive', 'before the drain: keep-alive');
ok(!$closed, 'before the drain: the connection stays open');

$t->write_file($drain, '');
sleep 1.1;    # each worker looks at the file once a second
for my $i (1 .. 4) {
	($res, $closed) = ka(undef, 'GET', '/ready');
	is($res->status, 503, "draining: /ready 503 ($i)") or diag $res->describe;
	is_deeply(($res->json // {})->{checks},
		{ service => 'draining', store => 'ok' },
		"draining: checks.service draining ($i)");
	is($res->header('Connection'), 'close', "draining: /ready closes ($i)");
}
($res, $closed) = ka('client', 'GET', '/v1/usage/client-1');
is($res->status, 200, 'draining: the API still answers');
is($res->data->{totalEvents}, 1, 'draining: with the data');
is($res->header('Connection'), 'close', 'draining: Connection: close');
ok($closed, 'draining: the connection is closed after the response');
($res, $closed) = ka('client', 'POST', '/v1/events',
	json => { entityId => 'client-1', eventType => 'during-drain' });
is($res->status, 201, 'draining: a POST is stored');
is($res->header('Connection'), 'close', 'draining: POST, Connection: close');
is($t->get('/health')->status, 200, 'draining: /health stays 200');

unlink $drain or die "unlink $drain: $!\n";
my $t0 = time();
my $back = wait_until { $t->get('/ready')->status == 200 } 3;
my $took = time() - $t0;
ok($back, 'drain file removed: /ready 200 again');
ok($took <= 1.5, sprintf('within about a second (%.2f s)', $took));
sleep(($t0 + 1.15) - time()) if time() < $t0 + 1.15;
for my $i (1 .. 4) {
	($res, $closed) = ka(undef, 'GET', '/ready');
	is($res->status, 200, "after the drain: /ready 200 ($i)");
	is($res->header('Connection'), 'keep-alive', "after the drain: keep-alive ($i)");
}

###############################################################################
# the access log: JSON lines on stdout (the harness keeps nginx's stdout
# and stderr in stderr.log)

my @FIELDS = qw(time trace_id remote_addr realip_remote_addr
	x_forwarded_for api_client method uri protocol status body_bytes_sent
	request_length request_time upstream_addr upstream_status
	upstream_response_time connection connection_requests user_agent);

sub log_entries {
	return grep { ref $_ eq 'HASH' } map { json_decode($_) }
		grep { /^\{/ } split /\n/, $t->read_file('stderr.log');
}

sub log_entry {
	my ($trace) = @_;
	my $e;
	wait_until {
		($e) = grep { ($_->{trace_id} // '') eq $trace } log_entries();
		$e;
	} 3;
	return $e;
}

$r = $t->post_json('/v1/events', { entityId => 'client-1', eventType => 'log' },
	key('client', ['X-Trace-Id' => 'prod-log-1', 'User-Agent' => 'prod-test/1',
		'X-Forwarded-For' => '203.0.113.9']));
is($r->status, 201, 'a logged POST');
my $e = log_entry('prod-log-1');
ok($e, 'its access log line is JSON') or diag $t->read_file('stderr.log');
$e //= {};
is_deeply([grep { !exists $e->{$_} } @FIELDS], [], 'with every field');
is($e->{status}, 201, 'status (a number)');
is($e->{method}, 'POST', 'method');
is($e->{uri}, '/v1/events', 'uri');
is($e->{api_client}, 'client-1', 'api_client');
is($e->{user_agent}, 'prod-test/1', 'user agent');
ok(($e->{request_length} // 0) > 50, 'request_length');
ok(($e->{body_bytes_sent} // 0) > 50, 'body_bytes_sent');
ok(defined $e->{request_time} && $e->{request_time} =~ /^\d+(\.\d+)?\z/
	&& $e->{request_time} < 5, 'request_time (seconds, a number)');
is($e->{upstream_status}, '', 'upstream fields present, empty');
is($e->{remote_addr}, '127.0.0.1',
	'X-Forwarded-For from an untrusted peer is ignored');
is($e->{x_forwarded_for}, '203.0.113.9', 'and logged as sent');
ok(!grep({ ($_->{trace_id} // '') eq 'probe-ok' } log_entries()),
	'a successful /health is not logged');

###############################################################################
# behind a trusted balancer (the test trusts 127.0.0.1 as a VPC address)

my $trusting = $conf;
$trusting =~ s/^(\s*)(real_ip_recursive on;)/$1$2\n$1set_real_ip_from 127.0.0.1;/m;
$t->write_file('nginx.conf', $t->expand_config($trusting));
ok($t->reload(), 'reloaded with 127.0.0.1 trusted');

$t->get('/v1/usage/client-1', key('client', ['X-Trace-Id' => 'xff-1',
	'X-Forwarded-For' => '198.51.100.7']));
$e = log_entry('xff-1') // {};
is($e->{remote_addr}, '198.51.100.7', 'the client address from the balancer');
is($e->{realip_remote_addr}, '127.0.0.1', 'the balancer in realip_remote_addr');

$t->get('/v1/usage/client-1', key('client', ['X-Trace-Id' => 'xff-2',
	'X-Forwarded-For' => '10.9.9.9, 198.51.100.7']));
$e = log_entry('xff-2') // {};
is($e->{remote_addr}, '198.51.100.7',
	'a spoofed VPC address in front does not count: the last untrusted one');

is($t->get('/metrics', headers => ['X-Forwarded-For' => '198.51.100.7'])
	->status, 403, '/metrics denied to a client behind the balancer');
is($t->get('/metrics', headers => ['X-Forwarded-For' => '10.9.9.9, 198.51.100.7'])
	->status, 403, '/metrics denied to a client spoofing a VPC address');
$r = $t->get('/metrics', headers => ['X-Forwarded-For' => '10.1.2.3']);
is($r->status, 200, '/metrics served to a scraper in the VPC');
like($r->body, qr/^usage_http_requests_total\{/m, 'with the metrics');

###############################################################################
# stop: the state file is saved

$t->stop();
ok(-s "$root/state/usage.state", 'the state file is written on stop');

$t->done_testing();
