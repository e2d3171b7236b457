#!/usr/bin/perl

# Read-your-writes across the fleet (issue 12, step f), against a real
# redis-server:
#   - a 201 (of a batch too: its last event's) carries X-Usage-Position
#     <origin>:<seq>; a GET through any
#     other instance that sends it back counts the event, every time,
#     for every pair of three instances, while other clients load them;
#   - a position not reached within 500 ms: the answer comes anyway,
#     with X-Usage-Position-Reached: false;
#   - a malformed position is a 400 INVALID_POSITION; without usage_sync
#     the header is ignored; a client that leaves while its read waits
#     ends the wait, nothing breaks.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);
use Test::UsageRedis;
use Time::HiRes qw(sleep time);

my $redis = Test::UsageRedis->new();

sub conf {
	my ($name, $sync) = @_;
	my $addr = $redis->addr;
	my $line = $sync // "usage_sync zone=usage redis=$addr name=$name;";
	return <<"EOF";
http {
    usage_zone zone=usage:4m;
    $line

    server {
        listen 127.0.0.1:%%PORT%%;
        location / { usage_api usage; usage_track usage; }
    }
}
EOF
}

sub instance {
	my ($name, $sync) = @_;
	my $t = Test::Usage->new();
	$t->write_config(conf($name, $sync))->run();
	return $t;
}

sub post {
	my ($t, $entity) = @_;
	return $t->post_json('/v1/events',
		{ entityId => $entity, eventType => 'rw', value => 1 });
}

sub total {
	my ($r) = @_;
	return (($r->json // {})->{data} // {})->{totalEvents} // -1;
}

my @ts = map { instance("p$_") } 1 .. 3;
for my $t (@ts) {
	ok(wait_until(sub {
		(($t->get('/ready')->json // {})->{checks}{sync} // '') eq 'ok'
	}, 10), 'sync ok');
}

###############################################################################
# the position of a 201

my $r = post($ts[0], 'first');
is($r->status, 201, 'POST 201');
my $pos = $r->header('X-Usage-Position') // '';
like($pos, qr/^[0-9a-f]{16}:[1-9][0-9]*$/, "X-Usage-Position $pos");
my $r2 = post($ts[0], 'first');
my ($o1, $s1) = split /:/, $pos;
my ($o2, $s2) = split /:/, $r2->header('X-Usage-Position') // ':';
is($o2, $o1, 'the same origin for the next event');
cmp_ok($s2, '>', $s1, 'and a later seq');
like($r->header('Access-Control-Expose-Headers') // '', qr/x-usage-position/,
	'CORS exposes it to scripts');

my $info = ($ts[0]->get('/info')->json // {})->{sync} // {};
is($info->{origin}, $o1, '/info names the same origin');
cmp_ok($info->{lastSeq}, '>=', $s2, '/info: its last seq');
like($info->{readPosition} // '', qr/^\d+-\d+$/, '/info: its read position');
ok(defined $info->{queued}, '/info: what waits for Redis');

$r = $ts[0]->get('/v1/usage/first', headers => ['X-Usage-Position' => $pos]);
is($r->header('X-Usage-Position-Reached'), 'true',
	'its own instance has it at once');

# a batch: the position of its last event; through another instance,
# a read with it counts the whole batch
$r = $ts[0]->post_json('/v1/events/batch', { events => [ map {
	{ entityId => 'batched', eventType => 'rw', id => "b-$_" } } 1 .. 50 ] });
is($r->status, 201, 'a batch: 201');
my $bpos = $r->header('X-Usage-Position') // '';
my ($bo, $bs) = split /:/, $bpos;
is($bo, $o1, 'a batch: the same origin');
cmp_ok($bs, '>=', $s2 + 50, 'a batch: the seq of its last event');
$r = $ts[1]->get('/v1/usage/batched', headers => ['X-Usage-Position' => $bpos]);
is($r->header('X-Usage-Position-Reached'), 'true', 'a batch: reached elsewhere');
is(total($r), 50, 'a batch: all of it counted through another instance');

###############################################################################
# every pair, under load

my $pid = fork();
if ($pid == 0) {
	my $end = time + 8;
	my $i = 0;
	while (time < $end) {
		post($ts[$i++ % 3], 'background');
	}
	POSIX::_exit(0);
}

my ($tries, $counted, $reached, $slowest) = (0, 0, 0, 0);
for my $i (0 .. 89) {
	# writer i % 3, reader the next or the one after: all six pairs
	my ($w, $rd) = ($i % 3, ($i + 1 + int($i / 3) % 2) % 3);
	my $entity = "rw-$i";
	my $p = post($ts[$w], $entity);
	my $position = $p->header('X-Usage-Position');
	my $t0 = time;
	my $g = $ts[$rd]->get("/v1/usage/$entity",
		headers => ['X-Usage-Position' => $position]);
	my $dt = time - $t0;
	$slowest = $dt if $dt > $slowest;
	$tries++;
	$counted++ if total($g) == 1;
	$reached++ if ($g->header('X-Usage-Position-Reached') // '') eq 'true';
}
waitpid($pid, 0);
is($counted, $tries, "a read through another instance counts the write "
	. "($counted of $tries, slowest " . sprintf('%.0f', $slowest * 1000) . ' ms)');
is($reached, $tries, 'and says it reached the position');

# the same through history and the list
my $p = post($ts[1], 'rw-list');
my $position = $p->header('X-Usage-Position');
my $l = $ts[2]->get('/v1/events?entityId=rw-list',
	headers => ['X-Usage-Position' => $position]);
is(scalar @{ $l->json->{data}{events} }, 1, 'the list waits too');
my $h = $ts[0]->get('/v1/usage/rw-list/history?interval=minute',
	headers => ['X-Usage-Position' => $position]);
is($h->json->{data}{dataPoints}[0]{count}, 1, 'and the history');

###############################################################################
# not reached in time

my $far = "$o1:" . ($s2 + 1_000_000);
my $t0 = time;
$r = $ts[1]->get('/v1/usage/first', headers => ['X-Usage-Position' => $far]);
my $waited = time - $t0;
is($r->status, 200, 'a position not reached: answered anyway');
is($r->header('X-Usage-Position-Reached'), 'false', 'and says so');
ok($waited >= 0.45 && $waited < 2, sprintf('after 500 ms (%.0f ms)', $waited * 1000));
is(total($r), 2, 'with what the instance has');

$r = $ts[1]->get('/v1/usage/first',
	headers => ['X-Usage-Position' => 'abcdefabcdef0123:5']);
is($r->header('X-Usage-Position-Reached'), 'false',
	'an origin never seen is not reached either');

###############################################################################
# malformed

for my $bad ('abc', '0000000000000000:1', "$o1:0", uc($o1) . ':1', ":1",
	"$o1:", "$o1:12345678901234567890", "$o1:1x", "$o1;1", "$o1:1 2")
{
	my $x = $ts[0]->get('/v1/usage/first',
		headers => ['X-Usage-Position' => $bad]);
	is($x->status, 400, "position '$bad': 400");
	is(($x->json // {})->{error}{code}, 'INVALID_POSITION', '  INVALID_POSITION');
	like(($x->json // {})->{error}{message} // '', qr/X-Usage-Position must be/,
		'  says what it must be');
}
is($ts[0]->get('/health', headers => ['X-Usage-Position' => 'abc'])->status,
	200, '/health does not look at it');

###############################################################################
# a client that leaves while its read waits

my $c = $ts[2]->connect();
$c->send_raw("GET /v1/usage/first HTTP/1.1\r\nHost: x\r\n"
	. "X-Usage-Position: $far\r\n\r\n");
sleep 0.1;
$c->close();
sleep 0.6;
is($ts[2]->get('/health')->status, 200, 'the instance serves on');

$_->finish() for @ts;

###############################################################################
# without usage_sync: no position given, the header is ignored

my $plain = instance('plain', '');
$r = post($plain, 'x');
is($r->status, 201, 'without sync: 201');
is($r->header('X-Usage-Position'), undef, 'and no position');
$r = $plain->get('/v1/usage/x', headers => ['X-Usage-Position' => "$o1:1"]);
is($r->status, 200, 'a position is ignored');
is($r->header('X-Usage-Position-Reached'), undef, 'without a verdict');
$plain->finish();

done_testing();
