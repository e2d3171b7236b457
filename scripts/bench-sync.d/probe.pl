#!/usr/bin/perl
# scripts/bench-sync's probe: POSTs a new entity to one instance, notes
# the time of its 201, then reads its summary on another instance over a
# kept-alive connection until it counts the event; prints the delays.
#
#   probe.pl <count> <write port> <read port>
#   -> "probes=N p50=..ms p99=..ms max=..ms"

use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my ($n, $wport, $rport) = @ARGV;

sub conn {
	my ($port) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
	die "connect $port: $!\n" unless $s;
	return $s;
}

# one request, its body; undef when nginx closed the connection (its
# keepalive_requests)
sub request {
	my ($s, $req) = @_;
	print $s $req;
	my $buf = '';
	while (1) {
		my $r = sysread($s, $buf, 65536, length $buf);
		return undef unless $r;
		my $h = index($buf, "\r\n\r\n");
		next if $h < 0;
		my ($len) = substr($buf, 0, $h) =~ /Content-Length: (\d+)/i;
		return substr($buf, $h + 4) if length($buf) >= $h + 4 + $len;
	}
}

my ($w, $r) = (conn($wport), conn($rport));
my @d;

for my $i (1 .. $n) {
	my $e = "probe-$$-$i";
	my $body = qq({"entityId":"$e","eventType":"probe"});
	my $post = "POST /v1/events HTTP/1.1\r\nHost: bench\r\n"
		. "Content-Type: application/json\r\nContent-Length: "
		. length($body) . "\r\n\r\n$body";
	my $answer = request($w, $post);
	unless (defined $answer) { $w = conn($wport); redo }
	die "POST: $answer\n" unless $answer =~ /"success":true/;
	my $t0 = time;
	while (1) {
		my $b = request($r, "GET /v1/usage/$e HTTP/1.1\r\nHost: bench\r\n\r\n");
		unless (defined $b) { $r = conn($rport); next }
		last if $b =~ /"totalEvents":1/;
		die "not counted after 2 s\n" if time - $t0 > 2;
	}
	push @d, (time - $t0) * 1000;
	sleep 0.01;
}

@d = sort { $a <=> $b } @d;
printf "probes=%d p50=%.2fms p99=%.2fms max=%.2fms\n", scalar @d,
	$d[int(@d * 0.5)], $d[int(@d * 0.99)], $d[-1];
