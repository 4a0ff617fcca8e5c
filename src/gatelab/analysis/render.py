"""Print an analysis: Rich tables for the terminal, Markdown, LaTeX (JSON is ``to_dict``)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..cell import cell_latex
from .analyze import Analysis
from .stages import Mode


def _switch_where(sw: dict) -> str:
    parts = []
    for p in sw["where"]:
        if p["type"] == "spdt":
            what = f"selects {p['signals'][0]} (at 1) / {p['signals'][1]} (at 0)"
        elif p["type"] == "spst":
            what = f"switches {p['signals'][0]} (on at {p['closed_at']})"
        else:
            what = f"{p['term']} (at 1: {p['at_1']}; at 0: {p['at_0']})"
        inside = f", inside {p['inside']}" if p["inside"] else ""
        parts.append(f"{p['type']} in {p['in']}: {what}{inside}")
    return "\n".join(parts) or "—"


def _roles(d: dict) -> list[tuple[str, str]]:
    rows = [(m, "memory") for m in d["memory_states"]]
    for r in d["readouts"]:
        of = f"readout of {', '.join(r['of'])}" if r["of"] else "copy of gate values"
        rows.append((r["state"], f"{of}: {r['state']}' = {r['expr']}; previous {r['previous']}"))
    return rows


def mode_table(modes: list[Mode], memory_states: tuple[str, ...], title: str) -> Table:
    """One row per mode: setting, reduced memory updates, kind, identity path."""
    t = Table(title=title, show_lines=True)
    for col in ("setting", "reduced update", "kind", "identity path"):
        t.add_column(col, overflow="fold")
    for m in modes:
        d = m.to_dict()
        t.add_row(m.label, "\n".join(f"{s}' = {d['updates'][s]}" for s in memory_states),
                  "\n".join(d["kind"][s] for s in memory_states),
                  "\n".join("yes" if d["identity_path"][s] else "no" for s in memory_states))
    return t


def rich_analysis(a: Analysis) -> Group:
    """Terminal rendering: the stages, the modes, the switches, the core."""
    d = a.to_dict()
    out: list = [Text(f"{d['cell']} — {d['title']}", style="bold"), Text(d["equations"])]
    roles = Table(title="states")
    roles.add_column("state")
    roles.add_column("role", overflow="fold")
    for row in _roles(d):
        roles.add_row(*row)
    out.append(roles)
    st = Table(title="stages 1 and 2 (gates free; then scalar gates)", show_lines=True)
    for col in ("state", "stage 1", "stage 2", "direct gain (no weight)"):
        st.add_column(col, overflow="fold")
    s1, s2 = d["stages"]["1"], d["stages"]["2"]
    for s in d["states"]:
        st.add_row(s, s1["updates"][s], s2["updates"][s], s2["direct_gain"].get(s, "—"))
    out.append(st)
    if a.modes:
        out.append(mode_table(a.modes, a.memory_states, f"stage 3: {len(a.modes)} modes"))
    else:
        out.append(Text(d["modes_skipped"] or "", style="yellow"))
    sw = Table(title="switches", show_lines=True)
    for col in ("gate", "type", "where"):
        sw.add_column(col, overflow="fold")
    for s in d["switches"]:
        sw.add_row(s["gate"], s["type"], _switch_where(s))
    if d["switches"]:
        out.append(sw)
    core = Table(title="core (linear maps + nonlinearity)", show_lines=True)
    for col in ("state", "block", "act", "input maps", "recurrent maps", "state enters as"):
        core.add_column(col, overflow="fold")
    for m, blocks in d["core"].items():
        for b in blocks:
            core.add_row(m, b["expr"], b["act"], ", ".join(b["input_maps"]) or "—",
                         ", ".join(b["recurrent_maps"]) or "—", ", ".join(b["through"]) or "—")
    out.append(core)
    why = "" if d["scan_parallel"] else ": " + "; ".join(d["scan_parallel_reasons"][:3])
    out.append(Text(f"scan-parallel: {'yes' if d['scan_parallel'] else 'no'}{why}"))
    out.append(Text(f"engine path (backend='auto'): {d['engine']['path']}: "
                    f"{d['engine']['reason']}"))
    return Group(*out)


def rich_mode(a: Analysis, mode: Mode) -> Group:
    """Terminal rendering of one setting."""
    d = mode.to_dict()
    t = Table(title=f"{a.cell.name} at {mode.label}", show_lines=True)
    for col in ("state", "reduced update", "kind", "identity path", "∂s'/∂s"):
        t.add_column(col, overflow="fold")
    for s, e in d["updates"].items():
        if s in d["kind"]:
            t.add_row(s, f"{s}' = {e}", d["kind"][s], "yes" if d["identity_path"][s] else "no",
                      d["gradient"][s])
        else:
            t.add_row(s, f"{s}' = {e}", "readout", "", "")
    return Group(t, Text(d["note"]))


def print_rich(renderable: Group) -> None:
    Console().print(renderable)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_mode(mode: Mode, memory_states: tuple[str, ...]) -> str:
    d = mode.to_dict()
    rows = [f"| `{_md_escape(mode.label)}` | "
            + "<br>".join(f"`{s}' = {_md_escape(d['updates'][s])}`" for s in memory_states)
            + " | " + ", ".join(d["kind"][s] for s in memory_states)
            + " | " + ", ".join("yes" if d["identity_path"][s] else "no" for s in memory_states)
            + " |"]
    return "\n".join(rows)


def markdown(a: Analysis) -> str:
    """The whole analysis as Markdown."""
    d = a.to_dict()
    lines = [f"# Analysis of `{d['cell']}`", "", d["title"], "", "```", d["equations"], "```", "",
             "## States", "", "| state | role |", "|---|---|"]
    lines += [f"| {s} | {_md_escape(r)} |" for s, r in _roles(d)]
    lines += ["", "## Stages 1 and 2", "",
              "| state | stage 1 (gates free) | stage 2 (scalar gates) | direct gain |",
              "|---|---|---|---|"]
    s1, s2 = d["stages"]["1"], d["stages"]["2"]
    for s in d["states"]:
        lines.append(f"| {s} | `{_md_escape(s1['updates'][s])}` | "
                     f"`{_md_escape(s2['updates'][s])}` | {s2['direct_gain'].get(s, '—')} |")
    lines += ["", f"## Stage 3: {len(a.modes)} modes", ""]
    if a.modes:
        lines += ["| setting | reduced update | kind | identity path |", "|---|---|---|---|"]
        lines += [markdown_mode(m, a.memory_states) for m in a.modes]
    else:
        lines.append(d["modes_skipped"] or "")
    lines += ["", "## Switches", "", "| gate | type | where |", "|---|---|---|"]
    for s in d["switches"]:
        where = _md_escape(_switch_where(s)).replace("\n", "<br>")
        lines.append(f"| {s['gate']} | {s['type']} | {where} |")
    lines += ["", "## Core", "", "| state | block | act | input maps | recurrent maps | through |",
              "|---|---|---|---|---|---|"]
    for m, blocks in d["core"].items():
        for b in blocks:
            lines.append(f"| {m} | `{_md_escape(b['expr'])}` | {b['act']} | "
                         f"{', '.join(b['input_maps']) or '—'} | "
                         f"{', '.join(b['recurrent_maps']) or '—'} | "
                         f"{_md_escape(', '.join(b['through'])) or '—'} |")
    sp = "yes" if d["scan_parallel"] else "no (" + "; ".join(d["scan_parallel_reasons"]) + ")"
    lines += ["", f"**Scan-parallel:** {_md_escape(sp)}", "",
              f"**Engine path** (`backend='auto'`): {d['engine']['path']}: "
              f"{_md_escape(d['engine']['reason'])}", ""]
    return "\n".join(lines)


def latex(a: Analysis) -> str:
    """The cell, stage 2 and every mode as LaTeX (``aligned`` blocks)."""
    d = a.to_dict()
    out = [f"% gatelab analysis of {d['cell']}", "% the cell", cell_latex(a.cell),
           "% stage 2: scalar gates", "\\begin{aligned}"]
    rows = [f"{s}_t &= {e}" for s, e in d["stages"]["2"]["updates_latex"].items()]
    out += [" \\\\\n".join(rows), "\\end{aligned}", "% stage 3: every setting"]
    for m in a.modes:
        md = m.to_dict()
        setting = ",\\ ".join(f"{g}={v}" for g, v in m.gates.items()) or "\\text{no gates}"
        body = " \\\\\n".join(
            f"{s}_t &= {md['updates_latex'][s]} && \\text{{{_tex_text(md['kind'][s])}}}"
            for s in a.memory_states)
        out.append(f"% {m.label}\n\\begin{{aligned}}\n&{setting}: \\\\\n{body}\n\\end{{aligned}}")
    return "\n".join(out) + "\n"


def latex_mode(a: Analysis, mode: Mode) -> str:
    md = mode.to_dict()
    rows = [f"{s}_t &= {e}"
            + (f" && \\text{{{_tex_text(md['kind'][s])}}}" if s in md["kind"] else "")
            for s, e in md["updates_latex"].items()]
    return f"% {a.cell.name} at {mode.label}\n\\begin{{aligned}}\n" + " \\\\\n".join(rows) + \
        "\n\\end{aligned}\n"


def _tex_text(word: str) -> str:
    """``word`` safe inside ``\\text{}``: underscores escaped (``residual_rnn``)."""
    return word.replace("_", "\\_")
