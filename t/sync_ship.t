#!/usr/bin/perl

# usage_sync ships the events of an instance (issue 12, step b), read
# back from a real redis-server and decoded here with the record format
# of docs/FLEET-DESIGN.md (section 4.2):
#   - every event accepted (single POSTs with and without a client id,
#     tracked traffic, api-self) is in the stream exactly once, with its
#     uuid, names, client id, value, metadata, time and createdAt, its
#     origin's seqs 1, 2, 3... without a hole; a duplicate client id
#     (200) is not shipped again;
#   - Redis stopped: POSTs are 201, the queue grows in /metrics; Redis
#     back: the queue drains and the stream holds the rest, in order;
#   - a full queue (buffer=): events are still stored and answered 201,
#     the ones not queued are counted as dropped, one [error] says so;
#   - the worker holding the connection killed under load: another one
#     resends what Redis had not confirmed; no seq is missing;
#   - buffer= is checked against the zone's size.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);
use Test::UsageRedis;
use Test::UsageFleet qw(metric);
use Time::HiRes qw(sleep time);

sub conf {
	my ($redis, $extra) = @_;
	my $addr = $redis->addr;
	$extra //= '';
	return <<"EOF";
http {
    usage_zone zone=usage:4m;
    usage_sync zone=usage redis=$addr name=ship1 interval=200ms $extra;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / { usage_api usage; usage_track usage; }
        location = /metrics { usage_metrics usage; }
        location /tracked/ {
            usage_track usage entity=\$arg_who event_type=page;
            return 204;
        }
    }
}
EOF
}

sub sync_ok {
	my ($t, $timeout) = @_;
	return wait_until(sub {
		(($t->get('/ready')->json // {})->{checks}{sync} // '') eq 'ok'
	}, $timeout // 10);
}

sub post {
	my ($t, %ev) = @_;
	return $t->post_json('/v1/events', \%ev);
}

# the records of one entry's "e" field
sub records {
	my ($e) = @_;
	my @r;
	my $pos = 0;
	while ($pos + 64 <= length $e) {
		my ($len, $seq, $flags, $res, $el, $tl, $il, $ml)
			= unpack('V Q< C C v v v V', substr($e, $pos, 24));
		my $h = substr($e, $pos, 64);
		my %r = (
			len => $len, seq => $seq, flags => $flags,
			uuid => unpack('H*', substr($h, 24, 16)),
			time => unpack('q<', substr($h, 40, 8)),
			created => unpack('q<', substr($h, 48, 8)),
			value => unpack('d<', substr($h, 56, 8)),
		);
		my $p = $pos + 64;
		$r{entity} = substr($e, $p, $el); $p += $el;
		$r{type} = substr($e, $p, $tl); $p += $tl;
		$r{id} = substr($e, $p, $il); $p += $il;
		$r{metadata} = substr($e, $p, $ml);
		$r{ok} = ($len == 64 + $el + $tl + $il + $ml);
		push @r, \%r;
		last unless $len;
		$pos += $len;
	}
	return @r;
}

# every record of the stream, with its entry's fields
sub stream {
	my ($redis) = @_;
	my $entries = $redis->cmd('XRANGE', 'usage:events', '-', '+') // [];
	my @all;
	for my $entry (@$entries) {
		my %f = @{ $entry->[1] };
		my @r = records($f{e});
		$_->{entry} = $entry->[0], $_->{origin} = $f{o}, $_->{name} = $f{n},
			$_->{count} = $f{c}, $_->{kind} = $f{k} for @r;
		push @all, @r;
	}
	return @all;
}

sub seqs_complete {
	my (@r) = @_;
	my %seen;
	$seen{ $_->{seq} }++ for @r;
	my @s = sort { $a <=> $b } keys %seen;
	return @s && $s[0] == 1 && $s[-1] == scalar @s;
}

###############################################################################
# what is shipped, field by field

{
	my $redis = Test::UsageRedis->new();
	my $t = Test::Usage->new();
	$t->write_config(conf($redis))->run();
	ok(sync_ok($t), 'sync ok');

	my %answer;
	for my $i (1 .. 20) {
		my %ev = (entityId => "cust-" . ($i % 3), eventType => 'api_call',
			value => $i / 4, metadata => { n => $i, s => "x\x{e9}" });
		$ev{id} = "req-$i" if $i % 2;
		# an hour back: inside the retention window whatever the day
		$ev{timestamp} = Test::Usage::iso_ms(int(time() * 1000) - 3600000)
			if $i == 7;
		my $r = post($t, %ev);
		is($r->status, 201, "POST $i: 201");
		my $d = $r->json->{data};
		$answer{ $d->{id} } = $d;
	}
	is(post($t, entityId => 'cust-1', eventType => 'api_call', id => 'req-1')
		->status, 200, 'a duplicate client id is answered 200');
	is($t->get('/tracked/p?who=page-user')->status, 204, 'a tracked request');

	ok(wait_until(sub { metric($t, 'usage_sync_queued') == 0
		&& metric($t, 'usage_sync_shipped_total') >= 22 }, 5),
		'everything shipped, nothing left queued');

	my @r = stream($redis);
	ok(scalar(@r) >= 22, 'the stream holds the events') or diag(scalar @r);
	is(scalar(grep { !$_->{ok} } @r), 0, 'every record is well formed');
	ok(seqs_complete(@r), 'seqs 1..n, no hole');
	my %count;
	$count{ $_->{seq} }++ for @r;
	is(scalar(grep { $_ > 1 } values %count), 0, 'no seq twice');
	is(scalar(keys %{{ map { $_->{origin} => 1 } @r }}), 1, 'one origin');
	like($r[0]{origin}, qr/^[0-9a-f]{16}$/, 'the origin is 16 hex digits');
	is($r[0]{name}, 'ship1', 'the entry names the instance');

	my %by_uuid;
	for my $x (@r) {
		(my $u = $x->{uuid}) =~ s/^(.{8})(.{4})(.{4})(.{4})(.{12})$/$1-$2-$3-$4-$5/;
		$by_uuid{$u} = $x;
	}
	my $client_ids = 0;
	my $bad = 0;
	for my $d (values %answer) {
		my $uuid = $d->{id} =~ /^req-/ ? undef : $d->{id};
		my ($x) = $uuid ? ($by_uuid{$uuid}) : grep { $_->{id} eq $d->{id} } @r;
		unless ($x) { $bad++; diag("missing $d->{id}"); next; }
		$client_ids++ if $x->{id} ne '';
		$bad++, diag("entity of $d->{id}") unless $x->{entity} eq $d->{entityId};
		$bad++, diag("type of $d->{id}") unless $x->{type} eq $d->{eventType};
		$bad++, diag("value of $d->{id}") unless $x->{value} == $d->{value};
		$bad++, diag("created of $d->{id}") unless $x->{created} == $d->{createdAt};
		$bad++, diag("time of $d->{id}")
			unless $x->{time} == Test::Usage::parse_iso($d->{timestamp});
		my $m = Test::Usage::json_decode($x->{metadata});
		$bad++, diag("metadata of $d->{id}")
			unless $m->{n} == $d->{metadata}{n} && $m->{s} eq $d->{metadata}{s};
	}
	is($bad, 0, 'each POST is in the stream with its fields');
	is($client_ids, 10, 'client ids are shipped');
	my ($back) = grep { $_->{time} != $_->{created} } @r;
	is($back->{flags} & 1, 1, 'a client timestamp is flagged');
	is(scalar(grep { $_->{entity} eq 'page-user' && $_->{type} eq 'page' } @r),
		1, 'tracked traffic is shipped');
	ok(scalar(grep { $_->{entity} eq 'api-self' } @r) >= 20,
		'api-self events are shipped');

	###########################################################################
	# Redis down, then back

	$redis->stop();
	ok(wait_until(sub {
		(($t->get('/ready')->json // {})->{checks}{sync} // '') eq 'degraded'
	}, 8), 'redis stopped: degraded');
	my $queued_before = metric($t, 'usage_sync_queued');
	my $ok = 0;
	for my $i (1 .. 50) {
		$ok++ if post($t, entityId => 'down', eventType => 'x')->status == 201;
	}
	is($ok, 50, 'POSTs are 201 while redis is down');
	cmp_ok(metric($t, 'usage_sync_queued'), '>=', $queued_before + 50,
		'the queue holds them');
	$redis->restart();
	ok(sync_ok($t), 'redis back');
	ok(wait_until(sub { metric($t, 'usage_sync_queued') == 0 }, 8),
		'the queue drained');
	# the restarted Redis is empty (no persistence): its stream holds the
	# queue, as new events (k b), and the zone's recent events published
	# again (k r), those 50 among them
	my @after = grep { $_->{kind} eq 'b' } stream($redis);
	is(scalar(grep { $_->{entity} eq 'down' } @after), 50,
		'the 50 events are in the stream');
	my @s = sort { $a <=> $b } map { $_->{seq} } @after;
	is($s[-1] - $s[0] + 1, scalar @s, 'their seqs follow without a hole');
	ok(wait_until(sub {
		scalar(grep { $_->{kind} eq 'r' && $_->{entity} eq 'down' }
			stream($redis)) == 50 }, 8),
		'an empty Redis: the zone publishes its recent events again');
	like($t->read_file('error.log'),
		qr/\[warn\].*usage sync: redis \S+ lost stream "usage:events" \(epoch [0-9a-f]{16}, now [0-9a-f]{16}\): zone "usage" reads it again and publishes its last 60 s of events again/,
		'a [warn] says that Redis lost the stream');

	$t->finish();
}

###############################################################################
# a full queue

{
	my $redis = Test::UsageRedis->new();
	my $t = Test::Usage->new();
	$t->write_config(conf($redis, 'buffer=16k'))->run();
	ok(sync_ok($t), 'sync ok with buffer=16k');
	$redis->stop();
	ok(wait_until(sub {
		(($t->get('/ready')->json // {})->{checks}{sync} // '') eq 'degraded'
	}, 8), 'redis stopped');

	my $ok = 0;
	for my $i (1 .. 300) {
		$ok++ if post($t, entityId => 'full', eventType => 'x',
			metadata => { pad => 'p' x 100 })->status == 201;
	}
	is($ok, 300, 'every POST is 201 with the queue full');
	is($t->get('/v1/usage/full')->json->{data}{totalEvents}, 300,
		'and every event is stored');
	cmp_ok(metric($t, 'usage_sync_dropped_total'), '>', 100,
		'the events that did not fit are counted as dropped');
	my $lines = () = $t->read_file('error.log')
		=~ /\[error\].*ship queue of zone "usage" is full/g;
	is($lines, 1, 'one [error] says the queue is full');

	$redis->restart();
	ok(sync_ok($t), 'redis back');
	ok(wait_until(sub { metric($t, 'usage_sync_queued') == 0 }, 8),
		'what was queued drains');
	$t->finish();
}

###############################################################################
# the holding worker killed under load

{
	my $redis = Test::UsageRedis->new();
	my $t = Test::Usage->new();
	$t->write_config(conf($redis))->run();
	ok(sync_ok($t), 'sync ok');
	$t->allow_emerg(qr/\[alert\] .*worker process \d+ exited on signal 9/);

	my $pid = fork();
	if ($pid == 0) {
		my $end = time + 2.5;
		while (time < $end) {
			post($t, entityId => 'kill', eventType => 'x');
		}
		POSIX::_exit(0);
	}
	sleep 1;
	my $victim = ($t->get('/info')->json // {})->{sync}{worker};
	ok($victim && kill('KILL', $victim), 'the holding worker killed');
	waitpid($pid, 0);
	ok(sync_ok($t), 'another worker holds the connection');
	ok(wait_until(sub { metric($t, 'usage_sync_queued') == 0 }, 8),
		'the queue drained');
	my $stored = $t->get('/v1/usage/kill')->json->{data}{totalEvents};
	my @r = grep { $_->{entity} eq 'kill' } stream($redis);
	my %uniq = map { $_->{uuid} => 1 } @r;
	is(scalar(keys %uniq), $stored,
		"every stored event is in the stream ($stored)");
	ok(seqs_complete(stream($redis)), 'no seq is missing');
	$t->finish();
}

###############################################################################
# configuration

{
	my $redis = Test::UsageRedis->new();
	my $t = Test::Usage->new();
	for my $case (['buffer=3m', qr/\[emerg\].*buffer=3145728 .* more than half of zone "usage"/,
			'buffer= larger than half the zone is an [emerg]'],
		['batch=0', qr/\[emerg\].*invalid parameter "batch=0"/, 'batch=0 is refused'],
		['maxlen=x', qr/\[emerg\].*invalid parameter "maxlen=x"/, 'maxlen=x is refused'])
	{
		my ($code, $out) = $t->check_config(conf($redis, $case->[0]));
		isnt($code, 0, "$case->[0]: nginx -t fails");
		like($out, $case->[1], $case->[2]);
	}
}

done_testing();
