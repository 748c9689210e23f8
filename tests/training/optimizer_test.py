"""Warmup + decay schedule values and AdamW settings."""
import pytest

from magnets_tf.training import optimizer


@pytest.mark.parametrize("decay,middle", [("cosine", 0.5), ("linear", 0.5), ("constant", 1.0)])
def test_schedule_shape(decay, middle):
    schedule = optimizer.WarmupDecaySchedule(1e-3, total_steps=110, warmup_steps=10, decay=decay)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(5e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(60)) == pytest.approx(1e-3 * middle)
    assert float(schedule(110)) == pytest.approx(0.0 if decay != "constant" else 1e-3, abs=1e-9)
    restored = optimizer.WarmupDecaySchedule(**schedule.get_config())
    assert float(restored(37)) == float(schedule(37))


def test_end_factor_and_errors():
    schedule = optimizer.WarmupDecaySchedule(1.0, 100, 0, "linear", end_factor=0.1)
    assert float(schedule(100)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown decay"):
        optimizer.WarmupDecaySchedule(1.0, 100, decay="step")
    with pytest.raises(ValueError, match="total_steps"):
        optimizer.WarmupDecaySchedule(1.0, 0)


def test_make_optimizer_maskgit_defaults():
    opt = optimizer.make_optimizer(1000)
    assert opt.beta_2 == 0.96 and opt.weight_decay == pytest.approx(0.045)
    assert opt.schedule.peak_learning_rate == 1e-4 and opt.schedule.warmup_steps == 5000
