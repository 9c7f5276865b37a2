"""``dinosim evaluate``: play one saved policy of a run on seeded episodes and report it (see :func:`evaluate`).

Bad input (no run, a stage the run does not have, no model, a damaged file) raises
:class:`~dinosim.errors.DinosimError` with one line before torch, SB3 or MuJoCo is imported. With ``--model auto``
a damaged pair is passed over for the next intact one (best, final, then checkpoints newest first), each skip told
on stderr (:func:`dinosim.run_integrity.intact_policy`); a named ``--model`` that is damaged is an error.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dinosim.errors import DinosimError
from dinosim.run_integrity import check_policy_pair, intact_policy
from dinosim.runfolder import RUN_FILE, select_policy, stage_dir
from dinosim.training.state import read_run_file_checked
from dinosim.training.stop_signals import EXIT_OK


def evaluate(run_dir: Path, stage: Optional[int], episodes: int, deterministic: Optional[bool],
             gif: Optional[Path] = None, gif_width: int = 320, gif_every: int = 1, model: str = "auto",
             seed: Optional[int] = None, n_envs: int = 8) -> int:
    """Evaluate one policy of a run; print return ± std, length, success rate (with its 95 % Wilson bounds), the
    mean per-episode sum of every reward component, and the episode seeds used.

    ``model``: ``best``, ``final``, a global step of a checkpoint, or ``auto`` (best, else final, else the newest
    checkpoint; the first of them that is intact: a damaged pair is skipped with a ``warning:`` line on stderr).
    ``seed``: episode k uses reset seed ``seed + k``; default the run's held-out test stream
    (:func:`dinosim.training.evaluation.heldout_seeds`), which neither training nor the gates use. ``n_envs``
    episodes run side by side; deterministic results do not depend on it. ``deterministic``: the mean action
    (True) or sampled actions (False, noise seeded with the first episode seed); None: as the stage's gates judged
    it (``curriculum.eval_deterministic`` of the run's config). ``gif``: also render (up to 3
    episodes) to .gif/.mp4, ``gif_width`` pixels wide, every ``gif_every``-th step."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists():
        raise DinosimError(f"{run_dir}: not a dinosim run folder (no {RUN_FILE})")
    if episodes < 1:
        raise DinosimError(f"--episodes must be at least 1, got {episodes}")
    run_data = read_run_file_checked(run_dir)
    stages = [int(s) for s in run_data["config"]["run"]["stages"]]
    if stage is not None and stage not in stages:
        raise DinosimError(f"{run_dir}: stage {stage} is not part of this run (stages: {stages})")
    model_path, vecnorm_path, stage = _choose_policy(run_dir, stages, stage, model)
    if gif is not None:
        from dinosim.tracking.render import check_video_path, ensure_gl_backend

        check_video_path(gif)
        ensure_gl_backend()  # before mujoco is imported: EGL, else OSMesa, else a one-line error
    options = EvalOptions(episodes, deterministic, seed, n_envs, gif, gif_width, gif_every)
    return _evaluate_model(run_data, int(stage), model_path, vecnorm_path, options)


def _choose_policy(run_dir: Path, stages: list[int], stage: Optional[int], model: str
                   ) -> tuple[Path, Optional[Path], int]:
    """(model, vecnormalize, stage) to evaluate: ``model`` of ``stage``, else of the newest stage that has one.
    A named ``model`` must be intact (one-line error naming the damage); ``auto`` passes over damaged pairs (and
    stages with no intact pair) to the next intact one, telling each skip on stderr."""
    damage: list[str] = []
    for candidate in ([stage] if stage is not None else sorted(stages, reverse=True)):
        folder = stage_dir(run_dir, candidate)
        if model != "auto":
            model_path, vecnorm_path = select_policy(folder, model)
            if model_path is not None:
                check_policy_pair(model_path, vecnorm_path)  # before unpickling: a damaged file in one line
                return model_path, vecnorm_path, candidate
            continue
        model_path, vecnorm_path, skipped = intact_policy(folder)
        for which, reason in skipped:
            what = f"checkpoint {which}" if which.isdigit() else f"{which} model"
            print(f"warning: stage {candidate}: skipping the damaged {what}: {reason}", file=sys.stderr, flush=True)
        damage += [reason for _, reason in skipped]
        if model_path is not None:
            return model_path, vecnorm_path, candidate
    where = f"stage {stage}" if stage is not None else "any stage"
    if damage:
        raise DinosimError(f"{run_dir}: no intact model for {where} (every one is damaged; first: {damage[0]})")
    raise DinosimError(f"{run_dir}: no {model if model != 'auto' else 'trained'} model for {where}")


@dataclass(frozen=True)
class EvalOptions:
    episodes: int
    deterministic: Optional[bool]
    seed: Optional[int]
    n_envs: int
    gif: Optional[Path]
    gif_width: int
    gif_every: int


def _evaluate_model(run_data: dict, stage: int, model_path: Path, vecnorm_path: Optional[Path],
                    options: EvalOptions) -> int:
    import pickle

    from dinosim.config.resolve import RunConfig
    from dinosim.config.settings import wilson_lower_bound
    from dinosim.envs import make_env
    from dinosim.run_integrity import loading
    from dinosim.training.builders import configure_torch_threads, load_model
    from dinosim.training.evaluation import (
        action_noise_seeded,
        format_report,
        heldout_seeds,
        model_policy,
        obs_normalizer,
        run_seeded_episodes,
    )
    from dinosim.training.outcomes import format_outcomes

    configure_torch_threads()
    config = RunConfig.from_dict(run_data["config"])
    if options.deterministic is None:
        options = dataclasses.replace(options, deterministic=config.curriculum(stage).eval_deterministic)
    env_kwargs = config.env_kwargs(stage)
    vecnorm = None
    if vecnorm_path is not None:
        with loading(vecnorm_path, "normalisation file"), open(vecnorm_path, "rb") as fh:
            vecnorm = pickle.load(fh)
    model = load_model(config.algorithm, model_path)
    seeds = (heldout_seeds(config.seed, options.episodes) if options.seed is None
             else range(options.seed, options.seed + options.episodes))
    envs = [make_env(config.species, env_kwargs) for _ in range(max(1, min(options.n_envs, options.episodes)))]
    with action_noise_seeded(None if options.deterministic else seeds.start):
        result = run_seeded_episodes(model_policy(model, options.deterministic), envs, seeds, obs_normalizer(vecnorm))
    for env in envs:
        env.close()
    mode = "deterministic" if options.deterministic else "stochastic"
    print(format_report(result, f"{config.species} stage {stage}: {model_path} ({mode})"))
    stats = result.stats()
    if stats.successes is not None:
        upper = 1.0 - wilson_lower_bound(stats.episodes - stats.successes, stats.episodes, 0.975)
        print(f"  success 95 % CI  [{wilson_lower_bound(stats.successes, stats.episodes, 0.975):.3f}, {upper:.3f}]"
              f" (Wilson, {stats.successes}/{stats.episodes})")
    for line in format_outcomes(result):
        print(line)
    print(f"  episode seeds    {seeds.start} .. {seeds.stop - 1}")
    if options.gif is not None:
        from dinosim.tracking.render import render_episodes

        rendered = render_episodes(model, vecnorm,
                                   lambda: make_env(config.species, env_kwargs, render_mode="rgb_array"), options.gif,
                                   episodes=min(options.episodes, 3), deterministic=options.deterministic,
                                   seed=seeds.start, width=options.gif_width, frame_every=options.gif_every)
        print(f"wrote {rendered.frames} frames to {options.gif}")
    return EXIT_OK
