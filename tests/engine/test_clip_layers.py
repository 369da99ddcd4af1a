"""engine/clip_layers.py computes what open_clip's own layers compute: image embeddings and their
gradient with respect to the pixels, for a loaded model and for shapes its fast code doesn't take."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.clip import Clip, load_clip
from engine.clip_layers import BatchFirstSelfAttention, PatchEmbedding, use_fast_clip_layers

CPU = torch.device("cpu")


def _pixels(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)


def _embed_and_grad(model: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = model.encode_image(pixels)
    upstream = torch.randn(features.shape, generator=torch.Generator().manual_seed(5))
    (grad,) = torch.autograd.grad((features * upstream).sum(), pixels)
    return features.detach(), grad


def test_a_loaded_clip_uses_the_fast_image_layers_and_keeps_its_weights(clip: Clip, clip_dir: Path) -> None:
    visual = clip.model.visual
    assert type(visual.conv1) is PatchEmbedding
    attentions = [m for m in visual.modules() if isinstance(m, nn.MultiheadAttention)]
    assert attentions and all(type(m) is BatchFirstSelfAttention for m in attentions)
    # the text tower (causal mask) keeps open_clip's attention
    assert all(type(m) is nn.MultiheadAttention for m in clip.model.transformer.modules()
               if isinstance(m, nn.MultiheadAttention))
    fresh = load_clip(f"local-dir:{clip_dir}", None, device=CPU)
    assert clip.model.state_dict().keys() == fresh.model.state_dict().keys()


def test_image_embeddings_and_pixel_gradients_match_open_clips_layers(clip: Clip) -> None:
    fast = clip.model
    plain = copy.deepcopy(fast)
    plain.visual.conv1.__class__ = nn.Conv2d
    for module in plain.visual.modules():
        if isinstance(module, nn.MultiheadAttention):
            module.__class__ = nn.MultiheadAttention
    pixels = _pixels(5, clip.input_size)
    expected, expected_grad = _embed_and_grad(plain, pixels)
    got, grad = _embed_and_grad(fast, pixels)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-4)


def test_attention_matches_multihead_attention_and_falls_back_for_other_calls() -> None:
    torch.manual_seed(0)
    plain = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    fast = copy.deepcopy(plain)
    fast.__class__ = BatchFirstSelfAttention
    x = torch.randn(3, 7, 32, requires_grad=True)
    (expected, _), (got, weights) = plain(x, x, x, need_weights=False), fast(x, x, x, need_weights=False)
    assert weights is None
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    g1, g2 = (torch.autograd.grad(out.square().sum(), x)[0] for out in (expected, got))
    torch.testing.assert_close(g2, g1, atol=1e-5, rtol=1e-4)
    # a mask, attention weights, or cross-attention: nn.MultiheadAttention's own code, same answers
    mask = torch.triu(torch.full((7, 7), float("-inf")), diagonal=1)
    y = torch.randn(3, 7, 32)
    for kwargs, kv in (({"attn_mask": mask, "need_weights": False}, x), ({"need_weights": True}, x), ({}, y)):
        expected, expected_w = plain(x, kv, kv, **kwargs)
        got, got_w = fast(x, kv, kv, **kwargs)
        torch.testing.assert_close(got, expected)
        assert (got_w is None) == (expected_w is None)


@pytest.mark.parametrize("bias", [False, True])
def test_patch_embedding_matches_the_strided_convolution_and_falls_back_for_other_shapes(bias: bool) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 16, kernel_size=8, stride=8, bias=bias)
    fast = copy.deepcopy(conv)
    fast.__class__ = PatchEmbedding
    x = _pixels(2, 32)
    expected, got = conv(x), fast(x)
    assert got.shape == expected.shape == (2, 16, 4, 4)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    g1, g2 = (torch.autograd.grad(out.square().sum(), x)[0] for out in (expected, got))
    torch.testing.assert_close(g2, g1, atol=1e-5, rtol=1e-4)
    odd = _pixels(1, 36)  # not a whole number of patches: the convolution drops the rest
    torch.testing.assert_close(fast(odd), conv(odd))
    overlapping = copy.deepcopy(nn.Conv2d(3, 4, kernel_size=3, stride=1, padding=1))
    reference = F.conv2d(odd, overlapping.weight, overlapping.bias, padding=1)
    overlapping.__class__ = PatchEmbedding
    torch.testing.assert_close(overlapping(odd), reference)


def test_models_without_an_image_tower_or_with_other_layers_are_left_alone() -> None:
    text_only = nn.Sequential(nn.MultiheadAttention(8, 2, batch_first=True))
    assert type(use_fast_clip_layers(text_only)[0]) is nn.MultiheadAttention
    model = nn.Module()
    model.visual = nn.Module()
    model.visual.attn = nn.MultiheadAttention(8, 2, batch_first=False)  # seq-first: not the shape handled here
    model.visual.conv1 = nn.Conv2d(3, 8, 4, stride=4)
    use_fast_clip_layers(model)
    assert type(model.visual.attn) is nn.MultiheadAttention
    assert type(model.visual.conv1) is PatchEmbedding
    model.visual.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # a ResNet stem, not a patch embedding
    use_fast_clip_layers(model)
    assert type(model.visual.conv1) is nn.Conv2d
