"""``python -m diarization``: the same as the ``diarization`` command."""

from diarization.cli import main

raise SystemExit(main())
