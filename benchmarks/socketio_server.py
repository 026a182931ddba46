"""The python-socketio baseline: the same chat exchange, a room per conversation.

At its best settings for this exchange: gevent (monkey-patched), the
long-polling transport only (the comparison is of long-polling servers), no
logging, no compression, pings far apart, served by gevent's ``pywsgi`` with
``TCP_NODELAY`` (without it every keep-alive answer waits for a delayed ACK),
as a user deploying it would. ``--lean`` serves it with livesupport's own
trimmed server instead, to show what that server alone is worth. It keeps
nothing: messages are relayed from memory, so it does less work per message
than livesupport.

A client emits ``join`` with ``{"room": ...}`` and ``msg`` with
``{"room", "id", "body"}``; every other member of the room receives ``msg``,
and with ``--echo`` the sender too (what livesupport does for a sender's other
tabs, so that both do the same work per message).
"""

from __future__ import annotations

import argparse
import socket
from typing import Any


def main() -> None:
    from gevent import monkey

    monkey.patch_all()
    import socketio  # type: ignore[import-untyped]

    from livesupport.server import raise_open_file_limit, serve

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ping-interval", type=float, default=300.0)
    parser.add_argument("--echo", action="store_true", help="send to the sender too")
    parser.add_argument(
        "--lean", action="store_true", help="on livesupport's trimmed gevent server instead"
    )
    args = parser.parse_args()
    sio = socketio.Server(
        async_mode="gevent",
        transports=["polling"],
        logger=False,
        engineio_logger=False,
        http_compression=False,
        ping_interval=args.ping_interval,
        ping_timeout=60,
        cors_allowed_origins=None,
        max_http_buffer_size=1_000_000,
    )

    @sio.on("join")  # type: ignore[untyped-decorator]
    def join(sid: str, data: dict[str, str]) -> None:
        sio.enter_room(sid, data["room"])

    @sio.on("msg")  # type: ignore[untyped-decorator]
    def msg(sid: str, data: dict[str, str]) -> None:
        sio.emit("msg", data, room=data["room"], skip_sid=None if args.echo else sid)

    app = socketio.WSGIApp(sio)
    if args.lean:
        serve(app, "127.0.0.1", args.port, on_ready=lambda url: None)
        return
    # What a user deploying python-socketio runs: gevent's own WSGI server, with the
    # one setting that matters for keep-alive long-polling (TCP_NODELAY).
    from gevent.pywsgi import WSGIServer

    class NoDelayServer(WSGIServer):
        def handle(self, sock: socket.socket, address: Any) -> None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handle(sock, address)

    raise_open_file_limit()
    NoDelayServer(("127.0.0.1", args.port), app, log=None, backlog=2048).serve_forever()


if __name__ == "__main__":
    main()
