#!/usr/bin/perl

# Strict UTF-8 on every input (issue 16, finding 2).  Input is well-formed
# UTF-8 as RFC 3629 defines it or it is refused, and every answer is strict
# JSON whatever was sent.  The malformed sequences are those of Markus
# Kuhn's UTF-8 decoder stress test (sections 2.1.5-2.2.6 past U+10FFFF, 3
# malformed sequences, 4 overlong forms, 5.1-5.2 surrogates), each numbered
# as there, and the case of the report: continuation bytes outside
# 0x80-0xBF (C3 C3, C3 E5), which nginx's ngx_utf8_decode() let through.
#
# Each is sent to every input: the POST body (entityId, eventType, a
# metadata value, a metadata key, nested metadata, the client id, the
# timestamp; through both readers: the single-pass one, and jansson, which
# an escaped key first hands the body to), the entity segment of a summary
# and a history (%XX and raw bytes), the query values entityId and eventType
# of the list and since/until of a summary, the trace header, and the
# request headers a tracked location takes its entity and type from.  The
# API answers 400 with the error envelope; a tracked header is not recorded
# (or is recorded made valid); a raw path stays in the self-tracking events
# and in a 404's message, which must stay valid.  Then the valid boundary
# sequences (U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFD, U+FFFE, U+FFFF,
# U+10000, U+10FFFF) are stored and read back byte-exact, and every read of
# the store (stats, every page of the list, summaries, histories, /info) is
# strict JSON: Test::Usage::strict_json, well-formed UTF-8 then JSON::PP.
# Last, a state file whose names, ids, metadata and raw paths are made
# malformed (the checksum made right again): answers stay strict JSON.
#
# Lonely start bytes one by one and continuation bytes one by one (126
# cases) go to one field of each kind; the rest of the table to all.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Compress::Zlib ();
use Test::More;
use Time::HiRes qw(time);
use Test::Usage qw(api_conf iso_ms wait_until utf8_error strict_json
	esc_bytes envelope_problem);

my $started = time();

###############################################################################
# the table

my @CORE;    # [name, bytes]: sent to every input
my @EACH;    # the single bytes, sent to one input of each kind

sub kuhn { push @CORE, [@_] }

# 2.1.5-2.2.6: first and last 5- and 6-byte forms, past U+10FFFF in any case
kuhn('2.1.5 U+200000 as 5 bytes', "\xf8\x88\x80\x80\x80");
kuhn('2.1.6 U+4000000 as 6 bytes', "\xfc\x84\x80\x80\x80\x80");
kuhn('2.2.4 U+1FFFFF as 4 bytes', "\xf7\xbf\xbf\xbf");
kuhn('2.2.5 U+3FFFFFF as 5 bytes', "\xfb\xbf\xbf\xbf\xbf");
kuhn('2.2.6 U+7FFFFFFF as 6 bytes', "\xfd\xbf\xbf\xbf\xbf\xbf");
kuhn('2.3.5 U+110000', "\xf4\x90\x80\x80");
kuhn('U+140000 (F5 first)', "\xf5\x80\x80\x80");

# 3.1 unexpected continuation bytes
kuhn('3.1.1 first continuation byte 80', "\x80");
kuhn('3.1.2 last continuation byte BF', "\xbf");
my $run = "\x80\xbf\x80\xbf\x80\xbf\x80";
kuhn("3.1.$_ $_ continuation bytes", substr($run, 0, $_ - 1)) for 3 .. 8;
kuhn('3.1.9 all 64 continuation bytes', join '', map { chr } 0x80 .. 0xbf);

# 3.2 lonely start bytes, each followed by a space (Kuhn's lines)
kuhn('3.2.1 all 32 2-byte starts, each and a space',
	join '', map { chr($_) . ' ' } 0xc0 .. 0xdf);
kuhn('3.2.2 all 16 3-byte starts, each and a space',
	join '', map { chr($_) . ' ' } 0xe0 .. 0xef);
kuhn('3.2.3 all 8 4-byte starts, each and a space',
	join '', map { chr($_) . ' ' } 0xf0 .. 0xf7);
kuhn('3.2.4 all 4 5-byte starts, each and a space',
	join '', map { chr($_) . ' ' } 0xf8 .. 0xfb);
kuhn('3.2.5 both 6-byte starts, each and a space', "\xfc \xfd ");

# 3.3 the last continuation byte missing
my @incomplete = (
	['3.3.1 2-byte U+0000', "\xc0"],
	['3.3.2 3-byte U+0000', "\xe0\x80"],
	['3.3.3 4-byte U+0000', "\xf0\x80\x80"],
	['3.3.4 5-byte U+0000', "\xf8\x80\x80\x80"],
	['3.3.5 6-byte U+0000', "\xfc\x80\x80\x80\x80"],
	['3.3.6 2-byte U+07FF', "\xdf"],
	['3.3.7 3-byte U+FFFF', "\xef\xbf"],
	['3.3.8 4-byte U+1FFFFF', "\xf7\xbf\xbf"],
	['3.3.9 5-byte U+3FFFFFF', "\xfb\xbf\xbf\xbf"],
	['3.3.10 6-byte U+7FFFFFFF', "\xfd\xbf\xbf\xbf\xbf"],
	# and the sequences valid but for their missing last byte
	['2-byte U+00E9 without its last byte', "\xc3"],
	['3-byte U+20AC without its last byte', "\xe2\x82"],
	['4-byte U+1F600 without its last byte', "\xf0\x9f\x98"],
);
kuhn(@$_) for @incomplete;

# 3.4 all of 3.3.1-3.3.10 concatenated
kuhn('3.4 the incomplete sequences concatenated',
	join '', map { $_->[1] } @incomplete[0 .. 9]);

# 3.5 impossible bytes
kuhn('3.5.1 FE', "\xfe");
kuhn('3.5.2 FF', "\xff");
kuhn('3.5.3 FE FE FF FF', "\xfe\xfe\xff\xff");

# 4.1 overlong '/', 4.2 maximum overlongs, 4.3 overlong NUL
kuhn('4.1.1 / as C0 AF', "\xc0\xaf");
kuhn('4.1.2 / as E0 80 AF', "\xe0\x80\xaf");
kuhn('4.1.3 / as F0 80 80 AF', "\xf0\x80\x80\xaf");
kuhn('4.1.4 / as F8 80 80 80 AF', "\xf8\x80\x80\x80\xaf");
kuhn('4.1.5 / as FC 80 80 80 80 AF', "\xfc\x80\x80\x80\x80\xaf");
kuhn('4.2.1 U+007F as C1 BF', "\xc1\xbf");
kuhn('4.2.2 U+07FF as E0 9F BF', "\xe0\x9f\xbf");
kuhn('4.2.3 U+FFFF as F0 8F BF BF', "\xf0\x8f\xbf\xbf");
kuhn('4.2.4 U+1FFFFF as F8 87 BF BF BF', "\xf8\x87\xbf\xbf\xbf");
kuhn('4.2.5 U+3FFFFFF as FC 83 BF BF BF BF', "\xfc\x83\xbf\xbf\xbf\xbf");
kuhn('4.3.1 NUL as C0 80', "\xc0\x80");
kuhn('4.3.2 NUL as E0 80 80', "\xe0\x80\x80");
kuhn('4.3.3 NUL as F0 80 80 80', "\xf0\x80\x80\x80");
kuhn('4.3.4 NUL as F8 80 80 80 80', "\xf8\x80\x80\x80\x80");
kuhn('4.3.5 NUL as FC 80 80 80 80 80', "\xfc\x80\x80\x80\x80\x80");

# 5.1 single UTF-16 surrogates, 5.2 paired ones
kuhn('5.1.1 U+D800', "\xed\xa0\x80");
kuhn('5.1.2 U+DB7F', "\xed\xad\xbf");
kuhn('5.1.3 U+DB80', "\xed\xae\x80");
kuhn('5.1.4 U+DBFF', "\xed\xaf\xbf");
kuhn('5.1.5 U+DC00', "\xed\xb0\x80");
kuhn('5.1.6 U+DF80', "\xed\xbe\x80");
kuhn('5.1.7 U+DFFF', "\xed\xbf\xbf");
my @hi = ("\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf");
my @lo = ("\xed\xb0\x80", "\xed\xbf\xbf");
my $k = 0;
for my $h (@hi) {
	for my $l (@lo) {
		$k++;
		kuhn(sprintf('5.2.%d paired surrogates %s', $k,
			esc_bytes($h . $l)), $h . $l);
	}
}

# the report: continuation bytes outside 0x80-0xBF, which take any byte
# from 0x80 on as a continuation byte let through
kuhn('report: C3 C3', "\xc3\xc3");
kuhn('report: C3 E5', "\xc3\xe5");
kuhn('C2 C0', "\xc2\xc0");
kuhn('DF FF', "\xdf\xff");
kuhn('C3 C3 A9 (a valid tail after)', "\xc3\xc3\xa9");
kuhn('E2 82 C3 (3-byte, last byte C3)', "\xe2\x82\xc3");
kuhn('E2 C2 AC (3-byte, second byte C2)', "\xe2\xc2\xac");
kuhn('EF C0 80 (3-byte, second byte C0)', "\xef\xc0\x80");
kuhn('F0 9F 98 C0 (4-byte, last byte C0)', "\xf0\x9f\x98\xc0");
kuhn('F1 C0 80 80 (4-byte, second byte C0)', "\xf1\xc0\x80\x80");
kuhn('F4 8F FF BF (4-byte, third byte FF)', "\xf4\x8f\xff\xbf");
kuhn('E0 A0 (valid 3-byte start, cut by ASCII)', "\xe0\xa0A");

# one by one: every continuation byte alone, every start byte alone
push @EACH, map { [sprintf('3.1 continuation byte %02X alone', $_), chr $_] }
	0x80 .. 0xbf;
push @EACH, map { [sprintf('3.2 lonely start byte %02X and a space', $_),
	chr($_) . ' '] } 0xc0 .. 0xfd;

my @ALL = (@CORE, @EACH);

# well-formed boundary sequences, all of which must be taken as sent
my @VALID = (
	['U+0080', "\xc2\x80"],
	['U+07FF', "\xdf\xbf"],
	['U+0800', "\xe0\xa0\x80"],
	['U+D7FF', "\xed\x9f\xbf"],
	['U+E000', "\xee\x80\x80"],
	['U+FDD0 (a noncharacter)', "\xef\xb7\x90"],
	['U+FFFD', "\xef\xbf\xbd"],
	['U+FFFE (5.3.1)', "\xef\xbf\xbe"],
	['U+FFFF (5.3.2)', "\xef\xbf\xbf"],
	['U+10000', "\xf0\x90\x80\x80"],
	['U+10FFFF', "\xf4\x8f\xbf\xbf"],
	['U+00E9 U+20AC U+1F600', "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"],
);

###############################################################################
# the judge itself: refuses the table, takes the valid set

{
	my @wrong = grep { !defined utf8_error("a$_->[1]b") } @ALL;
	is(scalar @wrong, 0, 'utf8_error() refuses every malformed sequence')
		or diag(join "\n", map { $_->[0] } @wrong);
	@wrong = grep { defined utf8_error("a$_->[1]b") } @VALID;
	is(scalar @wrong, 0, 'utf8_error() takes every valid sequence')
		or diag(join "\n", map { $_->[0] } @wrong);
	my @bad = grep { defined((strict_json($_))[1]) ? 0 : 1 }
		qq({"a":"\\ud800"}), qq({"a":"x\x01"}), qq({"a":1,}),
		qq({"a":"\xc3\xc3"}), qq({"a":"\xed\xa0\x80"});
	is(scalar @bad, 0, 'strict_json() refuses a lone surrogate escape, a '
		. 'raw control character, a trailing comma, invalid UTF-8');
	my ($v, $err) = strict_json(qq({"a":"\xef\xbf\xbf\xf4\x8f\xbf\xbf"}));
	ok(!defined $err && bytes_of($v->{a}) eq "\xef\xbf\xbf\xf4\x8f\xbf\xbf",
		'strict_json() takes noncharacters (which Encode::decode refuses)');
}

###############################################################################
# nginx: the API tracking itself (raw paths go into its events), and a
# tracked location whose names come from request headers

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:16m;', track => 1,
	server => '
        location /track/ {
            usage_track usage entity=$http_x_tenant event_type=$http_x_kind;
            return 204;
        }'))->run();

my $conn;

# a request on the kept-alive connection (a new one when nginx closed it)
sub req {
	my ($method, $path, %o) = @_;
	for my $try (1, 2) {
		$conn ||= $t->connect();
		my $r = $conn->request($method, $path, %o, keepalive => 1);
		if (!$r->status || ($r->header('connection') // '') =~ /close/i) {
			$conn->close();
			undef $conn;
		}
		return $r if $r->status || $try == 2;
	}
}

sub post_body {
	my ($body, @h) = @_;
	return req('POST', '/v1/events', body => $body,
		headers => ['Content-Type' => 'application/json', @h]);
}

# an answer shown in a diagnostic
sub shown {
	my ($r) = @_;
	return 'no answer: ' . ($r->error // '?') unless $r->status;
	my $b = $r->body;
	$b = substr($b, 0, 300) . '...' if length $b > 300;
	return $r->status . ' ' . esc_bytes($b);
}

# undef if $r is the 400 the contract gives a malformed input: the error
# envelope, strict JSON, the code (VALIDATION_ERROR unless told) and a
# message that matches $msg
sub refused {
	my ($r, $msg, @codes) = @_;
	@codes = ('VALIDATION_ERROR') unless @codes;
	return shown($r) unless $r->status == 400;
	my $p = envelope_problem($r);
	return "not the error envelope ($p): " . shown($r) if defined $p;
	my $e = ($r->strict_json)[0]{error};
	return "code $e->{code}: " . shown($r)
		unless grep { $e->{code} eq $_ } @codes;
	return "message '$e->{message}'" if $msg && $e->{message} !~ $msg;
	return undef;
}

# a character string read from JSON, as the bytes it was sent as
sub bytes_of {
	my ($s) = @_;
	return undef unless defined $s && !ref $s;
	utf8::encode($s);    # (Encode's strict UTF-8 makes noncharacters U+FFFD)
	return $s;
}

# the bytes of a path segment or query value, raw: bytes from 0x80 on as
# they are (nginx takes them), anything else that needs it %-escaped
sub rawish {
	my ($s) = @_;
	$s =~ s/([\x00-\x20"#%&+\/<>?\\^`{|}\x7f])/sprintf('%%%02X', ord $1)/ge;
	return $s;
}

sub pct_bytes {
	my ($s) = @_;
	$s =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord $1)/ge;
	return $s;
}

# the body as the single-pass reader takes it, and handed over to jansson
# (an escaped key first: the single-pass reader declines it)
my @READERS = (
	['single-pass', sub { $_[0] }],
	['jansson', sub { my $b = shift; $b =~ s/^\{/{"\\u0078":0,/; $b }],
);

my $BODY_UTF8 = qr/^Request body must be valid UTF-8$/;
my $TIME_MSG = qr/UTF-8|ISO ?8601/;
my $CT = 'application/json; charset=utf-8';

###############################################################################
# the report, as it was sent

{
	my $body = qq({"entityId":"customer-42","eventType":"x\xc3\xc3",)
		. qq("metadata":{"s":"\xc3\xe5"}});
	my $r = post_body($body, 'X-Trace-Id' => 'u8-report');
	is(refused($r, $BODY_UTF8), undef,
		'the reported body is 400 "Request body must be valid UTF-8"');
	my ($j, $err) = strict_json($r->body);
	is($err, undef, 'its answer is strict JSON');
}

###############################################################################
# the body: seven places, two readers

my $now_iso = iso_ms(int(time() * 1000));

# name => [sub (bytes) -> body, message, each?]
my @BODY = (
	['entityId', sub { qq({"entityId":"e$_[0]","eventType":"t"}) },
		$BODY_UTF8, 1],
	['eventType', sub { qq({"entityId":"u8-body","eventType":"t$_[0]t"}) },
		$BODY_UTF8],
	['metadata value', sub { qq({"entityId":"u8-body","eventType":"t",)
		. qq("metadata":{"s":"$_[0]"}}) }, $BODY_UTF8, 1],
	['metadata key', sub { qq({"entityId":"u8-body","eventType":"t",)
		. qq("metadata":{"ok":1,"k$_[0]":1}}) }, $BODY_UTF8],
	['nested metadata', sub { qq({"entityId":"u8-body","eventType":"t",)
		. qq("metadata":{"a":{"b":[1,{"c":"$_[0]n"}]}}}) }, $BODY_UTF8],
	['client id', sub { qq({"entityId":"u8-body","eventType":"t",)
		. qq("id":"i$_[0]"}) }, $BODY_UTF8],
	['timestamp', sub { my $ts = $now_iso; $ts =~ s/Z$/$_[0]Z/;
		qq({"entityId":"u8-body","eventType":"t","timestamp":"$ts"}) },
		$TIME_MSG],
);

for my $in (@BODY) {
	my ($name, $make, $msg, $each) = @$in;
	for my $reader (@READERS) {
		my @fail;
		my @cases = $each ? @ALL : @CORE;
		for my $c (@cases) {
			my $body = $reader->[1]->($make->($c->[1]));
			my $why = refused(post_body($body), $msg);
			push @fail, "$c->[0]: $why" if defined $why;
		}
		is(scalar @fail, 0, sprintf('body, %s (%s reader): %d malformed '
			. 'sequences refused', $name, $reader->[0], scalar @cases))
			or diag(join "\n", grep { defined } @fail[0 .. 9]);
	}
}

###############################################################################
# paths: the entity segment of a summary and a history, %XX and raw bytes;
# a 404's message holds the raw path

my $PATH_UTF8 = qr/UTF-8/;

my @PATHS = (
	['summary entity, %XX', sub { '/v1/usage/p' . pct_bytes($_[0]) }, 1],
	['summary entity, raw bytes', sub { '/v1/usage/p' . rawish($_[0]) }],
	['history entity, %XX',
		sub { '/v1/usage/h' . pct_bytes($_[0]) . '/history' }],
	['history entity, raw bytes',
		sub { '/v1/usage/h' . rawish($_[0]) . '/history?interval=minute' },
		1],
);

for my $in (@PATHS) {
	my ($name, $make, $each) = @$in;
	my @fail;
	my @cases = $each ? @ALL : @CORE;
	for my $c (@cases) {
		my $path = $make->($c->[1]);
		my $r = req('GET', $path);
		# (nginx itself may refuse a raw request line: BAD_REQUEST)
		my $why = refused($r, $PATH_UTF8);
		$why = refused($r, undef, 'BAD_REQUEST')
			if defined $why && $name =~ /raw/;
		push @fail, "$c->[0]: $why" if defined $why;
	}
	is(scalar @fail, 0, sprintf('%s: %d malformed sequences refused',
		$name, scalar @cases))
		or diag(join "\n", grep { defined } @fail[0 .. 9]);
}

{
	my @fail;
	for my $c (@ALL) {
		my $r = req('GET', '/nope/x' . rawish($c->[1]));
		my $p = $r->status == 404 ? envelope_problem($r) : shown($r);
		push @fail, "$c->[0]: $p" if defined $p;
	}
	is(scalar @fail, 0, sprintf('404 of a raw path: %d answers are the '
		. 'error envelope in strict JSON', scalar @ALL))
		or diag(join "\n", grep { defined } @fail[0 .. 9]);
}

###############################################################################
# query values

my @QUERIES = (
	['list entityId, %XX', sub { '/v1/events?entityId=q' . pct_bytes($_[0]) },
		$PATH_UTF8, 1],
	['list entityId, raw bytes',
		sub { '/v1/events?limit=5&entityId=q' . rawish($_[0]) }, $PATH_UTF8],
	['list eventType, %XX',
		sub { '/v1/events?eventType=' . pct_bytes($_[0]) . 'q' }, $PATH_UTF8],
	['list eventType, raw bytes',
		sub { '/v1/events?eventType=q' . rawish($_[0]) . '&offset=0' },
		$PATH_UTF8, 1],
	['summary since, %XX',
		sub { '/v1/usage/u8-body?since=2026' . pct_bytes($_[0]) }, $TIME_MSG],
	['summary until, raw bytes',
		sub { '/v1/usage/u8-body?until=' . rawish($_[0]) . '2026-01' },
		$TIME_MSG],
	['history since, %XX', sub { '/v1/usage/u8-body/history?since='
		. pct_bytes("2026-01-01T$_[0]") }, $TIME_MSG],
);

for my $in (@QUERIES) {
	my ($name, $make, $msg, $each) = @$in;
	my @fail;
	my @cases = $each ? @ALL : @CORE;
	for my $c (@cases) {
		my $why = refused(req('GET', $make->($c->[1])), $msg);
		push @fail, "$c->[0]: $why" if defined $why;
	}
	is(scalar @fail, 0, sprintf('query, %s: %d malformed sequences refused',
		$name, scalar @cases))
		or diag(join "\n", grep { defined } @fail[0 .. 9]);
}

###############################################################################
# headers: the trace id is replaced; a tracked location's names are not
# recorded (or recorded valid: checked with the reads at the end)

{
	my @fail;
	my $TRACE_RE = qr/^[A-Za-z0-9._:-]{1,128}\z/;
	for my $c (@CORE) {
		my $sent = "tr-$c->[1]-x";
		my $r = post_body('{}', 'X-Trace-Id' => $sent);
		my $why = refused($r, qr/^entityId is required/);
		my $tid = $r->header('x-trace-id') // '';
		$why //= "x-trace-id '" . esc_bytes($tid) . "' kept or unsafe"
			if $tid eq $sent || $tid !~ $TRACE_RE;
		push @fail, "$c->[0]: $why" if defined $why;
	}
	is(scalar @fail, 0, sprintf('X-Trace-Id: %d malformed ids replaced, '
		. 'answers strict JSON', scalar @CORE))
		or diag(join "\n", grep { defined } @fail[0 .. 9]);
}

for my $in (['X-Tenant', 1], ['X-Kind', 0]) {
	my ($h, $each) = @$in;
	my @fail;
	my @cases = $each ? @ALL : @CORE;
	for my $c (@cases) {
		my @h = $h eq 'X-Tenant'
			? ('X-Tenant' => "t$c->[1]t", 'X-Kind' => 'u8-trk-tenant')
			: ('X-Tenant' => 'u8-trk-kind', 'X-Kind' => "k$c->[1]k");
		my $r = req('GET', '/track/x', headers => \@h);
		push @fail, "$c->[0]: " . shown($r) unless $r->status == 204;
	}
	is(scalar @fail, 0, sprintf('tracked location, %d malformed %s values '
		. 'answered', scalar @cases, $h))
		or diag(join "\n", grep { defined } @fail[0 .. 9]);
}

###############################################################################
# the valid boundary sequences: taken, stored and read back byte-exact

sub one_event {
	my ($entity) = @_;
	my $r = req('GET', '/v1/events?limit=10&entityId=' . pct_bytes($entity));
	my ($j, $err) = $r->strict_json;
	return (undef, "list of " . esc_bytes($entity) . ": " . ($err
		// shown($r))) if defined $err || $r->status != 200;
	my $ev = $j->{data}{events} || [];
	return (undef, scalar(@$ev) . ' events listed for ' . esc_bytes($entity))
		unless @$ev == 1;
	return ($ev->[0], undef);
}

my @entities = ('u8-body', 'customer-42', 'api-self', 'u8-trk-kind',
	'u8-trk-mark');

# name => [sub (bytes, tag) -> (entity, body), sub (event) -> bytes read]
my @VALID_BODY = (
	['entityId', sub { ("e$_[0]-$_[1]", qq({"entityId":"e$_[0]-$_[1]",)
		. qq("eventType":"t"})) }, sub { $_[0]{entityId} }],
	['eventType', sub { ("v-type-$_[1]", qq({"entityId":"v-type-$_[1]",)
		. qq("eventType":"t$_[0]t"})) }, sub { $_[0]{eventType} },
		sub { "t$_[0]t" }],
	['metadata value', sub { ("v-val-$_[1]", qq({"entityId":"v-val-$_[1]",)
		. qq("eventType":"t","metadata":{"s":"$_[0]"}})) },
		sub { $_[0]{metadata}{s} }, sub { $_[0] }],
	['metadata key', sub { ("v-key-$_[1]", qq({"entityId":"v-key-$_[1]",)
		. qq("eventType":"t","metadata":{"k$_[0]":1}})) },
		sub { (grep { /^k/ } keys %{ $_[0]{metadata} })[0] },
		sub { "k$_[0]" }],
	['nested metadata', sub { ("v-nest-$_[1]", qq({"entityId":"v-nest-$_[1]",)
		. qq("eventType":"t","metadata":{"a":{"b":[1,{"c":"$_[0]n"}]}}})) },
		sub { $_[0]{metadata}{a}{b}[1]{c} }, sub { "$_[0]n" }],
	['client id', sub { ("v-id-$_[1]", qq({"entityId":"v-id-$_[1]",)
		. qq("eventType":"t","id":"i$_[0]"})) }, sub { $_[0]{id} },
		sub { "i$_[0]" }],
);

for my $in (@VALID_BODY) {
	my ($name, $make, $read, $want) = @$in;
	$want //= sub { "e$_[0]-$_[1]" };
	my @fail;
	my $n = 0;
	for my $reader (@READERS) {
		for my $i (0 .. $#VALID) {
			my $c = $VALID[$i];
			my $tag = "$i-$reader->[0]";
			my ($entity, $body) = $make->($c->[1], $tag);
			push @entities, $entity;
			my $w = $want->($c->[1], $tag);
			$n++;
			my $r = post_body($reader->[1]->($body));
			my ($j, $err) = $r->strict_json;
			if ($r->status != 201 || defined $err) {
				push @fail, "$c->[0] ($reader->[0]): POST "
					. ($err // shown($r));
				next;
			}
			my $got = bytes_of($read->($j->{data}));
			if (!defined $got || $got ne $w) {
				push @fail, "$c->[0] ($reader->[0]): answered "
					. esc_bytes($got);
				next;
			}
			if (index($r->body, $w) < 0) {
				push @fail, "$c->[0] ($reader->[0]): not written as sent";
				next;
			}
			my ($ev, $why) = one_event($entity);
			$got = $ev && bytes_of($read->($ev));
			push @fail, "$c->[0] ($reader->[0]): read back "
				. ($why // esc_bytes($got))
				unless defined $got && $got eq $w;
		}
	}
	is(scalar @fail, 0, "body, $name: $n valid sequences stored and read "
		. 'back byte-exact') or diag(join "\n", grep { defined } @fail[0 .. 9]);
}

# the entity segment, %XX and raw, of the entities stored above
for my $in (['summary, %XX', sub { '/v1/usage/' . pct_bytes($_[0]) }],
	['summary, raw bytes', sub { '/v1/usage/' . rawish($_[0]) }],
	['history, %XX', sub { '/v1/usage/' . pct_bytes($_[0]) . '/history' }],
	['history, raw bytes',
		sub { '/v1/usage/' . rawish($_[0]) . '/history?interval=day' }])
{
	my ($name, $make) = @$in;
	my @fail;
	for my $i (0 .. $#VALID) {
		my $entity = "e$VALID[$i][1]-$i-single-pass";
		my $r = req('GET', $make->($entity));
		my ($j, $err) = $r->strict_json;
		my $got = $j && ref $j->{data} eq 'HASH'
			? bytes_of($j->{data}{entityId}) : undef;
		my $count = $j && ref $j->{data} eq 'HASH' ? ($name =~ /history/
			? ($j->{data}{dataPoints}[0] // {})->{count}
			: $j->{data}{totalEvents}) : undef;
		push @fail, "$VALID[$i][0]: " . ($err // shown($r))
			unless $r->status == 200 && !defined $err && defined $got
				&& $got eq $entity && ($count // 0) == 1;
	}
	is(scalar @fail, 0, "$name: the entities of " . scalar(@VALID)
		. ' valid sequences found and echoed byte-exact')
		or diag(join "\n", grep { defined } @fail[0 .. 9]);
}

# list filters, %XX and raw
{
	my @fail;
	for my $i (0 .. $#VALID) {
		my $s = $VALID[$i][1];
		for my $q ('entityId=' . pct_bytes("e$s-$i-jansson"),
			'entityId=' . rawish("e$s-$i-jansson"),
			'eventType=' . pct_bytes("t${s}t"),
			'eventType=' . rawish("t${s}t"))
		{
			my $r = req('GET', "/v1/events?limit=10&$q");
			my ($j, $err) = $r->strict_json;
			my $total = $j && ref $j->{data} eq 'HASH'
				? $j->{data}{pagination}{total} : undef;
			push @fail, "$VALID[$i][0] ($q): " . ($err // shown($r))
				unless $r->status == 200 && !defined $err
					&& ($total // 0) == ($q =~ /^entityId/ ? 1 : 2);
		}
	}
	is(scalar @fail, 0, 'list filters of ' . scalar(@VALID) . ' valid '
		. 'sequences, %XX and raw, find their events')
		or diag(join "\n", grep { defined } @fail[0 .. 9]);
}

# a tracked location: names from headers taken byte-exact
{
	for my $i (0 .. $#VALID) {
		req('GET', '/track/v', headers => ['X-Tenant' => "t$VALID[$i][1]-$i",
			'X-Kind' => 'u8-trk-valid']);
	}
	# the log phase of the requests above ran before this one was read
	req('GET', '/track/mark', headers => ['X-Tenant' => 'u8-trk-mark',
		'X-Kind' => 'mark']);
	wait_until { (one_event('u8-trk-mark'))[0] } 5;
	my @fail;
	for my $i (0 .. $#VALID) {
		my $entity = "t$VALID[$i][1]-$i";
		push @entities, $entity;
		my ($ev, $why) = one_event($entity);
		push @fail, "$VALID[$i][0]: " . ($why // 'wrong event')
			unless $ev && bytes_of($ev->{entityId}) eq $entity
				&& $ev->{eventType} eq 'u8-trk-valid';
	}
	is(scalar @fail, 0, 'tracked location: ' . scalar(@VALID) . ' valid '
		. 'header values recorded byte-exact')
		or diag(join "\n", @fail);
}

###############################################################################
# after all of it, every read of the store is strict JSON

# self-tracking (raw paths) of the requests above is recorded too
{
	my $mark = 'u8-final-mark';
	req('GET', '/info', headers => ['X-Trace-Id' => $mark]);
	wait_until {
		my $r = req('GET', '/v1/events?entityId=api-self&limit=1000');
		index($r->body, $mark) >= 0
	} 5;
}

sub strict_read {
	my ($path) = @_;
	my $r = req('GET', $path);
	my ($j, $err) = $r->strict_json;
	return ($j, $r, $r->status == 200 && !defined $err ? undef
		: esc_bytes($path) . ': ' . ($err // shown($r)));
}

{
	my ($j, $r, $why) = strict_read('/v1/usage/stats');
	is($why, undef, '/v1/usage/stats is strict JSON');
	($j, $r, $why) = strict_read('/info');
	is($why, undef, '/info is strict JSON');
}

{
	my (@fail, $pages, $events);
	for (my $offset = 0; ; $offset += 1000) {
		my ($j, $r, $why) = strict_read("/v1/events?limit=1000&offset=$offset");
		$pages++;
		push @fail, $why if defined $why;
		$events += () = $r->body =~ /"createdAt":/g;
		last unless $r->body =~ /"hasMore":true/ && $pages < 50;
	}
	is(scalar @fail, 0, "GET /v1/events, all $pages pages ($events events), "
		. 'strict JSON') or diag(join "\n", @fail[0 .. ($#fail > 4 ? 4 : $#fail)]);
	ok($events > 1000, "the requests above were tracked ($events events)");
}

{
	my @fail;
	for my $type ('u8-trk-tenant', 't', 'u8-trk-valid', 'api_call') {
		my (undef, undef, $why) = strict_read("/v1/events?limit=1000&eventType=$type");
		push @fail, $why if defined $why;
	}
	is(scalar @fail, 0, 'lists by event type are strict JSON')
		or diag(join "\n", @fail);
}

{
	my %seen;
	my @fail;
	my $n = 0;
	for my $e (grep { !$seen{$_}++ } @entities) {
		for my $path ('/v1/usage/' . pct_bytes($e),
			'/v1/usage/' . pct_bytes($e) . '/history?interval=minute',
			'/v1/usage/' . pct_bytes($e) . '/history?interval=day')
		{
			$n++;
			my (undef, undef, $why) = strict_read($path);
			push @fail, $why if defined $why;
		}
	}
	is(scalar @fail, 0, "$n summaries and histories of every entity are "
		. 'strict JSON') or diag(join "\n", grep { defined } @fail[0 .. 9]);
}

$conn->close() if $conn;
undef $conn;
$t->finish();

###############################################################################
# whatever a state file holds: valid names, ids, metadata and a raw path
# are saved, then made malformed in the file (the same length, the checksum
# made right again); nginx restarted on it answers strict JSON everywhere

$t = Test::Usage->new();
my $sdir = $t->dir . '/state';
mkdir $sdir;
chmod 0777, $sdir;    # workers run as nobody under root
$t->write_config(api_conf(track => 1, zone => 'usage_zone zone=usage:4m '
	. 'state=%%TESTDIR%%/state/usage.state state_interval=10m;'))->run();

# marker => what it becomes in the file (4 bytes each, after "Q<n>")
my $ee = "\xc3\xa9\xc3\xa9";
my %PATCH = ("Q1$ee" => "Q1\xc3\xc3\xc3\xe5", "Q2$ee" => "Q2\xed\xa0\x80A",
	"Q3$ee" => "Q3\xf4\x90\x80\x80", "Q4$ee" => "Q4\xc0\xaf\xc0\xaf",
	"Q5$ee" => "Q5\xfb\xbf\xbf\xbf", "Q6$ee" => "Q6\xfe\xfe\xff\xff",
	"Q7$ee" => "Q7\xc3\xc3\xc3\xc3");
{
	my @bodies = (
		qq({"entityId":"sf-Q1$ee","eventType":"t"}),
		qq({"entityId":"sf-x","eventType":"Q2$ee"}),
		qq({"entityId":"sf-x","eventType":"t","metadata":{"Q3$ee":1}}),
		qq({"entityId":"sf-x","eventType":"t","metadata":{"s":"Q4$ee"}}),
		qq({"entityId":"sf-x","eventType":"t","id":"Q5$ee"}),
		qq({"entityId":"sf-x","eventType":"t","metadata":{"a":[{"b":"Q7$ee"}]}}),
	);
	my $ok = 0;
	for my $b (@bodies) {
		$ok++ if post_body($b)->status == 201;
	}
	$ok++ if req('GET', "/v1/usage/sf-Q6$ee")->status == 200;  # a raw path
	req('GET', '/info', headers => ['X-Trace-Id' => 'sf-mark']);
	# (on the same connection: its log phase ran before the next request;
	# events of one millisecond are listed in insertion order, so the
	# marker need not be among the newest few)
	wait_until { index(req('GET', '/v1/events?entityId=api-self&limit=1000')
		->body, 'sf-mark') >= 0 } 5;
	$conn->close() if $conn;
	undef $conn;
	is($ok, 7, 'events with valid markers stored');
}

$t->stop();
my $file = $t->read_file("$sdir/usage.state");
my $patched = 0;
if (length $file > 64) {
	my $payload = substr($file, 64);
	for my $m (sort keys %PATCH) {
		$patched += $payload =~ s/\Q$m\E/$PATCH{$m}/g;
	}
	substr($file, 24, 4) = pack('V', Compress::Zlib::crc32($payload));
	substr($file, 64) = $payload;
	$t->write_file("$sdir/usage.state", $file);
}
ok($patched >= 7, "the markers made malformed in the state file ($patched)");

$t->run();
{
	my @fail;
	my @paths = ('/v1/usage/stats', '/info', '/v1/events?limit=1000',
		'/v1/events?limit=1000&eventType=t', '/v1/events?entityId=sf-x');
	for my $e ('sf-x', 'api-self', "sf-Q1$ee", "sf-Q1\xc3\xc3\xc3\xe5",
		"sf-Q6$ee")
	{
		push @paths, '/v1/usage/' . pct_bytes($e),
			'/v1/usage/' . pct_bytes($e) . '/history?interval=minute';
	}
	for my $path (@paths) {
		my $r = req('GET', $path);
		my ($j, $err) = $r->strict_json;
		# (a malformed entity in the path is refused, as anywhere)
		next if $r->status == 400 && $path =~ /%C3%C3/
			&& !defined envelope_problem($r);
		push @fail, esc_bytes($path) . ': ' . ($err // shown($r))
			if defined $err || $r->status != 200;
	}
	is(scalar @fail, 0, 'a state file with malformed names, ids, metadata '
		. 'and paths: every answer is strict JSON')
		or diag(join "\n", @fail);
}
$conn->close() if $conn;

my $took = time() - $started;
note(sprintf('%.1f s', $took));

$t->done_testing();
