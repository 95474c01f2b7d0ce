"""The report: ratios against the targets and the full table, from a run's JSON document."""

from __future__ import annotations

import datetime as dt
import json

from benchmarks.compare import report
from benchmarks.compare.report import Goal
from benchmarks.compare.stats import Figure


def fig(name: str, **values: float) -> Figure:
    unit = "frames" if name.startswith("frames") else "requests"
    return Figure(name=name, unit=unit, count=100, seconds=10.0, **values)  # type: ignore[arg-type]


def doc(ours: list[Figure], theirs: list[Figure], checks: dict[str, list[str]] | None = None) -> dict[str, object]:
    d = report.document(
        command="python -m benchmarks.compare", mode="full", settings={"duration": 10},
        servers={"tessel": {"name": "tessel", "version": "0.1.0"},
                 "orthanc": {"name": "orthanc", "version": "1.10.1", "dicomweb_plugin": "1.7"}},
        figures={"tessel": ours, "orthanc": theirs}, checks=checks or {"tessel": [], "orthanc": []},
        load_start=[0.1, 0.2, 0.3], load_end=[1.0, 0.5, 0.4],
        other_work={"mean_cores": 0.04, "p95_cores": 0.1, "seconds": 300.0}, caveats=["two cores"],
        started=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    d["machine"] = {**d["machine"], "cpu": "Test CPU", "cores": 2}  # whatever runs the tests
    return json.loads(json.dumps(d))  # what --render reads back


def test_latency_goal_needs_the_ratio_and_the_absolute_limit() -> None:
    goal = Goal("frames_wsi_16", "p99_ms", 1 / 100, absolute_ms=20)
    orthanc = fig("frames_wsi_16", p99_ms=14_000)
    assert goal.met(fig("frames_wsi_16", p99_ms=19), orthanc) is True
    assert goal.met(fig("frames_wsi_16", p99_ms=25), orthanc) is False  # 1/560 of Orthanc but over 20 ms
    assert goal.met(fig("frames_wsi_16", p99_ms=15), fig("frames_wsi_16", p99_ms=1000)) is False  # only 1/67


def test_rate_goal_is_met_at_or_above_the_ratio() -> None:
    goal = Goal("frames_ct_raw_16", "rate", 10)
    assert goal.met(fig("x", rate=540), fig("x", rate=54)) is True
    assert goal.met(fig("x", rate=539), fig("x", rate=54)) is False


def test_a_figure_with_errors_meets_no_goal() -> None:
    goal = Goal("stow_ct_1", "rate", 1)
    broken = fig("stow_ct_1", rate=1000)
    broken.errors = 3
    assert goal.met(broken, fig("stow_ct_1", rate=10)) is None


def test_markdown_shows_run_context_ratios_and_every_figure() -> None:
    ours = [fig("frames_wsi_16", p50_ms=4, p95_ms=8, p99_ms=12, rate=3000, client_cpu=0.6, server_cpu=1.2),
            fig("metadata_study", p50_ms=30, p95_ms=40, p99_ms=50, rate=30),
            fig("custom_extra", p50_ms=1, p95_ms=1, p99_ms=1, rate=1)]
    theirs = [fig("frames_wsi_16", p50_ms=14_000, p95_ms=15_000, p99_ms=16_000, rate=1.1),
              fig("metadata_study", p50_ms=250, p95_ms=260, p99_ms=270, rate=4)]
    text = report.markdown(doc(ours, theirs))
    assert "tessel 0.1.0 vs Orthanc 1.10.1 + DICOMweb 1.7" in text
    assert "2025-01-02T03:04:05+00:00" in text and "`python -m benchmarks.compare`" in text
    assert "0.1, 0.2, 0.3 / 1, 0.5, 0.4" in text
    goals = text.split("| figure | server |")[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in goals.splitlines() if line.startswith("| WADO")}
    wsi = rows["WADO-RS random WSI tile, as stored (16 clients)"]
    assert "12 ms" in wsi and "16,000 ms" in wsi and "1/1,333" in wsi and "| yes |" in wsi
    study = rows["WADO-RS study metadata (CT)"]
    assert "1/8.33" in study and "**no**" in study  # 30 ms is only 1/8.3 of 250 ms
    assert "| custom_extra | tessel |" in text  # figures without a label still show
    assert "- two cores" in text
    assert "other work during the run: 0.04 cores on average (p95 0.1)" in text
    assert "provisional" not in text


def test_markdown_marks_figures_of_a_busy_machine_as_provisional() -> None:
    d = doc([], [])
    d["load_average"] = {"start": [6.5, 4.0, 3.0], "end": [6.0, 3.0, 3.0]}  # the run's own load counts here
    assert "provisional" not in report.markdown(d)  # what decides is the work of other processes:
    d["other_work"] = {"mean_cores": 0.6, "p95_cores": 1.4, "seconds": 300.0}
    assert "provisional: other work was running on the 2 cores" in report.markdown(d)


def test_a_document_without_the_other_work_figure_falls_back_to_the_load_average() -> None:
    d = doc([], [])
    del d["other_work"]
    assert "provisional" not in report.markdown(d)
    d["load_average"] = {"start": [6.5, 4.0, 3.0], "end": [2.0, 3.0, 3.0]}
    assert "provisional: other work was running" in report.markdown(d)


def test_markdown_says_when_a_server_answered_wrongly() -> None:
    text = report.markdown(doc([], [], {"tessel": [], "orthanc": ["qido: found 0 studies, expected 4"]}))
    assert "**orthanc answered wrongly before measuring:** qido: found 0 studies, expected 4" in text


def test_a_single_server_run_renders_without_ratios() -> None:
    d = doc([fig("qido_patient_id", p50_ms=1, p95_ms=2, p99_ms=3, rate=500)], [])
    d["figures"] = {"tessel": d["figures"]["tessel"]}  # type: ignore[index]
    text = report.markdown(d)
    assert "tessel / orthanc" not in text
    assert "| QIDO-RS studies by PatientID | tessel | 1 | 2 | 3 | 500 requests | - | - | - | - | 100 |" in text


def test_report_replaces_only_the_results_between_markers() -> None:
    from benchmarks.compare.cli import END, START, with_results

    page = f"# Benchmarks\n\nhow it works\n\n{START}\nold table\n{END}\n\nmore text\n"
    updated = with_results(page, "new table\n")
    assert updated == f"# Benchmarks\n\nhow it works\n\n{START}\nnew table\n{END}\n\nmore text\n"
    assert with_results("no markers here", "new table\n") == "new table\n"
