import pytest
import torch

from llava_st.core import GroundingIndex, QueryGuidedSpaceDecoder, STConfig, build_visual_block


def _setup(B=2, F=3, S=4, D=16, T=5):
    torch.manual_seed(0)
    layouts, texts = [], []
    for _b in range(B):
        _, layout = build_visual_block(torch.zeros(F, S, D), torch.zeros(F, D))
        layouts.append(layout.shifted(2))
        texts.append(list(range(2 + layout.length, 2 + layout.length + T)))
    L = 2 + layouts[0].length + T + 3
    return GroundingIndex.collate(layouts, texts), L


@pytest.mark.parametrize(
    "opts",
    [{}, {"decoder_residual": True}, {"decoder_projections": True}, {"dual_cross_attention": False},
     {"decoder_reference": True, "decoder_projections": True, "decoder_residual": True}],
)
def test_shapes_range_and_gradients(opts):
    index, L = _setup()
    D = 16
    cfg = STConfig(**opts)
    dec = QueryGuidedSpaceDecoder(D, cfg)
    hidden = torch.randn(2, L, D, requires_grad=True)
    boxes = dec(hidden, index)
    assert boxes.shape == (2, 3, 4)
    assert (boxes > 0).all() and (boxes < 1).all()
    boxes.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.head.parameters())
    # the gradient reaches the query positions of the hidden states (and so the query embeddings)
    q = index.query_index[0]
    assert hidden.grad[0, q].abs().sum() > 0
    if cfg.dual_cross_attention:
        assert hidden.grad[0, index.text_index[0]].abs().sum() > 0
        assert hidden.grad[0, index.visual_index[0].flatten()].abs().sum() > 0
    else:
        assert hidden.grad[0, index.text_index[0]].abs().sum() == 0


def test_decoder_reads_only_its_frame():
    """Changing frame 2's visual states changes only frame 2's box (the paper-faithful decoder)."""
    index, L = _setup(B=1)
    dec = QueryGuidedSpaceDecoder(16, STConfig())
    hidden = torch.randn(1, L, 16)
    before = dec(hidden, index)
    hidden2 = hidden.clone()
    hidden2[0, index.visual_index[0, 2].flatten()] += torch.randn(4, 16)
    after = dec(hidden2, index)
    assert torch.allclose(before[0, :2], after[0, :2])
    assert not torch.allclose(before[0, 2], after[0, 2])


def test_grid_centres_read_row_major_square_grids_only():
    from llava_st.core.decoder import grid_centres

    mask = torch.zeros(1, 3, 9, dtype=torch.bool)
    mask[0, 0, :4] = True  # a 2 x 2 frame
    mask[0, 1, :9] = True  # 3 x 3
    mask[0, 2, :5] = True  # 5 tokens: not a grid
    centres = grid_centres(mask)
    assert centres[0, 0, :4].tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    assert centres[0, 1, 5].tolist() == pytest.approx([5 / 6, 1 / 2])  # row 1, column 2
    assert (centres[0, 2] == 0.5).all()


def test_reference_puts_the_centre_where_the_query_attends():
    """decoder_reference: with the head's centre logits at zero, the box centre is the attended token's
    centre; attending to another token of the 2 x 2 grid moves it there."""
    index, L = _setup(B=1, F=1, S=4, D=16)
    dec = QueryGuidedSpaceDecoder(16, STConfig(decoder_reference=True, decoder_residual=True))
    with torch.no_grad():
        dec.head.layers[-1].weight.zero_()
        dec.head.layers[-1].bias.zero_()
    hidden = torch.zeros(1, L, 16)
    query = index.query_index[0, 0]
    for token, centre in ((1, [0.75, 0.25]), (2, [0.25, 0.75])):
        h = hidden.clone()
        h[0, query, 0] = 50.0
        h[0, index.visual_index[0, 0, token], 0] = 50.0  # only this token matches the query
        box = dec(h, index)[0, 0]
        assert box[:2].tolist() == pytest.approx(centre, abs=1e-3) and box[2:].tolist() == pytest.approx([0.5, 0.5])


def test_missing_text_is_finite():
    index, L = _setup(B=1)
    index.text_mask[:] = False
    out = QueryGuidedSpaceDecoder(16, STConfig())(torch.randn(1, L, 16), index)
    assert torch.isfinite(out).all()


def test_config_validation():
    with pytest.raises(ValueError, match="decoder_reference needs dual_cross_attention"):
        STConfig(decoder_reference=True, dual_cross_attention=False)
    with pytest.raises(ValueError, match="query_mode"):
        STConfig(query_mode="diagonal")
    with pytest.raises(ValueError, match="num_queries"):
        STConfig(num_queries=0)
    with pytest.raises(ValueError, match="lambda_giou"):
        STConfig(lambda_giou=-1)
    cfg = STConfig(num_queries=32, query_mode="after")
    class Obj:
        pass

    o = Obj()
    for k, v in cfg.to_dict().items():
        setattr(o, k, v)
    assert STConfig.from_object(o) == cfg


def test_reset_parameters_undoes_a_tiny_normal_init():
    """Hosts' post_init gives every Linear std 0.02 (the LLM's); the decoder's reset_parameters restores
    the head's default init (boxes then depend on their input) and identity projections."""
    torch.manual_seed(0)
    dec = QueryGuidedSpaceDecoder(16, STConfig(decoder_projections=True))
    for p in dec.parameters():
        torch.nn.init.normal_(p, std=0.02)
    index, L = _setup(B=1)
    hidden = torch.randn(1, L, 16)
    flat = dec(hidden, index)
    assert (flat - flat.mean(1, keepdim=True)).abs().max() < 1e-4  # std 0.02 through 3 layers: one box for all
    dec.reset_parameters()
    assert torch.equal(dec.text_proj.q.weight, torch.eye(16))
    boxes = dec(hidden, index)
    assert (boxes - boxes.mean(1, keepdim=True)).abs().max() > 1e-3  # frames get their own boxes
