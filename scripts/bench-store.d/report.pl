#!/usr/bin/perl
# Part of scripts/bench-store: turns the files of one run (the output
# directory given as the argument) into markdown tables on stdout.
# Core Perl only.  Numbers a build does not report are printed as n/a.
use strict;
use warnings;
use JSON::PP;

my $dir = shift or die "usage: report.pl OUTPUT-DIR\n";
my $json = JSON::PP->new;

sub slurp { local $/; open my $f, '<', $_[0] or return undef; return scalar <$f> }
sub jfile { my $t = slurp($_[0]); return defined $t ? $json->decode($t) : undef }
sub get {
    my ($v, $path) = @_;
    for my $k (split /\./, $path) {
        return undef unless ref $v eq 'HASH' && exists $v->{$k};
        $v = $v->{$k};
    }
    return $v;
}
sub na { defined $_[0] ? $_[0] : 'n/a' }
sub num {                       # 1234567 -> 1,234,567
    my $n = shift;
    return 'n/a' unless defined $n;
    return $n unless $n =~ /^-?\d+$/;
    1 while $n =~ s/^(-?\d+)(\d{3})/$1,$2/;
    return $n;
}
sub ms {                        # microseconds -> "1.23 ms"
    my $us = shift;
    return 'n/a' unless defined $us;
    my $m = $us / 1000;
    return sprintf($m >= 100 ? '%.0f ms' : $m >= 10 ? '%.1f ms' : '%.2f ms', $m);
}
sub ratio {
    return 'n/a' unless defined $_[0] && defined $_[1] && $_[1];
    my $r = $_[0] / $_[1];
    return $r >= 0.1 ? sprintf('%.2f', $r) : sprintf('%.2g', $r);
}

my %env = map { /^(\w+)=(.*)$/ ? ($1, $2) : () } split /\n/, slurp("$dir/run.env") // '';
my ($small, $large) = @env{qw(small large)};
my %label = ($small => short($small), $large => short($large));
sub short { my $n = shift; $n >= 1e6 && $n % 1e6 == 0 ? ($n / 1e6) . 'M'
          : $n >= 1e3 && $n % 1e3 == 0 ? ($n / 1e3) . 'k' : num($n) }

# results.tsv: size entity kind path "requests=.. rps=.. p50=.. ..."
my (%r, @order);
for (split /\n/, slurp("$dir/results.tsv") // '') {
    my ($size, $e, $kind, $path, $kv) = split /\t/;
    my %m = $kv =~ /(\w+)=([\d.]+)/g;
    $m{path} = $path;
    # what the answer counted: a check that the query saw the whole entity
    my $resp = jfile("$dir/resp-$size-$e-$kind.json");
    if ($kind =~ /^summary/) {
        $m{seen} = get($resp, 'data.totalEvents');
    } elsif ($kind eq 'history') {
        my $s = 0;
        $s += $_->{count} for @{ get($resp, 'data.dataPoints') || [] };
        $m{seen} = $s;
    } else {
        $m{seen} = get($resp, 'data.pagination.total');
    }
    $r{$size}{$e}{$kind} = \%m;
    push @order, [$e, $kind] if $size eq $small;
}

# posted.tsv: phase created meta entity type seconds mode
my %posted;
for (split /\n/, slurp("$dir/posted.tsv") // '') {
    my ($phase, $n, $meta, $ent, $type, $sec, $mode) = split /\t/;
    $posted{$phase} = { n => $n, own => $meta + $ent + $type, meta => $meta,
                        ent => $ent, type => $type, sec => $sec };
}

my %st = map { $_ => jfile("$dir/stats-$_.json") }
    ($small, $large, qw(empty probe-0 probe-same probe-entities probe-stamp1 probe-stampN));

# ---- header -----------------------------------------------------------------
print "## bench-store: $label{$small} vs $label{$large} events\n\n";
print "$env{date}; nginx $env{nginx}, module $env{commit}; $env{cpu}, $env{cpus}; ",
      "run took $env{runtime} s; load average $env{load}.\n";
print "Zone `$env{zone}`, no self-tracking, access_log off, one worker. ",
      "Each query: `wrk -t1 -c$env{conns} -d$env{duration}` on 127.0.0.1 after a 1 s warm-up. ",
      "Half of the events belong to `hot`, the rest to 1000 entities `cold-NNNN` ",
      "(measured: `$env{cold}`), 5 event types, 100-byte metadata.\n";
for my $n ($small, $large) {
    my $p = $posted{"fill-$n"} or next;
    printf "Fill to %s: %s events posted in %.1f s (%s/s); stored: totalEvents %s, store.events %s.\n",
        num($n), num($p->{n}), $p->{sec}, num(int($p->{n} / $p->{sec})),
        num(get($st{$n}, 'data.totalEvents')), num(get($st{$n}, 'data.store.events'));
}
print "\n";

# ---- latency ----------------------------------------------------------------
my $S = $label{$small}; my $L = $label{$large};
print "### Latency\n\n";
print "| query | entity | counted $S | p50 $S | p99 $S | req/s $S | counted $L | p50 $L | p99 $L | req/s $L | p50 $L/$S | req/s $L/$S | p50 within 1.5x |\n";
print "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|\n";
my %qname = (
    'summary'       => 'summary `/v1/usage/E`',
    'summary-range' => 'summary, since/until on minutes',
    'history'       => 'history `?interval=minute`',
    'list'          => 'list `/v1/events?entityId=E&limit=20`',
);
my ($met, $all) = (0, 0);
for my $o (@order) {
    my ($e, $kind) = @$o;
    my $a = $r{$small}{$e}{$kind} || {};
    my $b = $r{$large}{$e}{$kind} || {};
    my $rl = ratio($b->{p50}, $a->{p50});
    my $ok = $rl eq 'n/a' ? 'n/a' : $rl <= 1.5 ? 'yes' : 'no';
    $all++; $met++ if $ok eq 'yes';
    my $err = '';
    for ($a, $b) {
        $err = ' (errors!)' if ($_->{non2xx} // 0) + ($_->{errors} // 0) > 0;
    }
    printf "| %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
        $qname{$kind}, $err, $e,
        num($a->{seen}), ms($a->{p50}), ms($a->{p99}), num(defined $a->{rps} ? int($a->{rps}) : undef),
        num($b->{seen}), ms($b->{p50}), ms($b->{p99}), num(defined $b->{rps} ? int($b->{rps}) : undef),
        $rl, ratio($b->{rps}, $a->{rps}), $ok;
}
print "\nGoal ($L p50 within 1.5x of $S): met by $met of $all queries.\n";
print "Counted: the events the answer covers (summary totalEvents, the sum of the history's ",
      "counts, the list's pagination.total), a check that each query saw the whole entity. ",
      "Latency is per request with $env{conns} connections in flight on one worker, so it ",
      "includes the wait behind the others (p50 is about $env{conns} / req/s when the query is CPU-bound).\n\n";

# ---- store counters ---------------------------------------------------------
print "### Store counters (`data.store` of `/v1/usage/stats`)\n\n";
print "| counter | $S | $L |\n|---|--:|--:|\n";
my @keys = qw(totalEvents uniqueEntities);
my %seen;
my @skeys;
for my $s ($st{$large}, $st{$small}) {
    my $h = get($s, 'data.store');
    next unless ref $h eq 'HASH';
    for my $k (sort keys %$h) { push @skeys, $k unless $seen{$k}++ }
}
# wanted from the aggregate store: shown even before a build reports them
for my $k (qw(buckets rawBytesUsed)) { push @skeys, $k unless $seen{$k}++ }
for my $k (@keys) {
    printf "| %s | %s | %s |\n", $k, num(get($st{$small}, "data.$k")), num(get($st{$large}, "data.$k"));
}
for my $k (@skeys) {
    my @v = map { my $v = get($st{$_}, "data.store.$k"); ref $v ? $json->canonical->encode($v) : num($v) }
            ($small, $large);
    printf "| store.%s | %s | %s |\n", $k, @v;
}
print "\n";

# ---- memory -----------------------------------------------------------------
# Zone bytes come from the slab's used pages (store.zoneBytesUsed).  A build
# that keeps raw events in a region of its own reports store.rawBytes (its
# size) and store.rawBytesUsed; when that region is allocated up front (the
# empty store's zoneBytesUsed already covers rawBytes) its fill is counted
# from rawBytesUsed, else it is inside zoneBytesUsed already.
print "### Memory (from the zone's used-page counters)\n\n";
sub delta {
    my ($from, $to, $path) = @_;
    my ($x, $y) = (get($st{$from}, $path), get($st{$to}, $path));
    return defined $x && defined $y && $x =~ /^-?\d+$/ && $y =~ /^-?\d+$/ ? $y - $x : undef;
}
sub fmt { defined $_[0] ? sprintf('%.1f', $_[0]) : 'n/a' }

my $ring = get($st{empty}, 'data.store.rawBytes');
my $prealloc = defined $ring && $ring =~ /^\d+$/ && $ring > 0
    && (get($st{empty}, 'data.store.zoneBytesUsed') // 0) >= $ring;
sub cost {      # zone bytes, raw-event bytes, events, buckets from A to B
    my ($a, $b) = @_;
    return undef unless $st{$a} && $st{$b};
    my $z = delta($a, $b, 'data.store.zoneBytesUsed');
    my $r = delta($a, $b, 'data.store.rawBytesUsed');
    return { all => defined $z ? $z + ($prealloc ? $r // 0 : 0) : undef,
             zone => $z, raw => $r,
             events => delta($a, $b, 'data.store.events') // delta($a, $b, 'data.totalEvents'),
             buckets => delta($a, $b, 'data.store.buckets') };
}
sub plus { defined $_[0] ? '+' . num($_[0]) : 'n/a' }
sub per { defined $_[0] && $_[1] ? $_[0] / $_[1] : undef }
sub own { my $p = $posted{$_[0]}; $p && $p->{n} ? $p->{own} / $p->{n} : undef }

my $fill = $posted{"fill-$large"};
my $own  = own("fill-$large");
my $c    = cost($small, $large) || {};
my $allpe = per($c->{all}, $c->{events});
my $rawe = per($c->{raw}, $c->{events});
my $net  = defined $rawe && defined $own ? $rawe - $own
         : defined $allpe && defined $own ? $allpe - $own : undef;
my $basis = defined $rawe ? 'raw-event region' : 'whole zone';

print "| measure | value |\n|---|--:|\n";
printf "| stored events %s -> %s | %s |\n", $S, $L, plus($c->{events});
printf "| `store.zoneBytesUsed` %s -> %s | %s -> %s (%s) |\n", $S, $L,
    num(get($st{$small}, 'data.store.zoneBytesUsed')), num(get($st{$large}, 'data.store.zoneBytesUsed')), plus($c->{zone});
printf "| `store.rawBytesUsed` %s -> %s (of `store.rawBytes` %s%s) | %s -> %s (%s) |\n", $S, $L,
    num($ring), $prealloc ? ', allocated at start' : '',
    num(get($st{$small}, 'data.store.rawBytesUsed')), num(get($st{$large}, 'data.store.rawBytesUsed')), plus($c->{raw});
printf "| zone bytes per stored event, everything (raw events, aggregates, names) | %s |\n", fmt($allpe);
printf "| raw-event bytes per stored event (`store.rawBytesUsed`) | %s |\n", fmt($rawe);
printf "| own bytes per posted event: metadata + entityId + eventType | %s (%s + %s + %s) |\n",
    fmt($own), map { fmt($fill && $fill->{n} ? $fill->{$_} / $fill->{n} : undef) } qw(meta ent type);
printf "| **bytes per stored raw event beyond its own strings and metadata** (%s; goal <= 160) | **%s**%s |\n",
    $basis, fmt($net), defined $net ? ($net <= 160 ? ' (met)' : ' (not met)') : '';
printf "| aggregate buckets (`store.buckets`) %s -> %s | %s -> %s |\n", $S, $L,
    num(get($st{$small}, 'data.store.buckets')), num(get($st{$large}, 'data.store.buckets'));

# probes, one after the other, each against the stats just before it
my $same = cost('probe-0', 'probe-same');
my $ents = cost('probe-same', 'probe-entities');
my $one  = cost('probe-entities', 'probe-stamp1');
my $many = cost('probe-stamp1', 'probe-stampN');
if ($same && $same->{events}) {
    printf "| probe: %s events, one entity, type and minute: zone bytes per event beyond own strings and metadata | %s |\n",
        num($same->{events}), fmt(per($same->{all}, $same->{events}) - (own('probe-same') // 0));
}
if ($ents && $same && $ents->{events} && $same->{events}) {
    my $x = $ents->{all} - $same->{all} * $ents->{events} / $same->{events};
    printf "| probe: %s events, each in a new entity: extra zone bytes per new entity (its name, series and first bucket) | %s |\n",
        num($ents->{events}), fmt($x / $ents->{events});
}
if ($one && $many && $one->{events} && $many->{events}) {
    # same entities/series counts, same raw events (all back-dated): the
    # difference is buckets
    my $x  = $many->{all} - $one->{all};
    my $nb = defined $many->{buckets} && defined $one->{buckets} ? $many->{buckets} - $one->{buckets} : undef;
    printf "| probe: %s back-dated events in 100 series, in one minute vs each in its own minute: new buckets; extra zone bytes | %s; %s |\n",
        num($many->{events}), num($nb), num($x);
    printf "| **zone bytes per (entity, type, minute) bucket** | **%s** |\n",
        $nb ? fmt($x / $nb) : 'n/a (`store.buckets` not reported)';
} else {
    print "| **zone bytes per (entity, type, minute) bucket** | n/a (the build does not take client timestamps) |\n";
}
print "\n";
