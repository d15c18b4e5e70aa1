"""The lifetimes models, fitted properly: the penalizer ladder climbs only when a fit fails, failures are logged,
nothing non-finite leaves a baseline (also where lifetimes returns NaN, on a sample of the real grocery log),
and Pareto/NBD fits on a sample of a large base."""

import logging

import numpy as np
import pytest

from engine.forecast import bgnbd_gamma_gamma, pareto_nbd, transaction_inputs
from engine.forecast.btyd import fit_pareto_nbd

lifetimes = pytest.importorskip("lifetimes")
from lifetimes.utils import ConvergenceError  # noqa: E402

KEYS = ("expected_purchases", "expected_spend", "p_buy")


def test_the_ladder_climbs_only_when_a_fit_fails(generated, monkeypatch, caplog):
    history, _, as_of, unit = generated
    fit = lifetimes.BetaGeoFitter.fit
    tried = []

    def fail_unpenalised(self, *args, **kwargs):
        tried.append(self.penalizer_coef)
        if self.penalizer_coef == 0:
            print("optimiser state")  # lifetimes prints before raising: kept out of stdout
            raise ConvergenceError("The model did not converge.")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(lifetimes.BetaGeoFitter, "fit", fail_unpenalised)
    with caplog.at_level(logging.INFO):
        pred = bgnbd_gamma_gamma(history, as_of, 30, unit)
    assert tried == [0.0, 0.001] and pred["params"]["penalizer"] == 0.001
    assert "BG/NBD fitted with penalizer 0.001" in caplog.text


def test_no_usable_fit_is_none_and_logged(generated, monkeypatch, caplog, capsys):
    history, _, as_of, unit = generated

    def fail(*args, **kwargs):
        print("optimiser state")
        raise ConvergenceError("The model did not converge.")

    monkeypatch.setattr(lifetimes.BetaGeoFitter, "fit", fail)
    with caplog.at_level(logging.WARNING):
        assert bgnbd_gamma_gamma(history, as_of, 30, unit) is None
    assert "did not converge with any penalizer" in caplog.text and "penalizer 0.1" in caplog.text
    assert "optimiser state" not in capsys.readouterr().out


@pytest.mark.parametrize("penalizers", [(0.0, 0.001, 0.01, 0.1), (0.01,)])
def test_real_log_forecasts_are_finite(cj_sample, penalizers, caplog):
    """19 weeks of history, a 19-week horizon. A penalizer shrinks BG/NBD's a towards 0, where lifetimes'
    expectation is 0/0 for customers without a repeat basket: the alive-rate limit stands in for it."""
    store, as_of = cj_sample
    history = store.before(as_of).non_empty()
    with caplog.at_level(logging.INFO):
        for baseline in (bgnbd_gamma_gamma, pareto_nbd):
            pred = baseline(history, as_of, 133, "basket", penalizers=penalizers)
            for key in KEYS:
                assert np.isfinite(pred[key]).all() and (pred[key] >= 0).all(), (baseline.__name__, key)
            assert pred["params"]["penalizer"] in penalizers
            assert all(np.isfinite(v) for v in pred["params"].values())
            assert 0.5 < pred["expected_purchases"].mean() / 133 * 7 < 5  # baskets a week: a grocery shop
    if penalizers == (0.01,):
        assert "alive-rate limit" in caplog.text


def test_pareto_nbd_fits_on_a_sample_of_a_large_base(generated, caplog):
    history, _, as_of, unit = generated
    f = transaction_inputs(history, as_of, unit)
    x, t_x, T = f["frequency"], f["recency"], f["T"]
    with caplog.at_level(logging.INFO):
        _, sampled = fit_pareto_nbd(x, t_x, T, max_customers=200)
    assert f"sample of 200 of {history.n_customers} customers" in caplog.text
    _, whole = fit_pareto_nbd(x, t_x, T)
    assert sampled["r"] == pytest.approx(whole["r"], rel=0.3)  # the same population, roughly
