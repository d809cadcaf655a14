"""The mounts file's Envs at launch time: the values that go into the container's env-file, the variable
the TAO launcher adds to every container, and the W&B rule the launch and `doctor` share. PURE."""

from __future__ import annotations

from taoremote.config import MountsConfig, missing_from_env
from taoremote.config_checks import uncarriable_in
from taoremote.errors import ConfigError


def env_values(config: MountsConfig) -> dict[str, str]:
    missing = missing_from_env(config)
    if missing:
        raise ConfigError(
            f"{config.path}: environment variables not set on this machine: {', '.join(missing)}"
        )
    bad = _uncarriable(config)
    if bad:
        raise ConfigError(f"{config.path}: env values a docker env-file cannot carry: {', '.join(bad)}")
    return {e.name: e.value for e in config.envs if e.value is not None}


def _uncarriable(config: MountsConfig) -> list[str]:
    # JSON values were checked with the file; these came from the launching machine's environment
    return [
        f"{e.name} (from ${e.from_env}: {' and '.join(uncarriable_in(e.value))})"
        for e in config.envs
        if e.from_env and e.value is not None and uncarriable_in(e.value)
    ]


def launcher_env(config: MountsConfig) -> tuple[tuple[str, str], ...]:
    """What the launcher adds to every container (TAO's containers read it); the file's own value wins."""
    if any(e.name == "TAO_CLIENT_TYPE" and e.value is not None for e in config.envs):
        return ()
    return (("TAO_CLIENT_TYPE", "launcher"),)


def wandb_needs_root(config: MountsConfig) -> str | None:
    """The one W&B rule, for the launch warning and for `doctor`: TAO's W&B logging needs the
    container to run as root, so DockerOptions.user with any WANDB_* variable is worth a warning -
    unless W&B is switched off (WANDB_MODE=disabled, WANDB_DISABLED=true)."""
    values = {e.name: (e.value or "") for e in config.envs}
    if not config.options.user or not any(name.startswith("WANDB_") for name in values):
        return None
    if values.get("WANDB_MODE", "").lower() == "disabled" or values.get("WANDB_DISABLED", "").lower() in (
        "true",
        "1",
        "yes",
    ):
        return None
    return (
        f"DockerOptions.user is {config.options.user} and W&B is configured: TAO's W&B logging needs the "
        'container to run as root (remove "user" for runs that log to W&B)'
    )


def env_warnings(config: MountsConfig) -> tuple[str, ...]:
    rule = wandb_needs_root(config)
    return (rule,) if rule else ()
