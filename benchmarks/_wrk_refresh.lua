-- wrk script for bench_http.py: full refresh-token rotation through POST /token.
--
-- Run with one connection per wrk thread (-t N -c N): each thread's Lua state owns one
-- connection and one chain. setup() hands every thread a distinct pre-issued refresh token
-- read from the file named by TS_BENCH_TOKENS (one a line); request() presents the
-- current token; response() takes the next one from the JSON body. wrk (pipeline depth 1)
-- calls request() for a connection only after response() has seen the previous answer, so
-- every token is presented exactly once. Anything but a 200 carrying a refresh_token is an
-- error: it is counted, and the first few are printed to stderr. A correct run has 0.

local tokens = {}
for line in io.lines(os.getenv("TS_BENCH_TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
local threads = {}

function setup(thread)
  local n = #threads + 1
  if tokens[n] == nil then
    error("bench_http: fewer refresh tokens than wrk threads")
  end
  thread:set("token", tokens[n])
  threads[n] = thread
end

function init(args)
  ok, errors, shown = 0, 0, 0
  form_prefix = "grant_type=refresh_token&client_id=" .. (os.getenv("TS_BENCH_CLIENT") or "spa")
    .. "&refresh_token="
  form_headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
end

function request()
  return wrk.format("POST", "/token", form_headers, form_prefix .. token)
end

function response(status, headers, body)
  if status == 200 then
    local next_token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if next_token ~= nil then
      token = next_token
      ok = ok + 1
      return
    end
  end
  errors = errors + 1
  if shown < 3 then
    shown = shown + 1
    io.stderr:write(string.format("bench_http: HTTP %d: %s\n", status, body:sub(1, 200)))
  end
end

function done(summary, latency, requests)
  local total_ok, total_errors = 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_errors = total_errors + thread:get("errors")
  end
  io.write(string.format("TS_BENCH ok=%d errors=%d\n", total_ok, total_errors))
end
