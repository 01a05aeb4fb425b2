"""`python -m llava_st.data.synth ...` whose rank LLAVA_ST_KILL_RANK kills itself (SIGKILL, as the OOM
killer or a lost node would) when it starts annotating its (LLAVA_ST_KILL_AFTER + 1)-th record."""

import os
import signal
import sys

from llava_st.data import cli
from llava_st.data.synth import annotator

if __name__ == "__main__":
    if os.environ.get("RANK", "0") == os.environ["LLAVA_ST_KILL_RANK"]:
        left = [int(os.environ["LLAVA_ST_KILL_AFTER"])]
        call = annotator.Annotator.__call__

        def dying(self, record):
            if left[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            left[0] -= 1
            return call(self, record)

        annotator.Annotator.__call__ = dying
    sys.exit(cli.main(["synth", *sys.argv[1:]]))
