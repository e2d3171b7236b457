#!/usr/bin/perl

# The README's run command: scripts/run.sh builds the module and runs nginx
# in the foreground on the shipped conf/nginx.conf, on $PORT with $WORKERS
# workers, runtime files under the prefix; the API answers, /metrics too,
# the drain file under the prefix drains; the access log is JSON with the
# trace id; SIGTERM and SIGINT (Ctrl-C) stop it cleanly.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(json_decode wait_until);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep);

my $root = "$FindBin::Bin/..";

# the script loads the normal build; a sanitizer run tests its own .so
plan skip_all => 'runs the normal build only'
	if ($ENV{USAGE_MODULE} // '') =~ m{/asan/};

my $t = Test::Usage->new();

# the processes whose parent is $ppid, from /proc
sub children {
	my ($ppid) = @_;
	my @kids;
	for my $stat (glob '/proc/[0-9]*/stat') {
		open my $fh, '<', $stat or next;
		my $line = <$fh> // '';
		push @kids, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $ppid;
	}
	return @kids;
}

for my $signal (qw(TERM INT)) {
	my ($pid, $prefix, $port, $up) = $t->run_script();
	ok($up, "$signal run: /health answers on port $port")
		or diag `cat $prefix/out.log`;

	my $r = $t->post_event('run-sh', 'x', { a => 1 },
		port => $port, headers => ['X-Trace-Id' => "run-$signal"]);
	is($r->status, 201, "$signal run: event stored");
	is($t->get('/v1/usage/run-sh', port => $port)->data->{totalEvents}, 1,
		"$signal run: and read back");
	is($t->get('/health', port => $port)->json->{service},
		'usage-metrics-api', "$signal run: the shipped configuration");

	$r = $t->get('/metrics', port => $port);
	my ($recorded) = $r->body
		=~ /^usage_events_recorded_total\{zone="usage"\} (\d+)$/m;
	ok($recorded && $recorded >= 1, "$signal run: /metrics");

	# the drain file of the shipped configuration, under the prefix (the
	# workers, as nobody, must be able to stat it)
	chmod 0755, $prefix;
	open my $fh, '>', "$prefix/drain" or die "$prefix/drain: $!";
	close $fh;
	my $draining = wait_until {
		$t->get('/ready', port => $port)->status == 503
	} 3;
	ok($draining, "$signal run: touch drain: /ready 503");
	unlink "$prefix/drain";
	ok((wait_until { $t->get('/ready', port => $port)->status == 200 } 3),
		"$signal run: rm drain: /ready 200");

	my @w = children($pid);
	is(scalar @w, 2, "$signal run: 2 workers");

	my $log = '';
	wait_until {
		$log = -f "$prefix/logs/access.log"
			? `cat $prefix/logs/access.log` : '';
		$log =~ /run-\Q$signal\E/;
	} 5;
	my ($line) = grep { /run-\Q$signal\E/ } split /\n/, $log;
	my $entry = eval { json_decode($line // '') };
	is($entry && $entry->{trace_id}, "run-$signal",
		"$signal run: JSON access log with the trace id");

	kill $signal, $pid;
	my $gone = wait_until { waitpid($pid, WNOHANG) == $pid } 10;
	ok($gone, "$signal run: nginx stopped");
	is($? >> 8, 0, "$signal run: exit status 0") if $gone;
	kill 'KILL', $pid unless $gone;

	my $err = -f "$prefix/logs/error.log" ? `cat $prefix/logs/error.log` : '';
	unlike($err, qr/\[(?:alert|crit|emerg)\]/, "$signal run: clean error.log");
}

done_testing();
