"""What state a run is in and, when it did not complete, why: one line a reader can act on.

run.json's ``status`` alone misleads: a run that stopped on a missing ``--data`` path is
"failed" with every method "pending", and the reason sits in ``notes`` as "run stopped: ...".
So the cause is taken from where the runner records it: that note first, then the errors of
the methods that failed; the methods are blamed only when they did fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.reader import RunData

__all__ = ["RunState", "run_state", "STOPPED_PREFIX"]

STOPPED_PREFIX = "run stopped: "


@dataclass(frozen=True)
class RunState:
    """``kind``: complete | partial (some methods failed, others have results) | failed (no
    method finished) | running | interrupted | the raw status; ``cause``: one line, or None."""

    kind: str
    cause: str | None
    completed: tuple[str, ...]
    failed: tuple[str, ...]

    @property
    def has_results(self) -> bool:
        return self.kind in ("complete", "partial")


def _first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def run_state(data: RunData) -> RunState:
    """The state and cause of one run (see the module docstring)."""
    methods = {n: i for n, i in data.methods.items() if isinstance(i, dict)}
    completed = tuple(n for n, i in methods.items() if i.get("status") == "complete")
    failed = tuple(n for n, i in methods.items() if i.get("status") == "failed")
    status = data.status
    stopped = [str(n)[len(STOPPED_PREFIX):] for n in data.run.get("notes") or [] if str(n).startswith(STOPPED_PREFIX)]
    errors = "; ".join(f"{n} failed: {_first_line(methods[n].get('error') or 'no error message recorded')}"
                       for n in failed)
    if status == "complete":
        return RunState("complete", None, completed, failed)
    if status == "failed":
        cause = stopped[-1] if stopped else errors or "no cause recorded (see the run's log.txt)"
        if stopped and errors:
            cause = f"{cause} ({errors})"
        return RunState("partial" if completed else "failed", cause, completed, failed)
    if status == "interrupted":
        done = f"{len(completed)} of {len(methods)} methods finished" if methods else "no method finished"
        return RunState("interrupted", f"interrupted (Ctrl-C or SIGTERM); {done}; continue it with: "
                                       f"python -m harness run --resume {data.run_id}", completed, failed)
    if status == "running":
        return RunState("running", f"still running, or killed before it could record why (started "
                                   f"{str(data.run.get('created') or '?')[:16].replace('T', ' ')}; see its log.txt)",
                        completed, failed)
    return RunState(status, f"status {status!r}", completed, failed)
