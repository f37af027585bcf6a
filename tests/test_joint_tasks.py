"""scripts/joint_tasks.py: a run's joint-slot tasks without training, as the training run draws them."""

from __future__ import annotations

from mlsh.meta import MetaLearner
from tests.conftest import load_script, small_config


def test_joint_tasks_are_those_a_training_run_trains_its_sub_policies_on() -> None:
    module = load_script("joint_tasks")
    cfg = small_config(num_slots=3, warmup_iters=2, joint_iters=1, stagger=True)
    previewed = module.joint_tasks(cfg, iterations=7)
    learner = MetaLearner(cfg)
    trained = []
    for _ in range(7):
        learner.train_iteration()
        ran = learner.iteration - 1
        trained += [learner.tasks[s] for s in range(3) if learner.schedule.in_joint_phase(s, ran)]
    assert previewed == trained and len(previewed) == 7  # staggered: one joint slot per iteration


def test_balanced_sampling_evens_out_the_joint_tasks() -> None:
    module = load_script("joint_tasks")
    cfg = small_config(num_slots=3, warmup_iters=2, joint_iters=1, stagger=True)
    cfg.mlsh.task_sampling = "balanced"
    tasks = module.joint_tasks(cfg, iterations=12)
    assert sorted(tasks) == [0] * 6 + [1] * 6
