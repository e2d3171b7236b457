#!/usr/bin/perl

# The raw log's capacity is said in three places, conf/nginx.conf's
# comment on its usage_zone, README's "Sizing the zone" and
# docs/DEPLOYING.md's "Sizing a task": they say the same number, and it
# is what the store reports: that zone, given events of 100-byte metadata,
# uses rawBytesUsed per event such that rawBytes holds that many, within
# 5%.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(slurp);

my $root = "$FindBin::Bin/..";

sub number { my ($s) = @_; $s =~ tr/,//d; return $s }

my $conf = slurp("$root/conf/nginx.conf");
my ($said_conf, $zone) = $conf =~
	/log \(about ([\d,]+) events of\s*#\s*100-byte metadata\).*?\n\s*(usage_zone [^;]+;)/s;
ok($said_conf, "conf/nginx.conf: about $said_conf events") or BAIL_OUT('no figure');
my ($said_readme) = slurp("$root/README.md") =~
	/ring\s+hold about ([\d,]+) such\s+events/;
my ($said_deploying) = slurp("$root/docs/DEPLOYING.md") =~
	/so about ([\d,]+) raw events/;
is($said_readme, $said_conf, 'README says the same');
is($said_deploying, $said_conf, 'docs/DEPLOYING.md says the same');

# that zone, without its state file
$zone =~ s/\s+state=[^\s;]+//;
my $t = Test::Usage->new();
$t->write_config(<<"EOF")->run();
http {
    $zone
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { usage_api usage; }
    }
}
EOF

my $n = 2000;
# compact JSON, as the store keeps it
my $frame = '{"endpoint":"/v1/search","tokens":512,"model":"m-1","note":""}';
my $metadata = $frame;
substr($metadata, -2, 0) = 'x' x (100 - length $frame);
is(length $metadata, 100, 'metadata of 100 bytes');
for my $i (1 .. $n) {
	my $body = '{"entityId":"customer-' . ($i % 50) . '","eventType":"call",'
		. '"metadata":' . $metadata . '}';
	my $r = $t->post_json('/v1/events', $body);
	die 'POST ' . $r->status . "\n" unless $r->status == 201;
}

my $store = $t->get('/v1/usage/stats')->data->{store};
is($store->{events}, $n, "$n events stored, none evicted");
my $per_event = $store->{rawBytesUsed} / $n;
my $capacity = int($store->{rawBytes} / $per_event);
diag("rawBytes $store->{rawBytes}, $per_event bytes an event: "
	. "about $capacity events");
my $said = number($said_conf);
cmp_ok(abs($capacity - $said) / $said, '<', 0.05,
	"the store holds about $said such events ($capacity)");

$t->done_testing();
