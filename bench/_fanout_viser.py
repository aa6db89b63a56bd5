"""Fan-out benchmark, viser side: a viser server with K scene nodes, and the driver inside it.

Run by bench/fanout.py, not by hand. viser has no ingest path: telemetry reaches it through its
Python scene API in the server process, so the driver runs here, in the main thread, while viser
serves from its own event-loop thread. Element i is the box "/e{i}"; "set its value to c" is
`handle.position = (c, 0, 0)`; the issue time of an update is taken just before that call.

JSON lines: prints `{"ready": port}` once the K nodes exist (each at counter 1); on stdin
`{"go": t0, "rate": R, "duration": T, "seed": s, "log": path}` runs the schedule from monotonic t0,
writes the issue times to `log` (.npz) and prints `{"done": ...}`; `{"quit": true}` or EOF stops.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time

import numpy as np

from bench._fanout_stats import SEED_COUNTER, make_schedule


def say(**kw) -> None:
    print(json.dumps(kw), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, required=True)
    args = ap.parse_args(argv)

    # viser prints a banner with rich on stdout; keep our stdout for JSON lines.
    with contextlib.redirect_stdout(io.StringIO()):
        import viser

        server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
        handles = [
            server.scene.add_box(f"/e{i}", dimensions=(0.1, 0.1, 0.1), position=(float(SEED_COUNTER), 0.0, 0.0))
            for i in range(args.k)
        ]
    say(ready=server.get_port())

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        if "go" in cmd:
            sched = make_schedule(args.k, cmd["rate"], cmd["duration"], cmd.get("seed", 1))
            elems = sched.elems.tolist()
            counters = sched.counters.astype(float).tolist()
            issue = np.empty(sched.n)
            t0 = cmd["go"]
            per = sched.per_tick
            mono = time.monotonic
            j = 0
            for tick in range(sched.n_ticks):
                delay = t0 + tick * sched.tick - mono()
                if delay > 0:
                    time.sleep(delay)
                for _ in range(per):
                    issue[j] = mono()
                    handles[elems[j]].position = (counters[j], 0.0, 0.0)
                    j += 1
            np.savez(cmd["log"], issue=issue)
            say(done=True, n=int(sched.n), seconds=float(issue[-1] - issue[0]))
    with contextlib.redirect_stdout(io.StringIO()):
        server.stop()


if __name__ == "__main__":
    main()
