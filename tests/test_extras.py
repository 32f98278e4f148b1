"""A command whose optional extra is not installed says which extra to install, in one line, with exit code 2.

The missing package is simulated the way Python itself reports one: ``sys.modules[name] = None`` makes every
``import name`` raise ModuleNotFoundError, in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from addp_agent.extras import EXTRAS, MissingExtra, extra_imports, require_extra

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {  # id: (modules made missing, argv, the extra the message must name)
    "eval_without_accelerate": ("accelerate", ["eval", "--data", "shapes-gen:4", "--critic", "none"], "eval"),
    "eval_without_matplotlib": ("matplotlib", ["eval", "--data", "shapes-gen:4", "--critic", "none"], "eval"),
    "analyze_timesteps_without_matplotlib": ("matplotlib", ["analyze-timesteps", "--data", "shapes-gen:4"], "eval"),
    "train_without_accelerate": ("accelerate", ["train", "--steps", "1"], "train"),
    "mcp_without_mcp": ("mcp,mcp_types", ["mcp"], "agent"),
    "demo_without_gradio": ("gradio", ["demo", "--no-examples"], "demo"),
    "agent_vlm_without_openai": ("openai", ["agent", "--shapes-sample", "val:0", "--critic", "vlm", "--critic-model",
                                            "x", "--base-url", "http://127.0.0.1:9/v1"], "agent"),
}
# One fresh interpreter runs every scenario: it hides the scenario's modules (sys.modules[name] = None), runs
# `addp …` and records the exit code and stderr, then puts the modules back.
RUN = """
import contextlib, io, json, sys
from addp_agent.cli import main
results = {}
for key, (missing, argv) in json.loads(sys.argv[1]).items():
    saved = {name: sys.modules.get(name) for name in missing.split(",")}
    sys.modules.update({name: None for name in saved})
    stderr, code = io.StringIO(), 0
    try:
        with contextlib.redirect_stderr(stderr):
            main(argv)
    except SystemExit as exit:
        code = exit.code
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
    results[key] = {"code": code, "stderr": stderr.getvalue()}
sys.modules["langchain_core"] = None
try:
    import addp_agent.tools.langchain_tools
except Exception as error:
    results["python_api_without_langchain_core"] = {"code": type(error).__name__, "stderr": str(error)}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("extras")
    plan = {key: (missing, [*argv, *(["--out", str(out / key)] if argv[0] not in ("mcp", "demo") else [])])
            for key, (missing, argv, _) in SCENARIOS.items()}
    run = subprocess.run([sys.executable, "-c", RUN, json.dumps(plan)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    return {"results": json.loads(run.stdout.strip().splitlines()[-1]), "out": out}


@pytest.mark.parametrize("key", SCENARIOS)
def test_command_without_its_extra_names_the_extra(answers, key):
    missing, _, extra = SCENARIOS[key]
    answer = answers["results"][key]
    assert answer["code"] == 2, answer
    stderr = answer["stderr"]
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert f"pip install 'addp-agent[{extra}]'" in stderr and missing.split(",")[0] in stderr
    assert not (answers["out"] / key).exists()  # nothing half-written (eval used to leave config.json behind)


def test_python_api_without_langchain_core_names_the_agent_extra(answers):
    answer = answers["results"]["python_api_without_langchain_core"]
    assert answer["code"] == "MissingExtra" and "pip install 'addp-agent[agent]'" in answer["stderr"]


def test_a_broken_package_outside_the_extra_is_not_renamed(monkeypatch):
    monkeypatch.setitem(sys.modules, "not_an_extra_package", None)
    with pytest.raises(ModuleNotFoundError), extra_imports("agent"):
        import not_an_extra_package  # noqa: F401
    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(MissingExtra, match=r"pip install 'addp-agent\[eval\]'"):
        require_extra("eval")
    assert set(EXTRAS) == {"agent", "train", "eval", "demo"}
