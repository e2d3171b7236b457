#!/usr/bin/perl

# The helper of scripts/instr (core Perl only).
#
#   instr.pl ports N            N free TCP ports on 127.0.0.1
#   instr.pl wait PORT SECONDS  until GET /health answers 200
#   instr.pl evictions PORT     evicted raw events of both zones: "API SELF"
#   instr.pl fill PORT SECONDS  POST (pipelined) until both zones evict
#   instr.pl run PORT KIND N CONTROL...
#                               on one keep-alive connection: one request of
#                               KIND, CONTROL -z, N requests of KIND one at a
#                               time, CONTROL -d (CONTROL: the
#                               callgrind_control command line, its output
#                               to $INSTR_CONTROL_LOG); prints
#                               "requests=N first=201 statuses=201:N
#                               non2xx=0" (non2xx: the first one's too)
#   instr.pl report RESULTS N DUMPS PCT CASE...
#                               the markdown table of RESULTS (lines of
#                               scripts/instr) and, for a case that differs
#                               from the first module by more than PCT %, the
#                               functions that changed most, from the dumps
#                               DUMPS/mM-CASE.out (callgrind_annotate)
#
# KIND: static:PATH (GET PATH), post (the bodies of scripts/bench: 1,000
# entities, 5 types), postnew (the same with a new client id each time),
# postdup (repeats the ids of the last 1,000 postnew requests of the same
# N), usage, history, list (GETs over the 1,000 entities).

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

my $TIMEOUT = 60;    # seconds for any one response (valgrind is slow)
my @TYPES = qw(api_request search upload download login);

my %cmd = (ports => \&cmd_ports, wait => \&cmd_wait,
	evictions => \&cmd_evictions, fill => \&cmd_fill, run => \&cmd_run,
	report => \&cmd_report);
my $name = shift // '';
die "usage: instr.pl ports|wait|evictions|fill|run|report ...\n"
	unless $cmd{$name};
exit($cmd{$name}->(@ARGV) // 0);

###############################################################################

sub entity { sprintf 'customer-%04d', $_[0] % 1000 + 1 }

# scripts/bench.d/bench.lua's event_body(); k = 0 .. 4999 covers every
# (entity, type) pair once; $id: a client id as its first field
sub body {
	my ($k, $id) = @_;
	$k %= 5000;
	return sprintf('{%s"entityId":"%s","eventType":"%s","metadata":'
		. '{"endpoint":"/v1/search","method":"POST","tokens":%d,'
		. '"region":"eu-west-1","latencyMs":%d,"client":"sdk-js/2.3.1",'
		. '"requestId":"req-%08d"}}',
		defined $id ? qq("id":"$id",) : '', entity($k),
		$TYPES[int($k / 1000) % 5], ($k * 37) % 4096 + 1, ($k * 13) % 500 + 1,
		$k);
}

sub post {
	my ($body) = @_;
	return "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		. "Content-Type: application/json\r\nContent-Length: "
		. length($body) . "\r\n\r\n$body";
}

sub get { "GET $_[0] HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" }

# the request number k (0 .. n-1) of a case of n requests
sub request {
	my ($kind, $k, $n) = @_;
	return get($1) if $kind =~ /^static:(.+)/;
	return post(body($k)) if $kind eq 'post';
	return post(body($k, sprintf 'instr-%08d', $k)) if $kind eq 'postnew';
	if ($kind eq 'postdup') {
		my $m = $n < 1000 ? $n : 1000;
		my $j = $n - $m + $k % $m;
		return post(body($j, sprintf 'instr-%08d', $j));
	}
	my $e = entity($k);
	return get("/v1/usage/$e") if $kind eq 'usage';
	return get("/v1/usage/$e/history") if $kind eq 'history';
	return get("/v1/events?entityId=$e&limit=20") if $kind eq 'list';
	die "instr.pl: unknown kind $kind\n";
}

sub connect_to {
	my ($port) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
		Proto => 'tcp', Timeout => $TIMEOUT)
		or die "instr.pl: cannot connect to 127.0.0.1:$port: $!\n";
	$s->autoflush(1);
	binmode $s;
	return { sock => $s, sel => IO::Select->new($s), buf => '' };
}

sub fill_buf {
	my ($c) = @_;
	$c->{sel}->can_read($TIMEOUT)
		or die "instr.pl: no answer within $TIMEOUT s\n";
	my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
	die "instr.pl: read: $!\n" unless defined $n;
	die "instr.pl: the server closed the connection\n" unless $n;
}

sub send_all {
	my ($c, $data) = @_;
	while (length $data) {
		my $n = syswrite($c->{sock}, $data);
		die "instr.pl: write: $!\n" unless defined $n;
		substr($data, 0, $n, '');
	}
}

# one response: its status and body (Content-Length or chunked)
sub response {
	my ($c) = @_;
	my $end;
	fill_buf($c) until ($end = index($c->{buf}, "\r\n\r\n")) >= 0;
	my $head = substr($c->{buf}, 0, $end + 4, '');
	my ($status) = $head =~ m{^HTTP/1\.\d (\d{3})}
		or die "instr.pl: not an HTTP response: $head\n";
	my $body = '';
	if ($head =~ /^Content-Length:\s*(\d+)/mi) {
		fill_buf($c) while length $c->{buf} < $1;
		$body = substr($c->{buf}, 0, $1, '');
	} elsif ($head =~ /^Transfer-Encoding:\s*chunked/mi) {
		while (1) {
			fill_buf($c) until $c->{buf} =~ /^([0-9a-fA-F]+)[^\r]*\r\n/;
			my ($size, $skip) = (hex $1, length $&);
			fill_buf($c) while length $c->{buf} < $skip + $size + 2;
			$body .= substr($c->{buf}, $skip, $size);
			substr($c->{buf}, 0, $skip + $size + 2, '');
			last unless $size;
		}
	}
	return ($status, $body);
}

sub once {
	my ($port, $path) = @_;
	my $c = eval { connect_to($port) } or return (0, '');
	send_all($c, get($path));
	my @r = response($c);
	close $c->{sock};
	return @r;
}

sub cmd_ports {
	my ($n) = @_;
	my (@socks, @ports);
	for (1 .. $n) {
		my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
			LocalPort => 0, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
			or die "instr.pl: no free port: $!\n";
		push @socks, $s;
		push @ports, $s->sockport;
	}
	print "@ports\n";
	return 0;
}

sub cmd_wait {
	my ($port, $secs) = @_;
	my $until = time + $secs;
	while (time < $until) {
		my ($status) = eval { once($port, '/health') };
		return 0 if ($status // 0) == 200;
		sleep 0.5;
	}
	die "instr.pl: nginx does not answer on 127.0.0.1:$port within $secs s\n";
}

sub evictions {
	my ($port) = @_;
	my @e;
	for my $zone (qw(usage self)) {
		my ($status, $body) = once($port, "/metrics/$zone");
		die "instr.pl: GET /metrics/$zone: $status\n" unless $status == 200;
		$body =~ /^usage_events_evicted_total\{zone="$zone"\} (\d+)/m
			or die "instr.pl: no usage_events_evicted_total in /metrics/$zone\n";
		push @e, $1;
	}
	return @e;
}

sub cmd_evictions { print join(' ', evictions($_[0])), "\n"; 0 }

# batches of 500 pipelined POSTs, until both zones have evicted
sub cmd_fill {
	my ($port, $secs) = @_;
	my $until = time + $secs;
	my ($k, $c) = (0, connect_to($port));
	while (1) {
		my @e = evictions($port);
		if ($e[0] > 0 && $e[1] > 0) {
			print "posted=$k evictions=$e[0] self_evictions=$e[1]\n";
			return 0;
		}
		die "instr.pl: the zones do not evict after $k POSTs in $secs s\n"
			if time > $until;
		send_all($c, join '', map { post(body($_)) } $k .. $k + 499);
		for (1 .. 500) {
			my ($status) = response($c);
			die "instr.pl: fill: status $status\n" unless $status =~ /^2/;
		}
		$k += 500;
	}
}

# callgrind_control, its chatter in $INSTR_CONTROL_LOG (else /dev/null)
sub control {
	my $log = $ENV{INSTR_CONTROL_LOG} // '/dev/null';
	open my $out, '>&', \*STDOUT or die "instr.pl: dup: $!\n";
	open my $err, '>&', \*STDERR or die "instr.pl: dup: $!\n";
	open STDOUT, '>>', $log or die "instr.pl: $log: $!\n";
	open STDERR, '>&', \*STDOUT or die "instr.pl: dup: $!\n";
	my $rc = system(@_);
	open STDOUT, '>&', $out or die "instr.pl: dup: $!\n";
	open STDERR, '>&', $err or die "instr.pl: dup: $!\n";
	$rc == 0 or die "instr.pl: @_ failed (see $log)\n";
}

sub cmd_run {
	my ($port, $kind, $n, @control) = @_;
	my $c = connect_to($port);
	my %st;
	my $one = sub {
		send_all($c, request($kind, $_[0], $n));
		my ($status) = response($c);
		return $status;
	};
	# the first request opens the connection and warms it up (postdup:
	# repeats an id, like the ones counted); then zero the counters
	my $first = $one->($kind eq 'postdup' ? 0 : $n);
	control(@control, '-z');
	$st{ $one->($_) }++ for 0 .. $n - 1;
	control(@control, '-d');
	close $c->{sock};
	my $bad = $first =~ /^2/ ? 0 : 1;
	$bad += $st{$_} for grep { !/^2/ } keys %st;
	print "requests=$n first=$first statuses=",
		join(',', map { "$_:$st{$_}" } sort keys %st), " non2xx=$bad\n";
	return 0;
}

sub commas {
	my $v = sprintf '%.0f', $_[0];
	1 while $v =~ s/^([-+]?\d+)(\d{3})/$1,$2/;
	return $v;
}

sub signed {
	my $v = sprintf '%.0f', $_[0];
	return $v > 0 ? '+' . commas($v) : $v < 0 ? commas($v) : '0';
}

# a dump's self instructions by function: a function's code inlined from a
# header (its own file:function line) and its code in any file (a function
# that moved to another file) are one
sub functions {
	my ($dump) = @_;
	my %f;
	open my $fh, '-|', 'callgrind_annotate', '--auto=no', '--inclusive=no',
		'--threshold=100', $dump or die "instr.pl: callgrind_annotate: $!\n";
	while (<$fh>) {
		my ($ir, $name) = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.+?)\s*$/ or next;
		next if $name eq 'PROGRAM TOTALS';
		$ir =~ tr/,//d;
		$name =~ s/ \[[^]]*\]$//;
		$name =~ s/^.*://;
		$f{$name} += $ir;
	}
	close $fh or die "instr.pl: callgrind_annotate $dump failed\n";
	return \%f;
}

sub cmd_report {
	my ($results, $n, $dumps, $pct, @cases) = @_;
	my (%ir, %bad, %label, @order);
	my $mods = 0;
	open my $fh, '<', $results or die "instr.pl: $results: $!\n";
	while (<$fh>) {
		my ($m, $c, $ir, $b) = /module=(\d+) case=(\S+) ir=(\d+) .* non2xx=(\d+)/
			or next;
		$ir{$c}[$m] = $ir / $n;
		$bad{$c} += $b;
		$mods = $m + 1 if $m + 1 > $mods;
	}
	my @h = ('case', map { "$_" } 1 .. $mods);
	push @h, map { ("$_ - 1", '%') } 2 .. $mods;
	push @h, 'non-2xx';
	print '| ', join(' | ', @h), " |\n|---", '|--:' x (@h - 1), "|\n";
	my @far;
	for (@cases) {
		my ($id, $label) = split /\|/;
		my $v = $ir{$id} or next;
		my @row = ($label, map { commas($_) } @$v);
		for my $m (1 .. $mods - 1) {
			my $d = $v->[$m] - $v->[0];
			my $p = sprintf '%+.1f', 100 * $d / $v->[0];
			push @row, signed($d), ($p =~ /^.0\.0$/ ? '0.0' : $p) . '%';
			push @far, [$id, $label, $m] if abs($d) > $pct / 100 * $v->[0];
		}
		push @row, $bad{$id};
		print '| ', join(' | ', @row), " |\n";
	}
	print "\n";
	unless (@far) {
		print "No case differs from module 1 by more than $pct%.\n"
			if $mods > 1;
		return 0;
	}
	for (@far) {
		my ($id, $label, $m) = @$_;
		my $f1 = functions("$dumps/m1-$id.out");
		my $f2 = functions("$dumps/m" . ($m + 1) . "-$id.out");
		my %all = (%$f1, %$f2);
		my @d = sort { abs($b->[1]) <=> abs($a->[1]) || $a->[0] cmp $b->[0] }
			map { [$_, (($f2->{$_} // 0) - ($f1->{$_} // 0)) / $n] } keys %all;
		printf "%s, module %d against 1: the functions that changed most "
			. "(self instructions per request)\n\n", $label, $m + 1;
		print "| function | 1 | ", $m + 1, " | difference |\n|---|--:|--:|--:|\n";
		for (grep { abs($_->[1]) >= 1 } @d[0 .. ($#d < 9 ? $#d : 9)]) {
			my $f = $_->[0];
			printf "| `%s` | %s | %s | %s |\n", $f, commas(($f1->{$f} // 0) / $n),
				commas(($f2->{$f} // 0) / $n), signed($_->[1]);
		}
		print "\n";
	}
	return 0;
}
