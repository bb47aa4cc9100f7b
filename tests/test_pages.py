"""Page attribution (issue 13): finding characters on generated pages with known
boxes, the vote, every abstain reason, bad input, the CLI and the drawing."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inkapp.cli import main
from inkapp.inference import Predictor
from inkapp.pages.attribute import (MAX_CHARACTERS, REASONS, PageSettings, attribute_page, combine_votes,
                                    decide, evidence_characters)
from inkapp.pages.draw import MASTER_COLOURS, draw_boxes
from inkapp.pages.evaluate import iou, matched
from inkapp.pages.ink import MAX_WORK_PIXELS, find_ink
from inkapp.pages.layout import Box, character_boxes, irregular
from inkapp.pages.synthetic import PageSpec, compose_page, random_spec
from inkapp.paths import shipped_weights

SETTINGS = PageSettings(evidence_threshold=0.9, min_characters=2, script_threshold=0.4, script_min_characters=2)
MASTERS = {"ouyang_xun": 0.1, "yan_zhenqing": 0.7, "liu_gongquan": 0.15, "zhao_mengfu": 0.05}


def glyph(rng: np.random.Generator) -> Image.Image:
    """A 64×64 character-like image: 3–6 brush strokes (3–6 px) in the central 72 %,
    dark on white; about one in three has a detached dot (two components)."""
    img = np.full((64, 64), 255, np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        x0, y0, x1, y1 = rng.integers(10, 54, 4)
        cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), int(rng.integers(0, 60)), int(rng.integers(3, 7)))
    if rng.random() < 0.35:
        cv2.circle(img, (int(rng.integers(14, 50)), 9), 3, 20, -1)
    cv2.line(img, (12, 32), (52, 32), 30, 4)  # a full-width stroke keeps every glyph about 40 px wide
    return Image.fromarray(img, "L")


def page(n: int, seed: int, **changes) -> tuple[Image.Image, list, PageSpec]:
    rng = np.random.default_rng(seed)
    spec = random_spec(n, rng)
    spec = PageSpec(**{**spec.__dict__, **changes})
    image, truth = compose_page([glyph(rng) for _ in range(n)], spec, rng)
    return image, truth, spec


@pytest.fixture(scope="module")
def calligrapher() -> Predictor:
    return Predictor.from_folder(shipped_weights("calligrapher"), device="cpu")


@pytest.fixture(scope="module")
def script() -> Predictor:
    return Predictor.from_folder(shipped_weights("calligraphy-script"), device="cpu")


def test_finding_recall_and_precision_on_generated_pages():
    truth_total = found_total = hits = 0
    for seed in range(24):
        image, truth, _ = page((1, 4, 8, 16)[seed % 4], seed)
        ink = find_ink(image)
        found = [b.scaled(1 / ink.scale) for b in character_boxes(ink.ink)[0]]
        truth_total, found_total = truth_total + len(truth), found_total + len(found)
        hits += matched(truth, found)
    assert truth_total == 6 * (1 + 4 + 8 + 16)
    assert hits / truth_total >= 0.95, f"recall {hits / truth_total:.3f}"
    assert hits / found_total >= 0.95, f"precision {hits / found_total:.3f}"


@pytest.mark.parametrize("layout", ["columns", "rows"])
@pytest.mark.parametrize("rubbing", [False, True])
def test_reading_order_layout_and_polarity(layout, rubbing):
    image, truth, _ = page(8, 7, layout=layout, rubbing=rubbing, grid=False, seal=False, light=0.3)
    ink = find_ink(image)
    found, found_layout = character_boxes(ink.ink)
    assert ink.light_on_dark is rubbing
    assert found_layout == layout
    assert len(found) == len(truth) == 8
    assert [round(iou(t, f.scaled(1 / ink.scale)), 1) >= 0.5 for t, f in zip(truth, found)] == [True] * 8


def test_seal_and_grid_lines_are_not_characters():
    image, truth, spec = page(4, 3, seal=True, grid=True, layout="columns", rubbing=False, char_px=80)
    ink = find_ink(image)
    found = [b.scaled(1 / ink.scale) for b in character_boxes(ink.ink)[0]]
    assert matched(truth, found) == len(found) == 4
    red = np.asarray(image)[..., 0].astype(int) - np.asarray(image)[..., 1] > 80
    assert red.sum() > 400  # the page does carry a seal
    assert not ink.ink[red].any()


def test_combine_votes_is_the_floored_product_rule():
    two = combine_votes(np.array([[0.9, 0.1], [0.6, 0.4]]))
    assert two == pytest.approx([0.54 / 0.58, 0.04 / 0.58])
    # one confident dissenter costs at most log(1/0.02): class 0 keeps the page
    floored = combine_votes(np.array([[0.0, 1.0], [0.99, 0.01], [0.99, 0.01]]))
    s0, s1 = math.log(0.02) + 2 * math.log(0.99), 2 * math.log(0.02)
    assert floored[0] == pytest.approx(1 / (1 + math.exp(s1 - s0)))
    assert floored[0] > 0.97
    assert combine_votes(np.array([[0.3, 0.7]])) == pytest.approx([0.3, 0.7])
    with pytest.raises(ValueError, match="N ≥ 1"):
        combine_votes(np.zeros((0, 4)))


def test_each_abstain_reason():
    assert decide(MASTERS, 5, 0.8, False, SETTINGS) == (None, "weak_evidence")
    strong = {**MASTERS, "yan_zhenqing": 0.95, "liu_gongquan": 0.0}
    assert decide(strong, 5, 0.8, False, SETTINGS) == ("yan_zhenqing", "attributed")
    assert decide(strong, 5, 0.2, False, SETTINGS) == (None, "not_regular_script")
    assert decide(strong, 5, None, False, SETTINGS) == ("yan_zhenqing", "attributed")
    assert decide(strong, 1, 0.8, False, SETTINGS) == (None, "too_few_characters")
    assert decide({}, 0, None, False, SETTINGS) == (None, "no_characters")
    assert decide(strong, 5, 0.8, True, SETTINGS) == (None, "not_calligraphy")
    single = PageSettings(evidence_threshold=0.9, min_characters=1, script_threshold=0.4, script_min_characters=2)
    assert decide(strong, 1, 0.1, False, single) == ("yan_zhenqing", "attributed")  # script not trusted on 1 char
    assert set(REASONS) == {"attributed", "not_calligraphy", "no_characters", "too_few_characters",
                            "not_regular_script", "weak_evidence"}


def test_single_character_image_still_works(calligrapher):
    char = glyph(np.random.default_rng(0))
    a = attribute_page(char, calligrapher)
    assert a.found == len(a.characters) == 1
    c = a.characters[0]
    assert c.box.w > 30 and c.box.h > 30
    today = calligrapher.predict([char])[0]  # what `inkapp predict` answers for the same image
    assert (c.label, c.confidence) == (today.label, pytest.approx(today.confidence))
    votes = combine_votes(np.array([[today.probabilities[k] for k in calligrapher.classes]]))
    assert [a.probabilities[k] for k in calligrapher.classes] == pytest.approx(votes.tolist())
    settings = PageSettings.from_card(calligrapher.card)
    expected = "attributed" if max(a.probabilities.values()) >= settings.evidence_threshold else "weak_evidence"
    assert a.reason == expected
    assert (a.attribution is None) == (expected != "attributed")
    assert a.dynasty in {"Tang", "Yuan"}


def test_blank_and_stained_page_has_no_characters(calligrapher, script):
    rng = np.random.default_rng(1)
    spec = PageSpec(1, "rows", False, False, False, 80, 0.4, 8.0, 0.8, 50)
    blank, _ = compose_page([Image.new("L", (64, 64), 255)], spec, rng)
    a = attribute_page(blank, calligrapher, script)
    assert (a.found, a.attribution, a.reason) == (0, None, "no_characters")
    assert a.to_json()["characters"] == [] and a.to_json()["probabilities"] == {}
    white = attribute_page(Image.new("L", (300, 200), 255), calligrapher, script)
    assert (white.found, white.attribution, white.reason, white.dynasty) == (0, None, "no_characters", None)


def test_painting_like_colour_image_is_refused(calligrapher, script):
    rng = np.random.default_rng(2)
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // w), (yy * 255 // h), np.full((h, w), 120)], -1).astype(np.uint8)
    for _ in range(12):  # coloured blossoms and dark branches
        cv2.circle(img, tuple(int(v) for v in rng.integers(0, (w, h))), int(rng.integers(10, 40)),
                   tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        cv2.line(img, tuple(int(v) for v in rng.integers(0, (w, h))), tuple(int(v) for v in rng.integers(0, (w, h))),
                 (30, 30, 30), 6)
    a = attribute_page(Image.fromarray(img, "RGB"), calligrapher, script)
    assert (a.attribution, a.reason) == (None, "not_calligraphy")


def test_irregular_shapes_are_not_a_page_of_characters(calligrapher, script):
    same = [Box(10 + 60 * i, 10, 48 + i % 3, 50) for i in range(6)]
    assert not irregular(same)
    mixed = [Box(0, 0, 20, 20), Box(50, 0, 80, 30), Box(200, 0, 15, 120), Box(300, 0, 60, 60), Box(400, 0, 200, 40)]
    assert irregular(mixed)
    assert not irregular(mixed[:2])  # too few to judge
    # a grey ink painting: rocks, a boat, a cliff, a bird of very different sizes and shapes
    ink = np.full((400, 600), 235, np.uint8)
    for (x, y), axes, angle in (((110, 300), (90, 40), 0), ((300, 330), (30, 30), 0), ((450, 230), (120, 22), 20),
                                ((540, 80), (14, 60), 0), ((250, 90), (50, 12), -30)):
        cv2.ellipse(ink, (x, y), axes, angle, 0, 360, 45, -1)
    assert len(character_boxes(find_ink(Image.fromarray(ink, "L")).ink)[0]) >= 3
    a = attribute_page(Image.fromarray(ink, "L"), calligrapher, script)
    assert (a.attribution, a.reason) == (None, "not_calligraphy")


def test_very_tall_rubbing_is_shrunk_first(calligrapher):
    rng = np.random.default_rng(3)
    tall = np.full((20000, 700), 50, np.uint8)  # a dark ground, light strokes: 20 000 px tall rubbing
    for i, y in enumerate(range(200, 19700, 500)):
        g = 255 - np.asarray(glyph(rng).resize((300, 300)))
        tall[y:y + 300, 200:500] = np.maximum(tall[y:y + 300, 200:500], g)
    image = Image.fromarray(tall, "L")
    ink = find_ink(image)
    assert ink.flat.size <= MAX_WORK_PIXELS and ink.ink.shape == ink.flat.shape
    assert ink.light_on_dark
    a = attribute_page(image, calligrapher)
    assert a.found == 39 and a.layout == "columns"
    assert all(0 <= c.box.y and c.box.y + c.box.h <= 20000 and 200 <= c.box.x + c.box.w // 2 <= 500
               for c in a.characters)
    assert [c.box.y for c in a.characters] == sorted(c.box.y for c in a.characters)


def test_two_thousand_character_page_is_capped(calligrapher):
    rng = np.random.default_rng(4)
    glyphs = [np.asarray(glyph(rng).resize((40, 40))) for _ in range(50)]
    sheet = np.full((50 * 41 + 12, 40 * 52 + 12), 255, np.uint8)  # 40 columns of 50 characters
    for k in range(2000):
        col, row = divmod(k, 50)
        y, x = 6 + row * 41, 6 + col * 52
        sheet[y:y + 40, x:x + 40] = np.minimum(sheet[y:y + 40, x:x + 40], glyphs[k % 50])
    a = attribute_page(Image.fromarray(sheet, "L"), calligrapher)
    assert a.found >= 1900
    assert len(a.characters) == MAX_CHARACTERS
    assert sum(a.probabilities.values()) == pytest.approx(1.0)


def test_cli_attribute_json_and_text(tmp_path, capsys):
    image, truth, _ = page(4, 11, layout="rows", rubbing=False, grid=False, seal=False)
    path = tmp_path / "page.png"
    image.save(path)
    assert main(["attribute", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip())
    assert doc["image"] == str(path)
    assert len(doc["characters"]) == 4 and all(len(c["box"]) == 4 for c in doc["characters"])
    assert doc["layout"] == "rows" and doc["found"] == 4
    (x0, y0, *_), (x1, y1, *_), (x2, y2, *_), (x3, y3, *_) = (c["box"] for c in doc["characters"])
    assert x0 < x1 and x2 < x3 and max(y0, y1) < min(y2, y3)  # two rows, each read left to right
    assert set(doc["probabilities"]) == set(MASTER_COLOURS)
    assert doc["reason"] in REASONS and (doc["attribution"] is None) == (doc["reason"] != "attributed")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert main(["attribute", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and err.count("\n") == 1


def test_draw_boxes_colours_each_character(calligrapher):
    image, _, _ = page(4, 5, rubbing=False, grid=False, seal=False, char_px=90)
    a = attribute_page(image, calligrapher)
    best = evidence_characters(a, k=2)
    master = max(a.probabilities, key=a.probabilities.__getitem__)
    assert len(best) == 2 and a.characters[best[0]].probabilities[master] == max(
        c.probabilities[master] for c in a.characters)
    drawn = np.asarray(draw_boxes(image, a))
    assert drawn.shape == (image.height, image.width, 3)
    for c in a.characters:
        assert tuple(drawn[c.box.y + c.box.h - 1, c.box.x + c.box.w // 2]) == MASTER_COLOURS[c.label]


def test_shipped_card_carries_page_thresholds_for_its_own_version(calligrapher):
    page_settings = calligrapher.card["page_attribution"]
    assert page_settings["model_version"] == calligrapher.version
    assert 0.5 <= page_settings["evidence_threshold"] <= 1.0
    assert PageSettings.from_card(calligrapher.card).evidence_threshold == page_settings["evidence_threshold"]
