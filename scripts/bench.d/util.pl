#!/usr/bin/perl

# Helpers of scripts/bench (core Perl only: HTTP::Tiny, JSON::PP).
#
#   util.pl ports N                  N free TCP ports on 127.0.0.1
#   util.pl wait PORT                until GET /health answers (10 s at most)
#   util.pl stats PORT               data.store of /v1/usage/stats as key=value
#   util.pl rss PID                  VmRSS, RssAnon, RssShmem (kB) as key=value
#   util.pl cpu PID                  utime+stime of a process, in clock ticks
#   util.pl sysbusy                  busy clock ticks of all CPUs (/proc/stat)
#   util.pl idle SECONDS             wait (at most SECONDS) until the machine
#                                    is idle (< 10% busy over 2 s); print the
#                                    last busy percentage
#   util.pl check MAIN LOG VERIFY SELF PREFIX
#                                    every target answers what it should; the
#                                    body baseline really reads the body
#   util.pl paging PORT EVENTS LIMIT RESULTS
#                                    store exactly EVENTS events (the zone
#                                    must be empty), walk every page by
#                                    cursor, check that the first and the
#                                    last page by cursor and by offset hold
#                                    the same events; append the last page's
#                                    cursor to RESULTS (meta paging_cursor=)
#   util.pl report RESULTS OUT       the tables, the memory section and the
#                                    verdicts; exit 1 if a target is missed

use strict;
use warnings;

use HTTP::Tiny;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use JSON::PP;
use List::Util qw(max min sum);

# the middle run (the mean of the middle two): one run that the machine
# slowed down (this VM's runs vary by 15% and more) does not move it
sub median {
	my @v = sort { $a <=> $b } @_;
	return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}
use POSIX qw(sysconf _SC_CLK_TCK);
use Time::HiRes qw(sleep time);

my $JSON = JSON::PP->new->utf8->canonical;
my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 1);

my %cmd = (
	ports  => \&cmd_ports,
	wait   => \&cmd_wait,
	stats  => \&cmd_stats,
	rss    => \&cmd_rss,
	cpu    => \&cmd_cpu,
	sysbusy => \&cmd_sysbusy,
	idle   => \&cmd_idle,
	check  => \&cmd_check,
	paging => \&cmd_paging,
	report => \&cmd_report,
);

my $name = shift // '';
die "usage: util.pl ports|wait|stats|rss|cpu|sysbusy|idle|check|paging|report ...\n"
	unless $cmd{$name};
exit($cmd{$name}->(@ARGV) // 0);

###############################################################################

sub cmd_ports {
	my ($n) = @_;
	my (@socks, @ports);
	for (1 .. $n) {
		my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
			LocalPort => 0, Proto => 'tcp', Listen => 1, ReuseAddr => 1)
			or die "no free port: $!\n";
		push @socks, $s;
		push @ports, $s->sockport;
	}
	print "@ports\n";
	return 0;
}

sub cmd_wait {
	my ($port) = @_;
	my $until = time + 10;
	while (time < $until) {
		my $r = HTTP::Tiny->new(timeout => 1)
			->get("http://127.0.0.1:$port/health");
		return 0 if $r->{status} == 200;
		sleep 0.1;
	}
	die "nginx does not answer on 127.0.0.1:$port\n";
}

sub stats {
	my ($port) = @_;
	my $r = $http->get("http://127.0.0.1:$port/v1/usage/stats");
	die "GET /v1/usage/stats: $r->{status}\n" unless $r->{status} == 200;
	my $d = $JSON->decode($r->{content})->{data};
	return { %{ $d->{store} }, totalEvents => $d->{totalEvents} };
}

sub cmd_stats {
	my ($port) = @_;
	my $s = stats($port);
	# null figures (maxEvents when unset, savedAt before a save) are left
	# out: "name=" would shift the pairs of the shell's split
	print join(' ', map { "$_=$s->{$_}" } grep { defined $s->{$_} }
		sort keys %$s), "\n";
	return 0;
}

sub cmd_rss {
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/status" or die "/proc/$pid/status: $!\n";
	my %v;
	while (<$fh>) {
		$v{lc $1} = $2 if /^(VmRSS|RssAnon|RssShmem):\s+(\d+) kB/;
	}
	print join(' ', map { "$_=" . ($v{$_} // 0) } qw(vmrss rssanon rssshmem)),
		"\n";
	return 0;
}

sub cmd_cpu {
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or die "/proc/$pid/stat: $!\n";
	my $line = <$fh>;
	$line =~ s/^.*\)\s+//;    # the command name may hold spaces
	my @f = split ' ', $line;
	print $f[11] + $f[12], "\n";    # fields 14 and 15: utime, stime
	return 0;
}

sub sysbusy {
	open my $fh, '<', '/proc/stat' or die "/proc/stat: $!\n";
	my (undef, @v) = split ' ', scalar <$fh>;
	# user nice system idle iowait irq softirq steal
	return ($v[0] + $v[1] + $v[2] + $v[5] + $v[6] + $v[7], $v[3] + $v[4]);
}

sub cmd_sysbusy {
	print((sysbusy())[0], "\n");
	return 0;
}

sub cmd_idle {
	my ($wait) = @_;
	my $until = time + $wait;
	my $pct;
	for (;;) {
		my ($b0, $i0) = sysbusy();
		sleep 2;
		my ($b1, $i1) = sysbusy();
		$pct = 100 * ($b1 - $b0) / (($b1 - $b0 + $i1 - $i0) || 1);
		last if $pct < 10 || time >= $until;
	}
	printf "%.0f\n", $pct;
	return 0;
}

###############################################################################
# sanity checks before anything is measured

my $failed = 0;

sub ok {
	my ($cond, $what) = @_;
	printf "  %-4s %s\n", $cond ? 'ok' : 'FAIL', $what;
	$failed++ unless $cond;
	return $cond;
}

sub req {
	my ($port, $method, $path, $body) = @_;
	my %o = (headers => { 'Content-Type' => 'application/json' });
	$o{content} = $body if defined $body;
	return $http->request($method, "http://127.0.0.1:$port$path", \%o);
}

sub event_json {
	my ($k) = @_;
	return sprintf('{"entityId":"customer-%04d","eventType":"search",'
		. '"metadata":{"endpoint":"/v1/search","tokens":%d}}', $k, $k);
}

sub wait_for {
	my ($cond) = @_;
	my $until = time + 3;
	while (time < $until) {
		return 1 if $cond->();
		sleep 0.05;
	}
	return 0;
}

sub cmd_check {
	my ($main, $log, $verify, $self, $prefix) = @_;
	my $r;

	$r = req($main, 'GET', '/baseline/204');
	ok($r->{status} == 204, "GET /baseline/204: 204");

	my $before = stats($self)->{recorded};
	$r = req($main, 'GET', '/baseline/204-tracked');
	ok($r->{status} == 204, "GET /baseline/204-tracked: 204");
	ok(wait_for(sub { stats($self)->{recorded} >= $before + 1 }),
		"  ... and usage_track recorded it in the self-tracking zone");

	for my $p ('/baseline/body', '/baseline/discard') {
		$r = req($main, 'POST', $p, event_json(1));
		ok($r->{status} == 201
			&& ($r->{headers}{'content-type'} // '') =~ m{^application/json}
			&& eval { $JSON->decode($r->{content})->{success} },
			"POST $p: 201, the fixed JSON");
		ok(($r->{headers}{connection} // '') ne 'close',
			"  ... keeps the connection alive");
	}

	$before = stats($self)->{recorded};
	$r = req($main, 'POST', '/v1/events', event_json(2));
	ok($r->{status} == 201, "POST /v1/events: 201");
	ok(wait_for(sub { stats($self)->{recorded} >= $before + 1 }),
		"  ... and was self-tracked");
	for my $p ('/v1/usage/customer-0002', '/v1/usage/customer-0002/history',
		'/v1/events?entityId=customer-0002&limit=20')
	{
		$r = req($main, 'GET', $p);
		ok($r->{status} == 200
			&& eval { $JSON->decode($r->{content})->{success} },
			"GET $p: 200");
	}

	for my $p ('/baseline/body', '/v1/events') {
		$r = req($log, 'POST', $p, event_json(3));
		ok($r->{status} == 201, "POST $p on the logged server: 201");
	}
	ok(wait_for(sub { -s "$prefix/logs/access.log" }),
		"  ... and the JSON access log is written");

	# the body baseline reads the body: a 200 KB body comes back whole in
	# $request_body; the same construction without mirror discards it
	my $big = join '', map { chr(97 + ($_ * 7) % 26) } 1 .. 200_000;
	my $body = qq({"entityId":"customer-0001","eventType":"search",)
		. qq("metadata":{"blob":"$big"}});
	for my $p ('/baseline/body', '/baseline/discard') {
		truncate "$prefix/logs/verify.log", 0;
		$r = req($verify, 'POST', $p, $body);
		ok($r->{status} == 201, "POST $p with a 200 KB body: 201");
		my $line;
		wait_for(sub {
			open my $fh, '<', "$prefix/logs/verify.log" or return 0;
			$line = <$fh>;
			return defined $line && $line =~ /\n\z/;
		});
		my $v = eval { $JSON->decode($line) } || {};
		my $len = length($v->{request_body} // '');
		if ($p eq '/baseline/body') {
			ok($v->{request_body} && $v->{request_body} eq $body
				&& $v->{request_length} > length $body,
				"  ... the body was read: \$request_body holds all "
				. "$len bytes, \$request_length $v->{request_length}");
		} else {
			ok($len == 0,
				"  ... the body was discarded: \$request_body is empty");
		}
	}

	return $failed ? 1 : 0;
}

###############################################################################
# pages by depth: a list of exactly EVENTS events, by offset and by cursor

# POSTs over one kept-alive connection, each request in one write:
# $post->(PATH, BODY) returns { status, content }
sub post_client {
	my ($port) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
		PeerPort => $port, Proto => 'tcp', Timeout => 5)
		or die "paging: connect to 127.0.0.1:$port: $!\n";
	setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1)
		or die "paging: TCP_NODELAY: $!\n";
	my $buf = '';
	my $fill = sub {    # more bytes, 5 s at most
		my $rin = '';
		vec($rin, fileno $sock, 1) = 1;
		select(my $rout = $rin, undef, undef, 5) > 0
			or die "paging: no answer in 5 s\n";
		sysread($sock, $buf, 65536, length $buf)
			or die "paging: the connection closed\n";
	};
	return sub {
		my ($path, $body) = @_;
		my $req = "POST $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			. "Content-Type: application/json\r\n"
			. 'Content-Length: ' . length($body) . "\r\n\r\n$body";
		for (my $off = 0; $off < length $req; ) {
			my $n = syswrite($sock, $req, length($req) - $off, $off);
			die "paging: write: $!\n" unless defined $n;
			$off += $n;
		}
		$fill->() until $buf =~ /\r\n\r\n/;
		my ($head) = $buf =~ /^(.*?\r\n)\r\n/s;
		my ($status) = $head =~ m{^HTTP/1\.1 (\d{3})}
			or die "paging: not an HTTP answer: " . substr($head, 0, 100) . "\n";
		my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
		die "paging: an answer without Content-Length\n" unless defined $len;
		my $need = length($head) + 2 + $len;
		$fill->() while length $buf < $need;
		my $content = substr($buf, length($head) + 2, $len);
		substr($buf, 0, $need) = '';
		return { status => $status, content => $content };
	};
}

sub cmd_paging {
	# exit 1: a check failed; 2: the list could not be built or walked
	my $rc = eval { paging(@_) };
	return $rc if defined $rc;
	print STDERR $@;
	return 2;
}

sub paging {
	my ($port, $events, $limit, $results) = @_;
	my $pages = $events / $limit;
	die "paging: $events events are not whole pages of $limit\n"
		unless $pages == int $pages && $events % 100 == 0;
	my $until = time + 240;    # bounded: seeding and walk take seconds
	my $late = sub { die "paging: not done in 240 s ($_[0])\n" if time > $until };

	my $s = stats($port);
	die "paging: the zone is not empty: $s->{events} events\n" if $s->{events};

	# 1,000 batches of 100: 5 entities, 4 types, no metadata.  Each request
	# in one write with TCP_NODELAY: HTTP::Tiny writes the body apart from
	# the headers, and Nagle's wait for the delayed ACK costs 40 ms a POST
	my @types = qw(api_request search upload download);
	my $post = post_client($port);
	my $t0 = time;
	my $k = 0;
	for my $b (1 .. $events / 100) {
		my $body = '{"events":[' . join(',', map {
			my $i = $k++;
			sprintf('{"entityId":"tenant-%d","eventType":"%s","value":1}',
				$i % 5 + 1, $types[int($i / 5) % 4]);
		} 1 .. 100) . ']}';
		my $r = $post->('/v1/events/batch', $body);
		die "paging: POST /v1/events/batch (batch $b): $r->{status} "
			. substr($r->{content} // '', 0, 300) . "\n"
			unless $r->{status} == 201 && $r->{content} =~ /"stored":100\b/;
		$late->('seeding') if $b % 50 == 0;
	}
	my $seed_s = time - $t0;
	$s = stats($port);
	ok($s->{events} == $events && $s->{evictions} == 0,
		sprintf('%s events stored in %.1f s (%d batches of 100), no '
			. 'eviction: events=%s evictions=%s rawBytesUsed=%s of %s',
			fmt_int($events), $seed_s, $events / 100, $s->{events},
			$s->{evictions}, $s->{rawBytesUsed}, $s->{rawBytes}))
		or die "paging: the zone does not hold $events events: raise "
			. "BENCH_PAGING_ZONE\n";

	my $get = sub {
		my ($q) = @_;
		my $r = req($port, 'GET', "/v1/events?$q");
		die "paging: GET /v1/events?$q: $r->{status} "
			. substr($r->{content} // '', 0, 300) . "\n"
			unless $r->{status} == 200;
		return $r->{content};
	};
	my $decode = sub {    # the ids and the pagination, by a JSON parser
		my ($q) = @_;
		my $d = $JSON->decode($get->($q))->{data};
		return ([map { $_->{id} } @{ $d->{events} }], $d->{pagination});
	};

	# the walk: the ids by a pattern (JSON::PP takes ~10 ms a page); every
	# page full, no event twice, nextCursor null on the last page only
	$t0 = time;
	my (%seen, $cursor, $twice);
	$cursor = '';
	for my $page (1 .. $pages) {
		my $c = $get->("limit=$limit&cursor=$cursor");
		my @ids = $c =~ /"id":"([^"]+)"/g;
		die "paging: page $page by cursor has " . @ids . " events, not "
			. "$limit\n" unless @ids == $limit;
		$seen{$_}++ and $twice++ for @ids;
		my ($next) = $c =~ /"nextCursor":(null|"[A-Za-z0-9_-]+")/
			or die "paging: page $page by cursor has no nextCursor\n";
		if ($page == $pages) {
			die "paging: page $page (the last) has nextCursor $next\n"
				unless $next eq 'null';
			last;
		}
		die "paging: page $page of $pages has nextCursor null\n"
			if $next eq 'null';
		($cursor = $next) =~ tr/"//d;
		$late->("walk, page $page") if $page % 50 == 0;
	}
	my $walk_s = time - $t0;
	ok(!$twice && keys %seen == $events,
		sprintf('the walk by cursor: %d pages of %d in %.1f s, %s distinct '
			. 'events, %d listed twice, nextCursor null on page %d only',
			$pages, $limit, $walk_s, fmt_int(scalar keys %seen),
			$twice // 0, $pages));

	# the pages wrk measures, read by a JSON parser
	my $deep = $events - $limit;
	my ($o1, $op1) = $decode->("offset=0&limit=$limit");
	my ($od, $opd) = $decode->("offset=$deep&limit=$limit");
	my ($c1) = $decode->("cursor=&limit=$limit");
	my ($cd, $cpd) = $decode->("cursor=$cursor&limit=$limit");
	my ($cd2) = $decode->("cursor=$cursor&limit=$limit");
	ok(($op1->{total} // -1) == $events && @$o1 == $limit
		&& $op1->{hasMore} && !$opd->{hasMore} && @$od == $limit,
		"offset=0 and offset=$deep: total " . ($op1->{total} // 'none')
		. ", $limit events each, hasMore true then false");
	ok("@$o1" eq "@$c1",
		"page 1: the same $limit events, in the same order, by offset and by cursor");
	ok("@$od" eq "@$cd" && "@$cd" eq "@$cd2" && !defined $cpd->{nextCursor}
		&& !$cpd->{hasMore},
		"page $pages: the same $limit events, in the same order, by "
		. "offset=$deep and by cursor (twice), the cursor's nextCursor null");
	my %o1 = map { $_ => 1 } @$o1;
	ok(!grep({ $o1{$_} } @$od), "pages 1 and $pages share no event");

	open my $fh, '>>', $results or die "$results: $!\n";
	printf $fh "meta paging_cursor=%s paging_events=%d paging_limit=%d "
		. "paging_pages=%d paging_seed_s=%.1f paging_walk_s=%.1f\n",
		$cursor, $events, $limit, $pages, $seed_s, $walk_s;
	close $fh;

	return $failed ? 1 : 0;
}

###############################################################################
# the report

sub fmt_int {
	my ($n) = @_;
	$n = sprintf('%.0f', $n);
	1 while $n =~ s/^(\d+)(\d{3})/$1,$2/;
	return $n;
}

sub fmt_ms { sprintf('%.2f', $_[0] / 1000) }

sub cmd_report {
	my ($results, $out) = @_;
	my (%runs, %meta, @mem, @steady, @order, %extra_non2xx, @all_runs);

	open my $fh, '<', $results or die "$results: $!\n";
	while (my $line = <$fh>) {
		chomp $line;
		my ($kind, @kv) = split ' ', $line;
		my %f = map { split /=/, $_, 2 } @kv;
		if ($kind eq 'run') {
			push @all_runs, \%f;
			my $c = $f{case};
			push @order, $c if !$runs{$c} && $f{phase} eq 'timed';
			my $non2xx = $f{status_ge400} + $f{connect} + $f{read}
				+ $f{write} + $f{timeout};
			for my $sc (split /,/, $f{statuses}) {
				my ($code, $n) = split /:/, $sc;
				$non2xx += $n if defined $n && ($code < 200 || $code > 299)
					&& $code <= 399;    # >= 400 already counted by wrk
			}
			if ($f{phase} eq 'timed') {
				push @{ $runs{$c} }, { %f,
					rps => $f{requests} / ($f{duration_us} / 1e6),
					non2xx => $non2xx };
			} else {
				$extra_non2xx{$f{phase}} += $non2xx;
			}
		} elsif ($kind eq 'meta') {
			s/%20/ /g for values %f;
			%meta = (%meta, %f);
		} elsif ($kind eq 'mem') {
			push @mem, \%f;
		} elsif ($kind eq 'steady') {
			push @steady, \%f;
		}
	}
	close $fh;

	my %label = (
		b204    => '`return 204` (baseline)',
		t204    => '`return 204` + `usage_track`',
		bbody   => 'POST, body read, fixed JSON (baseline)',
		bdisc   => 'POST, body discarded, fixed JSON (info)',
		post    => '`POST /v1/events`',
		batch   => '`POST /v1/events/batch`, 100 events',
		health  => '`GET /health` (info: API without the store)',
		usage   => '`GET /v1/usage/{entity}`',
		history => '`GET /v1/usage/{entity}/history`',
		list    => '`GET /v1/events?entityId=..&limit=20`',
		mix     => '90/10 POST/GET mix',
		lbody   => 'POST, body read, fixed JSON + JSON log',
		lpost   => '`POST /v1/events` + JSON log',
	);
	my $pages = $meta{paging_pages} // 1000;
	my $plim = $meta{paging_limit} // 100;
	my $deep = ($pages - 1) * $plim;
	%label = (%label,
		off1    => "page 1 by offset (`offset=0&limit=$plim`)",
		off1000 => "page $pages by offset (`offset=$deep&limit=$plim`)",
		cur1    => "page 1 by cursor (`cursor=&limit=$plim`)",
		cur1000 => "page $pages by cursor (`cursor=<page ${pages}'s>&limit=$plim`)",
	);
	my $paging_only = ($meta{mode} // 'all') eq 'paging';

	my %agg;
	for my $c (keys %runs) {
		my @r = @{ $runs{$c} };
		$agg{$c} = {
			rps    => median(map { $_->{rps} } @r),
			rpss   => [map { $_->{rps} } @r],
			p50    => median(map { $_->{p50_us} } @r),
			p99    => min(map { $_->{p99_us} } @r),
			p99s   => [map { $_->{p99_us} } @r],
			non2xx => sum(map { $_->{non2xx} } @r),
			warm   => 0,
			cpu    => sum(map { $_->{cpu} } @r) / @r,
			other  => max(map { $_->{other} // 0 } @r),
		};
	}

	# warm-up runs count every status exactly (Lua response())
	open $fh, '<', $results or die;
	while (my $line = <$fh>) {
		next unless $line =~ /^run .*phase=warmup/;
		my (undef, @kv) = split ' ', $line;
		my %f = map { split /=/, $_, 2 } @kv;
		my $n = $f{connect} + $f{read} + $f{write} + $f{timeout};
		for my $sc (split /,/, $f{statuses}) {
			my ($code, $k) = split /:/, $sc;
			$n += $k if defined $k && ($code < 200 || $code > 299);
		}
		$agg{$f{case}}{warm} += $n if $agg{$f{case}};
	}
	close $fh;

	my $rps = sub { $agg{$_[0]} ? $agg{$_[0]}{rps} : undef };
	my $ratio = sub {
		my ($a, $b) = @_;
		return undef unless $rps->($a) && $rps->($b);
		return $rps->($a) / $rps->($b);
	};

	# the mix against the same mix of the floors: 0.9 body + 0.1 return 204
	my $blend = $rps->('bbody') && $rps->('b204')
		? 1 / (0.9 / $rps->('bbody') + 0.1 / $rps->('b204')) : undef;

	my %vs = (
		b204    => ['b204',  '-'],
		t204    => ['b204',  '`return 204`'],
		bbody   => ['bbody', '-'],
		bdisc   => ['bbody', 'body baseline'],
		post    => ['bbody', 'body baseline'],
		batch   => ['post',  'single POSTs, in events/s (x100)'],
		health  => ['b204',  '`return 204`'],
		usage   => ['b204',  '`return 204`'],
		history => ['b204',  '`return 204`'],
		list    => ['b204',  '`return 204`'],
		lbody   => ['bbody', 'body baseline, no log'],
		lpost   => ['lbody', 'body baseline + log'],
		off1    => ['off1',  '-'],
		off1000 => ['off1',  'offset page 1'],
		cur1    => ['off1',  'offset page 1'],
		cur1000 => ['cur1',  'cursor page 1'],
	);

	my @o;
	my $p = sub { push @o, join('', @_) };

	$p->("## ngx_http_usage_module benchmark, $meta{date}");
	$p->('');
	$p->("`$meta{command}`: nginx $meta{nginx} (1 worker, "
		. "`taskset -c $meta{nginx_cpu}`), wrk $meta{wrk} "
		. "(`taskset -c $meta{wrk_cpu}` -t1 -c$meta{conns}), "
		. "$meta{rounds} runs of $meta{duration} s per case alternated "
		. "(A B .. A B ..) after a $meta{warmup} s warm-up; "
		. "$meta{cpus} CPUs ($meta{cpu_model}); module $meta{module_rev}.");
	unless ($paging_only) {
		$p->("API zone $meta{zone} (maxEvents "
			. ($meta{max_events} || 'unset: what the raw log holds')
			. "), self-tracking zone $meta{self_zone} (maxEvents "
			. ($meta{self_max_events} || 'unset') . "), both "
			. "filled before the runs so that every insert evicts (evictions "
			. "during the runs: API zone " . fmt_int($meta{evictions_after}
				- $meta{evictions_before}) . ', self-tracking zone '
			. fmt_int($meta{self_evictions_after} - $meta{self_evictions_before})
			. "). POST bodies $meta{body_bytes} bytes on average over 1,000 "
			. "entities and 5 types. The API location and the tracked `return "
			. "204` have `usage_track self` (a POST is 2 inserts); with one zone "
			. "for both, the tracked GETs would evict the queried entities' "
			. "events within seconds.");
	}
	$p->('');
	$p->('Access log off everywhere. req/s: median of the runs (each run '
		. 'under "runs"); p50: median; p99: the best run (other loads on the '
		. 'machine only make it worse), every run under "p99 runs"; non-2xx: timed runs '
		. '(wrk: status >= 400 and socket errors) + warm-ups (every status '
		. 'counted in Lua); nginx CPU: the worker\'s CPU time over the run '
		. '(100% = its core is saturated; less means wrk was the limit); '
		. 'other CPU: what neither nginx\'s worker nor wrk used, worst run '
		. '(softirq and the system; much more than usual means another load '
		. 'disturbed the run).');
	$p->('');

	my $table = sub {
		my @cases = @_;
		$p->('| case | req/s | runs | p50 ms | p99 ms | p99 runs | non-2xx | nginx CPU | other CPU | ratio | vs |');
		$p->('|---|---:|---|---:|---:|---|---:|---:|---:|---:|---|');
		for my $c (@cases) {
			my $a = $agg{$c} or next;
			my ($r, $vs);
			if ($c eq 'mix') {
				($r, $vs) = ($blend ? $a->{rps} / $blend : undef,
					'0.9 body + 0.1 `return 204` baselines');
			} elsif ($c eq 'batch') {
				my $x = $ratio->('batch', 'post');
				($r, $vs) = (defined $x ? 100 * $x : undef, $vs{$c}[1]);
			} else {
				my ($b, $name) = @{ $vs{$c} };
				($r, $vs) = ($ratio->($c, $b), $name);
			}
			$p->(sprintf('| %s | %s | %s | %s | %s | %s | %d | %.0f%% | %.0f%% | %s | %s |',
				$label{$c}, fmt_int($a->{rps}),
				join(' ', map { fmt_int($_) } @{ $a->{rpss} }),
				fmt_ms($a->{p50}), fmt_ms($a->{p99}),
				join(' ', map { fmt_ms($_) } @{ $a->{p99s} }),
				$a->{non2xx} + $a->{warm}, $a->{cpu}, $a->{other},
				defined $r ? sprintf('%.2f', $r) : '-', $vs));
		}
	};

	my ($flat, $drift, $range, $anon_drift);
	unless ($paging_only) {
		$table->(qw(b204 t204 bbody bdisc post batch health usage history list mix));
		if ($rps->('batch') && $rps->('post')) {
			$p->('');
			$p->(sprintf('Batches of 100 ingest %s events/s, single POSTs %s.',
				fmt_int(100 * $rps->('batch')), fmt_int($rps->('post'))));
		}
		$p->('');
		$p->('With the JSON access log of `conf/nginx.conf` (unbuffered) on, '
			. 'for both:');
		$p->('');
		$table->(qw(lbody lpost));
		if ($rps->('lpost') && $rps->('post')) {
			$p->('');
			$p->(sprintf('The log costs the body baseline %.0f%% and '
				. '`POST /v1/events` %.0f%% of their throughput.',
				100 * (1 - $ratio->('lbody', 'bbody')),
				100 * (1 - $ratio->('lpost', 'post'))));
		}

		# memory
		$p->('');
		$p->('### Memory');
		$p->('');
		my %m = map { %$_ } @mem;
		if (defined $m{bytes_per_event}) {
			$p->(sprintf('Zone bytes per stored event with a 100-byte metadata '
				. 'object: **%.1f** (%s events -> %s events: the raw log\'s '
				. 'rawBytesUsed plus the slab\'s zoneBytesUsed %s -> %s, no '
				. 'eviction, no tracking).',
				$m{bytes_per_event}, fmt_int($m{e1}), fmt_int($m{e2}),
				fmt_int($m{b1}), fmt_int($m{b2})));
		} else {
			(my $why = $m{bytes_note}) =~ tr/_/ /;
			$p->("Zone bytes per event: not measured ($why).");
		}
		$p->('');
		$p->('| worker RSS | inserts (both zones) | VmRSS kB | RssAnon kB | RssShmem kB |');
		$p->('|---|---:|---:|---:|---:|');
		for my $x (@mem) {
			next unless defined $x->{point};
			(my $pt = $x->{point}) =~ tr/_/ /;
			$p->(sprintf('| %s | %s | %s | %s | %s |', $pt,
				fmt_int($x->{recorded}), fmt_int($x->{vmrss}),
				fmt_int($x->{rssanon}), fmt_int($x->{rssshmem})));
		}

		my ($m1) = grep { defined $_->{point} && $_->{recorded} >= 1_000_000 } @mem;
		if ($m1) {
			$p->('');
			$p->(sprintf('Worker RSS after %s inserts (>= 1,000,000, store at its '
				. 'maximum): **%.1f MB** (VmRSS; %.1f MB of it the zones\' '
				. 'shared pages, %.1f MB private).', fmt_int($m1->{recorded}),
				$m1->{vmrss} / 1024, $m1->{rssshmem} / 1024,
				$m1->{rssanon} / 1024));
		}

		if (@steady) {
			$p->('');
			$p->("Eviction-steady POST load for $meta{steady} s, RSS every "
				. "$meta{steady_every} s:");
			$p->('');
			$p->('| t s | VmRSS kB | RssAnon kB | RssShmem kB | store.events | store.evictions |');
			$p->('|---:|---:|---:|---:|---:|---:|');
			for my $s (@steady) {
				$p->(sprintf('| %d | %s | %s | %s | %s | %s |', $s->{t},
					fmt_int($s->{vmrss}), fmt_int($s->{rssanon}),
					fmt_int($s->{rssshmem}), fmt_int($s->{events}),
					fmt_int($s->{evictions})));
			}
			my @v = map { $_->{vmrss} } @steady;
			$drift = $v[-1] - $v[0];
			$range = max(@v) - min(@v);
			$anon_drift = $steady[-1]{rssanon} - $steady[0]{rssanon};
			my $evicting = $steady[-1]{evictions} > $steady[0]{evictions};
			$flat = $range <= 1024 && $evicting;
			$p->('');
			$p->(sprintf('Drift: VmRSS %+d kB (last - first), range %d kB; '
				. 'RssAnon %+d kB; evictions %s during the load.',
				$drift, $range, $anon_drift,
				$evicting ? 'grew' : 'did NOT grow'));
		}
	}

	# pages by depth
	if ($agg{off1} || $agg{cur1}) {
		$p->('') unless $paging_only;
		$p->('### Pages by depth');
		$p->('');
		$p->("`GET /v1/events?limit=$plim` on a list of exactly "
			. fmt_int($meta{paging_events}) . ' events, ' . fmt_int($pages)
			. " pages (a "
			. "server and a zone of its own, $meta{paging_zone}, untracked; 5 "
			. "entities, 4 types, no metadata; stored in $meta{paging_seed_s} s "
			. "by batches of 100). Page $pages by cursor is reached by "
			. "following `nextCursor` from `cursor=` " . ($pages - 1)
			. " times ($meta{paging_walk_s} s; every page full, no event "
			. "twice, `nextCursor` null on page $pages only); it holds the same "
			. "$plim events as `offset=$deep`, and page 1 by cursor the same "
			. "as `offset=0`. $meta{paging_rounds} run" . ($meta{paging_rounds} == 1
				? '' : 's') . " of $meta{duration} s per case (median), "
			. "alternated after a $meta{warmup} s warm-up; the list still "
			. "held " . fmt_int($meta{paging_events_after}) . " events "
			. "($meta{paging_evictions_after} evicted) after the runs.");
		$p->('');
		$table->(qw(off1 off1000 cur1 cur1000));
		my ($ro, $rc) = ($ratio->('off1000', 'off1'),
			$ratio->('cur1000', 'cur1'));
		$p->('');
		$p->("Page $pages against page 1: by offset "
			. (defined $ro ? sprintf('%.2f', $ro) : 'n/a')
			. ' (it walks past the ' . fmt_int($deep) . ' events before its '
			. 'page: O(offset)), by cursor '
			. (defined $rc ? sprintf('%.2f', $rc) : 'n/a')
			. " (it finds its place, then reads $plim events: O(limit)).");
	}

	# verdicts
	my @v;
	my $check = sub {
		my ($good, $text) = @_;
		push @v, [$good ? 'PASS' : 'FAIL', $text];
	};
	my $pct = sub { defined $_[0] ? sprintf('%.2f', $_[0]) : 'n/a' };

	unless ($paging_only) {
		my $r_post = $ratio->('post', 'bbody');
		$check->(defined $r_post && $r_post >= 0.70,
			'POST /v1/events >= 0.70 of the body baseline: ' . $pct->($r_post));
		my $r_batch = $ratio->('batch', 'post');
		$check->(defined $r_batch && 100 * $r_batch >= 5,
			'POST /v1/events/batch (100 events) >= 5x the events/s of single '
			. 'POSTs: ' . (defined $r_batch ? sprintf('%.1fx', 100 * $r_batch)
				: 'n/a'));
		for my $c (qw(usage history)) {
			my $r = $ratio->($c, 'b204');
			$check->(defined $r && $r >= 0.70,
				"$label{$c} >= 0.70 of return 204: " . $pct->($r));
		}
		my $r_t = $ratio->('t204', 'b204');
		$check->(defined $r_t && 1 - $r_t <= 0.10,
			'tracking costs <= 10% of return 204: '
			. (defined $r_t ? sprintf('%.1f%%', 100 * (1 - $r_t)) : 'n/a'));
	}

	my $non2xx = sum(0, map { $_->{non2xx} + $_->{warm} } values %agg)
		+ sum(0, values %extra_non2xx);
	$check->($non2xx == 0, "non-2xx = 0 over every run (timed, warm-up"
		. ($paging_only ? '' : ', fill, steady') . "): $non2xx");

	unless ($paging_only) {
		my @slow = grep { $agg{$_} && $agg{$_}{p99} >= 2000 }
			qw(t204 post usage history list mix);
		my $worst = max(map { $agg{$_} ? $agg{$_}{p99} : 0 }
			qw(t204 post usage history list mix));
		$check->(!@slow, 'p99 < 2 ms at ' . $meta{conns} . ' connections, '
			. 'every module case (its best run): worst ' . fmt_ms($worst) . ' ms'
			. (@slow ? ' (' . join(', ', @slow) . ')' : ''));

		$check->(($meta{evictions_after} // 0) > ($meta{evictions_before} // 0)
			&& ($meta{self_evictions_after} // 0)
				> ($meta{self_evictions_before} // 0),
			'both zones evicted during the runs (every insert at the maximum)');
	}

	if (defined $flat) {
		$check->($flat, "worker RSS flat under eviction-steady load "
			. "(range <= 1024 kB): range $range kB, drift $drift kB");
	}
	if ($paging_only || $agg{off1} || $agg{cur1}) {
		my ($ro, $rc) = ($ratio->('off1000', 'off1'),
			$ratio->('cur1000', 'cur1'));
		$check->(defined $rc && $rc >= 0.80,
			"GET /v1/events page $pages by cursor >= 0.80 of page 1 by cursor "
			. '(' . fmt_int($meta{paging_events} // 0) . " events, limit $plim): "
			. $pct->($rc) . "; by offset, for comparison: page $pages "
			. $pct->($ro) . ' of page 1');
		$check->(($meta{paging_events_after} // -1)
				== ($meta{paging_events} // -2)
			&& ($meta{paging_evictions_after} // -1) == 0,
			'the paging list held its ' . fmt_int($meta{paging_events} // 0)
			. ' events through the runs, none evicted');
	}
	$check->(($meta{error_log_alerts} // 0) == 0,
		'error.log has no [alert]/[crit]/[emerg]: '
		. ($meta{error_log_alerts} // 0));

	my $disturbed = () = grep { $_->{phase} eq 'disturbed' }
		map { $_ } @all_runs;
	my @still = grep { ($agg{$_}{other} // 0) > $meta{max_other} } @order;
	$p->('');
	$p->("Runs repeated because another load disturbed them (other CPU > "
		. "$meta{max_other}%): $disturbed"
		. (@still ? '; still disturbed after two retries: **'
			. join(', ', @still) . '**' : '')
		. "; the machine was $meta{busy_before}% busy before the start.");

	$p->('');
	$p->('### Targets');
	$p->('');
	$p->("- $_->[0] $_->[1]") for @v;

	my $text = join("\n", @o) . "\n";
	print $text;
	open my $oh, '>', $out or die "$out: $!\n";
	print $oh $text;
	close $oh;

	return (grep { $_->[0] eq 'FAIL' } @v) ? 1 : 0;
}
