"""The tour's analysis section: a page per article cell, a compact table for the whole zoo, and
the answer to the article's closing exercise (what is MGU?), written from computed results."""

from __future__ import annotations

import html
import json
from collections import Counter

import sympy

from ..cell import cell_unicode, zoo_names
from ..report.page import Section, TourContext
from .analyze import Analysis, analyze
from .compare import find_ganging
from .kinds import KINDS
from .symbols import txt

ARTICLE_CELLS = ["rnn", "lstm", "gru", "mgu"]


def _c(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _kinds_summary(a: Analysis) -> str:
    counts = Counter(k for m in a.modes for k in m.kind.values())
    return ", ".join(f"{k} ×{counts[k]}" if counts[k] > 1 else k
                     for k in KINDS if k in counts) or "—"


def read_offs(a: Analysis) -> str:
    """Which settings give which kind, per memory state: the article's read-offs, computed."""
    items = []
    for s in a.memory_states:
        for k in KINDS:
            labels = [m.label for m in a.modes if m.kind[s] == k]
            if labels:
                items.append(f"<li>{_c(s)} is <span class='kind'>{k}</span> at "
                             + "; ".join(map(_c, labels)) + "</li>")
        ident = [m.label for m in a.modes if m.identity_path[s]]
        items.append(f"<li>identity path {_c(s)} → {_c(s + chr(39))} at "
                     + ("; ".join(map(_c, ident)) if ident else "no setting") + "</li>")
    return ("<h4>Read-offs: which settings give which kind</h4><ul>" + "".join(items) + "</ul>"
            if a.modes else "")


def _where(place: dict) -> str:
    if place["type"] == "spdt":
        what = (f"selects {_c(place['signals'][0])} at 1, {_c(place['signals'][1])} at 0")
    elif place["type"] == "spst":
        on = place["closed_at"]
        what = f"passes {_c(place['signals'][0])} at {on}, cuts it at {1 - on}"
    else:
        what = f"{_c(place['term'])}: at 1 {_c(place['at_1'])}, at 0 {_c(place['at_0'])}"
    inside = f" inside {_c(place['inside'])}" if place["inside"] else ""
    return f"{place['type']} in <b>{html.escape(place['in'])}</b>{inside}: {what}"


def gate_effects(a: Analysis) -> list[str]:
    """Facts that hold in *every* setting with a gate at a value (LSTM: ``i=0`` ignores the
    input; ``f=1`` keeps an identity path; ``o=0`` zeroes ``h``), checked over all modes."""
    inputs = {sympy.Symbol(x) for x in a.cell.inputs}
    memory = [sympy.Symbol(m) for m in a.memory_states]
    out = []
    for g in a.gates:
        for v in (0, 1):
            ms = [m for m in a.modes if m.gates[g] == v]
            facts = []
            if all(m.updates[s.name] == s for m in ms for s in memory):
                facts.append("holds " + ", ".join(map(_c, a.memory_states)))
            elif all(not (m.updates[s.name].free_symbols & inputs) for m in ms for s in memory):
                facts.append("ignores the current input")
            if all(m.identity_path[s.name] for m in ms for s in memory):
                facts.append("keeps an identity path " + ", ".join(
                    f"{_c(s.name)} → {_c(s.name + chr(39))}" for s in memory))
            for r in a.readouts:
                if all(m.updates[r] == 0 for m in ms):
                    facts.append(f"zeroes the readout {_c(r)}")
            if ms and facts:
                out.append(f"{_c(f'{g}={v}')} " + " and ".join(facts))
    return out


def cell_html(a: Analysis, after_gates: str = "") -> str:
    """One cell's analysis as HTML: roles, what each gate does, stages, modes, switches, core,
    scan-parallelism. ``after_gates`` (trusted HTML) goes right after "what each gate does"."""
    d = a.to_dict()
    out = [f"<p>{html.escape(d['title'])}</p>",
           f"<pre class='equations'>{html.escape(cell_unicode(a.cell))}</pre>"]
    roles = [f"memory state{'s' if len(d['memory_states']) > 1 else ''}: "
             + ", ".join(_c(m) for m in d["memory_states"])]
    for r in d["readouts"]:
        if r["of"]:
            roles.append(f"{_c(r['state'])} is a readout of {', '.join(map(_c, r['of']))}: "
                         f"{_c(r['state'] + chr(39) + ' = ' + r['expr'])}, so the previous "
                         f"{_c(r['state'])} is rewritten as {_c(r['previous'])}")
        else:
            roles.append(f"{_c(r['state'])} copies gate values ({_c(r['expr'])})")
    if d["prev_gates"]:
        roles.append(", ".join(_c(v) for v in d["prev_gates"].values())
                     + " is the previous step's "
                     + ", ".join(_c(k) for k in d["prev_gates"]))
    out.append("<ul>" + "".join(f"<li>{r}</li>" for r in roles) + "</ul>")
    effects = gate_effects(a)
    if effects:
        out.append("<h4>What each gate does</h4><p>Read off from the 0/1 settings below: what "
                   "happens in <em>every</em> setting where the gate has that value.</p><ul>"
                   + "".join(f"<li>{e}</li>" for e in effects) + "</ul>")
    elif not a.gates:
        out.append("<h4>What each gate does</h4><p>This cell has no gates: every step rewrites "
                   "the whole memory through the recurrent weights. It is the baseline the gated "
                   "cells improve on.</p>")
    out.append(after_gates)
    s1, s2 = d["stages"]["1"], d["stages"]["2"]
    rows = "".join(
        f"<tr><td>{_c(m)}</td><td>{_c(s1['updates'][m])}</td><td>{_c(s2['updates'][m])}</td>"
        f"<td>{_c(s2['direct_gain'][m])}</td></tr>" for m in d["memory_states"])
    out.append("<h4>Simplifications 1 and 2: gates as given symbols, then as scalars</h4>"
               "<p>The memory update with the gates taken as given, then with each gate one "
               "number, so it moves out of the matrix products. The last column is the part of "
               "∂s'/∂s (how the new memory depends on the old one) that passes no weight "
               "matrix; where it is not 0, gradient can flow back without being multiplied by "
               "a weight.</p>"
               "<table><tr><th>state</th><th>1: gates given</th>"
               "<th>2: scalar gates</th><th>weight-free part of ∂s'/∂s</th></tr>"
               f"{rows}</table>")
    rows = []
    for m in a.modes:
        md = m.to_dict()
        for k, s in enumerate(a.memory_states):
            setting = f"<td rowspan='{len(a.memory_states)}'>{_c(m.label)}</td>" if k == 0 else ""
            ip = "yes" if md["identity_path"][s] else "no"
            rows.append(f"<tr>{setting}<td>{_c(s + chr(39) + ' = ' + md['updates'][s])}</td>"
                        f"<td class='kind'>{md['kind'][s]}</td><td>{ip}</td>"
                        f"<td>{_c(md['gradient'][s])}</td>"
                        f"<td class='muted'>{html.escape(md['details'][s]['description'])}"
                        "</td></tr>")
    if rows:
        out.append(f"<h4>Simplification 3: gates as 0/1 switches ({len(a.modes)} setting"
                   f"{'s' * (len(a.modes) > 1)})</h4>"
                   "<p>Each row sets every gate to 0 or 1 and shows what the update reduces "
                   "to, its kind, whether an identity path remains, and ∂s'/∂s (I is the "
                   "identity: the gradient passes back unchanged; 0: nothing passes).</p>"
                   "<table><tr><th>setting</th><th>reduced update</th><th>kind</th>"
                   "<th>identity path</th><th>∂s'/∂s</th><th>why</th></tr>"
                   + "".join(rows) + "</table>")
    elif d["modes_skipped"]:
        out.append(f"<p>{html.escape(d['modes_skipped'])}</p>")
    out.append(read_offs(a))
    if d["switches"]:
        rows = [f"<tr><td>{_c(s['gate'])}</td><td class='kind'>{s['type']}</td><td>"
                + "<br>".join(_where(p) for p in s["where"]) + "</td></tr>"
                for s in d["switches"]]
        out.append("<h4>Switches</h4><p>Where each gate acts, as drawn in the diagram "
                   "section: <b>spst</b> turns one signal on or off, <b>spdt</b> chooses "
                   "between two, <b>ganged</b> is one gate driving several switches.</p>"
                   "<table><tr><th>gate</th><th>type</th><th>where</th></tr>"
                   + "".join(rows) + "</table>")
    blocks = [f"<li>{_c(m)}: {_c(b['expr'])}: {b['act']} of input map(s) "
              f"{', '.join(b['input_maps']) or '—'} and recurrent map(s) "
              f"{', '.join(b['recurrent_maps']) or '— (none)'}; the state enters as "
              f"{', '.join(map(_c, b['through'])) or '—'}</li>"
              for m, bl in d["core"].items() for b in bl]
    out.append("<h4>Core (the article's red box)</h4><p>The linear-maps-plus-activation "
               "block the gates are wrapped around:</p><ul>" + "".join(blocks) + "</ul>")
    sp = ("yes: the recurrence is linear in the memory, a parallel scan computes it"
          if d["scan_parallel"] else "no: " + "; ".join(d["scan_parallel_reasons"][:3]))
    out.append("<p class='muted'><b>Scan-parallel</b> (an engine detail: can all steps be "
               f"computed at once instead of one after another?): {html.escape(sp)}</p>")
    out.append(f"<p class='muted'>JSON: <a href='analysis/{a.cell.name}.json'>"
               f"analysis/{a.cell.name}.json</a></p>")
    return "\n".join(out)


def mgu_exercise(mgu: Analysis, gru: Analysis) -> str:
    """The article's exercise, answered from the analyses of MGU and GRU (not a canned text)."""
    (gate,) = mgu.gates if len(mgu.gates) == 1 else (None,)
    sw = mgu.switch(gate) if gate else None
    parts = [f"<p><b>The exercise: analyse MGU.</b> The article ends by leaving this to the "
             f"reader; here is the answer, computed from the equations. MGU has {len(mgu.gates)} "
             "gate"
             f"{'s' * (len(mgu.gates) != 1)} ({', '.join(map(_c, mgu.gates))}) and "
             f"{len(mgu.memory_states)} memory state"
             f"{'s' * (len(mgu.memory_states) != 1)} "
             f"({', '.join(map(_c, mgu.memory_states))}).</p>"]
    if sw is not None:
        places = "; ".join(_where(p.to_dict(frozenset({gate}))) for p in sw.where)
        parts.append(f"<p>The analysis finds {_c(gate)} acting in {len(sw.where)} place"
                     f"{'s' * (len(sw.where) != 1)} ({sw.contacts} contacts): it is "
                     f"<b>{sw.type}</b>. {places}.</p>")
    gang = find_ganging(mgu, gru)
    if gang is not None:
        roles = "; ".join(f"its {role} plays GRU's {_c(ref)}"
                          + (" reversed" if sense == "reversed" else "")
                          for _, role, ref, sense in gang.roles)
        subst = ", ".join(f"{k} = {txt(v)}" for k, v in gang.mapping.items())
        check = ("substituting this into GRU's stage-1 update gives exactly MGU's (checked "
                 "symbolically)" if gang.exact else
                 "but substituting it into GRU's update does <em>not</em> give MGU's")
        parts.append(f"<p>Matched against GRU's switches: {roles}. So MGU is GRU with the gates "
                     f"ganged as {_c(subst)}; {check}.</p>")
    else:
        parts.append("<p>Its switch places do not match GRU's one to one.</p>")
    rows = []
    for m in mgu.modes:
        ((s, k),) = m.kind.items() if len(m.kind) == 1 else (next(iter(m.kind.items())),)
        same = [g.label for g in gru.modes if g.kind == m.kind
                and g.updates[s] == m.updates[s]]
        twin = (f"GRU's {' or '.join(map(_c, same))}" if same
                else "no GRU mode with the same reduced update")
        ip = " with an identity path" if m.identity_path[s] else ""
        rows.append(f"<li>{_c(m.label)}: {_c(s + chr(39) + ' = ' + txt(m.updates[s]))}, "
                    f"<b>{k}</b>{ip}; the same as {twin}</li>")
    parts.append("<p>Its switch settings:</p><ul>" + "".join(rows) + "</ul>")
    mgu_kinds = {k for m in mgu.modes for k in m.kind.values()}
    lost = sorted({f"{g.label} ({k})" for g in gru.modes for k in g.kind.values()
                   if k not in mgu_kinds})
    if lost:
        parts.append("<p>What the ganging gives up: GRU can also reach "
                     + ", ".join(map(_c, lost)) + ", which MGU cannot.</p>")
    subs = {sympy.Symbol(k): v for k, v in gang.mapping.items()} if gang else {}
    mine = [b.expr for bl in mgu.core.values() for b in bl]
    theirs = [b.expr.xreplace(subs) for bl in gru.core.values() for b in bl]
    acts = "/".join(sorted({b.act for bl in mgu.core.values() for b in bl}))
    core = (f"the same linear-maps-plus-{acts} block as GRU's" + (" once ganged" if subs else "")
            if mine == theirs else "a different block from GRU's")
    why = "" if mgu.scan_parallel else f" ({html.escape(mgu.scan_reasons[0])})"
    parts.append(f"<p>Core: {core}: {', '.join(_c(txt(e)) for e in mine)}. Scan-parallel: "
                 f"{'yes' if mgu.scan_parallel else 'no'}{why}.</p>")
    return "<div class='card'>" + "".join(parts) + "</div>"


def zoo_table(names: list[str]) -> str:
    rows = []
    for name in names:
        a = analyze(name)
        ip = sum(any(m.identity_path.values()) for m in a.modes)
        sw = ", ".join(f"{s.gate}: {s.type}" for s in a.switches) or "—"
        ro = ", ".join(f"{r} ({', '.join(ro.of) or 'gates'})" for r, ro in a.readouts.items())
        acts = sorted({b.act for bl in a.core.values() for b in bl})
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{', '.join(a.memory_states)}</td>"
                    f"<td>{html.escape(ro) or '—'}</td><td>{html.escape(sw)}</td>"
                    f"<td>{html.escape(_kinds_summary(a))}</td>"
                    f"<td>{ip}/{len(a.modes)}</td><td>{'yes' if a.scan_parallel else 'no'}</td>"
                    f"<td>{', '.join(acts) or '—'}</td></tr>")
    return ("<table><tr><th>cell</th><th>memory</th><th>readouts (of)</th><th>switches</th>"
            "<th>kinds over all settings</th><th>settings with identity path</th>"
            "<th>scan-parallel</th><th>core act</th></tr>" + "".join(rows) + "</table>")


def _identity_verdict(analyses: dict[str, dict]) -> str:
    """Which cells have no setting with an identity path, from the computed analyses."""
    none = [n for n, d in analyses.items()
            if d["modes"] and not any(any(m["identity_path"].values()) for m in d["modes"])]
    if not none:
        return ("every cell has at least one setting with an identity path, the route that "
                "carries gradients over long sequences.")
    return (", ".join(map(_c, none)) + (" has" if len(none) == 1 else " have")
            + " none; every other cell has at least one setting with an identity path, the route "
            "that lets gated cells carry gradients over long sequences.")


def section(ctx: TourContext) -> list[Section]:
    """Overview of the whole zoo, then one section per article cell (RNN, LSTM, GRU, MGU)."""
    names = zoo_names()
    folder = ctx.out / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    shared = ctx.shared.setdefault("analysis", {})
    for k, name in enumerate(names):
        ctx.say(f"analysing {name} ({k + 1}/{len(names)})")
        d = analyze(name).to_dict()
        shared[name] = d
        (folder / f"{name}.json").write_text(json.dumps(d, indent=1, ensure_ascii=False),
                                              encoding="utf-8")
    intro = (
        "<p>The method, computed from each cell's equations: <b>(1)</b> take the gates as given "
        "(and write the cell in terms of its memory state: for LSTM the previous "
        "<code>h</code> becomes <code>o_prev ⊙ tanh(c)</code>, a <em>readout</em> of the cell "
        "state <code>c</code>); <b>(2)</b> make each gate a scalar, so it factors out of the "
        "linear maps; <b>(3)</b> set each gate to 0 or 1 and simplify the update in every "
        "setting. Each simplified update gets a <em>kind</em> (hold, rnn, residual_rnn, "
        "feedforward, zero, other; see “How to read this report” above) and is checked for an "
        "<em>identity path</em>: does ∂s'/∂s contain the identity with no weight on it?</p>"
        "<p>The table sums this up for every built-in cell; the pages after it go through the "
        "article's four cells in detail. Look at the column <b>settings with identity path</b>: "
        + _identity_verdict(shared) + "</p>")
    out = [Section("analysis", "The three simplifications", intro + zoo_table(names),
                   summary="what each cell becomes when its gates are 0/1 switches")]
    for name in ARTICLE_CELLS:
        if name not in names:
            continue
        a = analyze(name)
        exercise = mgu_exercise(a, analyze("gru")) if name == "mgu" and "gru" in names else ""
        body = cell_html(a, exercise)
        what = (f"what {', '.join(a.gates)} do{'es' * (len(a.gates) == 1)}, setting by setting"
                if a.gates else "no gates: the baseline")
        out.append(Section(f"analysis-{name}", f"Analysis: {name.upper()}", body,
                           summary=what + ("; the article's exercise answered" if exercise
                                           else "")))
    return out


__all__ = ["cell_html", "gate_effects", "mgu_exercise", "read_offs", "section", "zoo_table"]
