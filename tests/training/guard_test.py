"""The divergence guard: NaN/Inf, loss spikes over the running median, exploding weights,
and the step whose weights are still trusted."""
import math

import pytest

from magnets_tf.training.guard import DivergenceError, DivergenceGuard


def _warm(guard, steps=10, loss=1.0, norm=5.0):
    guard.start(norm, ("loss",))
    for step in range(1, steps + 1):
        guard.check(step, {"loss": loss + 0.01 * (step % 3)}, norm)
    return steps


def test_healthy_run_passes_and_noise_is_no_spike():
    guard = DivergenceGuard(spike_factor=10.0, min_history=5)
    step = _warm(guard, 30)
    guard.check(step + 1, {"loss": 9.0}, 5.5)  # 9x the median: below the factor.
    guard.check_saved(step + 1, 5.5)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_loss_stops_and_trusts_the_weights_two_updates_back(value):
    guard = DivergenceGuard()
    guard.start(1.0)
    with pytest.raises(DivergenceError, match=f"step 7: loss is {value}") as caught:
        guard.check(7, {"loss": value})
    assert caught.value.step == 7 and caught.value.last_good_step == 5


def test_loss_spike_over_the_running_median_stops():
    guard = DivergenceGuard(spike_factor=10.0, window=20, min_history=5)
    step = _warm(guard, 10)
    with pytest.raises(DivergenceError, match=r"loss 50 is more than 10x its running "
                                              r"median 1\.01") as caught:
        guard.check(step + 1, {"loss": 50.0}, 5.0)
    assert caught.value.last_good_step == step - 1


def test_no_spike_verdict_before_min_history():
    guard = DivergenceGuard(spike_factor=2.0, min_history=5)
    guard.start(None)
    for step, loss in enumerate([1.0, 100.0, 1.0, 1.0], start=1):
        guard.check(step, {"loss": loss})


def test_exploding_weights_stop_before_their_loss_shows_it():
    """lr=1e30: the loss of the step is still fine, the weights after it are not."""
    guard = DivergenceGuard(max_weight_growth=2.0)
    guard.start(5.0)
    guard.check(1, {"loss": 2.0}, 5.1)
    with pytest.raises(DivergenceError, match=r"weight norm jumped from 5\.1 to 8\.8e\+29"
                       ) as caught:
        guard.check(2, {"loss": 2.0}, 8.8e29)
    assert caught.value.last_good_step == 1
    with pytest.raises(DivergenceError, match="weights became inf"):
        guard.check(3, {"loss": 2.0}, math.inf)


def test_the_save_check_compares_with_the_last_checked_weights():
    guard = DivergenceGuard(max_weight_growth=2.0)
    guard.start(5.0)
    guard.check_saved(1, 9.0)
    with pytest.raises(DivergenceError, match="to be saved"):
        guard.check_saved(1, 11.0)
    with pytest.raises(DivergenceError, match="to be saved are nan"):
        guard.check_saved(1, math.nan)


def test_checks_can_be_switched_off_and_unlogged_keys_are_skipped():
    guard = DivergenceGuard(spike_factor=None, max_weight_growth=None, min_history=1)
    guard.start(1.0, ("loss", "grad_norm"))
    guard.check(1, {"loss": 1.0}, 1.0)
    guard.check(2, {"loss": 1e6}, 1e6)
    with pytest.raises(DivergenceError, match="grad_norm is nan"):
        guard.check(3, {"loss": 1.0, "grad_norm": math.nan}, 1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(spike_factor=1.0), "spike_factor must be > 1"),
    (dict(max_weight_growth=0.5), "max_weight_growth must be > 1"),
    (dict(window=5, min_history=6), "min_history"),
])
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DivergenceGuard(**kwargs)


def test_save_check_without_growth_bound_still_refuses_non_finite_weights():
    guard = DivergenceGuard(max_weight_growth=None)
    guard.start(1.0)
    guard.check_saved(1, 1e30)
    with pytest.raises(DivergenceError, match="to be saved are inf"):
        guard.check_saved(1, math.inf)
