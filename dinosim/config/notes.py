"""What a run will do differently from what its configuration says, told once per stage (standard library only).

Resolution leaves out stage-file values the algorithm does not read (:func:`dinosim.config.checks.drop_unread`)
and caps ``curriculum.eval_envs`` at the envs an evaluation can use (:func:`cap_eval_envs`); other values stay
but have no effect (:meth:`dinosim.config.resolve.RunConfig.inert`: a warm-start key on a stage that is not
warm-started, a warm-up value without its warm-up, a schedule shape without its end value, ...). Overrides of
either kind are refused where they are resolved; stage-file values are not (the committed files serve every
algorithm, a whole curriculum and a single stage), so :func:`stage_note` says what happens to them: the dry run
prints the notes as comments, the real run as one ``note:`` line per stage on stderr before it starts.
"""

from __future__ import annotations

from typing import Any, Sequence

from dinosim.config.curriculum_rules import eval_envs_cap
from dinosim.config.overrides import Override
from dinosim.errors import ConfigError


def cap_eval_envs(curriculum: dict[str, Any], stage: int, applied: Sequence[Override]) -> list[str]:
    """Lower ``curriculum.eval_envs`` to the most episodes an evaluation of the stage plays (the envs above it
    would be built and never stepped); ``[]`` or the note saying so. An override that set it that high is refused
    (ConfigError): the user asked for envs the stage cannot use."""
    cap = eval_envs_cap(curriculum)
    if cap is None:
        return []
    most, why = cap
    setters = [o for o in applied if o.dotted == "curriculum.eval_envs"]
    if setters:
        envs = curriculum["eval_envs"]
        raise ConfigError(f"override {setters[-1].raw!r}: stage {stage}: curriculum.eval_envs = {envs} would build "
                          f"{envs - most} envs that are never used: {why}; set at most {most}")
    old, curriculum["eval_envs"] = curriculum["eval_envs"], most
    return [f"stage{stage}.curriculum.eval_envs = {old} lowered to {most}: {why}"]


def stage_note(stage: int, algorithm: str, unread: Sequence[str], capped: Sequence[str],
               inert: dict[str, str]) -> str:
    """One line for ``stage`` (empty when there is nothing to say): the values left out (``unread``, dotted
    ``stageN.section.key``), lowered (``capped``) and without effect (``inert``: dotted key -> why)."""
    prefix = f"stage{stage}."
    parts = []
    mine = [key[len(prefix):] for key in unread if key.startswith(prefix)]
    if mine:
        parts.append(f"not read by --algorithm {algorithm}, left out: {', '.join(mine)}")
    parts += [text[len(prefix):] for text in capped if text.startswith(prefix)]
    parts += [f"{key} {why}" for key, why in inert.items()]
    return f"stage {stage}: " + "; ".join(parts) if parts else ""
