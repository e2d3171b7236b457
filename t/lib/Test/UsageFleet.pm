package Test::UsageFleet;

# What the instances of a fleet must agree on, for the sync tests: the
# summary, the minute history and the event list (ids and createdAt, in
# order) of each entity given.  api-self counts the reads themselves and
# is left out by the callers; period.until is the time of the request.
#
#   differences([$t1, $t2, ...], @entities)   the lines that differ, as
#                                              "instance i differs in ..."
#   converged([$t1, $t2, ...], @entities)     no line differs
#   metric($t, $name)                          a series of zone "usage" in
#                                              /metrics, -1 when it is not
#   sync_state($t)                             /ready's checks.sync
#   sync_instance($name, $config)              an instance of the config,
#                                              started, and one test that
#                                              its sync gets ok

use strict;
use warnings;

use Exporter qw(import);
use Test::Usage ();

our @EXPORT_OK = qw(view differences converged metric sync_state
	sync_instance);

sub view {
	my ($t, @entities) = @_;
	my %v;
	for my $e (@entities) {
		my $s = $t->get("/v1/usage/$e")->json // {};
		delete $s->{data}{period}{until} if $s->{data};
		$v{"summary $e"} = Test::Usage::json_encode($s->{data});
		my $h = $t->get("/v1/usage/$e/history?interval=minute")->json // {};
		delete $h->{data}{period}{until} if $h->{data};
		$v{"history $e"} = Test::Usage::json_encode($h->{data});
		my $l = $t->get("/v1/events?entityId=$e&limit=1000")->json // {};
		$v{"list $e"} = join ',',
			map { "$_->{id}\@$_->{createdAt}" } @{ $l->{data}{events} // [] };
	}
	return \%v;
}

sub differences {
	my ($ts, @entities) = @_;
	my $first = view($ts->[0], @entities);
	my @d;
	for my $i (1 .. $#$ts) {
		my $v = view($ts->[$i], @entities);
		for my $k (sort keys %$first) {
			next if ($v->{$k} // '') eq $first->{$k};
			push @d, "instance $i differs in $k:\n  0: "
				. substr($first->{$k}, 0, 300) . "\n  $i: "
				. substr($v->{$k} // '', 0, 300);
		}
	}
	return @d;
}

sub converged { return !differences(@_) }

sub metric {
	my ($t, $name) = @_;
	my ($v) = $t->get('/metrics')->body =~ /^\Q$name\E\{zone="usage"\} (\S+)$/m;
	return $v // -1;
}

sub sync_state {
	my ($t) = @_;
	return (($t->get('/ready')->json // {})->{checks}{sync} // '');
}

sub sync_instance {
	my ($name, $config) = @_;
	my $t = Test::Usage->new();
	$t->write_config($config)->run();
	Test::More::ok(Test::Usage::wait_until(sub { sync_state($t) eq 'ok' }, 10),
		"$name: sync ok");
	return $t;
}

1;
