#!/usr/bin/perl

# A summary of the whole window reads each series' kept sums instead of its
# buckets.  Checked against a recount of what was acknowledged, and against
# the bucket walk (a since inside the window takes it): with events that
# leave by their time while their bucket stays, back-dated
# events in minute and hour buckets, compaction into hours (minutes=5m), a
# raw log that evicts, client ids, a reload that resizes the zone (the sums
# come back through the snapshot), and sums past 32 bits (a state file
# with a bucket of 4,294,967,290 events): the summary then falls back to
# the buckets and still counts every event.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf iso_ms);
use Compress::Zlib qw(crc32);
use Time::HiRes qw(time);

my $HEADER = 64;
my @TYPES = qw(call token byte);
my @VALUES = (1, 0.5, 2.25, -1, 3, 0.1);

sub now_ms { int(time() * 1000) }

# every entity as the API answers it, with and without the bucket walk
sub check_entities {
	my ($t, $want, $label) = @_;
	my $since = iso_ms(now_ms() - 3 * 3600 * 1000 + 60 * 1000);
	for my $e (sort keys %$want) {
		my $fast = $t->get("/v1/usage/$e")->data;
		my $slow = $t->get("/v1/usage/$e?since=$since")->data;
		my $w = $want->{$e};
		my %count = map { $_ => $w->{$_}{count} } keys %$w;
		my $total = 0;
		$total += $_ for values %count;
		my $value = 0;
		$value += $w->{$_}{value} for keys %$w;

		is($fast->{totalEvents}, $total, "$label $e: totalEvents");
		is_deeply($fast->{byEventType}, \%count, "$label $e: byEventType");
		ok(abs($fast->{totalValue} - $value) < 1e-9,
			"$label $e: totalValue $fast->{totalValue} = $value");
		is_deeply([sort keys %{ $fast->{valueByEventType} }],
			[sort keys %count], "$label $e: valueByEventType's types");
		for my $type (keys %count) {
			ok(abs($fast->{valueByEventType}{$type} - $w->{$type}{value})
				< 1e-9, "$label $e $type: value");
		}

		# (by the minute, an hour bucket the since cuts is counted from its
		# raw events at their own minutes when the log holds them all,
		# where the whole window shows it whole at its hour: the points
		# may differ, their sum may not)
		for my $interval (qw(minute hour day)) {
			my %point;
			for my $range ('', "&since=$since") {
				my $h = $t->get("/v1/usage/$e/history?interval=$interval"
					. $range)->data;
				$point{$range} = { map { $_->{timestamp} =>
					$_->{count} . ' ' . sprintf('%.9f', $_->{value}) }
					@{ $h->{dataPoints} } };
				if ($interval eq 'minute') {
					my ($n, $v) = (0, 0);
					for (@{ $h->{dataPoints} }) {
						$n += $_->{count};
						$v += $_->{value};
					}
					$point{$range} = { sum => sprintf('%d %.9f', $n, $v) };
				}
			}
			is_deeply($point{''}, $point{"&since=$since"},
				"$label $e: history by $interval, as the bucket walk has it");
		}

		is($slow->{totalEvents}, $fast->{totalEvents},
			"$label $e: the bucket walk counts the same");
		is_deeply($slow->{byEventType}, $fast->{byEventType},
			"$label $e: the bucket walk, by type");
		ok(abs($slow->{totalValue} - $fast->{totalValue}) < 1e-9,
			"$label $e: the bucket walk, value");
	}
}

###############################################################################
# (a) sums kept through back-dating, compaction, eviction, ids, a resize

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m raw=10% '
	. 'retention=3h minutes=5m;'))->run();

srand(42);
my (%want, $posted, $ok);
my $now = now_ms();
for my $i (1 .. 900) {
	my $e = 'sum-' . ($i % 6);
	my $type = $TYPES[$i % 3];
	my $value = $VALUES[int(rand(@VALUES))];
	# up to 170 minutes back (hour buckets), or the last few minutes
	my $back = ($i % 4 == 0) ? int(rand(170 * 60000))
		: int(rand(4 * 60000));
	my %ev = (entityId => $e, eventType => $type, value => $value,
		timestamp => iso_ms($now - $back));
	$ev{id} = "id-" . ($i % 50) if $i % 7 == 0;
	my $r = $t->post_json('/v1/events', \%ev);
	$posted++;
	if ($r->status == 201) {
		$ok++;
		$want{$e}{$type}{count}++;
		$want{$e}{$type}{value} += $value;
	} elsif ($r->status != 200) {
		diag $r->describe;
	}
}
ok($ok > 700, "$ok of $posted events stored (the rest: "
	. 'repeated ids)');
my $st = $t->get('/v1/usage/stats')->data;
ok($st->{store}{evictions} > 0,
	"the raw log evicted ($st->{store}{evictions})");
is($st->{store}{bucketEvictions}, 0, 'no bucket was evicted');

check_entities($t, \%want, 'stored');

# an entity none of whose events is left in the raw log
$t->post_json('/v1/events', { entityId => "sum-$_", eventType => 'call' })
	for 1 .. 2;
$want{"sum-$_"}{call}{count}++, $want{"sum-$_"}{call}{value}++ for 1 .. 2;
check_entities($t, \%want, 'more');

# the sums come back with the snapshot of a resized zone
$t->write_config(api_conf(zone => 'usage_zone zone=usage:2m raw=10% '
	. 'retention=3h minutes=5m;'))->reload();
check_entities($t, \%want, 'resized');

$t->finish();

###############################################################################
# (c) events leaving by their time, one by one, from a bucket that stays

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m retention=3s;'))
	->run();

my $t0 = time();
$t->post_json('/v1/events', { entityId => 'ret', eventType => 'a',
	value => 2 }) for 1 .. 3;
Time::HiRes::sleep(1.6);
$t->post_json('/v1/events', { entityId => 'ret', eventType => 'a',
	value => 0.5 }) for 1 .. 2;
$t->post_json('/v1/events', { entityId => 'ret', eventType => 'b' });
my $u = $t->get('/v1/usage/ret')->data;
is($u->{totalEvents}, 6, 'retention: all six at first');
is($u->{totalValue}, 8, 'retention: their value');

Time::HiRes::sleep(3.2 - (time() - $t0));
$u = $t->get('/v1/usage/ret')->data;
is($u->{totalEvents}, 3, 'retention: the first three left by their time');
is_deeply($u->{byEventType}, { a => 2, b => 1 }, 'retention: by type');
is($u->{totalValue}, 2, 'retention: value');
is_deeply($u->{valueByEventType}, { a => 1, b => 1 },
	'retention: value by type');

Time::HiRes::sleep(4.9 - (time() - $t0));
$u = $t->get('/v1/usage/ret')->data;
is($u->{totalEvents}, 0, 'retention: then all of them');
is_deeply($u->{byEventType}, {}, 'retention: no type left');

$t->finish();

###############################################################################
# (b) sums past 32 bits: a state file whose bucket holds 4,294,967,290
# events; ten more, and the summary reads the buckets again

$t = Test::Usage->new();
my $dir = $t->dir . '/state';
mkdir $dir;
chmod 0777, $dir;
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m '
	. 'state=%%TESTDIR%%/state/usage.state state_interval=10m;'))->run();

is($t->post_json('/v1/events', { entityId => 'big', eventType => 'huge',
	value => 1.5 })->status, 201, 'big: one event');
is($t->post_json('/v1/events', { entityId => 'big', eventType => 'small' })
	->status, 201, 'big: one of another type');
$t->stop();

open(my $fh, '<:raw', "$dir/usage.state") or die "state: $!";
my $bytes = do { local $/; <$fh> };
close $fh;

# the bucket of "huge": span 60000, count 1, value 1.5
my $bucket = pack('V Q< d<', 60000, 1, 1.5);
my $at = index($bytes, $bucket);
ok($at > $HEADER, 'the bucket is in the snapshot');
my $big = 4294967290;
substr($bytes, $at, length $bucket) = pack('V Q< d<', 60000, $big, $big);
substr($bytes, 24, 4) = pack('V', crc32(substr($bytes, $HEADER)));
open($fh, '>:raw', "$dir/usage.state") or die "state: $!";
print $fh $bytes;
close $fh;

$t->run();
$u = $t->get('/v1/usage/big')->data;
is($u->{totalEvents}, $big + 1, 'loaded: 4,294,967,291 events');
is($u->{byEventType}{huge}, $big, 'loaded: huge');

for (1 .. 10) {
	$t->post_json('/v1/events', { entityId => 'big', eventType => 'huge' });
}
$u = $t->get('/v1/usage/big')->data;
is($u->{totalEvents}, $big + 11, 'ten more: past 32 bits, all counted');
is($u->{byEventType}{huge}, $big + 10, 'ten more: huge');
is($u->{byEventType}{small}, 1, 'ten more: small');
is($u->{totalValue}, $big + 11, 'ten more: value');
is_deeply([sort keys %{ $u->{byEventType} }], [qw(huge small)],
	'ten more: the types');

my $h = $t->get('/v1/usage/big/history?interval=minute')->data;
my $sum = 0;
$sum += $_->{count} for @{ $h->{dataPoints} };
is($sum, $big + 11, 'the history agrees');

$t->done_testing();
