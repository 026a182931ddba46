"""The agent routes: what the console calls.

Every route but login needs a live session; every state-changing one also the
session's CSRF token (checked by the middleware before the handler runs).
Only the holder of a conversation, or a supervisor, sends to, transfers or
closes it: anyone else gets 409, as for a claim of a held conversation.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from werkzeug.wrappers import Request, Response

from .auth import AGENT_COOKIE, AgentContext
from .clock import utcnow
from .context import Context
from .delivery import AGENTS, agent_key
from .errors import BadRequest, Conflict, Invalid, NotFound
from .http import json_response, no_content, query_int
from .schemas import ID_PATTERN
from .serialize import conversation_json, ephemeral_json, event_json, message_json
from .store.base import (
    Agent,
    Change,
    Conversation,
    FeedPage,
    NotHeld,
    StoreConflict,
    StoredEvent,
    Visitor,
)

STATUSES = ("waiting", "active", "closed")
ID = re.compile(ID_PATTERN)
RENDERED = 4096  # conversation JSONs kept, shared by every agent's poll
TOLD = 50_000  # conversations whose state one agent was told, remembered per agent


def agent_json(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "name": agent.name, "email": agent.email, "role": agent.role,
            "status": agent.status}  # fmt: skip


class AgentAPI:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # A conversation's JSON by (id, pos, node): every change takes a new pos, so an
        # entry never goes stale, and N agents' polls render a change once, not N times.
        self._rendered: OrderedDict[tuple[str, int, str], dict[str, Any]] = OrderedDict()
        # agent id -> {conversation id: (status, holder)} as last told to that agent's polls.
        self._told: dict[str, dict[str, tuple[str, str | None]]] = {}

    # -- helpers -------------------------------------------------------------
    def _visitors(self, conversations: Iterable[Conversation]) -> dict[str, Visitor | None]:
        store = self.ctx.store
        return {c.visitor_id: store.get_visitor(c.visitor_id) for c in conversations}

    def _json(self, conversation: Conversation) -> dict[str, Any]:
        return conversation_json(conversation, self.ctx.store.get_visitor(conversation.visitor_id))

    def _conversation(self, cid: str) -> Conversation:
        conversation = self.ctx.store.get_conversation(cid) if len(cid) <= 64 else None
        if conversation is None:
            raise NotFound("no such conversation")
        return conversation

    def _changed(self, change: Change, *, also: str | None = None) -> Response:
        """Tell both sides about a committed state change and answer with it."""
        if change.events:
            rendered = self.ctx.buffered(change.conversation, change.events)
            self.ctx.delivery.to_visitor(change.conversation, events=rendered)
            self.ctx.delivery.to_agents(change.conversation, stored=change.events, everyone=True)
            if also:
                self.ctx.delivery.to_agents(change.conversation, also=also)
            self.ctx.announce_queue()
        return json_response({"conversation": self._json(change.conversation)})

    # -- session -------------------------------------------------------------
    def agent_login(self, request: Request, body: dict[str, Any]) -> Response:
        agent, cookie, csrf_token = self.ctx.auth.login(
            body["email"], body["password"], request.remote_addr or "unknown"
        )
        response = json_response({"agent": agent_json(agent), "csrf_token": csrf_token})
        response.set_cookie(
            AGENT_COOKIE,
            cookie,
            path=request.script_root + self.ctx.config.prefix,
            httponly=True,
            samesite="Strict",
            secure=request.scheme == "https",
        )
        return response

    def agent_session(self, request: Request, body: dict[str, Any], who: AgentContext) -> Response:
        return json_response({"agent": agent_json(who.agent), "csrf_token": who.session.csrf_token})

    def agent_logout(self, request: Request, body: dict[str, Any], who: AgentContext) -> Response:
        store, now = self.ctx.store, utcnow()
        for conversation in store.list_conversations(
            status="active", agent_id=who.agent.id, limit=1000
        ):
            try:
                self._changed(store.release(conversation.id, who.agent, now))
            except (NotHeld, KeyError):
                pass  # taken or closed meanwhile
        store.delete_session(who.token_hash)
        self.ctx.delivery.session_ended(who.token_hash)
        store.update_agent(who.agent.id, status="offline")
        response = no_content()
        response.delete_cookie(
            AGENT_COOKIE, path=request.script_root + self.ctx.config.prefix, httponly=True,
            samesite="Strict", secure=request.scheme == "https",
        )  # fmt: skip
        return response

    def agent_status(self, request: Request, body: dict[str, Any], who: AgentContext) -> Response:
        self.ctx.store.update_agent(who.agent.id, status=body["status"], last_seen_at=utcnow())
        return no_content()

    def agent_list(self, request: Request, body: dict[str, Any], who: AgentContext) -> Response:
        agents = [a for a in self.ctx.store.list_agents() if not a.disabled]
        return json_response({"agents": [agent_json(a) for a in agents]})

    # -- conversations -------------------------------------------------------
    def agent_conversations(
        self, request: Request, body: dict[str, Any], who: AgentContext
    ) -> Response:
        status = request.args.get("status") or None
        if status is not None and status not in STATUSES:
            raise BadRequest("status must be waiting, active or closed")
        limit = min(max(query_int(request, "limit", 50) or 50, 1), 100)
        before = request.args.get("before") or None
        if before is not None and not ID.fullmatch(before):
            raise BadRequest("before must be a conversation id")
        rows = self.ctx.store.list_conversations(status=status, limit=limit, before=before)  # type: ignore[arg-type]
        visitors = self._visitors(rows)
        told = self._told.setdefault(who.agent.id, {})
        for c in rows:  # on the agent's screen now: its polls announce their changes
            told[c.id] = (c.status, c.agent_id)
        return json_response(
            {"conversations": [conversation_json(c, visitors[c.visitor_id]) for c in rows]}
        )

    def agent_conversation(
        self, request: Request, body: dict[str, Any], who: AgentContext, cid: str
    ) -> Response:
        after = query_int(request, "after_seq")
        conversation = self._conversation(cid)
        messages = self.ctx.store.messages(conversation.id, after_seq=after, limit=10_000)
        return json_response(
            {
                "conversation": self._json(conversation),
                "messages": [message_json(m) for m in messages],
            }
        )

    def agent_claim(
        self, request: Request, body: dict[str, Any], who: AgentContext, cid: str
    ) -> Response:
        self._conversation(cid)
        try:
            change = self.ctx.store.claim(cid, who.agent, utcnow())
        except NotHeld:
            raise Conflict("another agent holds this conversation") from None
        except StoreConflict:
            raise Conflict("the conversation is closed") from None
        return self._changed(change)

    def agent_send(
        self, request: Request, body: dict[str, Any], who: AgentContext, cid: str
    ) -> Response:
        self.ctx.check_body(body["body"])
        try:
            # No read of the conversation first: the store's KeyError says it is missing.
            result = self.ctx.store.agent_send(
                cid, who.agent, body["client_msg_id"], body["body"], utcnow()
            )
        except KeyError:
            raise NotFound("no such conversation") from None
        except NotHeld:
            raise Conflict("another agent holds this conversation") from None
        except StoreConflict:
            raise Conflict("the conversation is closed") from None
        if result.created:
            claimed = any(e.type == "agent_joined" for e in result.events)
            rendered = self.ctx.buffered(result.conversation, result.events)
            self.ctx.delivery.to_visitor(result.conversation, events=rendered)
            self.ctx.delivery.to_agents(
                result.conversation, stored=result.events, everyone=claimed, also=who.agent.id
            )
        return json_response(
            {"message": message_json(result.message)}, status=201 if result.created else 200
        )

    def agent_typing(
        self, request: Request, body: dict[str, Any], who: AgentContext, cid: str
    ) -> Response:
        conversation = self._conversation(cid)
        if conversation.status == "active" and conversation.agent_id == who.agent.id:
            author = {"kind": "agent", "id": who.agent.id, "name": who.agent.name}
            event = ephemeral_json(
                "typing", cid, utcnow(), {"typing": body["typing"], "author": author}
            )
            self.ctx.delivery.to_visitor(conversation, event)
        return no_content()

    def agent_transfer(
        self, request: Request, body: dict[str, Any], who: AgentContext, cid: str
    ) -> Response:
        conversation = self._conversation(cid)
        target = self.ctx.store.get_agent(body["agent_id"])
        if target is None or target.disabled:
            raise Invalid("agent_id names no active agent")
        if conversation.agent_id == target.id:
            raise Conflict("that agent already holds the conversation")
        try:
            change = self.ctx.store.transfer(cid, who.agent, target, utcnow())
        except NotHeld:
            raise Conflict("another agent holds this conversation") from None
        except StoreConflict:
            raise Conflict("the conversation is closed") from None
        return self._changed(change, also=target.id)

    def agent_close(
        self, request: Request, body: dict[str, Any], who: AgentContext, cid: str
    ) -> Response:
        conversation = self._conversation(cid)
        agent = who.agent
        if (
            conversation.status != "closed"
            and agent.role != "supervisor"
            and conversation.agent_id != agent.id
        ):
            raise Conflict("only the agent holding the conversation closes it")
        return self._changed(self.ctx.store.close(cid, agent.author, utcnow()))

    # -- polling -------------------------------------------------------------
    def agent_poll(self, request: Request, body: dict[str, Any], who: AgentContext) -> Response:
        ctx, agent_id, log = self.ctx, who.agent.id, self.ctx.delivery.agent_log
        after = ctx.read_cursor(request, "a", agent_id)
        if after is None:
            after = ctx.store.feed_position()
        timeout = ctx.poll_timeout(request)
        start, epoch = after, log.epoch

        def read() -> FeedPage:
            # From this node's copy of the feed where it is complete, else the store,
            # whose answer makes the copy complete from there on.
            nonlocal epoch
            epoch = log.epoch
            page = log.page(agent_id, start, ctx.config.page_size)
            if page is None:
                page = ctx.store.agent_poll_feed(agent_id, start, ctx.config.page_size)
                log.rebase(page.upto, epoch)
            return page

        def recheck() -> float | None:
            # A hole in the log that does not fill must not hold the poll to its timeout.
            intervals = [i for i in (ctx.delivery.recheck_interval(), log.hole_wait()) if i]
            return min(intervals, default=None)

        page, ephemeral = ctx.long_poll(
            [AGENTS, agent_key(agent_id)], read, timeout, recheck=recheck
        )
        visitors = getattr(page, "visitors", None)
        if visitors is None:
            visitors = log.visitors(page.conversations)
        events = self._feed_events(page.events, page.conversations, agent_id, visitors, epoch)
        # Typing of conversations this agent neither holds nor could take is not its business.
        relevant = [e for e in ephemeral if self._concerns(e, agent_id)]
        return json_response(
            {
                "events": events + relevant,
                "cursor": ctx.cursor("a", agent_id, page.upto),
                "more": page.more,
            }
        )

    def _current(self, cid: str) -> Conversation | None:
        """The conversation as this node's copy of the feed last saw it, else as stored."""
        return self.ctx.delivery.agent_log.conversation(cid) or self.ctx.store.get_conversation(cid)

    def _concerns(self, event: dict[str, Any], agent_id: str) -> bool:
        conversation = self._current(event["conversation_id"])
        return conversation is not None and (
            conversation.status == "waiting" or conversation.agent_id == agent_id
        )

    def _feed_events(
        self,
        stored: Iterable[StoredEvent],
        changed: Iterable[Conversation],
        agent_id: str,
        visitors: Mapping[str, Visitor],
        epoch: int,
    ) -> list[dict[str, Any]]:
        """The agent's events in feed order: its durable events, and a
        ``conversation_waiting``/``conversation_updated`` for each changed conversation
        that concerns it (waiting, or held by it) or whose status or holder changed
        since this node last showed it to the agent (by a poll or the list). A new
        message in another agent's conversation is not news for this one: announcing
        every such change to every agent costs each poll the whole deployment's
        traffic."""
        stored = list(stored)
        told = self._told.setdefault(agent_id, {})
        if len(told) > TOLD:
            told.clear()  # forgetting only repeats announcements, which clients tolerate
        announced: list[Conversation] = []
        for c in changed:
            state = (c.status, c.agent_id)
            shown = told.get(c.id)
            told[c.id] = state
            if c.status == "waiting" or c.agent_id == agent_id:
                announced.append(c)
            elif shown is not None and shown != state:
                announced.append(c)
            # Another agent's conversation this agent was never shown (neither by a poll
            # nor by the list) is not on its screen: there is nothing to correct there,
            # and telling each agent about every conversation once floods them all.
        closed_ids = {e.conversation_id for e in stored if e.type == "conversation_closed"}
        known = {c.id: c for c in announced}
        extra = [self._current(cid) for cid in closed_ids - known.keys()]
        as_json = self._render([*announced, *(c for c in extra if c is not None)], visitors, epoch)
        items: list[tuple[int, int, dict[str, Any]]] = [
            (e.pos, 0, event_json(e, as_json.get(e.conversation_id))) for e in stored
        ]
        for c in announced:
            kind = "conversation_waiting" if c.status == "waiting" else "conversation_updated"
            items.append((c.pos, 1, ephemeral_json(kind, c.id, c.updated_at, as_json[c.id])))
        return [item for _, _, item in sorted(items, key=lambda t: (t[0], t[1]))]

    def _render(
        self, conversations: Iterable[Conversation], visitors: Mapping[str, Visitor], epoch: int
    ) -> dict[str, dict[str, Any]]:
        """Conversation JSONs by id, from the shared cache where it has them;
        ``visitors`` are those at hand (the others are looked up, and kept by the
        agent log if it is still at ``epoch``)."""
        cache, found, missing = self._rendered, {}, []
        for c in conversations:
            hit = cache.get((c.id, c.pos, c.node_id))
            if hit is None:
                missing.append(c)
            else:
                found[c.id] = hit
        if missing:
            known: dict[str, Visitor | None] = dict(visitors)
            looked_up = [c for c in missing if c.visitor_id not in known]
            if looked_up:
                known.update(self._visitors(looked_up))
                self.ctx.delivery.agent_log.remember(looked_up, known, epoch)
            for c in missing:
                found[c.id] = cache[(c.id, c.pos, c.node_id)] = conversation_json(
                    c, known[c.visitor_id]
                )
            while len(cache) > RENDERED:
                cache.popitem(last=False)
        return found
