#!/usr/bin/perl

# Graceful drain: a request that reaches a worker which is shutting down
# (after a reload) gets /ready 503 {"status":"not_ready", checks.service
# "shutting_down", checks.store "ok"}; the new worker answers 200.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until $ISO_RE);
use Time::HiRes qw(sleep);

my $t = Test::Usage->new();
$t->write_config("worker_processes 1;\n"
	. api_conf(location => 'add_header X-Worker $pid always;'))->run();

my ($old) = $t->worker_pids();
ok($old, "worker $old");

# a request whose header is not complete yet keeps the old worker busy
my $c = $t->connect();
$c->send_raw("GET /ready HTTP/1.1\r\nHost: localhost\r\n");
sleep 0.2;

kill 'HUP', $t->master_pid;
my $new = wait_until {
	my @w = grep { $_ != $old } $t->worker_pids();
	@w ? $w[0] : undef
} 10;
ok($new, "new worker $new");
ok(kill(0, $old), 'old worker still draining');
sleep 0.3;

$c->send_raw("X-Trace-Id: drain-1\r\nConnection: close\r\n\r\n");
my $r = $c->read_response('GET');
$c->close();

is($r->status, 503, 'ready 503 while shutting down') or diag $r->describe;
is($r->header('X-Worker'), $old, 'answered by the old worker');
my $j = $r->json // {};
is($j->{status}, 'not_ready', 'status not_ready');
like($j->{timestamp} // '', $ISO_RE, 'timestamp');
is_deeply($j->{checks}, { service => 'shutting_down', store => 'ok' },
	'checks');
is($r->trace_id, 'drain-1', 'trace id');
is($r->header('Content-Type'), 'application/json; charset=utf-8', 'JSON');

my $gone = wait_until { !grep { $_ == $old } $t->worker_pids() } 10;
ok($gone, 'old worker exited');

$r = $t->get('/ready');
is($r->status, 200, 'new worker is ready');
is($r->header('X-Worker'), $new, 'from the new worker');

$t->done_testing();
