"""Value and combination rules: every case of issue 12 is one `error:` line, exit 2, before a run folder exists;
the env constructors apply the same rules; every key has a rule; the dry run shows the whole run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dinosim.config.algo_rules import ALGORITHM_RULES, POLICY_RULES
from dinosim.config.curriculum_rules import CURRICULUM_RULES
from dinosim.config.env_rules import env_rules
from dinosim.config.resolve import resolve_run
from dinosim.config.schema import algorithm_keys, curriculum_keys, env_keys
from dinosim.errors import ConfigError, DinosimError
from dinosim.species import SPECIES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with its runs folder in ``tmp_path/runs``; reports heavy imports on stderr."""
    probe = ("import sys\nsys.argv = ['dinosim'] + sys.argv[1:]\ntry:\n    from dinosim.cli import main\n    main()\n"
             "except SystemExit:\n    heavy = [m for m in ('torch', 'stable_baselines3', 'mujoco', 'wandb') "
             "if m in sys.modules]\n    print('HEAVY:' + ','.join(heavy), file=sys.stderr)\n    raise\n")
    env = {"DINOSIM_RUNS_DIR": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env=env)


ISSUE_CASES = [
    (["train", "--stage", "1", "--override", "env.task=fly"], "not a task of velociraptor"),
    (["train", "--species", "velociraptor", "--stage", "3", "--override", "env.task=bite"], "not a task"),
    (["train", "--stage", "1", "--override", "env.max_episode_steps=0"], "env.max_episode_steps = 0"),
    (["train", "--stage", "1", "--override", "env.prey_distance_range=[1]"], "[min, max]"),
    (["train", "--stage", "1", "--override", "env.prey_distance_range=[2, 1]"], "min <= max"),
    (["train", "--stage", "1", "--seed", "-1"], "--seed -1"),
    (["train", "--stage", "1", "--override", "ppo.gamma=1.5"], "ppo.gamma = 1.5 must be in (0, 1]"),
    (["train", "--stage", "1", "--override", "ppo.learning_rate=-1"], "ppo.learning_rate"),
    (["train", "--stage", "1", "--override", "env.push_force=-1"], "env.push_force"),
    (["train", "--stage", "1", "--override", "ppo.policy_kwargs.net_arch=[-5]"], "layer width -5"),
    (["train", "--stage", "1", "--algorithm", "sac", "--override", "sac.ent_coef=banana"], "sac.ent_coef"),
    (["train", "--stage", "1", "--algorithm", "sac", "--override", 'sac.train_freq=[4,"minute"]'], "train_freq"),
    (["train", "--stage", "1", "--override", "ppo.learning_rate=3e-05"], "the schedule would rise"),
    (["train", "--stage", "1", "--algorithm", "sac", "--timesteps", "5000"], "no gradient step would run"),
    (["train", "--stage", "1", "--timesteps", "1000"], "below one PPO rollout"),
    (["train", "--stage", "1", "--name", "a/../b"], "--name 'a/../b'"),
    (["train", "--stage", "1", "--seed", "7", "--override", "seed=3"], "both set the seed"),
    (["train", "--stage", "1", "--n-envs", "300"], "--n-envs 300"),
    (["train", "--stage", "1", "--override", "env.fall_penalty=5"], "configure it negative"),
    (["train", "--stage", "1", "--override", "ppo.policy_kwargs.optimizer_kwargs={'foo': 1}"], "torch.optim.Adam"),
    (["train", "--stage", "1", "--override", "ppo.policy_kwargs.squash_output=true"], "squash_output"),
    (["train", "--stage", "1", "--override", "curriculum.min_success_rate=0.5"], "reports no success"),
    (["train", "--stage", "1", "--override", "curriculum.min_avg_episode_length=600"], "could never pass"),
    (["train", "--stage", "3", "--override", "env.success_hold_steps=2000"], "no episode could last"),
    (["train", "--stage", "1", "--algorithm", "sac", "--override", "sac.optimize_memory_usage=true"],
     "handle_timeout_termination"),
    (["train", "--stage", "1", "--algorithm", "sac", "--override", 'sac.train_freq=[1, "episode"]'], "one env"),
    (["train", "--stage", "1", "--algorithm", "tqc", "--override", "tqc.top_quantiles_to_drop_per_net=25"],
     "no quantile would be left"),
    (["train", "--stage", "1", "--run-dir", "x", "--name", "y"], "no effect with --run-dir"),
    (["train", "--stage", "1", "--timesteps", "10000"], "the stage would never evaluate"),
    (["audit", "--species", "trex", "--stage", "1", "--seeds", "0,-1"], "seeds must be >= 0"),
    # keys a run would silently ignore: PPO-only [curriculum] keys, [sac] keys crossq has no argument for, warm-up
    # values without their warm-up, warm-start keys on a stage that is not warm-started
    (["train", "--stage", "2", "--algorithm", "sac", "--override", "curriculum.warmup_clip_range=0.1"],
     "which --algorithm sac does not read (PPO only"),
    (["train", "--stage", "2", "--algorithm", "tqc", "--override", "2.curriculum.warmup_ent_coef=0.01"],
     "curriculum.warmup_ent_coef, which --algorithm tqc does not read"),
    (["train", "--stage", "3", "--algorithm", "crossq", "--override", "curriculum.critic_warmup_timesteps=100"],
     "does not read"),
    (["train", "--stage", "1", "--algorithm", "crossq", "--override", "sac.tau=0.01"], "crossq constructor has no tau"),
    (["train", "--stage", "1", "--override", "curriculum.warmup_clip_range=0.1"], "warmup_timesteps is 0"),
    (["train", "--stage", "1", "--override", "curriculum.warmup_timesteps=1000"], "neither"),
    (["train", "--stage", "1", "--override", "curriculum.critic_warmup_timesteps=5000"],
     "does not start from a previous policy"),
    (["curriculum", "--stages", "2-3", "--override", "2.curriculum.obs_norm_count=100"], "without --init-from"),
    (["train", "--stage", "1", "--algorithm", "sac", "--override", "sac.lr_schedule=cosine"],
     "sac.learning_rate_end is not set"),
    (["train", "--stage", "1", "--algorithm", "sac", "--override", "sac.lr_decay_timesteps=1000"],
     "sac.learning_rate_end is not set"),
    (["train", "--stage", "1", "--override", "ppo.learning_rate_end=1e-5", "ppo.lr_decay_timesteps=0"],
     "ppo.lr_decay_timesteps = 0 must be in [1,"),
    (["train", "--stage", "1", "--override", "ppo.sde_sample_freq=4"], "only with ppo.use_sde = true"),
    (["train", "--stage", "1", "--algorithm", "tqc", "--override", "sac.ent_coef=0.1", "tqc.target_entropy=-3"],
     "tqc.ent_coef = 0.1 is fixed"),
    (["train", "--stage", "1", "--override", "ppo.policy_kwargs.use_expln=true"],
     "ppo.policy_kwargs.use_expln=true' has no effect"),
    (["curriculum", "--stages", "1,3", "--override", "3.ppo.policy_kwargs.net_arch=[64]"],
     "override '3.ppo.policy_kwargs.net_arch=[64]': stage 3: ppo.policy_kwargs.net_arch differs from stage 1's"),
    # curriculum.warm_start_stage: an earlier stage the run trains, or 0; its network must fit
    (["train", "--stage", "3", "--override", "curriculum.warm_start_stage=3"], "must be an earlier stage (1-2) or 0"),
    (["train", "--stage", "1", "--override", "curriculum.warm_start_stage=1"], "stage 1 has no earlier stage"),
    (["curriculum", "--stages", "2,3", "--override", "3.curriculum.warm_start_stage=1"],
     "this run does not train stage 1 before stage 3 (stages 2, 3)"),
    (["train", "--stage", "3", "--override", "curriculum.warm_start_stage=1"], "it is the first stage this command"),
    (["curriculum", "--override", "3.curriculum.warm_start_stage=0", "3.curriculum.critic_warmup_timesteps=100"],
     "or curriculum.warm_start_stage = 0"),
    (["curriculum", "--override", "2.curriculum.warm_start_stage=0", "2.ppo.policy_kwargs.net_arch=[64]",
      "3.ppo.policy_kwargs.net_arch=[64]", "3.curriculum.warm_start_stage=1"],
     "stage 3: ppo.policy_kwargs.net_arch differs from stage 1's ([64] here, [256, 256] in the policy"),
    (["curriculum", "--algorithm", "sac", "--override", "2.sac.use_sde=true"], "sac.use_sde differs"),
    # start-of-stage phases longer than the budget: the stage would end inside them (the actor never trains)
    (["curriculum", "--stages", "1-2", "--timesteps", "20000", "--override", "curriculum.eval_freq=5000"],
     "stage 2: curriculum.critic_warmup_timesteps = 25000 is not below the stage's budget of 20000 steps"),
    (["train", "--species", "trex", "--stage", "2", "--timesteps", "40000", "--override", "curriculum.eval_freq=5000"],
     "curriculum.warmup_timesteps = 100000 is above the stage's budget of 40000 steps"),
    (["curriculum", "--species", "trex", "--stages", "1-2", "--override", "2.curriculum.ramp_timesteps=7000000"],
     "override '2.curriculum.ramp_timesteps=7000000': stage 2: curriculum.ramp_timesteps = 7000000 is above the "
     "stage's budget of 6000000 steps"),
    # the anchor towards the start policy: a warm-start key, PPO only, its decay timed inside the stage
    (["train", "--stage", "1", "--override", "curriculum.anchor_coef=0.1"], "does not start from a previous policy"),
    (["train", "--stage", "2", "--algorithm", "sac", "--override", "curriculum.anchor_coef=0.1"],
     "curriculum.anchor_coef, which --algorithm sac does not read (PPO only"),
    (["curriculum", "--stages", "1-2", "--override", "2.curriculum.anchor_timesteps=1000"],
     "override '2.curriculum.anchor_timesteps=1000' has no effect in stage 2: its curriculum.anchor_coef is 0"),
    (["curriculum", "--stages", "1-2", "--override", "2.curriculum.anchor_coef=-0.5"], "curriculum.anchor_coef = -0.5"),
    (["curriculum", "--stages", "1-2", "--override", "2.curriculum.anchor_coef=0.1",
      "2.curriculum.anchor_timesteps=7000000"],
     "stage 2: curriculum.anchor_timesteps = 7000000 is above the stage's budget of 6000000 steps: the pull towards "
     "the start policy would not have decayed to 0"),
    # [env] values the env ignores: target keys on a task without a target, push timing without pushes
    (["train", "--stage", "1", "--override", "env.strike_bonus=5"],
     "override 'env.strike_bonus=5' has no effect: task 'balance' has no target (only 'strike' places one)"),
    (["train", "--stage", "3", "--override", "env.push_interval=2"],
     "override 'env.push_interval=2' has no effect: env.push_force is 0 (no pushes)"),
    # envs an evaluation would never step (a stage-file value is lowered instead, with a note)
    (["train", "--stage", "1", "--override", "curriculum.eval_envs=64"],
     "override 'curriculum.eval_envs=64': stage 1: curriculum.eval_envs = 64 would build 14 envs that are never "
     "used: an evaluation plays at most 50 episodes (eval_episodes 20, gate_episodes 50), one per env at a time"),
    # a food the env could not place as far as asked (before: 287 of 300 foods were closer than 3 m)
    (["train", "--species", "brachiosaurus", "--stage", "3", "--override", "env.food_min_offset=3.0"],
     "override 'env.food_min_offset=3.0': stage 3: env.food_min_offset = 3.0 is above 1.63 m, the distance from the "
     "resting mouth that 1 in 5 food poses reach with env.food_pose_range = 0.8 and env.action_scale = 0.5"),
    (["train", "--species", "brachiosaurus", "--stage", "3", "--override", "env.action_scale=0.2"],
     "override 'env.action_scale=0.2': stage 3: env.food_min_offset = 1.0 is above 0.65 m,"),
    (["train", "--stage", "1", "--override", "env.max_episode_steps=60"],
     "override 'env.max_episode_steps=60': stage 1: curriculum.min_avg_episode_length"),
]


@pytest.mark.parametrize("args, words", ISSUE_CASES, ids=[" ".join(a[2:]) for a, _ in ISSUE_CASES])
def test_real_run_refuses_before_a_run_folder_exists(tmp_path, args, words):
    result = cli(tmp_path, *args)  # no --dry-run: the real run must refuse as early
    lines = [line for line in result.stderr.splitlines() if not line.startswith("HEAVY:")]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.stderr
    assert result.stderr.rstrip().endswith("HEAVY:"), result.stderr  # nothing heavy imported
    assert not (tmp_path / "runs").exists() and not (ROOT / "x").exists()


def test_env_constructor_applies_the_same_rules():
    from dinosim.envs import make_env

    with pytest.raises(ConfigError) as dry:
        resolve_run("trex", "ppo", (3,), ["env.prey_distance_range=[5.0, 4.0]"])
    with pytest.raises(ValueError) as built:
        make_env("trex", {"task": "bite", "prey_distance_range": [5.0, 4.0]})
    assert str(built.value) in str(dry.value)
    with pytest.raises(ValueError, match="not a task of trex"):
        make_env("trex", {"task": "fly"})


@pytest.mark.parametrize("species", sorted(SPECIES))
def test_every_key_has_a_rule(species):
    assert set(env_keys(species)) <= set(env_rules(species)), set(env_keys(species)) - set(env_rules(species))
    assert set(curriculum_keys()) == set(CURRICULUM_RULES)
    for algorithm, rules in ALGORITHM_RULES.items():
        keys = algorithm_keys(algorithm)
        missing = set(keys) - set(rules) - {"policy_kwargs"}
        assert not missing, (algorithm, missing)
        policy_missing = set(keys["policy_kwargs"].children) - set(POLICY_RULES[algorithm])
        assert not policy_missing, (algorithm, policy_missing)


def test_table_override_merges_and_none_removes_a_key():
    config = resolve_run("velociraptor", "ppo", (1,), ["ppo.policy_kwargs={'net_arch': [64]}"])
    assert config.section(1, "ppo")["policy_kwargs"] == {"net_arch": [64], "log_std_init": -0.5}
    config = resolve_run("velociraptor", "ppo", (1,), ["ppo.policy_kwargs.log_std_init=None"])
    assert config.section(1, "ppo")["policy_kwargs"] == {"net_arch": [256, 256]}
    config = resolve_run("velociraptor", "ppo", (1,), ["ppo.learning_rate=3e-5", "ppo.learning_rate_end=None"])
    assert config.schedule(1).learning_rate_end is None


def test_errors_name_the_file_line_of_a_bad_committed_value(tmp_path):
    import shutil

    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    path = tmp_path / "configs" / "velociraptor" / "stage1_balance.toml"
    path.write_text(path.read_text().replace("gamma = 0.99", "gamma = 1.01", 1))
    with pytest.raises(ConfigError, match=r"stage1_balance.toml:\d+: stage 1: ppo.gamma = 1.01"):
        resolve_run("velociraptor", "ppo", (1,), config_dir=tmp_path / "configs")


def _fake_run(folder: Path, species: str) -> None:
    (folder / "stage1" / "best").mkdir(parents=True)
    import zipfile

    with zipfile.ZipFile(folder / "stage1" / "best" / "model.zip", "w") as archive:  # --init-from checks the archive
        archive.writestr("data", "{}")
    config = resolve_run(species, "ppo", (1,)).to_dict()
    (folder / "run.json").write_text(json.dumps({"command": "train", "config": config}))


def test_dry_run_shows_the_whole_run_and_checks_the_warm_start_species(tmp_path):
    _fake_run(tmp_path / "raptor", "velociraptor")
    result = cli(tmp_path, "curriculum", "--stages", "1-2", "--timesteps", "20000", "--name", "demo",
                 "--init-from", str(tmp_path / "raptor"), "--strict-gates", "--seed", "5", "--dry-run",
                 "--override", "curriculum.eval_freq=5000", "2.curriculum.critic_warmup_timesteps=5000")
    assert result.returncode == 0, result.stderr
    run = tomllib.loads(result.stdout)["run"]
    assert run["budget"] == {"stage1": 20000, "stage2": 20000} and run["timesteps"] == 20000
    assert run["run_dir"].startswith(str(tmp_path / "runs" / "velociraptor")) and run["run_dir"].endswith("-demo")
    assert run["init_model"] == str(tmp_path / "raptor" / "stage1" / "best" / "model.zip")
    assert run["strict_gates"] is True and run["seed"] == 5 and run["name"] == "demo"
    assert run["warm_start"] == {"stage1": "--init-from", "stage2": "stage 1"}
    assert not (tmp_path / "runs").exists()
    tree = cli(tmp_path, "curriculum", "--dry-run", "--override", "2.curriculum.warm_start_stage=0",
               "3.curriculum.warm_start_stage=1")
    assert tree.returncode == 0, tree.stderr
    assert tomllib.loads(tree.stdout)["run"]["warm_start"] == {"stage1": "scratch", "stage2": "scratch",
                                                               "stage3": "stage 1"}
    other = cli(tmp_path, "train", "--species", "trex", "--stage", "1", "--init-from", str(tmp_path / "raptor"))
    assert other.returncode == 2 and "holds a velociraptor policy, this run trains a trex" in other.stderr
    smaller = cli(tmp_path, "train", "--stage", "2", "--init-from", str(tmp_path / "raptor"), "--override",
                  "ppo.policy_kwargs.net_arch=[64]")  # the weights of a [256, 256] policy do not fit
    assert smaller.returncode == 2 and "ppo.policy_kwargs.net_arch differs ([64] here, [256, 256]" in smaller.stderr
    assert not (tmp_path / "runs").exists()


def test_a_request_built_in_code_gets_the_budget_checks(tmp_path):
    """The budget checks live in preflight, where every run starts: a RunRequest built in code (not through the
    CLI) with a budget below one rollout or below eval_freq is refused before its run folder exists."""
    from dinosim.training.preflight import preflight
    from dinosim.training.request import RunRequest
    from dinosim.training.runner import run

    config = resolve_run("velociraptor", "ppo", (1, 2), ["curriculum.eval_freq=5000", "2.curriculum.eval_freq=9000",
                                                         "2.curriculum.critic_warmup_timesteps=1000"], n_envs=2)
    for timesteps, words in ((100, "below one PPO rollout (ppo.n_steps * n_envs = 4096)"),
                             (True, "must be an integer"),
                             (8192, "override '2.curriculum.eval_freq=9000': stage 2: curriculum.eval_freq = 9000")):
        request = RunRequest(command="curriculum", config=config, timesteps=timesteps, run_dir=tmp_path / "run")
        with pytest.raises(ConfigError if timesteps is not True else DinosimError, match=re.escape(words)):
            preflight(request)
        with pytest.raises(DinosimError, match=re.escape(words)):
            run(request)
        assert not (tmp_path / "run").exists()
    assert preflight(RunRequest(command="curriculum", config=config, timesteps=9000)).budgets == {1: 9000, 2: 9000}


def test_keys_the_algorithm_does_not_read_are_left_out_and_listed(tmp_path):
    result = cli(tmp_path, "train", "--species", "trex", "--stage", "2", "--algorithm", "crossq", "--dry-run")
    assert result.returncode == 0, result.stderr
    stage = tomllib.loads(result.stdout)["stage2"]
    assert "warmup_clip_range" not in stage["curriculum"] and "warmup_timesteps" not in stage["curriculum"]
    assert "tau" not in stage["sac"] and stage["crossq"]["policy_delay"] == 3
    note = [line for line in result.stdout.splitlines() if line.startswith("# note")]
    assert note == ["# note: stage 2: not read by --algorithm crossq, left out: curriculum.warmup_timesteps, "
                    "curriculum.warmup_clip_range, sac.tau; curriculum.ramp_timesteps has no effect in stage 2: it "
                    "does not start from a previous policy (the first stage this command runs without --init-from, "
                    "or curriculum.warm_start_stage = 0)"]
    config = resolve_run("trex", "ppo", (2,))  # PPO reads them all
    assert config.unread == () and config.curriculum(2).warmup_clip_range == 0.05
    ok = cli(tmp_path, "curriculum", "--stages", "1-2", "--override", "curriculum.critic_warmup_timesteps=100",
             "--dry-run")  # stage 2 is warm-started from stage 1: the global override takes effect there
    assert ok.returncode == 0, ok.stderr


def test_the_real_run_tells_what_the_dry_run_notes(tmp_path, monkeypatch, capsys):
    """Stage-file values that are left out, lowered or without effect: one comment per stage in the dry run, the
    same line on the real run's stderr before it starts (before: the real run said nothing)."""
    import dinosim.training.runner as runner
    from dinosim.training.preflight import preflight
    from dinosim.training.request import RunRequest

    overrides = ["curriculum.eval_episodes=5", "curriculum.gate_episodes=6", "3.curriculum.warm_start_stage=2"]
    config = resolve_run("trex", "crossq", (2, 3), overrides)  # the bite file starts from stage 1: from 2 here
    assert config.curriculum(2).eval_envs == 6 and config.to_dict()["stage3"]["curriculum"]["eval_envs"] == 6
    request = RunRequest(command="curriculum", config=config, run_dir=tmp_path / "run")
    notes = preflight(request).notes
    assert notes == (
        "stage 2: not read by --algorithm crossq, left out: curriculum.warmup_timesteps, "
        "curriculum.warmup_clip_range, sac.tau; curriculum.eval_envs = 8 lowered to 6: an evaluation plays at most 6 "
        "episodes (eval_episodes 5, gate_episodes 6), one per env at a time; curriculum.ramp_timesteps has no effect "
        "in stage 2: it does not start from a previous policy (the first stage this command runs without "
        "--init-from, or curriculum.warm_start_stage = 0)",
        "stage 3: not read by --algorithm crossq, left out: curriculum.critic_warmup_timesteps, sac.tau; "
        "curriculum.eval_envs = 8 lowered to 6: an evaluation plays at most 6 episodes (eval_episodes 5, "
        "gate_episodes 6), one per env at a time")  # stage 3 is warm-started: no note on its warm-start keys

    def stop(device: str) -> None:  # the first step after the notes: stop before anything is created
        raise DinosimError("stopped for the test")

    monkeypatch.setattr(runner, "check_device", stop)
    with pytest.raises(DinosimError, match="stopped for the test"):
        runner.run(request)
    assert capsys.readouterr().err.splitlines() == [f"note: {note}" for note in notes]
    dry = cli(tmp_path, "curriculum", "--species", "trex", "--stages", "2-3", "--algorithm", "crossq", "--dry-run",
              "--override", *overrides)
    assert [line for line in dry.stdout.splitlines() if line.startswith("#")] == [f"# note: {n}" for n in notes]
    assert not (tmp_path / "run").exists()
