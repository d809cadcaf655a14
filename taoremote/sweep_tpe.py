"""`--search tpe`: Optuna's TPE sampler through ask/tell, an in-memory study rebuilt from the sweep's own
state on every start (no Optuna storage: its heartbeats do not work with ask/tell, reference §A.4). Optuna
is the optional extra `taoremote[tune]`, imported here only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taoremote.errors import UsageError
from taoremote.trials import TUNE_EXTRA, Trial, to_optuna_distributions, trial_from_values

if TYPE_CHECKING:
    from taoremote.sweep import SweepPlan
    from taoremote.sweep_state import TrialRecord


def require_optuna() -> Any:
    """Optuna, or the usage error naming the extra (checked before a sweep stores or starts anything)."""
    try:
        import optuna
    except ImportError:
        raise UsageError(f"--search tpe needs Optuna: {TUNE_EXTRA}") from None
    return optuna


class TpeSearch:
    def __init__(self, plan: SweepPlan, records: Sequence[TrialRecord]) -> None:
        optuna = require_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.plan = plan
        self.space = to_optuna_distributions(plan.params)
        seed = int(plan.definition.get("seed") or 0)
        direction = "maximize" if plan.direction == "max" else "minimize"
        self.study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
        self.open: dict[int, Any] = {}
        for record in records:
            self.tell(record)

    def ask(self, index: int) -> Trial:
        asked = self.study.ask(self.space)
        self.open[index] = asked
        return trial_from_values(index, self.plan.params, asked.params)

    def tell(self, record: TrialRecord) -> None:
        """A finished trial's result: its best metric (complete), pruned, or failed."""
        states = self._optuna.trial.TrialState
        if record.state == "succeeded" and record.best_metric is not None:
            state, value = states.COMPLETE, record.best_metric
        elif record.state == "pruned":
            state, value = states.PRUNED, None
        elif record.state in ("failed", "stopped", "succeeded"):
            state, value = states.FAIL, None
        else:
            return  # still to run: TPE ignores running trials
        asked = self.open.pop(record.index, None)
        if asked is not None:
            self.study.tell(asked, value, state=state)
            return
        params = {path: self._value(path, text) for path, text in record.params}
        self.study.add_trial(
            self._optuna.trial.create_trial(params=params, distributions=self.space, value=value, state=state)
        )

    def _value(self, path: str, text: str) -> object:
        dist = self.space[path]
        if isinstance(dist, self._optuna.distributions.IntDistribution):
            return int(text)
        if isinstance(dist, self._optuna.distributions.FloatDistribution):
            return float(text)
        return text
