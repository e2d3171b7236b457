#!/usr/bin/perl

# The state file (usage_zone ... state=FILE state_interval=T):
#   - a restart (QUIT, and separately TERM) keeps everything: summaries,
#     histories, the raw list (same ids, same order), stats totals and
#     startTime, client ids (a repeat is still a 200 duplicate); the save on
#     the way out is what carries it (a long interval: no periodic save);
#   - the periodic save: after a crash (kill -9 of the master and the
#     workers) the store comes back as of the last save;
#   - a corrupted file (garbage, empty, shorter than a header, truncated, a
#     flipped payload byte, another format version, another byte order, a
#     bad record under a right checksum) is reported with an [error] naming
#     the problem, nginx serves an empty store and later saves a valid file;
#   - a stop before the first periodic save replaces a refused file;
#   - a state directory that is missing or not writable: an [error] on each
#     save, nginx keeps serving;
#   - a reload that resizes the zone, then a stop: the file holds the new
#     zone, events posted after the reload included.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until iso_ms parse_iso pct $ISO_RE);
use Compress::Zlib qw(crc32);
use Time::HiRes qw(sleep time);

my $HEADER = 64;    # magic, version, order, length, crc, generation, dataset,
                    # saved_at, start_time, last_created

my $now = int(time() * 1000);
my $SINCE = iso_ms($now - 3 * 3600 * 1000);
my $UNTIL = iso_ms($now + 3600 * 1000);

my @ENTITIES = ('sf-a', 'sf-b', 'sf ü/c');    # names in UTF-8, a slash

sub state_dir {
	my ($t) = @_;
	my $d = $t->dir . '/state';
	mkdir $d;
	chmod 0777, $d;    # workers run as nobody under root
	return $d;
}

# everything a client can read back, in a comparable form
sub snapshot {
	my ($t) = @_;
	my %s;
	for my $e (@ENTITIES) {
		my $p = pct($e);
		$s{"summary $e"} = $t->get("/v1/usage/$p?since=$SINCE&until=$UNTIL")
			->data;
		$s{"history $e"} = $t->get("/v1/usage/$p/history?interval=minute"
			. "&since=$SINCE&until=$UNTIL")->data;
	}
	$s{list} = $t->get('/v1/events?limit=1000')->data;
	my $st = $t->get('/v1/usage/stats')->data;
	$s{stats} = { map { $_ => $st->{$_} }
		qw(totalEvents eventsLastHour uniqueEntities eventTypes startTime) };
	$s{store} = { map { $_ => $st->{store}{$_} }
		qw(events recorded duplicates evictions buckets ids rawBytesUsed) };
	return \%s;
}

sub stats { $_[0]->get('/v1/usage/stats')->data }

# the part of error.log written since $from (a length)
sub log_since {
	my ($t, $from) = @_;
	my $log = $t->read_file('error.log');
	return substr($log, $from);
}

# a state file as nginx writes it: header fields and a checked payload
sub check_file {
	my ($bytes) = @_;
	return 'shorter than a header' if length $bytes < $HEADER;
	my ($magic, $version, $order, $len, $crc) =
		unpack('a8 V V Q< V', $bytes);
	return "magic $magic" unless $magic eq 'NGXUSAGE';
	return "version $version" unless $version == 4;
	return sprintf('order %08x', $order) unless $order == 0x01020304;
	return "length $len" unless $len == length($bytes) - $HEADER;
	return 'crc' unless $crc == crc32(substr($bytes, $HEADER));
	return 'ok';
}

###############################################################################
# (a) a restart keeps the store: QUIT, then TERM

my $t = Test::Usage->new();
my $dir = state_dir($t);
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m '
	. 'state=%%TESTDIR%%/state/usage.state state_interval=10m;'))->run();

my (%first, @posted);

sub post {
	my ($t, %ev) = @_;
	my $r = $t->post_json('/v1/events', \%ev);
	push @posted, $r->status;
	$first{ $ev{entityId} . "\0" . $ev{id} } = $r->data if defined $ev{id};
	sleep 0.002;    # distinct createdAt: the order is by createdAt
	return $r;
}

my $i = 0;
for my $e (@ENTITIES) {
	for my $type ('call', 'token', 'byte') {
		$i++;
		post($t, entityId => $e, eventType => $type, id => "id-$i",
			value => $i * 2.5, metadata => { n => $i, e => $e });
		post($t, entityId => $e, eventType => $type);
	}
	# an event time 10 minutes back (a minute bucket) and 2 hours back
	# (an hour bucket)
	post($t, entityId => $e, eventType => 'late', value => 7,
		timestamp => iso_ms($now - 600 * 1000), id => "late-$e");
	post($t, entityId => $e, eventType => 'late', value => 0.125,
		timestamp => iso_ms($now - 7200 * 1000));
}
is(scalar(grep { $_ == 201 } @posted), scalar @posted,
	scalar(@posted) . ' events posted');
is(post($t, entityId => 'sf-a', eventType => 'call', id => 'id-1')->status,
	200, 'a duplicate before the restart');

my $st = stats($t);
is($st->{store}{saves}, 0, 'no periodic save within the interval');
ok(exists $st->{store}{savedAt} && !defined $st->{store}{savedAt},
	'store.savedAt null before any save');

my $before = snapshot($t);
is($before->{stats}{totalEvents}, 24, 'stats before the restart');
my $uptime = $st->{uptime}{ms};

$t->stop();
ok(-s "$dir/usage.state", 'the state file is written on QUIT');
is(check_file($t->read_file("$dir/usage.state")), 'ok',
	'a well-formed state file');
ok(!glob("$dir/usage.state.tmp*"), 'no temporary file left');
my $stopped = int(time() * 1000);

my $mark = length $t->read_file('error.log');
$t->run();

like(log_since($t, $mark), qr/\[notice\].*usage zone "usage": loaded from \Q$dir\E\/usage\.state: 24 events in the window, 24 raw events, 3 entities/,
	'the load is reported');

my $after = snapshot($t);
for my $k (sort keys %$before) {
	is_deeply($after->{$k}, $before->{$k}, "QUIT restart: $k kept");
}

$st = stats($t);
ok($st->{uptime}{ms} >= $uptime, 'uptime goes on from the carried startTime');
like($st->{store}{savedAt} // '', $ISO_RE, 'store.savedAt after the restart');
my $saved = parse_iso($st->{store}{savedAt} // '') // 0;
ok($saved >= $now && $saved <= $stopped + 1000, 'savedAt is the exit save');
ok(exists $st->{store}{saves}, 'store.saves present');

my $r = $t->post_json('/v1/events',
	{ entityId => 'sf-b', eventType => 'call', id => 'id-4', value => 99 });
is($r->status, 200, 'a client id from before the restart is a duplicate');
is_deeply($r->data, $first{"sf-b\0id-4"}, 'answered with the stored event');
$r = $t->post_json('/v1/events',
	{ entityId => 'sf ü/c', eventType => 'late', id => 'late-sf ü/c' });
is($r->status, 200, 'a duplicate of an event with a client timestamp');
is(stats($t)->{totalEvents}, 24, 'duplicates not counted');

# more events, then TERM
$r = post($t, entityId => 'sf-a', eventType => 'after', id => 'after-1',
	value => 3);
is($r->status, 201, 'a new event after the restart');
ok($r->data->{createdAt} >= $before->{list}{events}[0]{createdAt},
	'createdAt goes on from the carried one');
is($t->get('/v1/events?limit=1')->data->{events}[0]{id}, 'after-1',
	'listed first');
post($t, entityId => 'sf-b', eventType => 'token', value => 1e6);

$before = snapshot($t);
is($before->{stats}{totalEvents}, 26, 'stats before TERM');

$t->stop(signal => 'TERM');
$mark = length $t->read_file('error.log');
$t->run();
like(log_since($t, $mark), qr/loaded from .*: 26 events in the window/,
	'loaded after TERM');
$after = snapshot($t);
for my $k (sort keys %$before) {
	is_deeply($after->{$k}, $before->{$k}, "TERM restart: $k kept");
}
is($t->post_json('/v1/events', { entityId => 'sf-a', eventType => 'after',
	id => 'after-1' })->status, 200, 'duplicate after TERM restart');

$t->finish();

###############################################################################
# (b) the periodic save; a crash loses nothing saved

$t = Test::Usage->new();
$dir = state_dir($t);
# a path relative to the prefix
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m '
	. 'state=state/usage.state state_interval=1s;'))->run();

@posted = ();
for my $n (1 .. 30) {
	post($t, entityId => $ENTITIES[$n % 3], eventType => "p" . ($n % 4),
		value => $n, ($n % 2 ? (id => "p-$n") : ()));
}
is(scalar(grep { $_ == 201 } @posted), 30, '30 events posted');
my $last = $t->get('/v1/events?limit=1')->data->{events}[0]{createdAt};

# a save taken after the last event (a save may have started before it:
# the next one, an interval later, covers it)
my $sat;
ok(wait_until(sub {
	$st = stats($t);
	$sat = parse_iso($st->{store}{savedAt} // '');
	$st->{store}{saves} >= 1 && $sat && $sat > $last + 20;
}, 6), 'a periodic save within the interval')
	or diag explain $st->{store};
ok(-s "$dir/usage.state", 'the file is there');
ok(!glob("$dir/usage.state.tmp*"), 'no temporary file left');
is(check_file($t->read_file("$dir/usage.state")), 'ok',
	'a well-formed periodic save');

$before = snapshot($t);
my $saved_at = $st->{store}{savedAt};

my @workers = $t->worker_pids();
my $master = $t->master_pid();
$t->crash();
ok(!Test::Usage::alive($master) && !grep({ Test::Usage::alive($_) } @workers),
	'master and workers killed');

$mark = length $t->read_file('error.log');
$t->run();
like(log_since($t, $mark), qr/loaded from .*usage\.state: 30 events/,
	'loaded after the crash');
$after = snapshot($t);
for my $k (sort keys %$before) {
	is_deeply($after->{$k}, $before->{$k}, "after kill -9: $k as saved");
}
is(stats($t)->{store}{savedAt}, $saved_at, 'savedAt is the last save');
is($t->post_json('/v1/events', { entityId => $ENTITIES[1],
	eventType => 'p1', id => 'p-1' })->status, 200,
	'a client id saved before the crash is a duplicate');

$t->finish();

###############################################################################
# (c) corrupted files: reported, ignored, replaced by the next save

$t = Test::Usage->new();
$dir = state_dir($t);
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m '
	. 'state=%%TESTDIR%%/state/usage.state state_interval=1s;'))->run();

for my $n (1 .. 10) {
	$t->post_json('/v1/events', { entityId => "c$n", eventType => 'x',
		id => "c-$n", metadata => { n => $n } });
}
my $start0 = stats($t)->{startTime};
$t->stop();
my $valid = $t->read_file("$dir/usage.state");
is(check_file($valid), 'ok', 'a valid file to corrupt');

my $payload = substr($valid, $HEADER);

# flip one payload byte (the checksum no longer matches)
my $flipped = $valid;
substr($flipped, $HEADER + 100, 1) = chr(ord(substr($flipped,
	$HEADER + 100, 1)) ^ 0x5a);

# a payload with trailing bytes, under a right length and checksum
my $extra = $payload . "\0\0\0";
my $bad_record = substr($valid, 0, 16) . pack('Q<', length $extra)
	. pack('V', crc32($extra)) . substr($valid, 28, $HEADER - 28) . $extra;

my $v5 = $valid;
substr($v5, 8, 4) = pack('V', 5);

my $swapped = $valid;
substr($swapped, 12, 4) = pack('V', 0x04030201);

my @cases = (
	['garbage', join('', map { chr(($_ * 37 + 11) % 256) } 1 .. 3000),
		qr/"\Q$dir\E\/usage\.state" is not a usage state file, ignored: the store starts empty/],
	['an empty file', '', qr/is not a usage state file/],
	['a file shorter than a header', substr($valid, 0, 40),
		qr/is not a usage state file/],
	['a truncated file', substr($valid, 0, length($valid) - 10),
		qr/is truncated or corrupted \(length or checksum mismatch\), ignored: the store starts empty/],
	['a flipped payload byte', $flipped, qr/is truncated or corrupted/],
	['format version 5', $v5,
		qr/has format version 5, this module reads versions 1 to 4; ignored: the store starts empty/],
	['another byte order', $swapped, qr/written on a machine of another byte order/],
	['a bad record with a right checksum', $bad_record,
		qr/has an invalid record, ignored: the store starts empty/],
);

for my $case (@cases) {
	my ($name, $bytes, $re) = @$case;

	$t->write_file("$dir/usage.state", $bytes);
	$mark = length $t->read_file('error.log');
	$t->run();

	my $log = log_since($t, $mark);
	like($log, qr/\[error\].*usage zone "usage": .*$re/, "$name: reported");
	unlike($log, qr/loaded from/, "$name: not loaded");

	$st = stats($t);
	is($st->{totalEvents}, 0, "$name: an empty store");
	is($t->get('/v1/events')->data->{pagination}{total}, 0,
		"$name: nothing listed");
	isnt($st->{startTime}, $start0, "$name: a new startTime");
	is($t->post_json('/v1/events', { entityId => 'c1', eventType => 'x',
		id => 'c-1' })->status, 201, "$name: an old client id is new");

	ok(wait_until(sub {
		my $f = $t->read_file("$dir/usage.state");
		$f ne $bytes && check_file($f) eq 'ok'
	}, 5), "$name: the next save writes a valid file");

	$t->stop();
}

# the last of them loads
$mark = length $t->read_file('error.log');
$t->run();
like(log_since($t, $mark), qr/loaded from .*: 1 events in the window/,
	'the rewritten file loads');
is($t->get('/v1/events')->data->{events}[0]{id}, 'c-1', 'with its event');
$t->finish();

# A stop before the first periodic save: the exit save replaces a file that
# was refused at start (here one with a flipped payload byte) and keeps what
# was posted since.

$t = Test::Usage->new();
$dir = state_dir($t);
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m '
	. 'state=%%TESTDIR%%/state/usage.state state_interval=10m;'));
$t->write_file("$dir/usage.state", $flipped);
$t->run();
like($t->read_file('error.log'), qr/is truncated or corrupted/,
	'exit save: the bad file is refused at start');
is($t->post_event('x1', 'x')->status, 201, 'exit save: an event posted');
$t->stop();
is(check_file($t->read_file("$dir/usage.state")), 'ok',
	'exit save: the refused file is replaced on QUIT');
$mark = length $t->read_file('error.log');
$t->run();
is(stats($t)->{totalEvents}, 1, 'exit save: the event survives the restart');
unlike(log_since($t, 0), qr/was saved by a newer copy of this store/,
	'exit save: a refused file is not taken for a newer instance\'s');

$t->finish();

###############################################################################
# (e) a reload that resizes the zone copies the store into a new zone; a
# stop afterwards saves the new zone (its events since the reload too)

$t = Test::Usage->new();
$dir = state_dir($t);
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m '
	. 'state=%%TESTDIR%%/state/usage.state state_interval=10m;'))->run();

$t->post_event('rs', 'before') for 1 .. 3;
my $conf = $t->read_file('nginx.conf');
$conf =~ s/usage:1m/usage:2m/;
$t->write_file('nginx.conf', $conf);
ok($t->reload(), 'resize: reloaded with a 2m zone');
like($t->read_file('error.log'), qr/loaded from the resized zone: 3 events/,
	'resize: the store is copied');
$t->post_event('rs', 'after') for 1 .. 2;
$before = snapshot($t);
my $rs = $t->get("/v1/usage/rs?since=$SINCE&until=$UNTIL")->data;
is($before->{stats}{totalEvents}, 5, 'resize: 5 events before the stop');

$t->stop();
$mark = length $t->read_file('error.log');
$t->run();
$after = snapshot($t);
is_deeply($t->get("/v1/usage/rs?since=$SINCE&until=$UNTIL")->data, $rs,
	'resize: the summary kept by the restart');
is_deeply($after->{list}, $before->{list}, 'resize: the list kept');
is($after->{stats}{startTime}, $before->{stats}{startTime},
	'resize: startTime kept');
unlike($t->read_file('error.log'), qr/was saved by a newer copy of this store/,
	'resize: the new zone\'s exit save is not refused');

$t->finish();

###############################################################################
# (d) a missing or unwritable state directory: an [error], nginx serves on

for my $case (['missing', 'nodir/usage.state'],
	['unwritable', 'ro/usage.state'])
{
	my ($name, $path) = @$case;

	$t = Test::Usage->new();
	mkdir $t->dir . '/ro', 0555;
	chmod 0555, $t->dir . '/ro';
	$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m '
		. "state=%%TESTDIR%%/$path state_interval=1s;"))->run();

	unlike($t->read_file('error.log'), qr/\[error\]/,
		"$name: no error at start (no file to load)");

	my @w = $t->worker_pids();
	for my $n (1 .. 5) {
		is($t->post_event("d$n", 'x')->status, 201, "$name: post $n");
	}

	ok(wait_until(sub {
		$t->read_file('error.log') =~ /\[error\].*usage zone "usage": cannot save state: open\(\) ".*usage\.state\.tmp\.\d+" failed/
	}, 5), "$name: the failed save is an [error]");

	is($t->get('/health')->status, 200, "$name: healthy");
	is($t->post_event('d6', 'x')->status, 201, "$name: posts accepted");
	$st = stats($t);
	is($st->{totalEvents}, 6, "$name: totals right");
	is($st->{store}{saves}, 0, "$name: no save counted");
	ok(!defined $st->{store}{savedAt}, "$name: savedAt null");
	is_deeply([$t->worker_pids()], \@w, "$name: the same workers (no crash)");
	unlike($t->read_file('error.log'), qr/exited on signal/,
		"$name: no worker died");

	$t->finish();
}

$t->done_testing();
