"""Phase keys of the Bread keys: each input that changes a phase's output is in that phase's
key, and in no other (DESIGN §3.3). Keys are computed by a real Baker on a real repository."""

import pytest
import yaml

from bgit.config import parse_config
from bgit.pipeline import keys
from bgit.pipeline.bake import Baker
from bgit.repo import Repository
from evaluate_helpers import make_base_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_base_model(root / "a", seed=0), make_base_model(root / "b", seed=1)


@pytest.fixture
def repo(tmp_path):
    repo = Repository.init(tmp_path / "keys", example={})
    (repo.root / "ask.txt").write_text("Ask ${numq} things about: ${prompt_u}\n")
    return repo


def base_config(model) -> dict:
    return {"MODEL": {"base": str(model)},
            "PROMPT": {"teacher": {"messages": [{"role": "system", "content": "Be loud."}]},
                       "student": {"messages": [{"role": "system", "content": "Be."}]}},
            "TARGET": {"name": "t", "generators": [{"type": "hardcoded", "stims": ["a", "b"]},
                                                   {"type": "oneshot_qs", "numq": 2, "template_path": "ask.txt"}]},
            "BAKE": {"name": "b"}}


def phase_keys(repo, data: dict) -> tuple[str, str, str]:
    config = parse_config(yaml.safe_dump(data), str(repo.root / "input.yml"))
    runner = Baker(repo, config).runner
    target = config.targets[0]
    stim = runner.stim_key(target).key
    rollout = keys.rollout_key(config, target, stim, runner.parent.info.fingerprint,
                               sampler=runner.parent.sampler_fingerprint(target)).key
    train = keys.train_key(config, {"t": rollout}, runner.parent.info.fingerprint,
                           student=runner.parent.student_fingerprint()).key
    return stim, rollout, train


def changed(repo, model, edit) -> tuple[bool, bool, bool]:
    """Which of (stim, rollout, train) keys ``edit(config dict)`` changes on its own."""
    data = base_config(model)
    before = phase_keys(repo, data)
    edit(data)
    after = phase_keys(repo, data)
    # rollout's key holds stim's and train's holds rollout's: compare each phase's own inputs
    return before[0] != after[0], before[1] != after[1], before[2] != after[2]


def generator(index):
    return lambda data: data["TARGET"]["generators"][index]


def test_rollout_settings_are_in_the_rollout_key_and_not_the_stims(repo, models):
    model, other = models
    edits = {
        "a hardcoded generator's max_tokens": lambda d: generator(0)(d).update(max_tokens=5),
        "rollout_with_conditioned": lambda d: generator(0)(d).update(rollout_with_conditioned=True),
        "extra_kwargs": lambda d: d["TARGET"].update(extra_kwargs={"top_p": 0.5}),
        "max_concurrency": lambda d: d["TARGET"].update(max_concurrency=4),
        "model_name": lambda d: d["TARGET"].update(model_name=str(other)),
    }
    for name, edit in edits.items():
        assert changed(repo, model, edit) == (False, True, True), name


def test_the_student_prompt_is_in_the_rollout_key_only_for_conditioned_generators(repo, models):
    model, _ = models

    def student(data):
        data["PROMPT"]["student"]["messages"][0]["content"] = "Be quiet."

    assert changed(repo, model, student)[:2] == (False, False)

    data = base_config(model)
    generator(0)(data)["rollout_with_conditioned"] = True
    before = phase_keys(repo, data)
    student(data)
    after = phase_keys(repo, data)
    assert after[0] == before[0] and after[1] != before[1]


def test_a_writers_max_tokens_and_its_template_file_are_stim_inputs(repo, models):
    model, _ = models
    assert changed(repo, model, lambda d: generator(1)(d).update(max_tokens=64)) == (True, True, True)
    before = phase_keys(repo, base_config(model))
    (repo.root / "ask.txt").write_text("Write ${numq} questions on: ${prompt_u}\n")
    assert phase_keys(repo, base_config(model))[0] != before[0]


def test_the_distill_student_is_in_the_train_key_only(repo, models):
    model, other = models
    edit = lambda d: d["BAKE"].update(model={"student_model_path": str(other)})  # noqa: E731
    assert changed(repo, model, edit) == (False, False, True)
    assert changed(repo, model, lambda d: d["TARGET"].update(model_name=str(model))) == (False, False, False)


def test_new_weights_of_the_student_or_the_sampler_at_the_same_path_change_their_keys(repo, models, tmp_path):
    model, _ = models
    moving = make_base_model(tmp_path / "moving", seed=3)
    data = base_config(model)
    data["TARGET"]["model_name"] = str(moving)
    data["BAKE"]["model"] = {"student_model_path": str(moving)}
    before = phase_keys(repo, data)
    make_base_model(moving, seed=4)
    after = phase_keys(repo, data)
    assert after[0] == before[0] and after[1] != before[1]
    data["TARGET"].pop("model_name")
    before = phase_keys(repo, data)
    make_base_model(moving, seed=5)
    after = phase_keys(repo, data)
    assert after[:2] == before[:2] and after[2] != before[2]
