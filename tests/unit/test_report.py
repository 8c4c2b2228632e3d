"""The report and its verdicts on comparison folders written by hand (no training): what each
verdict is computed from, where each table reads its numbers, and the user errors."""

import json

import pytest

from ddrl_framework.comparison.report import write_report
from ddrl_framework.errors import UserError


METRICS = [{"name": "frechet-distance"}, {"name": "diversity"}]  # the runs recorded them: they declare "fd", "class_0"


def write_comparison(folder, arms, *, compare=None, references=None, cost=None):
    """A comparison folder. ``arms``: {arm: {seed: [(iteration, reward, fd), ...]}}; every run
    logs one train record per iteration (1 s, a regularizer loss of 0.5 unless the arm is "none";
    ``cost``: {arm: (seconds, network passes)} per iteration instead)."""
    runs = []
    for arm, seeds in arms.items():
        for seed, evals in seeds.items():
            name = f"{arm}-seed{seed}"
            run = folder / "runs" / name
            run.mkdir(parents=True)
            (run / "eval.jsonl").write_text("".join(
                json.dumps({"iteration": i, "reward_mean": r, "fd": fd, "class_3": 0.1, "seconds": 9.0}) + "\n"
                for i, r, fd in evals))
            loss = {f"loss_{arm}": 0.0 if arm == "none" else 0.5}  # as the trainer logs them
            seconds, passes = (cost or {}).get(arm, (1.0, 64))
            (run / "metrics.jsonl").write_text("".join(
                json.dumps({"iteration": i, "reward_mean": 0.0, "seconds": seconds + (i == 0) * 100,
                            "network_passes": passes, **loss}) + "\n"
                for i in range(evals[-1][0])))
            (run / "config.json").write_text(json.dumps({"experiment": {
                "rewards": [{"name": "brightness", "weight": 1.0}], "metrics": METRICS}}))
            runs.append({"name": name, "arm": arm, "beta": None, "seed": seed, "dir": f"runs/{name}"})
    seeds = sorted({s for arm in arms.values() for s in arm})
    arm_tables = [{"name": a, "regularizer": {"name": "none" if a == "none" else "reverse-kl"}} for a in arms]
    manifest = {"config": "c.toml", "compare": {"seeds": seeds, "arms": arm_tables, **(compare or {})},
                "runs": runs}
    (folder / "compare.json").write_text(json.dumps(manifest))
    if references is not None:
        (folder / "references.json").write_text(json.dumps(references))
    return folder


def curve(start_fd, slope, rewards=(0.3, 0.5, 0.7)):
    """Evaluations at iterations 0, 10, 20: the reward rises, the FD grows by ``slope`` per 0.1 reward."""
    return [(10 * i, r, start_fd + slope * (r - rewards[0]) * 10) for i, r in enumerate(rewards)]


NOISE = {"evaluation_repeats": [{"reward_mean": 0.3, "fd": 30.0 + d, "class_0": 0.1} for d in (-1, 0, 1)],
         "targets": {}}


def verdicts(folder):
    return {(v["view"], v["a"], v["b"], v["metric"]): v for v in json.loads((folder / "verdicts.json").read_text())}


def test_a_planted_difference_at_matched_reward_is_found_and_named(tmp_path):
    # "gentle" loses 100 FD per 0.1 reward on every seed, "harsh" 200 (+ a seed offset that cancels)
    arms = {"gentle": {s: curve(30 + 5 * s, 100 + s) for s in range(3)},
            "harsh": {s: curve(30 + 5 * s, 200 - s) for s in range(3)}}
    folder = write_comparison(tmp_path, arms, references=NOISE, compare={"matched_reward": [0.62]})
    write_report(folder)
    found = verdicts(folder)
    matched = found[("matched reward", "gentle", "harsh", "fd")]
    assert matched["at"] == pytest.approx(0.3 + 0.8 * 0.4) and matched["verdict"] == "A better"
    assert matched["a_values"] == pytest.approx([30 + 5 * s + (100 + s) * 3.2 for s in range(3)])
    # each run crossed 0.62 between its evaluations at 10 (0.5) and 20 (0.7): iteration 16
    assert matched["a_crossed"] == pytest.approx([16.0] * 3) and matched["b_crossed"] == pytest.approx([16.0] * 3)
    assert matched["margin"] == pytest.approx(30.0) and matched["margin_source"] == "default"
    # the same rewards on both sides, but a reward has no default margin (its scale is the
    # plugin's): with no smallest effect of interest, no equivalence test, so it stays inconclusive
    same = found[("equal iterations", "gentle", "harsh", "reward_mean")]
    assert same["margin"] is None and same["verdict"] == "inconclusive"
    report = (folder / "report.md").read_text()
    assert "on the reward 'brightness'" in report
    assert "| gentle | harsh | fd (lower) | matched reward, 0.62 |" in report and "**A better**" in report
    assert "350 @it 16, 358.2 @it 16" in report


def test_identical_arms_under_two_names_are_never_reported_different(tmp_path):
    same = {s: curve(30 + 7 * s, 100 + 13 * s) for s in range(3)}
    folder = write_comparison(tmp_path, {"kl": same, "kl-again": same}, references=NOISE)
    write_report(folder)
    found = verdicts(folder).values()
    assert not {v["verdict"] for v in found} & {"A better", "B better"}
    assert {v["view"]: v["verdict"] for v in found if v["metric"] == "fd"} == {
        "equal iterations": "equivalent within the margin",
        "matched reward, level chosen after the runs": "exploratory (no verdict)"}


def test_seed_noise_larger_than_the_effect_is_inconclusive(tmp_path):
    arms = {"a": {s: curve(30, 100 + 90 * (-1) ** s) for s in range(3)},
            "b": {s: curve(30, 100 - 90 * (-1) ** s) for s in range(3)}}
    folder = write_comparison(tmp_path, arms, references=NOISE)
    write_report(folder)
    assert verdicts(folder)[("equal iterations", "a", "b", "fd")]["verdict"] == "inconclusive"


def test_a_run_that_never_reaches_the_level_leaves_its_seed_out(tmp_path):
    arms = {"a": {0: curve(30, 100), 1: curve(30, 100), 2: curve(30, 100, rewards=(0.3, 0.35, 0.4))},
            "b": {s: curve(30, 300) for s in range(3)}}
    folder = write_comparison(tmp_path, arms, compare={"matched_reward": [0.6]}, references=NOISE)
    write_report(folder)
    judged = verdicts(folder)[("matched reward", "a", "b", "fd")]
    assert judged["a_values"][2] is None and judged["interval"]["n"] == 2


def test_a_declared_margin_and_direction_are_used(tmp_path):
    arms = {"a": {s: curve(30, 100 + s) for s in range(3)}, "b": {s: curve(30, 104 + s) for s in range(3)}}
    compare = {"metrics": [{"key": "fd", "better": "lower", "margin": 100.0}], "pairs": [["b", "a"]],
               "matched_reward": [0.6]}
    folder = write_comparison(tmp_path, arms, compare=compare)
    write_report(folder)
    found = verdicts(folder)
    assert {key for key in found if key[3] == "fd"} == {("matched reward", "b", "a", "fd"),
                                                        ("equal iterations", "b", "a", "fd")}
    judged = found[("matched reward", "b", "a", "fd")]
    assert judged["verdict"] == "equivalent within the margin" and judged["margin_source"] == "config"


def test_a_level_chosen_after_the_runs_gives_no_verdict(tmp_path):
    """With no declared matched_reward, the level is read off the runs themselves: its rows are
    estimates, never in the family, even where the difference is plain."""
    arms = {"a": {s: curve(30, 100 + s) for s in range(3)}, "b": {s: curve(30, 400 + 2 * s) for s in range(3)}}
    folder = write_comparison(tmp_path, arms)
    write_report(folder)
    post_hoc = verdicts(folder)[("matched reward, level chosen after the runs", "a", "b", "fd")]
    assert post_hoc["primary"] is False and post_hoc["verdict"] == "exploratory (no verdict)"
    assert verdicts(folder)[("equal iterations", "a", "b", "fd")]["verdict"] == "A better"


def test_a_crossing_is_read_on_the_smoothed_reward_not_a_noisy_touch():
    """One evaluation touching 0.6 (a spike) among 0.3s does not cross 0.6; the trend at 0.8 later does."""
    from ddrl_framework.comparison.verdicts import per_seed

    rewards = [0.3, 0.65, 0.3, 0.3, 0.8, 0.8, 0.8]
    run = {"seed": 0, "eval": [{"iteration": 10 * i, "reward_mean": r, "fd": float(i)} for i, r in enumerate(rewards)]}
    assert per_seed([run], [0], "iteration", "reward", 0.6) != (10.0,)
    assert per_seed([run], [0], "iteration", "reward", 0.6)[0] > 30


def test_pairs_naming_no_setting_is_a_user_error(tmp_path):
    arms = {"a": {0: curve(30, 100)}, "b": {0: curve(30, 100)}}
    folder = write_comparison(tmp_path, arms, compare={"pairs": [["a", "c"]]})
    with pytest.raises(UserError, match="compare.pairs names 'c': no such setting. The settings: a, b"):
        write_report(folder)


def test_a_metric_without_a_direction_must_declare_one(tmp_path):
    arms = {"a": {0: curve(30, 100)}, "b": {0: curve(30, 100)}}
    folder = write_comparison(tmp_path, arms, compare={"metrics": [{"key": "class_3"}]})
    with pytest.raises(UserError, match=r"compare.metrics entry 'class_3' has no declared direction"):
        write_report(folder)


def test_the_report_reads_as_a_researcher_needs(tmp_path):
    arms = {"zeta": {s: curve(30, 100) for s in range(2)}, "none": {s: curve(30, 300) for s in range(2)}}
    folder = write_comparison(tmp_path, arms, references=NOISE)
    report = write_report(folder).read_text()
    table = report.split("| setting |")[1].split("\n\n")[0]
    assert table.index("| zeta |") < table.index("| none |")  # config order, not alphabetical
    assert "regularizer loss" in report and "| 0.5000 [0.5000, 0.5000] |" in report  # zeta's loss
    none_row = next(line for line in table.splitlines() if line.startswith("| none |"))
    assert "0.0000" not in none_row and "| - |" in none_row  # none logs a zero loss; shown as "-"
    assert "s/iteration (median)" in report and "| 1.00 [1.00, 1.00] |" in report  # the 101 s outlier ignored
    assert "FD to own optimum" not in report  # no arm declares an optimum
    assert "class_0" not in report.split("## Evaluation noise")[1]
    assert "![](runs/zeta-seed1/samples_start.png) | ![](runs/zeta-seed1/samples_final.png)" in report


@pytest.mark.parametrize("budget", ["seconds", "passes"])
def test_equal_compute_favours_the_cheaper_arm_where_equal_iterations_do_not(tmp_path, budget):
    """Both arms follow the same reward curve per iteration; "cheap" costs half as much per
    iteration, so at equal seconds (or passes) it has done twice the iterations."""
    rewards = (0.3, 0.4, 0.5, 0.6, 0.7)
    arms = {"cheap": {s: curve(30, 100, rewards=[r + 0.01 * s for r in rewards]) for s in range(3)},
            "costly": {s: curve(30, 100, rewards=[r + 0.01 * s for r in rewards]) for s in range(3)}}
    noise = {**NOISE, "evaluation_repeats": [{"reward_mean": 0.3 + d, "fd": 30.0} for d in (-0.001, 0, 0.001)]}
    folder = write_comparison(tmp_path, arms, compare={"budget": budget}, references=noise,
                              cost={"cheap": (1.0, 64), "costly": (2.0, 128)})
    report = write_report(folder).read_text()
    found = verdicts(folder)
    at_budget = found[(f"equal {budget}", "cheap", "costly", "reward_mean")]
    assert at_budget["at"] == pytest.approx(40 * (1.0 if budget == "seconds" else 64))  # costly's 40 iterations
    assert at_budget["a_values"] == pytest.approx([0.7, 0.71, 0.72]) and at_budget["b_values"] == pytest.approx([0.5, 0.51, 0.52])
    assert at_budget["verdict"] == "A better"
    assert "| 64 [64, 64] |" in report and "| 128 [128, 128] |" in report  # passes per iteration


def test_the_report_leads_with_the_primary_comparisons_and_names_the_family(tmp_path):
    arms = {"gentle": {s: curve(30 + 5 * s, 100 + s) for s in range(3)},
            "harsh": {s: curve(30 + 5 * s, 200 - s) for s in range(3)}}
    primary = [{"metric": "fd", "pair": ["gentle", "harsh"], "view": "matched reward"}]
    folder = write_comparison(tmp_path, arms, references=NOISE, compare={"primary": primary, "matched_reward": [0.62]})
    report = write_report(folder).read_text()
    summary = report.split("## Summary")[1].split("## Final values")[0]
    assert report.index("## Summary") < report.index("## Final values") < report.index("## Verdicts")
    assert "**gentle** has a better fd than harsh. fd (lower is better), gentle (A) against harsh (B), matched reward" in summary
    assert "**A better** (gentle)" in summary and "it could detect ±" in summary
    assert "1 primary comparison(s), 2 tests" in summary and "2 other row(s) are exploratory" in summary
    found = verdicts(folder)
    assert found[("equal iterations", "gentle", "harsh", "fd")]["verdict"] == "exploratory (no verdict)"
    assert found[("matched reward", "gentle", "harsh", "fd")]["primary"] is True


def test_fewer_than_three_seeds_are_warned_about_first(tmp_path):
    arms = {"a": {s: curve(30, 100 + s) for s in range(2)}, "b": {s: curve(30, 300 + s) for s in range(2)}}
    report = write_report(write_comparison(tmp_path, arms, references=NOISE)).read_text()
    assert "**2 seed(s)**: fewer than 3 paired seeds" in report.split("## Final values")[0]


def test_final_intervals_stay_inside_each_metrics_range():
    """Class entropy over 2 seeds, 0.1 and 0.6: the t interval runs below 0; the table cuts it to
    [0, 1], the range its metric declares (the cut interval still covers the mean wherever the t
    interval does)."""
    from ddrl_framework.comparison.metric_keys import declared_keys
    from ddrl_framework.comparison.report_tables import columns, fmt
    from ddrl_framework.registry import load_registry

    declared = declared_keys([{"name": "diversity"}, {"name": "recognizable"}], load_registry())
    ranges = {header: bounds for header, _, _, bounds in columns(declared)}
    assert fmt([0.1, 0.6], 2) == "0.35 [-2.83, 3.53]"
    assert fmt([0.1, 0.6], 2, bounds=ranges["class entropy"]) == "0.35 [0.00, 1.00]"  # normalized by log 10
    assert fmt([0.1, 0.9], 2, bounds=ranges["recognizable"]) == "0.50 [0.00, 1.00]"


def test_labels_name_the_unit_of_beta_and_mixed_units_are_said_first(tmp_path):
    arms = {"kl": {s: curve(30, 100 + s) for s in range(3)}, "data": {s: curve(30, 300 + s) for s in range(3)}}
    folder = write_comparison(tmp_path, arms, references=NOISE)
    manifest = json.loads((folder / "compare.json").read_text())
    for run, (beta, unit) in zip(manifest["runs"], [(0.01, "nats")] * 3 + [(10.0, "paper")] * 3):
        run.update(beta=beta, beta_unit=unit)
    (folder / "compare.json").write_text(json.dumps(manifest))
    report = write_report(folder).read_text()
    assert "| kl β=0.01 nats | 3 |" in report and "| data β=10 paper | 3 |" in report
    assert report.index("in different units (nats, paper)") < report.index("## Summary")


def test_the_built_in_regularizers_declare_the_unit_of_their_beta():
    from ddrl_framework.registry import load_registry

    registry = load_registry()
    unit = lambda name, **options: registry.build("regularizer", name, options, "[regularizer]").beta_unit  # noqa: E731
    assert unit("reverse-kl") == unit("kl-in-reward") == unit("forward-kl-data") == "nats"
    assert unit("forward-kl-data", unit="paper") == "paper"
