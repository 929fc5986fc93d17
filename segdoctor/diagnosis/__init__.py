"""The diagnosis: which findings of one run explain the others, and which root cause to fix first.

Causal links are data. ``links.LINKS`` says "a finding of code A can explain a finding of code B, through
this mechanism, when this condition holds in the run"; ``conditions.CONDITIONS`` read what the run measured
(the findings' evidence and the report's facts: the compiled loss, the foreground share, the log's learning
rate) and never re-derive it. ``engine.diagnose`` evaluates the table on one run; ``words`` puts it in
sentences. ``segdoctor explain`` prints the table, and the tests cover every link. Sits between the checks
and the report; imports neither.
"""

from __future__ import annotations

from segdoctor.diagnosis.conditions import CONDITIONS, Condition, Run, State
from segdoctor.diagnosis.engine import Cause, Diagnosis, Step, diagnose
from segdoctor.diagnosis.links import (ANSWERED_IN_TRAINING, HEADLINES, LABELS, LINKS, SYMPTOMS, Link, label, links_from,
                                       links_to)
from segdoctor.diagnosis.words import headline, links_of, links_text, lower_first, missing_inputs_hint, verdict

__all__ = ["ANSWERED_IN_TRAINING", "CONDITIONS", "Cause", "Condition", "Diagnosis", "HEADLINES", "LABELS", "LINKS", "Link",
           "Run", "SYMPTOMS", "State", "Step", "diagnose", "headline", "label", "links_from", "links_of", "links_text",
           "links_to", "lower_first", "missing_inputs_hint", "verdict"]
