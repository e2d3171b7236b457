-- wrk script for scripts/bench-store: POSTs exactly `count` events to
-- /v1/events, then stops.  Run it with one wrk thread (-t1):
--
--   wrk -t1 -c32 -d120s -s post.lua URL -- MODE START COUNT [NOW]
--
-- Event number i (START <= i < START+COUNT) is, by MODE:
--   fill      i even: entity "hot"; i odd: one of 1000 entities
--             "cold-0000".."cold-0999" (round robin); 5 event types
--   same      entity "probe-c000000", type "search" (one aggregate bucket)
--   entities  entity "probe-e<i>" (a new entity per event), type "search"
--   stamp1    20 entities "probe-u0000NN" x 5 types, all with the client
--             "timestamp" of one whole minute, 2 minutes before NOW (epoch
--             seconds): 100 (entity, type, minute) buckets
--   stampN    20 entities "probe-t0000NN" x 5 types x minutes 1..COUNT/100
--             before NOW: every event a new (entity, type, minute)
-- Every event carries a 100-byte compact metadata object.  All POSTs
-- are sent before anything else; once COUNT of them have been sent, the
-- connections still open ask for /health (not stored) until the COUNT
-- answers are in, then the thread stops.  done() prints one line:
--   POSTED n=.. created=.. failed=.. meta=.. entity=.. type=..
-- (the byte sums of metadata, entityId and eventType of the posted events).

TYPES = { "search", "upload", "export", "report", "invoke" }

-- exactly 100 bytes, compact JSON, stored as sent
function metadata(i)
   return string.format('{"endpoint":"/api/search","region":"eu-west-1",'
      .. '"status":200,"tokens":512,"requestId":"r-%010d"}', i % 10000000000)
end

function event(mode, i, now)
   local e, t, ts
   if mode == "fill" then
      if i % 2 == 0 then
         e = "hot"
         t = TYPES[(i / 2) % 5 + 1]
      else
         local k = (i - 1) / 2
         e = string.format("cold-%04d", k % 1000)
         t = TYPES[math.floor(k / 1000) % 5 + 1]
      end
   elseif mode == "same" then
      e, t = "probe-c000000", "search"
   elseif mode == "entities" then
      e, t = string.format("probe-e%06d", i % 1000000), "search"
   elseif mode == "stamp1" or mode == "stampN" then
      e = string.format("probe-%s%06d", mode == "stamp1" and "u" or "t", i % 20)
      t = TYPES[math.floor(i / 20) % 5 + 1]
      local back = mode == "stamp1" and 2 or math.floor(i / 100) + 1
      ts = os.date("!%Y-%m-%dT%H:%M:00.000Z", math.floor(now / 60) * 60 - 60 * back)
   else
      error("unknown mode " .. tostring(mode))
   end
   local md = metadata(i)
   local body = '{"entityId":"' .. e .. '","eventType":"' .. t .. '",'
   if ts then
      body = body .. '"timestamp":"' .. ts .. '",'
   end
   body = body .. '"metadata":' .. md .. '}'
   return body, #e, #t, #md
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   mode  = args[1]
   start = tonumber(args[2])
   count = tonumber(args[3])
   now   = tonumber(args[4] or "0")
   sent, created, failed, extra = 0, 0, 0, 0
   health = wrk.format("GET", "/health")
   -- wrk calls request() once before the run to check the request (for
   -- pipelining) and never sends that one: give it /health
   verified = false
   -- the fill repeats a cycle of 10000 distinct requests (built once here);
   -- the probes are short and build theirs as they go
   cache = {}
end

local headers = { ["Content-Type"] = "application/json" }

function request()
   if not verified then
      verified = true
      return health
   end
   if sent >= count then
      return health
   end
   local i = start + sent
   sent = sent + 1
   local req
   if mode == "fill" then
      local slot = i % 10000
      req = cache[slot]
      if req == nil then
         req = wrk.format("POST", "/v1/events", headers, (event(mode, i, now)))
         cache[slot] = req
      end
   else
      req = wrk.format("POST", "/v1/events", headers, (event(mode, i, now)))
   end
   return req
end

-- wrk's main thread sleeps for the whole -d whatever its threads do, unless
-- interrupted: stop this thread, then SIGINT wrk (once this thread is gone,
-- the signal goes to the main thread), which then reports as usual
function finish()
   wrk.thread:stop()
   if not signalled then
      signalled = true
      local f = io.open("/proc/self/stat")
      local pid = f:read("*n")
      f:close()
      os.execute("(sleep 0.2; kill -INT " .. pid .. ") >/dev/null 2>&1 &")
   end
end

function response(status, hdrs, body)
   if status == 200 and body:sub(1, 9) == '{"status"' then
      -- /health: if the POSTs are all out and their answers do not come,
      -- something is lost: stop rather than spin until -d
      extra = extra + 1
      if sent >= count and extra > 100000 then
         finish()
      end
      return
   end
   if status == 201 then
      created = created + 1
   else
      failed = failed + 1
      if failed <= 5 then
         io.stderr:write("POST answered " .. status .. ": " .. body .. "\n")
      end
   end
   if created + failed >= count then
      finish()
   end
end

function done(summary, latency, requests)
   local t = threads[1]
   local m, s, c, n = t:get("mode"), t:get("start"), t:get("count"), t:get("now")
   local mb, eb, tb = 0, 0, 0
   for i = s, s + c - 1 do
      local _, el, tl, ml = event(m, i, n)
      mb, eb, tb = mb + ml, eb + el, tb + tl
   end
   io.write(string.format("POSTED n=%d created=%d failed=%d meta=%d entity=%d type=%d\n",
      t:get("sent"), t:get("created"), t:get("failed"), mb, eb, tb))
end
