#!/usr/bin/perl

# The two readers of POST /v1/events bodies agree.  The single-pass reader
# takes the bodies it is sure of; jansson takes the rest (and every error).
# An escaped key makes the single-pass reader hand the body over, so each
# generated body is sent twice, as it is and with an extra "\u0078" key
# first: both must get the same status, the same stored fields and the same
# metadata bytes, or the same error.  Bodies are random (seeded; set
# TEST_USAGE_SEED to replay) over the corners of JSON: escapes, surrogate
# pairs, raw UTF-8, numbers of every form, duplicate keys, nesting, odd
# whitespace; a third of them are then damaged (a byte dropped, inserted,
# or the body cut short).  Then strings with a byte that needs care at
# every position of an eight-byte word, read and written back.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf pct);

my $seed = $ENV{TEST_USAGE_SEED} || time();
srand($seed);
note("seed $seed (TEST_USAGE_SEED=$seed to replay)");

my $N = $ENV{TEST_USAGE_BODIES} || 1500;

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:8m;',
	location => 'client_max_body_size 64k;'))->run();

my @WS = ('', '', '', ' ', "\n", "\t", "\r\n ");
my @STRINGS = ('plain', '', 'with space', ' trim me ', 'caf\u00e9', 'café',
	'😀', '\ud83d\ude00', 'q\"uote', 'back\\\\slash', 'sl\/ash', 'tab\t',
	'nl\n', '\b\f\r', 'ctl\u0001', 'nul\u0000', '\u2028\u2029', "\x7f",
	'\u00e9\u4e2d\uD83D\uDE00', 'a' x 40);
my @BAD_STRINGS = ('\ud800', '\udc00x', '\u12', '\x', "raw\ttab");
my @NUMBERS = qw(0 -0 1 -1 7 123456789012345 -123456789012345
	1234567890123456 12345678901234567890 -9223372036854775809 1.0 1.50
	-0.0 0.1 0.30000000000000004 3.141592653589793 1e2 1E+2 1e-7 2.5e-7
	1e21 1e20 123e-2 5e-324 1e-400 1.7976931348623157e308 1e400
	9007199254740993);
my @BAD_NUMBERS = qw(01 1. .5 - 1e400 +1 0x10);
my @KEYS = ('a', 'b', 'c', 'a', 'tokens', '', 'ключ', 'k😀', 'endpoint',
	'metadata', 'entityId', '\u0061', 'x y');

sub ws { $WS[int rand @WS] }

sub pick { $_[int rand @_] }

sub gen_value {
	my ($depth) = @_;
	my $r = rand();
	if ($depth < 5 && $r < 0.15) {
		return gen_object($depth + 1);
	} elsif ($depth < 5 && $r < 0.25) {
		my $n = int rand 4;
		return '[' . ws() . join(',' . ws(),
			map { gen_value($depth + 1) . ws() } 1 .. $n) . ']';
	} elsif ($r < 0.55) {
		return '"' . (rand() < 0.02 ? pick(@BAD_STRINGS) : pick(@STRINGS))
			. '"';
	} elsif ($r < 0.85) {
		return rand() < 0.02 ? pick(@BAD_NUMBERS) : pick(@NUMBERS);
	}
	return pick(qw(true false null));
}

sub gen_object {
	my ($depth) = @_;
	my $n = int rand 5;
	my @pairs;
	for (1 .. $n) {
		push @pairs, ws() . '"' . pick(@KEYS) . '"' . ws() . ':' . ws()
			. gen_value($depth) . ws();
	}
	return '{' . join(',', @pairs) . (@pairs ? '' : ws()) . '}';
}

sub gen_name {
	my $r = rand();
	return '"' . pick('customer-1', ' spaced ', 'ünï', 'a\u0062c',
		'\ud83d\ude00', 'e' . int(rand 50)) . '"'
		if $r < 0.95;
	return '"' . pick("tab\\t", '', ' ', 'x' x 300) . '"' if $r < 0.97;
	return pick('null', '42', '{}', '[]', 'true');
}

sub gen_body {
	my @fields;
	push @fields, ['"entityId"', gen_name()] if rand() < 0.95;
	push @fields, ['"eventType"', gen_name()] if rand() < 0.95;
	if (rand() < 0.85) {
		push @fields, ['"metadata"', rand() < 0.9 ? gen_object(1)
			: gen_value(4)];
	}
	push @fields, ['"value"', rand() < 0.8 ? pick(@NUMBERS)
		: pick('"5"', 'null', 'true', '[]')] if rand() < 0.4;
	push @fields, ['"id"', pick('5', '{}', 'true', 'null')] if rand() < 0.05;
	push @fields, ['"timestamp"', pick('null', '"not a date"', '7')]
		if rand() < 0.05;
	push @fields, ['"extra"', gen_value(2)] if rand() < 0.3;
	# a repeated field: the last one counts
	push @fields, [$fields[0][0], gen_value(3)] if @fields && rand() < 0.1;
	@fields = sort { rand() <=> 0.5 } @fields if rand() < 0.3;
	return ws() . '{' . join(',', map { ws() . $_->[0] . ws() . ':' . ws()
		. $_->[1] . ws() } @fields) . (@fields ? '' : ws()) . '}' . ws();
}

sub damage {
	my ($body) = @_;
	my $pos = int rand(length($body) + 1);
	my $r = rand();
	if ($r < 0.4) {
		substr($body, $pos, 1) = '' if $pos < length $body;
	} elsif ($r < 0.8) {
		substr($body, $pos, 0) = pick('{', '}', '[', ']', '"', ',', ':',
			"\x00", "\x80", 'é', ' ', '0', 'a', '\\', '-', '.', 'e');
	} else {
		$body = substr($body, 0, $pos);
	}
	return $body;
}

# the same body, with an escaped key the single-pass reader hands over
sub handed_over {
	my ($body) = @_;
	return undef unless $body =~ /^([ \t\r\n]*\{)([ \t\r\n]*)(.?)/s;
	my ($head, $sp, $next) = ($1, $2, $3);
	my $sep = $next eq '}' ? '' : ',';
	return $head . '"\u0078":0' . $sep . substr($body, length $head);
}

sub outcome {
	my ($r) = @_;
	my $s = $r->status // ("none " . ($r->error // ""));
	my $body = $r->body // '';
	if ($s == 201) {
		# the stored event, but its server-side id and times
		$body =~ s/"id":"[0-9a-f-]{36}",//;
		$body =~ s/,"timestamp":"[^"]*","createdAt":\d+//;
		return "$s $body";
	}
	my $m = ($r->err // {})->{message} // $body;
	$m =~ s/ at line \d+ column \d+$//;
	$m = 'Malformed JSON' if $m =~ /^Malformed JSON/;
	return "$s $m";
}

my ($same, $fast_ok, $damaged) = (0, 0, 0);
my @diff;

my $c = $t->connect();

for my $i (1 .. $N) {
	my $body = gen_body();
	if ($i % 3 == 0) {
		$body = damage($body);
		$damaged++;
	}
	my $other = handed_over($body);
	next unless defined $other;

	my @res;
	for my $b ($body, $other) {
		my $r = $c->request('POST', '/v1/events', body => $b,
			headers => ['Content-Type' => 'application/json'], keepalive => 1);
		if (!$r->status) {
			$c = $t->connect();
			$r = $c->request('POST', '/v1/events', body => $b,
				headers => ['Content-Type' => 'application/json'], keepalive => 1);
		}
		push @res, outcome($r);
	}

	$fast_ok++ if $res[0] =~ /^201/;

	if ($res[0] eq $res[1]) {
		$same++;
	} elsif (@diff < 10) {
		push @diff, "body:   $body\nas is:  $res[0]\nhanded: $res[1]";
	}
}

ok($fast_ok > $N / 5, "$fast_ok bodies stored");
is(scalar @diff, 0, "$same bodies: both readers agree ($damaged damaged)")
	or diag(join("\n\n", @diff));

# a few whose answer is known, through the single-pass reader
my $r = $t->post_json('/v1/events', '{"entityId":" e1 ","eventType":"t",'
	. '"metadata":{ "n" : 1.50, "i": -0, "e": 1E2, "s": "a\/b\u00e9\ud83d'
	. '\ude00", "d": [ true ,false,null, {}, [] ], "big": 123456789012345 },'
	. '"value": 2.5 }');
is($r->status, 201, 'known body stored');
like($r->body, qr/"entityId":"e1","eventType":"t","metadata":\{"n":1.5,"i":0,"e":100,"s":"a\/b\x{c3}\x{a9}\x{f0}\x{9f}\x{98}\x{80}","d":\[true,false,null,\{\},\[\]\],"big":123456789012345\},"value":2.5,/,
	'metadata written as JSON.stringify would');

# strings read and written eight bytes at a time: a byte that needs care
# at every position of a word, and right after a whole word or two
my ($echoed, @wrong) = (0);
for my $special ('"', '\\', "\x01", "\x1f", "\x7f", "\x{e9}", "\x{1F600}",
	' ', '~')
{
	for my $k (0 .. 17) {
		for my $tail (0, 1, 8) {
			my $s = ('x' x $k) . $special . ('y' x $tail);
			# names refuse control characters: those go in metadata only
			my $e = $s =~ /[\x00-\x1f\x7f]/ ? 'w-ctl' : "w$s";
			my $r = $t->post_json('/v1/events', { entityId => $e,
				eventType => 't', metadata => { "k$s" => "v$s" } });
			my $d = $r->status == 201 ? $r->data : undef;
			# (and are trimmed); the summary finds the entity by its
			# name from the path, which the JSON reader never saw
			my $name = $e =~ s/\s+$//r;
			my $u = $e eq 'w-ctl' ? undef
				: $t->get('/v1/usage/' . pct($name))->data;
			if ($d && $d->{entityId} eq $name
				&& ($d->{metadata}{"k$s"} // '') eq "v$s"
				&& (!$u || ($u->{entityId} eq $name
					&& $u->{totalEvents} == 1)))
			{
				$echoed++;
			} elsif (@wrong < 5) {
				push @wrong, sprintf('%s: %s', join(' ', map {
					sprintf '%02x', ord } split //, $s), $r->body);
			}
		}
	}
}
is(scalar @wrong, 0, "$echoed strings with a byte that needs care at each "
	. 'position: read and written back') or diag(join("\n", @wrong));

$t->done_testing();
