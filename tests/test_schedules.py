"""Learning-rate schedules: lr sequences against hand-worked and closed-form values,
against torch.optim.lr_scheduler where torch is present, state_dict and bad input."""
import json
import math
import re
import warnings

import numpy as np
import pytest

import bpcore as bp
from bpcore.optim.schedules import CosineLR, ExponentialLR, LambdaLR, ReduceLROnPlateau, StepLR
from bpcore.train.callbacks import LearningRateScheduler


def optimizer(lr=0.1):
    return bp.SGD(bp.Model([bp.Dense(2, 2)], seed=0), lr=lr)


def closed_form_sequence(schedule, epochs):
    """lr of epochs 0 .. epochs-1: the one set at construction, then one per step()."""
    lrs = [schedule.optimizer.lr]
    for _ in range(epochs - 1):
        schedule.step()
        lrs.append(schedule.optimizer.lr)
    return lrs


def plateau_sequence(schedule, metrics):
    lrs = [schedule.optimizer.lr]
    for value in metrics:
        schedule.step(value)
        lrs.append(schedule.optimizer.lr)
    return lrs


# ============================================================== hand-worked
def test_step_lr_hand_worked():
    # base 0.8, halved every 3 epochs: 0.8 0.8 0.8 | 0.4 0.4 0.4 | 0.2 0.2 0.2 | 0.1
    schedule = StepLR(optimizer(0.8), step_size=3, gamma=0.5)
    assert closed_form_sequence(schedule, 10) == [0.8] * 3 + [0.4] * 3 + [0.2] * 3 + [0.1]
    assert schedule.last_lr == 0.1 and schedule.epoch == 9


def test_exponential_lr_closed_form():
    schedule = ExponentialLR(optimizer(0.5), gamma=0.9)
    np.testing.assert_allclose(closed_form_sequence(schedule, 30), 0.5 * 0.9 ** np.arange(30),
                               rtol=1e-15)


def test_cosine_lr_without_warmup_hand_worked():
    # T = 4, base 1, min 0: lr(e) = (1 + cos(pi e / 4)) / 2, then min after e = 4
    schedule = CosineLR(optimizer(1.0), total_epochs=4)
    c = math.cos(math.pi / 4)
    np.testing.assert_allclose(closed_form_sequence(schedule, 7),
                               [1.0, (1 + c) / 2, 0.5, (1 - c) / 2, 0.0, 0.0, 0.0], atol=1e-16)


def test_cosine_lr_with_warmup_hand_worked():
    # W = 2, T = 4, base 1, min 0.2:
    #   warm-up  e=0: 1 * 1/2 = 0.5    e=1: 1 * 2/2 = 1
    #   cosine   e=2: progress 0 -> 1  e=3: progress 1/2 -> 0.2 + 0.8 * (1 + 0)/2 = 0.6
    #            e=4: progress 1 -> 0.2, and 0.2 after
    schedule = CosineLR(optimizer(1.0), total_epochs=4, warmup_epochs=2, min_lr=0.2)
    np.testing.assert_allclose(closed_form_sequence(schedule, 7),
                               [0.5, 1.0, 1.0, 0.6, 0.2, 0.2, 0.2], rtol=1e-15)


@pytest.mark.parametrize("total, warmup, min_lr", [(10, 0, 0.0), (10, 3, 0.01), (7, 6, 0.05),
                                                   (1, 0, 0.02), (50, 5, 0.0)])
def test_cosine_lr_closed_form(total, warmup, min_lr):
    base = 0.3
    schedule = CosineLR(optimizer(base), total, warmup, min_lr)
    want = []
    for e in range(total + 5):
        if e < warmup:
            want.append(base * (e + 1) / warmup)
        else:
            t = min(e, total) - warmup
            cosine = math.cos(math.pi * t / (total - warmup))
            want.append(min_lr + (base - min_lr) * 0.5 * (1 + cosine))
    lrs = closed_form_sequence(schedule, total + 5)
    np.testing.assert_allclose(lrs, want, rtol=1e-14, atol=1e-17)
    assert max(lrs) == pytest.approx(base) and lrs[-1] == pytest.approx(min_lr, abs=1e-17)
    assert all(a <= b for a, b in zip(lrs[:warmup], lrs[1:warmup + 1]))        # climbs
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))         # then falls


def test_lambda_lr_is_base_lr_times_fn_of_the_epoch():
    seen = []

    def fn(epoch):
        seen.append(epoch)
        return 1.0 / (epoch + 1)

    schedule = LambdaLR(optimizer(0.6), fn)
    np.testing.assert_allclose(closed_form_sequence(schedule, 5),
                               [0.6, 0.3, 0.2, 0.15, 0.12], rtol=1e-15)
    assert seen == [0, 1, 2, 3, 4]


def test_reduce_on_plateau_hand_worked():
    """patience 2, factor 0.5, cooldown 1, min_lr 0.02, threshold 0.1 (rel, min):
    metric 1.0   best 1.0, bad 0                     lr after: 0.1
           0.95  not < 1.0 * 0.9 -> bad 1                      0.1
           0.92  bad 2                                         0.1
           0.91  bad 3 > 2 -> halve, cooldown 1                0.05
           0.99  bad 1, but cooling down -> bad 0              0.05
           0.98  0.97  bad 1, 2                                0.05
           0.96  bad 3 -> halve, cooldown 1                    0.025
           0.5   new best (< 0.9), cooling down -> bad 0       0.025
           0.6   0.6  bad 1, 2                                 0.025
           0.6   bad 3 -> max(0.0125, min_lr 0.02)             0.02
           0.6 x4   bad 3 again, but 0.02 - 0.02 <= eps: kept  0.02
    """
    schedule = ReduceLROnPlateau(optimizer(0.1), factor=0.5, patience=2, threshold=0.1,
                                 cooldown=1, min_lr=0.02)
    metrics = [1.0, 0.95, 0.92, 0.91, 0.99, 0.98, 0.97, 0.96, 0.5, 0.6, 0.6, 0.6, 0.6,
               0.6, 0.6, 0.6, 0.6]
    want = [0.1] * 4 + [0.05] * 4 + [0.025] * 4 + [0.02] * 6
    np.testing.assert_allclose(plateau_sequence(schedule, metrics), want, rtol=1e-15)
    assert schedule.best == 0.5 and schedule.epoch == len(metrics)


def test_reduce_on_plateau_max_mode_and_non_finite_metrics():
    schedule = ReduceLROnPlateau(optimizer(1.0), mode="max", patience=0, threshold=0.0)
    # nan and +inf never improve (in max mode torch would take +inf as the best)
    lrs = plateau_sequence(schedule, [1.0, 2.0, float("nan"), 3.0, float("inf"), 3.0])
    np.testing.assert_allclose(lrs, [1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.001], rtol=1e-14)
    assert schedule.best == 3.0


def test_closed_form_schedules_ignore_the_metric():
    a, b = StepLR(optimizer(), 2), StepLR(optimizer(), 2)
    for value in (None, 1.0, float("nan"), "anything"):
        a.step(value)
        b.step()
    assert a.last_lr == b.last_lr and a.epoch == 4


def test_schedules_set_the_learning_rate_the_optimizer_uses():
    opt = optimizer(1.0)
    schedule = CosineLR(opt, total_epochs=10, warmup_epochs=4)
    assert opt.lr == 0.25                      # construction sets epoch 0's rate
    schedule.step()
    assert opt.lr == 0.5 == schedule.last_lr
    opt.lr = 7.0                               # closed form: the next step overwrites it
    schedule.step()
    assert opt.lr == 0.75


# ================================================================ torch
def _torch_sequence(make, lr, epochs, metrics=None):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                # torch's deprecation chatter
        schedule = make(torch.optim.lr_scheduler, opt)
        lrs = [opt.param_groups[0]["lr"]]
        for step in range(epochs - 1):
            if metrics is None:
                opt.step()
                schedule.step()
            else:
                schedule.step(metrics[step])
            lrs.append(opt.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("step_size, gamma", [(1, 0.5), (3, 0.1), (4, 0.9), (2, 1.5)])
def test_step_lr_equals_torch(step_size, gamma):
    want = _torch_sequence(lambda s, o: s.StepLR(o, step_size, gamma), 0.2, 25)
    np.testing.assert_allclose(closed_form_sequence(StepLR(optimizer(0.2), step_size, gamma), 25),
                               want, rtol=1e-13)


@pytest.mark.parametrize("gamma", [0.5, 0.95, 1.0, 1.05])
def test_exponential_lr_equals_torch(gamma):
    want = _torch_sequence(lambda s, o: s.ExponentialLR(o, gamma), 0.2, 40)
    np.testing.assert_allclose(closed_form_sequence(ExponentialLR(optimizer(0.2), gamma), 40),
                               want, rtol=1e-13)


@pytest.mark.parametrize("total, min_lr", [(10, 0.0), (25, 0.01), (1, 0.05)])
def test_cosine_lr_without_warmup_equals_torch_cosine_annealing(total, min_lr):
    want = _torch_sequence(lambda s, o: s.CosineAnnealingLR(o, T_max=total, eta_min=min_lr),
                           0.2, total + 1)
    lrs = closed_form_sequence(CosineLR(optimizer(0.2), total, min_lr=min_lr), total + 1)
    np.testing.assert_allclose(lrs, want, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("total, warmup, min_lr", [(10, 3, 0.0), (30, 5, 0.01), (6, 2, 0.05)])
def test_cosine_lr_with_warmup_equals_torch_sequential(total, warmup, min_lr):
    def make(s, o):
        return s.SequentialLR(o, [s.LinearLR(o, start_factor=1 / warmup, end_factor=1.0,
                                             total_iters=warmup - 1),
                                  s.CosineAnnealingLR(o, T_max=total - warmup, eta_min=min_lr)],
                              milestones=[warmup])

    want = _torch_sequence(make, 0.2, total + 1)
    lrs = closed_form_sequence(CosineLR(optimizer(0.2), total, warmup, min_lr), total + 1)
    np.testing.assert_allclose(lrs, want, rtol=1e-10, atol=1e-15)


def test_lambda_lr_equals_torch():
    fn = lambda epoch: 0.97 ** epoch * (1 + epoch % 3)            # noqa: E731
    want = _torch_sequence(lambda s, o: s.LambdaLR(o, fn), 0.2, 30)
    np.testing.assert_allclose(closed_form_sequence(LambdaLR(optimizer(0.2), fn), 30), want,
                               rtol=1e-15)


PLATEAU_CASES = [
    dict(),
    dict(mode="max", factor=0.5, patience=2),
    dict(factor=0.3, patience=1, threshold=0.05, cooldown=2),
    dict(factor=0.5, patience=0, min_lr=0.01),
    dict(mode="max", patience=3, cooldown=1, threshold=0.0, min_lr=1e-3, eps=1e-3),
]


@pytest.mark.parametrize("options", PLATEAU_CASES,
                         ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_reduce_on_plateau_equals_torch(options):
    rng = np.random.default_rng(7)
    # noisy plateaus with occasional improvements, a NaN and the mode's worst infinity
    values = np.repeat(rng.normal(1.0, 0.2, 20), rng.integers(1, 6, 20))
    metrics = [float(m) for m in values * np.linspace(1.0, 0.6, values.size)]   # drifts down
    worst = float("inf") if options.get("mode", "min") == "min" else -float("inf")
    metrics[5], metrics[9] = float("nan"), worst
    want = _torch_sequence(lambda s, o: s.ReduceLROnPlateau(o, threshold_mode="rel",
                                                            **options),
                           0.2, len(metrics) + 1, metrics)
    lrs = plateau_sequence(ReduceLROnPlateau(optimizer(0.2), **options), metrics)
    np.testing.assert_allclose(lrs, want, rtol=1e-14)
    assert len(set(lrs)) >= 2                               # the rate was reduced


# ====================================================== state_dict and resume
def _make_all(opt):
    return [StepLR(opt, 3, 0.5), ExponentialLR(opt, 0.9),
            CosineLR(opt, 12, warmup_epochs=3, min_lr=0.01),
            LambdaLR(opt, lambda e: 1 / (1 + e)),
            ReduceLROnPlateau(opt, patience=1, cooldown=1, factor=0.5)]


METRICS = [1.0, 0.9, 0.95, 0.97, 0.99, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4]


@pytest.mark.parametrize("index", range(5),
                         ids=["step", "exponential", "cosine", "lambda", "plateau"])
def test_json_state_dict_resume_equals_uninterrupted_run(index):
    schedule = _make_all(optimizer(0.4))[index]
    uninterrupted = plateau_sequence(schedule, METRICS)

    schedule = _make_all(optimizer(0.4))[index]
    first = plateau_sequence(schedule, METRICS[:6])
    text = json.dumps(schedule.state_dict(), allow_nan=False)      # strict JSON
    plateau_sequence(schedule, METRICS[6:9])                       # diverge

    opt = optimizer(99.0)                                          # a fresh run
    resumed = _make_all(opt)[index]
    resumed.load_state_dict(json.loads(text))
    assert opt.lr == first[-1] == resumed.last_lr and resumed.epoch == 6
    rest = plateau_sequence(resumed, METRICS[6:])[1:]
    assert first + rest == uninterrupted


def test_state_dict_holds_plain_values():
    opt = optimizer(0.3)
    schedule = ReduceLROnPlateau(opt)
    assert schedule.state_dict() == {
        "schedule": "ReduceLROnPlateau",
        "hyperparameters": {"mode": "min", "factor": 0.1, "patience": 10, "threshold": 1e-4,
                            "cooldown": 0, "min_lr": 0.0, "eps": 1e-8},
        "base_lr": 0.3, "epoch": 0, "last_lr": 0.3, "best": None, "num_bad_epochs": 0,
        "cooldown_counter": 0}
    schedule.step(np.float64(2.5))
    assert type(schedule.state_dict()["best"]) is float


def msg(argument, expected, came):
    """A match= regex demanding the argument's name, what was expected and what came."""
    parts = [rf"(?<![\w']){re.escape(argument)}(?![\w'])", re.escape(expected), re.escape(came)]
    return "(?s)" + "".join(f"(?=.*?{p})" for p in parts)


def _edit(**changes):
    def apply(state):
        return {**state, **changes}
    return apply


def _edit_hyper(**changes):
    def apply(state):
        return {**state, "hyperparameters": {**state["hyperparameters"], **changes}}
    return apply


LOAD_CASES = [
    (StepLR, lambda s: [s], TypeError, msg("state_dict", "must be a dict", "got list")),
    (StepLR, lambda s: {k: v for k, v in s.items() if k != "epoch"}, ValueError,
     msg("state_dict", "must hold the keys", "'base_lr', 'hyperparameters', 'last_lr'")),
    (StepLR, lambda s: ExponentialLR(optimizer(), 0.5).state_dict(), ValueError,
     msg("state_dict", "this schedule is 'StepLR'", "is for 'ExponentialLR'")),
    (StepLR, _edit(epoch=-1), ValueError, msg("state_dict['epoch']", "non-negative integer",
                                              "got -1")),
    (StepLR, _edit(epoch=2.0), TypeError, msg("state_dict['epoch']", "non-negative integer",
                                              "float 2.0")),
    (StepLR, _edit(last_lr=float("nan")), ValueError,
     msg("state_dict['last_lr']", "finite number", "got nan")),
    (StepLR, _edit(base_lr="0.1"), TypeError, msg("state_dict['base_lr']", "real number",
                                                  "str '0.1'")),
    (StepLR, _edit(hyperparameters=[]), TypeError,
     msg("state_dict['hyperparameters']", "must be a dict", "a list of length 0")),
    (StepLR, _edit_hyper(step_size=0), ValueError,
     msg("hyperparameters['step_size']", "positive integer", "got 0")),
    (StepLR, _edit_hyper(foo=1), ValueError,
     msg("hyperparameters", "must be ['gamma', 'step_size']", "got ['foo', 'gamma'")),
    (CosineLR, _edit_hyper(warmup_epochs=12), ValueError,
     msg("warmup_epochs", "below total_epochs=12", "got 12")),
    (CosineLR, _edit(base_lr=0.001), ValueError,
     msg("min_lr", "at most the optimizer's lr 0.001", "got 0.01")),
    (ReduceLROnPlateau, _edit(best=float("inf")), ValueError,
     msg("state_dict['best']", "finite number", "got inf")),
    (ReduceLROnPlateau, _edit(num_bad_epochs=-2), ValueError,
     msg("state_dict['num_bad_epochs']", "non-negative integer", "got -2")),
    (ReduceLROnPlateau, _edit_hyper(mode="mean"), ValueError,
     msg("hyperparameters['mode']", "'min' or 'max'", "str 'mean'")),
]


@pytest.mark.parametrize("cls, edit, error, pattern", LOAD_CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, *_) in enumerate(LOAD_CASES)])
def test_load_state_dict_rejects_bad_state_and_changes_nothing(cls, edit, error, pattern):
    opt = optimizer(0.4)
    schedule = {StepLR: lambda: StepLR(opt, 3, 0.5),
                CosineLR: lambda: CosineLR(opt, 12, warmup_epochs=3, min_lr=0.01),
                ReduceLROnPlateau: lambda: ReduceLROnPlateau(opt, patience=1)}[cls]()
    plateau_sequence(schedule, [1.0, 1.0, 1.0, 1.0])
    before, lr = schedule.state_dict(), opt.lr
    with pytest.raises(error, match=pattern):
        schedule.load_state_dict(edit(schedule.state_dict()))
    assert schedule.state_dict() == before and opt.lr == lr


# ================================================================ bad input
BAD_ARGUMENTS = [
    (lambda o: StepLR(o, 0), ValueError, msg("step_size", "positive integer", "got 0")),
    (lambda o: StepLR(o, 2.5), TypeError, msg("step_size", "positive integer", "float 2.5")),
    (lambda o: StepLR(o, True), TypeError, msg("step_size", "positive integer", "bool True")),
    (lambda o: StepLR(o, 3, gamma=0.0), ValueError, msg("gamma", "(0.0, inf]", "got 0.0")),
    (lambda o: ExponentialLR(o, -0.5), ValueError, msg("gamma", "(0.0, inf]", "got -0.5")),
    (lambda o: ExponentialLR(o, float("nan")), ValueError, msg("gamma", "finite", "got nan")),
    (lambda o: CosineLR(o, 0), ValueError, msg("total_epochs", "positive integer", "got 0")),
    (lambda o: CosineLR(o, 10, warmup_epochs=-1), ValueError,
     msg("warmup_epochs", "non-negative integer", "got -1")),
    (lambda o: CosineLR(o, 10, warmup_epochs=10), ValueError,
     msg("warmup_epochs", "below total_epochs=10", "got 10")),
    (lambda o: CosineLR(o, 10, min_lr=-0.1), ValueError, msg("min_lr", "[0.0, inf]", "got -0.1")),
    (lambda o: CosineLR(o, 10, min_lr=0.5), ValueError,
     msg("min_lr", "at most the optimizer's lr 0.1", "got 0.5")),
    (lambda o: LambdaLR(o, 0.5), TypeError, msg("fn", "callable epoch -> factor", "float")),
    (lambda o: LambdaLR(o, lambda e: -1.0), ValueError,
     msg("fn(0)", "finite number in [0.0, inf]", "got -1.0")),
    (lambda o: LambdaLR(o, lambda e: "x"), TypeError, msg("fn(0)", "real number", "str 'x'")),
    (lambda o: ReduceLROnPlateau(o, mode="mean"), ValueError,
     msg("mode", "'min' or 'max'", "str 'mean'")),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), ValueError,
     msg("factor", "(0.0, 1.0)", "got 1.0")),
    (lambda o: ReduceLROnPlateau(o, patience=-1), ValueError,
     msg("patience", "non-negative integer", "got -1")),
    (lambda o: ReduceLROnPlateau(o, threshold=-1e-4), ValueError,
     msg("threshold", "[0.0, inf]", "got -0.0001")),
    (lambda o: ReduceLROnPlateau(o, cooldown=1.5), TypeError,
     msg("cooldown", "non-negative integer", "float 1.5")),
    (lambda o: ReduceLROnPlateau(o, min_lr=float("inf")), ValueError,
     msg("min_lr", "finite number", "got inf")),
    (lambda o: StepLR(o.model, 3), TypeError, msg("optimizer", "bpcore Optimizer", "Model")),
]


@pytest.mark.parametrize("make, error, pattern", BAD_ARGUMENTS,
                         ids=[str(i) for i in range(len(BAD_ARGUMENTS))])
def test_bad_arguments_raise_naming_the_argument(make, error, pattern):
    opt = optimizer(0.1)
    with pytest.raises(error, match=pattern):
        make(opt)
    assert opt.lr == 0.1


def test_lambda_fn_checked_every_epoch():
    opt = optimizer(0.1)
    schedule = LambdaLR(opt, lambda e: 1.0 if e < 2 else float("inf"))
    schedule.step()
    with pytest.raises(ValueError, match=msg("fn(2)", "finite number", "got inf")):
        schedule.step()
    assert opt.lr == 0.1


@pytest.mark.parametrize("metric, pattern", [
    (None, "needs the monitored metric"),
    ("0.5", msg("metric", "real number", "str '0.5'")),
    (True, msg("metric", "real number", "bool True")),
])
def test_reduce_on_plateau_needs_a_real_metric(metric, pattern):
    schedule = ReduceLROnPlateau(optimizer())
    with pytest.raises(TypeError, match=pattern):
        schedule.step(metric)
    assert schedule.epoch == 0


# ================================================================ fit loop
def test_schedules_drive_the_fit_loop():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)
    model = bp.Model([bp.Dense(2, 4, "tanh"), bp.Dense(4, 2)], seed=0)
    opt = bp.SGD(model, lr=0.1)
    history = model.fit(X, y, loss="cross_entropy", optimizer=opt, epochs=5, verbose=0,
                        callbacks=[LearningRateScheduler(StepLR(opt, 2, 0.5))])
    np.testing.assert_allclose(history["lr"], [0.1, 0.1, 0.05, 0.05, 0.025])

    opt = bp.Adam(model, lr=0.01)
    plateau = ReduceLROnPlateau(opt, mode="max", patience=0, threshold=0.0, factor=0.5)
    history = model.fit(X, y, loss="cross_entropy", optimizer=opt, epochs=3, verbose=0,
                        callbacks=[LearningRateScheduler(plateau, monitor="loss")])
    # the training loss goes down: in "max" mode every epoch after the first is bad
    np.testing.assert_allclose(history["lr"], [0.01, 0.01, 0.005])
