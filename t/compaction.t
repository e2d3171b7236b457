#!/usr/bin/perl

# Buckets rolled up and buckets leaving, seen by summaries that read the
# series' kept sums.  A snapshot is edited to put an entity's buckets where
# time would have taken them (the events themselves are no longer in the raw
# log: max_events=1), then loaded:
#   (a) two minute buckets of one hour, older than "minutes": the first read
#       rolls the first into its hour and merges the second into it; the
#       totals stay, and the history shows one hour;
#   (b) a minute bucket that leaves the window a few seconds after the
#       first read (which compacted the entity): the next read, in the same
#       minute, no longer counts it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf iso_ms wait_until);
use Compress::Zlib qw(crc32);
use POSIX qw(floor);
use Time::HiRes qw(sleep time);

my $HEADER = 64;
my $MINUTE = 60000;
my $HOUR = 3600000;

sub now_ms { int(time() * 1000) }

sub read_state {
	my ($file) = @_;
	open(my $fh, '<:raw', $file) or die "$file: $!";
	local $/;
	return scalar <$fh>;
}

sub write_state {
	my ($file, $bytes) = @_;
	substr($bytes, 24, 4) = pack('V', crc32(substr($bytes, $HEADER)));
	open(my $fh, '>:raw', $file) or die "$file: $!";
	print $fh $bytes;
	close $fh;
}

# moves the minute bucket holding (count, value) to start at $start
sub move_bucket {
	my ($bytes, $count, $value, $start, $label) = @_;
	my $at = index($$bytes, pack('V Q< d<', $MINUTE, $count, $value));
	ok($at > $HEADER + 8, "$label: the bucket is in the snapshot");
	substr($$bytes, $at - 8, 8) = pack('q<', $start);
}

sub instance {
	my ($zone) = @_;
	my $t = Test::Usage->new();
	my $dir = $t->dir . '/state';
	mkdir $dir;
	chmod 0777, $dir;
	$t->write_config(api_conf(zone => "usage_zone zone=usage:1m $zone "
		. 'state=%%TESTDIR%%/state/usage.state state_interval=10m;'))->run();
	return ($t, "$dir/usage.state");
}

sub post {
	my ($t, %ev) = @_;
	my $r = $t->post_json('/v1/events', \%ev);
	is($r->status, 201, "POST $ev{entityId} $ev{eventType}")
		or diag $r->describe;
}

###############################################################################
# (a) roll-up and merge

my ($t, $file) = instance('max_events=1');
my $now = now_ms();
post($t, entityId => 'c', eventType => 'a', value => 1.5,
	timestamp => iso_ms($now - 2 * $MINUTE)) for 1 .. 3;
post($t, entityId => 'c', eventType => 'a', value => 1.5) for 1 .. 5;
post($t, entityId => 'z', eventType => 'a');    # the raw log's only event
is($t->get('/v1/usage/c')->data->{totalEvents}, 8, 'c: 8 events');
$t->stop();

# two hours back, minutes 10 and 11 of that hour
my $hour = floor(($now - 2 * $HOUR) / $HOUR) * $HOUR;
my $bytes = read_state($file);
move_bucket(\$bytes, 3, 4.5, $hour + 10 * $MINUTE, 'older minute');
move_bucket(\$bytes, 5, 7.5, $hour + 11 * $MINUTE, 'newer minute');
write_state($file, $bytes);

$t->run();
my $u = $t->get('/v1/usage/c')->data;
is($u->{totalEvents}, 8, 'rolled up: totalEvents');
is_deeply($u->{byEventType}, { a => 8 }, 'rolled up: byEventType');
is($u->{totalValue}, 12, 'rolled up: totalValue');
my $h = $t->get('/v1/usage/c/history?interval=minute')->data;
is_deeply([map { [$_->{timestamp}, $_->{count}, $_->{value}] }
	@{ $h->{dataPoints} }], [[iso_ms($hour), 8, 12]],
	'one point: the hour both minutes rolled into');
is($h->{resolution}, 'hour', 'the history says it is by the hour');
is($t->get('/v1/usage/c?since=' . iso_ms($hour - $HOUR))->data
	->{totalEvents}, 8, 'the bucket walk counts the same');
$t->finish();

###############################################################################
# (b) a bucket that leaves the window between two reads of one minute

# retention R is chosen so that the bucket's last moment in the window
# falls a few seconds ahead: the bucket [S, S + 1 min) leaves at
# S + 1 min + R, a second whose place in the minute is R's
my $sec = int(time());
my $leave = $sec + 12;
my $retention = 70 + (($leave - 70) % 60);
($t, $file) = instance("max_events=1 retention=${retention}s");

post($t, entityId => 'e', eventType => 'a', value => 2) for 1 .. 4;
post($t, entityId => 'e', eventType => 'b');
post($t, entityId => 'z', eventType => 'a');
$t->stop();

$bytes = read_state($file);
my $start = ($leave - 60 - $retention) * 1000;
move_bucket(\$bytes, 4, 8, $start, 'the leaving bucket');
write_state($file, $bytes);

$t->run();
$u = $t->get('/v1/usage/e')->data;
ok(time() < $leave, 'read before the bucket leaves');
is($u->{totalEvents}, 5, 'before: the bucket counts');
is_deeply($u->{byEventType}, { a => 4, b => 1 }, 'before: by type');

sleep($leave - time() + 1.2);
$u = $t->get('/v1/usage/e')->data;
is($u->{totalEvents}, 1, 'after: the bucket left the window');
is_deeply($u->{byEventType}, { b => 1 }, 'after: by type');
is($u->{totalValue}, 1, 'after: value');
note(int(($leave - 12) / 60) == int(($leave + 1) / 60)
	? 'both reads in one minute' : 'the reads straddled a minute');

$t->done_testing();
