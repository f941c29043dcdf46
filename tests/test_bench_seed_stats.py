"""bench/seed_stats.py pools seed records of both kinds and prints the figures the README quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from space_helpers import flat_layers

ROOT = Path(__file__).resolve().parent.parent


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "seed_stats.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def _assert_quoted_seed_lines(spec, bench):
    """Each seed line results.evaluate printed for ``spec`` (from its test: section) is quoted in bench/README.md."""
    for p in spec.info["test"]["per_seed"]:
        assert f"    seed {p['seed']}: test accuracy {100 * p['acc']:.2f}% ({p['train_seconds']}s)\n" in bench


def _against_earlier(arm, folder):
    """seed_stats for the hand-made network, then the earlier and ``arm`` exports of 10,000 and 5,000."""
    r = ROOT / "bench" / "records"
    b = r / "search_cpu_budgets"
    return _run("--group", "hand_made_19642", *sorted((r / "seed000_actbn_19642").glob("cpu-seeds*.json")),
                "--group", "earlier_10000", b / "budget-10000" / "best.test.json",
                "--group", f"{arm}_10000", folder / "budget-10000" / "best.test.json",
                "--group", "earlier_5000", b / "budget-5000" / "best.test.json",
                "--group", f"{arm}_5000", folder / "budget-5000" / "best.test.json")


def _beside_narrowed(found_20000, folder):
    """seed_stats --pairs: each budget's export (20,000: ``found_20000``; 10,000 and 5,000: from ``folder``)
    beside the write-up's network, at 19,642 parameters and narrowed by hand to 9,958 and 4,725."""
    r = ROOT / "bench" / "records"
    n = r / "seed000_actbn_narrowed"
    return _run("--group", "found_20000", found_20000,
                "--group", "hand_made_19642", *sorted((r / "seed000_actbn_19642").glob("cpu-seeds*.json")),
                "--group", "found_10000", folder / "budget-10000" / "best.test.json",
                "--group", "hand_made_9958", n / "seed000_actbn_9958.cpu-seeds0-2.result.json",
                "--group", "found_5000", folder / "budget-5000" / "best.test.json",
                "--group", "hand_made_4725", n / "seed000_actbn_4725.cpu-seeds0-2.result.json", "--pairs")


def test_pools_our_results_and_both_reference_formats(tmp_path):
    (tmp_path / "ours.json").write_text(json.dumps({"runs": [{"test_acc": a} for a in (0.9930, 0.9940, 0.9950)]}))
    (tmp_path / "ref0.json").write_text(json.dumps({"epochs": [{"test_accuracy": 0.9}, {"test_accuracy": 0.9920}]}))
    lines = [json.dumps({"seed": s, "run": {"epochs": [{"test_accuracy": a}]}}) for s, a in ((1, 0.993), (2, 0.994))]
    (tmp_path / "ref.jsonl").write_text("\n".join(lines) + "\n")
    r = _run("--ours", tmp_path / "ours.json", "--reference", tmp_path / "ref0.json", tmp_path / "ref.jsonl")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ours") and "3 seeds  99.400% ± 0.100" in lines[0] and ">= 99.4: 2" in lines[0]
    assert lines[1].startswith("reference") and "3 seeds  99.300% ± 0.100" in lines[1] and ">= 99.4: 1" in lines[1]
    assert "+0.100 points" in lines[2] and "Welch t = +1.22" in lines[2]


def test_named_groups_of_either_kind_each_against_the_first(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"runs": [{"test_acc": a} for a in (0.9940, 0.9950)]}))
    (tmp_path / "b.json").write_text(json.dumps({"runs": [{"test_acc": a} for a in (0.9930, 0.9940)]}))
    (tmp_path / "r.jsonl").write_text("".join(json.dumps({"seed": s, "run": {"epochs": [{"test_accuracy": a}]}}) + "\n"
                                              for s, a in ((1, 0.992), (2, 0.994))))
    r = _run("--group", "act_bn_first", tmp_path / "a.json", "--group", "b", tmp_path / "b.json",
             "--reference", tmp_path / "r.jsonl")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [["reference", "2"], ["act_bn_first", "2"], ["b", "2"]]
    assert lines[0].index("2 seeds") == lines[1].index("2 seeds") == len("act_bn_first") + 4
    assert lines[3] == "reference - act_bn_first: -0.150 points, Welch t = -1.34"
    assert lines[4] == "reference - b: -0.050 points, Welch t = -0.45"
    for args in (("--group", "b", tmp_path / "b.json"), ("--group", "b", "--ours", tmp_path / "a.json"),
                 ("--group", "b", tmp_path / "b.json", "--group", "b", tmp_path / "a.json")):
        r = _run(*args)
        assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) >= 1, args


def test_pairs_compares_the_groups_two_by_two(tmp_path):
    for name, accs in (("a", (0.9940, 0.9950)), ("b", (0.9930, 0.9940)), ("c", (0.9920, 0.9930)),
                       ("d", (0.9900, 0.9920))):
        (tmp_path / f"{name}.json").write_text(json.dumps({"runs": [{"test_acc": x} for x in accs]}))
    groups = [x for n in "abcd" for x in ("--group", n, tmp_path / f"{n}.json")]
    r = _run(*groups, "--pairs")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines[:4]] == list("abcd") and len(lines) == 6
    assert lines[4] == "a - b: +0.100 points, Welch t = +1.41"
    assert lines[5] == "c - d: +0.150 points, Welch t = +1.34"
    assert _run(*groups).stdout.splitlines()[5].startswith("a - c: +0.200 points")   # without: each with the first
    r = _run(*groups[:9], "--pairs")
    assert r.returncode == 2 and r.stdout == "" and "even number of groups, got 3" in r.stderr


def test_reads_the_per_seed_accuracies_of_results_evaluate(tmp_path):
    (tmp_path / "best.test.json").write_text(json.dumps({"test": {"per_seed": [{"seed": s, "acc": a} for s, a in
                                                                              ((0, 0.9950), (1, 0.9960))]}}))
    (tmp_path / "b.json").write_text(json.dumps({"runs": [{"test_acc": a} for a in (0.9930, 0.9940)]}))
    r = _run("--group", "found", tmp_path / "best.test.json", "--group", "hand", tmp_path / "b.json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("found") and "2 seeds  99.550% ± 0.071" in r.stdout


def test_a_missing_file_is_one_line_and_status_2(tmp_path):
    r = _run("--ours", tmp_path / "none.json", "--reference", tmp_path / "none.json")
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "none.json" in r.stderr


def test_the_readme_shows_what_the_committed_records_give():
    rec = ROOT / "bench" / "records" / "seed000_19642"
    r = _run("--ours", rec / "cpu-ours.result.json", rec / "h200-ours-seeds0-9.result.json",
             rec / "h200-ours-seeds10-19.result.json",
             "--reference", *(rec / f"cpu-reference-seed{s}.json" for s in range(5)), rec / "h200-reference.jsonl")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ours        30 seeds") and lines[1].startswith("reference   13 seeds")
    readme = (ROOT / "bench" / "README.md").read_text()
    for line in lines:
        assert f"    {line}\n" in readme


def test_the_readme_shows_what_the_records_give_for_both_readings_of_seed000():
    a, b = ROOT / "bench" / "records" / "seed000_actbn_19642", ROOT / "bench" / "records" / "seed000_19642"
    r = _run("--group", "act_bn", a / "cpu-seeds0-4.result.json", a / "cpu-seeds5-9.result.json",
             "--group", "bn_act", b / "cpu-ours.result.json", b / "h200-ours-seeds0-9.result.json",
             b / "h200-ours-seeds10-19.result.json",
             "--group", "reference", *(b / f"cpu-reference-seed{s}.json" for s in range(5)), b / "h200-reference.jsonl")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [["act_bn", "10"], ["bn_act", "30"], ["reference", "13"]]
    mean = float(lines[0].split()[3].rstrip("%"))
    assert mean >= 99.4  # the accuracy the seed000 write-up's network is held to
    readme = (ROOT / "bench" / "README.md").read_text()
    for line in lines:
        assert f"    {line}\n" in readme


def test_the_readmes_show_what_the_records_give_for_the_default_search_and_for_bf16():
    r, a = ROOT / "bench" / "records", ROOT / "bench" / "records" / "seed000_actbn_19642"
    found = _run("--group", "found", r / "search_cpu_default_0a53610" / "best.test.json",
                 "--group", "hand_made", *sorted(a.glob("cpu-seeds*.json")))
    earlier = _run("--group", "found", r / "search_cpu_default_20000" / "best.test.json",
                   "--group", "hand_made", *sorted(a.glob("cpu-seeds*.json")))
    bf16 = _run("--group", "bf16", a / "cpu-bf16-seeds0-4.result.json",
                "--group", "fp32", a / "cpu-seeds0-4.result.json", a / "cpu-seeds5-9.result.json")
    assert found.returncode == 0 and bf16.returncode == 0, found.stderr + bf16.stderr
    bench, readme = (ROOT / "bench" / "README.md").read_text(), (ROOT / "README.md").read_text()
    for line in found.stdout.splitlines():
        assert f"    {line}\n" in bench and f"    {line}\n" in readme, line
    for line in bf16.stdout.splitlines() + earlier.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    for out in (found, earlier):
        mean = float(out.stdout.split()[3].rstrip("%"))
        assert mean >= 99.4                               # the bare command's export, tested once
    from space.analysis import count_params
    from space.io import load

    assert count_params(load(r / "search_cpu_default_0a53610" / "best.yaml")) <= 20000
    diff = float(bf16.stdout.splitlines()[2].split()[3])
    assert abs(diff) < 0.1                                # bf16 within noise of fp32


def test_the_bench_readme_shows_what_the_records_give_across_budgets_and_on_fashion_mnist():
    r, a = ROOT / "bench" / "records", ROOT / "bench" / "records" / "seed000_actbn_19642"
    b, f = r / "search_cpu_budgets", r / "search_cpu_fashion_20000"
    budgets = _run("--group", "hand_made_19642", *sorted(a.glob("cpu-seeds*.json")),
                   "--group", "found_20000", r / "search_cpu_default_20000" / "best.test.json",
                   "--group", "found_10000", b / "budget-10000" / "best.test.json",
                   "--group", "found_5000", b / "budget-5000" / "best.test.json")
    fashion = _run("--group", "found", f / "best.test.json",
                   "--group", "hand_made", f / "seed000_actbn_19642.result.json", "--target", "91")
    assert budgets.returncode == 0 and fashion.returncode == 0, budgets.stderr + fashion.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in budgets.stdout.splitlines() + fashion.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    assert [line.split()[1] for line in budgets.stdout.splitlines()[:4]] == ["10", "3", "3", "3"]
    assert [line.split()[1] for line in fashion.stdout.splitlines()[:2]] == ["3", "3"]
    from space.analysis import count_params
    from space.io import load

    for sub, cap in (("budget-10000", 10000), ("budget-5000", 5000)):   # each export within its budget
        assert count_params(load(b / sub / "best.yaml")) <= cap


def test_the_bench_readme_shows_what_the_records_give_for_the_searches_whose_rungs_filled_their_time():
    r = ROOT / "bench" / "records"
    b, f = r / "search_cpu_budgets", r / "search_cpu_fill"
    out = _against_earlier("filled", f)
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    assert [line.split()[1] for line in out.stdout.splitlines()[:5]] == ["10", "3", "3", "3", "3"]
    for budget in ("10000", "5000"):                   # each budget's two exports against each other
        pair = _run("--group", f"earlier_{budget}", b / f"budget-{budget}" / "best.test.json",
                    "--group", f"filled_{budget}", f / f"budget-{budget}" / "best.test.json")
        assert pair.returncode == 0 and f"    {pair.stdout.splitlines()[-1]}\n" in bench, pair.stdout
    from space.analysis import count_params
    from space.io import load

    for sub, cap in (("budget-10000", 10000), ("budget-5000", 5000)):   # each export within its budget
        assert count_params(load(f / sub / "best.yaml")) <= cap


def test_the_bench_readme_shows_what_the_records_give_for_the_searches_with_a_4_epoch_rung_0():
    r = ROOT / "bench" / "records"
    b, f, p = r / "search_cpu_budgets", r / "search_cpu_fill", r / "search_cpu_plan3"
    out = _run("--group", "hand_made_19642", *sorted((r / "seed000_actbn_19642").glob("cpu-seeds*.json")),
               *[x for budget in ("10000", "5000") for x in (
                   "--group", f"earlier_{budget}", b / f"budget-{budget}" / "best.test.json",
                   "--group", f"filled_{budget}", f / f"budget-{budget}" / "best.test.json",
                   "--group", f"rung0_4ep_{budget}", p / f"budget-{budget}" / "best.test.json")])
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    assert [line.split()[1] for line in out.stdout.splitlines()[:7]] == ["10", "3", "3", "3", "3", "3", "3"]
    from space.analysis import count_params
    from space.io import load

    for budget, cap in (("10000", 10000), ("5000", 5000)):   # each export within its budget, from the last rung
        spec = load(p / f"budget-{budget}" / "best.yaml")
        assert count_params(spec) <= cap and spec.info["search"]["rung"] == 2


def test_the_bench_readme_shows_what_the_records_give_for_the_four_runs_of_the_bare_command():
    r = ROOT / "bench" / "records"
    out = _run("--group", "hand_made_19642", *sorted((r / "seed000_actbn_19642").glob("cpu-seeds*.json")),
               *(x for c in ("20000", "d6fad0e", "03a595f", "0a53610")
                 for x in ("--group", f"default_{'a3e0ec2' if c == '20000' else c}",
                           r / f"search_cpu_default_{c}" / "best.test.json")))
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    assert [line.split()[1] for line in out.stdout.splitlines()[:5]] == ["10", "3", "3", "3", "3"]


def test_the_bench_readme_shows_what_the_records_give_for_the_batch_32_searches():
    r = ROOT / "bench" / "records"
    p = r / "search_cpu_batch32"
    out = _against_earlier("batch32", p)
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    from space.analysis import count_params
    from space.io import load

    for sub, cap in (("budget-10000", 10000), ("budget-5000", 5000)):
        assert count_params(load(p / sub / "best.yaml")) <= cap


def test_the_bench_readme_shows_what_the_records_give_for_the_searches_with_10000_validation_images():
    v = ROOT / "bench" / "records" / "search_cpu_val10k"
    out = _against_earlier("val10k", v)
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    from space.analysis import count_params
    from space.io import load

    for sub, cap in (("budget-10000", 10000), ("budget-5000", 5000)):   # within budget, searched on 10,000
        spec = load(v / sub / "best.yaml")
        assert count_params(spec) <= cap and spec.info["search"]["val"] == 10000


def test_the_readmes_show_each_budgets_export_beside_the_hand_made_network_narrowed_to_that_budget():
    r = ROOT / "bench" / "records"
    b, n = r / "search_cpu_budgets", r / "seed000_actbn_narrowed"
    out = _beside_narrowed(r / "search_cpu_default_20000" / "best.test.json", b)
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    lines = out.stdout.splitlines()
    assert [line.split()[1] for line in lines[:6]] == ["3", "10", "3", "3", "3", "3"]
    assert [line.split(":")[0] for line in lines[6:]] == [
        "found_20000 - hand_made_19642", "found_10000 - hand_made_9958", "found_5000 - hand_made_4725"]
    from space.analysis import count_params
    from space.io import load

    full = load(ROOT / "space" / "zoo" / "seed000_actbn_19642.yaml")
    for budget, params in ((10000, 9958), (5000, 4725)):   # the write-up's network, only narrower
        spec = load(n / f"seed000_actbn_{params}.yaml")
        assert count_params(spec) == params <= budget
        assert spec.recipe == full.recipe and [type(x) for x in spec.layers] == [type(x) for x in full.layers]
        doc = json.loads((n / f"seed000_actbn_{params}.cpu-seeds0-2.result.json").read_text())
        assert doc["params"] == params and doc["epochs"] == 19 and doc["seeds"] == [0, 1, 2]


def test_the_bench_readme_shows_what_the_records_give_for_the_search_of_networks_filling_90_percent():
    r = ROOT / "bench" / "records"
    f = r / "search_cpu_fill90"
    out = _run("--group", "earlier_5000", r / "search_cpu_budgets" / "budget-5000" / "best.test.json",
               "--group", "fill90_5000", f / "budget-5000" / "best.test.json")
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():   # its rungs: tests/test_bench_rungs.py
        assert f"    {line}\n" in bench, line
    from space.analysis import count_params
    from space.io import load

    assert count_params(load(f / "budget-5000" / "best.yaml")) <= 5000
    assert (f / "fill90.yaml").read_text() == "fill: {low: 0.9, high: 1.0}\n"


def test_the_bench_readme_shows_what_the_records_give_for_the_searches_of_an_hour_per_budget():
    r = ROOT / "bench" / "records"
    b, t = r / "search_cpu_budgets", r / "search_cpu_time60"
    out = _run("--pairs", *(x for budget in ("10000", "5000") for x in (
        "--group", f"hour_{budget}", t / f"budget-{budget}" / "best.test.json",
        "--group", f"earlier_{budget}", b / f"budget-{budget}" / "best.test.json")))
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    from space.analysis import count_params
    from space.io import load

    for budget, cap in (("10000", 10000), ("5000", 5000)):   # each export within its budget, from the last rung
        spec = load(t / f"budget-{budget}" / "best.yaml")
        assert count_params(spec) <= cap and spec.info["search"]["rung"] == 3
    zoo = load(ROOT / "space" / "zoo" / "search_cpu10000_8797.yaml")   # the 10,000 export, in the zoo
    assert zoo.layers == load(t / "budget-10000" / "best.yaml").layers


def test_the_bench_readme_shows_what_the_records_give_for_the_widened_and_90_minute_searches_under_5000():
    from space.analysis import count_params
    from space.io import load

    r = ROOT / "bench" / "records"
    hour = r / "search_cpu_time60" / "budget-5000" / "best.test.json"
    bench = (ROOT / "bench" / "README.md").read_text()
    for name, folder in (("widen_5000", "search_cpu_widen"), ("t90_5000", "search_cpu_time90")):
        out = _run("--group", "hour_5000", hour, "--group", name, r / folder / "budget-5000" / "best.test.json")
        assert out.returncode == 0, out.stderr
        for line in out.stdout.splitlines():
            assert f"    {line}\n" in bench, line
        spec = load(r / folder / "budget-5000" / "best.yaml")
        assert count_params(spec) <= 5000 and spec.info["search"]["rung"] == 3
    assert (r / "search_cpu_widen" / "widen.yaml").read_text() == "widen: true\n"


def test_the_bench_readme_shows_what_the_records_give_for_the_hour_searches_with_other_seeds_under_5000():
    from space.analysis import count_params
    from space.io import load

    r = ROOT / "bench" / "records"
    groups = [("seed0", r / "search_cpu_time60"), ("seed1", r / "search_cpu_seed1"), ("seed2", r / "search_cpu_seed2")]
    out = _run(*(x for name, folder in groups for x in ("--group", name, folder / "budget-5000" / "best.test.json")))
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    for s, (_, folder) in enumerate(groups):
        spec = load(folder / "budget-5000" / "best.yaml")
        assert count_params(spec) <= 5000 and spec.info["search"]["rung"] == 3 and spec.info["search"]["seed"] == s
        assert [p["seed"] for p in spec.info["test"]["per_seed"]] == [s, s + 1, s + 2]
        _assert_quoted_seed_lines(spec, bench)


# the searches with one trial in three at random against those before it; those offering separable stage
# openings, those with one recipe family, those with the activation before BatchNorm and those with SiLU,
# against those with one trial in three at random (the one offering 5x5 kernels: search seed 1 only)
@pytest.mark.parametrize("arm, base, seeds", [("explore", "", (1, 2)), ("open", "explore", (1, 2)),
                                              ("focus", "explore", (1, 2)), ("actbn", "explore", (1, 2)),
                                              ("silu", "explore", (1, 2)), ("k5", "explore", (1,))])
def test_the_bench_readme_shows_what_the_records_give_for_the_5000_searches_of_an_arm_against_its_base(
        arm, base, seeds):
    from space.analysis import count_params
    from space.io import load

    r = ROOT / "bench" / "records"
    name = lambda a, s: f"{a}_seed{s}" if a else f"seed{s}"  # noqa: E731
    pairs = [(name(arm, s), r / f"search_cpu_{name(arm, s)}", name(base, s), r / f"search_cpu_{name(base, s)}")
             for s in seeds]
    args = [x for a, fa, b, fb in pairs for x in ("--group", a, fa / "budget-5000" / "best.test.json",
                                                  "--group", b, fb / "budget-5000" / "best.test.json")]
    out = _run(*args, "--pairs")
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    for s, (_, folder, _, _) in zip(seeds, pairs, strict=True):
        spec = load(folder / "budget-5000" / "best.yaml")
        assert count_params(spec) <= 5000 and spec.info["search"]["rung"] == 3 and spec.info["search"]["seed"] == s
        assert any(layer.kind == "sepconv" for layer in spec.layers) or arm != "open"
        assert [p["seed"] for p in spec.info["test"]["per_seed"]] == [s, s + 1, s + 2]
        _assert_quoted_seed_lines(spec, bench)



def test_the_bench_readme_shows_what_the_records_give_for_the_seed_0_searches_with_silu_and_the_weight_average():
    from space.analysis import count_params
    from space.io import load

    r = ROOT / "bench" / "records"
    groups = [("seed0", r / "search_cpu_time60"), ("silu_seed0", r / "search_cpu_silu_seed0"),
              ("ema_seed0", r / "search_cpu_ema_seed0")]
    out = _run(*(x for name, folder in groups for x in ("--group", name, folder / "budget-5000" / "best.test.json")))
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    for _, folder in groups[1:]:
        spec = load(folder / "budget-5000" / "best.yaml")
        assert count_params(spec) <= 5000 and spec.info["search"]["rung"] == 3 and spec.info["search"]["seed"] == 0
        assert [p["seed"] for p in spec.info["test"]["per_seed"]] == [0, 1, 2]
        _assert_quoted_seed_lines(spec, bench)


def test_the_bench_readme_shows_what_the_records_give_for_the_searches_without_the_bias_batch_norm_cancels():
    from space.analysis import count_params
    from space.io import load

    r = ROOT / "bench" / "records"
    groups = [("nobias_seed0", r / "search_cpu_nobias_seed0"), ("seed0", r / "search_cpu_time60"),
              ("nobias_seed1", r / "search_cpu_nobias_seed1"), ("explore_seed1", r / "search_cpu_explore_seed1")]
    out = _run(*(x for name, folder in groups for x in ("--group", name, folder / "budget-5000" / "best.test.json")),
               "--pairs")
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    for s, (_, folder) in zip((0, 1), groups[::2], strict=True):
        spec = load(folder / "budget-5000" / "best.yaml")
        assert count_params(spec) <= 5000 and spec.info["search"]["rung"] == 3 and spec.info["search"]["seed"] == s
        assert [p["seed"] for p in spec.info["test"]["per_seed"]] == [s, s + 1, s + 2]
        _assert_quoted_seed_lines(spec, bench)


def test_the_bench_readme_shows_the_default_seed_export_re_trained_without_the_bias_and_nothing_else_changed():
    import dataclasses

    from space.analysis import count_params
    from space.io import load

    r = ROOT / "bench" / "records"
    plain, dropped = r / "search_cpu_time60" / "budget-5000", r / "nobias_retrain" / "time60_5000"
    out = _run("--group", "hour_5000_nobias", dropped / "best.test.json", "--group", "hour_5000",
               plain / "best.test.json", "--pairs")
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    a, b = load(plain / "best.yaml"), load(dropped / "best.yaml")
    assert b.recipe == a.recipe and count_params(a) - count_params(b) == 95
    changed = [(x, y) for x, y in zip(flat_layers(a.layers), flat_layers(b.layers), strict=True)
               if x != y and x.kind != "residual"]
    assert len(changed) == 7 and all(x.bias and dataclasses.replace(x, bias=False) == y for x, y in changed)
    seeds = [p["seed"] for p in a.info["test"]["per_seed"]]
    assert [p["seed"] for p in b.info["test"]["per_seed"]] == seeds     # the same seeds, paired
    _assert_quoted_seed_lines(b, bench)


def test_the_bench_readme_shows_the_weight_average_added_to_two_exports_and_nothing_else_changed():
    import dataclasses

    from space.io import load

    r = ROOT / "bench" / "records"
    pairs = [("hour_5000", r / "search_cpu_time60" / "budget-5000", r / "ema_retrain" / "time60_5000"),
             ("silu_seed1", r / "search_cpu_silu_seed1" / "budget-5000", r / "ema_retrain" / "silu_seed1_5000")]
    out = _run(*(x for name, plain, ema in pairs for x in ("--group", f"{name}_ema", ema / "best.test.json",
                                                            "--group", name, plain / "best.test.json")), "--pairs")
    assert out.returncode == 0, out.stderr
    bench = (ROOT / "bench" / "README.md").read_text()
    for line in out.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    for _, plain, ema in pairs:
        a, b = load(plain / "best.yaml"), load(ema / "best.yaml")
        assert b.recipe.ema == 0.999 and dataclasses.replace(b.recipe, ema=0.0) == a.recipe and b.layers == a.layers
        seeds = [p["seed"] for p in a.info["test"]["per_seed"]]
        assert [p["seed"] for p in b.info["test"]["per_seed"]] == seeds     # the same seeds, paired
        _assert_quoted_seed_lines(b, bench)


def test_the_readmes_show_the_cross_budget_run_of_an_hour_per_budget_beside_the_hand_made_and_the_single_hours():
    r = ROOT / "bench" / "records"
    c, t = r / "search_cpu_budgets_hour", r / "search_cpu_time60"
    against_hand = _beside_narrowed(r / "search_cpu_default_0a53610" / "best.test.json", c)
    against_hour = _run("--pairs", *(x for b in ("10000", "5000") for x in (
        "--group", f"cross_{b}", c / f"budget-{b}" / "best.test.json",
        "--group", f"hour_{b}", t / f"budget-{b}" / "best.test.json")))
    assert against_hand.returncode == 0 and against_hour.returncode == 0, against_hand.stderr + against_hour.stderr
    bench, readme = (ROOT / "bench" / "README.md").read_text(), (ROOT / "README.md").read_text()
    for line in against_hand.stdout.splitlines():                   # the headline, in both
        assert f"    {line}\n" in bench and f"    {line}\n" in readme, line
    for line in against_hour.stdout.splitlines():
        assert f"    {line}\n" in bench, line
    diffs = [float(line.split("points")[0].split(":")[1]) for line in against_hand.stdout.splitlines()[6:]]
    assert len(diffs) == 3 and min(diffs) > 0 and diffs == sorted(diffs)   # found ahead, more so at smaller budgets
    from space.analysis import count_params
    from space.io import load

    for b, trial in ((10000, 314), (5000, 445)):   # each export within its budget, from the last rung, tested once
        spec = load(c / f"budget-{b}" / "best.yaml")
        assert count_params(spec) <= b and spec.info["search"]["rung"] == 3
        assert (spec.info["provenance"]["study"], spec.info["provenance"]["trial"]) == (f"budget-{b}", trial)
        _assert_quoted_seed_lines(spec, bench)
        assert (c / f"budget-{b}" / "evaluate.out").read_text().count("test accuracy") == 4
        zoo = load(ROOT / "space" / "zoo" / f"search_cpu{b}_{count_params(spec)}.yaml")
        assert zoo.layers == spec.layers and zoo.recipe == spec.recipe
    out = (c / "search.out").read_text()
    table = out[out.index("\nbudget   best val"):].splitlines()[1:5]   # the closing table, as quoted
    for line in table + [x for x in out.splitlines() if x.startswith(("plan: ", "warm start", "rung "))]:
        assert f"    {line}\n" in bench, line
    assert f"    {(c / 'search.err').read_text().splitlines()[0]}\n" in bench   # real (wall seconds)
