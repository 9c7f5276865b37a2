"""`plot_runs` / `dinosim plot` on REAL tiny runs made by `dinosim curriculum` (real PPO on the velociraptor env).

The session fixture trains two tiny 2-stage runs once (about 20 s each); expectations are read independently
from the run folders' own files (TensorBoard events through TensorBoard's reader, metrics.jsonl, summary.json,
config.toml), then compared with the Figure's axes, titles and lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib


def tb_scalars(run_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar of the run's event files, read with TensorBoard's own reader (independent of run_logs)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for folder in sorted({p.parent for p in run_dir.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return {tag: (sorted(pts), [pts[s] for s in sorted(pts)]) for tag, pts in out.items()}


def lines_by_gid(ax, prefix: str) -> list:
    return [line for line in ax.get_lines() if (line.get_gid() or "").startswith(prefix)]


def panels(fig) -> dict[str, object]:
    return {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}


def test_one_panel_per_logged_reward_component_with_the_logged_values(tiny_runs):
    from dinosim.tracking.plots import EVAL_REWARD_TITLE, EVAL_SUCCESS_TITLE, plot_runs

    run = tiny_runs["A"]
    scalars = tb_scalars(run)
    components = {t[len("reward/"):]: v for t, v in scalars.items() if t.startswith("reward/")}
    nonzero = {t for t, (_, values) in components.items() if any(v != 0.0 for v in values)}
    assert {"alive", "posture", "fall"} <= nonzero  # the velociraptor's balance terms are live

    fig = plot_runs([run])
    by_title = panels(fig)
    assert list(by_title)[:2] == [EVAL_REWARD_TITLE, EVAL_SUCCESS_TITLE]
    assert set(by_title) - {EVAL_REWARD_TITLE, EVAL_SUCCESS_TITLE} == {f"reward/{t}" for t in nonzero}
    for term in nonzero:
        (line,) = lines_by_gid(by_title[f"reward/{term}"], "data:")
        steps, values = components[term]
        assert list(line.get_xdata()) == steps
        assert list(line.get_ydata()) == pytest.approx(values, rel=1e-6)
    zero = sorted(set(components) - nonzero)
    assert zero, "the tiny run should have inactive terms (e.g. success) to name in the title"
    assert all(term in fig._suptitle.get_text() for term in zero)

    everything = panels(plot_runs([run], include_zero=True))
    assert {f"reward/{t}" for t in components} <= set(everything)


def test_eval_panel_follows_metrics_jsonl(tiny_runs):
    from dinosim.tracking.plots import EVAL_REWARD_TITLE, plot_runs

    run = tiny_runs["A"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if r.get("eval_kind") != "gate"]  # the eval panel plots the screenings
    (line,) = lines_by_gid(panels(plot_runs([run]))[EVAL_REWARD_TITLE], "data:")
    assert list(line.get_xdata()) == [r["global_step"] for r in records]
    assert list(line.get_ydata()) == pytest.approx([r["eval/mean_reward"] for r in records])


def test_stage_boundary_on_every_panel_where_stage_2_began(tiny_runs):
    from dinosim.tracking.plots import plot_runs

    run = tiny_runs["A"]
    summary = json.loads((run / "summary.json").read_text())
    start2 = summary["stages"]["2"]["start_step"]
    assert 0 < start2 < summary["global_step"]
    assert summary["stages"]["1"]["gate_passed_at"] == start2  # stage 1 ended at its gate
    stage_values = tb_scalars(run)["curriculum/stage"]
    assert sorted(set(stage_values[1])) == [1.0, 2.0]

    for title, ax in panels(plot_runs([run])).items():
        boundaries = lines_by_gid(ax, "stage-boundary:")
        assert len(boundaries) == 1, title
        assert boundaries[0].get_gid().endswith(":2")
        assert list(boundaries[0].get_xdata()) == [start2, start2]


def test_gate_thresholds_drawn_per_stage_from_config_toml(tiny_runs):
    from dinosim.tracking.plots import EVAL_REWARD_TITLE, EVAL_SUCCESS_TITLE, plot_runs

    run = tiny_runs["A"]
    gates = {n: tomllib.loads((run / f"stage{n}" / "config.toml").read_text())["curriculum"] for n in (1, 2)}
    summary = json.loads((run / "summary.json").read_text())
    start2, end = summary["stages"]["2"]["start_step"], summary["global_step"]
    by_title = panels(plot_runs([run]))

    reward_gates = {line.get_gid().rsplit(":", 1)[1]: line
                    for line in lines_by_gid(by_title[EVAL_REWARD_TITLE], "gate:")}
    assert set(reward_gates) == {"1", "2"}
    assert list(reward_gates["1"].get_xdata()) == [0, start2]
    assert list(reward_gates["1"].get_ydata()) == [gates[1]["min_avg_reward"]] * 2
    assert list(reward_gates["2"].get_xdata()) == [start2, end]
    assert list(reward_gates["2"].get_ydata()) == [gates[2]["min_avg_reward"]] * 2

    success_gates = lines_by_gid(by_title[EVAL_SUCCESS_TITLE], "gate:")
    assert "min_success_rate" not in gates[1]
    assert [g.get_gid().rsplit(":", 1)[1] for g in success_gates] == ["2"]
    assert list(success_gates[0].get_ydata()) == [gates[2]["min_success_rate"]] * 2


def test_two_runs_overlay_component_by_component_with_a_legend(tiny_runs):
    from dinosim.tracking.plots import plot_runs

    a, b = tiny_runs["A"], tiny_runs["B"]
    fig = plot_runs([a, b])
    legend_texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "velociraptor/A" in legend_texts and "velociraptor/B" in legend_texts
    component_panels = {t: ax for t, ax in panels(fig).items() if t.startswith("reward/")}
    assert "reward/alive" in component_panels
    for ax in component_panels.values():
        data = lines_by_gid(ax, "data:")
        assert {line.get_gid() for line in data} <= {"data:velociraptor/A", "data:velociraptor/B"}
        assert len({line.get_color() for line in data}) == len(data)
    alive = {line.get_gid(): list(line.get_ydata()) for line in lines_by_gid(component_panels["reward/alive"], "data:")}
    assert len(alive) == 2 and alive["data:velociraptor/A"] != alive["data:velociraptor/B"]  # different configs
    assert "A vs velociraptor/B" in fig._suptitle.get_text()


def test_cli_plot_writes_a_png_of_the_figure(tiny_runs, tmp_path, dinosim_cli):
    from PIL import Image

    out = tmp_path / "compare.png"
    proc = dinosim_cli("plot", str(tiny_runs["A"]), str(tiny_runs["B"]), "--out", str(out), "--dpi", "50")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "2 runs" in proc.stdout
    from dinosim.tracking.plots import plot_runs

    inches = plot_runs([tiny_runs["A"], tiny_runs["B"]]).get_size_inches()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (round(inches[0] * 50), round(inches[1] * 50))


@pytest.mark.parametrize("case", ["missing", "not_a_run", "stage_folder", "no_logs", "bad_suffix", "labels"])
def test_cli_plot_bad_input_is_one_line_exit_2_without_heavy_imports(case, tiny_runs, tmp_path, started_run,
                                                                     checkout_root):
    args = {
        "missing": [str(tmp_path / "nope")],
        "not_a_run": [str(tmp_path)],
        "stage_folder": [str(tiny_runs["A"] / "stage1")],
        "no_logs": [str(started_run)],
        "bad_suffix": [str(tiny_runs["A"]), "--out", str(tmp_path / "x.txt")],
        "labels": [str(tiny_runs["A"]), "--label", "a", "--label", "b"],
    }[case]
    probe = ("import sys\nfrom dinosim.cli import main\n"
             "try:\n    main(sys.argv[1:])\n"
             "finally:\n    print('HEAVY:' + ','.join(m for m in ('matplotlib', 'tensorboard', 'torch') "
             "if m in sys.modules), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", probe, "plot", *args], capture_output=True, text=True,
                          cwd=checkout_root,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1] == "HEAVY:"
    expected = {"missing": "no such folder", "not_a_run": "not a dinosim run folder", "stage_folder": "stage folder",
                "no_logs": "no training logs yet", "bad_suffix": "unsupported image type", "labels": "one per run"}
    assert expected[case] in lines[0]
