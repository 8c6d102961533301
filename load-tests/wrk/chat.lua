-- wrk script of load-tests/compare.sh: every request is the same POST of an
-- OpenAI chat completion body (wrk/chat-body.json), with the gateway key
-- (FLOOPY_KEY) and, when FLOOPY_PROJECT is set, the project header. The same
-- request goes to every target, the fake provider directly included (it
-- ignores the key).
--
--   FLOOPY_KEY=fpk_... FLOOPY_PROJECT=uuid wrk -t2 -c64 -d15s --latency \
--       -s load-tests/wrk/chat.lua http://127.0.0.1:8080/v1/chat/completions

local key = os.getenv("FLOOPY_KEY") or ""
local project = os.getenv("FLOOPY_PROJECT") or ""
local model = os.getenv("FLOOPY_MODEL") or "gpt-4o"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
if project ~= "" then
  wrk.headers["floopy-project-id"] = project
end
-- More headers for a peer that needs them: "name: value|name: value".
for pair in string.gmatch(os.getenv("FLOOPY_EXTRA_HEADERS") or "", "[^|]+") do
  local name, value = pair:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end
-- The body (about 500 bytes) is wrk/chat-body.json, beside this script; oha
-- in compare.sh sends the same file.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local file = assert(io.open(dir .. "chat-body.json", "r"))
wrk.body = file:read("*a"):gsub("%s+$", ""):gsub('"model":"gpt%-4o"', '"model":"' .. model .. '"', 1)
file:close()

-- Non-200 answers are not counted here (a response() callback would make wrk
-- parse every response and slow it down on a 2-core machine): compare.sh reads
-- wrk's own "Non-2xx or 3xx responses" line instead.
function done(summary, latency, requests)
  io.write(string.format("body_bytes: %d\n", #wrk.body))
end
