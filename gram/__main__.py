import signal
import sys

# before the imports (torch takes seconds): Ctrl-C while starting up ends quietly, not in a traceback
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))

from .cli import main  # noqa: E402

main()
