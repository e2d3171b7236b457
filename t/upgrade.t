#!/usr/bin/perl

# Binary upgrade with a state file (USR2, WINCH, QUIT to the old master):
# the new master loads the file the old one saved, so summaries, the list,
# stats and client ids are all there once the old workers are gone; new
# events are taken; after the old master exits, the file still loads on a
# restart.  Then the old instance's last saves do not overwrite a file the
# new instance saved: what the old one took after its last save is lost
# (and only that).
#
# nginx ignores USR2 and WINCH unless it runs as a daemon: these masters
# run with "daemon on" (the harness reads the pid file).  The new master
# execs argv[0] (/usr/sbin/nginx) with the same -p/-c/-e arguments; its
# environment is nginx's own, so a sanitizer run passes LD_PRELOAD and the
# sanitizer options on with "env".

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until iso_ms parse_iso alive);
use Time::HiRes qw(sleep time);

my $now = int(time() * 1000);
my $SINCE = iso_ms($now - 3600 * 1000);
my $UNTIL = iso_ms($now + 3600 * 1000);

my $MAIN = "daemon on;\n" . join('', map { "env $_;\n" }
	grep { $ENV{$_} } qw(LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS));
$MAIN .= "env LD_PRELOAD;\n"
	if $ENV{USAGE_NGINX_PRELOAD} && $MAIN !~ /LD_PRELOAD/;

sub conf {
	my ($interval) = @_;
	return $MAIN . api_conf(zone => 'usage_zone zone=usage:1m '
		. "state=%%TESTDIR%%/state/usage.state state_interval=$interval;",
		location => 'add_header X-Worker $pid always;');
}

sub start {
	my ($interval) = @_;
	my $t = Test::Usage->new();
	mkdir $t->dir . '/state';
	chmod 0777, $t->dir . '/state';    # workers run as nobody under root
	$t->write_config(conf($interval))->run();
	return $t;
}

sub stats { $_[0]->get('/v1/usage/stats')->data }

sub snapshot {
	my ($t, @entities) = @_;
	my %s;
	for my $e (@entities) {
		$s{"summary $e"} = $t->get("/v1/usage/$e?since=$SINCE&until=$UNTIL")
			->data;
		$s{"history $e"} = $t->get("/v1/usage/$e/history?interval=minute"
			. "&since=$SINCE&until=$UNTIL")->data;
	}
	$s{list} = $t->get('/v1/events?limit=1000')->data;
	my $st = stats($t);
	$s{stats} = { map { $_ => $st->{$_} }
		qw(totalEvents uniqueEntities eventTypes startTime) };
	return \%s;
}

# the old master's workers (the new master is a child of the old one too)
sub old_workers {
	my ($t) = @_;
	return grep { $_ != $t->master_pid } $t->worker_pids($t->old_pid);
}

# a request answered by one of the given workers (fresh connections)
sub through {
	my ($t, $workers, $method, $path, %o) = @_;
	my %w = map { $_ => 1 } @$workers;
	for (1 .. 200) {
		my $r = $t->request($method, $path, %o);
		return $r if $w{ $r->header('X-Worker') // 0 };
	}
	return undef;
}

###############################################################################
# USR2 after a save, WINCH, QUIT

my $t = start('1s');
my $old = $t->master_pid;

my (%first, $last);
for my $i (1 .. 12) {
	my $r = $t->post_json('/v1/events', { entityId => 'up-' . ($i % 3),
		eventType => 't' . ($i % 4), value => $i * 1.5, id => "u$i",
		metadata => { i => $i } });
	$first{"u$i"} = $r->data if $r->status == 201;
	$last = $r->data->{createdAt};
	sleep 0.002;
}
is(scalar keys %first, 12, 'events posted to the old binary');

# a save that covers the last event
my $st;
ok(wait_until(sub {
	$st = stats($t);
	($st->{store}{saves} // 0) >= 1
		&& (parse_iso($st->{store}{savedAt} // '') // 0) > $last + 20;
}, 6), 'the old binary saved') or diag explain $st->{store};

my @E = map { "up-$_" } 0 .. 2;
my $before = snapshot($t, @E);
is($before->{stats}{totalEvents}, 12, 'stats before the upgrade');

my $new = $t->upgrade();
ok($new, 'USR2: a new master') or BAIL_OUT('no binary upgrade');
isnt($new, $old, 'with another pid');
is($t->old_pid, $old, 'the old master is kept');
like($t->read_file('nginx.pid.oldbin'), qr/^$old\b/,
	'the old pid in nginx.pid.oldbin');
like($t->read_file('nginx.pid'), qr/^$new\b/, 'the new pid in nginx.pid');
like(`cat /proc/$new/stat`, qr/^$new \(.*\) \S $old /,
	'the new master is a child of the old one');
like($t->read_file('error.log'),
	qr/\[notice\] $new#$new: usage zone "usage": loaded from .*usage\.state: 12 events in the window, 12 raw events, 3 entities/,
	'the new master loads the state file');

my @new_workers = $t->worker_pids();
is(scalar @new_workers, 2, 'the new master has 2 workers');
is(scalar(old_workers($t)), 2, 'the old workers still run');

kill 'WINCH', $old;
ok(wait_until(sub { !old_workers($t) }, 10), 'WINCH: the old workers exit');
ok(alive($old), 'the old master stays');

my $ok = 1;
my %seen;
for (1 .. 10) {
	my $r = $t->get('/v1/usage/stats');
	$seen{ $r->header('X-Worker') // 0 }++;
}
ok(!grep({ my $w = $_; !grep { $_ == $w } @new_workers } keys %seen),
	'only new workers answer');

my $after = snapshot($t, @E);
for my $k (sort keys %$before) {
	is_deeply($after->{$k}, $before->{$k}, "after the upgrade: $k");
}

my $r = $t->post_json('/v1/events', { entityId => 'up-1', eventType => 't1',
	id => 'u1' });
is($r->status, 200, 'a client id from the old binary is a duplicate');
is_deeply($r->data, $first{u1}, 'answered with the stored event');

for my $i (1 .. 4) {
	$r = $t->post_json('/v1/events', { entityId => 'up-new',
		eventType => 'n', id => "n$i", value => 2 });
	is($r->status, 201, "new event $i");
	ok($r->data->{createdAt} >= $last, "new event $i: createdAt goes on");
}

kill 'QUIT', $old;
ok($t->wait_gone($old, 10), 'QUIT: the old master exits');
ok(!-e $t->dir . '/nginx.pid.oldbin', 'nginx.pid.oldbin removed');
like($t->read_file('nginx.pid'), qr/^$new\b/, 'nginx.pid is the new master');
ok(alive($new), 'the new master runs on');
is($t->get('/health')->status, 200, 'healthy');

push @E, 'up-new';
$before = snapshot($t, @E);
is($before->{stats}{totalEvents}, 16, '16 events');
is($before->{stats}{startTime}, $after->{stats}{startTime},
	'startTime of the data set kept');

# a restart of the new binary loads what it saved
$t->stop();
ok(!alive($new), 'the new master stopped');
my $mark = length $t->read_file('error.log');
$t->run();
like(substr($t->read_file('error.log'), $mark),
	qr/loaded from .*: 16 events in the window/, 'the restart loads the file');
$after = snapshot($t, @E);
for my $k (sort keys %$before) {
	is_deeply($after->{$k}, $before->{$k}, "after the restart: $k");
}
is($t->post_json('/v1/events', { entityId => 'up-new', eventType => 'n',
	id => 'n1' })->status, 200, 'a client id of the new binary is kept');

$t->finish();

###############################################################################
# The old instance must not overwrite what the new one saved.
# A long interval on the old binary: the file is written by a reload (the
# exiting workers save), then events B stay unsaved in the old zone.  The
# new binary (interval 1s) loads the file, takes events C and saves them;
# the old workers (WINCH) and the old master (QUIT) then leave the file
# alone: a restart has A and C, not B.

$t = start('10m');
$old = $t->master_pid;
my $file = $t->dir . '/state/usage.state';

my @A = map { $t->post_event('ov-a', 'x')->data->{id} } 1 .. 3;
ok($t->reload(), 'reloaded: the exiting workers save');
ok(wait_until(sub { -s $file }, 5), 'the file has A');
my @B = map { $t->post_event('ov-b', 'x')->data->{id} } 1 .. 2;
is(scalar(grep { defined } @A, @B), 5, 'A and B posted');

$t->write_config(conf('1s'));
$new = $t->upgrade();
ok($new, 'USR2 with a 1s interval') or BAIL_OUT('no binary upgrade');
like($t->read_file('error.log'), qr/\[notice\] $new#$new: .*loaded from .*: 3 events/,
	'the new binary loads A (B was never saved)');

# C through the new workers; whatever the old workers take is lost with B
@new_workers = $t->worker_pids();
my (@C, @lost);
for my $i (1 .. 500) {
	my $r = $t->post_event('ov-c', 'x');
	if (grep { $_ == ($r->header('X-Worker') // 0) } @new_workers) {
		push @C, $r->data->{id};
	} else {
		push @lost, $r->data->{id};
	}
	last if @C >= 3;
}
ok(@C >= 1, scalar(@C) . ' events C through the new workers, '
	. scalar(@lost) . ' through the old ones');

ok(wait_until(sub {
	my $r = through($t, \@new_workers, 'GET', '/v1/usage/stats');
	$r && $r->data->{store}{saves} >= 1;
}, 6), 'the new binary saved C');

kill 'WINCH', $old;
ok(wait_until(sub { !old_workers($t) }, 10), 'WINCH: the old workers exit');
kill 'QUIT', $old;
ok($t->wait_gone($old, 10), 'QUIT: the old master exits');

my @refused = $t->read_file('error.log')
	=~ /\[notice\] (\d+)#\d+: usage zone "usage": ".*usage\.state" was saved by a newer copy of this store, not overwritten/g;
ok(scalar @refused, 'the old instance did not overwrite the file')
	or diag $t->read_file('error.log');
ok(!grep({ $_ == $new || grep { $_ == $new } @new_workers } @refused),
	'refused by old processes only');

$before = $t->get('/v1/events?limit=1000')->data;
is($before->{pagination}{total}, 3 + @C, 'the new binary has A and C');

$t->stop();
$t->run();
$after = $t->get('/v1/events?limit=1000')->data;
is_deeply($after, $before, 'a restart loads A and C');
my %ids = map { $_->{id} => 1 } @{ $after->{events} };
is(scalar(grep { $ids{$_} } @A, @C), 3 + @C, 'A and C are there');
is(scalar(grep { $ids{$_} } @B, @lost), 0,
	'what the old binary took after its last save is lost');

$t->done_testing();
