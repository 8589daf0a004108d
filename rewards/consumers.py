"""The member's live notifications over a WebSocket (`/ws`, seed 001 §1.5).

A member app authenticates with its member token, either as subprotocols
(`new WebSocket(url, ["bearer", token])`, answered with the subprotocol `bearer`) or in a
first frame `{"type": "auth", "token": "..."}` within WEBSOCKET_AUTH_TIMEOUT. A token in the
query string is never read (query strings end up in proxy logs). A refused or expired token
closes the socket with 4401.

The token is checked as the platform (finding the member, as the API's authentication does);
every read the socket makes after that is narrowed to the member's tenant (core.rls).

Once authenticated the socket joins the member's group and is sent `ready`, then the frames of
rewards.notifications as the outbox relay publishes them. `{"type": "resume", "after": id}`
replays what was missed after an event id; live frames arriving meanwhile are held back and
sent after the replay. A frame is sent at most once per connection: the relay delivers at least
once, so live frames at or below the last position sent, or with an event id already sent,
are dropped.
"""

import asyncio
import json
import logging
from collections import deque
from datetime import UTC, datetime

import jwt
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from core.rls import tenant_scope
from rewards.authentication import member_token_authenticate
from rewards.exceptions import NotificationNotFound
from rewards.models import Member
from rewards.notifications import member_group, member_notification_page

logger = logging.getLogger(__name__)

AUTH_SUBPROTOCOL = "bearer"
CLOSE_UNAUTHORIZED = 4401
REPLAY_PAGE_SIZE = 500
# Event ids remembered per connection to keep replays from repeating frames already sent live.
SENT_IDS_KEPT = 5000


class MemberNotificationConsumer(AsyncJsonWebsocketConsumer):
    """Authenticates, joins `member_group(tenant, member)`, forwards frames; see the module doc."""

    async def connect(self):
        self.member: Member | None = None
        self.group: str | None = None
        self.closing = False
        self.replaying = False
        self.held: list[dict] = []
        self.last_position = 0
        self.sent_ids: set[str] = set()
        self.sent_order: deque[str] = deque()
        self.tasks: set[asyncio.Task] = set()
        self.auth_task: asyncio.Task | None = None

        offered = self.scope.get("subprotocols") or []
        if offered and offered[0] == AUTH_SUBPROTOCOL:
            # Accept first, so that a refused token is told by close code 4401 (a handshake
            # refused before accepting reaches browsers as a bare 403).
            await self.accept(subprotocol=AUTH_SUBPROTOCOL)
            await self.authenticate(offered[1] if len(offered) > 1 else "")
            return
        await self.accept()
        self.auth_task = self.spawn(self.auth_deadline())

    async def disconnect(self, code):
        self.closing = True
        for task in list(self.tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # Client frames ---------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data) if text_data is not None else None
        except ValueError:
            content = None
        if not isinstance(content, dict):
            if self.member is None:
                await self.close_unauthorized("auth_required")
            else:
                await self.send_error("invalid_frame", "Frames are JSON objects with a type.")
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        kind = content.get("type")
        if self.member is None:
            if kind == "auth" and not self.closing:
                if self.auth_task is not None:
                    self.auth_task.cancel()
                await self.authenticate(content.get("token"))
            else:
                await self.close_unauthorized("auth_required")
            return
        if kind == "ping":
            await self.send_frame({"type": "pong"})
        elif kind == "resume":
            await self.resume(content.get("after"))
        elif kind == "auth":
            await self.send_error("already_authenticated", "This socket is already authenticated.")
        else:
            await self.send_error("unknown_frame", "Unknown frame type; expected resume or ping.")

    async def authenticate(self, token) -> None:
        if not isinstance(token, str) or not token:
            await self.close_unauthorized("invalid_token")
            return
        try:
            member, claims = await database_sync_to_async(member_token_authenticate)(token)
        except jwt.InvalidTokenError:
            await self.close_unauthorized("invalid_token")
            return
        self.member = member
        self.group = member_group(member.tenant_id, member.external_ref)
        await self.channel_layer.group_add(self.group, self.channel_name)
        expires_at = datetime.fromtimestamp(claims["exp"], tz=UTC)
        self.spawn(self.expire_at(expires_at))
        await self.send_frame(
            {
                "type": "ready",
                "memberRef": member.external_ref,
                "expiresAt": expires_at.isoformat().replace("+00:00", "Z"),
            }
        )

    async def resume(self, after) -> None:
        if not isinstance(after, str) or not after:
            await self.send_error("invalid_frame", "resume needs `after`: the id of the last event received.")
            return
        if self.replaying:
            await self.send_error("resume_in_progress", "A resume is already being replayed.")
            return
        # The replay runs beside the dispatch loop, so live frames keep being read from the
        # channel layer (which drops what overflows its capacity) and are held here meanwhile.
        self.replaying = True
        self.spawn(self.replay(after))

    async def replay(self, after: str) -> None:
        cursor, position = after, None
        try:
            while True:
                frames, position = await self.replay_page(cursor)
                for frame in frames:
                    if frame["eventId"] not in self.sent_ids:
                        await self.send_frame(frame)
                if len(frames) < REPLAY_PAGE_SIZE:
                    break
                cursor = frames[-1]["eventId"]
        except NotificationNotFound as exc:
            await self.send_error(exc.code, exc.message, field="after")
        else:
            self.last_position = max(self.last_position, position or 0)
        finally:
            if not self.closing:
                await self.release_held()

    async def replay_page(self, after: str) -> tuple[list[dict], int | None]:
        return await database_sync_to_async(self.member_notification_page)(after=after, limit=REPLAY_PAGE_SIZE)

    def member_notification_page(self, **kwargs) -> tuple[list[dict], int | None]:
        # Walled in to the member's tenant by row-level security, as the member's API calls are.
        with tenant_scope(self.member.tenant_id):
            return member_notification_page(member=self.member, **kwargs)

    async def release_held(self) -> None:
        """Send the live frames held during a replay, in order, skipping what was replayed."""
        while self.held:
            self.held.sort(key=lambda message: message.get("position") or 0)
            await self.forward(self.held.pop(0))
        self.replaying = False

    # Group messages (rewards.notifications.GROUP_MESSAGE_TYPE) ---------------------------

    async def member_notify(self, message):
        if self.member is None or self.closing:
            return
        if self.replaying:
            self.held.append(message)
            return
        await self.forward(message)

    async def member_close(self, message):
        # The member was erased or closed (rewards.privacy): the group's name may pass to a new member.
        await self.close_unauthorized(str(message.get("reason") or "member_closed"))

    async def forward(self, message: dict) -> None:
        frame, position = message.get("frame"), message.get("position")
        if not isinstance(frame, dict):
            return
        if isinstance(position, int) and position <= self.last_position:
            return
        if frame.get("eventId") in self.sent_ids:
            return
        await self.send_frame(frame)
        if isinstance(position, int):
            self.last_position = position

    # Sending and closing ---------------------------------------------------------------

    async def send_frame(self, frame: dict) -> None:
        if self.closing:
            return
        event_id = frame.get("eventId")
        if event_id:
            self.sent_ids.add(event_id)
            self.sent_order.append(event_id)
            if len(self.sent_order) > SENT_IDS_KEPT:
                self.sent_ids.discard(self.sent_order.popleft())
        await self.send_json(frame)

    async def send_error(self, code: str, message: str, *, field: str | None = None) -> None:
        error = {"type": "error", "code": code, "message": message}
        if field:
            error["field"] = field
        await self.send_frame(error)

    async def close_unauthorized(self, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.close(code=CLOSE_UNAUTHORIZED, reason=reason)

    async def auth_deadline(self) -> None:
        await asyncio.sleep(settings.WEBSOCKET_AUTH_TIMEOUT.total_seconds())
        if self.member is None:
            await self.close_unauthorized("auth_timeout")

    async def expire_at(self, expires_at: datetime) -> None:
        await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()))
        await self.close_unauthorized("token_expired")

    def spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("websocket task failed", exc_info=task.exception())
