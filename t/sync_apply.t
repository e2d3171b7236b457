#!/usr/bin/perl

# usage_sync shares events (issue 12, steps b and c), against a real
# redis-server on a free loopback port:
#   - an event POSTed to one instance counts on the others: totals,
#     summary, history and the event list agree, with the same ids,
#     createdAt and order everywhere;
#   - tracked traffic and api-self ship too;
#   - three instances taking POSTs round-robin from several clients at
#     once converge to the same answers, whose totals are the number of
#     201s given by all of them: none lost, none counted twice;
#   - an entry XADDed twice (a retried batch) is applied once, and
#     entries that are not events (another format, records that lie
#     about their lengths, invalid UTF-8) are skipped and counted, the
#     zones intact;
#   - an instance started later reads the stream from its start and
#     catches up, also one added while the others take a load.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);
use Test::UsageRedis;
use Test::UsageFleet qw(view differences converged metric sync_instance);
use Time::HiRes qw(sleep time);

my $redis = Test::UsageRedis->new();

sub conf {
	my ($name, $extra, $zone) = @_;
	$extra //= '';
	$zone //= 'zone=usage:4m';
	my $addr = $redis->addr;
	return <<"EOF";
http {
    usage_zone $zone;
    usage_sync zone=usage redis=$addr name=$name interval=200ms $extra;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / { usage_api usage; usage_track usage; }
        location = /metrics { usage_metrics usage; }
        location /tracked/ {
            usage_track usage entity=\$arg_who event_type=page;
            return 204;
        }
    }
}
EOF
}

sub instance {
	my ($name, @conf) = @_;
	return sync_instance($name, conf($name, @conf));
}

sub post {
	my ($t, $entity, $type, $value, $metadata) = @_;
	my %ev = (entityId => $entity, eventType => $type, value => $value);
	$ev{metadata} = $metadata if $metadata;
	return $t->post_json('/v1/events', \%ev);
}

sub stats { my ($t) = @_; return ($t->get('/v1/usage/stats')->json // {})->{data} // {} }

###############################################################################
# two instances: A's events count on B

my $a = instance('a');
my $b = instance('b');

for my $i (1 .. 5) {
	is(post($a, 'alice', 'api_call', $i)->status, 201,
		"POST $i to a");
}
is(post($b, 'bob', 'storage', 7, { gb => 7 })->status,
	201, 'POST to b');
is($a->get('/tracked/x?who=carol')->status, 204, 'tracked request on a');

ok(wait_until(sub {
	(stats($b)->{totalEvents} // 0) >= 7 && (stats($a)->{totalEvents} // 0) >= 7
}, 5), 'events of each instance counted on the other');

ok(wait_until(sub { converged([$a, $b], qw(alice bob carol)) }, 5),
	'summaries, histories and lists agree')
	or diag(join "\n", differences([$a, $b], qw(alice bob carol)));

my $sa = $b->get('/v1/usage/alice')->json->{data};
is($sa->{totalEvents}, 5, 'b counts the 5 events of alice');
is($sa->{totalValue}, 15, 'and their values');
my $la = $a->get('/v1/events?entityId=bob')->json->{data}{events};
is($la->[0]{metadata}{gb}, 7, 'a has the metadata of the event b took');
my $self_a = ($a->get('/v1/usage/api-self')->json // {})->{data}{totalEvents};
ok(wait_until(sub {
	(($b->get('/v1/usage/api-self')->json // {})->{data}{totalEvents} // 0)
		> $self_a
}, 5), 'api-self events ship too');

ok(wait_until(sub { metric($a, 'usage_sync_shipped_total') >= 6 }, 5),
	'metrics: a shipped its events');
cmp_ok(metric($b, 'usage_sync_applied_total'), '>=', 6,
	'metrics: b applied them');
my $lag = metric($b, 'usage_sync_lag_seconds');
ok($lag >= 0 && $lag < 1,
	"metrics: usage_sync_lag_seconds, the last entry's time to b ($lag s)");
is(metric($a, 'usage_sync_queued'), 0, 'metrics: nothing left queued');

###############################################################################
# three instances, round-robin from several clients at once

my $c = instance('c');
ok(wait_until(sub {
	(stats($c)->{totalEvents} // 0) >= (stats($a)->{totalEvents} // 0) - 50
	&& converged([$a, $c], qw(alice bob carol))
}, 10), 'a third instance started later catches up from the stream');

my @ts = ($a, $b, $c);
my @entities = map { "rr$_" } 1 .. 6;
my @created = $a->parallel(6, sub {
	my ($k) = @_;
	my $n = 0;
	for my $i (0 .. 199) {
		my $t = $ts[($i + $k) % 3];
		my $e = $entities[($i * 7 + $k) % @entities];
		my $r = post($t, $e, 'unit', 1);
		$n++ if $r->status == 201;
		$t->get("/tracked/y?who=$e") if $i % 10 == 0;
	}
	return $n;
});
my $total = 0;
$total += $_ // 0 for @created;
is($total, 1200, '1200 POSTs answered 201 across the three instances');

ok(wait_until(sub { converged(\@ts, @entities) }, 15),
	'the three instances agree on every entity')
	or diag(join "\n", differences(\@ts, @entities));

my $sum = 0;
for my $e (@entities) {
	my $s = $c->get("/v1/usage/$e")->json->{data};
	$sum += $s->{byEventType}{unit} // 0;
}
is($sum, $total, 'the units counted equal the 201s: none lost, none twice');

for my $t (@ts) {
	my $st = stats($t);
	my $tracked = 0;
	for my $e (@entities) {
		my $s = $t->get("/v1/usage/$e")->json->{data};
		$tracked += $s->{byEventType}{page} // 0;
	}
	is($tracked, 120, 'tracked traffic counted everywhere');
}

###############################################################################
# a retried batch, and entries that are not events

my $before = Test::Usage::json_encode(view($b, 'alice'));
my $entries = $redis->cmd('XRANGE', 'usage:events', '-', '+', 'COUNT', '1');
my ($id, $fields) = @{ $entries->[0] };
my $dup_before = metric($b, 'usage_sync_duplicates_total');
$redis->cmd('XADD', 'usage:events', '*', @$fields);
ok(wait_until(sub {
	metric($b, 'usage_sync_duplicates_total') > $dup_before
}, 5), 'an entry XADDed twice is dropped by the window');
is(Test::Usage::json_encode(view($b, 'alice')), $before,
	'and counted once');

my %f = @$fields;
my $refused = metric($b, 'usage_sync_refused_total');
my $foreign = metric($b, 'usage_sync_foreign_total');

$redis->cmd('XADD', 'usage:events', '*', 'hello', 'world');
$redis->cmd('XADD', 'usage:events', '*', %f, v => '2');
$redis->cmd('XADD', 'usage:events', '*', %f, o => 'zz');
$redis->cmd('XADD', 'usage:events', '*', %f, c => '999999');

# a record whose length lies, and one with invalid UTF-8 in its entity,
# from an origin nobody else has
my $rec = substr($f{e}, 0, unpack('V', $f{e}));
my $liar = $rec;
substr($liar, 0, 4) = pack('V', 1 << 31);
my $bad = $rec;
my $elen = unpack('v', substr($rec, 14, 2));
substr($bad, 64, 1) = "\xff";
substr($bad, 4, 8) = pack('V2', 1, 0);
$redis->cmd('XADD', 'usage:events', '*', %f, o => '00000000000000aa',
	c => '1', e => $liar);
$redis->cmd('XADD', 'usage:events', '*', %f, o => '00000000000000ab',
	c => '1', e => $bad);

ok(wait_until(sub { metric($b, 'usage_sync_foreign_total') >= $foreign + 4 }, 5),
	'entries of another format are skipped and counted');
ok(wait_until(sub { metric($b, 'usage_sync_refused_total') >= $refused + 2 }, 5),
	'records that are not events are refused and counted');
is(Test::Usage::json_encode(view($b, 'alice')), $before,
	'the zone is intact');
ok(converged(\@ts, @entities), 'and still agrees with the others');
like($b->read_file('error.log'), qr/\[warn\].*usage sync: stream "usage:events" entry \S+ holds/,
	'a [warn] names the entry');
is($b->post_event('after', 'x')->status, 201, 'b still takes events');

###############################################################################
# Redis restarted empty (no persistence): the instances reconnect, the
# stream starts again from new ids after their positions, they go on
# agreeing on what comes next

$redis->restart();
for my $t (@ts) {
	ok(wait_until(sub {
		(($t->get('/ready')->json // {})->{checks}{sync} // '') eq 'ok'
	}, 10), 'sync ok again after redis restarted empty');
}
my $n201 = 0;
for my $i (0 .. 89) {
	$n201++ if post($ts[$i % 3], 'after-restart', 'unit', 1)->status == 201;
}
ok(wait_until(sub {
	!grep { ($_->get('/v1/usage/after-restart')->json->{data}{totalEvents} // 0)
		!= $n201 } @ts
}, 10), "the $n201 events after the restart count everywhere");
ok(converged(\@ts, @entities, 'after-restart'), 'and the instances agree');

###############################################################################
# an instance added under load: it reads the stream from its start while
# the others take POSTs from four clients, and then answers what they
# answer (for the events the stream holds: those after the restart)

my @load = map { "load$_" } 1 .. 4;
my $bg = $a->background(4, 3, sub {
	my ($k, $i) = @_;
	return post($ts[($i + $k) % 3], $load[($i + $k) % @load], 'unit', 1)
		->status == 201;
});
sleep 1;
my $d = instance('d');
my $loaded = $a->background_wait($bg);
cmp_ok($loaded, '>', 100, "$loaded POSTs answered 201 during the join");
my @all = (@ts, $d);
ok(wait_until(sub { converged(\@all, @load, 'after-restart') }, 15),
	'the instance added under load agrees with the three')
	or diag(join "\n", differences(\@all, @load, 'after-restart'));
my $sum_d = 0;
$sum_d += ($d->get("/v1/usage/$_")->json->{data}{byEventType}{unit} // 0)
	for @load;
is($sum_d, $loaded, 'its totals are the 201s of the others');
$d->finish();

$_->finish() for @ts;

###############################################################################
# small rings that evict all the time while the other instance's events
# are linked in between the local ones (run under ASan by the CI): each
# list stays sorted and whole, the totals agree

$redis->cmd('DEL', 'usage:events');
my @small = (instance('s1', '', 'zone=usage:1m raw=10%'),
	instance('s2', '', 'zone=usage:1m raw=10%'));
my @ok = $small[0]->parallel(4, sub {
	my ($k) = @_;
	my ($n, $end) = (0, time + 2);
	while (time < $end) {
		my $r = post($small[$k % 2], "ev" . ($n % 5), 'unit', 1,
			{ pad => 'p' x ($n % 200) });
		$n++ if $r->status == 201;
	}
	return $n;
});
my $small_total = 0;
$small_total += $_ // 0 for @ok;
cmp_ok($small_total, '>', 500, "$small_total POSTs to two small zones");

sub units {
	my ($t) = @_;
	my $n = 0;
	for my $i (0 .. 4) {
		$n += ($t->get("/v1/usage/ev$i")->json->{data}{byEventType}{unit} // 0);
	}
	return $n;
}
ok(wait_until(sub { units($small[0]) == $small_total
	&& units($small[1]) == $small_total }, 15),
	'both count every event')
	or diag(units($small[0]) . ' ' . units($small[1]));
for my $t (@small) {
	my $store = stats($t)->{store};
	my $l = $t->get('/v1/events?limit=1000')->json->{data}{events};
	my @c = map { $_->{createdAt} } @$l;
	my $sorted = !grep { $c[$_] < $c[$_ + 1] } 0 .. $#c - 1;
	ok($sorted, 'the list is newest first');
	my %ids = map { $_->{id} => 1 } @$l;
	is(scalar(keys %ids), scalar(@$l), 'no event listed twice');
	cmp_ok($store->{evictions}, '>', 0, 'the ring evicted');
	cmp_ok($store->{rawBytesUsed}, '<=', $store->{rawBytes},
		'within its bytes');
	cmp_ok($store->{events}, '<', 1000, 'a list of 1000 holds them all');
	# the stats request's own api-self event may have evicted one or two
	cmp_ok(abs(scalar(@$l) - $store->{events}), '<=', 2,
		'every stored event is listed');
}
$_->finish() for @small;

done_testing();
