#!/usr/bin/perl

# Zero-downtime reload: 20 keep-alive clients, each on its own entity, POST
# events with client ids ("c<client>-<n>") and read their own summary (every
# fifth request) for 4 s, while the master is reloaded (HUP) 5 times, ~0.5 s
# apart, with 2 workers.
#
# A request is either answered in full or not at all: a kept-alive
# connection that an exiting old worker closes just as the client reuses it
# gives EOF or a reset before any byte of a response.  Such a request is
# retried once, on a new connection (counted and printed, not a failure); a
# retry of an event that was in fact stored answers 200 with it.  Anything
# else is a failure: a partial response, a timeout, an error status, a
# second miss in a row.
#
# Asserted: no failure; every POST 201 (or 200 for a retried id); every GET
# 200 and counting exactly the client's acknowledged events so far (read
# your writes across workers and generations); afterwards, per entity, the
# summary total equals the number of distinct acknowledged ids, the event
# list holds each acknowledged id exactly once and nothing else; a client
# misses at most one answer per reload; each reload started new workers, requests were served by several generations
# of workers, and the old ones are gone.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until);
use Time::HiRes qw(sleep time);
use Errno ();

my $CLIENTS = 20;
my $SECONDS = 4;
my $MAX = 3000;         # requests per client at most
my $RELOADS = 5;
my $GAP = 0.5;          # seconds between reloads
my $TIMEOUT = 5;        # per request

my $t = Test::Usage->new(timeout => $TIMEOUT);
$t->write_config(api_conf(
	zone => 'usage_zone zone=usage:32m max_ids=200000;',
	location => 'add_header X-Worker $pid always;'))->run();

my $master = $t->master_pid;
my @gen0 = $t->worker_pids();

# one request on $$conn (connecting when needed); returns (class, response,
# reason): "ok" a whole response, "none" no byte of a response (EOF, reset,
# or the send failed), "fail" anything else
sub attempt {
	my ($conn, $method, $path, %o) = @_;
	$$conn //= $t->connect();
	return ('none', undef, 'connect failed') unless $$conn;

	my $t0 = time();
	$! = 0;
	my $r = $$conn->request($method, $path, keepalive => 1, %o);
	my $reset = $!{ECONNRESET} || $!{EPIPE};
	my $took = time() - $t0;

	if ($r->status) {
		my $close = ($r->header('Connection') // '') =~ /close/i;
		if ($r->error || $close) {
			$$conn->close();
			undef $$conn;
		}
		return ('fail', $r, "partial response: " . $r->error) if $r->error;
		return ('ok', $r);
	}

	$$conn->close();
	undef $$conn;
	my $err = $r->error // '?';
	my $got = length($r->{partial} // '');
	return ('fail', $r, "partial response ($got bytes): $err") if $got;
	return ('none', $r, $err)
		if $err =~ /^(send failed|connection closed before response)/;
	# the harness reads a reset as a read error, reported like a timeout
	return ('none', $r, "reset: $err")
		if $err =~ /^timeout/ && ($reset || $took < $TIMEOUT * 0.8);
	return ('fail', $r, $err);
}

# a client: one line per request
#   P <id> <status> <tries> <worker>     a POST
#   G <status> <tries> <worker> <counted> <acked so far>
#   F <what>: <why>                      a failure
#   N <why>                              no response: retried
sub client {
	my ($i) = @_;
	my $entity = "rl-c$i";
	my $out = '';
	my $end = time() + $SECONDS;
	my ($conn, $acked) = (undef, 0);
	for my $n (1 .. $MAX) {
		last if time() > $end;
		my $get = $n % 5 == 0;
		my @req = $get ? ('GET', "/v1/usage/$entity")
			: ('POST', '/v1/events', json => { entityId => $entity,
				eventType => 't' . ($n % 3), id => "c$i-$n" });

		my ($class, $r, $why) = attempt(\$conn, @req);
		my $tries = 1;
		if ($class eq 'none') {
			# once, on a new connection
			$out .= "N $why\n";
			$tries = 2;
			($class, $r, $why) = attempt(\$conn, @req);
			$why = "no response twice: $why" if $class eq 'none';
		}
		if ($class ne 'ok') {
			$out .= "F $req[0] $req[1] #$n (try $tries): $why\n";
			next;
		}

		my $worker = $r->header('X-Worker') // '-';
		my $status = $r->status;
		if ($get) {
			my $counted = $r->data->{totalEvents} // -1;
			$out .= "G $status $tries $worker $counted $acked\n";
		} else {
			$acked++ if $status == 201 || ($status == 200 && $tries > 1);
			$out .= "P c$i-$n $status $tries $worker\n";
		}
	}
	return $out;
}

# the reloader: HUP, wait for the new generation, pause
#   R <k> <new worker pids, comma-separated> <seconds to start them>
sub reloader {
	my $out = '';
	sleep $GAP;
	for my $k (1 .. $RELOADS) {
		my %before = map { $_ => 1 } $t->worker_pids($master);
		my $t0 = time();
		kill 'HUP', $master;
		my $new = wait_until {
			my @n = grep { !$before{$_} } $t->worker_pids($master);
			@n >= 2 ? \@n : undef;
		} 10;
		$out .= sprintf("R %d %s %.2f\n", $k,
			$new ? join(',', @$new) : 'none', time() - $t0);
		sleep $GAP;
	}
	return $out;
}

my @out = $t->parallel($CLIENTS + 1, sub {
	$_[0] > $CLIENTS ? reloader() : client($_[0]);
}, timeout => $SECONDS + $RELOADS * ($GAP + 10) + 20);

###############################################################################

my $reloads = pop(@out) // '';
my @gens = ([@gen0]);
for (split /\n/, $reloads) {
	my ($k, $pids, $took) = /^R (\d+) (\S+) (\S+)/ or next;
	push @gens, $pids eq 'none' ? [] : [split /,/, $pids];
	note("reload $k: new workers $pids in ${took}s");
}
is(scalar(grep { @$_ >= 2 } @gens[1 .. $#gens]), $RELOADS,
	"$RELOADS reloads, each started new workers");
is(scalar(grep { defined } @out), $CLIENTS, 'every client finished');

my (%acked, %attempted, %status, @failures, %served, %missed);
my ($posts, $gets, $retried, $retried_dup, $gets_ok, @stale) = (0) x 5;
for my $i (1 .. $CLIENTS) {
	my $text = $out[$i - 1] // next;
	my $e = "rl-c$i";
	for (split /\n/, $text) {
		if (/^F (.*)/) {
			push @failures, "client $i: $1";
		} elsif (/^N (.*)/) {
			(my $why = $1) =~ s/:.*//;
			$missed{$why}++;
		} elsif (my ($id, $st, $tries, $w) = /^P (\S+) (\d+) (\d) (\S+)/) {
			$posts++;
			$attempted{$e}{$id} = 1;
			$status{"POST $st"}++;
			$served{$w}++;
			$retried++ if $tries > 1;
			$retried_dup++ if $tries > 1 && $st == 200;
			if ($st == 201 || ($st == 200 && $tries > 1)) {
				$acked{$e}{$id}++;
			} else {
				push @failures, "client $i: POST $id answered $st"
					. ($tries > 1 ? ' on a retry' : '');
			}
		} elsif (my ($gs, $gt, $gw, $counted, $so_far)
				= /^G (\d+) (\d) (\S+) (-?\d+) (\d+)/) {
			$gets++;
			$status{"GET $gs"}++;
			$served{$gw}++;
			$retried++ if $gt > 1;
			if ($gs != 200) {
				push @failures, "client $i: GET answered $gs";
			} else {
				$gets_ok++;
				push @stale, "client $i: counted $counted of $so_far"
					if $counted != $so_far;
			}
		}
	}
}

my $gen_served = grep { my $g = $_; grep { $served{$_} } @$g } @gens;
diag(sprintf('%d requests (%d POST, %d GET) by %d clients in %d s, '
	. '%d reloads; answers: %s; retried after no response: %d (%s; %d of '
	. 'them a 200 for an id already stored); %d of %d worker generations '
	. 'served',
	$posts + $gets, $posts, $gets, $CLIENTS, $SECONDS, $RELOADS,
	join(', ', map { "$_ x $status{$_}" } sort keys %status),
	$retried, join(', ', map { "$_ x $missed{$_}" } sort keys %missed) || '-',
	$retried_dup, $gen_served, scalar @gens));

is(scalar @failures, 0, 'no failed request: every one answered in full, '
	. 'at most one retry after no response')
	or diag(join("\n", @failures[0 .. ($#failures < 19 ? $#failures : 19)]));
ok($posts >= $CLIENTS * 20, "a real load ($posts POSTs)");
is(($status{'POST 201'} // 0) + $retried_dup, $posts,
	'every POST 201, or 200 for a retried id');
is($gets_ok, $gets, 'every GET 200');
is(scalar @stale, 0, 'every GET counts exactly the client\'s acknowledged '
	. 'events so far') or diag(join("\n", @stale[0 .. ($#stale < 9 ? $#stale : 9)]));
# an exiting worker closes each idle connection once: a client misses at
# most one answer per reload (no reconnect storm)
ok($retried <= $CLIENTS * $RELOADS,
	"at most one retry per client and reload ($retried)");
ok($gen_served >= 4, "requests served across reloads ($gen_served of "
	. scalar(@gens) . ' worker generations)');

###############################################################################
# afterwards: the old workers are gone, nothing lost, nothing twice

my @last = @{ $gens[-1] };
ok(wait_until(sub {
	my @w = $t->worker_pids();
	@w == 2 && join(',', sort @w) eq join(',', sort @last);
}, 15), 'only the last generation of workers is left');
my $hups = () = $t->read_file('error.log') =~ /signal 1 \(SIGHUP\) received/g;
is($hups, $RELOADS, "the master logged $RELOADS reconfigurations");

my $st = $t->get('/v1/usage/stats')->data->{store} // {};
is($st->{evictions}, 0, 'no raw event evicted (the list is complete)');
is($st->{idEvictions}, 0, 'no client id forgotten');

my ($lost, $twice, $foreign, $miscount) = (0, 0, 0, 0);
for my $i (1 .. $CLIENTS) {
	my $e = "rl-c$i";
	my $acked = keys %{ $acked{$e} || {} };
	my $total = $t->get("/v1/usage/$e")->data->{totalEvents} // -1;
	$miscount++, diag("$e: total $total, $acked acknowledged")
		if $total != $acked;

	my (%listed, $offset);
	$offset = 0;
	while ($offset < 100000) {
		my $d = $t->get("/v1/events?entityId=$e&limit=1000&offset=$offset")
			->data;
		my @ev = @{ $d->{events} || [] };
		$listed{ $_->{id} }++ for @ev;
		$offset += 1000;
		last if !$d->{pagination}{hasMore} || !@ev;
	}
	my @lost = grep { !$listed{$_} } keys %{ $acked{$e} || {} };
	my @twice = grep { $listed{$_} > 1 } keys %listed;
	my @foreign = grep { !$attempted{$e}{$_} } keys %listed;
	diag("$e: acknowledged but not listed: @lost[0 .. ($#lost < 4 ? $#lost : 4)]")
		if @lost;
	diag("$e: listed more than once: @twice") if @twice;
	$lost += @lost;
	$twice += @twice;
	$foreign += @foreign;
}
is($miscount, 0, 'per entity, the total equals the distinct acknowledged ids');
is($lost, 0, 'no acknowledged event lost');
is($twice, 0, 'no id stored twice');
is($foreign, 0, 'nothing stored that was not sent');

is($t->get('/health')->status, 200, 'healthy afterwards');
is($t->get('/ready')->status, 200, 'ready afterwards');

$t->done_testing();
