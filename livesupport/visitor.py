"""The visitor routes: what the widget calls.

A visitor only ever reaches its own conversations: every handler starts from
the visitor named by the signed ``ls_vid`` cookie, never from an id the
client sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from .auth import NODE_COOKIE, VISITOR_COOKIE
from .buffers import Buffered
from .clock import new_id, utcnow
from .context import Context
from .delivery import visitor_key
from .errors import NotFound, Unauthorized
from .http import json_response, no_content, query_int
from .serialize import conversation_json, ephemeral_json, message_json
from .store.base import VISITOR_FIELDS, Author, Conversation, Visitor


@dataclass(slots=True)
class VisitorPage:
    """What a visitor's poll answers: rendered events, the position read up to, more."""

    events: list[dict[str, Any]]
    upto: int
    more: bool


class VisitorAPI:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- helpers -------------------------------------------------------------
    def _set_cookies(self, request: Request, response: Response, visitor: Visitor) -> None:
        cfg = self.ctx.config
        secure = request.scheme == "https"
        response.set_cookie(
            VISITOR_COOKIE,
            self.ctx.signer.sign_visitor(visitor.id, cfg.visitor_cookie_max_age),
            max_age=cfg.visitor_cookie_max_age,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
        self._set_affinity(request, response, visitor.id, force=True)

    def _affine(self, request: Request, visitor_id: str) -> bool:
        """Whether the request's ``ls_node`` is valid and names this node."""
        token = request.cookies.get(NODE_COOKIE)
        return self.ctx.signer.affinity_from(token, visitor_id) == self.ctx.config.node_id

    def _set_affinity(
        self, request: Request, response: Response, visitor_id: str, *, force: bool = False
    ) -> None:
        """Re-issue ``ls_node`` when it is missing, forged or names another node."""
        if not force and self._affine(request, visitor_id):
            return
        response.set_cookie(
            NODE_COOKIE,
            self.ctx.signer.sign_affinity(self.ctx.config.node_id, visitor_id),
            path="/",
            httponly=True,
            samesite="Lax",
            secure=request.scheme == "https",
        )

    def _own(self, conversation: Conversation) -> Conversation:
        """Take the conversation over if another node was recorded on it, so agents'
        replies are published to this node from now on, and tell the other nodes."""
        node_id = self.ctx.config.node_id
        if conversation.status == "closed" or conversation.node_id == node_id:
            return conversation
        self.ctx.buffers.discard(conversation.visitor_id)  # whatever it holds is from before
        moved = self.ctx.store.set_node(conversation.id, node_id) or conversation
        self.ctx.delivery.moved(conversation.visitor_id)
        return moved

    def _latest(self, visitor: Visitor) -> Conversation | None:
        store = self.ctx.store
        current = store.open_conversation(visitor.id)
        if current is not None:
            return current
        everything = store.visitor_conversations(visitor.id)
        return everything[-1] if everything else None

    def _identified(self, request: Request, visitor: Visitor | None) -> Visitor | None:
        """The visitor for the host's signed-in user, when ``identify`` names one."""
        identify = self.ctx.config.identify
        user = identify(request.environ) if identify else None
        if not user or not user.get("id"):
            return visitor
        external_id = str(user["id"])[:200].replace("\x00", "")
        if visitor is not None and visitor.external_id == external_id:
            return visitor
        return self.ctx.store.create_visitor(
            Visitor(id=new_id("v"), external_id=external_id, created_at=utcnow())
        )

    # -- routes --------------------------------------------------------------
    def visitor_session(self, request: Request, body: dict[str, Any]) -> Response:
        ctx, store = self.ctx, self.ctx.store
        ctx.limits.check_new_visitor(request)
        visitor = self._identified(request, ctx.auth.visitor_or_none(request))
        if visitor is None:
            visitor = store.create_visitor(Visitor(id=new_id("v"), created_at=utcnow()))
        fields = {k: str(body[k]) for k in VISITOR_FIELDS if k in body}
        fields["user_agent"] = request.headers.get("User-Agent", "")[:500].replace("\x00", "")
        identify = ctx.config.identify
        user = identify(request.environ) if identify else None
        if user:
            # The host vouches for these; the widget's own claims do not override them.
            fields.update(
                {
                    k: str(user[k])[:254].replace("\x00", "")
                    for k in ("name", "email")
                    if user.get(k)
                }
            )
        visitor = store.update_visitor(visitor.id, **fields) or visitor
        conversation, position = self._start_buffer(visitor.id)
        now = utcnow()
        seen_since = datetime.fromtimestamp(
            now.timestamp() - ctx.config.agent_online_grace, now.tzinfo
        )
        response = json_response(
            {
                "visitor_id": visitor.id,
                "conversation_id": conversation.id if conversation else None,
                "cursor": ctx.cursor("v", visitor.id, position),
                "node_id": ctx.config.node_id,
                "agents_online": store.agents_online(seen_since),
            }
        )
        self._set_cookies(request, response, visitor)
        return response

    def _start_buffer(self, visitor_id: str) -> tuple[Conversation | None, int]:
        """Take the visitor's open conversation over and give it an empty buffer from
        the current feed position on, so that its first poll needs no store read:
        ``(the latest conversation, the position)``. The same order as a poll's store
        read (subscribe, read the seqs, then the position), so a buffer is installed
        only if it misses nothing."""
        ctx, store = self.ctx, self.ctx.store
        build = ctx.buffers.begin(visitor_id)
        try:
            conversations = [self._own(c) for c in store.visitor_conversations(visitor_id)]
            position = store.feed_position()
        except BaseException:
            ctx.buffers.abandon(visitor_id, build)
            raise
        last_seq = {c.id: c.last_seq for c in conversations}
        ctx.buffers.finish(visitor_id, build, position, (), last_seq)
        current = next((c for c in reversed(conversations) if c.status != "closed"), None)
        return current or (conversations[-1] if conversations else None), position

    def visitor_send(self, request: Request, body: dict[str, Any], visitor: Visitor) -> Response:
        ctx = self.ctx
        ctx.check_body(body["body"])
        result = ctx.limits.visitor_send(request, visitor, body["client_msg_id"], body["body"])
        conversation = result.conversation
        if result.created:
            conversation = self._own(conversation)
            # To this node's buffer and the visitor's other tabs.
            ctx.delivery.to_visitor(conversation, events=ctx.buffered(conversation, result.events))
            ctx.delivery.to_agents(
                conversation, stored=result.events, everyone=result.conversation_created
            )
            if result.conversation_created:
                # Other nodes may hold an empty buffer of this visitor's from a session
                # there: this conversation's events are published here, not there.
                ctx.delivery.moved(visitor.id)
                ctx.announce_queue()
        response = json_response(
            {"message": message_json(result.message)}, status=201 if result.created else 200
        )
        self._set_affinity(request, response, visitor.id)
        return response

    def visitor_poll(self, request: Request, body: dict[str, Any], visitor_id: str) -> Response:
        ctx = self.ctx
        after = ctx.read_cursor(request, "v", visitor_id) or 0
        timeout = ctx.poll_timeout(request)
        # A request that the balancer did not route here by affinity may find this
        # node's buffer stale: it reads the store (and takes the visitor over) once.
        warm = self._affine(request, visitor_id)

        def read() -> VisitorPage:
            nonlocal warm
            buffer = ctx.buffers.get(visitor_id) if warm else None
            if buffer is not None and after >= buffer.floor:
                return VisitorPage(*buffer.since(after, ctx.config.page_size))
            warm = True
            return self._read_store(visitor_id, after)

        key = visitor_key(visitor_id)
        page, ephemeral = ctx.long_poll([key], read, timeout, limited=key)
        response = json_response(
            {
                "events": page.events + ephemeral,
                "cursor": ctx.cursor("v", visitor_id, page.upto),
                "more": page.more,
            }
        )
        self._set_affinity(request, response, visitor_id)
        return response

    def _read_store(self, visitor_id: str, after: int) -> VisitorPage:
        """The cold path of a poll: take the visitor over, read its events after
        ``after`` from the store, and build this node's buffer from them."""
        ctx, store = self.ctx, self.ctx.store
        visitor = store.get_visitor(visitor_id)
        if visitor is None:
            raise Unauthorized("open a visitor session first")
        # Collect notices from here on, before set_node (in _own) re-points the agents'
        # replies here and before the read: subscribe before read, so that an event
        # committed at any moment is in the read, in a notice, or in both (merged by seq).
        build = ctx.buffers.begin(visitor_id)
        try:
            # Read before the events, so the seqs it names are never ahead of them.
            conversations = {c.id: c for c in store.visitor_conversations(visitor_id)}
            for mine in conversations.values():
                self._own(mine)
            if all(c.status == "closed" for c in conversations.values()):
                # Nothing to take over, but this node serves the visitor's polls now:
                # the others answer theirs, so that they park on one node at a time.
                ctx.delivery.moved(visitor_id)
            page = store.visitor_feed(visitor_id, after, ctx.config.page_size)
            rendered: list[dict[str, Any]] = []
            for event in page.events:
                conversation: Conversation | None = conversations.get(event.conversation_id)
                if event.type == "conversation_closed" and (
                    conversation is None or conversation.status != "closed"
                ):
                    conversation = store.get_conversation(event.conversation_id)
                if conversation is not None:
                    rendered += ctx.buffered(conversation, [event], visitor)
        except BaseException:
            ctx.buffers.abandon(visitor_id, build)
            raise
        if page.more:
            ctx.buffers.abandon(visitor_id, build)
        else:
            last_seq = {c.id: c.last_seq for c in conversations.values()}
            events = [Buffered(**r) for r in rendered]
            ctx.buffers.finish(visitor_id, build, after, events, last_seq)
        return VisitorPage([r["json"] for r in rendered], page.upto, page.more)

    def visitor_history(self, request: Request, body: dict[str, Any], visitor: Visitor) -> Response:
        before = query_int(request, "before")
        limit = min(max(query_int(request, "limit", 50) or 50, 1), 100)
        conversation = self._latest(visitor)
        if conversation is None:
            return json_response({"messages": []})
        if before is None:
            before = conversation.last_seq + 1
        messages = self.ctx.store.messages(conversation.id, before_seq=before, limit=limit)
        return json_response({"messages": [message_json(m) for m in messages]})

    def visitor_typing(self, request: Request, body: dict[str, Any], visitor: Visitor) -> Response:
        conversation = self.ctx.store.open_conversation(visitor.id)
        if conversation is not None:
            author = {"kind": "visitor", "id": visitor.id, "name": visitor.name}
            event = ephemeral_json(
                "typing", conversation.id, utcnow(), {"typing": body["typing"], "author": author}
            )
            self.ctx.delivery.to_agents(conversation, event)
        return no_content()

    def visitor_read(self, request: Request, body: dict[str, Any], visitor: Visitor) -> Response:
        conversation = self._latest(visitor)
        if conversation is not None and conversation.agent_id is not None:
            author = {"kind": "visitor", "id": visitor.id, "name": visitor.name}
            seq = min(body["seq"], conversation.last_seq)
            event = ephemeral_json(
                "read", conversation.id, utcnow(), {"seq": seq, "author": author}
            )
            self.ctx.delivery.to_agents(conversation, event)
        return no_content()

    def visitor_close(self, request: Request, body: dict[str, Any], visitor: Visitor) -> Response:
        conversation = self._latest(visitor)
        if conversation is None:
            raise NotFound("there is no conversation to close")
        change = self.ctx.store.close(
            conversation.id, Author("visitor", visitor.id, visitor.name), utcnow()
        )
        if change.events:
            rendered = self.ctx.buffered(change.conversation, change.events, visitor)
            self.ctx.delivery.to_visitor(change.conversation, events=rendered)
            self.ctx.delivery.to_agents(change.conversation, stored=change.events, everyone=True)
        return json_response({"conversation": conversation_json(change.conversation, visitor)})

    def visitor_rating(self, request: Request, body: dict[str, Any], visitor: Visitor) -> Response:
        conversation = self._latest(visitor)
        if conversation is None:
            raise NotFound("there is no conversation to rate")
        self.ctx.store.rate(conversation.id, body["score"], body.get("comment", ""), utcnow())
        return no_content()
