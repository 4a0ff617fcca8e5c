"""Hostile study inputs: config files, hand-edited plans and trial records. Each is one
``error:`` line naming the file (exit 2, no traceback), or, for a damaged trial record, a trial
that counts as unfinished; no plan can send a trial's run folder outside ``runs/``."""

from __future__ import annotations

import json
import os
import re

import pytest
from typer.testing import CliRunner

from gatelab.cli import app
from gatelab.errors import GatelabError
from gatelab.study.analysis import collect
from gatelab.study.runner import load_plan
from gatelab.study.space import StudyError, StudySpec, load_config, make_plan, spec_to_dict

runner = CliRunner()

CONFIGS = {
    "space = 3\n": "[space] must be a table",
    "fixed = [1, 2]\n": "[fixed] must be a table",
    "[space]\nlr = {low = 'x', high = 2}\n": "low must be a finite number",
    "[space]\nlr = {low = 1e999, high = 2}\n": "low must be a finite number",
    "[space]\nlr = {low = 1, high = nan}\n": "high must be a finite number",
    "[space]\nlr = {low = -1, high = 2}\n": "a log scale needs low > 0",
    "[space]\nlr = {low = 2, high = 1}\n": "need low <= high",
    "[space]\nbatch = {choices = 'abc'}\n": "choices must be a list",
    "[space]\nbatch = {choices = ['a', 'b']}\n": "choices must be finite numbers",
    "[space]\nbatch = {choices = []}\n": "non-empty list of choices",
    "[space]\nlr = {kind = ['x'], low = 1, high = 2}\n": "unknown kind",
    "[space]\nlr = 0.1\n": "must be a table such as",
    "[space]\nsteps = {low = 1, high = 2}\n": "not a searchable hyperparameter",
    "[fixed]\ncell_text = 'x'\n": "not a training option a study can fix",
    "[other]\n": "unknown section",
    "[space\n": "not a valid TOML study config",
    "a = [" * 2000 + "\n": "not a valid TOML study config",
}


@pytest.mark.parametrize("text", list(CONFIGS))
def test_bad_configs_are_one_line_naming_the_file(tmp_path, text):
    f = tmp_path / "space.toml"
    f.write_text(text)
    with pytest.raises(StudyError, match=re.escape(CONFIGS[text])) as e:
        load_config(f)
    assert str(f) in str(e.value)


def test_json_config_must_be_an_object_and_special_files_are_refused(tmp_path):
    f = tmp_path / "space.json"
    f.write_text("[1, 2]")
    with pytest.raises(StudyError, match="a study config is a table"):
        load_config(f)
    with pytest.raises(GatelabError, match="not a regular file"):
        load_config("/dev/zero")  # would otherwise be read forever
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(GatelabError, match="FIFO"):
        load_config(fifo)  # would otherwise wait for a writer forever


def _plan_folder(tmp_path, edit):
    spec = StudySpec("adding", ["lstm", "gru"], 2, fixed={"steps": 5, "T": 10})
    data = {"spec": spec_to_dict(spec), "trials": make_plan(spec)}
    edit(data)
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps(data))
    return folder


def _set_id(tid):
    def edit(data):
        data["trials"][0]["id"] = tid
    return edit


@pytest.mark.parametrize("edit, fragment", [
    (_set_id("../../escaped"), "bad or repeated id"),
    (_set_id("/tmp/abs"), "bad or repeated id"),
    (_set_id(".hidden"), "bad or repeated id"),
    (_set_id("lstm-001"), "bad or repeated id"),  # the id of another trial
    (_set_id(7), "wrong type"),
    (lambda d: d["trials"][1].pop("config"), "wrong type"),
    (lambda d: d["trials"].append([1, 2]), "wrong type"),
    (lambda d: d["trials"][0].__setitem__("draw", True), "wrong type"),
    (lambda d: d.__setitem__("trials", {}), "expected an object"),
    (lambda d: d["spec"].pop("space"), "its spec has no 'space'"),
    (lambda d: d["spec"].__setitem__("trials", 0), "--trials and --seeds must be at least 1"),
    (lambda d: d["spec"]["space"]["lr"].__setitem__("low", "x"), "low must be a finite"),
])
def test_hand_edited_plans_are_refused_naming_the_file(tmp_path, edit, fragment):
    folder = _plan_folder(tmp_path, edit)
    with pytest.raises(StudyError, match=re.escape(fragment)) as e:
        load_plan(folder)
    assert str(folder / "plan.json") in str(e.value)
    for args in (["study", "--report", str(folder)],
                 ["study", "--out", str(folder), "--resume"]):  # refused before Ray starts
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (res.output, res.exception)
        assert "Traceback" not in res.output
        assert fragment.split("'")[0] in res.stderr
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("record", ["[1, 2]", '{"status": "done", "metric": "1.5"}',
                                    '{"status": "done", "metric": NaN}',
                                    '{"status": "done", "metric": true}', "{", ""])
def test_damaged_trial_records_count_as_unfinished(tmp_path, record):
    folder = _plan_folder(tmp_path, lambda d: None)
    spec, plan = load_plan(folder)
    (folder / "runs" / plan[0]["id"]).mkdir(parents=True)
    (folder / "runs" / plan[0]["id"] / "trial.json").write_text(record)
    _, rows = collect(folder)
    assert rows[0]["metric"] is None
    assert len(rows) == len(plan)


def test_a_cell_file_with_an_unsafe_name_gives_safe_trial_ids(tmp_path):
    from gatelab.cell.zoo import ZOO_DIR

    f = tmp_path / "my cell (v2)!.cell"
    f.write_text((ZOO_DIR / "mgu.cell").read_text())
    spec = StudySpec("adding", ["lstm", str(f)], 1, fixed={"steps": 5, "T": 10})
    data = {"spec": spec_to_dict(spec), "trials": make_plan(spec)}
    assert [t["id"] for t in data["trials"]] == ["lstm-000", "my-cell-v2-000"]
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps(data))
    assert [t["id"] for t in load_plan(folder)[1]] == ["lstm-000", "my-cell-v2-000"]
