"""The project's benchmark: livesupport against python-socketio and nchan.

Run it with ``python -m benchmarks`` (``--quick`` for a one-minute pass, ``--help``
for the scenarios and stores); it prints a table, writes ``results/results.json``
and draws the plots in ``results/``. See the README's "Performance" section.

The parts: :mod:`.http` (a lean keep-alive HTTP/1.1 client over raw sockets),
:mod:`.servers` (starting the systems under test pinned to one core, reading
their CPU and memory), :mod:`.livesupport_load`, :mod:`.socketio_load` and
:mod:`.nchan_load` (the same exchanges spoken in each system's protocol),
:mod:`.scenarios` (capacity, chat, passthrough, cross-node) and :mod:`.report`.
"""
