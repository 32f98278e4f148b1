"""The found rule: fitted by hand, stored with the model (calibration.json), loaded by the registry, used by the
decoder; `addp calibrate` writes it (with the confidence map and the domain check) and refuses bad inputs with one
line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_support import run_cli as run
from PIL import Image

from addp_agent.errors import ModelLoadError, UserError
from addp_agent.models.calibration import Calibration, FoundCalibration, fit_found, fit_statistic
from addp_agent.models.registry import load_pipeline

GENERALIZED = "scenes-gen:12:1:64:default:generalized:empty_rate=0.4:multi_rate=0.3"


def test_fit_statistic_by_hand():
    # no-target samples: unpainted, 0.02; samples with targets: 0.05, 0.3, 0.01
    values, painted, targets = [0.0, 0.02, 0.05, 0.3, 0.01], [False, True, True, True, True], [0, 0, 1, 2, 1]
    fit = fit_statistic("area_fraction", values, painted, targets)
    # τ = 0: N ½, T 1 (0.75); 0.015: N ½, T ⅔; 0.035: N 1, T ⅔ (0.833, the best); 0.175: N 1, T ⅓
    assert fit.threshold == pytest.approx(0.035) and fit.n_acc == 1.0 and fit.t_acc == pytest.approx(2 / 3)


def test_the_giou_objective_keeps_weak_targets_that_balanced_accuracy_drops():
    # A weak model: the no-target sample is painted (0.2); of the targets, a good mask (IoU 0.9, value 0.6) and two
    # faint, mostly wrong ones (IoU 0.1, values 0.1 and 0.15).
    values, painted, targets, ious = [0.2, 0.6, 0.1, 0.15], [True] * 4, [0, 1, 1, 1], [0.0, 0.9, 0.1, 0.1]
    # balanced: τ = 0 → (0 + 1)/2; τ = 0.4 → (1 + ⅓)/2 = ⅔, the best.  gIoU: τ = 0 → (0 + .9 + .1 + .1)/4 = 0.275;
    # τ = 0.175 → (0 + .9)/4; τ = 0.4 → (1 + .9)/4 = 0.475, the best; τ above all → ¼.
    balanced = fit_statistic("area_fraction", values, painted, targets, ious, "balanced")
    g_iou = fit_statistic("area_fraction", values, painted, targets, ious, "gIoU")
    assert balanced.threshold == pytest.approx(0.4) and g_iou.threshold == pytest.approx(0.4)
    assert g_iou.g_iou == pytest.approx(0.475) and balanced.g_iou == pytest.approx(0.475)
    # Make the faint targets better masks (IoU 0.6): gIoU now keeps them (τ = 0: 2.1/4 > 1.9/4), balanced does not.
    ious = [0.0, 0.9, 0.6, 0.6]
    assert fit_statistic("area_fraction", values, painted, targets, ious, "balanced").threshold == pytest.approx(0.4)
    kept = fit_statistic("area_fraction", values, painted, targets, ious, "gIoU")
    assert kept.threshold == 0.0 and kept.g_iou == pytest.approx(2.1 / 4) and (kept.n_acc, kept.t_acc) == (0.0, 1.0)
    with pytest.raises(ValueError, match="needs each sample's IoU"):
        fit_statistic("area_fraction", values, painted, targets, None, "gIoU")
    found = fit_found([{"area_fraction": v, "mean_redness": v} for v in values], targets, "spec", "val", steps=1,
                      ious=ious, objective="gIoU")
    assert found.objective == "gIoU" and "gIoU" in found.rule and found.threshold == 0.0
    assert found.uncalibrated_g_iou == pytest.approx(2.1 / 4)


def test_fit_found_picks_the_better_statistic_and_reports_the_uncalibrated_rule():
    statistics = [{"area_fraction": a, "mean_redness": r} for a, r in
                  [(0.0, 0.0), (0.02, 0.55), (0.05, 0.9), (0.3, 0.95), (0.01, 0.8)]]
    found = fit_found(statistics, [0, 0, 1, 2, 1], "spec", "val", steps=2)
    assert found.statistic == "mean_redness" and found.threshold == pytest.approx((0.55 + 0.8) / 2)
    assert (found.n_acc, found.t_acc) == (1.0, 1.0)
    assert (found.uncalibrated_n_acc, found.uncalibrated_t_acc) == (0.5, 1.0)
    assert (found.n, found.n_no_target, found.n_target, found.steps) == (5, 2, 3, 2)
    assert [c.statistic for c in found.candidates] == ["area_fraction", "mean_redness"]
    with pytest.raises(UserError, match="with and without targets"):
        fit_found(statistics, [1, 1, 1, 2, 1], "classic", "val", steps=1)


def make_calibration(threshold: float, statistic: str = "area_fraction") -> Calibration:
    found = FoundCalibration(statistic=statistic, threshold=threshold, n_acc=1.0, t_acc=1.0, data="d", split="val",
                             steps=1, n=2, n_no_target=1, n_target=1, uncalibrated_n_acc=0.0,
                             uncalibrated_t_acc=1.0)
    return Calibration(found=found)


def test_save_is_atomic_and_load_refuses_broken_files(tmp_path):
    assert Calibration.load(tmp_path) is None
    path = make_calibration(0.25).save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["calibration.json"]
    assert Calibration.load(tmp_path).found_rule().threshold == 0.25
    for broken in ("{not json", json.dumps({"version": 2}), json.dumps({"found": {"statistic": "area"}}),
                   json.dumps({"version": 1, "colour": {}}),
                   path.read_text().replace('"n_acc": 1.0', '"n_acc": NaN'),
                   path.read_text().replace('"threshold": 0.25', '"threshold": 1e400')):  # not finite
        path.write_text(broken)
        with pytest.raises(ModelLoadError, match="unreadable calibration"):
            Calibration.load(tmp_path)
    path.unlink()
    path.mkdir()  # a folder named calibration.json is not silently "no calibration"
    with pytest.raises(ModelLoadError, match="unreadable calibration"):
        Calibration.load(tmp_path)


@pytest.fixture()
def calibrated_dir(red_dir, tmp_path):
    folder = tmp_path / "calibrated"
    shutil.copytree(red_dir, folder)
    return folder


def test_the_registry_loads_the_rule_and_the_decoder_applies_it(calibrated_dir):
    from addp_agent.models.registry import load_pipeline

    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    plain = load_pipeline(str(calibrated_dir), device="cpu", progress=False)
    assert plain.found_rule is None
    before = plain.segment(image, "the red cube", num_inference_steps=1)
    assert before.found and before.mask.any()  # the reddened model paints: uncalibrated, found = painted
    fraction = before.paint["area_fraction"]
    make_calibration(fraction + 1e-6).save(calibrated_dir)
    strict = load_pipeline(str(calibrated_dir), device="cpu", progress=False)
    after = strict.segment(image, "the red cube", num_inference_steps=1)
    assert not after.found and not after.mask.any() and after.instances == []
    assert after.paint == before.paint and np.array_equal(after.soft, before.soft)
    make_calibration(fraction).save(calibrated_dir)
    assert load_pipeline(str(calibrated_dir), device="cpu", progress=False).segment(
        image, "the red cube", num_inference_steps=1).found
    (calibrated_dir / "calibration.json").write_text("[]")
    with pytest.raises(ModelLoadError, match="calibration"):
        load_pipeline(str(calibrated_dir), device="cpu", progress=False)


def test_calibrate_command_writes_the_rule(calibrated_dir, capsys):
    code, out, err = run(["calibrate", "--model", str(calibrated_dir), "--data", GENERALIZED, "--batch-size", "6",
                          "--steps", "1"], capsys)
    assert code in (0, None), err
    saved = Calibration.load(calibrated_dir).found
    assert saved.n == 12 and saved.n_no_target == 3 and saved.data == GENERALIZED and saved.steps == 1
    assert f"N-acc {saved.n_acc:.3f}, T-acc {saved.t_acc:.3f}, gIoU {saved.g_iou:.3f}" in out and "uncalibrated" in out
    assert saved.objective == "gIoU" and saved.g_iou >= saved.uncalibrated_g_iou  # τ = 0 is a candidate
    code, out, err = run(["calibrate", "--model", str(calibrated_dir), "--data", GENERALIZED, "--batch-size", "6",
                          "--steps", "1", "--only", "found", "--found-objective", "balanced"], capsys)
    balanced = Calibration.load(calibrated_dir).found
    assert code in (0, None) and balanced.objective == "balanced" and "maximises balanced" in out
    assert balanced.balanced >= saved.balanced
    assert not [p for p in calibrated_dir.iterdir() if p.name.endswith(".tmp")]


def test_calibrate_fits_confidence_and_domain_with_a_test_report(calibrated_dir, tmp_path, capsys):
    plot = tmp_path / "figures" / "reliability.png"
    code, out, err = run(["calibrate", "--model", str(calibrated_dir), "--data", "shapes-gen:12:0:32", "--steps", "1",
                          "--test", "shapes-gen:12:1:32", "--domain", "synthetic-shapes", "--domain-data",
                          "shapes-gen:40:0:32", "--natural", "20", "--plot", str(plot)], capsys)
    assert code in (0, None), err
    saved = Calibration.load(calibrated_dir)
    assert saved.found is None and "found rule: not fitted" in out  # Shapes-Ref has no no-target samples
    assert saved.confidence.n == 12 and saved.confidence.test["n"] == 12 and saved.confidence.test["split"] == "test"
    assert saved.domain.name == "synthetic-shapes" and saved.domain.n_fit == 60 and saved.domain.n_held_out == 18
    assert saved.domain.measured["n_out_of_domain"] == 20 and saved.domain.measured["n_in_domain"] == 12
    assert f"ECE {saved.confidence.ece_before:.3f} → {saved.confidence.ece_after:.3f}" in out
    assert plot.is_file() and Image.open(plot).format == "PNG"
    pipe = load_pipeline(str(calibrated_dir), device="cpu", progress=False)
    assert pipe.confidence_map == saved.confidence_map() and pipe.domain_check == saved.domain

    code, out, _ = run(["calibrate", "--model", str(calibrated_dir), "--data", "shapes-gen:4:0:32", "--only",
                        "domain", "--domain", "synthetic-shapes", "--domain-data", "shapes-gen:6:0:32",
                        "--resolution", "32"], capsys)
    again = Calibration.load(calibrated_dir)
    assert code in (0, None) and again.domain.n_fit == 9 and again.confidence == saved.confidence  # others kept


@pytest.mark.parametrize("case", ["not a folder", "classic data", "bad spec", "bad limit", "domain alone",
                                  "unknown section", "only domain unnamed", "bad plot", "bad domain data",
                                  "bad objective", "plot below a file", "plot on read-only sysfs", "negative seed",
                                  "calibration.json a folder"])
def test_calibrate_bad_inputs_are_one_line_and_write_nothing(case, calibrated_dir, tmp_path, capsys):
    model = ["--model", str(calibrated_dir)]
    (tmp_path / "a-file").write_text("x")
    if case == "calibration.json a folder":
        (calibrated_dir / "calibration.json").mkdir()
    argv = {"not a folder": ["--model", str(tmp_path / "nowhere"), "--data", GENERALIZED],
            "classic data": [*model, "--data", "scenes-gen:4:1:64", "--steps", "1", "--only", "found"],
            "bad spec": [*model, "--data", "scenes-gen:x"],
            "bad limit": [*model, "--data", GENERALIZED, "--limit", "0"],
            "domain alone": [*model, "--data", GENERALIZED, "--domain", "synthetic-scenes3d"],
            "unknown section": [*model, "--data", GENERALIZED, "--only", "found,colour"],
            "only domain unnamed": [*model, "--data", GENERALIZED, "--only", "domain"],
            "bad plot": [*model, "--data", GENERALIZED, "--plot", str(tmp_path)],
            "bad domain data": [*model, "--data", "shapes-gen:4:0:32", "--only", "domain", "--domain", "x",
                                "--domain-data", "nope:3", "--resolution", "32"],
            "bad objective": [*model, "--data", GENERALIZED, "--found-objective", "mIoU"],
            "plot below a file": [*model, "--data", GENERALIZED, "--plot", str(tmp_path / "a-file" / "r.png")],
            "plot on read-only sysfs": [*model, "--data", GENERALIZED, "--plot", "/sys/addp/r.png"],
            "negative seed": [*model, "--data", GENERALIZED, "--seed", "-1"],
            "calibration.json a folder": [*model, "--data", GENERALIZED]}[case]
    code, _, err = run(["calibrate", *argv], capsys)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not (calibrated_dir / "calibration.json").is_file()
