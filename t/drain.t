#!/usr/bin/perl

# Graceful drain (usage_drain_file, and QUIT):
#   - without the file: keep-alive as usual;
#   - with the file: /ready 503 {"status":"not_ready","checks":{"service":
#     "draining","store":"ok"}}; every response where the directive is in
#     effect (/ready, POST and GET /v1/events, /health, a tracked static
#     location) says "Connection: close" and the connection is closed, while
#     requests are served; a location with "usage_drain_file off" keeps
#     keep-alive; the change is logged;
#   - file removed: ready and keep-alive again within about a second;
#   - QUIT: an in-flight (half-sent) request completes, with Connection:
#     close; a kept-alive connection is never answered "ready" (closed, or
#     503 shutting_down), pipelined or idle.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Select;
use Test::More;
use Test::Usage qw(wait_until $ISO_RE);
use Time::HiRes qw(sleep time);

my $CONF = <<'EOF';
http {
    usage_zone zone=usage:1m;
    usage_drain_file drain;

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;
        usage_track usage;

        location / { usage_api usage; }
        location /static/ { alias %%TESTDIR%%/; }
        location /plain/ {
            usage_drain_file off;
            return 200 "plain\n";
        }
    }
}
EOF

my $t = Test::Usage->new();
$t->write_file('a.txt', "hello\n");
$t->write_config($CONF)->run();
my $drain = $t->dir . '/drain';

# after a response, does the server close the connection (EOF or reset
# within a second)?
sub closed {
	my ($c) = @_;
	my $sock = $c->sock or return 1;
	return 0 if length $c->{buf};
	return 0 unless IO::Select->new($sock)->can_read(1);
	my $n = sysread($sock, my $buf, 4096);
	return !$n;
}

# one request on a fresh keep-alive connection: (response, closed after)
sub ka {
	my ($method, $path, %o) = @_;
	my $c = $t->connect();
	my $r = $c->request($method, $path, keepalive => 1, %o);
	my $closed = closed($c);
	$c->close();
	return ($r, $closed);
}

sub post_ka {
	my ($entity) = @_;
	return ka('POST', '/v1/events',
		json => { entityId => $entity, eventType => 'drain' });
}

###############################################################################
# no drain file: keep-alive

my ($r, $closed) = ka('GET', '/ready');
is($r->status, 200, 'ready without the file');
is($r->header('Connection'), 'keep-alive', 'keep-alive without the file');
ok(!$closed, 'connection kept open');

my $c = $t->connect();
is($c->request('GET', '/static/a.txt', keepalive => 1)->status, 200,
	'static on a keep-alive connection');
is($c->request('GET', '/v1/events', keepalive => 1)->status, 200,
	'then the API on the same connection');
$c->close();

###############################################################################
# the drain file exists: both workers see it within a second

$t->write_file('drain', '');
sleep 1.1;

for my $i (1 .. 4) {
	($r, $closed) = ka('GET', '/ready', headers => ['X-Trace-Id' => "dr-$i"]);
	is($r->status, 503, "draining: /ready 503 ($i)") or diag $r->describe;
	my $j = $r->json // {};
	is($j->{status}, 'not_ready', "draining: not_ready ($i)");
	is_deeply($j->{checks}, { service => 'draining', store => 'ok' },
		"draining: checks ($i)");
	like($j->{timestamp} // '', $ISO_RE, "draining: timestamp ($i)");
	is($r->trace_id, "dr-$i", "draining: trace id ($i)");
	is($r->header('Connection'), 'close', "draining: /ready says close ($i)");
	ok($closed, "draining: /ready connection closed ($i)");
}

for my $i (1 .. 2) {
	($r, $closed) = post_ka("drain-$i");
	is($r->status, 201, "draining: POST /v1/events served ($i)");
	is($r->header('Connection'), 'close', "draining: POST says close ($i)");
	ok($closed, "draining: POST connection closed ($i)");

	($r, $closed) = ka('GET', "/v1/events?entityId=drain-$i");
	is($r->status, 200, "draining: GET /v1/events served ($i)");
	is($r->data->{pagination}{total}, 1, "draining: the event is there ($i)");
	is($r->header('Connection'), 'close', "draining: GET says close ($i)");
	ok($closed, "draining: GET connection closed ($i)");

	($r, $closed) = ka('GET', '/static/a.txt');
	is($r->status, 200, "draining: tracked static served ($i)");
	is($r->body, "hello\n", "draining: static body ($i)");
	is($r->header('Connection'), 'close', "draining: static says close ($i)");
	ok($closed, "draining: static connection closed ($i)");

	($r, $closed) = ka('GET', '/health');
	is($r->status, 200, "draining: /health stays 200 ($i)");
	is(($r->json // {})->{status}, 'healthy', "draining: healthy ($i)");
	is($r->header('Connection'), 'close', "draining: /health says close ($i)");

	($r, $closed) = ka('GET', '/plain/x');
	is($r->status, 200, "usage_drain_file off: served ($i)");
	is($r->header('Connection'), 'keep-alive',
		"usage_drain_file off: keep-alive ($i)");
	ok(!$closed, "usage_drain_file off: connection kept ($i)");
}

like($t->read_file('error.log'),
	qr/\[notice\].*usage drain file "\Q$drain\E" exists/,
	'the drain is logged');

###############################################################################
# file removed: ready and keep-alive again within about a second

unlink $drain or die "unlink $drain: $!\n";
my $t0 = time();
my $ready = wait_until { $t->get('/ready')->status == 200 } 3;
my $took = time() - $t0;
ok($ready, 'ready again after the file is removed');
ok($took <= 1.3, sprintf('within about a second (%.2f s)', $took));

sleep(($t0 + 1.15) - time()) if time() < $t0 + 1.15;

for my $i (1 .. 4) {
	($r, $closed) = ka('GET', '/ready');
	is($r->status, 200, "back: /ready 200 ($i)");
	is_deeply(($r->json // {})->{checks}, { service => 'ok', store => 'ok' },
		"back: checks ok ($i)");
	is($r->header('Connection'), 'keep-alive', "back: keep-alive ($i)");
	ok(!$closed, "back: connection kept ($i)");
}
($r, $closed) = post_ka('after');
is($r->header('Connection'), 'keep-alive', 'back: POST keep-alive');

like($t->read_file('error.log'),
	qr/\[notice\].*usage drain file "\Q$drain\E" is gone/,
	'the end of the drain is logged');

$t->finish();

###############################################################################
# QUIT: in-flight requests complete, kept-alive connections are never
# answered "ready"

$t = Test::Usage->new();
$t->write_config("worker_processes 1;\n" . $CONF)->run();
my $master = $t->master_pid;

# an idle kept-alive connection
my $idle = $t->connect();
$r = $idle->request('GET', '/health', keepalive => 1);
is($r->header('Connection'), 'keep-alive', 'idle connection kept alive');

# a half-sent POST, and a half-sent /ready to pipeline behind
my $body = '{"entityId":"inflight","eventType":"quit"}';
my $post = $t->connect();
$post->send_raw("POST /v1/events HTTP/1.1\r\nHost: localhost\r\n"
	. "X-Trace-Id: quit-post\r\nContent-Type: application/json\r\n");
my $pipe = $t->connect();
$pipe->send_raw("GET /ready HTTP/1.1\r\nHost: localhost\r\n");
sleep 0.3;

kill 'QUIT', $master;
sleep 0.5;
ok(Test::Usage::alive($master), 'master waits for the in-flight requests');

# the idle connection: closed by nginx, or at most a 503, never ready
$r = $idle->request('GET', '/ready', keepalive => 1);
ok($r->status == 0 || $r->status == 503,
	'idle kept-alive connection after QUIT: closed or 503, not ready')
	or diag $r->describe;
isnt(($r->json // {})->{status} // '', 'ready', 'idle connection: never ready');
$idle->close();

$post->send_raw("Content-Length: " . length($body) . "\r\n\r\n$body");
$r = $post->read_response('POST');
is($r->status, 201, 'in-flight POST completes after QUIT') or diag $r->describe;
is($r->data->{entityId}, 'inflight', 'in-flight POST stored');
is($r->trace_id, 'quit-post', 'in-flight POST trace id');
is($r->header('Connection'), 'close', 'in-flight POST: Connection: close');
ok(closed($post), 'in-flight POST: connection closed');
$post->close();

$pipe->send_raw("\r\nGET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n");
$r = $pipe->read_response('GET');
is($r->status, 503, 'in-flight /ready after QUIT: 503') or diag $r->describe;
is_deeply(($r->json // {})->{checks},
	{ service => 'shutting_down', store => 'ok' }, 'shutting_down');
is($r->header('Connection'), 'close', 'in-flight /ready: Connection: close');
my $second = $pipe->read_response('GET');
isnt($second->status, 200, 'the pipelined /ready is never answered ready')
	or diag $second->describe;
$pipe->close();

ok($t->wait_gone($master, 10), 'nginx exits once they are done');

$t->done_testing();
