"""`llava-st` command line: one dispatcher, each subcommand lives with its code and exposes main(argv).

    llava-st ground ...   ground descriptions in a video with a checkpoint (llava_st.api)
    llava-st train ...    train with upstream LLaVA-NeXT's train() (llava_st.train)
    llava-st eval ...     STVG / VTG / REC evaluation drivers (llava_st.eval.cli)
    llava-st data ...     validate, convert, mix, synthesise Uni-STG data (llava_st.data.cli)
    llava-st viz ...      draw tubes onto a video (llava_st.eval.viz)
    llava-st demo ...     the README's main job (llava_st.demo)
"""

import importlib
import sys

COMMANDS = {
    "ground": "llava_st.api",
    "train": "llava_st.train",
    "eval": "llava_st.eval.cli",
    "data": "llava_st.data.cli",
    "viz": "llava_st.eval.viz",
    "demo": "llava_st.demo",
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
