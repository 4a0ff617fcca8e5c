"""``gatelab bench``'s CPU machinery at toy sizes: every case runs, the default (vendor) path is
timed next to the forced generated engine, and each ratio is the quotient of its two medians."""

from __future__ import annotations

import pytest

from gatelab.engine.bench import TARGETS, format_markdown, format_summary, run_benchmark


@pytest.fixture(scope="module")
def result():
    return run_benchmark(T=3, N=2, H=4, repeats=2, scan_T=8, scan_N=2, scan_H=4, memory=False,
                         small=(3, 2, 4, 2), threads=1)


def test_every_case_is_timed_with_positive_medians(result):
    med = result["median_ms"]
    for label in ("torch nn.LSTM", "gatelab LSTM (auto)", "gatelab LSTM", "torch nn.GRU",
                  "gatelab GRU (auto)", "gatelab GRU", "gatelab MGU", "small: torch nn.LSTM",
                  "small: gatelab LSTM (auto)", "small: gatelab LSTM"):
        assert med[label] > 0, label
        assert len(result["ms"][label]) == 2


def test_ratios_are_quotients_of_the_medians(result):
    med = dict(result["median_ms"])
    user = [k for k in med if k.startswith("user cell (")]  # the user's file names its case
    assert len(user) == 1
    med["user cell"] = med[user[0]]
    by_name = {q["name"]: q for q in result["ratios"]}
    assert "gatelab LSTM (auto) / torch LSTM" in by_name
    for name, a, b, target in TARGETS:
        if name in by_name:
            q = by_name[name]
            assert q["value"] == pytest.approx(med[a] / med[b], rel=1e-2, abs=1e-3)
            assert q["met"] is (None if target is None else q["value"] <= target + 1e-3)


def test_markdown_and_summary_name_every_ratio(result):
    md = format_markdown(result)
    summary = format_summary([result])
    for q in result["ratios"]:
        assert q["name"] in md and q["name"] in summary
    assert "minGRU" in md and "scan" in result
