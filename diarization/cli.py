"""``diarization``: the one entry point of the container image, with a mode per command.

diarization shim       the HTTP shim: sync API, Knative receiver, probes (port $PORT)
diarization consumer   the Kafka consumer (probes on $CONSUMER_PROBE_PORT)
diarization models     build the offline model bundle (``models build``)
"""

from __future__ import annotations

import sys

MODES = ("shim", "consumer", "models")


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the mode named by the first argument."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"} or args[0] not in MODES:
        print(__doc__.strip())
        return 0 if args and args[0] in {"-h", "--help"} else 2
    mode, rest = args[0], args[1:]
    if mode == "shim":
        from http_shim.server import main as run
    elif mode == "consumer":
        from consumer.kafka.worker import main as run
    else:
        from consumer.engine.bundle import main as run
    return run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
