-- wrk script for benches/serve.sh: POST /actions/score-lead with an API key.
--   wrk ... -s benches/serve.lua URL -- replay KEY   the same body and Idempotency-Key every time
--   wrk ... -s benches/serve.lua URL -- first KEY    a new Idempotency-Key every time
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local mode, counter
function init(args)
  mode = args[1] or "replay"
  counter = 0
  wrk.method = "POST"
  wrk.path = "/actions/score-lead"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. (args[2] or "")
  wrk.body = '{"email": "ann.lee@acme.com", "name": "Ann Lee", "company": "Acme", '
    .. '"source": "referral", "freeMail": false, "disposable": false, "companyDomain": "acme.com"}'
  if mode == "replay" then
    wrk.headers["Idempotency-Key"] = "bench-replay"
  end
end

function request()
  if mode == "first" then
    counter = counter + 1
    -- unique across threads and runs: run tag, thread id, counter
    wrk.headers["Idempotency-Key"] = string.format("bench-%s-%d-%d", run_tag, id, counter)
  end
  return wrk.format()
end

run_tag = tostring(os.time())

local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("non-2xx/3xx: %d, socket errors: connect %d read %d write %d timeout %d\n",
    errors.status, errors.connect, errors.read, errors.write, errors.timeout))
  io.write(string.format("p50 %.2f ms, p99 %.2f ms, %.0f requests/s\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6)))
end
