-- wrk script of `apos-bench hub` (bench/hub/README.md): the same request
-- to both servers, authenticated, and one JSON line of results at the end.
--   BENCH_AUTH    value of the Authorization header (e.g. "Bearer apos_…"), or
--   BENCH_COOKIE  value of the Cookie header (e.g. "apos_session=…")
-- The URL (path and query) is wrk's own argument.
local auth = os.getenv("BENCH_AUTH")
local cookie = os.getenv("BENCH_COOKIE")
wrk.headers["Accept"] = "application/json"
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
if cookie and cookie ~= "" then wrk.headers["Cookie"] = cookie end

-- wrk counts answers >= 400 in summary.errors.status; every other error
-- kind is a socket problem. Latency in microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,' ..
    '"socket_errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
