-- wrk script for scripts/bench.sh: optional pacing, and machine-readable results.
--
--   wrk -t1 -c4 -d10s -s metrics.lua URL -- DELAY_MS
--
-- DELAY_MS > 0: every connection waits DELAY_MS after each answer before its next request, so
-- c connections send about c * 1000 / DELAY_MS requests per second (a paced load; each answer
-- takes well under a millisecond, so the pause dominates). DELAY_MS = 0: no pause (closed loop,
-- as fast as the server answers).
-- done() prints key=value lines (latencies in microseconds) that bench.sh reads.

local pause = 0

function init(args)
  pause = tonumber(args[1] or "0") or 0
  if pause <= 0 then
    delay = nil -- wrk checks for a delay() function after init: none means no pacing
  end
end

function delay()
  return pause
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk_requests=%d\n", summary.requests))
  io.write(string.format("wrk_duration_us=%d\n", summary.duration))
  io.write(string.format("wrk_errors=%d\n", e.connect + e.read + e.write + e.status + e.timeout))
  io.write(string.format("wrk_p50_us=%d\n", latency:percentile(50)))
  io.write(string.format("wrk_p90_us=%d\n", latency:percentile(90)))
  io.write(string.format("wrk_p99_us=%d\n", latency:percentile(99)))
  io.write(string.format("wrk_max_us=%d\n", latency.max))
end
