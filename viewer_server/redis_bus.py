"""Redis as the shared bus of several `twinview serve --bus redis://HOST:PORT` processes: the keys, the
scripts, and whether Redis answers. What the records mean is `viewer_server/shared_hub.py`'s business; this
module moves bytes, fences the leader's appends, and turns an unreachable Redis into `BusUnavailable`.

Keys of scene S (one hash tag per scene, so that a Redis Cluster would keep a scene's keys on one node):

  twinview:{S}:epoch       the deployment's epoch, set once by the first process (SET NX)
  twinview:{S}:lease       the leader's token (SET NX PX LEASE_MS, renewed every RENEW_S by its holder)
  twinview:{S}:seq         the last seq in the log; only the append script writes it
  twinview:{S}:log         stream of numbered batches (field `b`), trimmed to about LOG_MAX_ENTRIES
  twinview:{S}:inbox       stream of what processes hand the leader to number (field `m`), trimmed up to what
                           the log has taken in
  twinview:{S}:checkpoint  the scene's whole state at one log entry, where a process that starts later begins
  twinview:{S}:peers       sorted set: process id -> when (Redis time, ms) its heartbeat runs out
  twinview:{S}:revoked     pub/sub channel: revocations, so every process closes the voided connections at once
  twinview:{S}:names:{R}   sorted set: the display names held in session R, "name\nuser case-folded\nuser\nholder"
                           (the name case-folded, the holding connection) -> when (Redis time, ms) the claim
                           runs out; a claim conflicts with others as names do on one process
                           (viewer_server/name_claims.py)
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from viewer_server.bus import BusUnavailable, InProcessBus, Subscriber, Unsubscribe
from viewer_server.health import EngineHealth, Peer, process_name, public_url
from viewer_server.outbox import Batch

log = logging.getLogger(__name__)

T = TypeVar("T")

# The lease: a leader that has not renewed for LEASE_MS is replaced; it renews every RENEW_S, so a few
# renewals may fail (a slow event loop, a Redis blip) before it loses the lease.
LEASE_MS: Final = 2500
RENEW_S: Final = 0.5
# Entries kept in the log (XADD MAXLEN ~): minutes of batches at 60 a second. A process that falls further
# behind starts over from the checkpoint (its clients get a resync snapshot).
LOG_MAX_ENTRIES: Final = 20_000
# How long a blocking read waits for new entries before it looks again (and notices a stop).
BLOCK_MS: Final = 1000
# A Redis command that takes longer than this counts as Redis being unreachable.
COMMAND_TIMEOUT_S: Final = 3.0
# How long a process's heartbeat lasts: it renews with the lease loop, every RENEW_S.
PEER_TTL_MS: Final = 3000

_APPEND: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('NOTLEADER the lease was lost') end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last + 1 ~= tonumber(ARGV[2]) then return redis.error_reply('SEQGAP the log ends at ' .. last) end
redis.call('SET', KEYS[2], ARGV[3])
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'b', ARGV[4])
"""
_REFOUND: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('NOTLEADER the lease was lost') end
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[4], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[5], ARGV[4])
return 1
"""
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_HEARTBEAT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[2] ~= '0' then redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) end
local out = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
table.insert(out, 1, redis.call('GET', KEYS[2]) or '')
table.insert(out, 1, now)
return out
"""

_CLAIM: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held, conflict = {}, false
for _, claim in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local name, folded, user, holder = string.match(claim, '^([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)\\n(.*)$')
  if holder and holder ~= ARGV[4] then  -- (a claim in an older version's format runs out unread)
    table.insert(held, name)
    table.insert(held, user)
    if user ~= ARGV[2] then
      conflict = conflict or name == ARGV[1] or folded == ARGV[1]
        or (ARGV[7] ~= '' and (name == ARGV[7] or folded == ARGV[7]))
    elseif ARGV[6] == '1' then
      conflict = conflict or name == ARGV[1]
    end
  end
end
if conflict then return held end
local claim = ARGV[1] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[4]
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), claim)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {}
"""
_RENEW_NAMES: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local missing = {}
for i, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', now + ttl, ARGV[i + 1]) == 0 then table.insert(missing, i) end
  redis.call('PEXPIRE', key, ttl)
end
return missing
"""


class Fenced(Exception):
    """The append was refused: this process no longer holds the lease, or the log moved on without it."""


def check_url(url: str) -> str:
    """`url` if it is a redis:// or rediss:// URL with a host; ValueError saying what to pass otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"bad --bus {url!r}: use redis://HOST:PORT (or rediss:// for TLS)")
    return url


def process_id() -> str:
    """This process among its peers: its name (host:pid, as /api/health says) and a random part, so that a
    process restarted with the same pid (a container's 1) is not taken for the one that died."""
    return f"{process_name()}:{secrets.token_hex(3)}"


class RedisBus:
    """One process's bus in a deployment of several: its own sessions' fan-out (`publish`, `subscribe`, as the
    in-process bus; the scene's SharedHub publishes what it takes from the shared log), and the connection to
    Redis that SharedHub uses. Every Redis call raises BusUnavailable when Redis does not answer; `health()`
    tells whether it answered last, `on_status` callbacks hear each change, `peers()` who else is there."""

    def __init__(self, url: str, process: str | None = None) -> None:
        self.url = check_url(url)
        self.process = process or process_id()
        self.connected = False
        self.last_error = ""
        self.on_status: list[Callable[[bool], None]] = []
        self._local = InProcessBus()
        self._peers: dict[str, float] = {}  # another process -> monotonic time its heartbeat was last seen
        self._closing: set[asyncio.Future[None]] = set()  # pub/sub connections being closed
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=COMMAND_TIMEOUT_S + BLOCK_MS / 1000,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self._append = self._redis.register_script(_APPEND)
        self._renew = self._redis.register_script(_RENEW)
        self._refound = self._redis.register_script(_REFOUND)
        self._release = self._redis.register_script(_RELEASE)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._claim = self._redis.register_script(_CLAIM)
        self._renew_names = self._redis.register_script(_RENEW_NAMES)

    # --- Bus -----------------------------------------------------------------------------------------

    def publish(self, scene: str, batch: Batch) -> None:
        self._local.publish(scene, batch)

    def subscribe(self, scene: str, callback: Subscriber) -> Unsubscribe:
        return self._local.subscribe(scene, callback)

    def health(self) -> EngineHealth:
        if self.connected:
            return EngineHealth("redis", ok=True, url=public_url(self.url))
        detail = (
            f"Redis does not answer ({self.last_error or 'not connected yet'}): start it or check --bus; this process"
            " serves what it holds and refuses changes until Redis is back"
        )
        return EngineHealth("redis", ok=False, url=public_url(self.url), detail=detail)

    def peers(self) -> list[Peer]:
        now = time.monotonic()
        return [Peer(name.rsplit(":", 1)[0], round(now - seen, 3)) for name, seen in sorted(self._peers.items())]

    async def close(self) -> None:
        if self._closing:
            await asyncio.wait(self._closing, timeout=COMMAND_TIMEOUT_S)
        await self._redis.aclose()

    # --- calls -----------------------------------------------------------------------------------

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        """Await one Redis call; an unreachable Redis becomes BusUnavailable (what was not done, and that it
        can be sent again), and every change between reachable and not is told to `on_status`."""
        try:
            result = await call
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._status(False, f"{type(exc).__name__}: {exc}")
            raise BusUnavailable(
                f"the shared bus ({public_url(self.url)}) is unreachable ({exc}): {what} was not done; send it again"
                " in a moment"
            ) from None
        self._status(True, "")
        return result

    def _status(self, connected: bool, error: str) -> None:
        if error:
            self.last_error = error
        if connected != self.connected:
            self.connected = connected
            if connected:
                log.warning("shared bus %s: connected", public_url(self.url))
            else:
                log.error("shared bus %s unreachable: %s", public_url(self.url), error)
            for observer in self.on_status:
                observer(connected)

    async def ping(self) -> None:
        await self._call("the connection check", self._redis.ping())

    # --- one scene -------------------------------------------------------------------------------

    @staticmethod
    def key(scene: str, name: str) -> str:
        return f"twinview:{{{scene}}}:{name}"

    async def epoch(self, scene: str, proposed: str) -> str:
        """The deployment's epoch of `scene`: `proposed` if none was set yet, else the one set before."""
        key = self.key(scene, "epoch")
        await self._call("setting the epoch", self._redis.set(key, proposed, nx=True))
        value = await self._call("reading the epoch", self._redis.get(key))
        return value.decode() if value is not None else proposed

    async def acquire(self, scene: str, token: str) -> bool:
        """Take the lease if nobody holds it."""
        call = self._redis.set(self.key(scene, "lease"), token, nx=True, px=LEASE_MS)
        return bool(await self._call("taking the lease", call))

    async def renew(self, scene: str, token: str) -> bool:
        """Extend the lease; False when it is no longer ours."""
        call = self._renew(keys=[self.key(scene, "lease")], args=[token, LEASE_MS])
        return bool(await self._call("renewing the lease", call))

    async def release(self, scene: str, token: str) -> None:
        await self._call("releasing the lease", self._release(keys=[self.key(scene, "lease")], args=[token]))

    async def last_seq(self, scene: str) -> int:
        value = await self._call("reading the log's end", self._redis.get(self.key(scene, "seq")))
        return int(value) if value is not None else 0

    async def append(self, scene: str, token: str, first: int, last: int, record: bytes) -> str:
        """Append a batch with seqs [first, last] to the log, only while `token` holds the lease and the log
        ends at first - 1; returns its entry id. Raises Fenced otherwise."""
        keys = [self.key(scene, "lease"), self.key(scene, "seq"), self.key(scene, "log")]
        try:
            entry = await self._call(
                "appending to the log", self._append(keys=keys, args=[token, first, last, record, LOG_MAX_ENTRIES])
            )
        except ResponseError as exc:
            raise Fenced(str(exc)) from None
        return entry.decode()

    async def refound(self, scene: str, token: str, epoch: str, seq: int, checkpoint: bytes) -> None:
        """Start the scene's log over, empty, in a new epoch that continues at `seq` from `checkpoint` (Redis lost
        the old one); all at once, only while `token` holds the lease. Raises Fenced otherwise."""
        keys = [self.key(scene, name) for name in ("lease", "seq", "log", "epoch", "checkpoint")]
        try:
            await self._call("starting the log over", self._refound(keys=keys, args=[token, epoch, seq, checkpoint]))
        except ResponseError as exc:
            raise Fenced(str(exc)) from None

    async def read_log(self, scene: str, after: str) -> list[tuple[str, bytes]]:
        """Log entries after entry id `after` (waiting up to BLOCK_MS for one)."""
        return await self._read(scene, "log", b"b", after)

    async def send(self, scene: str, messages: list[bytes]) -> None:
        """Hand messages to the leader (the inbox), in order, in one round trip; returns once Redis has them.
        The inbox is trimmed by the leader (`trim_inbox`)."""
        pipe = self._redis.pipeline(transaction=False)
        for message in messages:
            pipe.xadd(self.key(scene, "inbox"), {"m": message})
        await self._call("handing the change to the leader", pipe.execute())

    async def trim_inbox(self, scene: str, taken: str) -> None:
        """Forget the inbox messages before entry id `taken`: the log has taken them in (never one it has not,
        however long no leader reads the inbox)."""
        await self._call(
            "trimming the inbox", self._redis.xtrim(self.key(scene, "inbox"), minid=taken, approximate=False)
        )

    async def read_inbox(self, scene: str, after: str) -> list[tuple[str, bytes]]:
        """Inbox messages after entry id `after` (waiting up to BLOCK_MS for one)."""
        return await self._read(scene, "inbox", b"m", after)

    async def _read(self, scene: str, name: str, field: bytes, after: str) -> list[tuple[str, bytes]]:
        call = self._redis.xread({self.key(scene, name): after}, count=500, block=BLOCK_MS)
        reply = await self._call(f"reading the {name}", call)
        if not reply:
            return []
        [(_, entries)] = reply
        return [(entry_id.decode(), fields[field]) for entry_id, fields in entries]

    async def save_checkpoint(self, scene: str, checkpoint: bytes) -> None:
        await self._call("saving the checkpoint", self._redis.set(self.key(scene, "checkpoint"), checkpoint))

    async def load_checkpoint(self, scene: str) -> bytes | None:
        return await self._call("reading the checkpoint", self._redis.get(self.key(scene, "checkpoint")))

    async def heartbeat(self, scene: str, alive: bool = True) -> tuple[set[str], str]:
        """Say this process is alive (or, `alive` False, leaving); returns every live process of the scene, this
        one included, and the deployment's epoch now."""
        keys = [self.key(scene, "peers"), self.key(scene, "epoch")]
        call = self._heartbeat(keys=keys, args=[self.process, PEER_TTL_MS if alive else 0])
        now_ms, epoch, *pairs = await self._call("the heartbeat", call)
        expiries = {pairs[i].decode(): float(pairs[i + 1]) for i in range(0, len(pairs), 2)}
        # Each heartbeat runs out PEER_TTL_MS after it was made: so long ago was it made.
        now = time.monotonic()
        self._peers = {
            name: now - (PEER_TTL_MS - (expiry - int(now_ms))) / 1000
            for name, expiry in expiries.items()
            if name != self.process
        }
        return set(expiries), epoch.decode()

    # --- display names ---------------------------------------------------------------------------

    def _names_key(self, scene: str, room: str) -> str:
        return self.key(scene, f"names:{room}")

    @staticmethod
    def _name_claim(name: str, user: str, holder: str) -> str:
        return f"{name.casefold()}\n{user.casefold()}\n{user}\n{holder}"

    async def claim_name(
        self, scene: str, room: str, name: str, user: str, holder: str, ttl_ms: int, chosen: str, per_connection: bool
    ) -> list[tuple[str, str]]:
        """Hold display `name` in session `room` for `user`'s connection `holder` for `ttl_ms` (again: renewed).
        It conflicts, as on one process (`rooms.Rooms.display_name`), with another user's claim whose name or
        user id (case-folded) is `name` or `chosen` (if any), and with `per_connection` with the same user's
        claims of `name` by other connections. Empty when held; on a conflict, every claim (case-folded name,
        user) other connections hold in the session."""
        args = [name.casefold(), user, user.casefold(), holder, ttl_ms, int(per_connection), chosen.casefold()]
        call = self._claim(keys=[self._names_key(scene, room)], args=args)
        held = [item.decode() for item in await self._call("claiming the display name", call)]
        return list(zip(held[::2], held[1::2], strict=True))

    async def renew_names(self, scene: str, claims: list[tuple[str, str, str, str]], ttl_ms: int) -> list[int]:
        """Extend the claims (room, name, user, holder) by `ttl_ms`, in one round trip; returns the positions of
        those Redis no longer holds (run out, or Redis lost them): they need `claim_name` again."""
        keys = [self._names_key(scene, room) for room, _, _, _ in claims]
        members = [self._name_claim(name, user, holder) for _, name, user, holder in claims]
        missing = await self._call("renewing the display names", self._renew_names(keys=keys, args=[ttl_ms, *members]))
        return [int(i) - 1 for i in missing]

    async def release_name(self, scene: str, room: str, name: str, user: str, holder: str) -> None:
        call = self._redis.zrem(self._names_key(scene, room), self._name_claim(name, user, holder))
        await self._call("releasing the display name", call)

    # --- revocations -----------------------------------------------------------------------------

    async def announce(self, scene: str, message: bytes) -> None:
        await self._call("announcing the revocation", self._redis.publish(self.key(scene, "revoked"), message))

    async def announcements(self, scene: str, subscribed: asyncio.Event | None = None) -> AsyncIterator[bytes]:
        """Messages on the scene's revocation channel, for ever: a lost connection is subscribed again.
        `subscribed` is set once the first subscription holds (nothing announced from then on is missed)."""
        while True:
            pubsub = self._redis.pubsub()
            try:
                await self._call("listening for revocations", pubsub.subscribe(self.key(scene, "revoked")))
                if subscribed is not None:
                    subscribed.set()
                while True:
                    message = await self._call("listening for revocations", pubsub.get_message(True, timeout=None))
                    if message is not None and message["type"] == "message":
                        yield message["data"]
            except BusUnavailable:
                await asyncio.sleep(RENEW_S)
            finally:  # not awaited: redis-py's teardown cannot be cancelled, and a stopping listener must end now
                closing = asyncio.ensure_future(pubsub.aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
