"""`python -m llava_st.data.synth run|analyze|annotate|refine|filter ...`: `llava-st data synth ...` as a
module, for launchers: `torchrun --nproc_per_node N -m llava_st.data.synth run IN WORKDIR ...` shards the
input over the ranks (synth.shards)."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
