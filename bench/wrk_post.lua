-- wrk script of bench/gateway.py: the same POST on every request, and the figures as one JSON line.
--
--     BENCH_BODY_FILE=body.json BENCH_AUTH='Bearer llmk_...' \
--         wrk -t1 -c8 -d10s --latency -s bench/wrk_post.lua http://127.0.0.1:8000/v1/chat/completions
--
-- BENCH_BODY_FILE: the JSON body (required). BENCH_AUTH: the Authorization header, if any.
-- done() prints `BENCH_JSON {...}`: requests, seconds, errors by kind (status: answers >= 400),
-- and latency mean / p50 / p90 / p95 / p99 / max in milliseconds.

local file = assert(io.open(assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is unset"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
   wrk.headers["Authorization"] = auth
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "seconds": %.6f, "errors": {"connect": %d, "read": %d, "write": %d, '
         .. '"status": %d, "timeout": %d}, "latency_ms": {"mean": %.3f, "p50": %.3f, "p90": %.3f, '
         .. '"p95": %.3f, "p99": %.3f, "max": %.3f}}\n',
      summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean / 1e3, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
      latency:percentile(95) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
