-- wrk script for bench/http.sh: every request a distinct SocketLabs event of
-- about 600 bytes, of a realistic mix of types, happening "now" (so that
-- deduplication cannot short-circuit the work and the indexes see live
-- times). Every three consecutive events of a thread are one message (one
-- MessageId and Address), as a message's Queued, Sent and Open would be: the
-- writer keeps one messages row per message, not per event. The secret comes
-- from $SLHOOKD_BENCH_SECRET.
local secret = os.getenv("SLHOOKD_BENCH_SECRET") or "bench-secret"
-- SLHOOKD_BENCH_TAG: in every MessageId, so that several wrk at once send distinct events.
local tag = os.getenv("SLHOOKD_BENCH_TAG") or ""
-- SLHOOKD_BENCH_CLOSE=1: one TLS connection (and handshake) per request.
local headers = { ["Content-Type"] = "application/json" }
if os.getenv("SLHOOKD_BENCH_CLOSE") == "1" then headers["Connection"] = "close" end
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local n = 0
-- Sent 40%, Open 20%, Queued 15%, Click 10%, Deferred 10%, Failed 5%
local kinds = { "Delivered", "Delivered", "Delivered", "Delivered", "Tracking1", "Tracking1",
                "Queued", "Queued", "Tracking0", "Deferred", "Failed" }
local extra = {
  Delivered = '"Response":"250 2.0.0 OK 1741076141 q7si123 - gsmtp","LocalIp":"142.0.181.23","RemoteMta":"mx1.example.net",',
  Tracking1 = '"TrackingType":1,"UserAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64)","ClientIp":"203.0.113.7",',
  Tracking0 = '"TrackingType":0,"UserAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64)","ClientIp":"203.0.113.7","Url":"https://shop.example.com/track/5521",',
  Queued = '"FromAddress":"orders@shop.example.com","Subject":"Your order has shipped","MessageSize":18211,',
  Deferred = '"DeferralCode":4001,"Reason":"421 4.7.0 Temporary rate limit, try again later","RemoteMta":"mx1.example.net",',
  Failed = '"FailureType":1,"FailureCode":2001,"Reason":"550 5.1.1 <user@example.org>: Recipient address rejected: user unknown","RemoteMta":"mx.example.org",',
}

request = function()
  n = n + 1
  local m = math.floor(n / 3)
  local kind = kinds[(n % #kinds) + 1]
  local wire = kind
  if kind == "Tracking0" or kind == "Tracking1" then wire = "Tracking" end
  local body = string.format(
    '{"Type":"%s","DateTime":"%s.%06dZ","ServerId":40111,"SubaccountId":40111,"IpPoolId":7,' ..
    '"Address":"user%d@example-%d.com","MailingId":"MAILING-%03d","MessageId":"w%s%d-%d-r1",%s' ..
    '"Data":{"Meta":[{"Key":"CustomerId","Value":"8812"}],"Tags":["Transactional"]},"SecretKey":"%s"}',
    wire, os.date("!%Y-%m-%dT%H:%M:%S"), n % 1000000, (m * 7919) % 200000, m % 97, math.floor(m / 700) % 500,
    tag, tid, m, extra[kind], secret)
  return wrk.format("POST", "/socketlabs/events", headers, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d non2xx=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
