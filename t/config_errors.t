#!/usr/bin/perl

# Configuration errors found by "nginx -t": a zone below 8 pages or too
# small for its raw log, a zone declared twice, usage_api / usage_track naming an unknown zone, bad
# parameters and contexts.  The valid counterparts pass.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf);

my $t = Test::Usage->new();

die "module not found: " . $t->module . "\n" unless -f $t->module;

sub conf_ok {
	my ($conf, $name) = @_;
	my ($code, $out) = $t->check_config($conf);
	is($code, 0, "$name: nginx -t passes") or diag $out;
	unlike($out, qr/\[(?:emerg|alert|crit)\]/, "$name: no emerg");
}

sub conf_fails {
	my ($conf, $re, $name) = @_;
	my ($code, $out) = $t->check_config($conf);
	isnt($code, 0, "$name: nginx -t fails");
	like($out, qr/\[emerg\].*$re/, "$name: message") or diag $out;
}

###############################################################################

conf_ok(api_conf(), 'default config');
conf_ok(api_conf(zone => 'usage_zone zone=usage:64k;'), 'zone of 64k (the minimum)');
conf_ok(api_conf(zone => 'usage_zone zone=usage:1m max_events=10 '
	. 'retention=1h;'), 'max_events and retention');
conf_ok(api_conf(zone => 'usage_zone zone=usage:1m retention=30s;'),
	'retention in seconds');
conf_ok(api_conf(track => 1, http => '
    usage_trace_header X-Request-Id;
    usage_service_name svc;
    usage_service_version 9.9.9;
    usage_environment test;
    usage_cors_origin https://a.example;
    usage_metadata_max_size 1k;
    usage_metadata_max_depth 4;
'), 'all http-level directives');
conf_ok(api_conf(location => 'usage_track off;', track => 1),
	'usage_track off');
conf_ok(api_conf(zone => "usage_zone zone=usage:1m;\n"
	. '    usage_zone zone=other:1m;', location => 'usage_track other;'),
	'two zones');

conf_fails(api_conf(zone => 'usage_zone zone=usage:32k;'), 'too small',
	'zone of 32k');
conf_fails(api_conf(zone => 'usage_zone zone=usage:1k;'), 'too small',
	'zone of 1k');
conf_fails(api_conf(zone => "usage_zone zone=usage:1m;\n"
	. '    usage_zone zone=usage:1m;'), 'duplicate', 'zone declared twice');
conf_fails(api_conf(zone => "usage_zone zone=usage:1m;\n"
	. '    usage_zone zone=usage:2m;'), 'duplicate|conflicts',
	'zone declared twice with another size');
conf_fails(api_conf(location => 'usage_api nosuch;') =~ s/usage_api usage;//r,
	'nosuch', 'usage_api of an unknown zone');
conf_fails(api_conf(location => 'usage_track nosuch;'), 'nosuch',
	'usage_track of an unknown zone');
conf_fails(api_conf(zone => ''), 'usage', 'no zone at all');
conf_fails(api_conf(zone => 'usage_zone zone=usage:1m foo=bar;'), 'foo',
	'unknown parameter');
conf_fails(api_conf(zone => 'usage_zone zone=usage:1m max_events=abc;'),
	'max_events', 'bad max_events');
conf_fails(api_conf(zone => 'usage_zone zone=usage:1m max_events=0;'),
	'max_events', 'max_events=0');
conf_fails(api_conf(zone => 'usage_zone zone=usage:1m retention=soon;'),
	'retention', 'bad retention');
conf_fails(api_conf(zone => 'usage_zone zone=usage;'), 'usage',
	'zone without a size');
conf_fails(api_conf(zone => 'usage_zone zone=usage:abc;'), 'usage|size',
	'zone with a bad size');
conf_fails(api_conf(zone => 'usage_zone usage:1m;'), 'usage',
	'zone= missing');
conf_fails(api_conf(http => 'usage_api usage;'), 'usage_api',
	'usage_api in http context');
conf_fails(api_conf(location => 'usage_zone zone=x:1m;'), 'usage_zone',
	'usage_zone in a location');
conf_fails(api_conf(location => 'usage_metadata_max_depth abc;'),
	'usage_metadata_max_depth', 'bad usage_metadata_max_depth');
conf_fails(api_conf(location => 'usage_metadata_max_size abc;'),
	'usage_metadata_max_size', 'bad usage_metadata_max_size');


# values that go into response headers are checked
conf_fails(api_conf(http => 'usage_trace_header "";'), 'must not be empty',
	'empty trace header');
conf_fails(api_conf(http => 'usage_trace_header "X Trace:";'),
	'not a valid header name', 'trace header with a space and a colon');
conf_fails(api_conf(http => 'usage_cors_origin "";'), 'must not be empty',
	'empty CORS origin');
conf_fails(api_conf(http => 'usage_cors_origin "https://a.example\r\nX-Evil: 1";'),
	'origin', 'CORS origin with CR LF');
conf_fails(api_conf(http => 'usage_metadata_max_size 1;'), 'at least 2',
	'metadata size below "{}"');
conf_ok(api_conf(http => 'usage_metadata_max_size 2;'), 'metadata size 2');

# a zone too small for the metadata limit: started, with a warning
{
	my ($code, $out) = $t->check_config(api_conf(
		zone => 'usage_zone zone=usage:64k;'));
	is($code, 0, 'zone of 64k with 8k metadata: starts');
	like($out, qr/\[warn\].*"usage" of 65536 bytes is too small for usage_m/,
		'zone of 64k: warned');
	($code, $out) = $t->check_config(api_conf(
		zone => 'usage_zone zone=usage:128k;'));
	unlike($out, qr/too small for/, 'zone of 128k: no warning');
}

# the smallest zone with the largest raw log: an [emerg] that names the
# zone, whichever allocation the raw log leaves no room for
conf_fails(api_conf(zone => 'usage_zone zone=usage:64k raw=90%;'),
	'usage zone "usage" is too small', 'zone of 64k, raw=90%');
conf_ok(api_conf(zone => 'usage_zone zone=usage:64k raw=80%;'),
	'zone of 64k, raw=80%');

# an unknown zone is reported with the place that names it
conf_fails(api_conf(location => 'usage_track nosuch;'),
	'"nosuch" is unknown in \S+\.conf:\d+', 'unknown zone: file:line');

done_testing();
