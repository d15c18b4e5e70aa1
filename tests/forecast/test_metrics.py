"""Forecast metrics by hand, and the comparison table."""

import math

import numpy as np
import pytest

from engine.forecast import NAMES, compare, forecast_metrics, markdown


def forecast(purchases, spend, p_buy=None):
    purchases = np.asarray(purchases, dtype=np.float64)
    p_buy = np.minimum(purchases, 1.0) if p_buy is None else np.asarray(p_buy, dtype=np.float64)
    return {"expected_purchases": purchases, "expected_spend": np.asarray(spend, np.float64), "p_buy": p_buy}


TRUTH = {"purchases": np.array([0.0, 1, 2, 5]), "spend": np.array([0.0, 10, 30, 60])}


def test_perfect_forecast():
    m = forecast_metrics(forecast(TRUTH["purchases"], TRUTH["spend"]), TRUTH, top_share=0.25)
    assert m["mae"] == m["rmse"] == m["spend_mae"] == 0
    assert m["total_error"] == m["spend_total_error"] == 0
    assert m["spearman"] == pytest.approx(1.0)
    assert m["auc_buys_again"] == 1.0
    assert m["top10_revenue_capture"] == pytest.approx(60 / 100)  # the best possible: the top spender


def test_metrics_by_hand():
    pred = forecast([0.5, 2, 1, 3], [5, 5, 50, 0], p_buy=[0.1, 0.5, 0.5, 0.9])
    m = forecast_metrics(pred, TRUTH, top_share=0.25)
    assert m["mae"] == pytest.approx((0.5 + 1 + 1 + 2) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 1 + 1 + 4) / 4))
    assert m["total_error"] == pytest.approx((6.5 - 8) / 8)
    assert m["spend_total_error"] == pytest.approx((60 - 100) / 100)
    assert m["spearman"] == pytest.approx(1 - 6 * 2 / (4 * 15))  # ranks 1 3 2 4 vs 1 2 3 4
    # positives (rows 1-3) vs the negative (row 0, p 0.1): all above -> 1; add a tie below
    assert m["auc_buys_again"] == 1.0
    assert m["top10_revenue_capture"] == pytest.approx(30 / 100)  # top 1 of 4 by predicted spend: row 2
    assert m["spend_mae"] == pytest.approx((5 + 5 + 20 + 60) / 4)


def test_auc_counts_ties_as_half():
    truth = {"purchases": np.array([0.0, 1, 0, 3]), "spend": np.array([0.0, 1, 0, 1])}
    m = forecast_metrics(forecast([0, 0, 0, 0], [0, 0, 0, 0], p_buy=[0.1, 0.5, 0.5, 0.9]), truth)
    assert m["auc_buys_again"] == pytest.approx(3.5 / 4)
    assert math.isnan(m["spearman"])  # constant prediction


def test_capture_breaks_ties_by_row_and_rounds_up():
    truth = {"purchases": np.ones(10), "spend": np.array([0.0, 50, 0, 0, 0, 0, 0, 0, 0, 50])}
    tied = forecast(np.ones(10), [5, 5, 1, 1, 1, 1, 1, 1, 1, 1])
    assert forecast_metrics(tied, truth)["top10_revenue_capture"] == 0.0  # 1 of 10: row 0 before row 1
    assert forecast_metrics(tied, truth, top_share=0.15)["top10_revenue_capture"] == 0.5  # ceil(1.5) = 2


def test_undefined_metrics_are_nan_and_misalignment_fails():
    zero = {"purchases": np.zeros(3), "spend": np.zeros(3)}
    m = forecast_metrics(forecast([1, 1, 2], [1, 1, 2]), zero)
    assert all(
        math.isnan(m[k])
        for k in ("total_error", "spend_total_error", "auc_buys_again", "top10_revenue_capture", "spearman")
    )
    with pytest.raises(ValueError, match="not aligned"):
        forecast_metrics(forecast([1, 1], [1, 1]), zero)


def test_compare_and_markdown():
    zero = forecast(np.zeros(4), np.zeros(4), p_buy=np.zeros(4))
    table = compare(
        {
            "neural": forecast(TRUTH["purchases"], TRUTH["spend"]),
            "naive": forecast([0.5, 2, 1, 3], [5, 5, 50, 0]) | {"params": {"penalizer": 0.0}},  # ignored
            "my model": forecast([1, 1, 1, 1], [1, 1, 1, 1]),
            "zero": zero,
        },
        TRUTH,
    )
    assert list(table) == ["neural", "naive", "my model", "zero"]
    text = markdown(table)
    lines = text.splitlines()
    assert lines[0] == (
        "| method | MAE | RMSE | total error % | Spearman | AUC buys-again | top-10% revenue share |"
    )
    assert lines[2] == "| segment-engine (neural) | 0.000 | 0.000 | +0.0% | 1.000 | 1.000 | 60.0% |"
    assert lines[3].startswith("| rate x horizon | 1.125 | ") and "| -18.8% |" in lines[3]
    assert lines[4].startswith("| my model |") and "n/a" in lines[4]  # constant prediction: no Spearman
    assert lines[5] == "| zero | 2.000 | 2.739 | -100.0% | n/a | 0.500 | 0.0% |"


def test_every_baseline_has_a_display_name():
    assert {NAMES[k] for k in ("bgnbd_gamma_gamma", "pareto_nbd", "naive", "rfm_quantile", "zero")} == {
        "BG/NBD + Gamma-Gamma",
        "Pareto/NBD + Gamma-Gamma",
        "rate x horizon",
        "RFM cells",
        "zero",
    }


def test_paired_intervals_tell_a_real_margin_from_the_samples_noise():
    from engine.forecast.metrics import INTERVAL_FIGURES, interval_text, paired_intervals

    rng = np.random.default_rng(0)
    rate = rng.gamma(1.0, 5.0, 3000)
    truth = {"purchases": rng.poisson(rate).astype(np.float64)}
    truth["spend"] = truth["purchases"] * 20.0
    good = forecast(rate, 20.0 * rate, 1 - np.exp(-rate))
    noisy_rate = rate * rng.lognormal(0.0, 0.8, len(rate))  # the same mean level, a worse ranking
    noisy = forecast(noisy_rate, 20.0 * noisy_rate, 1 - np.exp(-noisy_rate))

    better = paired_intervals(good, noisy, truth, resamples=100)
    assert list(better) == list(INTERVAL_FIGURES)
    assert better["mae"][1] < 0 and better["rmse"][1] < 0  # lower errors on every draw's 95%
    assert better["spearman"][0] > 0 and better["top10_revenue_capture"][0] > 0
    same = paired_intervals(good, good, truth, resamples=20)
    assert all(lo == hi == 0.0 for lo, hi in same.values())  # paired: the same forecast never differs
    assert paired_intervals(good, noisy, truth, resamples=100) == better  # seeded
    assert interval_text(better).startswith("MAE [-")
    assert "top-10% revenue share [+" in interval_text(better)
