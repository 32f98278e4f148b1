"""`addp eval --protocol`: resolution against explicit flags, printing, recording, scoring at the decode size."""

from __future__ import annotations

import json

import pytest

from addp_agent.cli import main
from addp_agent.cli.options import flag
from addp_agent.data.sources import load_source
from addp_agent.engine.decode import MaskDecoding
from addp_agent.errors import UserError
from addp_agent.eval.protocols import PAPER, PROTOCOLS, protocol_record, resolve_protocol
from addp_agent.eval.records import EvalConfig
from addp_agent.masks import decode_rle
from addp_agent.metrics import iou_counts
from addp_agent.presets import describe


def _defaults(**values) -> dict:
    """What `addp eval` hands over when only ``values`` are typed: every field's default plus those."""
    fields = {name: field.get_default() for name, field in EvalConfig.model_fields.items() if not field.is_required()}
    return fields | {"data": "shapes-gen:4"} | values


def test_the_paper_protocol_is_the_official_setting():
    assert PROTOCOLS["paper"] is PAPER
    config = EvalConfig(data="x", **PAPER.settings)
    assert (config.resolution, config.scheduler, config.timestep_spacing, config.steps) == \
        (256, "euler_ancestral", "linspace", 100)
    assert (config.guidance_scale, config.image_guidance_scale, config.seed) == (3.0, 1.5, 0)
    assert config.decoding == MaskDecoding(size=512, threshold=50.0)
    assert (config.split, config.critic, config.max_rounds) == ("val", "none", 1)


def test_protocol_fills_defaults_and_given_flags_override_it():
    values = _defaults(protocol="paper", steps=4, seed=0, batch_size=2)
    config = EvalConfig(**resolve_protocol(values, given={"protocol", "steps", "seed", "batch_size", "data"}))
    assert config.steps == 4 and config.resolution == 256 and config.decode_size == 512 and config.batch_size == 2
    record = protocol_record(config)
    assert record["changed"] == {"steps": {"preset": 100, "used": 4}}  # seed 0 given: what the protocol says
    assert record["name"] == "paper" and record["settings"] == PAPER.settings
    assert resolve_protocol(_defaults(steps=4), given={"steps", "data"}) == _defaults(steps=4)
    assert protocol_record(EvalConfig(**_defaults())) is None


def test_the_protocol_is_printed_in_full_with_overrides_marked():
    values = resolve_protocol(_defaults(protocol="paper", steps=4), given={"protocol", "steps", "data"}, name=flag)
    lines = describe(PAPER, values, "protocol", flag)
    assert lines[0].startswith("protocol paper: ")
    for field, value in PAPER.settings.items():
        assert any(line.split()[:1] == [flag(field)] for line in lines), field
        if field != "steps":
            assert any(line.split()[:2] == [flag(field), str(value)] for line in lines), field
    assert any(line.split()[:2] == ["--steps", "4"] and "the protocol says 100" in line for line in lines)
    assert lines[-1].strip() == "1 setting(s) changed from the protocol"


def test_protocol_from_a_json_file_and_bad_presets(tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"name": "mine", "title": "t", "source": "s", "settings": {"steps": 7}}))
    config = EvalConfig(**resolve_protocol(_defaults(protocol=str(mine)), {"protocol"}))
    assert config.steps == 7 and protocol_record(config)["name"] == "mine"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "title": "t", "source": "s", "settings": {"stepz": 7}}))
    with pytest.raises(UserError, match="unknown settings --stepz"):
        resolve_protocol(_defaults(protocol=str(bad)), {"protocol"}, name=flag)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"name": "wrong", "title": "t", "source": "s", "settings": {"steps": 0}}))
    with pytest.raises(UserError, match="--steps: Input should be greater than or equal to 1"):
        resolve_protocol(_defaults(protocol=str(wrong)), {"protocol"}, name=flag)
    torn = tmp_path / "torn.json"
    torn.write_text("{")
    with pytest.raises(UserError, match="torn.json: cannot read a protocol"):
        resolve_protocol(_defaults(protocol=str(torn)), {"protocol"})


@pytest.mark.parametrize(("args", "message"), [
    (["--protocol", "papr"], "unknown --protocol 'papr'; use one of paper or a .json file"),
    (["--protocol", "/no/such/protocol.json"], "/no/such/protocol.json: cannot read a protocol"),
    (["--protocol", "paper", "--decode-size", "0"], "--decode-size: Input should be greater than or equal to 1"),
    (["--protocol", "paper", "--scheduler", "dpm"], "--scheduler: Input should be 'ddim' or 'euler_ancestral'"),
])
def test_bad_protocol_input_is_one_line_exit_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--data", "shapes-gen:4", *args, "--model", str(tmp_path / "unused"), "--out",
              str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_paper_protocol_run_scores_at_512_and_records_the_protocol(red_dir, tmp_path, capsys):
    """The x₀ pixel model sampled by the Euler-ancestral x₀ step, decoded and scored at 512², like evaluate.py."""
    out = tmp_path / "paper"
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--protocol", "paper", "--data", "shapes-gen:4:1:32", "--model", str(red_dir), "--steps", "2",
              "--resolution", "32", "--batch-size", "2", "--out", str(out), "--quiet"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("protocol paper: ") and "--decode-size           512" in printed
    document = json.loads((out / "metrics.json").read_text())
    assert document["protocol"]["changed"] == {"steps": {"preset": 100, "used": 2},
                                               "resolution": {"preset": 256, "used": 32}}
    assert document["config"]["protocol"] == "paper" and document["config"]["scheduler"] == "euler_ancestral"
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    reference = MaskDecoding(size=512)
    for record, sample in zip(records, load_source("shapes-gen:4:1:32", "val"), strict=True):
        (round_,) = record["rounds"]
        mask = decode_rle(round_["mask_rle"])
        assert mask.shape == (512, 512)
        assert iou_counts(mask, reference.reference(sample.mask)) == (round_["intersection"], round_["union"])
    assert document["n"] == 4 and document["rounds"][0]["mIoU"] > 0
    assert "Protocol `paper`" in (out / "report.md").read_text()
