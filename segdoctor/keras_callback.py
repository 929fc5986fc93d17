"""Live training diagnosis: a Keras callback that saves the history with the LR every epoch and warns
as soon as an SD6xx rule fires.

Imported explicitly by the user (``from segdoctor.keras_callback import SegDoctorCallback``), so it
may import Keras at the top; ``import segdoctor`` never imports this module.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from segdoctor.errors import HistoryError
from segdoctor.findings import Finding, Severity
from segdoctor.io.history import CALLBACK_FORMAT, history_from_mapping

log = logging.getLogger("segdoctor")

#: rules that only make sense once training is over (SD608: "ended while still improving")
END_OF_TRAINING_CHECKS = ("SD608",)
#: errors that end training at once with stop_on_error: nothing recovers from NaN weights
IMMEDIATE_STOP = frozenset({"SD601"})


class SegDoctorCallback(keras.callbacks.Callback):
    """Write the training history (with the learning rate) to ``path`` after every epoch and diagnose it.

    Args:
        path: JSON file to write; ``segdoctor check-history PATH`` reads it.
        stop_on_error: set ``model.stop_training`` when an error-level finding (divergence, Dice
            collapse, impossible metric values) has stood for ``stop_after`` consecutive epochs; a
            NaN/Inf loss (SD601) stops at once, since NaN weights cannot recover.
        stop_after: epochs an error must persist before stopping (default 3: early epochs of an
            imbalanced task can show a near-zero Dice that recovers).
        warn: log a warning (logger ``"segdoctor"``) the first time each rule fires.
        background_share: share of background pixels in the masks (0..1), if known; sharpens the
            accuracy-trap and plateau rules.
        select, ignore: check codes, prefixes or names, as for ``--select`` / ``--ignore``.
            End-of-training rules (SD608) are ignored by default.

    After training, ``callback.findings`` holds the findings of the last epoch and ``callback.diagnosis`` their
    diagnosis (root causes first, as in every report); a new root cause is logged once, with the symptoms it
    explains. Each ``fit()`` starts
    a new history (and overwrites ``path``); give each run its own path to keep them all.
    """

    def __init__(
        self,
        path: str | os.PathLike = "segdoctor-history.json",
        stop_on_error: bool = False,
        stop_after: int = 3,
        warn: bool = True,
        background_share: float | None = None,
        select: Sequence[str] = (),
        ignore: Sequence[str] = END_OF_TRAINING_CHECKS,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.stop_on_error = bool(stop_on_error)
        self.stop_after = max(1, int(stop_after))
        self.warn = bool(warn)
        self.background_share = background_share
        self.select = tuple(select)
        self.ignore = tuple(ignore)
        self.findings: list[Finding] = []
        self.diagnosis = None  # segdoctor.diagnosis.Diagnosis of the last epoch's findings
        self.stopped_by_segdoctor = False
        self._values: dict[str, list[float | None]] = {}
        self._epochs: list[int] = []
        self._warned: set[str] = set()
        self._roots: set[str] = set()
        self._error_streak: dict[str, int] = {}

    # Keras hooks ---------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        self._values, self._epochs, self._warned, self._error_streak = {}, [], set(), {}
        self.findings, self.diagnosis, self.stopped_by_segdoctor, self._roots = [], None, False, set()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {k: _as_float(v) for k, v in (logs or {}).items()}
        if not any(k in row for k in ("learning_rate", "lr")):
            lr = self._current_learning_rate()
            if lr is not None:
                row["learning_rate"] = lr
        n = len(self._epochs)
        for key in row:
            self._values.setdefault(key, [None] * n)  # a column that appears late (e.g. after validation starts)
        for key, column in self._values.items():
            column.append(row.get(key))
        self._epochs.append(int(epoch) + 1)
        self._write()
        self._diagnose()

    # internals -----------------------------------------------------------------------------
    def _current_learning_rate(self) -> float | None:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return None
        try:
            # Keras 3 evaluates a schedule at the current iteration here.
            return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        except Exception:  # an exotic optimizer must not break training
            return None

    def _write(self) -> None:
        params = {"epochs": (self.params or {}).get("epochs"), "steps": (self.params or {}).get("steps")}
        document = {"format": CALLBACK_FORMAT, "epochs": self._epochs, "history": self._values, "params": params,
                    "stopped_by_segdoctor": self.stopped_by_segdoctor}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash mid-write never leaves a truncated log behind.
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(document, fh)  # NaN stays NaN (a JSON extension Python and segdoctor read)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _diagnose(self) -> None:
        from segdoctor.commands.history import diagnose_history

        try:
            history = history_from_mapping(self._values, source=str(self.path), format="segdoctor-callback",
                                           epochs=self._epochs, params={"epochs": (self.params or {}).get("epochs")})
        except HistoryError as exc:  # no numeric value logged yet: nothing to diagnose, and never break training
            log.info("nothing to diagnose at epoch %d: %s", self._epochs[-1], exc)
            return
        self.findings = list(diagnose_history(history, background_share=self.background_share,
                                              select=self.select, ignore=self.ignore).findings)
        for f in self.findings:
            if self.warn and f.code not in self._warned:
                self._warned.add(f.code)
                log.warning("%s (%s): %s", f.title, f.code, _first_sentence(f.fix))
        from segdoctor.diagnosis import diagnose

        self.diagnosis = diagnose(self.findings, command="check-history", inputs={"history": str(self.path)})
        for cause in self.diagnosis.causes:
            if self.warn and cause.steps and cause.code not in self._roots:
                self._roots.add(cause.code)
                log.warning("root cause so far: %s (%s), which explains %s. Fix first: %s", cause.finding.title,
                            cause.code, ", ".join(cause.explained_codes), _first_sentence(cause.finding.fix))
        errors = [f for f in self.findings if f.severity >= Severity.ERROR]
        self._error_streak = {f.code: self._error_streak.get(f.code, 0) + 1 for f in errors}
        due = [f for f in errors if f.code in IMMEDIATE_STOP or self._error_streak[f.code] >= self.stop_after]
        if self.stop_on_error and due and self.model is not None:
            self.model.stop_training = True
            self.stopped_by_segdoctor = True
            log.warning("stopping training at epoch %d: %s (%s)", self._epochs[-1], due[0].title, due[0].code)
            self._write()


def _as_float(value: Any) -> float | None:
    try:
        return float(value) if isinstance(value, (int, float)) else float(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return None  # a non-numeric log entry is kept as an empty cell


def _first_sentence(text: str) -> str:
    head = text.split(". ")[0].rstrip(".")
    return head[:1].lower() + head[1:]
