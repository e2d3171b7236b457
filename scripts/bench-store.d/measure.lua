-- wrk script for scripts/bench-store: the plain GET of the URL given to wrk;
-- done() prints one machine-readable line (microseconds, requests/s):
--   RESULT requests=.. rps=.. p50=.. p90=.. p99=.. max=.. non2xx=.. errors=..
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d rps=%.1f p50=%d p90=%d p99=%d max=%d non2xx=%d errors=%d\n",
      summary.requests, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
