#!/usr/bin/perl

# GET /v1/events?cursor=: paging by place.
#   - without cursor: offset paging unchanged ({total,limit,offset,hasMore});
#     cursor= (empty): the first page, newest first; a page's nextCursor:
#     the next page.  The answer's pagination is {limit,nextCursor,hasMore}
#     only; nextCursor null exactly when no further matching event exists;
#     a token is 60 characters of URL-safe base64 (45 bytes: version 1,
#     createdAt, a sequence number, the last event's uuid, a filter tag, a
#     MAC);
#   - a walk of every page equals one offset listing (ties of a batch in
#     insertion order), with no filter, entityId, eventType, both, and
#     limit 1, 2, 3, 7, 100; limit and filters are validated as before;
#   - 400 INVALID_CURSOR: with offset, malformed (alphabet, length, %00,
#     padding, version), forged (a bit of the position or of the MAC),
#     issued for other filters;
#   - a cursor whose event left the store goes on from the next stored one:
#     a back-dated event expired by retention, a ring that evicted it and
#     everything older (then an empty last page);
#   - cursors survive a reload; usage_cursor_key: instances with the same
#     file accept each other's cursors, another file not; its config errors;
#   - a scoped key's walk lists its entity, its cursor is another filter for
#     an unscoped key;
#   - walks under concurrent inserts and evictions on 2 workers (no filter,
#     eventType, entityId, both): every event stored from the first page to
#     the last exactly once, in list order, in the order of a listing taken
#     before, nothing posted after the first page (but an event that joins
#     the millisecond of the cursor after it: ties in insertion order).

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf iso_ms wait_until envelope_problem $UUID4_RE);
use MIME::Base64 qw(encode_base64url decode_base64url);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

my $TOKEN_RE = qr/^[A-Za-z0-9_-]{60}\z/;

my $M_OFFSET = 'cursor cannot be combined with offset';
my $M_MALFORMED = 'cursor is malformed';
my $M_FORGED = 'cursor was not issued by this service';
my $M_FILTERS = 'cursor was issued for other filters';
my $M_LIMIT = 'limit must be between 1 and 1000';

my $SEED = $ENV{CURSOR_TEST_SEED} // (time() ^ $$) % 100000;
srand($SEED);
diag("random seed $SEED (CURSOR_TEST_SEED to replay)");

sub now_ms { int(time() * 1000) }

###############################################################################
# tokens

# the 45 bytes of a token; undef when it is not base64url of 45 bytes
sub tok_raw {
	my ($tok) = @_;
	return undef unless defined $tok && !ref $tok
		&& $tok =~ /^[A-Za-z0-9_-]+\z/;
	my $raw = decode_base64url($tok);
	return length $raw == 45 ? $raw : undef;
}

sub tok_fields {
	my $raw = tok_raw($_[0]) // return undef;
	return {
		version => ord(substr($raw, 0, 1)),
		created => unpack('q<', substr($raw, 1, 8)),
		seq => unpack('V', substr($raw, 9, 4)),
		uuid => unpack('H32', substr($raw, 13, 16)),
	};
}

# a token with bit $bit of byte $byte flipped, re-encoded without padding
sub flip {
	my ($tok, $byte, $bit) = @_;
	my $raw = tok_raw($tok);
	substr($raw, $byte, 1) = chr(ord(substr($raw, $byte, 1)) ^ (1 << $bit));
	return encode_base64url($raw);
}

# a token with byte $byte set to $value
sub with_byte {
	my ($tok, $byte, $value) = @_;
	my $raw = tok_raw($tok);
	substr($raw, $byte, 1) = chr($value);
	return encode_base64url($raw);
}

sub hex_of_id { (my $h = $_[0]) =~ s/-//g; return lc $h }

###############################################################################
# requests and pages

sub events_get {
	my ($t, $query, %o) = @_;
	return $t->get('/v1/events' . (length $query ? "?$query" : ''), %o);
}

sub q_join { join '&', grep { defined && length } @_ }

sub ids { [map { $_->{id} } @{ $_[0] }] }

# what is wrong with a cursor page of limit $limit (empty list: nothing)
sub page_problems {
	my ($r, $limit, %o) = @_;
	my @p;
	return ('status ' . $r->describe) unless $r->status == 200;
	my $j = $r->json;
	return ('not JSON: ' . $r->describe) unless ref $j eq 'HASH';
	push @p, 'success is not true'
		unless JSON::PP::is_bool($j->{success}) && $j->{success};
	my $d = $j->{data};
	return (@p, 'no data object') unless ref $d eq 'HASH';
	my @dk = sort keys %$d;
	push @p, "data keys @dk" unless "@dk" eq 'events pagination';
	return (@p, 'events is not an array') unless ref $d->{events} eq 'ARRAY';
	my $pg = $d->{pagination};
	return (@p, 'no pagination object') unless ref $pg eq 'HASH';
	my @pk = sort keys %$pg;
	push @p, "pagination keys @pk" unless "@pk" eq 'hasMore limit nextCursor';
	push @p, "limit " . ($pg->{limit} // 'undef') . ", not $limit"
		unless defined $pg->{limit} && $pg->{limit} eq $limit;
	push @p, 'hasMore is not a boolean' unless JSON::PP::is_bool($pg->{hasMore});
	my $next = $pg->{nextCursor};
	my $n = @{ $d->{events} };
	push @p, "$n events, more than the limit $limit" if $n > $limit;
	if (defined $next) {
		push @p, 'nextCursor but hasMore false' unless $pg->{hasMore};
		push @p, "nextCursor '$next' is not 60 base64url characters"
			unless $next =~ $TOKEN_RE;
		push @p, 'nextCursor on an empty page' unless $n;
		push @p, "nextCursor on a page of $n events, not full ($limit)"
			if $o{static} && $n != $limit;
		my $f = tok_fields($next);
		my $last = $d->{events}[-1];
		if ($f && $last) {
			push @p, "token version $f->{version}" unless $f->{version} == 1;
			push @p, "token createdAt $f->{created}, last event's "
				. "$last->{createdAt}" unless $f->{created} == $last->{createdAt};
			push @p, "token uuid $f->{uuid}, last event $last->{id}"
				if $last->{id} =~ $UUID4_RE
					&& $f->{uuid} ne hex_of_id($last->{id});
		}
	} else {
		push @p, 'no nextCursor but hasMore true' if $pg->{hasMore};
	}
	return @p;
}

# walk a list by cursor from cursor= to the last page:
# { events => [...], pages => N, problems => [...] }
sub walk {
	my ($t, $filter, $limit, %o) = @_;
	my (@events, @problems);
	my $cursor = $o{from} // '';
	my $pages = 0;
	my $end = time() + ($o{timeout} // 30);
	while (1) {
		my $q = q_join("limit=$limit", $filter, "cursor=$cursor");
		my $r = events_get($t, $q, headers => $o{headers} || []);
		$pages++;
		my @p = page_problems($r, $limit, static => 1);
		if (@p) {
			push @problems, "page $pages ($q): " . join('; ', @p);
			last if $r->status != 200;
		}
		my $d = $r->data;
		push @events, @{ $d->{events} || [] };
		my $next = ($d->{pagination} || {})->{nextCursor};
		last unless defined $next && $next =~ $TOKEN_RE;
		$cursor = $next;
		if (time() > $end || $pages > 5000) {
			push @problems, "not at the end after $pages pages";
			last;
		}
	}
	return { events => \@events, pages => $pages, problems => \@problems };
}

# the whole list by offset, limit=1000 pages
sub offset_all {
	my ($t, $filter, %o) = @_;
	my @events;
	my $offset = 0;
	my $total;
	while (1) {
		my $r = events_get($t, q_join('limit=1000', "offset=$offset", $filter),
			headers => $o{headers} || []);
		die "offset listing ($filter, $offset): " . $r->describe . "\n"
			unless $r->status == 200;
		my $d = $r->data;
		$total //= $d->{pagination}{total};
		push @events, @{ $d->{events} };
		$offset += 1000;
		last if $offset >= $total || !@{ $d->{events} };
	}
	return @events;
}

sub cursor_error {
	my ($t, $query, $message, $name, %o) = @_;
	my $r = events_get($t, $query,
		headers => ['X-Trace-Id' => 'cur-err', @{ $o{headers} || [] }]);
	my $code = $o{code} // 'INVALID_CURSOR';
	is($r->status, 400, "$name: 400") or diag $r->describe;
	is($r->err->{code}, $code, "$name: $code");
	is($r->err->{message}, $message, "$name: message");
	is(envelope_problem($r), undef, "$name: the error envelope");
	is($r->err->{traceId}, 'cur-err', "$name: traceId");
}

###############################################################################
# an instance with a mix of singles and batches (the ties of a batch)

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:4m;'))->run();

my @ENT = qw(e1 e2 e3);
my @TYPE = qw(click view buy);
my $seeded = 0;
my $ties = 0;
my @BATCHES;    # the ids of each seeded batch, in the order sent
for my $round (1 .. 5) {
	# a batch of 9 events, one createdAt ...
	my @batch = map {
		my $i = $seeded + $_;
		{ entityId => $ENT[$i % 3], eventType => $TYPE[($i + int($i / 3)) % 3],
		  metadata => { i => $i } }
	} 0 .. 8;
	my $r = $t->post_json('/v1/events/batch', { events => \@batch });
	die 'seed batch: ' . $r->describe . "\n" unless $r->status == 201;
	my %c = map { $_->{createdAt} => 1 } @{ $r->data->{events} };
	$ties++ if keys %c == 1;
	push @BATCHES, [map { $_->{id} } @{ $r->data->{events} }];
	$seeded += 9;
	# ... and 3 singles
	for (1 .. 3) {
		my $i = $seeded++;
		my $r = $t->post_event($ENT[$i % 3], $TYPE[($i + int($i / 3)) % 3],
			{ i => $i });
		die 'seed: ' . $r->describe . "\n" unless $r->status == 201;
		sleep 0.002;
	}
}
is($seeded, 60, 'seeded 60 events, 45 of them in 5 batches');
is($ties, 5, 'the events of each batch share one createdAt (ties to order)');

my @ALL = offset_all($t, '');
is(scalar @ALL, 60, 'the offset listing has them all');

###############################################################################
# offset paging is unchanged

{
	my $r = events_get($t, 'limit=5&offset=5');
	is($r->status, 200, 'offset paging: 200');
	is_deeply($r->data->{pagination},
		{ total => 60, limit => 5, offset => 5, hasMore => JSON::PP::true },
		'offset paging: {total,limit,offset,hasMore}');
	is_deeply(ids($r->data->{events}), ids([@ALL[5 .. 9]]),
		'offset paging: the same events');
	$r = events_get($t, 'limit=5');
	is_deeply([sort keys %{ $r->data->{pagination} }],
		[qw(hasMore limit offset total)], 'without cursor: no nextCursor');
	$r = events_get($t, 'Cursor=&limit=5');
	is_deeply([sort keys %{ $r->data->{pagination} }],
		[qw(hasMore limit offset total)],
		'"Cursor" is not cursor (names are case-sensitive)');
}

###############################################################################
# the first page and its token

my $first = events_get($t, 'cursor=&limit=5');
is($first->status, 200, 'cursor=: 200') or diag $first->describe;
{
	my $j = $first->json // {};
	is_deeply([sort keys %$j], [qw(data success)], 'envelope: success, data');
	ok(JSON::PP::is_bool($j->{success}) && $j->{success}, 'success: true');
	is_deeply([sort keys %{ $first->data }], [qw(events pagination)],
		'data: events and pagination');
	my $pg = $first->data->{pagination};
	is_deeply([sort keys %$pg], [qw(hasMore limit nextCursor)],
		'pagination: limit, nextCursor, hasMore (no total, no offset)');
	is($pg->{limit}, 5, 'limit echoed');
	like($first->body, qr/"limit":5[,}]/, 'limit is a number');
	like($first->body, qr/"hasMore":true[,}]/, 'hasMore is the boolean true');
	like($pg->{nextCursor}, $TOKEN_RE,
		'nextCursor: 60 characters of base64url, no padding');
	is_deeply(ids($first->data->{events}), ids([@ALL[0 .. 4]]),
		'the first page: the newest events');
	my $f = tok_fields($pg->{nextCursor}) // {};
	is($f->{version}, 1, 'token byte 0: version 1');
	is($f->{created}, $ALL[4]{createdAt},
		'token bytes 1-8: createdAt of the page\'s last event');
	is($f->{uuid}, hex_of_id($ALL[4]{id}),
		'token bytes 13-28: uuid of the page\'s last event');
	is_deeply([page_problems($first, 5, static => 1)], [],
		'the first page passes the page checks');
}
my $TOK = $first->data->{pagination}{nextCursor};

{
	my $r = events_get($t, 'cursor=');
	is($r->status, 200, 'cursor= without limit: 200');
	is($r->data->{pagination}{limit}, 100, 'default limit 100');
	is_deeply(ids($r->data->{events}), ids(\@ALL),
		'one page holds the 60 events');
	is($r->data->{pagination}{nextCursor}, undef, 'the last page: nextCursor null');
	like($r->body, qr/"nextCursor":null[,}]/, 'nextCursor is JSON null');
	is($r->data->{pagination}{hasMore}, JSON::PP::false, 'hasMore false');
	like($r->body, qr/"hasMore":false[,}]/, 'hasMore is the boolean false');

	$r = events_get($t, 'cursor=&entityId=nobody');
	is($r->status, 200, 'no match: 200');
	is_deeply($r->data->{events}, [], 'no match: no events');
	is($r->data->{pagination}{nextCursor}, undef, 'no match: nextCursor null');
	is($r->data->{pagination}{hasMore}, JSON::PP::false, 'no match: hasMore false');

	# the second page, from either worker, again and again
	my %answers;
	for (1 .. 10) {
		my $r = events_get($t, "limit=5&cursor=$TOK");
		$answers{ $r->status == 200
			? join(',', @{ ids($r->data->{events}) }) : $r->describe }++;
	}
	is_deeply([keys %answers], [join(',', @{ ids([@ALL[5 .. 9]]) })],
		'the second page, 10 times (both workers): the next 5 events');

	# the query decoding of any value: %XX decoded, the first one counts
	(my $pct = $TOK) =~ s/([A-Za-z0-9_-])/sprintf('%%%02X', ord $1)/ge;
	$r = events_get($t, "limit=5&cursor=$pct");
	is_deeply(ids($r->data->{events}), ids([@ALL[5 .. 9]]),
		'a percent-encoded cursor is decoded');
	$r = events_get($t, "limit=5&cursor=$TOK&cursor=nonsense");
	is_deeply(ids($r->data->{events}), ids([@ALL[5 .. 9]]),
		'repeated cursor: the first counts');
}

###############################################################################
# walks equal the offset listing

my %FILTERS = (
	'' => sub { 1 },
	'entityId=e2' => sub { $_[0]{entityId} eq 'e2' },
	'eventType=view' => sub { $_[0]{eventType} eq 'view' },
	'entityId=e1&eventType=click' =>
		sub { $_[0]{entityId} eq 'e1' && $_[0]{eventType} eq 'click' },
);

for my $filter (sort keys %FILTERS) {
	my @expect = offset_all($t, $filter);
	my $fname = length $filter ? $filter : 'no filter';
	is_deeply(ids(\@expect), ids([grep { $FILTERS{$filter}->($_) } @ALL]),
		"$fname: the offset listing is the filtered list");
	ok(scalar @expect, "$fname: " . scalar(@expect) . ' events to walk');
	for my $limit (1, 2, 3, 7, 100) {
		my $w = walk($t, $filter, $limit);
		is_deeply($w->{problems}, [], "$fname, limit $limit: every page right");
		is_deeply(ids($w->{events}), ids(\@expect),
			"$fname, limit $limit: the walk is the offset listing");
		my $pages = @expect ? int((@expect + $limit - 1) / $limit) : 1;
		is($w->{pages}, $pages, "$fname, limit $limit: $pages pages, "
			. 'none empty at the end');
	}
}

# ties: the events of a batch (one createdAt) in the order sent
{
	my $w = walk($t, '', 2);
	my %pos;
	@pos{ @{ ids($w->{events}) } } = 0 .. $#{ $w->{events} };
	for my $i (0 .. $#BATCHES) {
		my @in_walk = sort { $pos{$a} <=> $pos{$b} } @{ $BATCHES[$i] };
		is_deeply(\@in_walk, $BATCHES[$i],
			'batch ' . ($i + 1) . ': walked in the order sent');
	}
}

# a list that pages exactly: the last page is full and ends the walk
{
	my $r = events_get($t, 'limit=3&cursor=');
	my $n = 1;
	while (defined $r->data->{pagination}{nextCursor} && $n < 100) {
		$r = events_get($t, 'limit=3&cursor=' . $r->data->{pagination}{nextCursor});
		$n++;
	}
	is($n, 20, '60 events by 3: 20 pages');
	is(scalar @{ $r->data->{events} }, 3, 'the last page is full');
	is($r->data->{pagination}{hasMore}, JSON::PP::false,
		'and says hasMore false: nothing follows');
}

# a walk under filters given empty is a walk without them
{
	my $w = walk($t, 'entityId=&eventType=', 7);
	is_deeply(ids($w->{events}), ids(\@ALL), 'empty filters: no filter');
	my $r = events_get($t, "limit=5&cursor=$TOK&entityId=");
	is($r->status, 200, 'a token without filters, sent with entityId=: 200')
		or diag $r->describe;
	is_deeply(ids($r->data->{events}), ids([@ALL[5 .. 9]]),
		'entityId= is no filter for a token either');
}

###############################################################################
# limit and the filters are validated as without a cursor

for my $case (['cursor=&limit=0', 'limit=0'], ['cursor=&limit=1001', 'limit=1001'],
	['cursor=&limit=abc', 'limit=abc'], ['cursor=&limit=', 'limit='],
	['cursor=&limit=-1', 'limit=-1'], ["cursor=$TOK&limit=0", 'a token, limit=0'],
	['cursor=nonsense&limit=1001', 'a malformed cursor, limit=1001'])
{
	my ($q, $name) = @$case;
	cursor_error($t, $q, $M_LIMIT, "cursor with $name",
		code => 'VALIDATION_ERROR');
}
cursor_error($t, 'cursor=&entityId=%FF', 'entityId must be valid UTF-8',
	'cursor with entityId not UTF-8', code => 'VALIDATION_ERROR');
cursor_error($t, 'cursor=&eventType=%C3', 'eventType must be valid UTF-8',
	'cursor with eventType not UTF-8', code => 'VALIDATION_ERROR');
{
	my $r = events_get($t, 'cursor=&limit=1000');
	is($r->status, 200, 'cursor= with limit=1000: 200');
	is($r->data->{pagination}{limit}, 1000, 'limit=1000 echoed');
	$r = events_get($t, 'cursor=&limit=01');
	is($r->data->{pagination}{limit}, 1, 'limit=01 is 1 with a cursor too');
}

###############################################################################
# cursor and offset

cursor_error($t, $_->[0], $M_OFFSET, $_->[1]) for
	['cursor=&offset=0', 'cursor= and offset=0'],
	['offset=0&cursor=', 'offset=0 then cursor='],
	['cursor=&offset=00', 'cursor= and offset=00'],
	['cursor=&offset=10&limit=5', 'cursor= and offset=10'],
	['cursor=&offset=99999', 'cursor= and offset=99999'],
	["cursor=$TOK&offset=0", 'a token and offset=0'],
	["limit=5&offset=5&cursor=$TOK", 'a token and offset=5'],
	['cursor=nonsense&offset=0', 'a malformed cursor and offset=0'];

###############################################################################
# malformed

{
	my @bad = (
		['*' x 60, '60 characters outside the alphabet'],
		['%2B' . substr($TOK, 1), 'a "+" (%2B)'],
		[substr($TOK, 0, 30) . '%2F' . substr($TOK, 31), 'a "/" (%2F)'],
		[substr($TOK, 0, 30) . '+' . substr($TOK, 31), 'a "+" (a space)'],
		[substr($TOK, 0, 30) . '.' . substr($TOK, 31), 'a "."'],
		[substr($TOK, 0, 30) . '~' . substr($TOK, 31), 'a "~"'],
		[substr($TOK, 0, 30) . '!' . substr($TOK, 31), 'a "!"'],
		[substr($TOK, 0, 59) . '%3D', 'the last character "=" (%3D)'],
		[substr($TOK, 0, 58) . '%3D%3D', 'ending in "==" (%3D%3D)'],
		[substr($TOK, 0, 30) . '%00' . substr($TOK, 31), '%00 inside'],
		["$TOK%00", '%00 appended'],
		["%00", 'only %00'],
		[substr($TOK, 0, 30) . '%C3%A9' . substr($TOK, 31), 'a UTF-8 "é"'],
		[substr($TOK, 0, 59), 'truncated by one character'],
		[substr($TOK, 0, 56), 'truncated by four characters'],
		[substr($TOK, 1), 'its first character cut'],
		["${TOK}A", 'one character appended'],
		["${TOK}AAAA", 'four characters appended'],
		["$TOK%3D", '"=" padding appended'],
		[$TOK x 2, 'twice the token'],
		['A' x 5000, '5000 characters'],
		['A', 'one character'],
		[with_byte($TOK, 0, 0), 'version byte 0'],
		[with_byte($TOK, 0, 2), 'version byte 2'],
		[with_byte($TOK, 0, 0xff), 'version byte 255'],
		[encode_base64url(chr(2) . join('', map { chr int rand 256 } 1 .. 44)),
			'60 base64url characters of version 2'],
		[encode_base64url("\0" x 45), '45 zero bytes'],
	);
	for my $case (@bad) {
		my ($tok, $name) = @$case;
		cursor_error($t, "limit=5&cursor=$tok", $M_MALFORMED, "malformed: $name");
	}
}

###############################################################################
# forged: a bit of the place, of the MAC, a made-up one

for my $byte (1 .. 28) {
	my $bit = ($byte * 3) % 8;
	cursor_error($t, 'limit=5&cursor=' . flip($TOK, $byte, $bit), $M_FORGED,
		"forged: bit $bit of byte $byte");
}
for my $byte (37 .. 44) {
	my $bit = $byte % 8;
	cursor_error($t, 'limit=5&cursor=' . flip($TOK, $byte, $bit), $M_FORGED,
		"forged: bit $bit of MAC byte $byte");
}
{
	# the newest event's place, the newest page's: a real place, no MAC
	my $raw = tok_raw($TOK);
	substr($raw, 1, 8) = pack('q<', $ALL[0]{createdAt});
	substr($raw, 13, 16) = pack('H32', hex_of_id($ALL[0]{id}));
	cursor_error($t, 'limit=5&cursor=' . encode_base64url($raw), $M_FORGED,
		'forged: the place of another event');
	cursor_error($t, 'limit=5&cursor=' . encode_base64url(chr(1)
		. join('', map { chr int rand 256 } 1 .. 44)), $M_FORGED,
		'forged: version 1 and 44 random bytes');
	my $case = $TOK;
	$case =~ s/^(.{20})([a-z])/$1\U$2/ or $case =~ s/^(.{20})([A-Z])/$1\L$2/;
	if ($case ne $TOK) {
		cursor_error($t, "limit=5&cursor=$case", $M_FORGED,
			'forged: the case of a letter changed');
	}
}

###############################################################################
# bound to its filters

{
	my %tok;
	for my $f ('', 'entityId=e1', 'eventType=click', 'entityId=e1&eventType=click',
		'entityId=e2')
	{
		my $r = events_get($t, q_join('limit=2', $f, 'cursor='));
		$tok{$f} = $r->data->{pagination}{nextCursor};
		like($tok{$f}, $TOKEN_RE, "a token for '$f'");
	}
	my @cases = (
		['', 'entityId=e1', 'a filter added (entityId)'],
		['', 'eventType=click', 'a filter added (eventType)'],
		['', 'entityId=e1&eventType=click', 'both filters added'],
		['entityId=e1', '', 'entityId removed'],
		['entityId=e1', 'entityId=e2', 'another entityId'],
		['entityId=e1', 'entityId=E1', 'entityId in another case'],
		['entityId=e1', 'eventType=click', 'entityId for eventType'],
		['entityId=e1', 'entityId=e1&eventType=click', 'eventType added'],
		['eventType=click', '', 'eventType removed'],
		['eventType=click', 'eventType=view', 'another eventType'],
		['eventType=click', 'entityId=e1&eventType=click', 'entityId added'],
		['entityId=e1&eventType=click', 'entityId=e1', 'eventType removed (both)'],
		['entityId=e1&eventType=click', 'eventType=click', 'entityId removed (both)'],
		['entityId=e1&eventType=click', 'entityId=click&eventType=e1',
			'the values swapped'],
		['entityId=e1&eventType=click', 'entityId=e1&eventType=view',
			'another eventType (both)'],
		['entityId=e2', 'entityId=e1', 'another entity\'s token'],
	);
	for my $c (@cases) {
		my ($from, $to, $name) = @$c;
		cursor_error($t, q_join('limit=2', $to, "cursor=$tok{$from}"),
			$M_FILTERS, "other filters: $name");
	}
	# and with its own filters, in another order of parameters: fine
	my $r = events_get($t, "cursor=$tok{'entityId=e1&eventType=click'}"
		. '&eventType=click&limit=2&entityId=e1');
	is($r->status, 200, 'its own filters in another order: 200')
		or diag $r->describe;
}

###############################################################################
# cursors survive a reload

{
	my @expect = offset_all($t, 'eventType=buy');
	my $p1 = events_get($t, 'eventType=buy&limit=4&cursor=');
	my $tok = $p1->data->{pagination}{nextCursor};
	my $tok2 = events_get($t, 'limit=7&cursor=')->data->{pagination}{nextCursor};

	ok($t->reload(), 'reloaded');

	my $rest = walk($t, 'eventType=buy', 4, from => $tok);
	is_deeply($rest->{problems}, [], 'after the reload: its pages are right');
	is_deeply(ids([@{ $p1->data->{events} }, @{ $rest->{events} }]),
		ids(\@expect), 'a walk across the reload: the offset listing');
	$rest = walk($t, '', 7, from => $tok2);
	is_deeply(ids($rest->{events}), ids([@ALL[7 .. $#ALL]]),
		'another token of before the reload goes on');
	my $w = walk($t, '', 7);
	is_deeply(ids($w->{events}), ids(\@ALL), 'a new walk after the reload');
	cursor_error($t, 'limit=5&cursor=' . flip($TOK, 5, 1), $M_FORGED,
		'after the reload: a forged token is still refused');
}

my $MAIN_TOKEN = $TOK;
$t->finish();

###############################################################################
# a cursor whose event expired (a back-dated event, by its own time)

my $rt = Test::Usage->new();
$rt->write_config(api_conf(zone => 'usage_zone zone=usage:1m retention=10s;'))
	->run();

my %E;
my $t_first = time();
for my $e (['A', 'r', undef], ['B', 's', undef], ['C', 'r', 8500],
	['D', 's', undef], ['E', 'r', undef])
{
	my ($name, $entity, $back) = @$e;
	my %ev = (entityId => $entity, eventType => 'x', metadata => { n => $name });
	$ev{timestamp} = iso_ms(now_ms() - $back) if $back;
	my $r = $rt->post_json('/v1/events', \%ev);
	is($r->status, 201, "event $name" . ($back ? " (${back} ms old)" : ''))
		or diag $r->describe;
	$E{$name} = $r->data->{id};
	$E{ $r->data->{id} } = $name;
	# two events of one millisecond list in insertion order (API.md),
	# which would put D before E: keep their createdAt apart
	sleep 0.003;
}

sub names { join ' ', map { $E{ $_->{id} } // '?' } @{ $_[0] } }

is(names([offset_all($rt, '')]), 'E D C B A', 'listed by receipt: E D C B A');

my $pn = events_get($rt, 'limit=3&cursor=');
my $pf = events_get($rt, 'limit=2&entityId=r&cursor=');
my $pd = events_get($rt, 'limit=2&cursor=');
is(names($pn->data->{events}), 'E D C', 'no filter, limit 3: E D C');
is(names($pf->data->{events}), 'E C', 'entityId=r, limit 2: E C');
is(names($pd->data->{events}), 'E D', 'no filter, limit 2: E D');
my ($tn, $tf, $td) = map { $_->data->{pagination}{nextCursor} } $pn, $pf, $pd;
is((tok_fields($tn) // {})->{uuid}, hex_of_id($E{C}),
	'the limit-3 token is at C');
is((tok_fields($tf) // {})->{uuid}, hex_of_id($E{C}),
	'the entityId token is at C');
my $got_before = time() - $t_first;
ok($got_before < 1.5, sprintf('tokens taken before C expired (%.2f s)',
	$got_before));

ok((wait_until { names([offset_all($rt, '')]) eq 'E D B A' } 5),
	'C expired by its own time, the others stay');
my $left = 10 - (time() - $t_first);
ok($left > 0.5, sprintf('still %.1f s before the others expire', $left));

{
	my $r = events_get($rt, "limit=3&cursor=$tn");
	is($r->status, 200, 'the token at the expired C: 200') or diag $r->describe;
	is(names($r->data->{events}), 'B A',
		'it goes on from the next stored event: B A');
	is($r->data->{pagination}{nextCursor}, undef, 'and ends there');
	is($r->data->{pagination}{hasMore}, JSON::PP::false, 'hasMore false');

	$r = events_get($rt, "limit=2&entityId=r&cursor=$tf");
	is($r->status, 200, 'the entityId token at C: 200') or diag $r->describe;
	is(names($r->data->{events}), 'A', 'goes on with its entity: A');
	is($r->data->{pagination}{nextCursor}, undef, 'and ends there');

	$r = events_get($rt, "limit=2&cursor=$td");
	is(names($r->data->{events}), 'B A', 'the token at D steps over C: B A');
	is($r->data->{pagination}{hasMore}, JSON::PP::false, 'and ends there');
}
my $RT_TOKEN = $tn;
$rt->finish();

###############################################################################
# a cursor whose event the ring evicted

my $ev = Test::Usage->new();
$ev->write_config(api_conf(zone => 'usage_zone zone=usage:1m max_events=20;'))
	->run();

# events 1, 2, ... (entity x for odd, y for even); the list order is taken
# from the offset listing (events of one millisecond are in insertion order)
my (@R, %RN);
sub ring_post {
	my ($n) = @_;
	for (1 .. $n) {
		my $k = @R + 1;
		my $r = $ev->post_event($k % 2 ? 'x' : 'y', 'ring', { k => $k });
		die 'ring post: ' . $r->describe . "\n" unless $r->status == 201;
		push @R, $r->data->{id};
		$RN{ $r->data->{id} } = $k;
		sleep 0.002;
	}
}
sub ks { join ' ', map { $RN{ $_->{id} } // '?' } @{ $_[0] } }
sub kset { join ' ', sort { $a <=> $b } map { $RN{ $_->{id} } // 0 } @{ $_[0] } }
sub range_set { join ' ', $_[0] .. $_[1] }

# the events of a listing after the one with this id
sub after_id {
	my ($list, $id) = @_;
	my ($i) = grep { $list->[$_]{id} eq $id } 0 .. $#$list;
	return defined $i ? [@$list[$i + 1 .. $#$list]] : undef;
}

ring_post(20);
my @L1 = offset_all($ev, '');
is(kset(\@L1), range_set(1, 20), 'a full ring: 1..20');

my $r1 = events_get($ev, 'limit=5&cursor=');
is(ks($r1->data->{events}), ks([@L1[0 .. 4]]), 'page 1: the 5 newest');
my $T1 = $r1->data->{pagination}{nextCursor};
my $T1_id = $r1->data->{events}[-1]{id};

ring_post(10);
my @L2 = offset_all($ev, '');
is(kset(\@L2), range_set(11, 30), '10 more: 1..10 evicted');
{
	my $rest = after_id(\@L2, $T1_id) // [];
	ok(@$rest && @$rest <= 5, 'its event stayed, ' . scalar(@$rest)
		. ' events after it (older ones evicted)');
	my $r = events_get($ev, "limit=5&cursor=$T1");
	is($r->status, 200, 'the token: 200') or diag $r->describe;
	is(ks($r->data->{events}), ks($rest), 'the stored rest after it: '
		. ks($rest));
	is($r->data->{pagination}{nextCursor}, undef, 'nothing after those');
	is($r->data->{pagination}{hasMore}, JSON::PP::false, 'hasMore false');
}

my $r2 = events_get($ev, 'limit=5&cursor=');
is(ks($r2->data->{events}), ks([@L2[0 .. 4]]), 'a new walk: the 5 newest');
my $T2 = $r2->data->{pagination}{nextCursor};
my $r3 = events_get($ev, "limit=5&cursor=$T2");
is(ks($r3->data->{events}), ks([@L2[5 .. 9]]), 'then the next 5');
my $T3 = $r3->data->{pagination}{nextCursor};
ok(defined $T3, 'with a nextCursor (10 more follow)');
my @LX = offset_all($ev, 'entityId=x');
my $rx = events_get($ev, 'limit=3&entityId=x&cursor=');
is(ks($rx->data->{events}), ks([@LX[0 .. 2]]), 'entityId=x: its 3 newest');
my $TX = $rx->data->{pagination}{nextCursor};
ok(defined $TX, 'with a nextCursor');

ring_post(20);
is(kset([offset_all($ev, '')]), range_set(31, 50),
	'20 more: everything up to 30 evicted');
is($ev->get('/v1/usage/stats')->data->{store}{evictions}, 30,
	'30 evictions counted');
for my $c ([$T3, '', 'the token of page 2'], [$T2, '', 'the token of page 1'],
	[$TX, 'entityId=x', 'the entityId token'])
{
	my ($tok, $f, $name) = @$c;
	my $r = events_get($ev, q_join('limit=5', $f, "cursor=$tok"));
	is($r->status, 200, "$name, evicted with all older: 200")
		or diag $r->describe;
	is_deeply($r->data->{events}, [], "$name: no events (never from the start)");
	is($r->data->{pagination}{nextCursor}, undef, "$name: nextCursor null");
	is($r->data->{pagination}{hasMore}, JSON::PP::false, "$name: hasMore false");
}

# each zone signs with its own random key
cursor_error($ev, "limit=3&cursor=$RT_TOKEN", $M_FORGED,
	'a token of another zone (each its own random key)');
$ev->finish();

###############################################################################
# usage_cursor_key

my $ka = Test::Usage->new();
my $KEY1 = $ka->write_file('cursor.key',
	join('', map { chr int rand 256 } 1 .. 32));
my $KEY2 = $ka->write_file('other.key', '0123456789abcdef');    # 16 bytes
$ka->write_config(api_conf(http => "usage_cursor_key $KEY1;"))->run();
my $kb = Test::Usage->new();
$kb->write_config(api_conf(http => "usage_cursor_key $KEY1;"))->run();
my $kc = Test::Usage->new();
$kc->write_config(api_conf(http => "usage_cursor_key $KEY2;"))->run();

for my $i (1 .. 6) {
	$ka->post_event($i % 2 ? 'ka' : 'kz', 'k', { i => $i });
	$kb->post_event('kb', 'k', { i => $i }) if $i <= 3;
}
{
	my @a = offset_all($ka, '');
	my $p = events_get($ka, 'limit=2&cursor=');
	my $tok = $p->data->{pagination}{nextCursor};
	like($tok, $TOKEN_RE, 'instance A gives a token');
	my $w = walk($ka, '', 2, from => $tok);
	is_deeply(ids([@{ $p->data->{events} }, @{ $w->{events} }]), ids(\@a),
		'A walks with it');

	my $r = events_get($kb, "limit=2&cursor=$tok");
	is($r->status, 200, 'B, with the same key file, accepts A\'s token')
		or diag $r->describe;
	is_deeply([page_problems($r, 2)], [], 'B answers a cursor page');

	my $pb = events_get($kb, 'limit=1&cursor=');
	my $tb = $pb->data->{pagination}{nextCursor};
	$r = events_get($ka, "limit=1&cursor=$tb");
	is($r->status, 200, 'A accepts B\'s token') or diag $r->describe;

	cursor_error($kc, "limit=2&cursor=$tok", $M_FORGED,
		'C, another key file: A\'s token');
	cursor_error($kc, "limit=1&cursor=$tb", $M_FORGED,
		'C, another key file: B\'s token');
	cursor_error($ka, "limit=2&cursor=$MAIN_TOKEN", $M_FORGED,
		'A: a token of a zone without usage_cursor_key');

	my $pe = events_get($ka, 'limit=1&entityId=ka&cursor=');
	my $te = $pe->data->{pagination}{nextCursor};
	cursor_error($kb, "limit=1&cursor=$te", $M_FILTERS,
		'B: A\'s entityId token without the filter');
	$r = events_get($kb, "limit=1&entityId=ka&cursor=$te");
	is($r->status, 200, 'B: A\'s entityId token with its filter: 200')
		or diag $r->describe;

	my $pc = events_get($kc, 'cursor=');
	is($pc->status, 200, 'C, with a key of 16 bytes, serves cursor pages');
}
$_->finish() for $ka, $kb, $kc;

###############################################################################
# usage_cursor_key: configuration errors

{
	my $cf = Test::Usage->new();
	my $dir = $cf->dir;
	my $k16 = $cf->write_file('k16', 'x' x 16);
	my $k15 = $cf->write_file('k15', 'x' x 15);
	my $k0 = $cf->write_file('k0', '');
	my $k4096 = $cf->write_file('k4096', join('', map { chr int rand 256 } 1 .. 4096));
	my $missing = "$dir/no-such.key";

	my $ok = sub {
		my ($conf, $name) = @_;
		my ($code, $out) = $cf->check_config($conf);
		is($code, 0, "$name: nginx -t passes") or diag $out;
		unlike($out, qr/\[(?:emerg|alert|crit)\]/, "$name: no emerg");
	};
	my $fails = sub {
		my ($conf, $re, $name) = @_;
		my ($code, $out) = $cf->check_config($conf);
		isnt($code, 0, "$name: nginx -t fails");
		like($out, qr/\[emerg\].*$re/, "$name: message") or diag $out;
	};

	$ok->(api_conf(http => "usage_cursor_key $k16;"), 'a key of 16 bytes');
	$ok->(api_conf(http => "usage_cursor_key $k4096;"), 'a key of 4096 bytes');
	$fails->(api_conf(http => "usage_cursor_key $missing;"),
		quotemeta($missing), 'a missing key file');
	$fails->(api_conf(http => "usage_cursor_key $k15;"),
		'must hold at least 16 bytes', 'a key of 15 bytes');
	$fails->(api_conf(http => "usage_cursor_key $k0;"),
		'must hold at least 16 bytes', 'an empty key file');
	$fails->(api_conf(http => "usage_cursor_key $k16;\n    usage_cursor_key $k16;"),
		'is duplicate', 'usage_cursor_key twice');
	$fails->(api_conf(server => "usage_cursor_key $k16;"),
		'usage_cursor_key', 'usage_cursor_key in a server');
	$fails->(api_conf(location => "usage_cursor_key $k16;"),
		'usage_cursor_key', 'usage_cursor_key in a location');
	$fails->(api_conf(http => 'usage_cursor_key;'),
		'usage_cursor_key', 'usage_cursor_key without a file');
}

###############################################################################
# scoped keys

my $sk = Test::Usage->new();
my $SCOPED = 'k-scoped-4f1a9c7e2b6d0835';
my $ADMIN = 'k-admin-8e3b5d1f9a2c7046e';
$sk->write_file('keys', "$SCOPED scoped ent-s client\n$ADMIN ops * admin\n");
$sk->write_config(api_conf(server => 'usage_api_keys keys;'))->run();
{
	my @S = ('X-Api-Key' => $SCOPED);
	my @A = ('X-Api-Key' => $ADMIN);
	for my $i (1 .. 14) {
		my $r = $sk->post_event($i % 2 ? 'ent-s' : 'ent-o', "t" . ($i % 3),
			{ i => $i }, headers => \@A);
		die 'scoped seed: ' . $r->describe . "\n" unless $r->status == 201;
	}
	my $r = $sk->post_json('/v1/events/batch', { events => [map {
		{ entityId => $_ % 2 ? 'ent-o' : 'ent-s', eventType => 'b' } } 1 .. 6] },
		headers => \@A);
	is($r->status, 201, 'scoped: seeded a batch too');
	my @own = offset_all($sk, 'entityId=ent-s', headers => \@A);
	is(scalar @own, 10, 'ent-s has 10 events');

	my $w = walk($sk, '', 3, headers => \@S);
	is_deeply($w->{problems}, [], 'the scoped key\'s walk: every page right');
	is_deeply(ids($w->{events}), ids(\@own),
		'the scoped key\'s walk lists only its entity, in order');
	$w = walk($sk, 'entityId=ent-s', 4, headers => \@S);
	is_deeply(ids($w->{events}), ids(\@own),
		'the same with entityId=its entity');

	my $p = events_get($sk, 'limit=3&cursor=', headers => \@S);
	my $tok = $p->data->{pagination}{nextCursor};
	like($tok, $TOKEN_RE, 'a token of the scoped key');
	cursor_error($sk, "limit=3&cursor=$tok", $M_FILTERS,
		'its token, an unscoped key without entityId', headers => \@A);
	cursor_error($sk, "limit=3&entityId=ent-o&cursor=$tok", $M_FILTERS,
		'its token, an unscoped key with another entityId', headers => \@A);
	cursor_error($sk, "limit=3&eventType=t1&cursor=$tok", $M_FILTERS,
		'its token with an eventType added', headers => \@S);

	$r = events_get($sk, "limit=3&entityId=ent-s&cursor=$tok", headers => \@S);
	is($r->status, 200, 'its token with entityId=its entity: 200')
		or diag $r->describe;
	is_deeply(ids($r->data->{events}), ids([@own[3 .. 5]]),
		'the next page of its entity');
	$r = events_get($sk, "limit=3&entityId=ent-s&cursor=$tok", headers => \@A);
	is($r->status, 200,
		'its token, an unscoped key with entityId=that entity: 200 (same filter)')
		or diag $r->describe;
	is_deeply(ids($r->data->{events}), ids([@own[3 .. 5]]),
		'the same next page');

	my $ta = events_get($sk, 'limit=3&cursor=', headers => \@A)
		->data->{pagination}{nextCursor};
	cursor_error($sk, "limit=3&cursor=$ta", $M_FILTERS,
		'an unscoped token used by the scoped key', headers => \@S);

	$r = events_get($sk, 'limit=3&entityId=ent-o&cursor=',
		headers => [@S, 'X-Trace-Id' => 'sc']);
	is($r->status, 403, 'the scoped key, cursor= for another entity: 403');
	is($r->err->{code}, 'FORBIDDEN', 'FORBIDDEN');
	is($r->err->{message}, 'This API key may only read entity "ent-s"',
		'its message');
	$r = events_get($sk, 'limit=3&cursor=');
	is($r->status, 401, 'no key: 401, cursor or not');
}
$sk->finish();

###############################################################################
# walks while events are inserted and evicted, on 2 workers

my $MAX = 3500;
my $c = Test::Usage->new();
$c->write_config(api_conf(zone => "usage_zone zone=usage:16m max_events=$MAX;"))
	->run();
my $cdir = $c->dir;

my @CE = qw(e1 e2 e3);
my @CT = qw(t1 t2 t3);

sub random_event {
	return { entityId => $CE[int rand 3], eventType => $CT[int rand 3],
		value => 1 + int rand 5, @_ };
}

{
	my $conn = $c->connect();
	my $n = 0;
	for my $b (1 .. 33) {
		my $r = $c->post_json('/v1/events/batch',
			{ events => [map { random_event(metadata => { s => $n + $_ }) } 1 .. 100] },
			conn => $conn);
		die 'seed batch: ' . $r->describe . "\n" unless $r->status == 201;
		$n += 100;
		for (1 .. 6) {
			$r = $c->post_json('/v1/events', random_event(), conn => $conn);
			die 'seed: ' . $r->describe . "\n" unless $r->status == 201;
			$n++;
		}
	}
	for (1 .. $MAX - $n) {
		my $r = $c->post_json('/v1/events', random_event(), conn => $conn);
		die 'seed: ' . $r->describe . "\n" unless $r->status == 201;
	}
	$conn->close();
}
my $cstats = $c->get('/v1/usage/stats')->data->{store};
is($cstats->{events}, $MAX, "seeded $MAX events (max_events)");
is($cstats->{evictions}, 0, 'none evicted yet');

sub evictions { $c->get('/v1/usage/stats')->data->{store}{evictions} // -1 }

# static first: a walk of the deep list is the offset listing
{
	my @all = offset_all($c, '');
	my $w = walk($c, '', 73);
	is_deeply($w->{problems}, [], "$MAX events by 73: every page right");
	is_deeply(ids($w->{events}), ids(\@all),
		"$MAX events by 73: the walk is the offset listing");
}

# writers: each POSTs singles and batches (client ids, all known) at a
# paced rate until told to stop, at most $budget events; each request is
# logged "id sent received createdAt status"
my $round = 0;

sub start_writers {
	my (%o) = @_;
	my $tag = $o{tag};
	my @pids;
	for my $w (1 .. $o{writers}) {
		my $pid = fork();
		die "fork: $!\n" unless defined $pid;
		if ($pid == 0) {
			eval {
				srand($SEED * 31 + $tag * 7 + $w);
				open my $log, '>', "$cdir/writer-$tag-$w.log" or die;
				my $conn;
				my ($n, $k) = (0, 0);
				my $start = time();
				my $deadline = $start + 40;
				while (!-e "$cdir/stop-$tag" && $n < $o{budget}
					&& time() < $deadline)
				{
					my $due = $start + $n / $o{rate};
					sleep($due - time()) if $due > time();
					$conn ||= $c->connect();
					my $size = rand() < 0.4 ? 1 : 2 + int rand 30;
					my @ev = map { random_event(
						id => sprintf('w%d-%d-%d-%05d', $tag, $w, $$, $k++),
						metadata => { w => $w }) } 1 .. $size;
					my $sent = time();
					my $r = $conn
						? ($size == 1
							? $c->post_json('/v1/events', $ev[0], conn => $conn)
							: $c->post_json('/v1/events/batch',
								{ events => \@ev }, conn => $conn))
						: undef;
					my $recv = time();
					my $status = $r ? $r->status : 0;
					my %created;
					if ($status == 201) {
						if ($size == 1) {
							$created{ $r->data->{id} } = $r->data->{createdAt};
						} else {
							$created{ $_->{id} } = $_->{createdAt}
								for @{ $r->data->{events} || [] };
						}
					}
					print $log join(' ', $_->{id}, $sent, $recv,
						$created{ $_->{id} } // '-', $status), "\n" for @ev;
					if (!$status || ($r->header('Connection') // '') =~ /close/i) {
						$conn->close() if $conn;
						undef $conn;
					}
					$n += $size;
				}
				close $log;
			};
			POSIX::_exit($@ ? 1 : 0);
		}
		push @pids, $pid;
	}
	return @pids;
}

sub stop_writers {
	my ($tag, @pids) = @_;
	open my $fh, '>', "$cdir/stop-$tag" or die;
	close $fh;
	my %left = map { $_ => 1 } @pids;
	my $bad = 0;
	my $end = time() + 15;
	while (%left && time() < $end) {
		for my $pid (keys %left) {
			if (waitpid($pid, WNOHANG) == $pid) {
				$bad++ if $?;
				delete $left{$pid};
			}
		}
		sleep 0.02 if %left;
	}
	for my $pid (keys %left) {
		kill 'KILL', $pid;
		waitpid($pid, 0);
		$bad++;
	}
	return $bad;
}

sub writer_log {
	my ($tag) = @_;
	my %w;
	for my $f (glob "$cdir/writer-$tag-*.log") {
		open my $fh, '<', $f or next;
		while (<$fh>) {
			chomp;
			my ($id, $sent, $recv, $created, $status) = split / /;
			$w{$id} = { sent => $sent, recv => $recv,
				created => $created eq '-' ? undef : $created,
				status => $status };
		}
	}
	return \%w;
}

# a walk with a random limit of 50..100 a page, a pause between pages:
# [ { sent, recv, events, next } ... ], problems
sub live_walk {
	my ($filter, $pause) = @_;
	my (@pages, @problems);
	my $cursor = '';
	my $end = time() + 30;
	while (1) {
		my $limit = 50 + int rand 51;
		my $q = q_join("limit=$limit", $filter, "cursor=$cursor");
		my $sent = time();
		my $r = events_get($c, $q);
		my $recv = time();
		my @p = page_problems($r, $limit);
		push @problems, 'page ' . (@pages + 1) . " ($q): " . join('; ', @p)
			if @p;
		last unless $r->status == 200;
		my $pg = $r->data->{pagination} || {};
		push @pages, { sent => $sent, recv => $recv,
			events => $r->data->{events} || [], next => $pg->{nextCursor} };
		last unless defined $pg->{nextCursor};
		$cursor = $pg->{nextCursor};
		if (time() > $end) {
			push @problems, 'not at the end after 30 s';
			last;
		}
		sleep $pause;
	}
	return (\@pages, \@problems);
}

sub live_round {
	my ($name, $filter, $match) = @_;
	my $tag = ++$round;

	my @before = offset_all($c, $filter);
	my %bidx;
	@bidx{ @{ ids(\@before) } } = 0 .. $#before;

	# about 2 s of walking, 3 writers at 200 events/s each, at most 700
	my $pages = @before / 75 + 1;
	my $pause = 2.0 / $pages;
	$pause = 0.02 if $pause < 0.02;
	$pause = 0.3 if $pause > 0.3;

	my @pids = start_writers(tag => $tag, writers => 3, rate => 200,
		budget => 700);
	sleep 0.2;
	my $ev0 = evictions();
	my ($walk, $problems) = live_walk($filter, $pause);
	my $ev1 = evictions();
	my $bad = stop_writers($tag, @pids);
	my @after = offset_all($c, $filter);
	my $W = writer_log($tag);

	is($bad, 0, "$name: the writers ran and stopped");
	my @failed = grep { $W->{$_}{status} !~ /^20[01]\z/ } keys %$W;
	is(scalar @failed, 0, "$name: every writer POST was stored ("
		. scalar(keys %$W) . ' events)')
		or diag 'e.g. ' . join(', ', map { "$_: $W->{$_}{status}" }
			@failed[0 .. ($#failed < 4 ? $#failed : 4)]);
	is_deeply($problems, [], "$name: every page right");

	my @walked = map { @{ $_->{events} } } @$walk;
	my %after = map { $_->{id} => 1 } @after;
	ok(@$walk > 3, "$name: " . scalar(@$walk) . ' pages, '
		. scalar(@walked) . ' events');
	ok($ev1 > $ev0, "$name: events were evicted during the walk ("
		. ($ev1 - $ev0) . ')');
	my @evicted = grep { !$after{ $_->{id} } } @before;
	my @kept = grep { $after{ $_->{id} } } @before;
	ok(@evicted, "$name: " . scalar(@evicted) . ' events of before evicted');
	ok(@kept, "$name: " . scalar(@kept) . ' events of before still stored');
	ok(@$walk && !defined $walk->[-1]{next},
		"$name: the walk reached its last page (nextCursor null)");

	# no duplicate
	my (%seen, @dups);
	for (@walked) {
		push @dups, $_->{id} if $seen{ $_->{id} }++;
	}
	is_deeply(\@dups, [], "$name: no event twice");

	# the filter
	my @wrong = grep { !$match->($_) } @walked;
	is(scalar @wrong, 0, "$name: only matching events");

	# list order: createdAt never increases
	my @order;
	for my $i (1 .. $#walked) {
		push @order, "$walked[$i - 1]{id} ($walked[$i - 1]{createdAt}) before "
			. "$walked[$i]{id} ($walked[$i]{createdAt})"
			if $walked[$i]{createdAt} > $walked[$i - 1]{createdAt};
	}
	is_deeply([@order[0 .. ($#order < 4 ? $#order : 4)]], [],
		"$name: in list order (createdAt non-increasing)");

	# the events of before in the walk keep their order of before
	my @bi = grep { defined } map { $bidx{ $_->{id} } } @walked;
	my @inv = grep { $bi[$_] <= $bi[$_ - 1] } 1 .. $#bi;
	is(scalar @inv, 0, "$name: the events of before in their order of before")
		or diag "e.g. at $inv[0]: index $bi[$inv[0] - 1] then $bi[$inv[0]]";

	# stored before the first page and after the last: walked
	my @missing = grep { !$seen{ $_->{id} } } @kept;
	is(scalar @missing, 0, "$name: every event of before that stayed stored "
		. 'was walked') or diag 'e.g. ' . join(', ', map { $_->{id} }
			@missing[0 .. ($#missing < 4 ? $#missing : 4)]);
	my $t1 = $walk->[0]{sent};
	my @late = grep { !$seen{ $_->{id} } && !exists $bidx{ $_->{id} }
		&& $W->{ $_->{id} } && $W->{ $_->{id} }{recv} < $t1 } @after;
	is(scalar @late, 0, "$name: every event stored before the first page and "
		. 'after the last was walked')
		or diag 'e.g. ' . join(', ', map { $_->{id} }
			@late[0 .. ($#late < 4 ? $#late : 4)]);

	# nothing newer than the first page; but an event may join the
	# millisecond of the cursor after it (ties in insertion order)
	my $page1 = $walk->[0]{recv};
	my (@newer, @unknown, $tied, $joined);
	for my $k (0 .. $#$walk) {
		my $prev = $k ? ($walk->[$k - 1]{events}[-1] // {})->{createdAt}
			: undef;
		for my $e (@{ $walk->[$k]{events} }) {
			next if exists $bidx{ $e->{id} };
			my $w = $W->{ $e->{id} };
			if (!$w) {
				push @unknown, $e->{id};
			} elsif ($w->{sent} < $page1) {
				$joined++;
			} elsif (defined $prev && $e->{createdAt} == $prev) {
				$tied++;
			} else {
				push @newer, "$e->{id} (page " . ($k + 1) . ", sent "
					. sprintf('%.3f s after page 1', $w->{sent} - $page1) . ')';
			}
		}
	}
	is_deeply(\@unknown, [], "$name: every walked event was posted");
	is_deeply([@newer[0 .. ($#newer < 4 ? $#newer : 4)]], [],
		"$name: no event posted after the first page ("
		. ($joined // 0) . ' posted before it walked'
		. ($tied ? ", $tied of the cursor's millisecond" : '') . ')');
}

live_round('no filter', '', sub { 1 });
live_round('eventType=t2', 'eventType=t2', sub { $_[0]{eventType} eq 't2' });
live_round('entityId=e1', 'entityId=e1', sub { $_[0]{entityId} eq 'e1' });
live_round('entityId=e3&eventType=t1', 'entityId=e3&eventType=t1',
	sub { $_[0]{entityId} eq 'e3' && $_[0]{eventType} eq 't1' });

$c->done_testing();
