-- wrk script of scripts/bench: one file for every case, chosen by arguments.
--
--   wrk -t1 -c32 -d5s -s bench.lua URL -- KIND [count]
--
-- KIND   static   wrk's own single request (GET of the URL's path)
--        post     POST of ~200-byte JSON events to the URL's path, over 1,000
--                 entities (customer-0001..1000) and 5 event types
--        post100  the same with a metadata object of exactly 100 bytes
--                 (serialized compact), for the zone bytes per event
--        usage    GET /v1/usage/{entity}
--        history  GET /v1/usage/{entity}/history
--        list     GET /v1/events?entityId={entity}&limit=20
--        batch    POST /v1/events/batch of 100 events as post's, each
--                 request the next 100 of the 5,000
--        mix      9 POSTs (as post, to /v1/events) then 1 GET (usage,
--                 history and list in turn), repeated: a 90/10 mix
-- count  also count every response by status in Lua (response()); this
--        costs wrk CPU, so scripts/bench uses it in the warm-up of each case
--        and relies on wrk's own count of statuses >= 400 in the timed run.
--
-- done() prints one line: "BENCH key=value ...", latencies in microseconds,
-- "statuses=201:1234,200:56" when counting.

local N_ENTITIES = 1000
local BATCH = 100
local TYPES = { "api_request", "search", "upload", "download", "login" }
local JSON_HEADERS = { ["Content-Type"] = "application/json" }

local threads = {}
local reqs = {}
local nreqs, cur = 0, 0

local function entity(k)
   return string.format("customer-%04d", k % N_ENTITIES + 1)
end

-- k = 0 .. 4999 covers every (entity, type) pair once
local function event_body(k)
   return string.format('{"entityId":"%s","eventType":"%s","metadata":'
      .. '{"endpoint":"/v1/search","method":"POST","tokens":%d,'
      .. '"region":"eu-west-1","latencyMs":%d,"client":"sdk-js/2.3.1",'
      .. '"requestId":"req-%08d"}}',
      entity(k), TYPES[math.floor(k / N_ENTITIES) % #TYPES + 1],
      (k * 37) % 4096 + 1, (k * 13) % 500 + 1, k)
end

local function event_body100(k)
   local head = string.format('{"endpoint":"/v1/search","tokens":%d,"pad":"',
      1000 + (k * 37) % 9000)
   local meta = head .. string.rep("x", 100 - #head - 2) .. '"}'
   assert(#meta == 100)
   return string.format('{"entityId":"%s","eventType":"%s","metadata":%s}',
      entity(k), TYPES[math.floor(k / N_ENTITIES) % #TYPES + 1], meta)
end

local function get_path(kind, k)
   local e = entity(k)
   if kind == "usage" then
      return "/v1/usage/" .. e
   elseif kind == "history" then
      return "/v1/usage/" .. e .. "/history"
   else
      return "/v1/events?entityId=" .. e .. "&limit=20"
   end
end

local function add(r)
   nreqs = nreqs + 1
   reqs[nreqs] = r
end

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local kind = args[1] or "static"

   if kind == "post" or kind == "post100" then
      local f = kind == "post" and event_body or event_body100
      for k = 0, N_ENTITIES * #TYPES - 1 do
         add(wrk.format("POST", wrk.path, JSON_HEADERS, f(k)))
      end
   elseif kind == "batch" then
      local n = N_ENTITIES * #TYPES
      for b = 0, n / BATCH - 1 do
         local events = {}
         for i = 0, BATCH - 1 do
            events[i + 1] = event_body(b * BATCH + i)
         end
         add(wrk.format("POST", wrk.path, JSON_HEADERS,
            '{"events":[' .. table.concat(events, ",") .. ']}'))
      end
   elseif kind == "usage" or kind == "history" or kind == "list" then
      for k = 0, N_ENTITIES - 1 do
         add(wrk.format("GET", get_path(kind, k)))
      end
   elseif kind == "mix" then
      local gets = { "usage", "history", "list" }
      for k = 0, N_ENTITIES * #TYPES * 2 - 1 do
         if k % 10 == 9 then
            add(wrk.format("GET", get_path(gets[math.floor(k / 10) % 3 + 1], k * 7)))
         else
            add(wrk.format("POST", "/v1/events", JSON_HEADERS,
               event_body(k % (N_ENTITIES * #TYPES))))
         end
      end
   elseif kind ~= "static" then
      error("bench.lua: unknown kind " .. kind)
   end

   if nreqs > 0 then
      request = function()
         cur = cur % nreqs + 1
         return reqs[cur]
      end
   end

   if args[2] == "count" then
      statuses = {}
      response = function(status)
         statuses[status] = (statuses[status] or 0) + 1
      end
   end
end

function done(summary, latency, requests)
   local counted, list = {}, {}
   for _, t in ipairs(threads) do
      local s = t:get("statuses")
      if s then
         for code, n in pairs(s) do
            counted[code] = (counted[code] or 0) + n
         end
      end
   end
   for code, n in pairs(counted) do
      list[#list + 1] = code .. ":" .. n
   end
   table.sort(list)

   local e = summary.errors
   io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d "
      .. "p99_us=%d max_us=%d status_ge400=%d connect=%d read=%d write=%d "
      .. "timeout=%d statuses=%s\n",
      summary.requests, summary.duration, latency:percentile(50),
      latency:percentile(99), latency.max, e.status, e.connect, e.read,
      e.write, e.timeout, #list > 0 and table.concat(list, ",") or "-"))
end
