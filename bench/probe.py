"""A /healthz latency probe in its own process, so the load generator's event loop cannot delay it.

    python bench/probe.py PORT [EVERY_SECONDS]

GETs /healthz on one keep-alive connection every EVERY_SECONDS (0.01) until a line arrives on
stdin, then prints the latencies (seconds) as one JSON list. `start_probe` / `stop_probe` drive
it from a benchmark.

The probe asks to run above normal priority (nice -10, where allowed): it is the instrument, and on
a small machine shared with the load generator, the server and its signing process, the time the
probe itself waits for a core would otherwise be counted as the server's latency. The server and
the load are left at their own priorities. `start_probe` reports whether the raise was allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import select
import sys
import time


def main() -> None:
    port, every = int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.01
    conn, latencies = http.client.HTTPConnection("127.0.0.1", port, timeout=30), []
    raised = False
    with contextlib.suppress(PermissionError):
        os.nice(-10)
        raised = True
    print("ready" if raised else "ready, at normal priority", flush=True)
    while not select.select([sys.stdin], [], [], every)[0]:
        started = time.perf_counter()
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"/healthz answered {response.status}")
        latencies.append(time.perf_counter() - started)
    print(json.dumps(latencies), flush=True)


async def start_probe(port: int, every: float = 0.01) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, str(port), str(every),
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    said = await proc.stdout.readline()
    assert said.startswith(b"ready"), said
    if said != b"ready\n":
        print(f"(the /healthz probe runs {said.decode().strip().removeprefix('ready, ')}: its own waits count as latency)", file=sys.stderr)
    return proc


async def stop_probe(proc: asyncio.subprocess.Process) -> list[float]:
    proc.stdin.write(b"stop\n")
    await proc.stdin.drain()
    out, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"the /healthz probe failed (exit {proc.returncode})")
    return json.loads(out)


if __name__ == "__main__":
    main()
