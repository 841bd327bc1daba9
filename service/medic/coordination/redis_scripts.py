"""The Lua scripts of the Redis backend: each one runs atomically on the server.

Every key a script touches is passed in ``KEYS`` (names from :mod:`medic.coordination.redis_keys`).
Lock values are ``<fencing token>|<owner>``.
"""

from __future__ import annotations

# KEYS: inbox stream, dedup key of each episode (in the order of ARGV[5..])
# ARGV: dedup ttl ms, queue max, payload JSON, received_at, episode keys...
# -> {entry id or "", {new episode keys}}; error "FULL ..." when the backlog is at its bound.
# All-or-nothing: the entry is added before any dedup key is set, so a failure leaves nothing.
ACCEPT = """
local new = {}
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    new[#new + 1] = i
  end
end
if #new == 0 then
  return {'', {}}
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  return redis.error_reply('FULL the inbox holds MEDIC_QUEUE_MAX unfinished deliveries')
end
local episodes = {}
for _, i in ipairs(new) do
  episodes[#episodes + 1] = ARGV[i + 3]
end
local id = redis.call('XADD', KEYS[1], '*', 'payload', ARGV[3], 'episodes', cjson.encode(episodes),
  'received_at', ARGV[4])
for _, i in ipairs(new) do
  redis.call('SET', KEYS[i], id, 'PX', ARGV[1])
end
return {id, episodes}
"""

# Shared by the scripts that dead-letter an entry: move it (fields {field, value, ...}) to the
# dead-letter stream with why and when, drop it from the inbox, and release the dedup keys of the
# episodes it still held (a re-send of those alerts is then processed, not taken for a duplicate).
# Needs: inbox stream KEYS[1], dead-letter stream KEYS[2], errors hash KEYS[3].
DEAD_LETTER_FN = """
local function dead_letter(group, id, fields, err, deliveries, cap, dedup_prefix, narrowed, payload)
  local args = {'XADD', KEYS[2], 'MAXLEN', '~', cap, '*'}
  local episodes = narrowed
  for i = 1, #fields, 2 do
    local value = fields[i + 1]
    if fields[i] == 'episodes' then
      if episodes == '' then episodes = value else value = episodes end
    elseif fields[i] == 'payload' and payload ~= '' then
      value = payload
    end
    args[#args + 1] = fields[i]
    args[#args + 1] = value
  end
  local now = redis.call('TIME')
  for _, v in ipairs({'id', id, 'error', err, 'deliveries', tostring(deliveries),
                      'dead_at', now[1] .. '.' .. string.format('%06d', now[2])}) do
    args[#args + 1] = v
  end
  redis.call(unpack(args))
  redis.call('XACK', KEYS[1], group, id)
  redis.call('XDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[3], id)
  if episodes ~= '' then
    for _, e in ipairs(cjson.decode(episodes)) do
      redis.call('DEL', dedup_prefix .. e)
    end
  end
end
"""

# KEYS: inbox stream, dead-letter stream, errors hash
# ARGV: group, consumer, lease ms, count, max deliveries, dead-letter cap, XAUTOCLAIM cursor
#       ("" = do not reclaim this time), dedup key prefix
# -> {next cursor, {{id, {field, value, ...}, deliveries}, ...}, {{id, fields, deliveries, error}, ...}}
# Entries idle for longer than the lease (their consumer died or hung) are taken over first;
# one delivered more than "max deliveries" times is returned apart (the third list), for the
# caller to dead-letter (DEAD_LETTER, with the delivery redacted first: only Python redacts).
CLAIM = """
local out = {}
local over = {}
local cursor = ''
if ARGV[7] ~= '' then
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[7], 'COUNT', ARGV[4])
  cursor = r[1]
  for _, e in ipairs(r[2]) do
    local id = e[1]
    if not e[2] then
      redis.call('XACK', KEYS[1], ARGV[1], id)
    else
      local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
      local n = tonumber(p[1][4])
      if n > tonumber(ARGV[5]) then
        local err = redis.call('HGET', KEYS[3], id)
        if not err then
          err = 'its consumer stopped ' .. n .. ' times before finishing it'
        end
        over[#over + 1] = {id, e[2], n, err}
      else
        out[#out + 1] = {id, e[2], n}
      end
    end
  end
end
local want = tonumber(ARGV[4]) - #out
if want > 0 then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', KEYS[1], '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      out[#out + 1] = {e[1], e[2], 1}
    end
  end
end
return {cursor, out, over}
"""

# KEYS: inbox stream, errors hash
# ARGV: group, ids...
ACK = """
local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
redis.call('HDEL', KEYS[2], unpack(ids))
return n
"""

# KEYS: inbox stream, errors hash
# ARGV: group, id, idle ms to set, error ("" = none)
# Hand an entry back: it stays with its consumer but looks idle, so XAUTOCLAIM hands it out
# again once its idle time passes the lease. The delivery count is not incremented (JUSTID).
RELEASE = """
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if p[1] then
  redis.call('XCLAIM', KEYS[1], ARGV[1], p[1][2], 0, ARGV[2], 'IDLE', ARGV[3], 'JUSTID')
  return 1
end
return 0
"""

# KEYS: inbox stream
# ARGV: group, then pairs of (id, consumer)
# -> ids no longer held by that consumer (taken over by another replica, or finished)
RENEW = """
local lost = {}
for i = 2, #ARGV, 2 do
  local id, consumer = ARGV[i], ARGV[i + 1]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and p[1][2] == consumer then
    redis.call('XCLAIM', KEYS[1], ARGV[1], consumer, 0, id, 'JUSTID')
  else
    lost[#lost + 1] = id
  end
end
return lost
"""

_LOCK_OWNER = """
local function split(v)
  local sep = string.find(v, '|', 1, true)
  return tonumber(string.sub(v, 1, sep - 1)), string.sub(v, sep + 1)
end
"""

# KEYS: lock, fencing-token counter; ARGV: owner, ttl ms
# -> the fencing token (> 0) when the owner holds the lock now, 0 when someone else does.
# Re-entrant: the current owner keeps its token and gets a fresh expiry.
LOCK_ACQUIRE = (
    _LOCK_OWNER
    + """
local v = redis.call('GET', KEYS[1])
if v then
  local token, owner = split(v)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return token
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. '|' .. ARGV[1], 'PX', ARGV[2])
return token
"""
)

# KEYS: lock; ARGV: owner, ttl ms -> 1 when extended, 0 when the lock is no longer the owner's
LOCK_RENEW = (
    _LOCK_OWNER
    + """
local v = redis.call('GET', KEYS[1])
if v then
  local _, owner = split(v)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
  end
end
return 0
"""
)

# KEYS: lock; ARGV: owner -> 1 when released; only the owner may release
LOCK_RELEASE = (
    _LOCK_OWNER
    + """
local v = redis.call('GET', KEYS[1])
if v then
  local _, owner = split(v)
  if owner == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
  end
end
return 0
"""
)

# KEYS: action hash, all-actions zset, target zset
# ARGV: target, action, incident id, at (epoch seconds), status, detail JSON, idempotency key,
#       ledger ttl ms, then limits as triples: "target" or "all", count, window seconds
# -> {1, 0, 0} when recorded, {0, 0, 0} when the idempotency key exists (the action was already
#    begun), {2, n, used} when the n-th limit is used up (nothing recorded).
# One script, so that replicas acting at once never exceed a budget together.
ACTION_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, 0, 0}
end
local at = tonumber(ARGV[4])
local horizon = string.format('(%.6f', at - tonumber(ARGV[8]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', horizon)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', horizon)
if ARGV[5] ~= 'skipped' then
  for i = 9, #ARGV, 3 do
    local zset = KEYS[2]
    if ARGV[i] == 'target' then
      zset = KEYS[3]
    end
    local since = string.format('%.6f', at - tonumber(ARGV[i + 2]))
    local used = redis.call('ZCOUNT', zset, since, '+inf')
    if used >= tonumber(ARGV[i + 1]) then
      return {2, (i - 6) / 3, used}
    end
  end
end
redis.call('HSET', KEYS[1], 'target', ARGV[1], 'action', ARGV[2], 'incident_id', ARGV[3],
  'at', ARGV[4], 'status', ARGV[5], 'detail', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
if ARGV[5] ~= 'skipped' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[7])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[7])
end
return {1, 0, 0}
"""

# KEYS: action hash, all-actions zset, target zset; ARGV: status, detail JSON, idempotency key
# A skipped action does not count for cooldowns and budgets: it leaves the sorted sets.
ACTION_FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'detail', ARGV[2])
if ARGV[1] == 'skipped' then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
return 1
"""

# KEYS: mark; ARGV: value -> nil when stored now, else the value stored before
MARK_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then
  return v
end
redis.call('SET', KEYS[1], ARGV[1])
return false
"""

# KEYS: inbox stream, dead-letter stream, errors hash
# ARGV: group, id, error, dead-letter cap, dedup key prefix, episodes that failed (JSON, "" = all),
#       the delivery as the dead letter keeps it (redacted; "" = as it is)
# -> 1 when moved, 0 when the entry is gone (finished or dead-lettered by another replica)
DEAD_LETTER = DEAD_LETTER_FN + """
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if not e[1] then
  return 0
end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
local n = 1
if p[1] then n = tonumber(p[1][4]) end
dead_letter(ARGV[1], ARGV[2], e[1][2], ARGV[3], n, ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return 1
"""

# KEYS: dead-letter stream, inbox stream
# ARGV: dead-letter entry id
# -> the new inbox entry id, or "" when there is no such dead letter
# The delivery goes back to the queue as it was accepted (payload, the failed episodes, when it
# was received), so it is processed again from its first attempt.
RETRY_DEAD = """
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if not e[1] then
  return ''
end
local args = {'XADD', KEYS[2], '*'}
local keep = {payload = true, episodes = true, received_at = true}
local fields = e[1][2]
for i = 1, #fields, 2 do
  if keep[fields[i]] then
    args[#args + 1] = fields[i]
    args[#args + 1] = fields[i + 1]
  end
end
local id = redis.call(unpack(args))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
"""
