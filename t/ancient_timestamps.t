#!/usr/bin/perl

# A zone with a retention of decades (5200w, about 100 years): a timestamp before 1970 is refused
# (400, "timestamp must not be before 1970"), since the state file keeps
# times from 1970 on and would otherwise refuse the whole file at the
# next start; one from 1971 is stored, and the zone's events, saved and
# loaded again, survive a restart.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);

my $t = Test::Usage->new();
$t->write_config(<<'EOF2')->run();
http {
    usage_zone zone=usage:1m retention=5200w state=%%TESTDIR%%/usage.state;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { usage_api usage; }
    }
}
EOF2

sub post {
	my ($entity, $time) = @_;
	return $t->post_json('/v1/events', { entityId => $entity,
		eventType => 'x', timestamp => $time });
}

my $r = post('old', '1969-12-31T23:59:59.999Z');
is($r->status, 400, 'a timestamp before 1970: 400');
is($r->err->{code}, 'VALIDATION_ERROR', 'VALIDATION_ERROR');
is($r->err->{message}, 'timestamp must not be before 1970', 'says why');
is(post('old', '1971-06-01T00:00:00Z')->status, 201, '1971: stored');
is(post('new', undef)->status, 201, 'now: stored');

$t->stop();
$t->run();

my $st = $t->get('/v1/usage/stats')->data;
is($st->{totalEvents}, 2, 'after a restart: both events, from the state file');
is($t->get('/v1/usage/old')->data->{totalEvents}, 1, 'the 1971 one too');
unlike($t->read_file('error.log'), qr/state file .* (?:ignored|refused)/i,
	'the state file was loaded');

$t->done_testing();
