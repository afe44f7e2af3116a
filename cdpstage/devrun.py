"""`python -m cdpstage.devrun`: run the Procfile's processes for development (`make run`).

Why not honcho: with its output piped (`make run | cat`), Ctrl-C kills the reader first, honcho
dies on the broken pipe before it stops its children, and web, sandbox and workers keep their
ports. Here every child runs in its own session and is stopped whatever happens to stdout; the
setup's output (the demo users and their passwords) is printed last, once the services are up,
so it does not scroll away under the services' start-up lines.
"""

import argparse
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# How long the children get to stop after SIGTERM (an RQ worker finishes its current step).
STOP_GRACE_SECONDS = 15.0
# Services must be up within this; the demo users are printed then even if one is late.
READY_TIMEOUT_SECONDS = 90.0
# Output quiet for this long after the ports opened = start-up lines are done.
SETTLE_SECONDS = 1.5
SETTLE_LIMIT_SECONDS = 10.0


@dataclass
class Child:
    name: str
    command: str
    process: subprocess.Popen | None = None
    printed: bool = False
    reader: threading.Thread | None = field(default=None, repr=False)


def read_procfile(path: Path, names: Sequence[str]) -> list[Child]:
    """The `name: command` lines of a Procfile, only `names` (in Procfile order) if given."""
    children = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        children.append(Child(name=name.strip(), command=command.strip()))
    unknown = set(names) - {c.name for c in children}
    if unknown:
        raise SystemExit(f"Not in {path}: {', '.join(sorted(unknown))}")
    return [c for c in children if not names or c.name in names]


def port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (a bind attempt: a connect would make the
    HTTPS sandbox log a failed TLS handshake)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


class Supervisor:
    """Starts the children, prefixes their output, stops every one of them on any exit path."""

    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self.width = max(len(c.name) for c in children)
        self.lines: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.output_ok = True
        self.stopping = threading.Event()
        self.last_output = time.monotonic()

    # ---- output ---------------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Write to stdout; a reader that went away (broken pipe) must not stop the shutdown."""
        if not self.output_ok:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (BrokenPipeError, OSError):
            self.output_ok = False
            # Later flushes (at interpreter exit too) go nowhere instead of raising again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            self.stopping.set()

    def say(self, text: str) -> None:
        self.write(f"{time.strftime('%H:%M:%S')} {'system':<{self.width}} | {text}\n")

    def _pump(self, child: Child) -> None:
        assert child.process is not None
        assert child.process.stdout is not None
        for raw in child.process.stdout:
            self.lines.put((child.name, raw.decode("utf-8", errors="replace").rstrip("\n")))
        self.lines.put((child.name, ""))  # wake the loop: this child's output ended

    def drain(self, wait: float) -> None:
        """Print what the children wrote, waiting up to `wait` seconds for the first line."""
        try:
            item = self.lines.get(timeout=wait)
        except queue.Empty:
            return
        while item is not None:
            name, line = item
            if line:
                for child in self.children:
                    if child.name == name:
                        child.printed = True
                self.last_output = time.monotonic()
                self.write(f"{time.strftime('%H:%M:%S')} {name:<{self.width}} | {line}\n")
            try:
                item = self.lines.get_nowait()
            except queue.Empty:
                item = None

    # ---- processes ------------------------------------------------------------------------

    def start(self) -> None:
        for child in self.children:
            child.process = subprocess.Popen(
                child.command,
                shell=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # Its own session: the terminal's Ctrl-C reaches us, not it, and one killpg
                # stops it with everything it forked (work horses, the RQ scheduler).
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            child.reader = threading.Thread(target=self._pump, args=(child,), daemon=True)
            child.reader.start()
            self.say(f"started {child.name} (pid {child.process.pid})")

    def exited(self) -> Child | None:
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                return child
        return None

    def wait_ready(self, ports: Sequence[int]) -> bool:
        """Until the ports accept connections, every child has spoken and output has settled."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not self.stopping.is_set():
            self.drain(0.2)
            if self.exited() is not None:
                return False
            if all(port_taken(p) for p in ports) and all(c.printed for c in self.children):
                break
        settle_until = time.monotonic() + SETTLE_LIMIT_SECONDS
        while time.monotonic() < settle_until and not self.stopping.is_set():
            self.drain(0.2)
            if time.monotonic() - self.last_output >= SETTLE_SECONDS:
                break
        return not self.stopping.is_set() and self.exited() is None

    def run_until_stopped(self) -> None:
        while not self.stopping.is_set():
            self.drain(0.5)
            child = self.exited()
            if child is not None:
                self.drain(0.2)
                self.say(f"{child.name} exited with code {child.process.returncode}; stopping all")
                return

    def stop(self) -> None:
        """SIGTERM every child's process group, then SIGKILL whatever is left after the grace."""
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
        for child in running:
            self.say(f"stopping {child.name}")
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in running:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop in {STOP_GRACE_SECONDS:.0f} s; killing it")
        # The group too: a shell's or worker's own children may outlive their parent.
        for child in self.children:
            if child.process is not None:
                self._signal(child, signal.SIGKILL)
                child.process.wait()
        self.drain(0.1)

    @staticmethod
    def _signal(child: Child, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, sig)


def run_setup(command: str, supervisor: Supervisor) -> str | None:
    """Run the setup command, capturing its output for later; None (after printing it) on error."""
    supervisor.say(f"setting up: {command}")
    result = subprocess.run(
        command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
    )
    output = result.stdout.decode("utf-8", errors="replace")
    if result.returncode != 0:
        supervisor.write(output)
        supervisor.say(f"setup failed with code {result.returncode}")
        return None
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="Procfile entries to run (default: all)")
    parser.add_argument("--procfile", type=Path, default=Path("Procfile"))
    parser.add_argument("--setup", help="a command to run first; its output is printed last")
    parser.add_argument(
        "--wait-port", type=int, action="append", default=[], help="a port that must open"
    )
    parser.add_argument("--banner", default="", help="printed after the setup's output")
    args = parser.parse_args(argv)

    supervisor = Supervisor(read_procfile(args.procfile, args.names))

    def on_signal(_signum: int, _frame: object) -> None:
        supervisor.stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    # A broken stdout is handled in write(); never die of SIGPIPE mid-shutdown.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    setup_output = ""
    if args.setup:
        output = run_setup(args.setup, supervisor)
        if output is None:
            return 1
        setup_output = output
    if supervisor.stopping.is_set():
        return 130
    try:
        supervisor.start()
        if supervisor.wait_ready(args.wait_port):
            supervisor.write("\n" + setup_output.rstrip("\n") + "\n\n" if setup_output else "\n")
            if args.banner:
                supervisor.write(args.banner + "\n\n")
            supervisor.run_until_stopped()
    finally:
        supervisor.stop()
    return 0 if supervisor.output_ok else 1


if __name__ == "__main__":
    sys.exit(main())
