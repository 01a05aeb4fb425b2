"""Dataset per-sample time: llava_st's GroundingDataset on an STVG record vs upstream's own loading.

Both read the same record (a 20 s, 25 fps, 640 x 360 mp4; 64 frames forced-uniform, LLaVA-Video's data
arguments) through upstream LLaVA-NeXT's `LazySupervisedDataset`:
  upstream:  `LazySupervisedDataset[0]` with upstream's `process_video_with_decord` (text loss only);
  llava_st:  `GroundingDataset[0]`: the shared sampler, the snapped-span answer, per-frame box targets
             and the description's token positions.
Items alternate (upstream, llava_st, upstream, ...) so load changes on a shared CPU hit both alike.
"""

import sys

from . import common


def run(args) -> int:
    from llava.train import train as upstream
    from llava.train.train import LazySupervisedDataset

    from llava_st.core.batch import GROUNDING_BOXES
    from llava_st.hosts.llava_next.data import GroundingDataset, read_video_for_upstream

    frames = 8 if args.quick else 64
    root, path = common.stvg_sample()
    tok = common.tokenizer()
    data_args = common.upstream_data_args(root, frames)
    upstream_reader = upstream.process_video_with_decord
    plain = LazySupervisedDataset(str(path), tok, data_args)
    grounding = GroundingDataset(str(path), tok, data_args)  # routes upstream's reader to llava_st's

    def upstream_item():
        upstream.process_video_with_decord = upstream_reader
        item = plain[0]
        assert item["image"][0][0].shape[0] == frames
        return item

    def st_item():
        upstream.process_video_with_decord = read_video_for_upstream
        item = grounding[0]
        assert item["grounding"][GROUNDING_BOXES].shape[0] == frames and not grounding.bad.entries
        return item

    record = common.Record("dataset", args, "llava_next",
                           {"video": f"{path.stem}.mp4 (500 frames, 25 fps, 640x360)", "frames": frames, "record": "STVG"})
    t = common.time_interleaved({"upstream": upstream_item, "llava_st": st_item}, args.repeats, warmup=1)
    upstream.process_video_with_decord = upstream_reader
    med = {k: common.median(v) for k, v in t.items()}
    ratio = med["llava_st"] / med["upstream"]
    record.data["results"] = {
        "times_s": {k: [round(x, 4) for x in v] for k, v in t.items()},
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "llava_st_over_upstream": round(ratio, 4),
    }
    record.data["targets"] = [common.target(f"STVG sample ({frames} frames) / upstream's loading of the same file", ratio, 1.1, "<=", "x")]
    record.write()
    return 0


def main(argv=None) -> int:
    args, code = common.start(common.parser(__doc__.splitlines()[0], repeats=15), argv)
    if args is None:
        return code
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
