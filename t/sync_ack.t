#!/usr/bin/perl

# usage_sync ack=redis (issue 12): a 201 only once Redis has the event,
# against a real redis-server:
#   - POSTs through an ack=redis instance are answered 201 and count on
#     every instance, once, also from several clients at once; a client
#     id repeated is a 200;
#   - Redis that takes no write (CLIENT PAUSE), or that is stopped
#     (SIGSTOP), past ack_timeout=: a JSON 503 SYNC_UNAVAILABLE, and once
#     Redis runs again the event is in no zone and not in the stream
#     (the batch's deadline passed: Redis refuses it);
#   - Redis down: 503 at once; back: the client's retry with its id is
#     a 201, counted once;
#   - tracked traffic (api-self) does not wait, and ships as before.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);
use Test::UsageRedis;
use Test::UsageFleet qw(differences converged metric sync_state
	sync_instance);
use Time::HiRes qw(sleep time);

my $redis = Test::UsageRedis->new();

sub conf {
	my ($name, $extra, $zone_extra) = @_;
	$extra //= '';
	$zone_extra //= '';
	my $addr = $redis->addr;
	return <<"EOF";
http {
    usage_zone zone=usage:16m $zone_extra;
    usage_sync zone=usage redis=$addr name=$name interval=200ms timeout=1s $extra;

    server {
        listen 127.0.0.1:%%PORT%%;
        client_max_body_size 4m;
        client_body_buffer_size 4m;
        location / { usage_api usage; usage_track usage; }
        location = /metrics { usage_metrics usage; }
    }
}
EOF
}

sub instance {
	my ($name, @conf) = @_;
	return sync_instance($name, conf($name, @conf));
}

sub post {
	my ($t, $entity, %extra) = @_;
	return $t->post_json('/v1/events',
		{ entityId => $entity, eventType => 'call', %extra });
}

sub count {
	my ($t, $entity) = @_;
	return (($t->get("/v1/usage/$entity")->json // {})->{data} // {})
		->{totalEvents} // -1;
}

sub listed {
	my ($t, $entity) = @_;
	return scalar @{ (($t->get("/v1/events?entityId=$entity")->json // {})
		->{data} // {})->{events} // [] };
}

my $a = instance('a', 'ack=redis ack_timeout=500ms');
my $b = instance('b');

###############################################################################
# Redis works: 201, on every instance, once

my $r = post($a, 'acked');
is($r->status, 201, 'a POST through a is a 201');
like($r->header('x-usage-position') // '', qr/^[0-9a-f]{16}:\d+$/,
	'with its position');
is($r->json->{data}{entityId}, 'acked', 'and the event');
ok(wait_until(sub { count($b, 'acked') == 1 }, 5), 'b counts it');
is(count($a, 'acked'), 1, 'a counts it once');

my $before = metric($a, 'usage_sync_shipped_total');
my @codes = $a->parallel(4, sub {
	my ($i) = @_;
	my %c;
	for (1 .. 50) {
		$c{ post($a, 'many', value => $i)->status }++;
	}
	return join ',', map { "$_=$c{$_}" } sort keys %c;
});
is_deeply(\@codes, [('201=50') x 4], '200 POSTs from 4 clients: all 201');
ok(wait_until(sub { count($b, 'many') == 200 }, 10), 'b counts all 200');
is(count($a, 'many'), 200, 'a counts them once');
ok(wait_until(sub { converged([$a, $b], qw(acked many)) }, 10),
	'a and b agree on them')
	or diag(join "\n", differences([$a, $b], qw(acked many)));

is(post($a, 'ids', id => 'one')->status, 201, 'a client id: 201');
is(post($a, 'ids', id => 'one')->status, 200, 'the same again: 200');
ok(wait_until(sub { count($b, 'ids') == 1 }, 5), 'b counts it once');

ok(wait_until(sub { count($b, 'api-self') > 0 }, 5),
	'api-self of a ships as before');

# a batch: 201 once Redis has all of it, in one entry
sub batch {
	my ($t, @events) = @_;
	return $t->post_json('/v1/events/batch', { events => \@events });
}

$r = batch($a, map({ { entityId => 'batched', eventType => 'call', id => "b$_" } } 1 .. 4),
	{ entityId => 'batched', eventType => 'call', id => 'b2' });
is($r->status, 201, 'a batch through a: 201');
is_deeply([ @{ $r->json->{data} }{qw(stored duplicates)} ], [4, 1],
	'4 stored, 1 repeated inside the batch');
ok($r->json->{data}{events}[4]{duplicate}, 'the repeat is named');
is($r->json->{data}{events}[4]{createdAt}, $r->json->{data}{events}[1]{createdAt},
	"with its first's createdAt");
ok(wait_until(sub { count($b, 'batched') == 4 }, 5), 'b counts the 4');
is(count($a, 'batched'), 4, 'a counts them once');
$r = batch($a, { entityId => 'batched', eventType => 'call', id => 'b1' });
is($r->status, 200, 'a batch of an id stored already: 200');

$r = batch($a, map({ { entityId => 'big', eventType => 'call', value => $_ } } 1 .. 300));
is($r->status, 201, 'a batch of 300 (more than batch= per entry): 201');
ok(wait_until(sub { count($b, 'big') == 300 }, 5), 'b counts the 300');
my ($entry) = grep { { @{ $_->[1] } }->{c} == 300 }
	@{ $redis->cmd('XRANGE', 'usage:events', '-', '+') };
ok($entry, 'they went in one stream entry');

$r = batch($a, map({ { entityId => 'huge', eventType => 'call',
	metadata => { pad => 'x' x 1100 } } } 1 .. 1000));
is($r->status, 413, 'a batch past 1 MB in the stream: 413');
like(($r->json // {})->{error}{message} // '', qr/at most 1 MB in the fleet's stream/,
	'it says why');
is(count($a, 'huge'), 0, 'nothing of it stored');

###############################################################################
# the entity's bounds count what the batch itself adds: a batch may not
# bring an entity past entity_types, since the fleet stores what Redis has

my $c = instance('c', 'ack=redis', 'entity_types=3');
$r = batch($c, map({ { entityId => 'typed', eventType => "t$_" } } 1, 2, 1, 3, 2, 4, 5));
is($r->status, 429, 'a batch of 5 types for an entity of at most 3: 429');
like(($r->json // {})->{error}{message} // '', qr/event 5: .*3 event types/,
	'naming the first event past the bound');
is(count($c, 'typed'), 0, 'nothing of it stored');
$r = batch($c, map({ { entityId => 'typed', eventType => "t$_" } } 1, 2, 1, 3, 2, 3));
is($r->status, 201, 'a batch of 3 types, some repeated: 201');
is(count($c, 'typed'), 6, 'all 6 stored');
is(batch($c, { entityId => 'typed', eventType => 't4' })->status, 429,
	'then a fourth type: 429');
is(post($c, 'typed', eventType => 't2')->status, 201, 'a known type: 201');
$c->finish();

###############################################################################
# Redis takes no write past ack_timeout: 503, and the event lands nowhere

is($redis->cmd('CLIENT', 'PAUSE', '2000', 'WRITE'), 'OK',
	'Redis takes no write for 2 s');
my $t0 = time;
$r = post($a, 'paused');
my $took = time - $t0;
is($r->status, 503, 'a POST meanwhile: 503');
is(($r->json // {})->{error}{code}, 'SYNC_UNAVAILABLE', 'SYNC_UNAVAILABLE');
like(($r->json // {})->{error}{message} // '', qr/not stored/,
	'it says the event was not stored');
cmp_ok($took, '>=', 0.5, sprintf('after ack_timeout (%.2f s)', $took));
cmp_ok($took, '<', 1.5, 'and not much later');

sleep 2.5;                          # the pause is over, Redis ran the batch
ok(wait_until(sub { count($b, 'acked') == 1 && count($a, 'paused') == 0 }, 5),
	'once Redis runs again');
sleep 0.5;
is(count($a, 'paused'), 0, 'a does not count the event');
is(count($b, 'paused'), 0, 'nor does b');
is(listed($b, 'paused'), 0, 'b does not list it');
my $stream = $redis->cmd('XRANGE', 'usage:events', '-', '+');
my @holding = grep { join("", @{ $_->[1] }) =~ /pausedcall/ } @$stream;
ok(!@holding, 'the stream does not hold it (its entity and type, side by side in a record)')
	or diag(explain(\@holding));
cmp_ok(metric($a, 'usage_sync_ack_withdrawn_total'), '>=', 1,
	'metrics: the 503 is counted as withdrawn');

is($redis->cmd('CLIENT', 'PAUSE', '1500', 'WRITE'), 'OK',
	'Redis takes no write for 1.5 s, again');
$r = batch($a, map({ { entityId => 'pausedbatch', eventType => 'call' } } 1 .. 3));
is($r->status, 503, 'a batch meanwhile: 503');
like(($r->json // {})->{error}{message} // '', qr/nothing of the batch was stored/,
	'nothing of the batch was stored');
sleep 2;
is(post($a, 'after-batch')->status, 201, 'then a POST: 201');
ok(wait_until(sub { count($b, 'after-batch') == 1 }, 5), 'b has it');
is(count($b, 'pausedbatch'), 0, 'b never counts the batch');
is(count($a, 'pausedbatch'), 0, 'nor does a');
is(metric($a, 'usage_sync_ack_ambiguous_total'), 0,
	'metrics: none that Redis had all the same');

is(post($a, 'after', id => 'x')->status, 201, 'a POST after it: 201');
ok(wait_until(sub { count($b, 'after') == 1 }, 5), 'b counts it');

###############################################################################
# Redis stopped (SIGSTOP), then resumed: 503, nothing lands

kill 'STOP', $redis->pid;
$r = post($a, 'stopped', id => 's1');
kill 'CONT', $redis->pid;
is($r->status, 503, 'Redis stopped: 503');
ok(wait_until(sub {
	sync_state($a) eq 'ok'
}, 10), 'a syncs again');
is(post($a, 'marker')->status, 201, 'a later POST: 201');
ok(wait_until(sub { count($b, 'marker') == 1 }, 5), 'b has the later one');
like($a->read_file('error.log'),
	qr/\[warn\] .*ran a batch of stream "usage:events" after its events' deadline \(ack=redis\)/,
	'a: Redis refused the batch once it ran it, and a says so');
is(count($b, 'stopped'), 0, 'b never counts the refused one');
is(count($a, 'stopped'), 0, 'nor does a');

# the client retries with its id: now it is stored, once
is(post($a, 'stopped', id => 's1')->status, 201, 'its retry: 201');
ok(wait_until(sub { count($b, 'stopped') == 1 }, 5), 'b counts it once');
is(count($a, 'stopped'), 1, 'a counts it once');

###############################################################################
# Redis down: 503 at once

$redis->stop();
ok(wait_until(sub {
	sync_state($a) eq 'degraded'
}, 10), 'Redis down: a is degraded');
$t0 = time;
$r = post($a, 'down');
is($r->status, 503, 'a POST: 503');
cmp_ok(time - $t0, '<', 0.3, 'at once');
is(count($a, 'down'), 0, 'not stored');
$redis->start();
ok(wait_until(sub {
	sync_state($a) eq 'ok'
}, 15), 'Redis back: a syncs again');

$_->finish() for $a, $b;

done_testing();
