"""A tiny random GroundingDINO (transformers) built offline: for the Annotator's tests and dry runs.

The text side is a 1-layer BERT over a vocabulary written here; the image side a 4-stage ResNet with
8-16 channels. Detections of a random model are noise: only shapes, thresholds and plumbing are real.
"""

from pathlib import Path

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ".",
    ",",
    "a",
    "an",
    "the",
    "man",
    "woman",
    "person",
    "dog",
    "cat",
    "car",
    "red",
    "box",
    "ball",
    "in",
    "with",
    "shirt",
]


def build_tiny_grounding_dino(out_dir, seed: int = 0, image_size: int = 64) -> str:
    """Save a random GroundingDinoForObjectDetection + GroundingDinoProcessor to `out_dir`; returns the path.

    Images are resized to a shortest edge of `image_size` pixels (longest at most 2x that).
    """
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        ResNetConfig,
    )

    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "preprocessor_config.json").exists():
        return str(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(out / "vocab.txt"))
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": image_size, "longest_edge": 2 * image_size})
    backbone = ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], out_features=["stage2", "stage3", "stage4"]
    )
    text = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone.to_dict(),
        text_config=text.to_dict(),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=10,
        num_feature_levels=3,
        max_text_len=32,
        encoder_n_points=2,
        decoder_n_points=2,
        use_timm_backbone=False,
        use_pretrained_backbone=False,
    )
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).save_pretrained(out)
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return str(out)
