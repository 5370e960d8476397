"""The ``llm-bridge`` command line and the dataclass -> flags helper behind it."""

import argparse
import json
from dataclasses import dataclass, field

import pytest

from llm_bridge._config import add_arguments, given
from llm_bridge.cli import build_parser, main
from llm_bridge.data import load_jsonl
from llm_bridge.train import PRESETS


@dataclass(frozen=True)
class _Demo:
    name: str = field(default="x", metadata={"help": "a name with 100% help"})
    count: int = field(default=1, metadata={"help": "a count"})
    rate: float | None = field(default=None, metadata={"help": "a rate"})
    flag: bool = field(default=False, metadata={"help": "a flag"})
    items: tuple[str, ...] = field(default=("a", "b"), metadata={"help": "items"})
    mode: str = field(default="on", metadata={"help": "a mode", "choices": ["on", "off"]})


def _parse(argv, prefix=""):
    parser = argparse.ArgumentParser()
    add_arguments(parser, _Demo, prefix=prefix)
    return given(parser.parse_args(argv), _Demo, prefix=prefix)


def test_flags_from_dataclass():
    assert _parse([]) == {}  # only typed flags come back, so presets can fill the rest
    got = _parse(
        [
            "--name",
            "y",
            "--count",
            "3",
            "--rate",
            "0.5",
            "--flag",
            "--items",
            "p, q,r",
            "--mode",
            "off",
        ]
    )
    assert got == {
        "name": "y",
        "count": 3,
        "rate": 0.5,
        "flag": True,
        "items": ("p", "q", "r"),
        "mode": "off",
    }
    assert _parse(["--rate", "none", "--no-flag"]) == {"rate": None, "flag": False}
    assert _parse(["--data-count", "4"], prefix="data") == {"count": 4}


def test_flag_errors_exit(capsys):
    with pytest.raises(SystemExit):
        _parse(["--count", "many"])
    with pytest.raises(SystemExit):
        _parse(["--mode", "sideways"])


def test_help_lists_every_config_field():
    from dataclasses import fields

    from llm_bridge.data import DatasetConfig
    from llm_bridge.train import DPOTrainConfig

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    synth_help = sub["synth"].format_help()
    train_help = sub["train"].format_help()
    for f in fields(DatasetConfig):
        assert f"--{f.name.replace('_', '-')}" in synth_help
        assert f"--data-{f.name.replace('_', '-')}" in train_help
    for f in fields(DPOTrainConfig):
        assert f"--{f.name.replace('_', '-')}" in train_help


def test_synth_writes_dataset_and_summary(tmp_path, capsys):
    out = tmp_path / "d.jsonl"
    argv = ["synth", "--order", "owl,cat,dog", "--p12", "1", "--p23", "0"]
    assert main([*argv, "--n", "20", "--exact", "--out", str(out), "--quiet"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("llm-bridge synth: 20 rows")
    rows = load_jsonl(out).to_list()
    assert len(rows) == 20
    assert all(r["winner"] == ("owl" if r["pair"] == "1-2" else "dog") for r in rows)
    manifest = json.loads((tmp_path / "d.manifest.json").read_text())
    assert manifest["params"]["order"] == ["owl", "cat", "dog"]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--p12", "1.5"], "p12 must be a probability"),
        (["--order", "dog,dog,cat"], "distinct"),
        (["--order", "dog,cat"], "exactly three"),
        (["--n", "0"], "n must be an integer >= 1"),
    ],
)
def test_synth_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, fragment):
    assert main(["synth", *argv, "--out", str(tmp_path / "d.jsonl"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and err.startswith("llm-bridge synth: error:")
    assert not (tmp_path / "d.jsonl").exists()


@pytest.mark.slow
def test_train_on_tiny_random(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "tiny-random", "--preset", "cpu", "--data-n", "8"]
    argv += ["--max-steps", "1", "--batch-size", "4", "--lora-r", "2", "--output-dir", str(out)]
    assert main([*argv, "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("llm-bridge train: tiny-random on 8 pairs, 1 steps")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["lora_r"] == 2  # the flag given
    assert manifest["config"]["learning_rate"] == PRESETS["cpu"].learning_rate  # the preset
    assert manifest["dataset"]["params"]["n"] == 8


def test_train_refuses_data_file_and_data_flags(tmp_path, capsys):
    argv = ["train", "--model", "tiny-random", "--data", "x.jsonl", "--data-p23", "0.5"]
    assert main([*argv, "--output-dir", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err


def test_train_missing_model_is_one_line(tmp_path, capsys):
    argv = ["train", "--model", str(tmp_path / "no-such-model"), "--data-n", "4"]
    assert main([*argv, "--output-dir", str(tmp_path / "run"), "--quiet"]) == 2
    assert "no model directory" in capsys.readouterr().err
