#!/usr/bin/perl

# GET /dashboard in a real browser: Debian's chromium, driven by
# puppeteer-core (t/browser/dashboard.js), against nginx with events
# seeded backdated over the last hour and the last 8 days, 12 entities
# (one named with markup), 4 event types and api-self calls:
#   - the page and its CSP (the inline style and script by their hashes,
#     connect-src 'self', img-src data: for its icon);
#   - the tiles are exactly the /v1/usage/stats answer the page received,
#     which is the store's: what is not the page's own api-self calls
#     equals the test's reads before and after (from a location that is
#     not tracked) and the seeded events;
#   - the minute chart: one point and one table row per minute with
#     events, their counts eventsByMinute's (the seeded minutes exactly),
#     the api-self series apart (its history), never above all events;
#   - the top entities: the first ten of /v1/entities by events and by
#     value, the seeded ranking; a slow answer of an earlier choice of
#     the ranking does not overwrite a later one; an entity named with
#     markup is shown as text;
#   - an entity chosen by keyboard (Tab, Enter): its summary by event type
#     and its history are /v1/usage/{id} and .../history for the interval
#     and range chosen (minute, hour, day; 1h, 24h, 7d, everything stored,
#     from and to), the seeded events' counts, each request with its
#     since and until; the periodic rounds do not set it "loading" again
#     nor take the keyboard focus away;
#   - the skip link; dark mode (prefers-color-scheme) with other colours,
#     all readable (contrast of text and lines on their backgrounds);
#   - usage_api_keys: the page is served without a key and asks for one,
#     a wrong key is refused and said so, an admin key shows the data and
#     is kept in sessionStorage (a reload keeps it, a new tab or browser
#     context does not), a client key shows its entity and says it may
#     not read the store-wide figures;
#   - no request outside the page's origin, no CSP violation, no page
#     error, no console error or warning (on the keyed server: only the
#     browser's own notes of the 401 and 403 answers the page handles);
#     and these detectors work: the page made to read another origin and
#     show an image from it is refused by its CSP, and the test sees it;
#   - screenshots (light, dark, the key form, admin and client keys) in
#     <build>/dashboard/.
# The test fails, never skips, when chromium or puppeteer-core cannot start
# (scripts/test.sh installs both: scripts/deps.sh, scripts/node-tools).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_base64);
use File::Path qw(make_path rmtree);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time);
use Test::Usage qw(iso_ms parse_iso json_decode json_encode slurp wait_until alive);

my $root = $Test::Usage::REPO;
my $build = $ENV{BUILD_DIR} || "$root/build";
my $shots = "$build/dashboard";
my $chromium = '/usr/bin/chromium';

###############################################################################
# the tools: chromium and puppeteer-core

my $node_dir = `$root/scripts/node-tools --dir`;
chomp $node_dir;
my $modules = "$node_dir/node_modules";
unless (-d "$modules/puppeteer-core") {
	my $out = `$root/scripts/node-tools 2>&1`;
	diag($out) if $?;
}
ok(-x $chromium, "chromium is installed ($chromium; scripts/deps.sh chromium)");
ok(-f "$modules/puppeteer-core/package.json",
	"puppeteer-core is installed ($modules; scripts/node-tools)");

###############################################################################
# nginx: the API tracked as the shipped configuration has it (the page's
# own reads are api-self calls), the same zone with API keys, and the same
# zone untracked for the test's own seeding and reads

my $t = Test::Usage->new();
my $port3 = Test::Usage::free_port();

my %KEY = (admin => 'k-dash-admin-6e1f0a9c3b7d2584',
	client => 'k-dash-client-b29d7e05c4a1f836',
	wrong => 'k-dash-admin-6e1f0a9c3b7d2585');
my $CLIENT_ENTITY = 'ent-05';
$t->write_file('keys', "$KEY{admin}  ops  *  admin\n"
	. "$KEY{client}  five  $CLIENT_ENTITY  client\n");

$t->write_config(<<"END");
http {
    usage_zone zone=usage:8m retention=8d;

    server {
        listen 127.0.0.1:%%PORT%%;
        usage_track usage;
        location / {
            usage_api usage;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            usage_api usage;
            usage_api_keys %%TESTDIR%%/keys;
        }
    }

    server {
        listen 127.0.0.1:$port3;
        location / {
            usage_api usage;
        }
    }
}
END
$t->run();

my $P2 = $t->{port2};

###############################################################################
# the seeded events

my $MIN = 60_000;
my $HOUR = 3_600_000;
my $DAY = 86_400_000;

my $now = int(time() * 1000);
my $M0 = $now - $now % $MIN;
my @RECENT = (2, 3, 7, 12, 18, 25, 33, 41, 47, 54);    # minutes ago
my @TYPES = qw(search tokens export upload);
my $ENTITY = 'ent-03';
my $MARKUP = 'ent-07 <b>bold</b> & <img src=x>';

my @seed;
for my $i (1 .. 12) {
	my $e = $i == 7 ? $MARKUP : sprintf('ent-%02d', $i);
	my $k = ($i * 7) % 11 + 2;
	for my $j (0 .. $k - 1) {
		my $m = $RECENT[($i + $j * 3) % @RECENT];
		push @seed, { entityId => $e, eventType => $TYPES[($i + $j) % 4],
			value => ($i * 13 + $j * 5) % 40 + 1,
			t => $M0 - $m * $MIN + 5000 + ($i * 997 + $j * 131) % 50000 };
	}
}
# the chosen entity's older events: in 24 hours, in 7 days, only in all
for my $ago ([3 * $HOUR + 10 * $MIN, 'search', 7], [5 * $HOUR + 20 * $MIN, 'tokens', 300],
	[20 * $HOUR + 5 * $MIN, 'export', 2], [2 * $DAY + 3 * $HOUR, 'search', 11],
	[4 * $DAY + $HOUR, 'upload', 5], [7 * $DAY + 6 * $HOUR, 'tokens', 40])
{
	push @seed, { entityId => $ENTITY, eventType => $ago->[1], value => $ago->[2],
		t => $M0 - $ago->[0] + 17_000 };
}
# the API's own calls of earlier minutes
my @SELF = map { { entityId => 'api-self', eventType => 'api_call', value => 1,
	t => $M0 - $_->[0] * $MIN + $_->[1] * 1000 } } [7, 3], [7, 9], [7, 40], [33, 20], [33, 21];

my $r = $t->post_json('/v1/events/batch', { events => [map {
	{ entityId => $_->{entityId}, eventType => $_->{eventType},
		value => $_->{value}, timestamp => iso_ms($_->{t}) } } @seed, @SELF] },
	port => $port3);
is($r->status, 201, 'events seeded (' . (@seed + @SELF) . ')') or diag($r->describe);

my %self_by_minute;
$self_by_minute{$_->{t} - $_->{t} % $MIN}++ for @SELF;
my %seed_by_minute;
$seed_by_minute{$_->{t} - $_->{t} % $MIN}++ for @seed, @SELF;
delete $seed_by_minute{$_} for grep { $_ < $M0 - 60 * $MIN } keys %seed_by_minute;

# the ranking of the seeded entities (api-self aside)
my (%count, %value);
for (@seed) {
	$count{ $_->{entityId} }++;
	$value{ $_->{entityId} } += $_->{value};
}
my @BY_EVENTS = sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count;
my @BY_VALUE = sort { $value{$b} <=> $value{$a} || $a cmp $b } keys %count;

# the page's numbers: Intl.NumberFormat('en')
sub fmt {
	my ($n) = @_;
	1 while $n =~ s/^(-?\d+)(\d{3})/$1,$2/;
	return $n;
}
sub hhmm { substr(iso_ms($_[0]), 11, 5) }
sub day_time { my $s = substr(iso_ms($_[0]), 0, 16); $s =~ tr/T/ /; $s }

###############################################################################
# the page and its CSP, by the test's own client

$r = $t->get('/dashboard', port => $port3);
my $html = $r->body;
my ($style) = $html =~ m{<style>(.*?)</style>}s;
my ($script) = $html =~ m{<script>(.*?)</script>}s;
my $CSP = "default-src 'none'; style-src 'sha256-" . sha256_base64($style // '')
	. "='; script-src 'sha256-" . sha256_base64($script // '')
	. "='; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
	. "frame-ancestors 'none'";
is($r->header('Content-Security-Policy'), $CSP,
	'the CSP allows its inline style and script by hash, its own origin, data: icons');
is($t->get('/dashboard', port => $P2)->status, 200, 'served without a key where keys are on');

###############################################################################
# the browser

my $custom_since = substr(iso_ms($M0 - 40 * $MIN), 0, 16);
my $custom_until = substr(iso_ms($M0 - 10 * $MIN), 0, 16);
make_path($shots);
unlink glob("$shots/*.png");

my $dir = $t->dir;
my %cfg = (modules => $modules, chromium => $chromium,
	profile => "$dir/chromium-profile",
	base => "http://127.0.0.1:" . $t->port, keyed => "http://127.0.0.1:$P2",
	fresh => "http://127.0.0.1:$port3", keys => \%KEY,
	clientEntity => $CLIENT_ENTITY, entity => $ENTITY,
	custom => { since => $custom_since, until => $custom_until },
	shots => $shots, out => "$dir/browser.json", pidFile => "$dir/chromium.pid",
	deadline => 60_000);
$t->write_file('browser.conf.json', json_encode(\%cfg));

my $t0 = time();
my $pid = fork() // die "fork: $!\n";
if ($pid == 0) {
	POSIX::setpgid(0, 0);
	open STDIN, '<', '/dev/null';
	open STDOUT, '>', "$dir/browser.log";
	open STDERR, '>&', \*STDOUT;
	exec('node', "$FindBin::Bin/browser/dashboard.js", "$dir/browser.conf.json")
		or POSIX::_exit(127);
}
my $status;
my $ended = wait_until {
	my $w = waitpid($pid, WNOHANG);
	$status = $? if $w == $pid;
	$w == $pid;
} 90;
unless ($ended) {
	kill 'TERM', -$pid;
	wait_until { waitpid($pid, WNOHANG) == $pid } 5 or kill 'KILL', -$pid;
	waitpid($pid, 0);
	$status = -1;
}
my $took = time() - $t0;
# puppeteer starts chromium in a process group of its own
my ($browser_pid) = slurp("$dir/chromium.pid") =~ /(\d+)/;
my $browser_gone = !$browser_pid || wait_until { !alive($browser_pid) } 5;
kill 'KILL', -$browser_pid, $browser_pid unless $browser_gone;
rmtree("$dir/chromium-profile");

my $B = json_decode(slurp("$dir/browser.json")) // {};
my $S = $B->{steps} // {};
is($status, 0, sprintf('the browser run ended by itself (%.1f s)', $took))
	or diag(slurp("$dir/browser.log"));
ok($B->{done}, "chromium ran every step (" . ($B->{version} // 'no browser') . ')')
	or diag($B->{error} // 'no output', "\n", slurp("$dir/browser.log"));
is_deeply($B->{timeouts} // ['none'], [], 'no wait of the browser timed out')
	or diag(join "\n", @{ $B->{log} // [] });
ok($browser_gone, 'chromium ended with the run');
unless ($B->{version}) {
	# nothing to look at: chromium or puppeteer-core did not start
	$t->done_testing();
	exit 1;
}

###############################################################################
# the store: tiles, minute chart

is($S->{page}{status}, 200, 'the browser got the page');
is($S->{page}{csp}, $CSP, 'with its CSP');
ok($S->{refreshed}, 'the page refreshed itself');
is($S->{paused}{pressed}, 'true', '"Pause updates" is pressed');
like($S->{paused}{status} // '', qr/paused/, 'and the status says paused');

# the tiles as the page shows them for a /v1/usage/stats answer
sub tiles_of {
	my ($st) = @_;
	my $s = $st->{store};
	# toFixed(1): to the nearest tenth, a half up (exact: rawBytes is a
	# power of two here)
	my $tenths = $s->{rawBytes}
		? int(($s->{rawBytesUsed} * 2000 + $s->{rawBytes}) / (2 * $s->{rawBytes})) : 0;
	my $fill = int($tenths / 10) . '.' . $tenths % 10;
	my $types = keys %{ $st->{eventTypes} };
	my $n = sub { { value => "$_[0]", text => fmt($_[0]), sub => $_[1] } };
	return {
		totalEvents => $n->($st->{totalEvents}),
		eventsLastHour => $n->($st->{eventsLastHour}),
		uniqueEntities => $n->($st->{uniqueEntities}),
		eventTypes => $n->($types),
		uptime => { value => $st->{uptime}{human}, text => $st->{uptime}{human},
			sub => 'since ' . day_time(parse_iso($st->{startTime})) },
		fill => { value => $fill, text => "$fill %",
			sub => fmt($s->{events}) . ' events stored'
				. ($s->{maxEvents} ? ' of ' . fmt($s->{maxEvents}) : '') },
		evictions => $n->($s->{evictions}, $s->{bucketEvictions}
			? fmt($s->{bucketEvictions}) . ' totals lost' : 'no total lost'),
	};
}

sub not_self {
	my ($st) = @_;
	return undef unless ref $st eq 'HASH' && $st->{eventTypes};
	return { events => $st->{totalEvents} - ($st->{eventTypes}{api_call} // 0),
		entities => $st->{uniqueEntities},
		types => [sort keys %{ $st->{eventTypes} }],
		evictions => $st->{store}{evictions},
		bucketEvictions => $st->{store}{bucketEvictions} };
}

my $store = $S->{store} // {};
my $st = $store->{stats}{body}{data} // {};
is($store->{dom}{tilesState}, 'ready', 'the tiles are ready');
is_deeply($store->{dom}{tiles}, tiles_of($st), 'the tiles are the stats answer the page received');
# what is not api-self: the seeded events, their 12 entities and api-self,
# their 4 types and api_call
my $truth = { events => scalar @seed, entities => 13,
	types => [sort @TYPES, 'api_call'], evictions => 0, bucketEvictions => 0 };
is_deeply(not_self($st), $truth, 'which are the store\'s: the seeded events, 13 entities, 5 types');
my $before = $S->{freshBefore}{data};
my $after = $S->{freshAfter}{data};
is_deeply([not_self($before), not_self($after)], [not_self($st), not_self($st)],
	'the same as the test\'s own reads before and after, but for api-self calls');
ok(defined $st->{totalEvents} && $before->{totalEvents} <= $st->{totalEvents}
	&& $st->{totalEvents} <= $after->{totalEvents},
	"between them: $before->{totalEvents} <= " . ($st->{totalEvents} // '?')
	. " <= $after->{totalEvents}");

# the minute chart
my @by_minute = map { [$_->{timestamp}, $_->{count}] } @{ $st->{eventsByMinute} // [] };
my $server_now = (parse_iso($st->{startTime} // '') // 0) + ($st->{uptime}{ms} // 0);
my $from = $server_now - $server_now % $MIN - $HOUR;
my @self = map { [$_->{timestamp}, $_->{count}] }
	grep { parse_iso($_->{timestamp}) >= $from }
	@{ $store->{self}{body}{data}{dataPoints} // [] };
is_deeply($store->{dom}{all}, \@by_minute, 'one point per minute with events, eventsByMinute\'s');
is_deeply([scalar @{ $store->{dom}{all} // [] }, scalar @{ $store->{dom}{minutes} // [] }],
	[scalar(@by_minute), scalar(@by_minute)],
	scalar(@by_minute) . ' minutes with events: as many points, as many table rows');
is_deeply($store->{dom}{self}, \@self, 'the api-self series: its minute history');
my %rows;
$rows{ $_->[0] }[0] = $_->[1] for @by_minute;
$rows{ $_->[0] }[1] = $_->[1] for @self;
is_deeply([map { [$_->{t}, $_->{cells}] } @{ $store->{dom}{minutes} }],
	[map { [$_, [hhmm(parse_iso($_)), fmt($rows{$_}[0] // 0), fmt($rows{$_}[1] // 0)]] }
		sort keys %rows], 'one table row per minute, all and api-self as numbers');
is_deeply([grep { ($rows{$_}[1] // 0) > ($rows{$_}[0] // 0) } sort keys %rows], [],
	'no minute has more api-self calls than events');
my %seen = map { parse_iso($_->[0]) => $_->[1] } @by_minute;
is_deeply({ map { $_ => $seen{$_} } grep { $_ < $M0 } keys %seen }, \%seed_by_minute,
	'the seeded minutes hold exactly the seeded events');
is_deeply({ map { parse_iso($_->[0]) => $_->[1] } grep { parse_iso($_->[0]) < $M0 } @self },
	\%self_by_minute, 'the api-self series of those minutes: the seeded calls');
my $sum = 0;
$sum += $_->[1] for @by_minute;
is($sum, $st->{eventsLastHour}, 'the points add up to eventsLastHour');
is_deeply([map { $_->[0] } @{ $store->{dom}{lines} }], ['line all', 'line self'],
	'two lines, all and api-self');
ok(!grep({ $_->[1] < 61 } @{ $store->{dom}{lines} }), 'each over every minute of the hour');

###############################################################################
# the top entities

sub entity_rows {
	my ($data) = @_;
	return [map { [$_->{entityId}, [$_->{entityId}, fmt($_->{totalEvents}),
		fmt($_->{totalValue}),
		$_->{lastEventAt} ? day_time(parse_iso($_->{lastEventAt})) : '']] }
		@{ $data->{entities} // [] }];
}
sub dom_entities { [map { [$_->{entity}, $_->{cells}] } @{ $_[0]{dom}{entities} // [] }] }
sub ranked_seeds {
	my ($dom, $order) = @_;
	my @names = grep { $_ ne 'api-self' } map { $_->{entity} } @{ $dom->{entities} // [] };
	my $n = @names;
	return [\@names, [@$order[0 .. ($n ? $n - 1 : 0)]]];
}

for my $case (['store', 'events', \@BY_EVENTS], ['byValue', 'value', \@BY_VALUE],
	['byEvents', 'events', \@BY_EVENTS])
{
	my ($step, $sort, $order) = @$case;
	my $s = $S->{$step} // {};
	is($s->{dom}{sort}, $sort, "ranked by $sort");
	like($s->{entities}{url} // '', qr/[?&]sort=$sort(&|$)/, "the page asked for sort=$sort");
	is(scalar @{ $s->{dom}{entities} // [] }, 10, "by $sort: ten rows");
	is_deeply(dom_entities($s), entity_rows($s->{entities}{body}{data}),
		"by $sort: the rows are the /v1/entities answer");
	my ($names, $want) = @{ ranked_seeds($s->{dom}, $order) };
	is_deeply($names, $want, "by $sort: the seeded ranking (api-self aside)");
}
my $fresh_rank = [grep { $_ ne 'api-self' } map { $_->{entityId} }
	@{ $S->{freshEvents}{data}{entities} // [] }];
is_deeply($fresh_rank, \@BY_EVENTS, 'the test\'s own read ranks them so too');
is($S->{store}{dom}{markup}, 0, 'an entity named with markup is text, not markup');
ok(grep({ $_->{entity} eq $MARKUP && $_->{cells}[0] eq $MARKUP }
	@{ $S->{store}{dom}{entities} // [] }), 'and shown with its name as it is');

# sort=value asked, its answer held back; then sort=events, answered
is($S->{raceHeld}, 1, 'race: the answer of sort=value held back');
my ($names, $want) = @{ ranked_seeds($S->{raceBefore} // {}, \@BY_EVENTS) };
is_deeply([$S->{raceBefore}{sort}, $names], ['events', $want],
	'race: the later choice, by events, is shown');
($names, $want) = @{ ranked_seeds($S->{race}{dom} // {}, \@BY_EVENTS) };
is_deeply([$S->{race}{dom}{sort}, $names], ['events', $want],
	'race: and stays when the earlier one\'s answer comes');

###############################################################################
# the entity

my $tab = $S->{tabbed} // {};
ok(defined $tab->{at} && $tab->{at} >= 0, "$ENTITY is in the ranking");
is_deeply($tab->{focus}, [@{ $tab->{order} // [] }[0 .. ($tab->{at} // 0)]],
	'Tab goes from the ranking\'s select through the entity buttons');

sub unpct {
	my ($s) = @_;
	$s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
	utf8::decode($s);
	return $s;
}

# a request's path and query parameters
sub q_of {
	my ($url) = @_;
	my ($path, $q) = ($url // '') =~ m{^https?://[^/]+([^?]*)\??(.*)$} or return {};
	my %q = map { my ($k, $v) = split /=/, $_, 2; $k => unpct($v // '') }
		grep { length } split /&/, $q;
	return { path => $path, %q };
}

# the seeded events of $ENTITY in [since, until], as a summary and history
sub expect {
	my ($since, $until, $interval, $entity) = @_;
	my @ev = grep { $_->{entityId} eq $entity
		&& (!defined $since || $_->{t} >= $since)
		&& (!defined $until || $_->{t} <= $until) } @seed;
	my (%n, %v, $tn, $tv, %pt);
	for (@ev) {
		$n{ $_->{eventType} }++;
		$v{ $_->{eventType} } += $_->{value};
		$tn++;
		$tv += $_->{value};
		# minute buckets are kept for the last hour, hour buckets before
		my $size = { minute => $MIN, hour => $HOUR, day => $DAY }->{$interval};
		$size = $HOUR if $interval eq 'minute' && $_->{t} < $now - $HOUR;
		my $b = $_->{t} - $_->{t} % $size;
		$pt{$b}[0]++;
		$pt{$b}[1] += $_->{value};
	}
	return {
		summary => [map { [$_, fmt($n{$_}), fmt($v{$_})] } sort keys %n],
		total => $tn // 0, value => $tv // 0,
		history => [map { [iso_ms($_), fmt($pt{$_}[0]), fmt($pt{$_}[1])] }
			sort { $a <=> $b } keys %pt],
	};
}

sub summary_rows {
	my ($d) = @_;
	return [map { [$_, fmt($d->{byEventType}{$_}), fmt($d->{valueByEventType}{$_})] }
		sort keys %{ $d->{byEventType} // {} }];
}
sub history_rows {
	[map { [$_->{timestamp}, fmt($_->{count}), fmt($_->{value})] } @{ $_[0]{dataPoints} // [] }]
}

my %RANGE = ('1h' => $HOUR, '24h' => $DAY, '7d' => 7 * $DAY);

sub entity_step {
	my ($name, $interval, $range, %o) = @_;
	my $s = $S->{$name} // {};
	my $d = $s->{dom} // {};
	my $entity = $o{entity} // $ENTITY;
	my $port = $o{port} // $port3;
	my @key = $o{key} ? (headers => ['X-Api-Key' => $o{key}]) : ();
	my $what = "$name ($interval, $range)";

	is_deeply([$d->{state}, $d->{entity}, $d->{name}, $d->{shown}, $d->{current},
		$d->{controls}{interval}, $d->{controls}{range}, $d->{interval}],
		['ready', $entity, $entity, JSON::PP::true, [$entity],
			$interval, $range, $interval],
		"$what: the entity shown, its controls");

	my $sq = q_of($s->{summary}{url});
	my $hq = q_of($s->{history}{url});
	my $id = Test::Usage::pct($entity);
	is_deeply([$sq->{path}, $hq->{path}, $hq->{interval}],
		["/v1/usage/$id", "/v1/usage/$id/history", $interval], "$what: the requests");
	is_deeply([$hq->{since}, $hq->{until}], [$sq->{since}, $sq->{until}],
		"$what: summary and history for the same range");

	my ($since, $until) = map { defined $_ ? parse_iso($_) : undef }
		$hq->{since}, $hq->{until};
	if ($RANGE{$range}) {
		my $at = $s->{at} // 0;
		ok(defined $since && defined $until && abs($until - $at) < 10_000
			&& $until - $since == $RANGE{$range},
			"$what: since and until are the last $range: "
			. ($hq->{since} // 'none') . ', ' . ($hq->{until} // 'none'));
	} elsif ($range eq 'all') {
		ok(!defined $since && !defined $until, "$what: neither since nor until");
	} elsif ($o{custom}) {
		is_deeply([$hq->{since}, $hq->{until}],
			["$custom_since:00Z", "$custom_until:59.999Z"],
			"$what: since and until as chosen");
	} else {
		# the page fills "from" with a day ago, to the minute
		ok(defined $since && $hq->{since} =~ /:00Z$/ && !defined $until
			&& abs($since - (($s->{at} // 0) - $DAY)) < 2 * $MIN,
			"$what: from a day ago, to now: " . ($hq->{since} // 'none'));
	}

	my $sum = $s->{summary}{body}{data} // {};
	my $hist = $s->{history}{body}{data} // {};
	is_deeply([sort { $a->[0] cmp $b->[0] } map { [$_->{type}, @{ $_->{cells} }[1, 2]] }
		@{ $d->{summary} // [] }],
		[map { [$_->[0], @$_[1, 2]] } @{ summary_rows($sum) }],
		"$what: the summary rows are the answer the page received");
	is_deeply([$d->{total}, $d->{value}],
		[["$sum->{totalEvents}", fmt($sum->{totalEvents} // 0)],
			["$sum->{totalValue}", fmt($sum->{totalValue} // 0)]], "$what: its totals");
	is_deeply([map { [$_->{t}, @{ $_->{cells} }] } @{ $d->{history} // [] }],
		[map { [$_->[0], day_time(parse_iso($_->[0])), @$_[1, 2]] }
			@{ history_rows($hist) }],
		"$what: the history rows are the history the page received");
	is_deeply($d->{bars},
		[map { [$_->{timestamp}, $_->{count}] } @{ $hist->{dataPoints} // [] }],
		"$what: one bar per row");

	my $e = expect($since, $until, $interval, $entity);
	is_deeply([summary_rows($sum), $sum->{totalEvents}, $sum->{totalValue},
		history_rows($hist)], [$e->{summary}, $e->{total}, $e->{value}, $e->{history}],
		"$what: the seeded events of the range (history points: "
		. scalar(@{ $e->{history} }) . ')');

	# the same requests now, by the test
	my ($path_s) = ($s->{summary}{url} // '') =~ m{^https?://[^/]+(.*)$};
	my ($path_h) = ($s->{history}{url} // '') =~ m{^https?://[^/]+(.*)$};
	my $rs = $t->get($path_s // '/', port => $port, @key)->data;
	my $rh = $t->get($path_h // '/', port => $port, @key)->data;
	is_deeply([summary_rows($rs), history_rows($rh)],
		[summary_rows($sum), history_rows($hist)],
		"$what: the test's own requests answer the same");
}

entity_step('chosen', 'hour', '24h');
ok($S->{rounds}, 'two periodic rounds with the entity chosen');
is_deeply([grep { $_ ne 'ready' } @{ $S->{roundStates} // ['none'] }], [],
	'the entity stays "ready" through them, never "loading"');
is($S->{roundFocus}, $ENTITY, 'the focus stays on the entity\'s button across them');
entity_step('afterRounds', 'hour', '24h');
entity_step('day', 'day', '24h');       # the interval by keyboard
entity_step('minute', 'minute', '24h');
entity_step('range1h', 'minute', '1h');
entity_step('hour1h', 'hour', '1h');
entity_step('range7d', 'hour', '7d');
entity_step('day7d', 'day', '7d');
entity_step('rangeAll', 'day', 'all');
entity_step('minuteAll', 'minute', 'all');
entity_step('hourAll', 'hour', 'all');
entity_step('custom', 'hour', 'custom');
entity_step('fromTo', 'hour', 'custom', custom => 1);
entity_step('fromToMinute', 'minute', 'custom', custom => 1);

###############################################################################
# dark mode, the skip link

is_deeply($S->{skip}, { first => 'skip', after => 'entities-sort' },
	'the first Tab is the skip link, which leads to the ranking');
entity_step('darkChosen', 'hour', '24h');
is_deeply($S->{darkStore}{dom}{tiles}, tiles_of($S->{darkStore}{stats}{body}{data} // {}),
	'dark: the tiles');

sub rgb {
	my ($c) = @_;
	return undef unless defined $c && $c =~ /^rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)$/;
	return [$1, $2, $3, $4 // 1];
}
sub luminance {
	my ($c) = @_;
	my @l = map { my $v = $_ / 255;
		$v <= 0.03928 ? $v / 12.92 : (($v + 0.055) / 1.055) ** 2.4 } @$c[0 .. 2];
	return 0.2126 * $l[0] + 0.7152 * $l[1] + 0.0722 * $l[2];
}
sub contrast {
	my ($x, $y) = map { luminance($_) } @_;
	($x, $y) = ($y, $x) if $y > $x;
	return ($x + 0.05) / ($y + 0.05);
}

my $light = $S->{colours} // {};
my $darkc = $S->{darkColours} // {};
is_deeply([$light->{scheme}, $darkc->{scheme}], ['light', 'dark'],
	'prefers-color-scheme light, dark');
for my $k (qw(bg fg tileBg link lineAll lineSelf bar)) {
	isnt($darkc->{$k} // 'none', $light->{$k} // 'none', "dark: another $k colour");
}
ok(rgb($darkc->{bg}) && rgb($light->{bg}) && luminance(rgb($darkc->{bg})) < 0.05
	&& luminance(rgb($light->{bg})) > 0.8,
	'dark: a dark background (' . ($darkc->{bg} // '?') . ', light '
	. ($light->{bg} // '?') . ')');
for my $c ([$light, 'light'], [$darkc, 'dark']) {
	my ($col, $mode) = @$c;
	my @low;
	for my $pair ([qw(fg bg 7)], [qw(tileValue tileBg 4.5)], [qw(tileName tileBg 4.5)],
		[qw(status bg 4.5)], [qw(th thBg 4.5)], [qw(link bg 4.5)], [qw(axis chartBg 4.5)],
		[qw(lineAll chartBg 3)], [qw(lineSelf chartBg 3)], [qw(bar chartBg 3)])
	{
		my ($a, $b, $min) = @$pair;
		my ($ca, $cb) = (rgb($col->{$a}), rgb($col->{$b}));
		my $ratio = $ca && $cb ? contrast($ca, $cb) : 0;
		push @low, sprintf('%s on %s: %.2f < %s', $a, $b, $ratio, $min) if $ratio < $min;
	}
	is(join('; ', @low), '', "$mode: text and lines readable on their backgrounds");
}

###############################################################################
# API keys

is($S->{keyPage}{status}, 200, 'keys: the page is served without a key');
ok($S->{keyAsked}, 'keys: it asks for one');
my $k = $S->{keyFirst} // {};
is_deeply([@$k{qw(state form focus header stored)}],
	['key', JSON::PP::true, 'key-input', 'X-Api-Key', undef],
	'keys: the form, focused, names the header of the 401');
$k = $S->{keyWrong} // {};
is_deeply([@$k{qw(state form stored)}], ['key', JSON::PP::true, undef],
	'keys: a wrong key is asked again');
isnt($k->{error} // '', '',
	"keys: and the page says it was refused: '" . ($k->{error} // '') . "'");
ok(@{ $S->{keyWrongAnswers} // [] } && !grep({ $_ != 401 } @{ $S->{keyWrongAnswers} }),
	'keys: its answers were 401');
$k = $S->{keyAdmin} // {};
is_deeply([@$k{qw(state form stored)}], ['ready', JSON::PP::false, $KEY{admin}],
	'keys: the admin key shows the data, kept in sessionStorage');
is_deeply($S->{keyAdminStore}{dom}{tiles},
	tiles_of($S->{keyAdminStore}{stats}{body}{data} // {}), 'keys: the admin\'s tiles');
is_deeply(not_self($S->{keyAdminStore}{stats}{body}{data}), $truth,
	'keys: the store\'s figures');
ok(@{ $S->{keyAdminAnswers} // [] } && !grep({ $_ != 200 } @{ $S->{keyAdminAnswers} }),
	'keys: its answers were 200');
$k = $S->{keyReload} // {};
is_deeply([@$k{qw(state form stored)}], ['ready', JSON::PP::false, $KEY{admin}],
	'keys: a reload keeps the key');
ok(@{ $S->{keyReloadAnswers} // [] } && !grep({ $_ != 200 } @{ $S->{keyReloadAnswers} }),
	'keys: and asks for none (200s only)');
is_deeply([@{ $S->{keyNewTab} // {} }{qw(state stored)}], ['key', undef],
	'keys: a new tab has no key');
is_deeply([@{ $S->{keyNewContext} // {} }{qw(state stored)}], ['key', undef],
	'keys: nor a new browser context');
$k = $S->{keyClient} // {};
is_deeply([@$k{qw(state form stored)}], ['ready', JSON::PP::false, $KEY{client}],
	'keys: a client key is taken');
my $cs = $S->{keyClientStore}{dom} // {};
is($cs->{tilesState}, 'forbidden', 'keys: client: the tiles are not for it');
is($cs->{tilesNote}, 'This key may not read the store-wide figures: This API key may '
	. qq{only read entity "$CLIENT_ENTITY", not store-wide statistics},
	'keys: client: and the page says why, in the API\'s words');
like($cs->{minutesEmpty} // '', qr/this key may not read the store-wide figures/,
	'keys: client: so does the minute chart');
is_deeply([map { $_->{entity} } @{ $cs->{entities} // [] }], [$CLIENT_ENTITY],
	'keys: client: the ranking is its entity');
entity_step('keyClientEntity', 'hour', '24h', entity => $CLIENT_ENTITY, port => $P2,
	key => $KEY{client});
my %keys_sent;
$keys_sent{ $_->{key} // 'none' }++
	for grep { $_->{label} eq 'keys' && $_->{url} =~ m{/v1/} } @{ $B->{requests} // [] };
is_deeply([sort keys %keys_sent], [sort 'none', values %KEY],
	'keys: the page sent no key, then each key given, nothing else');

###############################################################################
# what the browser saw of all pages

my @probe = grep { $_->{label} eq 'probe' && $_->{from} eq 'event' } @{ $B->{csp} // [] };
is_deeply([sort map { $_->{directive} } @probe], [qw(connect-src img-src)],
	'the CSP refuses a read and an image of another origin, and this test sees it');
my @requests = grep { $_->{label} ne 'probe' } @{ $B->{requests} // [] };
my @out = grep { my $o = $_->{origin}; $_->{url} !~ m{^\Q$o\E/} && $_->{url} !~ /^data:/ }
	@requests;
is(join("\n", map { "$_->{label}: $_->{url}" } @out), '',
	'no request outside the page\'s origin');
ok(@requests > 50, scalar(@requests) . ' requests seen');
is_deeply([grep { $_->{label} ne 'probe' } @{ $B->{csp} // [] }], [], 'no CSP violation');
is_deeply($B->{pageErrors} // ['none'], [], 'no page error');
# the browser's own note of each 401 and 403 the page handles, with keys
my $NOTE = qr/^Failed to load resource: the server responded with a status of 40[13] /;
my @bad = grep {
	my $m = $_;
	$m->{type} =~ /^(error|warn)/ && $m->{label} ne 'probe' && !($m->{label} eq 'keys'
		&& $m->{text} =~ $NOTE && ($m->{url} // '') =~ m{^http://127\.0\.0\.1:$P2/v1/})
} @{ $B->{console} // [] };
is(join("\n", map { "$_->{label} $_->{type}: $_->{text} (" . ($_->{url} // '') . ')' } @bad),
	'',
	'no console error or warning (but the browser\'s notes of the 401s and 403s with keys)');

for my $name (qw(light dark keys-form keys-admin keys-client)) {
	my $png = slurp("$shots/$name.png");
	ok(length $png > 10_000 && substr($png, 0, 8) eq "\x89PNG\r\n\x1a\n",
		"screenshot $shots/$name.png");
}

$t->done_testing();
