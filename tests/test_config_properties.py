"""Property tests: random override strings and random TOML documents either resolve or raise ConfigError."""

from __future__ import annotations

import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dinosim.config.resolve import resolve_run
from dinosim.errors import ConfigError
from dinosim.species import CONFIGS_DIR

KEYS = ["ppo.learning_rate", "ppo.n_steps", "ppo.batch_size", "ppo.policy_kwargs.net_arch", "sac.ent_coef",
        "env.alive_bonus", "env.fall_penalty", "curriculum.timesteps", "curriculum.min_success_rate", "ppo.nope",
        "envv.x", "ppo.clip_range", "ppo.lr_schedule"]
VALUES = st.one_of(
    st.text(max_size=12), st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True).map(repr),
    st.sampled_from(["true", "True", "None", "[256, 256]", "[", "{'a': 1}", "{a=1}", "auto", "1e-05", "inf", '"x"']),
)
OVERRIDES = st.tuples(st.sampled_from(["", "1.", "2.", "stage3.", "9."]), st.one_of(st.sampled_from(KEYS),
                      st.text(max_size=15)), VALUES).map(lambda t: f"{t[0]}{t[1]}={t[2]}")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(OVERRIDES, st.text(max_size=20)), max_size=4))
def test_random_overrides_resolve_or_raise_config_error(overrides):
    try:
        config = resolve_run("velociraptor", "ppo", (1, 2, 3), overrides)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        config.to_toml()


TOML_VALUES = st.sampled_from(["1", "2.5", "-3", "true", '"auto"', "[64, 64]", "{ a = 1 }", "1e400", "nan", "= 1",
                               "[", '"unterminated', "2048.0", "0"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["[ppo]", "[env]", "[curriculum]", "[sac]", "[bogus]", "[ppo.policy_kwargs]",
                                           ""]),
                          st.sampled_from(["learning_rate", "n_steps", "alive_bonus", "timesteps", "net_arch", "x y",
                                           "fall_penalty", "ent_coef", "batch_size"]),
                          TOML_VALUES), max_size=6))
def test_random_toml_documents_resolve_or_raise_config_error(tmp_path_factory, lines):
    root = tmp_path_factory.mktemp("cfg")
    shutil.copytree(CONFIGS_DIR, root / "configs")
    path = root / "configs" / "velociraptor" / "stage1_balance.toml"
    path.write_text("\n".join(f"{header}\n{key} = {value}" for header, key, value in lines))
    try:
        resolve_run("velociraptor", "ppo", (1,), config_dir=root / "configs")
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
