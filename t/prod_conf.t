#!/usr/bin/perl

# conf/nginx.prod.conf, the image's configuration, with only its port,
# module path and directories replaced (t/lib/Test/UsageProd.pm): nginx -t
# passes; each "# ISSUE5-C:" line names one of the four directives the
# module's next release brings, and uncommented it is either accepted or
# only an unknown directive; the API needs a known X-Api-Key (401 JSON with
# WWW-Authenticate otherwise, also for an unknown key; a CORS preflight
# needs none); /health and /ready need no key and are not tracked; a burst
# of one client gets 429 JSON while another client is still served; bodies
# over 16k are 413 JSON; JSON is gzipped; the access log on stdout is one
# JSON object a line with the trace id, timings, sizes, upstream and
# address fields; probes are not logged when they succeed;
# X-Forwarded-For is ignored from an untrusted peer and, from a trusted
# one, gives the last untrusted address (so /metrics is denied to a client
# behind the balancer); the state file is written on stop.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(json_decode wait_until);
use Test::UsageProd qw(prod_conf prod_conf_path);

my $t = Test::Usage->new();
my $root = $t->dir;

my %KEY = (
	client => 'k-client-7f3a9c',
	burst => 'k-burst-52be01',
	admin => 'k-admin-c0ffee',
);

my $conf = prod_conf(root => $root, port => $t->port, module => $t->module,
	workers => 2);
$t->write_file("$root/etc/api-keys.map", join '',
	"\"$KEY{client}\" client-1;\n",
	"\"$KEY{burst}\"  burster;\n",
	"\"$KEY{admin}\"  admin;\n");

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

# the lines for the module's next release: commented, each with the marker
my @c = $shipped =~ /^\s*# ISSUE5-C: (\S+) [^\n]*;$/mg;
is_deeply([sort @c], [sort qw(usage_drain_file usage_metrics
	usage_retry_after usage_entity_scope)], 'ISSUE5-C lines')
	or diag "found: @c";
like($shipped, qr{# ISSUE5-C: usage_drain_file /run/nginx-usage/drain;},
	'drain file in the run directory');
like($shipped, qr{location = /metrics \{\s*\n\s*# ISSUE5-C: usage_metrics usage;},
	'usage_metrics on location = /metrics');
like($shipped, qr{# ISSUE5-C: usage_entity_scope \$api_entity;},
	'entity scope from $api_entity');
unlike($shipped, qr/^\s*(?!#)[^#\n]*\busage_(drain_file|metrics|retry_after|entity_scope)\b/m,
	'none of them active yet');

###############################################################################
# nginx -t, as shipped and with each ISSUE5-C line uncommented

my ($code, $out) = $t->check_config($conf);
is($code, 0, 'nginx -t passes on the production configuration')
	or diag $out;

for my $name (sort @c) {
	my $one = prod_conf(root => $root, port => $t->port,
		module => $t->module, workers => 2, uncomment => [$name]);
	my ($code, $out) = $t->check_config($one);
	ok($code == 0 || $out =~ /unknown directive "\Q$name\E"/,
		"$name uncommented: " . ($code == 0 ? 'accepted'
			: 'not in this build of the module yet'))
		or diag $out;
}

###############################################################################
# running

$t->write_config($conf)->run();

sub key { (headers => ['X-Api-Key' => $KEY{ $_[0] }, @{ $_[1] || [] }]) }

sub is_json_error {
	my ($r, $status, $code, $name) = @_;
	is($r->status, $status, "$name: $status") or diag $r->describe;
	is($r->header('Content-Type'), 'application/json; charset=utf-8',
		"$name: JSON");
	is($r->err->{code}, $code, "$name: $code");
	ok(defined $r->trace_id && ($r->err->{traceId} // '') eq $r->trace_id,
		"$name: traceId");
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
$r = $t->options('/v1/events', headers => ['Origin' => 'https://app.example',
	'Access-Control-Request-Method' => 'POST',
	'Access-Control-Request-Headers' => 'x-api-key,content-type']);
is($r->status, 204, 'CORS preflight without a key: 204') or diag $r->describe;

# with a key
$r = $t->post_json('/v1/events', { entityId => 'cust-1', eventType => 'call',
	id => 'p-1' }, key('client'));
is($r->status, 201, 'POST with a key: 201') or diag $r->describe;
$r = $t->post_json('/v1/events', { entityId => 'cust-1', eventType => 'call',
	id => 'p-1' }, key('client'));
is($r->status, 200, 'the same id again: 200');
$r = $t->get('/v1/usage/cust-1', key('client'));
is($r->status, 200, 'GET with a key: 200');
is($r->data->{totalEvents}, 1, 'the event is counted once');
is($t->get('/v1/usage/stats', key('admin'))->status, 200,
	'another client\'s key works too');

# bodies over 16k
$r = $t->post_json('/v1/events', { entityId => 'cust-1', eventType => 'big',
	metadata => { pad => 'x' x 17000 } }, key('client'));
is_json_error($r, 413, 'PAYLOAD_TOO_LARGE', 'a 17k body');

# gzip for JSON above 1 KB
for my $i (1 .. 12) {
	$t->post_json('/v1/events', { entityId => 'gz', eventType => 'call',
		metadata => { i => $i, text => 'lorem ipsum ' x 4 } }, key('client'));
}
$r = $t->get('/v1/events?entityId=gz', key('client', ['Accept-Encoding' => 'gzip']));
is($r->status, 200, 'a list of 12 events');
is($r->header('Content-Encoding'), 'gzip', 'gzipped');
like($r->header('Vary') // '', qr/Accept-Encoding/, 'Vary: Accept-Encoding');

# /health and /ready are not tracked: only the first summary request is
# counted in the second
my $self0 = $t->get('/v1/usage/api-self', key('admin'))->data->{totalEvents};
$t->get('/health') for 1 .. 5;
$t->get('/ready') for 1 .. 5;
my $self1;
wait_until {
	$self1 = $t->get('/v1/usage/api-self', key('admin'))->data->{totalEvents};
	$self1 == $self0 + 1;
} 3;
is($self1, $self0 + 1, 'probes are not tracked (API requests are)');

# a burst from one client: 429 past rate + burst, JSON; others are served
my $c = $t->connect();
my ($ok, $limited, $other);
for my $i (1 .. 2000) {
	$r = $c->request('GET', '/v1/usage/burst', keepalive => 1,
		headers => ['X-Api-Key' => $KEY{burst}]);
	if ($r->status == 429) { $limited = $r; last }
	last unless $r->status == 200;
	$ok++;
}
$c->close();
ok($limited, 'a burst is limited') or diag $r->describe;
is_json_error($limited // $r, 429, 'RATE_LIMITED', 'rate limit');
ok(($ok // 0) >= 200, "the burst of 200 is served first (${\($ok // 0)} were)");
is($t->get('/v1/usage/burst', key('client'))->status, 200,
	'another client is not limited');

# /metrics: not through the API's key (ISSUE5-C: the module serves it);
# allowed from 127.0.0.1 (404 until usage_metrics is on)
$r = $t->get('/metrics');
isnt($r->status, 403, '/metrics allowed from 127.0.0.1: ' . $r->status);

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

$r = $t->post_json('/v1/events', { entityId => 'log', eventType => 'call' },
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

$t->get('/v1/usage/x', key('client', ['X-Trace-Id' => 'xff-1',
	'X-Forwarded-For' => '198.51.100.7']));
$e = log_entry('xff-1') // {};
is($e->{remote_addr}, '198.51.100.7', 'the client address from the balancer');
is($e->{realip_remote_addr}, '127.0.0.1', 'the balancer in realip_remote_addr');

$t->get('/v1/usage/x', key('client', ['X-Trace-Id' => 'xff-2',
	'X-Forwarded-For' => '10.9.9.9, 198.51.100.7']));
$e = log_entry('xff-2') // {};
is($e->{remote_addr}, '198.51.100.7',
	'a spoofed VPC address in front does not count: the last untrusted one');

is($t->get('/metrics', headers => ['X-Forwarded-For' => '198.51.100.7'])
	->status, 403, '/metrics denied to a client behind the balancer');
isnt($t->get('/metrics', headers => ['X-Forwarded-For' => '10.1.2.3'])
	->status, 403, '/metrics allowed to a scraper in the VPC');

###############################################################################
# stop: the state file is saved

$t->stop();
ok(-s "$root/state/usage.state", 'the state file is written on stop');

$t->done_testing();
