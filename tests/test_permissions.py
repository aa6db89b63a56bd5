"""The permission matrix: documented, and every cell (role × action) enforced by the real server."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from scene.rules import AlarmEvent
from tests.live_server import JSON_BODY, live_server, mint_token
from viewer_server import protocol as p
from viewer_server.client import RequestRefused, TwinClient, TwinClientError
from viewer_server.permissions import MATRIX, ROLES, Action, allowed, markdown
from viewer_server.rooms import Member
from viewer_server.serve import RunningServer

REPO = Path(__file__).resolve().parents[1]


def test_the_documented_matrix_is_current() -> None:
    on_disk = (REPO / "docs" / "PERMISSIONS.md").read_text()
    assert on_disk == markdown(), "regenerate: python -m viewer_server.permissions > docs/PERMISSIONS.md"


def test_the_matrix_covers_every_action_and_refuses_the_unknown() -> None:
    assert set(MATRIX) == set(Action)
    assert MATRIX[Action.COMMAND_SEND] == {"operator"}  # not even admin
    assert not allowed("admin", "no.such.action") and not allowed("root", Action.SESSION_JOIN)


PRESSURE_ALARM = "operations.rules[1]"  # tests/live_server.py: PT-1's pressure thresholds, shown on P-1


class Ctx:
    """One server for the module; each probe uses fresh user names, so cells do not interfere."""

    def __init__(self, srv: RunningServer, http: aiohttp.ClientSession) -> None:
        self.srv = srv
        self.http = http
        self.room = srv.live.scene.id
        self.names = itertools.count()

    def user(self, role: str) -> str:
        return f"{role}-{next(self.names)}"

    async def topic(self, author: str) -> str:
        """A topic written by `author` (seeded server-side, whatever the author's role)."""
        service = self.srv.live.annotations
        topic, _ = await service.create_topic(Member("seed", self.room, author, "admin"), p.TopicDraft("seed"))
        return topic.guid

    def alarm(self) -> str:
        """The pressure alarm, raised afresh (unacknowledged) whatever an earlier probe did to it."""
        hub = self.srv.live.hub
        hub.alarms.alarms.pop(PRESSURE_ALARM, None)
        raised = AlarmEvent(PRESSURE_ALARM, "raised", "P-1", "pressure", "PT-1", "operations", "alarm", "probe", 1.0)
        hub.record_alarm(hub.alarms.condition(raised))  # type: ignore[arg-type]
        return PRESSURE_ALARM

    async def comment(self, author: str) -> str:
        service = self.srv.live.annotations
        message = p.CommentAdd(await self.topic(author), "seed")
        comment, _ = await service.add_comment(Member("seed", self.room, author, "admin"), message)
        return comment.guid


async def _connected(ctx: Ctx, role: str, user: str) -> TwinClient:
    client = TwinClient(ctx.srv.ws_url, token=mint_token(ctx.srv, user, role), name=user, reconnect=False)  # type: ignore[arg-type]
    await client.connect()
    return client


async def _forbidden_after(client: TwinClient, message: Any) -> bool:
    """Send a message that has no positive answer of its own; True if the server said forbidden."""
    before = len(client.errors)
    await client.send(message)
    await client.ping()  # replies are in order: any error for the message came before the pong
    return any(e.code == p.ERR_FORBIDDEN for e in list(client.errors)[before:])


async def _saved(request: Awaitable[p.Saved]) -> bool:
    try:
        await request
    except RequestRefused as exc:
        assert exc.error.code == p.ERR_FORBIDDEN, exc.error
        return False
    return True


Probe = Callable[[Ctx, TwinClient, str], Awaitable[bool]]


async def _rest(ctx: Ctx, role: str, user: str, method: str, path: str, body: Any = None) -> bool:
    headers = {"Authorization": f"Bearer {mint_token(ctx.srv, user, role)}", **JSON_BODY}  # type: ignore[arg-type]
    data = p.encode(body, "json") if body is not None else None
    async with ctx.http.request(method, ctx.srv.url + path, data=data, headers=headers) as r:
        assert r.status in (200, 201, 403), await r.text()
        return r.status != 403


PROBES: dict[Action, Probe] = {
    Action.PRESENCE_SEND: lambda ctx, c, u: _not(
        _forbidden_after(c, p.PresenceUpdate(p.Pose((0, 0, 0), (0, 0, 0, 1))))
    ),
    Action.HAND_RAISE: lambda ctx, c, u: _not(_forbidden_after(c, p.HandRaise())),
    Action.TOPIC_CREATE: lambda ctx, c, u: _saved(c.create_topic(p.TopicDraft("probe"))),
    Action.MARKUP_CREATE: lambda ctx, c, u: _not(_forbidden_after(c, p.Markup("P-1", (0.0, 1.0, 0.0), "look"))),
    Action.PROCEDURE_CONTROL: lambda ctx, c, u: _not(_forbidden_after(c, p.ProcedureControl("stop"))),
    Action.PROCEDURE_PROGRESS: lambda ctx, c, u: _not(_forbidden_after(c, p.StepComplete(0))),
    Action.PRESENTER_TAKE: lambda ctx, c, u: _not(_forbidden_after(c, p.PresenterTake())),
    Action.COMMAND_SEND: lambda ctx, c, u: _not(_forbidden_after(c, p.Command("P-1", "start"))),
    Action.TELEMETRY_PUBLISH: lambda ctx, c, u: _not(
        _forbidden_after(c, p.Publish([p.Reading(1.0, key="LT-1.level")]))
    ),
}


async def _not(forbidden: Awaitable[bool]) -> bool:
    return not await forbidden


async def _comment_create(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _saved(c.add_comment(await ctx.topic(ctx.user("other")), "probe"))


async def _topic_update(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _saved(c.update_topic(await ctx.topic(ctx.user("other")), 1, status="in_progress"))


async def _topic_edit_own(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _saved(c.update_topic(await ctx.topic(user), 1, title="mine, edited"))


async def _topic_delete_own(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _saved(c.delete_topic(await ctx.topic(user), 1))


async def _comment_edit_own(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _saved(c.edit_comment(await ctx.comment(user), 1, "mine, edited"))


async def _comment_delete_own(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _saved(c.delete_comment(await ctx.comment(user), 1))


async def _topic_moderate(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _saved(c.update_topic(await ctx.topic(ctx.user("other")), 1, title="moderated"))


async def _comment_moderate(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _saved(c.delete_comment(await ctx.comment(ctx.user("other")), 1))


async def _session_manage(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _rest(ctx, c.welcome.role, user, "POST", "/api/sessions", {"id": f"s-{user}"})  # type: ignore[union-attr]


async def _session_revoke(ctx: Ctx, c: TwinClient, user: str) -> bool:
    path = f"/api/sessions/{ctx.room}/revoke"
    return await _rest(ctx, c.welcome.role, user, "POST", path, {"user": f"gone-{user}"})  # type: ignore[union-attr]


async def _audit_read(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _rest(ctx, c.welcome.role, user, "GET", f"/api/sessions/{ctx.room}/audit")  # type: ignore[union-attr]


async def _joined(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return c.welcome is not None and c.snapshots == 1


PROBES |= {
    Action.SESSION_JOIN: _joined,
    Action.COMMENT_CREATE: _comment_create,
    Action.TOPIC_UPDATE: _topic_update,
    Action.TOPIC_EDIT_OWN: _topic_edit_own,
    Action.TOPIC_DELETE_OWN: _topic_delete_own,
    Action.COMMENT_EDIT_OWN: _comment_edit_own,
    Action.COMMENT_DELETE_OWN: _comment_delete_own,
    Action.TOPIC_MODERATE: _topic_moderate,
    Action.COMMENT_MODERATE: _comment_moderate,
    Action.SESSION_MANAGE: _session_manage,
    Action.SESSION_REVOKE: _session_revoke,
    Action.AUDIT_READ: _audit_read,
}


async def _bcf_export(ctx: Ctx, c: TwinClient, user: str) -> bool:
    return await _rest(ctx, c.welcome.role, user, "GET", f"/api/sessions/{ctx.room}/bcf")  # type: ignore[union-attr]


async def _bcf_import(ctx: Ctx, c: TwinClient, user: str) -> bool:
    headers = {"Authorization": f"Bearer {mint_token(ctx.srv, user, c.welcome.role)}"}  # type: ignore[union-attr]
    async with ctx.http.post(f"{ctx.srv.url}/api/sessions/{ctx.room}/bcf", data=b"PK", headers=headers) as r:
        assert r.status in (400, 403)  # an allowed role gets past the check, then this is no archive
        return r.status != 403


async def _bindings_read(ctx: Ctx, c: TwinClient, user: str) -> bool:
    headers = {"Authorization": f"Bearer {mint_token(ctx.srv, user, c.welcome.role)}"}  # type: ignore[union-attr]
    async with ctx.http.get(f"{ctx.srv.url}/api/bindings", headers=headers) as r:
        assert r.status == 200  # everyone gets the layers; the file's text is the permission
        return "content" in await r.json()


PROBES |= {
    Action.BCF_EXPORT: _bcf_export,
    Action.BCF_IMPORT: _bcf_import,
    Action.BINDINGS_READ: _bindings_read,
    Action.ALARM_ACKNOWLEDGE: lambda ctx, c, u: _saved(c.acknowledge_alarm(ctx.alarm())),
    Action.ALARM_SHELVE: lambda ctx, c, u: _saved(c.shelve_alarm(ctx.alarm(), 5, "probe")),
    Action.ALARM_SERVICE: lambda ctx, c, u: _saved(c.alarm_out_of_service(ctx.alarm(), "probe")),
    Action.HISTORY_READ: lambda ctx, c, u: _rest(ctx, c.welcome.role, u, "GET", "/api/history/range"),  # type: ignore[union-attr]
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ctx]:
    async with live_server(tmp_path_factory.mktemp("perm")) as srv, aiohttp.ClientSession() as http:
        yield Ctx(srv, http)


def test_every_action_has_a_probe() -> None:
    assert set(PROBES) == set(Action)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
@pytest.mark.parametrize("role", ROLES)
async def test_the_server_enforces_the_cell(ctx: Ctx, role: str, action: Action) -> None:
    user = ctx.user(role)
    try:
        client = await _connected(ctx, role, user)
    except TwinClientError as exc:  # only a refused join may end here
        assert action == Action.SESSION_JOIN and not allowed(role, action), exc
        return
    try:
        assert await PROBES[action](ctx, client, user) == allowed(role, action)
    finally:
        await client.close()
