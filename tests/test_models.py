"""Foundation: backbones, both papers' models, baselines, registry, attention contract, IO."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from inkapp.models import (ModelLoadError, build_model, create_backbone, list_variants, load_model, read_card,
                           resolve_config, save_model)
from inkapp.models.bam import BAM
from inkapp.models.fold import CONV_BN_PAIRS, fold_batch_norms
from inkapp.models.offline_weights import OfflineWeightsError, available, load_full_classifier

DATA = Path(__file__).parent / "data"
VARIANTS = list_variants()


def small(arch: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model({"arch": arch, "num_classes": 4, "pretrained": None, **kw})


@pytest.mark.parametrize("arch", VARIANTS)
@pytest.mark.parametrize("shape", [(2, 3, 96, 96), (2, 3, 64, 256), (1, 1, 256, 64)], ids=["square", "wide-1x4", "tall-gray"])
def test_forward_backward_train_mode(arch: str, shape: tuple[int, ...]) -> None:
    model = small(arch).train()
    out = model(torch.randn(*shape))
    assert out.shape == (shape[0], 4)
    out.logsumexp(1).sum().backward()
    # the contrastive embedding head is used by forward_embedding only
    grads = {n: p.grad for n, p in model.named_parameters() if not n.startswith("embedding.")}
    missing = [n for n, g in grads.items() if g is None or not torch.isfinite(g).all()]
    assert not missing, missing[:5]


@pytest.mark.parametrize("arch", ["bamnet", "bamnet-channel"])
def test_bam_batch_of_one_trains_and_keeps_running_stats(arch: str) -> None:
    model = small(arch).train()
    bn = model.attention.channel.bn
    before = bn.running_mean.clone()
    model(torch.randn(1, 3, 64, 64)).sum().backward()
    assert torch.equal(bn.running_mean, before)  # batch of one: no statistics update
    model(torch.randn(3, 3, 64, 64)).sum().backward()
    assert not torch.equal(bn.running_mean, before)


def _module_names(m: torch.nn.Module) -> set[str]:
    return {type(x).__name__ for x in m.modules()}


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("flag,module", [("ms_hcm", "MSHCM"), ("dpafm", "DPAFM"), ("cross_layer", "CrossLayerGate")])
def test_inkfusion_ablation_flags_remove_modules(flag: str, module: str) -> None:
    full, ablated = small("inkfusion"), small("inkfusion", options={flag: False})
    assert module in _module_names(full)
    assert module not in _module_names(ablated)
    assert _params(full) != _params(ablated)


@pytest.mark.parametrize("attention,present", [("none", None), ("channel", "BAMChannel"), ("spatial", "BAMSpatial"),
                                               ("se", "SEModule"), ("eca", "EcaModule"), ("cbam", "CbamModule"),
                                               ("bam", "BAM")])
def test_bamnet_attention_variants(attention: str, present: str | None) -> None:
    model = small(f"bamnet-{attention}")
    names = _module_names(model)
    if present:
        assert present in names
    others = {"BAMChannel", "BAMSpatial", "SEModule", "EcaModule", "CbamModule"} - {present}
    if attention == "bam":
        others -= {"BAMChannel", "BAMSpatial"}
    assert not (others & names)
    counts = {a: _params(small(f"bamnet-{a}")) for a in ("none", "channel", "spatial", "bam")}
    assert len(set(counts.values())) == 4


def test_inkfusion_attention_maps_shapes_and_ranges() -> None:
    model = small("inkfusion").eval()
    x = torch.randn(2, 3, 128, 256)
    with torch.no_grad():
        logits, maps = model.forward_with_attention(x)
    assert logits.shape == (2, 4)
    assert maps["dpafm_spatial"].shape == (2, 1, 32, 64)
    assert maps["dpafm_channel"].shape == (2, 48)
    assert maps["alpha_0"].shape == (2, 1, 8, 16)
    assert maps["alpha_1"].shape == (2, 1, 4, 8)
    torch.testing.assert_close(maps["gate_channel"] + maps["gate_spatial"], torch.ones(2, 1, 32, 64))
    for name, t in maps.items():
        assert 0 <= t.min() and t.max() <= 1, name
    torch.testing.assert_close(model(x), logits)


def test_bamnet_attention_maps_shapes_and_ranges() -> None:
    model = small("bamnet").eval()
    with torch.no_grad():
        maps = model.attention_maps(torch.randn(2, 1, 96, 192))
    assert maps["bam_spatial"].shape == (2, 1, 3, 6)
    assert maps["bam_attention"].shape == (2, 1, 3, 6)
    assert maps["bam_channel"].shape == (2, model.num_features)
    for t in maps.values():
        assert 0 <= t.min() and t.max() <= 1


def test_bam_combination_follows_bam_paper() -> None:
    bam = BAM(32).eval()
    x = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        out, _ = bam(x)
        m_c = bam.channel(x)[:, :, None, None]
        m_s = bam.spatial(x)
    torch.testing.assert_close(out, x * (1 + torch.sigmoid(m_c + m_s)))


def test_backbone_strides_and_channels() -> None:
    bb = create_backbone("tf_efficientnet_lite0", pretrained=None)
    assert bb.feature_info.reduction() == [4, 8, 16, 32]
    feats = bb(torch.randn(1, 3, 128, 128))
    assert [f.shape[1] for f in feats] == bb.feature_info.channels()
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]


def test_offline_weights_unknown_backbone_lists_choices() -> None:
    with pytest.raises(OfflineWeightsError, match="no offline ImageNet weights for backbone 'resnet50'") as err:
        create_backbone("resnet50", pretrained="offline")
    for name in available():
        assert name in str(err.value)


def test_offline_weights_classify_a_real_photo() -> None:
    """chelsea.jpg: scikit-image's 'chelsea' photograph (CC0), a tabby cat.
    ImageNet classes 281-285 are the domestic cats."""
    from torchvision.transforms import v2

    model = load_full_classifier("tf_efficientnet_lite0")
    tf = v2.Compose([v2.PILToTensor(), v2.Resize(224), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize([0.5] * 3, [0.5] * 3)])
    x = tf(Image.open(DATA / "chelsea.jpg").convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        top = model(x).softmax(1).topk(3).indices[0].tolist()
    assert all(281 <= c <= 285 for c in top), top


def test_offline_backbone_matches_full_classifier_features() -> None:
    full = load_full_classifier("tf_efficientnet_lite0")
    bb = create_backbone("tf_efficientnet_lite0", pretrained="offline").eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(bb(x)[-1], full.blocks(full.bn1(full.conv_stem(x))))


@pytest.mark.parametrize("arch", ["inkfusion", "bamnet", "plain", "smallcnn"])
def test_safetensors_round_trip_identical_logits(arch: str, tmp_path: Path) -> None:
    model = small(arch).eval()
    save_model(model, tmp_path, {"task": "t", "classes": list("abcd")})
    loaded, card = load_model(tmp_path)
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert card["model"]["arch"] == resolve_config({"arch": arch, "num_classes": 4}).arch


def test_tampered_card_gives_clear_error(tmp_path: Path) -> None:
    import json

    save_model(small("plain").eval(), tmp_path, {"task": "t", "classes": list("abcd")})
    card = json.loads((tmp_path / "card.json").read_text())
    card["classes"] = ["a", "b", "c"]
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="3 classes"):
        read_card(tmp_path)
    card["classes"], card["model"]["num_classes"] = ["a", "b", "c"], 3
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="wrong shape"):
        load_model(tmp_path)


def test_registry_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model({"arch": "resnet-magic", "num_classes": 2})
    with pytest.raises(ValueError, match="unknown model config keys"):
        build_model({"arch": "plain", "num_classes": 2, "colour": "red"})


def test_models_cli_lists_every_variant(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from inkapp.cli import main

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == VARIANTS
    assert all(r["params"] > 0 for r in rows)


@pytest.mark.parametrize("arch", VARIANTS)
def test_folded_batch_norms_give_the_same_outputs(arch: str, tmp_path: Path) -> None:
    """Folding (what every Predictor does) keeps logits, attention maps and the Grad-CAM
    target layer's output to float rounding, with non-trivial norm statistics."""
    model = small(arch).eval()
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(c, generator=gen))
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.3)
    x = torch.randn(2, 3, 96, 128, generator=gen)
    with torch.no_grad():
        logits, attention = model.forward_with_attention(x)
        pairs = sum(len(p) for m in model.modules() for cls, p in CONV_BN_PAIRS.items() if isinstance(m, cls))
        assert fold_batch_norms(model) == pairs
        folded_logits, folded_attention = model.forward_with_attention(x)
    assert pairs > 0 or arch == "smallcnn"
    torch.testing.assert_close(folded_logits, logits, rtol=1e-4, atol=1e-4)
    assert folded_attention.keys() == attention.keys()
    for name in attention:
        torch.testing.assert_close(folded_attention[name], attention[name], rtol=1e-4, atol=1e-4)
    assert fold_batch_norms(model) == 0, "folding twice finds nothing left to fold"
    if pairs:
        with pytest.raises(ValueError, match="folded for inference"):
            save_model(model, tmp_path / "folded", {"classes": ["a", "b", "c", "d"]})
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(small(arch).train())
