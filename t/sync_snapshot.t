#!/usr/bin/perl

# usage_sync's snapshots in Redis (issue 12: a new instance bootstraps
# from a snapshot plus the stream after it), against a real redis-server:
#   - the instance holding the lease writes one every snapshot= interval,
#     and the stream is trimmed to the previous one's position;
#   - an instance added with an empty zone, after the stream lost its
#     first entries, loads the snapshot and reads the stream from there:
#     it answers the same totals, summaries, histories and event lists
#     as the others, and keeps doing so under more traffic, its own too;
#     also one added while the others take POSTs from four clients;
#   - an instance away while the stream was trimmed past its position
#     loads the snapshot again at its restart;
#   - a snapshot whose chunk was corrupted is refused ([error], counted,
#     retried), and the instance then reads the stream from its start:
#     no half-loaded zone, no crash;
#   - a manifest that is not one, or of another epoch, is ignored.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);
use Test::UsageRedis;
use Test::UsageFleet qw(differences converged metric sync_instance);
use Time::HiRes qw(sleep time);

# small stream nodes: XTRIM MINID ~ trims at a fine grain
my $redis = Test::UsageRedis->new(args => ['--stream-node-max-entries', '4']);
my $stream = 'usage:events';

sub conf {
	my ($name, $extra, $zone_extra) = @_;
	$extra //= '';
	$zone_extra //= '';
	my $addr = $redis->addr;
	return <<"EOF";
http {
    usage_zone zone=usage:4m $zone_extra;
    usage_sync zone=usage redis=$addr name=$name interval=200ms snapshot=1s batch=4 $extra;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / { usage_api usage; }
        location = /metrics { usage_metrics usage; }
    }
}
EOF
}

sub instance {
	my ($name, @conf) = @_;
	return sync_instance($name, conf($name, @conf));
}

my $n = 0;
sub post {
	my ($t, $entity) = @_;
	$n++;
	my $r = $t->post_json('/v1/events', {
		entityId => $entity, eventType => ($n % 2 ? 'api_call' : 'upload'),
		value => $n, metadata => { n => $n },
		($n % 3 ? () : (id => "client-$n")) });
	return $r->status == 201;
}

sub xinfo {
	my $r = $redis->cmd('XINFO', 'STREAM', $stream);
	return ref $r eq 'ARRAY' ? { @$r } : {};
}

sub total { (($_[0]->get('/v1/usage/stats')->json // {})->{data} // {})->{totalEvents} // -1 }

my @entities = qw(alice bob carol dave);

###############################################################################
# two instances write snapshots and trim the stream

my $a = instance('a');
my $b = instance('b');

my $created = 0;
for my $i (1 .. 120) {
	$created += post($i % 2 ? $a : $b, $entities[$i % 4]);
}
is($created, 120, '120 events accepted by a and b');

ok(wait_until(sub {
	metric($a, 'usage_sync_snapshots_written_total')
	+ metric($b, 'usage_sync_snapshots_written_total') >= 1
}, 10), 'a snapshot is written');

my $manifest = $redis->cmd('GET', "$stream:snapshot") // '';
like($manifest, qr/^v=1 gen=[0-9a-f]{16}-\d+ epoch=[0-9a-f]{16} pos=\d+-\d+ chunks=1 bytes=\d+ crc=[0-9a-f]{8}/,
	"the manifest names the chunks and the position ($manifest)");

# more traffic, and the next snapshot trims the stream to the first one
for my $i (1 .. 80) {
	$created += post($i % 2 ? $a : $b, $entities[$i % 4]);
}

ok(wait_until(sub {
	my $x = xinfo();
	($x->{length} // 0) < ($x->{'entries-added'} // 0)
}, 10), 'the stream is trimmed once a second snapshot is written');

my $x = xinfo();
diag("the stream holds $x->{length} of its $x->{'entries-added'} entries");
cmp_ok(metric($a, 'usage_sync_trimmed_total')
	+ metric($b, 'usage_sync_trimmed_total'), '>', 0,
	'metrics: usage_sync_trimmed_total counts them');

ok(wait_until(sub { converged([$a, $b], @entities) }, 10),
	'a and b agree');
is(total($a), $created, "a counts every event ($created)");

###############################################################################
# a new instance loads the snapshot, then the stream after it

my $c = instance('c');

ok(wait_until(sub { total($c) == $created }, 10),
	"c counts every event, trimmed ones too (" . total($c) . " of $created)");
ok(wait_until(sub { converged([$a, $b, $c], @entities) }, 10),
	'c answers what a and b answer');
diag(join "\n", differences([$a, $b, $c], @entities));
is(metric($c, 'usage_sync_snapshots_loaded_total'), 1,
	'metrics: c loaded one snapshot');
like($c->read_file('error.log'), qr/loaded from the fleet's snapshot/,
	'c: the load is logged');

# traffic through all three, c's own too
for my $i (1 .. 60) {
	$created += post(($a, $b, $c)[$i % 3], $entities[$i % 4]);
}

ok(wait_until(sub {
	total($a) == $created && total($b) == $created && total($c) == $created
}, 10), "all three count $created events");
ok(wait_until(sub { converged([$a, $b, $c], @entities) }, 10),
	'all three agree after more traffic')
	or diag(join "\n", differences([$a, $b, $c], @entities));

###############################################################################
# an instance added under load, to a trimmed stream: it loads the snapshot
# while a and b take POSTs from four clients, reads the stream after it,
# and then counts every event the fleet took, the trimmed ones too

my $bg = $a->background(4, 4, sub {
	my ($k, $i) = @_;
	return post(($i + $k) % 2 ? $a : $b, $entities[($i + $k) % 4]);
});
sleep 1;
my $h = instance('h');
my $loaded = $a->background_wait($bg);
$created += $loaded;
cmp_ok($loaded, '>', 100, "$loaded POSTs answered 201 during the join");
ok(wait_until(sub { total($h) == $created && total($a) == $created }, 15),
	"h counts the fleet's $created events (" . total($h) . ')');
ok(wait_until(sub { converged([$a, $b, $h], @entities) }, 10),
	'h answers what a and b answer')
	or diag(join "\n", differences([$a, $b, $h], @entities));
is(metric($h, 'usage_sync_snapshots_loaded_total'), 1,
	'metrics: h started from a snapshot');
$h->finish();

###############################################################################
# an instance away while the stream was trimmed past its position: at its
# restart from its state file, it loads the snapshot again

my $g = Test::Usage->new();
mkdir $g->dir . '/state';
chmod 0777, $g->dir . '/state';    # workers run as nobody under root
$g->write_config(conf('g', '',
	'state=%%TESTDIR%%/state/usage.state'))->run();
ok(wait_until(sub { total($g) == $created }, 10), 'g joins and catches up');
my $gpos = (($g->get('/info')->json // {})->{sync} // {})->{readPosition}
	// '';
like($gpos, qr/^\d+-\d+$/, "g's read position ($gpos)");
$g->stop();
ok(!$g->alive, 'g stopped, its state file saved');

# more traffic, snapshots and trims, until the stream's first entry is
# past g's position
sub id_after {
	my ($x, $y) = @_;
	my ($xm, $xs) = split /-/, $x // '0-0';
	my ($ym, $ys) = split /-/, $y;
	return $xm > $ym || ($xm == $ym && $xs > $ys);
}
my $until = time() + 30;
while (!id_after(xinfo()->{'recorded-first-entry-id'}, $gpos) && time() < $until) {
	for my $j (1 .. 20) {
		$created += post($j % 2 ? $a : $b, $entities[$j % 4]);
	}
	sleep 0.5;
}
ok(id_after(xinfo()->{'recorded-first-entry-id'}, $gpos),
	"meanwhile the stream was trimmed past g's position");

$g->run();
ok(wait_until(sub {
	$g->read_file('error.log') =~ /was trimmed: its first entry \d+-\d+ is past \d+-\d+, where zone "usage" stands: it loads the fleet's snapshot/
}, 10), 'g: its position is gone from the stream, logged');
ok(wait_until(sub { total($g) == $created }, 10),
	"g counts every event again (" . total($g) . " of $created)");
ok(wait_until(sub { converged([$a, $g], @entities) }, 10),
	'g answers what a answers')
	or diag(join "\n", differences([$a, $g], @entities));
is(metric($g, 'usage_sync_snapshots_loaded_total'), 1,
	'metrics: g loaded a snapshot at its restart');

###############################################################################
# a corrupted chunk: refused, retried, then the stream from its start

# idle: no newer snapshot replaces the one corrupted
ok(wait_until(sub { total($g) == $created && total($c) == $created }, 10),
	'every instance has every event');
sleep 2;
$manifest = $redis->cmd('GET', "$stream:snapshot") // '';
my ($gen) = $manifest =~ /gen=(\S+)/;
is($redis->cmd('SETRANGE', "$stream:snapshot:$gen:0", 200, 'garbage'),
	length($redis->cmd('GET', "$stream:snapshot:$gen:0") // ''),
	'a chunk of the snapshot is corrupted');

my $d = instance('d');

ok(wait_until(sub {
	$d->read_file('error.log') =~ /could not be loaded, its checksum does not match\n/
}, 10), 'd: the corrupted snapshot is refused, with an [error]');
ok(wait_until(sub {
	$d->read_file('error.log') =~ /reads stream "usage:events" from its start: no snapshot could be loaded/
}, 10), 'd: after its tries, it reads the stream from its start');
cmp_ok(metric($d, 'usage_sync_snapshot_failures_total'), '>=', 3,
	'metrics: the failed loads are counted');
ok(wait_until(sub { total($d) > 0 }, 10), 'd applies what the stream holds');
cmp_ok(total($d), '<', $created,
	'd lacks the trimmed events, as the stream lost them (' . total($d) . ')');
ok(wait_until(sub {
	$d->read_file('error.log') =~ /zone "usage" lacks the entries of stream "usage:events" trimmed before \d+-\d+, and no snapshot had them: it writes no snapshot/
}, 10), 'd: it knows, and says it writes no snapshot');
is(metric($d, 'usage_sync_snapshots_loaded_total'), 0,
	'nothing half-loaded: d loaded no snapshot');

###############################################################################
# a manifest that is not one, and one of another epoch

$redis->cmd('SET', "$stream:snapshot", 'not a manifest');
my $e = instance('e');
ok(wait_until(sub {
	$e->read_file('error.log') =~ /holds no snapshot manifest of usage_sync/
}, 10), 'e: a key that is no manifest is an [error]');
ok(wait_until(sub { total($e) > 0 }, 10), 'e reads the stream instead');

(my $other = $manifest) =~ s/epoch=[0-9a-f]{16}/epoch=00000000000000aa/;
$redis->cmd('SET', "$stream:snapshot", $other);
my $f = instance('f');
ok(wait_until(sub {
	$f->read_file('error.log') =~ /from its start: the snapshot is of another epoch/
}, 10), 'f: a snapshot of another epoch is ignored');


$_->finish() for $a, $b, $c, $d, $e, $f, $g;

done_testing();
