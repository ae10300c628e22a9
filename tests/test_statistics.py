"""benchmarks/report.py's statistics on hand-made numbers: the interquartile mean, the sample std, the (stratified)
bootstrap intervals and their coverage, and "beats" as intervals that do not overlap."""

import numpy as np
import pytest
import report


def test_iqm_is_the_mean_of_the_middle_half():
    # 8 values: 2 cut from each end, the mean of [1, 2, 3, 100]; an outlying seed moves it far less than the mean
    assert report.iqm([100, 0, 3, 100, 1, 0, 2, 100]) == pytest.approx(26.5)
    assert report.iqm([1.0, 2.0, 3.0]) == pytest.approx(2.0)  # fewer than 4 values: nothing to cut, the mean
    assert report.iqm([1, 2, 3, 4, 5, 6, 7, 1000]) == pytest.approx(4.5)  # the outlier is cut (the mean is 128.5)
    rows = report.iqm(np.array([[1, 2, 3, 4], [10, 20, 30, 40]]), axis=1)  # one IQM per row: what the bootstrap uses
    assert rows == pytest.approx([2.5, 25.0])


def test_sample_std_uses_ddof_one_and_a_cell_says_it():
    assert report.sample_std([40.0, 50.0, 60.0]) == pytest.approx(10.0)  # ddof 0 would say 8.2
    assert np.isnan(report.sample_std([3.0]))
    assert report.summary([40.0, 50.0, 60.0]) == "50.0 ± 10.0 [40.0, 60.0] (3)"
    assert report.summary([80.0]) == "80.0 (1)" and report.summary([]) == "—"


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    trials, covered = 300, 0
    for trial in range(trials):
        seeds = rng.normal(50.0, 10.0, size=20)  # 20 seeds of a method whose true mean score is 50
        low, high = report.bootstrap_ci([seeds], statistic=np.mean, reps=2000, seed=trial)
        covered += low <= 50.0 <= high
    # a percentile bootstrap slightly under-covers with 20 values (about 93%); far from 95% means a broken interval
    assert 0.88 <= covered / trials <= 0.98


def test_the_bootstrap_is_stratified_by_dataset():
    # every seed of one dataset scores 0, of the other 100: resampling within each dataset never changes the IQM ...
    assert report.bootstrap_ci([[0.0] * 4, [100.0] * 4]) == (50.0, 50.0)
    # ... where resampling the 8 pooled scores would draw uneven mixes
    low, high = report.bootstrap_ci([[0.0] * 4 + [100.0] * 4])
    assert low < 30.0 and high > 70.0


def test_beats_needs_intervals_apart():
    bc = [19.0, 20.0, 21.0]
    assert report.beats([89.0, 90.0, 91.0], bc) and not report.beats(bc, [89.0, 90.0, 91.0])
    assert not report.beats([20.5, 21.5, 22.5], bc)  # 1.5 ahead, more than either std, but the intervals overlap
    assert not report.beats([90.0], []) and not report.beats([], bc)


def test_table_aggregates_datasets_with_an_iqm_and_its_stratified_interval():
    records = [{"id": f"{d}{s}", "script": "iql", "dataset": d, "seed": s, "flags": {}, "status": "ok", "normalized_score": v}
               for d, values in (("a/x-v0", (10.0, 20.0, 30.0)), ("b/y-v0", (50.0, 60.0, 70.0))) for s, v in enumerate(values)]  # fmt: skip
    text = report.table(records)
    low, high = report.bootstrap_ci([[10.0, 20.0, 30.0], [50.0, 60.0, 70.0]])
    # the six scores sorted: one cut from each end, the IQM of [20, 30, 50, 60] is 40
    assert f"| 40.0 [{low:.1f}, {high:.1f}] |" in text and low < 40.0 < high
    assert "IQM over datasets [95% CI]" in text.splitlines()[0]
